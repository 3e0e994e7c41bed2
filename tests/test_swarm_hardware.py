"""Members on different CPU generations agree on every round, and an auditor on a third agrees.

Four real `swarm node join` processes on a real Anvil train the digits CNN, valued by the smooth
loss (negative cross-entropy): two run this machine's native kernels and two are capped at AVX2
(torch, MKL and oneDNN), as an older server would compute. Float evaluation would split such
members on coalitions' losses; exact evaluation must make every node compute the finalized tuple
of every round (each node reports the tuple it computed, even where quorum finalized the round
before its own attestation went out). The audit then re-derives every round under the portable
SSE kernels and must print MATCH.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, replace

import pytest
from kernels import kernel_env

from swarmchain.node.chain.coordinator import Coordinator
from swarmchain.node.chain.deploy import connect
from swarmchain.node.chain.deployment import SwarmParams
from swarmchain.node.chain.events import Attested, ChainEvent, RoundFailed, RoundFinalized
from swarmchain.node.devtools.anvil import Anvil
from swarmchain.node.devtools.swarm import LocalSwarm, swarm_executable
from swarmchain.node.protocol.task import ModelSpec, TaskSpec, ValuationSpec, default_task
from swarmchain.node.runtime.events import EventKind

pytestmark = pytest.mark.integration

NODES = 4
CAPPED = {1, 3}  # members whose kernels are capped at AVX2
ROUNDS = range(2, 5)  # round 1 opens with no members and fails at once
WINDOW_S = 60  # every window closes early once all members acted; this bounds a stall


def cnn_task() -> TaskSpec:
    """The digits CNN, valued by negative loss to 1e-6 (where float32 evaluations on two kernel
    families round to different quanta for about one coalition in a hundred)."""
    return replace(
        default_task(),
        name="digits-cnn",
        model=ModelSpec(arch="cnn"),
        valuation=ValuationSpec("neg_loss", 1e-6),
    )


@dataclass(frozen=True)
class Run:
    """What the swarm left behind, and the audit of it under SSE kernels."""

    swarm: LocalSwarm
    events: list[ChainEvent]
    audit: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    workdir = tmp_path_factory.mktemp("swarm-hardware")
    params = SwarmParams.windows(WINDOW_S)
    with Anvil() as anvil:
        swarm = LocalSwarm.create(anvil, workdir, cnn_task(), NODES, params=params)
        with swarm:
            common = ["--min-members", str(NODES), "--until-round", str(ROUNDS[-1])]
            for i in range(NODES):
                env = kernel_env("avx2") if i in CAPPED else None
                swarm.start(i, *common, "--threads", "1", env=env)
            for process in swarm.processes.values():
                assert process.wait(timeout=300) == 0, process.log_tail()
        events = Coordinator(connect(anvil.rpc_url), swarm.deployment).events()
        command = [
            str(swarm_executable()),
            "audit", "latest",
            "--deployment", str(swarm.deployment_file),
            "--rpc", anvil.rpc_url,
            "--store", str(swarm.store),
            "--json",
        ]  # fmt: skip
        audit = subprocess.run(
            command, env=kernel_env("default"), capture_output=True, text=True, timeout=300
        )
    return Run(swarm, events, audit)


def test_every_round_finalizes(run: Run) -> None:
    finalized = [e.round for e in run.events if isinstance(e, RoundFinalized)]
    failed = [e.round for e in run.events if isinstance(e, RoundFailed)]

    assert finalized == list(ROUNDS)
    assert failed == [1]  # the empty opening round only


def test_every_node_computes_the_finalized_tuple_whatever_its_kernels(run: Run) -> None:
    finalized = {e.round: e for e in run.events if isinstance(e, RoundFinalized)}
    for r in ROUNDS:
        outcome = finalized[r].outcome
        assert outcome.reward_total > 0, f"round {r} paid nothing"
        attested = {e.outcome_key for e in run.events if isinstance(e, Attested) and e.round == r}
        # Quorum may finalize before the last attestation is sent; every one sent agrees.
        assert attested == {finalized[r].outcome_key}, f"round {r}"
        expected = ("0x" + outcome.checkpoint_hash.hex(), "0x" + outcome.rewards_root.hex())
        for i, process in run.swarm.processes.items():
            computed = {
                (e.data["checkpoint_hash"], e.data["rewards_root"])
                for e in process.events
                if e.kind == EventKind.VERIFIED and e.round == r
            }
            assert computed == {expected}, f"node {i} ({'AVX2' if i in CAPPED else 'native'})"


def test_the_audit_under_sse_kernels_matches_every_round(run: Run) -> None:
    assert run.audit.returncode == 0, run.audit.stderr
    report = json.loads(run.audit.stdout)
    assert report["result"] == "MATCH", report["summary"]
    replayed = {r["round"] for r in report["rounds"] if r["replayed"]}
    assert replayed == set(ROUNDS)
