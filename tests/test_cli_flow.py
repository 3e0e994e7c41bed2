"""The three user jobs through the `swarm` console script, each command a real subprocess.

A module fixture runs the whole flow once on its own Anvil: publish the task, deploy, send two
members tokens and data, let two ``swarm node join`` processes run one round, and audit it. The
tests then check each command's output against that run, the HTML report in a browser, an audit
of a store with one tampered blob, and the one-line errors user mistakes get.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from browser import load_page, needs_chromium

from swarmchain.node.audit.record import SwarmRecord
from swarmchain.node.audit.replay import Auditor
from swarmchain.node.audit.report import CheckKind, Result
from swarmchain.node.chain.coordinator import Coordinator
from swarmchain.node.chain.deploy import connect
from swarmchain.node.chain.deployment import load_deployment
from swarmchain.node.chain.events import ChainEvent
from swarmchain.node.chain.protocol import Phase
from swarmchain.node.devtools.anvil import Anvil, DevAccount
from swarmchain.node.devtools.harness import SwarmHarness, sample_outcome, sample_reveal
from swarmchain.node.learning.data import load_npz, task_splits
from swarmchain.node.protocol.document import fetch_task
from swarmchain.node.protocol.inputs import round_inputs
from swarmchain.node.protocol.round import RoundInputs
from swarmchain.node.runtime.history import ChainHistory
from swarmchain.storage.cid import CID
from swarmchain.storage.embedded import EmbeddedStore

pytestmark = pytest.mark.integration

SWARM = str(Path(sys.executable).parent / "swarm")
WINDOW_S = "30"  # each window closes early once both members acted
ROUND = 2  # round 1 opens at deployment, before anyone joins, and fails at once


def swarm(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `swarm` with arguments; never raises on a non-zero exit."""
    return subprocess.run(
        [SWARM, *map(str, args)], capture_output=True, text=True, timeout=timeout, check=False
    )


def swarm_json(*args: str | Path) -> Any:
    """Run `swarm ... --json` and parse its output; the command must succeed."""
    done = swarm(*args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@dataclass(frozen=True)
class Flow:
    """What the flow left behind."""

    anvil: Anvil
    work: Path
    deployment: Path
    store: Path
    task: dict[str, Any]
    deployed: dict[str, Any]
    members: list[DevAccount]
    node_events: list[list[dict[str, Any]]]  # each node's JSON event lines
    audit: dict[str, Any]  # `swarm audit latest --json` after the round
    report: Path  # the HTML report that audit wrote (`--html`)

    def site(self, i: int) -> Path:
        """The data file `swarm data split` wrote for member `i`."""
        return self.work / "data" / f"site-{i}.npz"

    def chain(self) -> list[str]:
        """The options that point a command at this swarm."""
        return ["--deployment", str(self.deployment), "--rpc", self.anvil.rpc_url]


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flow]:
    work = tmp_path_factory.mktemp("cli-flow")
    store = work / "store"
    deployment = work / "deployment.json"
    with Anvil() as anvil:
        deployer, members = anvil.accounts[0], anvil.accounts[1:3]
        task = swarm_json("task", "publish", "--store", store)
        deployed = swarm_json(
            "deploy",
            "--rpc", anvil.rpc_url,
            "--task-spec-cid", task["cid"],
            "--task-spec-hash", task["hash"],
            "--out", deployment,
            "--commit-duration", WINDOW_S,
            "--reveal-duration", WINDOW_S,
            "--attest-duration", WINDOW_S,
        )  # fmt: skip
        split = swarm_json("data", "split", "--parts", "2", "--out", work / "data")
        chain = ["--deployment", str(deployment), "--rpc", anvil.rpc_url]
        processes = []
        for i, member in enumerate(members):
            swarm_json(
                "token", "send", "--to", member.address, "--amount", "100",
                "--key", deployer.private_key, *chain,
            )  # fmt: skip
            data = split["files"][i]["path"]
            command = [
                SWARM, "node", "join", *chain,
                "--key", member.private_key,
                "--data", data,
                "--store", str(store),
                "--journal", str(work / f"journal-{i}"),
                "--min-members", "2",
                "--until-round", str(ROUND),
                "--threads", "1",
                "--json",
            ]  # fmt: skip
            processes.append(
                subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            )
        outputs = [p.communicate(timeout=240) for p in processes]
        events = [[json.loads(line) for line in out.splitlines()] for out, _ in outputs]
        codes = [p.returncode for p in processes]
        assert codes == [0, 0], [err[-2000:] for _, err in outputs]
        report = work / "report.html"
        audit = swarm_json("audit", "latest", *chain, "--store", store, "--html", report)
        yield Flow(anvil, work, deployment, store, task, deployed, members, events, audit, report)


def test_deploy_writes_the_deployment_file_nodes_read(flow: Flow) -> None:
    written = json.loads(flow.deployment.read_text())

    assert written["coordinator"] == flow.deployed["coordinator"]
    assert written["params"]["task_spec_cid"] == flow.task["cid"]
    assert written["params"]["task_spec_hash"] == flow.task["hash"]


def test_two_nodes_finalize_the_same_checkpoint(flow: Flow) -> None:
    finalized = [
        [e for e in events if e["kind"] == "finalized" and e["round"] == ROUND]
        for events in flow.node_events
    ]

    assert [len(f) for f in finalized] == [1, 1]
    assert finalized[0][0]["checkpoint_hash"] == finalized[1][0]["checkpoint_hash"]
    assert finalized[0][0]["accepted"] == 2


def _public_fields(inputs: RoundInputs) -> tuple[object, ...]:
    """The inputs' fields, with the checkpoint by its hash (tensors do not compare with ==)."""
    return (
        inputs.chain_id,
        inputs.coordinator,
        inputs.round,
        inputs.seed,
        inputs.reward,
        inputs.spec,
        inputs.base.hash,
        inputs.step is None,
        inputs.submissions,
        inputs.valuation,
        inputs.recipients,
    )


def test_node_and_auditor_build_the_same_round_inputs(flow: Flow) -> None:
    deployment = load_deployment(flow.deployment)
    coordinator = Coordinator(connect(flow.anvil.rpc_url), deployment)
    with EmbeddedStore(flow.store) as store:
        document, genesis = fetch_task(store, *coordinator.task_spec())
        spec = document.spec
        reference = (
            task_splits(spec)[1]
            if spec.reference.source == "holdout"
            else load_npz(store.get(spec.reference.cid))
        )
    history = ChainHistory(coordinator)  # the node's view, read incrementally
    history.refresh()
    record = SwarmRecord.of(coordinator.events(deployment.deploy_block))  # the auditor's view
    checkpoints = {0: genesis}  # round 2 starts from the genesis (round 1 failed)

    def build(events: Sequence[ChainEvent]) -> RoundInputs:
        return round_inputs(
            events,
            ROUND,
            chain_id=deployment.chain_id,
            coordinator=deployment.coordinator,
            document=document,
            checkpoint_of=checkpoints.__getitem__,
            reference=reference,
        )

    node_view, auditor_view = build(history.events), build(record.events)

    assert _public_fields(node_view) == _public_fields(auditor_view)
    assert len(node_view.submissions) == 2
    assert history.submissions(ROUND) == record.rounds[ROUND].submissions()


def test_status_shows_members_round_and_last_checkpoint(flow: Flow) -> None:
    state = swarm_json("status", *flow.chain())

    assert {(m["address"], m["status"]) for m in state["members"]} == {
        (m.address, "active") for m in flow.members
    }
    assert {m["stake"] for m in state["members"]} == {str(100 * 10**18)}
    assert state["round"]["id"] == ROUND + 1
    assert state["checkpoint"]["round"] == ROUND
    finalized = next(e for e in flow.node_events[0] if e["kind"] == "finalized")
    assert state["checkpoint"]["hash"] == finalized["checkpoint_hash"]


def test_rewards_list_shows_what_each_member_was_owed_and_claimed(flow: Flow) -> None:
    member = flow.members[0]
    listed = swarm_json(
        "rewards", "list", *flow.chain(), "--account", member.address,
        "--journal", flow.work / "journal-0",
    )  # fmt: skip

    (row,) = [r for r in listed["rounds"] if r["round"] == ROUND]
    assert int(row["owed"]) > 0
    assert row["claimed"] == row["owed"]  # the node claimed it as the round finalized


def test_audit_rederives_the_checkpoint_and_matches(flow: Flow) -> None:
    report = flow.audit

    assert report["result"] == "MATCH", report["summary"]
    assert report["checkpoint"]["round"] == ROUND
    rounds = {r["round"]: r for r in report["rounds"]}
    assert rounds[ROUND]["replayed"] is True
    assert rounds[ROUND]["accepted"] == 2
    assert {u["node"] for u in rounds[ROUND]["updates"]} == {m.address for m in flow.members}
    assert sum(int(v) for v in rounds[ROUND]["rewards"].values()) > 0


@needs_chromium
def test_audit_html_report_renders_offline_in_chromium(flow: Flow, tmp_path: Path) -> None:
    load = load_page(flow.report, tmp_path / "profile")

    assert load.errors == []
    assert load.requests == [flow.report.resolve().as_uri()]
    assert load.svg_count == 3


def test_audit_of_a_store_with_a_tampered_blob_reports_mismatch_naming_the_cid(
    flow: Flow, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    shutil.copytree(flow.store, store)
    reveal = next(e for e in flow.node_events[0] if e["kind"] == "stored" and e["round"] == ROUND)
    cid = reveal["cid"]  # the node's signed envelope, accepted in the round
    (block,) = (store / "blocks").rglob(str(CID.parse(cid)))
    data = bytearray(block.read_bytes())
    data[len(data) // 2] ^= 0x01
    block.write_bytes(bytes(data))

    done = swarm("audit", "latest", *flow.chain(), "--store", store, "--json")

    assert done.returncode == 3, done.stderr
    report = json.loads(done.stdout)
    assert report["result"] == "MISMATCH"
    assert report["first_mismatch"]["subject"] == cid
    assert report["first_mismatch"]["kind"] == "envelope"
    assert cid in report["summary"]


def _one_line_error(done: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in done.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_bad_rpc_url_is_a_one_line_error(flow: Flow) -> None:
    done = swarm("status", "--deployment", flow.deployment, "--rpc", "http://127.0.0.1:9")

    _one_line_error(done, "no EVM node answers at http://127.0.0.1:9")


def test_unknown_deployment_file_is_a_one_line_error(flow: Flow) -> None:
    done = swarm("audit", "--deployment", flow.work / "nope.json", "--rpc", flow.anvil.rpc_url)

    _one_line_error(done, "nope.json does not exist")


def test_wrong_key_is_a_one_line_error(flow: Flow) -> None:
    done = swarm(
        "node",
        "join",
        *flow.chain(),
        "--key",
        "0x1234",
        "--data",
        flow.work / "data" / "site-0.npz",
    )

    _one_line_error(done, "not a valid private key")


def test_too_few_tokens_to_stake_is_a_one_line_error(flow: Flow) -> None:
    stranger = flow.anvil.accounts[5]  # has ether for gas, but no tokens
    done = swarm(
        "node", "join", *flow.chain(),
        "--key", stranger.private_key,
        "--data", flow.site(0),
        "--store", flow.store,
        "--journal", flow.work / "journal-stranger",
    )  # fmt: skip

    _one_line_error(done, f"{stranger.address} holds 0 tokens, fewer than the stake")


def test_audit_of_a_forged_checkpoint_finalized_by_colluding_stake_reports_mismatch(
    flow: Flow,
) -> None:
    deployment = load_deployment(flow.deployment)
    harness = SwarmHarness(flow.anvil, deployment, flow.anvil.accounts[0].private_key)
    clients = [Coordinator(harness.w3, deployment, m.private_key) for m in flow.members]
    snapshot = harness.rpc("evm_snapshot", [])
    try:
        # Both members (all of the stake) skip training and finalize a made-up tuple.
        forged = harness.open_round()
        reveals = [sample_reveal(c.account, forged) for c in clients]
        for client, reveal in zip(clients, reveals, strict=True):
            client.commit(forged, client.commitment_for(reveal, forged))
        harness.advance_to_phase(Phase.REVEAL)
        for client, reveal in zip(clients, reveals, strict=True):
            client.reveal(forged, reveal)
        harness.advance_to_phase(Phase.ATTEST)
        outcome, _ = sample_outcome([0, 1], {}, label="forged checkpoint")
        for client in clients:
            client.attest(forged, outcome)
        clients[0].finalize(forged, outcome)
        with EmbeddedStore(flow.store) as store:
            record = SwarmRecord.of(clients[0].events())
            report = Auditor(record, deployment, store).audit("latest")
    finally:
        harness.rpc("evm_revert", [snapshot])

    assert report.checkpoint_round == forged
    assert report.result == Result.MISMATCH
    assert report.first_mismatch is not None and report.first_mismatch.round == forged
    failed = {c.kind for c in report.checks if not c.ok and c.round == forged}
    assert {CheckKind.ENVELOPE, CheckKind.CHECKPOINT_HASH, CheckKind.CHECKPOINT_BLOB} <= failed
    assert all(c.ok for c in report.checks if c.round < forged)  # the honest rounds still match
