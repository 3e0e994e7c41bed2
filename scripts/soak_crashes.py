"""Soak: node processes SIGKILLed at random phases and Anvil killed in every phase, for many rounds.

Four honest ``swarm node join`` processes (so f = 1: three of four hold the 2/3 quorum) run on a
local Anvil that dumps its state every second. In every round one node, chosen at random, is
SIGKILLed right after a randomly chosen step (trained, stored, committed, revealed, verified,
attested, finalize sent, finalized) and restarted from its journal after a random pause. In four
of the rounds Anvil itself is SIGKILLed, once in each phase (commit, reveal, attest, after the
attest window), and started again from its state file on the same port.

Checks, from the chain's record and the nodes' journals once every node has settled the last
round: every node reports the chain's checkpoint for every finalized round it saw, and every
node settled the last round (so each continued from the chain's checkpoints); no node got the
same logical transaction mined twice (same function, round, node and account); and for every
finalized round each node's claimed reward equals what the round's reward tree allocated to it.
A round may fail visibly (for example when a SIGKILLed chain loses the last second's
attestations and the attest deadline passes before it is back): it is listed with its stakes and
retried from the same base.

Usage::

    .venv/bin/python scripts/soak_crashes.py [--rounds 10] [--seed 0]

Prints one JSON object with the kills made, the checks, and round timings (median).
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any

from swarmchain.incentives.claims import load_reward_tree
from swarmchain.node.chain.coordinator import Coordinator
from swarmchain.node.chain.deploy import connect
from swarmchain.node.chain.deployment import SwarmParams
from swarmchain.node.chain.events import Claimed, RoundFailed, RoundFinalized
from swarmchain.node.chain.protocol import Phase, RoundStatus
from swarmchain.node.devtools.anvil import Anvil
from swarmchain.node.devtools.swarm import LocalSwarm, NodeProcess
from swarmchain.node.errors import ChainError
from swarmchain.node.protocol.task import default_task
from swarmchain.node.runtime.events import EventKind
from swarmchain.node.runtime.journal import Journal

NODES = 4
FIRST_ROUND = 2  # round 1 opens before anyone joins and is failed to open a counted round
WAIT_S = 300.0
KILL_AFTER = [
    EventKind.TRAINED,
    EventKind.STORED,
    EventKind.COMMITTED,
    EventKind.REVEALED,
    EventKind.VERIFIED,
    EventKind.ATTESTED,
    EventKind.FINALIZE_SENT,
    EventKind.FINALIZED,
]
CHAIN_PHASES = [Phase.COMMIT, Phase.REVEAL, Phase.ATTEST, Phase.ENDED]


def _wait(condition: Any, what: str, timeout: float = WAIT_S, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = condition()
        except ChainError:  # Anvil is restarting under us
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(interval)


def _phase(coordinator: Coordinator, round_id: int) -> Phase:
    info = coordinator.round_info(round_id)
    if info.status != RoundStatus.OPEN:
        return Phase.ENDED
    now = max(coordinator.timestamp(), int(time.time()))
    if now < info.commit_deadline:
        return Phase.COMMIT
    if now < info.reveal_deadline:
        return Phase.REVEAL
    return Phase.ATTEST if now < info.attest_deadline else Phase.ENDED


def crash_node(
    nodes: list[NodeProcess], round_id: int, kind: EventKind, rng: random.Random
) -> dict[str, Any]:
    """SIGKILL a node right after it reports `kind` in `round_id`, restart it after a pause."""
    if kind == EventKind.FINALIZE_SENT:  # only the node whose turn it was sends it
        victim = _wait(
            lambda: next((n for n in nodes if n.of_kind(kind, round_id)), None),
            f"a finalize in round {round_id}",
        )
    else:
        victim = rng.choice(nodes)
        try:
            victim.wait_for(lambda e: e.kind == kind and e.round == round_id, WAIT_S, kind.value)
        except TimeoutError:
            return {"round": round_id, "after": kind.value, "node": None, "reason": "not reached"}
    victim.signal(signal.SIGKILL)
    victim.wait()
    pause = rng.uniform(0.0, 2.0)
    time.sleep(pause)
    victim.start()
    return {"round": round_id, "after": kind.value, "node": victim.member.index, "pause_s": pause}


def _in_phase(coordinator: Coordinator, round_id: int, phase: Phase) -> bool:
    """Whether `round_id` is in `phase`: mid-attest once someone attested; ENDED from the moment
    every member attested (the window closed) until the round is closed."""
    info = coordinator.round_info(round_id)
    if phase == Phase.ENDED:
        return info.status == RoundStatus.OPEN and (
            info.attests == info.active_at_open or _phase(coordinator, round_id) == Phase.ENDED
        )
    if phase == Phase.ATTEST and info.attests == 0:
        return False
    return _phase(coordinator, round_id) == phase


def crash_chain(anvil: Anvil, coordinator: Coordinator, phase: Phase) -> dict[str, Any]:
    """SIGKILL Anvil once the current round reaches `phase`, then start it from its state file."""

    def reached() -> int | None:
        round_id = coordinator.current_round()
        return round_id if _in_phase(coordinator, round_id, phase) else None

    # Nodes act on chain events within milliseconds, so a window that closes early once every
    # member acted (reveal, above all) lasts a fraction of a second: look every 5 ms.
    round_id = _wait(reached, f"chain phase {phase.name}", interval=0.005)
    anvil.stop(kill=True)
    time.sleep(1.0)
    anvil.start()
    return {"round": round_id, "phase": phase.name.lower()}


def run(rounds: int, seed: int, workdir: Path) -> dict[str, Any]:
    """Run the soak; its JSON record."""
    rng = random.Random(seed)
    last = FIRST_ROUND + rounds - 1
    params = SwarmParams.windows(30, 60, 45)
    chain_rounds = dict(
        zip(
            rng.sample(range(FIRST_ROUND + 1, last + 1), len(CHAIN_PHASES)),
            CHAIN_PHASES,
            strict=True,
        )
    )
    started = time.monotonic()
    kills: list[dict[str, Any]] = []
    chain_kills: list[dict[str, Any]] = []
    with Anvil(state_file=workdir / "anvil-state.json", state_interval=1) as anvil:
        swarm = LocalSwarm.create(anvil, workdir, default_task(), NODES, params=params)
        coordinator = Coordinator(connect(anvil.rpc_url), swarm.deployment)
        with swarm:
            options = ["--min-members", str(NODES), "--until-round", str(last)]
            nodes = [swarm.start(i, *options) for i in range(NODES)]
            for round_id in range(FIRST_ROUND, last + 1):
                _wait(lambda r=round_id: coordinator.current_round() >= r, f"round {round_id}")
                if round_id in chain_rounds:
                    chain_kills.append(crash_chain(anvil, coordinator, chain_rounds[round_id]))
                if coordinator.current_round() == round_id:
                    kills.append(crash_node(nodes, round_id, rng.choice(KILL_AFTER), rng))
            for node in nodes:
                node.wait(timeout=WAIT_S)
        events = coordinator.events()
        txs = _mined(coordinator, {m.address for m in swarm.members})
    finalized = {e.round: e for e in events if isinstance(e, RoundFinalized)}
    checkpoints_agree = all(
        {str(e.data["checkpoint_hash"]) for n in nodes for e in n.of_kind(EventKind.FINALIZED, r)}
        <= {"0x" + event.outcome.checkpoint_hash.hex()}
        for r, event in finalized.items()
    )
    keys = Counter(
        (tx["sender"], tx["function"], tx["round"], tx["node"], tx["account"])
        for tx in txs
        if tx["ok"]
    )
    duplicates = [list(key) for key, count in keys.items() if count > 1]
    claimed = {(e.round, e.account): e.amount for e in events if isinstance(e, Claimed)}
    lost = []
    allocated_total = claimed_total = 0
    for r, event in finalized.items():
        for member in swarm.members:
            tree = load_reward_tree(member.journal / "rewards", r)
            owed = 0 if tree is None else tree.amount_of(member.address)
            if tree is not None and tree.root != event.outcome.rewards_root:
                lost.append({"round": r, "node": member.index, "reason": "tree root differs"})
            got = claimed.get((r, member.address), 0)
            allocated_total += owed
            claimed_total += got
            if got != owed:
                lost.append({"round": r, "node": member.index, "owed": owed, "claimed": got})
    closes = nodes[0].of_kind(EventKind.FINALIZED)
    round_times = [b.time - a.time for a, b in pairwise(closes)]
    journals = [Journal(member.journal) for member in swarm.members]
    own = [
        (record["checkpoint_hash"], "0x" + event.outcome.checkpoint_hash.hex())
        for journal in journals
        for r, event in finalized.items()
        if (record := journal.last("outcome", r)) is not None
    ]
    settled = all(journal.last("closed", last) is not None for journal in journals)
    for journal in journals:
        journal.close()
    return {
        "nodes": NODES,
        "rounds": rounds,
        "seed": seed,
        "node_kills": kills,
        "chain_kills": chain_kills,
        "rounds_finalized": len([r for r in finalized if r >= FIRST_ROUND]),
        "rounds_failed": [
            {"round": e.round, "leading_stake": e.leading_stake, "required_stake": e.required_stake}
            for e in events
            if isinstance(e, RoundFailed) and e.round >= FIRST_ROUND
        ],
        "retrying_events": sum(len(n.of_kind(EventKind.RETRYING)) for n in nodes),
        "checkpoints_agree": checkpoints_agree,
        "every_node_settled_the_last_round": settled,
        "own_outcomes_matching_the_finalized_one": f"{sum(a == b for a, b in own)}/{len(own)}",
        "transactions_mined": len(txs),
        "transactions_reverted": [
            {"function": tx["function"], "round": tx["round"], "sender": tx["sender"]}
            for tx in txs
            if not tx["ok"]
        ],
        "duplicate_transactions": duplicates,
        "rewards_allocated": allocated_total,
        "rewards_claimed": claimed_total,
        "rewards_lost": lost,
        "median_round_s": round(statistics.median(round_times), 1) if round_times else None,
        "wall_s": round(time.monotonic() - started, 1),
    }


def _mined(coordinator: Coordinator, senders: set[str]) -> list[dict[str, Any]]:
    """Every transaction the senders got mined, decoded against the coordinator and token."""
    w3 = coordinator.w3
    contracts = {c.address: c for c in (coordinator.contract, coordinator.token.contract)}
    out = []
    for number in range(coordinator.deployment.deploy_block, w3.eth.block_number + 1):
        for tx in w3.eth.get_block(number, full_transactions=True)["transactions"]:
            sender = tx["from"]  # type: ignore[index]
            if sender not in senders:
                continue
            function, args = contracts[tx["to"]].decode_function_input(tx["input"])  # type: ignore[index]
            receipt = w3.eth.get_transaction_receipt(tx["hash"])  # type: ignore[index]
            out.append(
                {
                    "sender": sender,
                    "function": function.fn_name,
                    "round": args.get("round"),
                    "node": args.get("node"),
                    "account": args.get("account"),
                    "ok": receipt["status"] == 1,
                }
            )
    return out


def main() -> int:
    """Run the soak and print its record; exit 1 if anything was lost or sent twice."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="rounds to run")
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill schedule")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="soak-crashes-") as tmp:
        record = run(args.rounds, args.seed, Path(tmp))
    ok = (
        record["checkpoints_agree"]
        and record["every_node_settled_the_last_round"]
        and not record["duplicate_transactions"]
        and not record["rewards_lost"]
    )
    print(json.dumps({"ok": ok, **record}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
