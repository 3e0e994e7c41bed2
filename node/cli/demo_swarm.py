"""What `swarm demo` runs (see `swarmchain.node.cli.demo`): the swarm it prepares and watches, the
baseline without the attacker, the audit and report, and the summary it prints."""

from __future__ import annotations

import io
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table

from swarmchain.node.audit.html import render_html
from swarmchain.node.audit.record import RoundRecord, SwarmRecord
from swarmchain.node.audit.replay import Auditor
from swarmchain.node.audit.report import AuditReport, Result, short, tokens
from swarmchain.node.chain.coordinator import Coordinator
from swarmchain.node.chain.deploy import connect
from swarmchain.node.chain.deployment import SwarmParams
from swarmchain.node.cli.display import NodeView
from swarmchain.node.devtools.anvil import Anvil
from swarmchain.node.devtools.harness import SwarmHarness
from swarmchain.node.devtools.swarm import LocalSwarm, Member, NodeProcess
from swarmchain.node.errors import ConfigError, SwarmchainError
from swarmchain.node.learning.data import (
    Dataset,
    check_dataset,
    holdout_split,
    save_npz,
    task_splits,
)
from swarmchain.node.learning.partition import dirichlet_partition
from swarmchain.node.learning.training import apply_delta, train_local
from swarmchain.node.protocol.checkpoint import Checkpoint
from swarmchain.node.protocol.document import TaskDocument, fetch_task
from swarmchain.node.protocol.evaluation import exact_metrics
from swarmchain.node.protocol.inputs import round_inputs
from swarmchain.node.protocol.round import Contribution, combine_round, one_thread
from swarmchain.node.protocol.task import DataSpec, ReferenceSpec, TaskSpec, default_task
from swarmchain.node.runtime.config import load_node_data
from swarmchain.node.runtime.deploy import deploy_task_swarm
from swarmchain.node.runtime.local import AttackPlan, local_update
from swarmchain.storage.embedded import EmbeddedStore

MARKER = ".swarm-demo"  # marks a directory this command made, so a rerun may clear it
REFERENCE_SIZE = 300  # examples of --data held out as the reference set
STARTUP_S = 240  # how long all nodes may take to start and join
ROUND_ALLOWANCE = 3  # a round may take this many times its 3 windows (a stall, a retry)


class DemoError(SwarmchainError):
    """The demo swarm did not complete: a node failed, or rounds stalled."""


@dataclass(frozen=True)
class DemoResult:
    """What the demo ran and found."""

    swarm: LocalSwarm
    attacker: int | None  # the attacking member's position, if any
    attack: str  # the --attack value ("none" without one)
    report: AuditReport
    baseline: dict[int, float]  # round -> accuracy of the run without the attacker
    centralised: float  # accuracy of the same network trained on all members' data in one place
    names: dict[str, str]  # address -> display name
    report_path: Path
    wall_s: float

    def to_json(self) -> dict[str, Any]:
        """The summary: the issue's shape (rounds, rewards, slashed, audit, report) and more."""
        rewards: dict[str, int] = dict.fromkeys(self.names, 0)
        slashed: dict[str, int] = dict.fromkeys(self.names, 0)
        claimed: dict[str, int] = dict.fromkeys(self.names, 0)
        rounds = []
        for r in self.report.rounds:
            for node, amount in r.rewards.items():
                rewards[node] = rewards.get(node, 0) + amount
            for node, amount in r.claimed.items():
                claimed[node] = claimed.get(node, 0) + amount
            for s in r.slashes:
                slashed[s.node] = slashed.get(s.node, 0) + s.amount
            if r.state != "finalized" and not r.updates:
                continue  # the round opened before any member joined
            rounds.append(
                {
                    "round": r.round,
                    "state": r.state,
                    "accuracy": r.accuracy,
                    "baseline_accuracy": self.baseline.get(r.round),
                    "accepted": r.accepted,
                    "rejected": r.rejected,
                    "slashed": [s.node for s in r.slashes],
                }
            )
        first = self.report.first_mismatch
        return {
            "rounds": rounds,
            "rewards": rewards,
            "claimed": claimed,
            "slashed": slashed,
            "audit": {
                "result": self.report.result.value,
                "summary": self.report.summary(),
                "first_mismatch": None if first is None else first.to_json(),
                "checkpoint_cid": self.report.checkpoint_cid,
                "checkpoint_hash": self.report.checkpoint_hash,
            },
            "report": str(self.report_path),
            "nodes": [
                {
                    "index": m.index,
                    "address": m.address,
                    "name": self.names[m.address],
                    "attacker": m.index == self.attacker,
                }
                for m in self.swarm.members
            ],
            "attack": self.attack,
            "deployment": str(self.swarm.deployment_file),
            "genesis_accuracy": self.report.genesis_accuracy,
            "final_accuracy": rounds[-1]["accuracy"] if rounds else None,
            "centralised_accuracy": self.centralised,
            "wall_s": round(self.wall_s, 1),
        }


# ---- preparing the swarm -----------------------------------------------------------------------


def _clear(out: Path) -> None:
    """Make `out` an empty directory this command owns."""
    if out.exists():
        if not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).exists()):
            raise ConfigError(
                f"{out} exists and was not made by `swarm demo`",
                hint="pass --out with a new or empty directory",
            )
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).touch()


def _task_and_pool(
    store: EmbeddedStore, data: Path | None, labels: Path | None
) -> tuple[TaskSpec, Dataset, Dataset]:
    """The task, the members' training pool and the reference set.

    Without `data`: the default task on the bundled digits (its holdout is the reference set).
    With it: the default model and rule on the user's examples; a seeded holdout of them is the
    reference set, stored by CID so that every member and auditor evaluates on the same bytes.
    """
    if data is None:
        spec = default_task()
        pool, reference = task_splits(spec)
        return spec, pool, reference
    examples = load_node_data(data, labels)
    if len(examples) < 2 * REFERENCE_SIZE:
        raise ConfigError(
            f"{data} holds {len(examples)} examples; the demo needs at least {2 * REFERENCE_SIZE}"
        )
    pool, reference = holdout_split(examples, REFERENCE_SIZE, seed=0)
    buffer = io.BytesIO()
    np.savez(buffer, x=reference.x.numpy(), y=reference.y.numpy())
    cid = store.put(buffer.getvalue())
    base = default_task()
    spec = replace(
        base,
        name=f"{data.stem}-mlp",
        data=DataSpec(
            dataset=data.stem,
            input_shape=tuple(int(n) for n in examples.x.shape[1:]),
            num_classes=max(2, int(examples.y.max()) + 1),
        ),
        reference=ReferenceSpec(source="cid", cid=cid),
    )
    check_dataset(examples, spec.data)
    return spec, pool, reference


def prepare_swarm(
    anvil: Anvil,
    out: Path,
    nodes: int,
    window_s: int,
    data: Path | None,
    labels: Path | None,
    *,
    alpha: float = 0.5,
    seed: int = 0,
) -> LocalSwarm:
    """Publish the task, deploy, fund `nodes` members and write their data files.

    Returns
    -------
    LocalSwarm
        The swarm, ready to start; its ``test_set`` is the task's reference set.

    Raises
    ------
    ConfigError
        For data that cannot be loaded or split among the nodes.
    """
    store_dir = out / "store"
    deployer = anvil.accounts[0]
    deployment_file = out / "deployment.json"
    with EmbeddedStore(store_dir) as store:
        spec, pool, reference = _task_and_pool(store, data, labels)
        params = SwarmParams.windows(window_s)
        deployment = deploy_task_swarm(
            connect(anvil.rpc_url), deployer.private_key, store, spec, deployment_file, params
        )
    parts = dirichlet_partition(pool.y.numpy(), nodes, alpha, seed, min_size=spec.train.batch_size)
    harness = SwarmHarness(anvil, deployment, deployer.private_key)
    members = []
    for i, part in enumerate(parts):
        account = harness.new_member(deployment.params.min_stake, label="demo")
        path = out / f"node-{i}.npz"
        save_npz(pool.subset(part), path)
        members.append(Member(i, account.private_key, account.address, path, out / f"journal-{i}"))
    return LocalSwarm(anvil, out, spec, deployment, deployment_file, store_dir, members, reference)


# ---- running it --------------------------------------------------------------------------------


def _names(swarm: LocalSwarm, attacker: int | None, attack: str) -> dict[str, str]:
    return {
        m.address: f"node {m.index}" + (" (attacker)" if m.index == attacker else "")
        for m in swarm.members
    }


def _watch(
    processes: Mapping[int, NodeProcess],
    names: Mapping[str, str],
    rounds: int,
    timeout_s: float,
    console: Console,
) -> None:
    """Show each node's progress until every process exits.

    Raises
    ------
    DemoError
        If a node exits with an error, or the swarm is still running after `timeout_s`.
    """
    views = {i: NodeView(names[p.member.address]) for i, p in processes.items()}
    seen = dict.fromkeys(processes, 0)
    columns = (
        TextColumn("{task.description}", style="bold"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
    )
    deadline = time.monotonic() + timeout_s
    announced: set[int] = set()
    with Progress(*columns, console=console, disable=not console.is_terminal) as bars:
        overall = bars.add_task("swarm", total=rounds, status="starting nodes")
        tasks: dict[int, TaskID] = {
            i: bars.add_task(views[i].name, total=rounds, status="starting") for i in processes
        }
        while True:
            for i, process in processes.items():
                events = process.events[seen[i] :]
                seen[i] += len(events)
                for event in events:
                    views[i].update(event)
                view = views[i]
                trained = len({r for r in view.finalized | view.failed if r > 1})
                bars.update(tasks[i], completed=trained, status=view.last or view.phase)
            lead = max(views.values(), key=lambda v: len(v.finalized))
            for r in sorted(lead.finalized - announced):
                announced.add(r)
                if not console.is_terminal:
                    console.print(
                        f"round {r} finalized: accuracy {100 * (lead.accuracy or 0):.1f}%"
                    )
            bars.update(
                overall,
                completed=len({r for r in lead.finalized if r > 1}),
                status=f"round {lead.round}",
            )
            failed = [p for p in processes.values() if p.returncode not in (None, 0)]
            if failed:
                p = failed[0]
                raise DemoError(
                    f"{names[p.member.address]} exited with code {p.returncode}: {p.log_tail(3)}"
                )
            if all(p.returncode == 0 for p in processes.values()):
                return
            if time.monotonic() > deadline:
                raise DemoError(
                    f"the swarm did not finish {rounds} rounds within {timeout_s:.0f}s",
                    hint="the machine may be overloaded; try --nodes 4 or a longer --window",
                )
            time.sleep(0.2)


def baseline_accuracy(
    swarm: LocalSwarm,
    record: SwarmRecord,
    document: TaskDocument,
    genesis: Checkpoint,
    attacker: int | None,
) -> dict[int, float]:
    """Accuracy per finalized round of the same swarm without its attacker.

    The honest members train from the baseline's own checkpoints with exactly the seeds their
    node processes used, and the runtime's pure round function (`combine_round`) aggregates
    them under each round's recorded seed. The round computation is deterministic, so this is
    the run the swarm would have made without the attacker; with no attacker it reproduces the
    swarm's own accuracy exactly.

    Parameters
    ----------
    swarm
        The swarm that ran (its members' data files and the reference set).
    record
        The chain's record of the run (round seeds, bases, member indices).
    document, genesis
        The task document (valuation settings) and its genesis checkpoint.
    attacker
        The attacking member's position, left out; None keeps every member.

    Returns
    -------
    dict[int, float]
        Round id -> accuracy on the task's reference set.
    """
    spec = document.spec
    honest = [m for m in swarm.members if m.index != attacker]
    data = {m.address: load_node_data(m.data, None) for m in honest}
    indices = {node: joined.index for node, joined in record.members.items()}
    states: dict[int, Checkpoint] = {0: genesis}
    out: dict[int, float] = {}
    finalized: list[RoundRecord] = [record.rounds[r] for r in record.finalized_rounds()]
    with one_thread():
        for rec in finalized:
            base = states[rec.base_round]
            contributions = []
            for m in honest:
                update = local_update(
                    spec, base.state, data[m.address], round_id=rec.round, node=m.address
                )
                contributions.append(
                    Contribution(indices[m.address], m.address, update.num_samples, update.delta)
                )
            inputs = round_inputs(
                record.events,
                rec.round,
                chain_id=swarm.deployment.chain_id,
                coordinator=swarm.deployment.coordinator,
                document=document,
                checkpoint_of=states.__getitem__,
                reference=swarm.test_set,
            )
            states[rec.round] = combine_round(inputs, contributions).checkpoint
            out[rec.round] = exact_metrics(spec, [states[rec.round].state], swarm.test_set)[
                0
            ].accuracy
    return out


def centralised_accuracy(swarm: LocalSwarm, genesis: Checkpoint, rounds: int) -> float:
    """The reference-set accuracy of the same network trained centrally on the pooled data.

    Every member's examples in one place, trained from the genesis for as many epochs as a
    member runs in the whole demo (``rounds * local_epochs``): what the swarm would reach if the
    data could be shared, the yardstick for its own final accuracy.
    """
    spec = swarm.spec
    parts = [load_node_data(m.data, None) for m in swarm.members]
    pooled = Dataset(torch.cat([p.x for p in parts]), torch.cat([p.y for p in parts]))
    central = replace(
        spec, train=replace(spec.train, local_epochs=rounds * spec.train.local_epochs)
    )
    with one_thread():
        update = train_local(central, genesis.state, pooled, seed=spec.train.seed)
        state = apply_delta(genesis.state, update.delta)
        return exact_metrics(spec, [state], swarm.test_set)[0].accuracy


def run_demo(
    nodes: int,
    rounds: int,
    attack: str,
    data: Path | None,
    labels: Path | None,
    out: Path,
    window_s: int,
    console: Console,
) -> DemoResult:
    """Run the whole demo (see the module docstring) and return what it found.

    Raises
    ------
    ConfigError
        For bad options or data.
    DemoError
        If the swarm does not complete its rounds.
    ToolchainError
        If Anvil cannot start.
    """
    started = time.monotonic()
    plan = None if attack == "none" else AttackPlan.parse(attack)
    if nodes < 2 or (plan is not None and nodes < 3):
        raise ConfigError(f"--nodes must be at least {2 if plan is None else 3}, got {nodes}")
    if rounds < 1:
        raise ConfigError(f"--rounds must be at least 1, got {rounds}")
    _clear(out)
    attacker = nodes - 1 if plan is not None else None
    # Round 1 opens at deployment, before anyone joins, and fails at once; rounds 2.. train.
    last_round = rounds + 1
    with Anvil(state_file=out / "chain-state.json") as anvil:
        console.print(f"Anvil chain at {anvil.rpc_url}; deploying and funding {nodes} members")
        swarm = prepare_swarm(anvil, out, nodes, window_s, data, labels)
        names = _names(swarm, attacker, attack)
        with swarm:
            for m in swarm.members:
                options = ["--min-members", str(nodes), "--until-round", str(last_round)]
                # On the CPU, as the in-process baseline trains: float training differs by device.
                options += ["--threads", "1", "--device", "cpu"]
                if m.index == attacker:
                    options += ["--attack", attack]
                swarm.start(m.index, *options)
            timeout = STARTUP_S + rounds * ROUND_ALLOWANCE * 3 * window_s
            _watch(swarm.processes, names, rounds, timeout, console)
        coordinator = Coordinator(connect(anvil.rpc_url), swarm.deployment)
        record = SwarmRecord.of(coordinator.events())
    console.print("auditing the final checkpoint; re-running the honest members in-process")
    configured = record.configured
    with EmbeddedStore(swarm.store) as store:
        report = Auditor(record, swarm.deployment, store).audit("latest")
        document, genesis = fetch_task(store, configured.task_spec_cid, configured.task_spec_hash)
    baseline = baseline_accuracy(swarm, record, document, genesis, attacker)
    centralised = centralised_accuracy(swarm, genesis, rounds)
    report_path = out / "report.html"
    intro = (
        f"{nodes} node processes on a local Anvil chain, "
        + (f"node {attacker} attacking with {attack!r}; " if attacker is not None else "")
        + f"{rounds} round(s) of the task {swarm.spec.name!r}. The dashed line is the honest "
        "members re-run in-process with the same seeds"
        + (", without the attacker." if attacker is not None else ".")
    )
    report_path.write_text(
        render_html(report, title="Swarmchain demo", baseline=baseline, names=names, intro=intro)
    )
    return DemoResult(
        swarm,
        attacker,
        attack,
        report,
        baseline,
        centralised,
        names,
        report_path,
        time.monotonic() - started,
    )


def print_summary(result: DemoResult, console: Console) -> None:
    """Print the demo's summary tables, audit result and report path.

    Parameters
    ----------
    result
        What `run_demo` returned.
    console
        Where to print.
    """
    summary = result.to_json()
    table = Table(title="Accuracy per round (reference set)")
    for column in ("round", "accuracy", "without attacker", "accepted", "rejected", "slashed"):
        table.add_column(column, justify="left" if column == "slashed" else "right")
    for r in summary["rounds"]:
        base = r["baseline_accuracy"]
        table.add_row(
            str(r["round"]) + ("" if r["state"] == "finalized" else f" ({r['state']})"),
            "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.1f}%",
            "-" if base is None else f"{100 * base:.1f}%",
            str(r["accepted"]),
            str(r["rejected"]),
            ", ".join(result.names[n].split(" (")[0] for n in r["slashed"]) or "-",
        )
    console.print(table)
    final = summary["final_accuracy"]
    console.print(
        f"final accuracy {'-' if final is None else f'{100 * final:.1f}%'}; the same network "
        f"trained centrally on all members' data: {100 * summary['centralised_accuracy']:.1f}%"
    )
    nodes = Table(title="Rewards and slashes per node (tokens)")
    for column in ("node", "address", "rewards", "claimed", "slashed"):
        nodes.add_column(
            column, justify="right" if column in ("rewards", "claimed", "slashed") else "left"
        )
    for m in summary["nodes"]:
        address = m["address"]
        nodes.add_row(
            m["name"],
            short(address, 8),
            tokens(summary["rewards"][address]),
            tokens(summary["claimed"][address]),
            tokens(summary["slashed"][address]),
        )
    console.print(nodes)
    style = "green" if result.report.result == Result.MATCH else "red"
    console.print(f"audit: [bold {style}]{result.report.summary()}[/]")
    console.print(f"report: {result.report_path}")
    console.print(f"finished in {result.wall_s:.0f}s")
