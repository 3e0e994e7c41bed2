"""Local swarms of real node processes, for tests, the demo, benchmarks and soaks.

`LocalSwarm.create` deploys a ready-to-run swarm on a local Anvil: the task document and genesis
checkpoint in a shared embedded store, the contracts, the deployment file, funded member
accounts, and one data file per member (the task's training pool split by Dirichlet label skew,
with a held-out test set). `LocalSwarm.start` launches ``swarm node join`` for a member as a
separate process; `NodeProcess` collects its JSON events and can wait on them, signal it
(SIGKILL, SIGSTOP, ...) and restart it with the same journal.

It relies on Anvil's ``anvil_setBalance`` and derives member keys from a public label, so it is
for local chains only.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from swarmchain.incentives.shapley import ValuationConfig
from swarmchain.node.chain.deploy import connect
from swarmchain.node.chain.deployment import Deployment, SwarmParams
from swarmchain.node.devtools.anvil import Anvil
from swarmchain.node.devtools.harness import SwarmHarness
from swarmchain.node.devtools.process import ManagedProcess
from swarmchain.node.errors import ToolchainError
from swarmchain.node.learning.data import Dataset, holdout_split, save_npz, task_splits
from swarmchain.node.learning.partition import dirichlet_partition
from swarmchain.node.protocol.task import TaskSpec
from swarmchain.node.runtime.deploy import deploy_task_swarm
from swarmchain.node.runtime.events import EventKind, NodeEvent, parse_event
from swarmchain.storage.embedded import EmbeddedStore

STAKE = 100 * 10**18  # tokens each local member stakes (the default minimum stake)


@dataclass(frozen=True)
class Member:
    """A local member: its account, data file and journal directory."""

    index: int  # position in the swarm's member list (not the chain's bitmap index)
    private_key: str
    address: str
    data: Path
    journal: Path


class NodeProcess(ManagedProcess):
    """One ``swarm node join`` process, its events collected as they are printed.

    Parameters
    ----------
    member
        Who runs it.
    command
        The full command line.
    log
        Where its stderr goes.
    env
        Its environment (the caller's when None), e.g. capped CPU kernels.
    """

    tail_lines = 8

    def __init__(
        self,
        member: Member,
        command: Sequence[str],
        log: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"node {member.index}", log, stop_timeout_s=30.0)
        self.member = member
        self.env = env
        self.log = log
        self.events: list[NodeEvent] = []
        self._command = list(command)
        self._lock = threading.Condition()
        self._reader: threading.Thread | None = None

    def command(self) -> list[str]:
        """The ``swarm node join`` command line."""
        return list(self._command)

    def start(self) -> Self:
        """Start the process (again, after it exited or was killed); it is not waited on."""
        process = self.launch(env=self.env, pipe_stdout=True)
        self._reader = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._reader.start()
        return self

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        try:
            for line in process.stdout:
                try:
                    event = parse_event(line)
                except (ValueError, KeyError):
                    continue
                with self._lock:
                    self.events.append(event)
                    self._lock.notify_all()
        finally:
            with self._lock:  # every event is in: waiters may now give up on an exited node
                self._lock.notify_all()

    @property
    def _read_all(self) -> bool:
        """Whether the process closed its output and every event in it has been read."""
        return self._reader is not None and not self._reader.is_alive()

    def kill(self) -> None:
        """Crash the process with SIGKILL and reap it."""
        self.signal(signal.SIGKILL)
        self.wait()

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for the process to exit; returns its exit code.

        Raises
        ------
        TimeoutError
            Naming the node, its last events and the log's tail, if it still runs after
            `timeout` seconds.
        """
        assert self._process is not None
        try:
            code = self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise self._timed_out(f"still runs after {timeout}s") from None
        if self._reader is not None:
            self._reader.join(timeout=5)
        return code

    def stop(self, timeout: float | None = None, *, kill: bool = False) -> None:
        """Ask the node to stop (SIGTERM, SIGCONT in case it is stalled), SIGKILL if it hangs.

        Parameters
        ----------
        timeout
            Seconds to wait before SIGKILL; 30 when None.
        kill
            Send SIGKILL at once.
        """
        super().stop(timeout, kill=kill)
        if self._reader is not None:
            self._reader.join(timeout=5)

    def of_kind(self, kind: EventKind, round_id: int | None = None) -> list[NodeEvent]:
        """Events of one kind (and round) so far."""
        with self._lock:
            return [
                e
                for e in self.events
                if e.kind == kind and (round_id is None or e.round == round_id)
            ]

    def wait_for(
        self, predicate: Callable[[NodeEvent], bool], timeout: float, what: str = "an event"
    ) -> NodeEvent:
        """Block until an event satisfying `predicate` arrives (earlier events count).

        Raises
        ------
        TimeoutError
            Naming `what`, the node, its last events and the log's tail, when none arrives in
            time.
        """
        deadline = time.monotonic() + timeout
        seen = 0
        with self._lock:
            while True:
                for event in self.events[seen:]:
                    if predicate(event):
                        return event
                seen = len(self.events)
                left = deadline - time.monotonic()
                # An exited node may still have events in the pipe: give up once all are read.
                if left <= 0 or (self._read_all and seen == len(self.events)):
                    break
                self._lock.wait(min(left, 0.5))
        raise self._timed_out(f"gave no {what} within {timeout}s (exit code {self.returncode})")

    def _timed_out(self, what: str) -> TimeoutError:
        """A timeout naming the node, `what` went wrong, its last events and its log's tail."""
        with self._lock:
            last = " | ".join(e.describe() for e in self.events[-5:]) or "(none)"
        return TimeoutError(
            f"node {self.member.index} ({self.member.address}) {what}; "
            f"last events: {last}; log: {self.log_tail()}"
        )


def swarm_executable() -> Path:
    """The ``swarm`` console script of the running environment.

    Raises
    ------
    ToolchainError
        If the package is not installed with its script (``make setup`` installs it).
    """
    found = shutil.which("swarm", path=str(Path(sys.executable).parent))
    if found is None:
        raise ToolchainError(f"no `swarm` script next to {sys.executable}", hint="run `make setup`")
    return Path(found)


@dataclass
class LocalSwarm:
    """A swarm deployed on a local Anvil, with its members' accounts and data files."""

    anvil: Anvil
    workdir: Path
    spec: TaskSpec
    deployment: Deployment
    deployment_file: Path
    store: Path  # the shared embedded store directory
    members: list[Member]
    test_set: Dataset  # held out from every member's data
    processes: dict[int, NodeProcess] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        anvil: Anvil,
        workdir: Path,
        spec: TaskSpec,
        nodes: int,
        *,
        params: SwarmParams | None = None,
        valuation: ValuationConfig | None = None,
        alpha: float = 0.5,
        test_size: int = 300,
        seed: int = 0,
    ) -> LocalSwarm:
        """Deploy a swarm for `spec` and prepare `nodes` funded members with their data.

        Parameters
        ----------
        anvil
            The running local chain.
        workdir
            Where the store, deployment file, data files, journals and logs go.
        spec
            The task (a digits task with a holdout reference set).
        nodes
            Members to prepare.
        params
            Coordinator parameters (windows, quorum, rewards); the task fields are filled in.
        valuation
            How contributions are valued (the incentives package's default when None).
        alpha
            Dirichlet concentration of the members' label skew.
        test_size
            Examples of the training pool held out as the test set.
        seed
            Seeds the test split and the partition.
        """
        workdir.mkdir(parents=True, exist_ok=True)
        store_dir = workdir / "store"
        deployer = anvil.accounts[0]
        deployment_file = workdir / "deployment.json"
        with EmbeddedStore(store_dir) as store:
            deployment = deploy_task_swarm(
                connect(anvil.rpc_url),
                deployer.private_key,
                store,
                spec,
                deployment_file,
                params,
                valuation,
            )
        harness = SwarmHarness(anvil, deployment, deployer.private_key)
        pool, _ = task_splits(spec)
        train, test = holdout_split(pool, test_size, seed)
        parts = dirichlet_partition(
            train.y.numpy(), nodes, alpha, seed, min_size=spec.train.batch_size
        )
        members = []
        for i, part in enumerate(parts):
            account = harness.new_member(deployment.params.min_stake, label="node")
            data = workdir / f"node-{i}.npz"
            save_npz(train.subset(part), data)
            members.append(
                Member(i, account.private_key, account.address, data, workdir / f"journal-{i}")
            )
        return cls(anvil, workdir, spec, deployment, deployment_file, store_dir, members, test)

    def command(self, index: int, *options: str, store: Path | None = None) -> list[str]:
        """The ``swarm node join`` command line of member `index`, plus extra options.

        The member uses the shared embedded store unless `store` names its own.
        """
        member = self.members[index]
        return [
            str(swarm_executable()),
            "node",
            "join",
            "--deployment", str(self.deployment_file),
            "--key", member.private_key,
            "--data", str(member.data),
            "--rpc", self.anvil.rpc_url,
            "--store", str(store or self.store),
            "--journal", str(member.journal),
            "--events", "json",
            *options,
        ]  # fmt: skip

    def start(
        self,
        index: int,
        *options: str,
        store: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> NodeProcess:
        """Start member `index` as a node process (the same journal on every start), in the
        environment `env` (the caller's when None)."""
        command = self.command(index, *options, store=store)
        log = self.workdir / f"node-{index}.log"
        process = NodeProcess(self.members[index], command, log, env)
        self.processes[index] = process.start()
        return process

    def stop_all(self) -> None:
        """Stop every node process."""
        for process in self.processes.values():
            process.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()
