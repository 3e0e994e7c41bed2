"""Soak: colluding stake attests one wrong tuple, round after round, against honest node processes.

Honest members run as real ``swarm node join`` processes on a local Anvil. Colluders are chain
accounts this script drives: they join with chosen stakes, skip training, and as soon as each
attest window opens they all attest the same forged tuple (a checkpoint nobody computed, an
accepted set of everyone, a rewards root paying only them), then keep trying to finalize it.

Scenarios, each on a fresh chain:

- ``minority``: the colluders hold just under 1/3 of the stake. Expected: every round finalizes
  the honest tuple; the forged one never reaches quorum.
- ``blocking``: the colluders hold just over 1/3. Expected: honest stake falls short of the 2/3
  quorum, so no tuple finalizes; each round fails visibly (``RoundFailed``) and is retried from
  the same base; the forged tuple still never finalizes.
- ``escalate``: minority in the first round, when one more colluder joins, so from the second
  round on they hold just over 1/3: the first round finalizes, the later ones fail visibly.

Usage::

    .venv/bin/python scripts/soak_byzantine.py [--honest 4] [--rounds 3] [--scenario all]

Prints one JSON object: per scenario, the stakes, each round's fate, the forged tuple's best
stake against the requirement, and the invariant checks (``forged_finalized`` must be 0).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swarmchain.incentives.merkle import RewardTree
from swarmchain.node.chain.coordinator import Coordinator
from swarmchain.node.chain.deploy import connect
from swarmchain.node.chain.deployment import SwarmParams
from swarmchain.node.chain.events import RoundFailed, RoundFinalized
from swarmchain.node.chain.protocol import Outcome, Phase, RoundStatus, encode_bitmap
from swarmchain.node.chain.reverts import ContractRevert
from swarmchain.node.devtools.anvil import Anvil
from swarmchain.node.devtools.harness import HarnessMember, SwarmHarness
from swarmchain.node.devtools.swarm import LocalSwarm
from swarmchain.node.protocol.task import default_task
from swarmchain.node.runtime.events import EventKind
from swarmchain.storage.dag import cid_of

TOKEN = 10**18
HONEST_STAKE = 100 * TOKEN  # each honest node's stake
MINORITY, BLOCKING = 0.999, 1.001  # colluders' total stake, in thirds of the whole stake
# Colluders' stake, in thirds, at the start and (escalate) from the second round on; and the
# fate every round must meet.
SCENARIOS = {
    "minority": (MINORITY, MINORITY),
    "blocking": (BLOCKING, BLOCKING),
    "escalate": (MINORITY, BLOCKING),
}
ROUND_TIMEOUT_S = 600.0


@dataclass
class RoundRecord:
    """What happened in one round."""

    round: int
    status: str = "open"
    forged_stake: int = 0  # stake behind the forged tuple when the round closed
    required_stake: int = 0
    leading_stake: int = 0
    honest_hashes: set[str] = field(default_factory=set)  # checkpoint hashes honest nodes computed
    finalized_hash: str | None = None
    finalize_attempts: list[str] = field(default_factory=list)  # the colluders' named errors
    first_finalize: str = ""  # what the colluders' first finalize, right after their attests, met
    seconds: float = 0.0  # wall time from the script's first look to the round's close

    def to_json(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "status": self.status,
            "forged_stake_share_of_required": round(self.forged_stake / self.required_stake, 4)
            if self.required_stake
            else None,
            "leading_stake_share_of_required": round(self.leading_stake / self.required_stake, 4)
            if self.required_stake
            else None,
            "honest_nodes_agree": len(self.honest_hashes) == 1,
            "finalized_honest_tuple": self.finalized_hash in self.honest_hashes
            if self.finalized_hash
            else None,
            "colluder_finalize_errors": sorted(set(self.finalize_attempts)),
            "colluder_first_finalize": self.first_finalize,
            "seconds": round(self.seconds, 1),
        }


def forged_outcome(round_id: int, colluders: list[HarnessMember], members: int) -> Outcome:
    """The tuple every colluder attests in `round_id`."""
    # The whole round's reward for the colluders: a larger total is refused at attest.
    share = 1_000 * TOKEN // len(colluders)
    tree = RewardTree.from_amounts({c.address: share for c in colluders})
    fake = f"forged checkpoint of round {round_id}".encode()
    return Outcome(
        checkpoint_hash=hashlib.sha256(fake).digest(),
        checkpoint_cid=cid_of(fake),
        accepted_bitmap=encode_bitmap(range(members)),
        rewards_root=tree.root,
        reward_total=tree.total,
    )


def _now(coordinator: Coordinator) -> int:
    return max(coordinator.timestamp(), int(time.time()))


def _phase(coordinator: Coordinator, round_id: int) -> Phase:
    info = coordinator.round_info(round_id)
    if info.status != RoundStatus.OPEN:
        return Phase.ENDED
    now = _now(coordinator)
    if now < info.commit_deadline:
        return Phase.COMMIT
    if now < info.reveal_deadline:
        return Phase.REVEAL
    return Phase.ATTEST if now < info.attest_deadline else Phase.ENDED


def collude(
    coordinator: Coordinator, colluders: list[HarnessMember], record: RoundRecord
) -> Outcome:
    """Attest the forged tuple from every colluder once the attest window opens, then try to
    finalize it until the round closes."""
    r = record.round
    deadline = time.monotonic() + ROUND_TIMEOUT_S
    forged = forged_outcome(r, colluders, coordinator.member_count())
    # A colluder that joined during the round holds no stake in it and may not vote: it tries
    # last, so that nothing stands between the stake-holding colluders' attests and their
    # first finalize.
    eligible = [c for c in colluders if c.client.member_info().stake_at_open]
    ineligible = [c for c in colluders if c not in eligible]
    # Honest nodes attest as soon as they have valued the round: look often, so that the forged
    # tuple is on the chain before a round the honest stake can finalize closes.
    while _phase(coordinator, r) in (Phase.COMMIT, Phase.REVEAL):
        if time.monotonic() > deadline:
            raise TimeoutError(f"round {r} never reached its attest window")
        time.sleep(0.02)
    for colluder in eligible:
        _try(record, "attest", colluder.client.attest, r, forged)
    record.first_finalize = _try(record, None, colluders[0].client.finalize, r, forged)
    for colluder in ineligible:
        _try(record, "ineligible attest", colluder.client.attest, r, forged)
    while coordinator.round_info(r).status == RoundStatus.OPEN:
        if time.monotonic() > deadline:
            raise TimeoutError(f"round {r} never closed")
        time.sleep(0.5)
        _try(record, None, colluders[0].client.finalize, r, forged)
    return forged


def _try(record: RoundRecord, label: str | None, send: Any, *args: Any) -> str:
    """Send one colluder transaction; the name of the error it met ("sent" if none), which is
    also recorded (after `label`) among the round's colluder errors."""
    try:
        send(*args)
    except ContractRevert as err:  # refused, or the round closed under it: nothing to gain
        name = type(err).__name__
        record.finalize_attempts.append(f"{label}: {name}" if label else name)
        return name
    return "sent"


def _colluder_total(thirds: float, honest: int) -> int:
    """Stake c with c / (honest stake + c) = thirds / 3."""
    return int(thirds * honest * HONEST_STAKE / 2)


def expected_status(name: str, index: int) -> str:
    """The fate the `index`-th recorded round of scenario `name` must meet."""
    start, later = SCENARIOS[name]
    thirds = start if index == 0 else later
    return "finalized" if thirds < 1 else "failed"


def run_scenario(name: str, honest: int, rounds: int, workdir: Path) -> dict[str, Any]:
    """Run one scenario on a fresh chain; its JSON record."""
    start, later = SCENARIOS[name]
    colluder_total = _colluder_total(start, honest)
    colluder_stakes = [colluder_total // 2, colluder_total - colluder_total // 2]
    late_stake = _colluder_total(later, honest) - colluder_total
    # Colluders never commit, so the commit window always runs in full; the stake is low, so a
    # late colluder can add just the stake it needs.
    params = SwarmParams.windows(15, 60, min_stake=TOKEN // 1000)
    started = time.monotonic()
    with Anvil() as anvil:
        swarm = LocalSwarm.create(anvil, workdir, default_task(), honest, params=params)
        harness = SwarmHarness(anvil, swarm.deployment, anvil.accounts[0].private_key)
        coordinator = Coordinator(connect(anvil.rpc_url), swarm.deployment)
        for member in swarm.members:
            harness.deployer.token.transfer(member.address, HONEST_STAKE)
        colluders = []
        for stake in colluder_stakes:
            colluder = harness.new_member(stake, "colluder")
            colluder.client.join(stake, colluder.ed25519_key, colluder.x25519_key)
            colluders.append(colluder)
        options = ["--stake", str(HONEST_STAKE), "--min-members", str(honest + len(colluders))]
        records: list[RoundRecord] = []
        with swarm:
            nodes = [swarm.start(i, *options) for i in range(honest)]
            nodes[0].wait_for(lambda e: e.kind == EventKind.ROUND and e.round >= 2, 300, "round 2")
            while len(records) < rounds:
                record = RoundRecord(coordinator.current_round())
                began = time.monotonic()
                if late_stake > 0 and not records:  # counted from the next round on
                    late = harness.new_member(late_stake, "colluder")
                    late.client.join(late_stake, late.ed25519_key, late.x25519_key)
                    colluders.append(late)
                    colluder_total += late_stake
                collude(coordinator, colluders, record)
                record.seconds = time.monotonic() - began
                info = coordinator.round_info(record.round)
                forged = forged_outcome(record.round, colluders, coordinator.member_count())
                record.status = info.status.name.lower()
                record.forged_stake = coordinator.outcome_stake(record.round, forged)
                record.required_stake = info.required_stake
                record.leading_stake = info.leading_stake
                for node in nodes:
                    for event in node.of_kind(EventKind.VERIFIED, record.round):
                        record.honest_hashes.add(str(event.data["checkpoint_hash"]))
                if info.status == RoundStatus.FINALIZED:
                    outcome = coordinator.finalized_outcome(record.round)
                    record.finalized_hash = "0x" + outcome.checkpoint_hash.hex()
                records.append(record)
        events = coordinator.events()
    finalized = [e for e in events if isinstance(e, RoundFinalized)]
    failed = [e for e in events if isinstance(e, RoundFailed) and e.round > 1]
    forged_hashes = {
        forged_outcome(r.round, colluders, len(colluders) + honest).checkpoint_hash for r in records
    }
    return {
        "scenario": name,
        "honest_nodes": honest,
        "colluders": len(colluders),
        "colluder_stake_share": round(colluder_total / (honest * HONEST_STAKE + colluder_total), 5),
        "quorum_share": params.quorum_bps / 10_000,
        "rounds": [r.to_json() for r in records],
        "fates_as_expected": [r.status for r in records]
        == [expected_status(name, i) for i in range(len(records))],
        "rounds_finalized": sum(r.status == "finalized" for r in records),
        "rounds_failed_visibly": sum(r.status == "failed" for r in records),
        "forged_finalized": sum(e.outcome.checkpoint_hash in forged_hashes for e in finalized),
        "round_failed_events": len(failed),
        "failed_rounds_retried_from_same_base": all(
            e.base_round == failed[0].base_round for e in failed
        ),
        "median_round_s": round(statistics.median(r.seconds for r in records), 1),
        "wall_s": round(time.monotonic() - started, 1),
    }


def main() -> int:
    """Run the chosen scenarios and print their records as JSON; exit 1 on a violated invariant."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--honest", type=int, default=4, help="honest node processes")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per scenario")
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all", help="which")
    args = parser.parse_args()
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    results = []
    with tempfile.TemporaryDirectory(prefix="soak-byzantine-") as tmp:
        for name in names:
            results.append(run_scenario(name, args.honest, args.rounds, Path(tmp) / name))
    ok = all(r["forged_finalized"] == 0 and r["fates_as_expected"] for r in results)
    print(json.dumps({"ok": ok, "scenarios": results}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
