"""Gas of every SwarmCoordinator call for swarms of growing size, as JSON.

For each size n a fresh swarm is deployed on a local Anvil; n members join, and one full round
runs: everyone commits, all but member n-2 reveal, everyone attests the tuple that accepts all
revealers except member n-1, the round finalizes, every accepted member claims, and the silent
member is slashed. In the next round everyone commits again; those commits first settle the
previous round, and the rejected member's commit applies its own slash
(``commit_with_settled_slash``). Per-member calls are reported as the median over the members
and both rounds (``"max"`` holds the maxima). With n > 256 the rejected member's bit lies past
byte 32 of the bitmap, which shows that large swarms work.

Usage: python scripts/bench_gas.py [--sizes 4,16,64,128]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from typing import Any

from swarmchain.node.chain.deployment import SwarmParams
from swarmchain.node.chain.events import Joined
from swarmchain.node.chain.protocol import Phase
from swarmchain.node.chain.tx import Transaction
from swarmchain.node.devtools.anvil import Anvil
from swarmchain.node.devtools.harness import (
    HarnessMember,
    SwarmHarness,
    sample_outcome,
    sample_reveal,
)

PER_NODE_TARGET = 120_000  # gas of any per-node, per-round call, at every size
FINALIZE_TARGET = 300_000  # gas of finalize at 128 nodes
PER_NODE_CALLS = ("commit", "reveal", "attest", "claim", "slash", "commit_with_settled_slash")
STAKE = 10**18
PARAMS = SwarmParams(
    task_spec_cid="bafkreibenchmarktaskspec",
    task_spec_hash="0x" + "5a" * 32,
    commit_duration_s=3600,
    reveal_duration_s=3600,
    attest_duration_s=3600,
    unbonding_delay_s=3600,
    min_stake=STAKE // 2,
    reward_per_round=10**21,
    reward_pool=10**24,
    token_supply=10**27,
)


def _send(member: HarnessMember, function: str, *args: Any) -> Transaction:
    sender = member.client.sender
    assert sender is not None
    return sender.send(member.client.contract.functions[function](*args), function)


def measure(anvil: Anvil, size: int) -> dict[str, list[int]]:
    """Run one round with `size` members; gas used per call name, one entry per call."""
    harness = SwarmHarness.deploy(anvil, PARAMS)
    members = harness.join_many(size, STAKE, label=f"bench{size}")
    names = ("join", "fail_round", *PER_NODE_CALLS, "commit_with_settled_slash")
    gas: dict[str, list[int]] = {name: [] for name in names}
    for event in harness.deployer.events():
        if isinstance(event, Joined):
            receipt = harness.w3.eth.get_transaction_receipt(event.tx_hash)  # type: ignore[arg-type]
            gas["join"].append(receipt["gasUsed"])

    info = harness.deployer.round_info()
    harness.advance_to(info.attest_deadline)
    gas["fail_round"].append(_send(members[0], "failRound", info.round).gas_used)
    round_id = info.round + 1

    silent, rejected = members[-2], members[-1]
    reveals = {m.address: sample_reveal(m.address, round_id) for m in members}
    for m in members:
        commitment = m.client.commitment_for(reveals[m.address], round_id)
        gas["commit"].append(_send(m, "commit", round_id, commitment).gas_used)
    for m in members:
        if m is not silent:
            r = reveals[m.address]
            args = (round_id, r.cid, r.content_hash, r.num_samples, r.salt)
            gas["reveal"].append(_send(m, "reveal", *args).gas_used)
    accepted = [i for i, m in enumerate(members) if m not in (silent, rejected)]
    share = PARAMS.reward_per_round // len(accepted)
    outcome, tree = sample_outcome(accepted, {members[i].address: share for i in accepted})
    harness.advance_to_phase(Phase.ATTEST)
    for m in members:
        gas["attest"].append(_send(m, "attest", round_id, outcome.as_abi()).gas_used)
    finalize = _send(members[0], "finalize", round_id, outcome.as_abi())
    gas["finalize"] = [finalize.gas_used]
    for i in accepted:
        account = members[i].address
        args = (round_id, account, share, tree.proof(account))
        gas["claim"].append(_send(members[i], "claim", *args).gas_used)
    gas["slash"].append(_send(members[0], "slash", round_id, silent.address).gas_used)

    # Steady state: the next round's commits settle the previous round first. The rejected
    # member, never slashed by anyone, pays for its own slash inside its commit.
    round_id += 1
    for m in members:
        if m is silent:
            continue
        commitment = m.client.commitment_for(sample_reveal(m.address, round_id), round_id)
        tx = _send(m, "commit", round_id, commitment)
        gas["commit_with_settled_slash" if m is rejected else "commit"].append(tx.gas_used)
    if rejected.client.member_info().stake >= STAKE:
        raise AssertionError(f"member {size - 1} was rejected but its commit settled no slash")
    return gas


def summarize(gas: dict[str, list[int]]) -> tuple[dict[str, int], dict[str, int]]:
    """Median and maximum per call name."""
    medians = {name: int(statistics.median(values)) for name, values in gas.items()}
    maxima = {name: max(values) for name, values in gas.items()}
    return medians, maxima


def main(argv: Sequence[str] | None = None) -> int:
    """Measure every size and print the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="4,16,64,128", help="comma-separated swarm sizes")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    report: dict[str, Any] = {"gas": {}, "max": {}, "samples": {}}
    with Anvil() as anvil:
        for size in sizes:
            gas = measure(anvil, size)
            medians, maxima = summarize(gas)
            report["gas"][str(size)] = medians
            report["max"][str(size)] = maxima
            report["samples"][str(size)] = {name: len(v) for name, v in gas.items()}
    worst_per_node = max(report["max"][str(s)][name] for s in sizes for name in PER_NODE_CALLS)
    finalize_128 = report["gas"].get("128", {}).get("finalize")
    report["targets"] = {
        "per_node_call_max": PER_NODE_TARGET,
        "finalize_at_128": FINALIZE_TARGET,
        "worst_per_node_call": worst_per_node,
        "finalize_at_128_measured": finalize_128,
        "met": worst_per_node <= PER_NODE_TARGET
        and (finalize_128 is None or finalize_128 <= FINALIZE_TARGET),
    }
    json.dump(report, sys.stdout, indent=2, sort_keys=True)
    print()
    return 0 if report["targets"]["met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
