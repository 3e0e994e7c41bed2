"""Soak: peers that go dark for 30 s, and peers that serve corrupted bytes, under a live swarm.

Four ``swarm node join`` processes on a local Anvil. Three share one embedded store (so the
first of them to fetch a block stores it for the other two); the fourth (the "loner") keeps its
own and serves it over the trustless gateway. The three reach the
loner's blocks only through two proxies this script runs, listed in order as their peers, so
each round can give them a different storage fault:

- ``normal``: both proxies pass bytes through.
- ``corrupt-first``: the first proxy flips a bit in every block, the second is honest. Expected:
  every corrupted block is caught by its CID and fetched again from the second peer; the round
  finalizes with the loner's update accepted.
- ``corrupt-only``: the first proxy corrupts, the second drops. Expected: the loner's update is
  rejected as ``cid_mismatch`` by the other three, its bytes are never used, and the round still
  finalizes on their 3/4 of the stake.
- ``outage``: both proxies drop every connection for 30 s, starting when the loner has stored its
  update. Expected: the nodes retry with backoff; the round either finalizes or fails visibly;
  nothing hangs. A node retries a missing blob for its fetch patience (10 s), so an outage that
  covers the verification rejects the loner's update as ``unavailable``, which the chain cannot
  tell from withholding.

The loner stakes ``--loner-stake`` minima (default 3, half of all stake). Then its own verdict
(it accepts its update) splits the vote, no tuple reaches 2/3 and faulty rounds fail visibly and
are retried. With ``--loner-stake 1`` the other three hold the quorum: faulty rounds finalize
without the loner's update, and a rejected update costs it ``slashBps`` (10%) of its stake, which
at the minimum stake also expels it.

Usage::

    .venv/bin/python scripts/soak_storage.py [--outage 30] [--loner-stake 3]

Prints one JSON object: per fault, the rounds it covered (an outage can outlast several short
rounds), the corrupted blocks served and connections dropped; per round, its fate and how the
three sharing nodes judged the loner's update.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from swarmchain.node.chain.coordinator import Coordinator
from swarmchain.node.chain.deploy import connect
from swarmchain.node.chain.deployment import SwarmParams
from swarmchain.node.chain.events import ChainEvent, Revealed, RoundFailed, RoundFinalized, Slashed
from swarmchain.node.chain.protocol import RoundStatus, decode_bitmap
from swarmchain.node.devtools.anvil import Anvil
from swarmchain.node.devtools.harness import SwarmHarness
from swarmchain.node.devtools.process import free_port
from swarmchain.node.devtools.swarm import LocalSwarm, NodeProcess
from swarmchain.node.protocol.task import default_task
from swarmchain.node.runtime.events import EventKind

NODES = 4
LONER = 3
FIRST_ROUND = 2
FAULTS = ["normal", "corrupt-first", "corrupt-only", "outage", "normal"]  # in this order
WAIT_S = 400.0


class _ProxyHandler(BaseHTTPRequestHandler):
    server: FaultyPeer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_GET(self) -> None:
        mode = self.server.mode
        if mode == "drop":
            self.server.dropped += 1
            self.close_connection = True
            return
        reply = self.server.client.get(self.server.upstream + self.path, headers=dict(self.headers))
        body = reply.content
        if mode == "corrupt" and reply.status_code == HTTPStatus.OK and body:
            body = bytes([body[0] ^ 1]) + body[1:]
            self.server.corrupted += 1
        self.send_response(reply.status_code)
        self.send_header("Content-Type", reply.headers.get("Content-Type", "text/plain"))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class FaultyPeer(ThreadingHTTPServer):
    """An HTTP proxy in front of a trustless gateway that can pass, drop or corrupt."""

    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream = upstream
        self.client = httpx.Client(timeout=10.0)
        self.mode = "pass"
        self.corrupted = 0
        self.dropped = 0
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        """The base URL nodes pass to ``--peer``."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


def _wait(condition: Any, what: str) -> Any:
    deadline = time.monotonic() + WAIT_S
    while not (found := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)
    return found


def _rounds_report(
    nodes: list[NodeProcess], events: list[ChainEvent], loner: str, loner_index: int
) -> list[dict[str, Any]]:
    """Per closed round: its fate, whether the loner revealed an update, whether the finalized
    checkpoint accepted it, the sharing nodes' named reasons when they rejected it, and whether
    the loner was slashed for it."""
    revealed = {e.round for e in events if isinstance(e, Revealed) and e.node == loner}
    slashed = {e.round for e in events if isinstance(e, Slashed) and e.node == loner}
    closed: dict[int, Any] = {
        e.round: e for e in events if isinstance(e, RoundFinalized | RoundFailed)
    }
    out = []
    for round_id, event in sorted(closed.items()):
        if round_id < FIRST_ROUND:
            continue
        reasons = sorted(
            str(dict(v.data["rejected"])[str(loner_index)])
            for node in nodes[:LONER]
            for v in node.of_kind(EventKind.VERIFIED, round_id)
            if str(loner_index) in dict(v.data["rejected"])
        )
        hashes = {
            str(e.data["checkpoint_hash"])
            for n in nodes
            for e in n.of_kind(EventKind.FINALIZED, round_id)
        }
        finalized = isinstance(event, RoundFinalized)
        out.append(
            {
                "round": round_id,
                "status": "finalized" if finalized else "failed",
                "loner_revealed": round_id in revealed,
                "loner_accepted": finalized
                and loner_index in decode_bitmap(event.outcome.accepted_bitmap),
                "loner_rejected_by_verifiers_as": reasons,
                "loner_slashed": round_id in slashed,
                "checkpoints_reported": len(hashes),
            }
        )
    return out


def run(outage_s: float, loner_minima: int, workdir: Path) -> dict[str, Any]:
    """Apply each fault of FAULTS from the start of a round until a round closes after it ends;
    the JSON record."""
    params = SwarmParams.windows(40, 60)
    modes = {
        "normal": ("pass", "pass"),
        "corrupt-first": ("corrupt", "pass"),
        "outage": ("drop", "drop"),
        "corrupt-only": ("corrupt", "drop"),
    }
    started = time.monotonic()
    faults = []
    with Anvil() as anvil:
        swarm = LocalSwarm.create(anvil, workdir, default_task(), NODES, params=params)
        coordinator = Coordinator(connect(anvil.rpc_url), swarm.deployment)
        harness = SwarmHarness(anvil, swarm.deployment, anvil.accounts[0].private_key)
        loner_stake = loner_minima * params.min_stake
        harness.deployer.token.transfer(swarm.members[LONER].address, loner_stake)
        shared, loner = free_port(), free_port()
        first = FaultyPeer(f"http://127.0.0.1:{loner}")
        second = FaultyPeer(f"http://127.0.0.1:{loner}")
        with swarm:
            nodes = []
            for i in range(NODES):
                if i == LONER:
                    extra = [
                        "--stake",
                        str(loner_stake),
                        "--serve",
                        f"127.0.0.1:{loner}",
                        "--peer",
                        f"http://127.0.0.1:{shared}",
                    ]
                    nodes.append(
                        swarm.start(
                            i, *extra, "--min-members", str(NODES), store=workdir / "loner-store"
                        )
                    )
                else:
                    extra = ["--peer", first.url, "--peer", second.url]
                    if i == 0:
                        extra += ["--serve", f"127.0.0.1:{shared}"]
                    nodes.append(swarm.start(i, *extra, "--min-members", str(NODES)))
            round_id = FIRST_ROUND
            for fault in FAULTS:
                _wait(lambda r=round_id: coordinator.current_round() >= r, f"round {round_id}")
                round_id = coordinator.current_round()
                corrupted, began = first.corrupted, time.monotonic()
                dropped = first.dropped + second.dropped
                if fault == "outage":  # from the moment the loner's update is stored
                    nodes[LONER].wait_for(
                        lambda e, r=round_id: e.kind == EventKind.STORED and e.round == r,
                        WAIT_S,
                        "the loner's update",
                    )
                first.mode, second.mode = modes[fault]
                last = round_id
                if fault == "outage":  # every round it reached counts as faulty
                    time.sleep(outage_s)
                    first.mode = second.mode = "pass"
                    last = coordinator.current_round()
                _wait(
                    lambda r=last: coordinator.round_info(r).status != RoundStatus.OPEN,
                    f"round {last} to close after {fault}",
                )
                first.mode = second.mode = "pass"
                faults.append(
                    {
                        "fault": fault,
                        "rounds": list(range(round_id, last + 1)),
                        "corrupted_blocks_served": first.corrupted - corrupted,
                        "connections_dropped": first.dropped + second.dropped - dropped,
                        "seconds": round(time.monotonic() - began, 1),
                    }
                )
                round_id = last + 1
            loner_index = coordinator.member_info(swarm.members[LONER].address).index
            time.sleep(5)  # let the nodes report the last round's finalization
        first.shutdown()
        second.shutdown()
        events = coordinator.events()
    rounds = _rounds_report(nodes, events, swarm.members[LONER].address, loner_index)
    return {
        "nodes": NODES,
        "outage_s": outage_s,
        "loner_stake_share": round(loner_minima / (loner_minima + NODES - 1), 3),
        "faults": faults,
        "rounds": rounds,
        "every_round_closed": all(r["status"] in ("finalized", "failed") for r in rounds),
        "checkpoints_agree": all(r["checkpoints_reported"] <= 1 for r in rounds),
        "wall_s": round(time.monotonic() - started, 1),
    }


def main() -> int:
    """Run the soak and print its record; exit 1 if a round hung or nodes disagreed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outage", type=float, default=30.0, help="seconds the peers go dark")
    parser.add_argument("--loner-stake", type=int, default=3, help="the loner's stake, in minima")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="soak-storage-") as tmp:
        record = run(args.outage, args.loner_stake, Path(tmp))
    ok = record["every_round_closed"] and record["checkpoints_agree"]
    print(json.dumps({"ok": ok, **record}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
