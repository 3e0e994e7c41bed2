"""The swarm node: a resumable state machine driven by chain state and a local journal.

There is no leader and no coordinator process. Every `SwarmNode` looks at the chain whenever the
coordinator emits an event (a log subscription, `node.chain.watch`) and at least every `poll_s`,
and does whatever the current round still needs from it. A node that has committed and only waits
for the others' training needs no clock until the commit window would close: while subscribed it
looks only when woken (at least every `QUIET_WAIT_S`), leaving the cores to the nodes that train.

========  ==================================================================================
phase     what the node does (each step only if the chain does not show it done already)
========  ==================================================================================
commit    train from the round's base checkpoint, encode, (encrypt,) store the update and its
          signed envelope, journal the secret, then commit
reveal    reveal the journaled update whose commitment the chain holds
attest    fetch and verify every revealed update, aggregate, value, save the reward tree,
          journal the outcome, then attest; finalize at once if that attestation made quorum
ended     finalize a tuple at quorum (any node may), or fail the round once its windows are over
closed    load the new checkpoint, claim this node's reward, slash offenders when it is this
          node's turn (lazily: an offender is also slashed at its own next commit); done on a
          second thread while the node trains in the next round (else while it waits for the
          others' training, or on leaving), so that no phase waits for it
========  ==================================================================================

Look before you send: each transaction follows a read showing that the chain still needs it,
and the journal keeps the secrets behind a commitment before the commitment is sent, so a node
killed at any instant and restarted resumes without sending anything twice or losing a reward.
A phase whose deadline (less a safety margin) has passed is skipped. Chain and store failures
are retried with backoff, so a restarted chain (or store) only pauses the node.

Every decision about a round's outcome is `node.protocol.round.compute_round`, a pure function
of public inputs, so every honest node attests the identical tuple.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, cast

import torch
from eth_typing import ABIEvent
from eth_utils.abi import event_abi_to_log_topic
from threadpoolctl import threadpool_limits

from incentives.claims import load_reward_tree, save_reward_tree
from incentives.merkle import RewardTree
from node.aggregation.fixed_point import set_threads as set_aggregation_threads
from node.chain.abis import abi_of
from node.chain.coordinator import Coordinator, RoundInfo
from node.chain.deploy import connect
from node.chain.deployment import Deployment, load_deployment
from node.chain.events import Attested
from node.chain.protocol import (
    MemberStatus,
    Outcome,
    Phase,
    Reveal,
    RoundStatus,
    SubmissionState,
    decode_bitmap,
)
from node.chain.reverts import (
    AlreadyAttested,
    AlreadyClaimed,
    AlreadyCommitted,
    AlreadyRevealed,
    AlreadySlashed,
    ContractRevert,
    NotSlashable,
    QuorumReached,
    RoundAlreadyFinalized,
    RoundNotExpired,
    UnknownRound,
    WrongRound,
)
from node.chain.tx import Transaction
from node.chain.watch import LogWatch
from node.errors import ChainError, ConfigError, StorageError
from node.learning.data import Dataset, check_dataset, load_npz, task_splits
from node.learning.training import evaluate
from node.protocol.checkpoint import Checkpoint, decode_checkpoint
from node.protocol.document import TaskDocument, fetch_task
from node.protocol.hashing import content_hash
from node.protocol.inputs import round_inputs
from node.protocol.round import RoundInputs, RoundResult, compute_round, one_thread
from node.protocol.verify import CannotJudge
from node.runtime.config import NodeConfig, load_node_data
from node.runtime.events import EventKind, EventSink, NodeEvent
from node.runtime.heap import keep_freed_heap
from node.runtime.history import ChainHistory
from node.runtime.journal import Journal, Record
from node.runtime.local import local_update
from node.runtime.slashing import slash_plan
from node.runtime.slots import StopWaiting, TrainingSlots
from storage.codec import encode_update
from storage.deadline import BLOB_DEADLINE_S, BLOCK_DEADLINE_S
from storage.envelope import Manifest, decrypt_blob, encrypt_blob, sign_manifest
from storage.errors import BlockNotFound, StoreTimeout, StoreUnavailable
from storage.gateway import BlockServer
from storage.keys import NodeKeys
from storage.store import EmbeddedStore, Store, open_store

KEYS_FILE = "node-keys.json"
# Coordinator events that can end a node's wait: a window closing early (the last commit,
# reveal or attestation), a quorum, a round closing and the next opening, a member joining (the
# first round opens once enough joined). Claims, slashes and funding change nothing a node
# waits on; deadlines pass without any event, so the node also looks every `poll_s`.
WAKING_EVENTS = ("Joined", "Committed", "Revealed", "Attested", "RoundFinalized", "RoundFailed")
QUIET_WAIT_S = 5.0  # longest wait of a node that only waits for the others' training
REWARDS_DIR = "rewards"
MAX_BACKOFF_S = 5.0
KEEP_CHECKPOINTS = 3  # finalized checkpoints kept in memory (a base, its base, one spare)
FETCH_PATIENCE_S = 10.0  # how long a blob a peer may still be serving is retried
BENIGN = {  # reverts that mean "someone else already did it", by action
    "commit": (AlreadyCommitted,),
    "reveal": (AlreadyRevealed,),
    "attest": (AlreadyAttested, WrongRound),  # others reached quorum and finalized first
    "finalize": (RoundAlreadyFinalized, WrongRound),
    "fail": (RoundAlreadyFinalized, WrongRound, QuorumReached, RoundNotExpired),
    "slash": (AlreadySlashed, NotSlashable),
    "claim": (AlreadyClaimed,),
}
_SENT_EVENT = {
    "commit": EventKind.COMMITTED,
    "reveal": EventKind.REVEALED,
    "attest": EventKind.ATTESTED,
    "finalize": EventKind.FINALIZE_SENT,
    "fail": EventKind.FAIL_SENT,
    "slash": EventKind.SLASH_SENT,
    "claim": EventKind.CLAIMED,
}


class NodeStopped(Exception):
    """Raised inside the loop when the stop event is set during a wait."""


@dataclass
class _RoundClock:
    """Where one round's wall time went, from this node's point of view: from when the node
    first saw the round open to when it first saw it closed."""

    seen: float = field(default_factory=time.monotonic)  # when the node first saw the round
    parts: dict[str, float] = field(default_factory=dict)  # seconds by part
    final: dict[str, float] | None = None  # the summary, frozen when the round closed

    def add(self, part: str, seconds: float) -> None:
        if self.final is None:
            self.parts[part] = self.parts.get(part, 0.0) + seconds

    def stop(self) -> None:
        """Freeze the summary: the round is over (what the node does for it later is not)."""
        if self.final is None:
            self.final = self.summary()

    def summary(self) -> dict[str, float]:
        if self.final is not None:
            return self.final
        total = time.monotonic() - self.seen
        busy = {k: round(v, 4) for k, v in sorted(self.parts.items())}
        return {**busy, "round": round(total, 4), "waiting": round(total - sum(busy.values()), 4)}


def _transient(err: Exception) -> bool:
    """Whether an error is worth retrying: the chain or the store was unreachable."""
    if isinstance(err, ContractRevert):
        return False
    return isinstance(err, ChainError | StoreUnavailable | StoreTimeout | BlockNotFound)


class SwarmNode:
    """One member of a swarm, running rounds until stopped.

    Parameters
    ----------
    config
        Where the swarm is and how to run.
    on_event
        Called with every `NodeEvent` (from the node's thread).
    """

    def __init__(self, config: NodeConfig, on_event: EventSink | None = None) -> None:
        self.config = config
        self._sink = on_event
        self._stop = threading.Event()
        self._store: Store | None = None
        self._server: BlockServer | None = None
        self._journal: Journal | None = None
        self._watch: LogWatch | None = None
        self._results: dict[tuple[int, bytes], RoundResult] = {}
        self._checkpoints: dict[tuple[int, bytes], Checkpoint] = {}
        self._clocks: dict[int, _RoundClock] = {}
        self._duty_seen: dict[tuple[int, str], float] = {}
        self._skipped: set[tuple[int, str]] = set()
        self._committed: set[int] = set()
        self._attested: set[int] = set()
        self._revealed: set[int] = set()
        self._round = 0  # the open round last seen
        self._quiet_until = 0.0  # monotonic time the commit window closes, while only waiting
        self._block_time = 0  # the latest block's timestamp when last read
        self._block_read_at = 0.0  # wall-clock time of that read
        self._eligibility: dict[int, bool] = {}
        self.index = -1  # this member's bitmap index, known once it joined
        self._fetch_until = 0.0  # monotonic time until which `_fetch` retries missing blobs
        self._announced: set[int] = set()
        self._slots = None if config.train_slots is None else TrainingSlots(config.train_slots)

    # ---- lifecycle ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish its current step and return."""
        self._stop.set()

    def run(self) -> None:
        """Join the swarm (if needed) and run rounds until stopped or `until_round` is settled.

        Raises
        ------
        ConfigError
            For a bad deployment, key, data or task document, or too few tokens to stake.
        VerificationError
            If the task document or genesis checkpoint fails its checks.
        """
        try:
            self._retrying(self._setup)
            reason = "stopped"
            while not self._stop.is_set():
                if self._retrying(self.step):
                    reason = f"round {self.config.until_round} settled"
                    break
                self._wait()
            # Leaving cleanly settles what was reported: the claims this node is owed go out now.
            self._retrying(partial(self._close_rounds, self.next_report))
            self._emit(EventKind.STOPPED, 0, reason=reason)
        except NodeStopped:
            self._emit(EventKind.STOPPED, 0, reason="stopped")
        finally:
            self.close()

    def close(self) -> None:
        """Release the chain subscription, the store, the block server and the journal."""
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        if self._server is not None:
            self._server.__exit__(None, None, None)
            self._server = None
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    def _retrying(self, action: Callable[[], Any]) -> Any:
        """Run `action`, retrying transient chain and store failures with backoff."""
        delay = self.config.poll_s
        while True:
            try:
                return action()
            except (ChainError, StorageError) as err:
                if not _transient(err):
                    raise
                self._emit(EventKind.RETRYING, 0, error=str(err), delay=round(delay, 3))
                if self._stop.wait(delay):
                    raise NodeStopped from err
                delay = min(MAX_BACKOFF_S, delay * 2)

    def _emit(self, kind: EventKind, round_id: int, **data: Any) -> None:
        if self._sink is not None:
            self._sink(NodeEvent(kind, round_id, data))

    # ---- setup -------------------------------------------------------------------------------

    def _setup(self) -> None:
        cfg = self.config
        keep_freed_heap()
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
            # NumPy's BLAS (the exact integer aggregation and valuation) would otherwise start a
            # thread per core, whose spin-waits take CPU from the other nodes on the machine.
            threadpool_limits(cfg.threads, user_api="blas")
            set_aggregation_threads(cfg.threads)
        deployment: Deployment = load_deployment(cfg.deployment)
        self.coordinator = Coordinator(connect(cfg.rpc_url), deployment, cfg.private_key)
        self.address = self.coordinator.account
        if self._watch is None:
            # Between looks the node sleeps until the coordinator emits (or `poll_s` passes):
            # it acts on a closed window, or on its own mined transaction, at once.
            topics = [
                event_abi_to_log_topic(cast(ABIEvent, item))
                for item in abi_of("SwarmCoordinator")
                if item.get("type") == "event" and item["name"] in WAKING_EVENTS
            ]
            self._watch = LogWatch(cfg.rpc_url, deployment.coordinator, topics)
            self._watch.open()
        self.watch = self._watch
        if self._journal is None:
            self._journal = Journal(cfg.journal_dir())
        self.journal = self._journal
        started = self.journal.last("started")
        if started is not None and (
            started["node"] != self.address or started["coordinator"] != deployment.coordinator
        ):
            raise ConfigError(
                f"journal {self.journal.path} belongs to node {started['node']} of swarm "
                f"{started['coordinator']}",
                hint="give each node and swarm its own --journal directory",
            )
        self.keys = self._node_keys(cfg.journal_dir() / KEYS_FILE)
        self.params = self.coordinator.params()
        if self._store is None:
            # A blob that takes more than half the attest window cannot be verified in time.
            patience = min(BLOB_DEADLINE_S, max(1.0, self.params.attest_duration / 2))
            self._store = open_store(
                cfg.store,
                cfg.ipfs_api,
                peers=cfg.peers,
                block_deadline_s=min(BLOCK_DEADLINE_S, patience),
                blob_deadline_s=patience,
            )
            if cfg.serve is not None:
                self._serve(self._store, cfg.serve)
        self.store = self._store
        self.document, genesis = fetch_task(self.store, *self.coordinator.task_spec())
        self.spec = self.document.spec
        if cfg.encrypt and not self.spec.encrypted_updates:
            raise ConfigError(
                f"--encrypt: task {self.spec.name!r} does not allow encrypted updates, so every "
                "member would reject them",
                hint="publish a task with encrypted_updates: true, or run without --encrypt",
            )
        self.genesis = genesis
        self.data = load_node_data(cfg.data, cfg.labels)
        check_dataset(self.data, self.spec.data)
        self.reference = self._reference_set(self.document)
        self.history = ChainHistory(self.coordinator)
        self._join()
        if started is None:
            started = self.journal.append(
                "started",
                node=self.address,
                coordinator=deployment.coordinator,
                chain_id=deployment.chain_id,
                round=self.coordinator.current_round(),
            )
        self.first_round = int(started["round"])
        closed = self.journal.last("closed")
        self.next_close = self.first_round if closed is None else int(closed["round"]) + 1
        self.next_report = self.next_close
        self.rewards_dir = cfg.journal_dir() / REWARDS_DIR
        self._emit(
            EventKind.STARTED,
            self.coordinator.current_round(),
            node=self.address,
            coordinator=deployment.coordinator,
            chain_id=deployment.chain_id,
            task=self.spec.name,
            journal=str(self.journal.path),
        )

    def _node_keys(self, path: Path) -> NodeKeys:
        if path.exists():
            return NodeKeys.load(path)
        keys = NodeKeys.generate()
        keys.save(path)
        return keys

    def _serve(self, store: Store, address: str) -> None:
        if not isinstance(store, EmbeddedStore):
            raise ConfigError("--serve needs the embedded store, not --ipfs-api")
        host, _, port = address.rpartition(":")
        try:
            self._server = BlockServer(store, host or "127.0.0.1", int(port))
        except (ValueError, OSError) as err:
            raise ConfigError(f"cannot serve blocks on {address}: {err}") from None
        self._server.__enter__()

    def _reference_set(self, document: TaskDocument) -> Dataset:
        spec = document.spec
        if spec.reference.source == "holdout":
            return task_splits(spec)[1]
        return load_npz(self.store.get(spec.reference.cid))

    def _join(self) -> None:
        me = self.coordinator.member_info()
        keys = (self.keys.signing_public, self.keys.encryption_public)
        if me.status != MemberStatus.NONE:
            if (me.ed25519_key, me.x25519_key) != keys:
                raise ConfigError(
                    f"{self.address} is a member with other public keys than {KEYS_FILE}",
                    hint="run with the journal directory this account joined with",
                )
            self.index = me.index
            return
        stake = self.config.stake or self.params.min_stake
        balance = self.coordinator.token.balance_of(self.address)
        if balance < stake:
            raise ConfigError(
                f"{self.address} holds {balance} tokens, fewer than the stake {stake}",
                hint="get tokens from the swarm's deployer first",
            )
        tx = self.coordinator.join(stake, *keys)
        self.index = self.coordinator.member_info().index
        if tx is not None:
            round_id = self.coordinator.current_round()
            self._emit(EventKind.JOINED, round_id, stake=stake, index=self.index)

    # ---- the loop ----------------------------------------------------------------------------

    def step(self) -> bool:
        """Look at the chain once and do what the current round needs from this node.

        Returns
        -------
        bool
            True once `until_round` is closed and settled (the node should exit).
        """
        self._quiet_until = 0.0
        info = self._current_info()
        current = info.round
        self._report_rounds(current)
        until = self.config.until_round
        if until is not None and current > until:
            self._close_rounds(current)
            return self.next_close > until
        waiting = self._act(info)
        # Closed rounds are settled (claimed, slashed, journaled) beside this node's training
        # (`_prepare`), else when it only waits for others to train, or at the latest once a
        # second round closed: nothing in the open round depends on that.
        if waiting or self.next_close < current - 1:
            self._close_rounds(current)
        return False

    def _act(self, info: RoundInfo) -> bool:
        """Do what the open round needs from this node in its current phase.

        Returns
        -------
        bool
            Whether the node only waits for the others' training (the open round's commit
            window is open and this node committed, or cannot commit in it).
        """
        current = info.round
        now = self._chain_now()
        phase = _phase_at(info, now)
        if info.active_at_open == 0:
            self._eligible(current)  # reports this account's exit, if that is why
            if phase == Phase.ENDED and self._opens_first_round() and self._duty_due(info, "fail"):
                self._send("fail", current, lambda: self.coordinator.fail_round(current))
            return True
        eligible = self._eligible(current)
        self._announce(info, eligible)
        if phase == Phase.COMMIT and eligible:
            self._commit(info)
        elif eligible and (current, "commit") not in self._skipped and not self._submitted(current):
            self._skip(current, "commit", "the commit window closed before this node committed")
        if phase == Phase.REVEAL:
            self._reveal(info)
        elif phase == Phase.ATTEST and eligible and current not in self._attested:
            self._attest(info)
        if phase in (Phase.ATTEST, Phase.ENDED):
            self._finish(info, phase)
        waiting = phase == Phase.COMMIT and (not eligible or current in self._committed)
        if waiting:
            # Training may have taken seconds since `now` was read.
            self._quiet_until = time.monotonic() + (info.commit_deadline - self._chain_now())
        return waiting

    def _wait(self) -> None:
        """Wait until a coordinator event, or at most `poll_s`, before looking again.

        A node that only waits for the others' training, with a subscription that will wake
        it when they commit, waits longer: until a second before the commit window would close
        by the clock (chain time is read in whole seconds), at most `QUIET_WAIT_S`. A stop
        request, or a subscription that drops, still ends the wait within `poll_s`.
        """
        until = time.monotonic() + self.config.poll_s
        if self.watch.subscribed:
            until = max(until, min(self._quiet_until - 1.0, time.monotonic() + QUIET_WAIT_S))
        while not self._stop.is_set():
            left = until - time.monotonic()
            if left <= 0 or self.watch.wait(min(left, self.config.poll_s)):
                return
            if not self.watch.subscribed:
                return

    def _current_info(self) -> RoundInfo:
        """The open round: the last one seen while it stays open (one read per look)."""
        if self._round:
            with contextlib.suppress(UnknownRound):  # a chain restarted from an older state
                info = self.coordinator.round_info(self._round)
                if info.status == RoundStatus.OPEN:
                    return info
        self._round = self.coordinator.current_round()
        return self.coordinator.round_info(self._round)

    def _eligible(self, round_id: int) -> bool:
        """Whether this node held stake when the round opened (read once per round)."""
        if round_id not in self._eligibility:
            me = self.coordinator.member_info()
            self._eligibility[round_id] = me.stake_at_open > 0
            if me.last_attest_round == round_id:
                self._attested.add(round_id)
            if me.status != MemberStatus.ACTIVE:
                reason = f"this account is {me.status.name.lower()}, no longer an active member"
                self._skip(round_id, "membership", reason)
        return self._eligibility[round_id]

    def _chain_now(self) -> int:
        """The time the next block will carry, at the latest: max(latest block, wall clock).

        The latest block's time is read at most once a second; between reads the wall clock
        carries it forward.
        """
        wall = time.time()
        if wall - self._block_read_at >= 1.0:
            self._block_time = self.coordinator.timestamp()
            self._block_read_at = wall
        return max(self._block_time + int(wall - self._block_read_at), int(wall))

    def _opens_first_round(self) -> bool:
        return self.coordinator.totals().active_members >= self.config.min_members

    def _announce(self, info: RoundInfo, eligible: bool) -> None:
        if info.round in self._announced:
            return
        self._announced.add(info.round)
        self._clocks.setdefault(info.round, _RoundClock())
        self._emit(
            EventKind.ROUND,
            info.round,
            base_round=info.base_round,
            eligible=eligible,
            members=info.active_at_open,
            commit_deadline=info.commit_deadline,
        )

    def _clock(self, round_id: int) -> _RoundClock:
        return self._clocks.setdefault(round_id, _RoundClock())

    def _skip(self, round_id: int, phase: str, reason: str) -> None:
        if (round_id, phase) in self._skipped:
            return
        self._skipped.add((round_id, phase))
        self.journal.append("skipped", round=round_id, phase=phase, reason=reason)
        self._emit(EventKind.SKIPPED, round_id, phase=phase, reason=reason)

    def _in_time(self, round_id: int, phase: str, deadline: int) -> bool:
        """Whether a phase's transaction may still be sent; records a skip if not."""
        if self._chain_now() + self.config.deadline_margin_s < deadline:
            return True
        self._skip(round_id, phase, f"deadline {deadline} passed")
        return False

    def _send(
        self, action: str, round_id: int, call: Callable[[], Transaction | None], **data: Any
    ) -> Transaction | None:
        """Send one transaction (the call reads the chain first), journal and report it."""
        started = time.monotonic()
        try:
            tx = call()
        except BENIGN[action]:
            return None
        except ContractRevert as err:
            # A passed deadline, a round that closed meanwhile, or a state this node did not
            # foresee: the chain refused, nothing was sent, and the step is not retried.
            self._skip(round_id, action, str(err))
            return None
        finally:
            self._clock(round_id).add("chain", time.monotonic() - started)
        if tx is None:
            return None
        self.journal.append(
            "sent", round=round_id, action=action, tx=tx.tx_hash, block=tx.block_number, **data
        )
        self._emit(_SENT_EVENT[action], round_id, tx=tx.tx_hash, **data)
        return tx

    # ---- commit and reveal -------------------------------------------------------------------

    def _submitted(self, round_id: int) -> bool:
        """Whether this node committed in the round (remembered once the chain shows it)."""
        if round_id not in self._committed:
            if self.coordinator.submission(round_id).state == SubmissionState.NONE:
                return False
            self._committed.add(round_id)
        return True

    def _commit(self, info: RoundInfo) -> None:
        r = info.round
        if (r, "commit") in self._skipped or self._submitted(r):
            return
        base = self._base(info)
        record = self.journal.last("update", r)
        if record is None or record["base_cid"] != base.cid:
            record = self._prepare(info, base)
        if record is None or not self._in_time(r, "commit", info.commit_deadline):
            return
        reveal = _reveal_of(record)
        commitment = self.coordinator.commitment_for(reveal, r)
        self._send("commit", r, lambda: self.coordinator.commit(r, commitment))

    def _prepare(self, info: RoundInfo, base: Checkpoint) -> Record | None:
        """Train, publish and journal this node's update for the round (None: the commit
        window closed while the node waited for a training slot)."""
        r = info.round
        clock = self._clock(r)
        with self._settling_beside(r), self._training_slot() as waited:
            if self._slots is not None and not self._in_time(r, "commit", info.commit_deadline):
                return None
            started = time.monotonic()
            update = local_update(
                self.spec,
                base.state,
                self.data,
                round_id=r,
                node=self.address,
                attack=self.config.attack,
                members=info.active_at_open,
            )
            trained = time.monotonic()
        clock.add("training", trained - started)
        self._emit(
            EventKind.TRAINED,
            r,
            num_samples=update.num_samples,
            train_loss=round(update.train_loss, 6),
            seconds=round(trained - started, 4),
            **waited,
            attack=None if self.config.attack is None else self.config.attack.name,
        )
        blob = encode_update(update.delta)
        skipped: list[str] = []
        if self.config.encrypt:
            self.history.refresh()
            blob = encrypt_blob(blob, self.history.recipients(r))
            skipped = self.history.unreachable(r)
        update_cid = self.store.put(blob)
        manifest = Manifest(
            chain_id=self.coordinator.deployment.chain_id,
            coordinator=self.coordinator.address,
            round=r,
            node=self.address,
            base_cid=base.cid,
            update_cid=update_cid,
            content_hash="0x" + content_hash(blob).hex(),
            num_samples=update.num_samples,
            metrics={"train_loss": float(update.train_loss)},
        )
        envelope = sign_manifest(manifest, self.keys)
        envelope_cid = self.store.put(envelope)
        reveal = Reveal(envelope_cid, content_hash(envelope), update.num_samples, os.urandom(32))
        stored = time.monotonic()
        clock.add("storage", stored - trained)
        self._emit(
            EventKind.STORED,
            r,
            cid=envelope_cid,
            update_cid=update_cid,
            seconds=round(stored - trained, 4),
            unreachable=skipped,
        )
        # The secret is on disk before the commitment that depends on it can be sent.
        return self.journal.append(
            "update",
            round=r,
            base_cid=base.cid,
            cid=reveal.cid,
            content_hash="0x" + reveal.content_hash.hex(),
            update_cid=update_cid,
            num_samples=reveal.num_samples,
            salt="0x" + reveal.salt.hex(),
            commitment="0x" + self.coordinator.commitment_for(reveal, r).hex(),
        )

    @contextlib.contextmanager
    def _training_slot(self) -> Iterator[dict[str, float]]:
        """Hold one of the machine's training slots if the node takes turns; yields the TRAINED
        event's ``slot_wait_s`` (nothing when it does not take turns)."""
        if self._slots is None:
            yield {}
            return
        try:
            with self._slots.hold(self._stop) as waited:
                yield {"slot_wait_s": round(waited, 4)}
        except StopWaiting:
            raise NodeStopped from None

    @contextlib.contextmanager
    def _settling_beside(self, current: int) -> Iterator[None]:
        """Settle the reported rounds before `current` on a second thread while the block runs.

        Training leaves this node's chain client, store and journal idle for seconds, and a
        claim mostly waits on the chain, so it goes out meanwhile instead of delaying the next
        phase. A transient failure leaves the rounds for a later step (reported as a retry).
        """
        if self.next_close >= min(self.next_report, current):
            yield
            return
        failed: list[Exception] = []

        def settle() -> None:
            try:
                self._close_rounds(current)
            except Exception as err:  # raised on the node's own thread, after the block
                failed.append(err)

        worker = threading.Thread(target=settle, name="settle", daemon=True)
        worker.start()
        try:
            yield
        finally:
            worker.join()
        for err in failed:
            if not _transient(err):
                raise err
            self._emit(EventKind.RETRYING, current, error=str(err), delay=0.0)

    def _reveal(self, info: RoundInfo) -> None:
        r = info.round
        if (r, "reveal") in self._skipped or r in self._revealed:
            return
        mine = self.coordinator.submission(r)
        if mine.state != SubmissionState.COMMITTED or mine.commitment is None:
            if mine.state != SubmissionState.NONE:
                self._revealed.add(r)
            return
        stored = "0x" + mine.commitment.hex()
        records = [rec for rec in self.journal.of_kind("update", r) if rec["commitment"] == stored]
        if not records:
            self._skip(r, "reveal", "the journal holds no secret for the commitment on chain")
            return
        if not self._in_time(r, "reveal", info.reveal_deadline):
            return
        reveal = _reveal_of(records[-1])
        self._send("reveal", r, lambda: self.coordinator.reveal(r, reveal))
        self._revealed.add(r)

    # ---- attest and close --------------------------------------------------------------------

    def _attest(self, info: RoundInfo) -> None:
        r = info.round
        if (r, "attest") in self._skipped:
            return
        try:
            result = self._result(info)
        except CannotJudge as err:
            # Not a recipient of an encrypted update: it cannot know the tuple, so it abstains.
            self._skip(r, "attest", str(err))
            return
        fields = _outcome_fields(r, result)
        last = self.journal.last("outcome", r)
        if last is None or any(last.get(k) != fields[k] for k in _OUTCOME_KEYS):
            save_reward_tree(self.rewards_dir, r, result.tree)
            self.journal.append("outcome", **fields)
        if not self._in_time(r, "attest", info.attest_deadline):
            return
        tx = self._send(
            "attest",
            r,
            lambda: self.coordinator.attest(r, result.outcome),
            checkpoint_hash="0x" + result.outcome.checkpoint_hash.hex(),
            accepted=sum(v.accepted for v in result.verdicts),
        )
        self._attested.add(r)
        # The attestation that carried the tuple over the quorum finalizes at once; the others
        # wait their staggered turn, by when it is normally done.
        if tx is not None and any(
            isinstance(e, Attested)
            and e.outcome_stake - e.weight < info.required_stake <= e.outcome_stake
            for e in tx.events
        ):
            self._send("finalize", r, lambda: self.coordinator.finalize(r, result.outcome))

    def _finish(self, info: RoundInfo, phase: Phase) -> None:
        """Finalize a tuple at quorum, or fail a round whose windows are over without one."""
        r = info.round
        if info.status != RoundStatus.OPEN:
            return
        if info.leading_stake >= info.required_stake:
            outcome = self._quorum_outcome(info)
            if outcome is not None and self._duty_due(info, "finalize"):
                self._send("finalize", r, lambda: self.coordinator.finalize(r, outcome))
        elif phase == Phase.ENDED and self._duty_due(info, "fail"):
            self._send("fail", r, lambda: self.coordinator.fail_round(r))

    def _quorum_outcome(self, info: RoundInfo) -> Outcome | None:
        """The tuple holding quorum: this node's own if it does, else read from attestations."""
        mine = self._results.get((info.round, info.seed))
        if mine is not None and (
            self.coordinator.outcome_stake(info.round, mine.outcome) >= info.required_stake
        ):
            return mine.outcome
        self.history.refresh()
        for event in self.history.attestations(info.round):
            if event.outcome_stake >= info.required_stake:
                return event.outcome
        return None

    def _duty_due(self, info: RoundInfo, duty: str) -> bool:
        """Whether this node's turn at a duty anyone may do has come (staggered by index)."""
        key = (info.round, duty)
        if key in self._skipped:
            return False
        first = self._duty_seen.setdefault(key, time.monotonic())
        return time.monotonic() - first >= self.config.stagger_s * (self.index % 16 + 1)

    # ---- round inputs ------------------------------------------------------------------------

    def _checkpoint_of(self, round_id: int) -> Checkpoint:
        """The checkpoint a finalized round produced (0: the genesis), fetched if needed."""
        if round_id == 0:
            return self.genesis
        outcome = self.coordinator.finalized_outcome(round_id)
        key = (round_id, outcome.checkpoint_hash)
        cached = self._checkpoints.get(key)
        if cached is None:
            computed = [
                res.checkpoint
                for (rid, _), res in self._results.items()
                if rid == round_id and res.checkpoint.hash == outcome.checkpoint_hash
            ]
            if computed:
                cached = computed[0]
            else:
                blob = self._fetch(outcome.checkpoint_cid, len(self.genesis.blob))
                cached = decode_checkpoint(
                    blob,
                    self.spec,
                    cid=outcome.checkpoint_cid,
                    expected_hash=outcome.checkpoint_hash,
                )
            self._checkpoints[key] = cached
        return cached

    def _base(self, info: RoundInfo) -> Checkpoint:
        return self._checkpoint_of(info.base_round)

    def _fetch(self, cid: str, max_bytes: int) -> bytes:
        """Read a blob, retrying while a peer may still be writing or serving it.

        Verification calls this with a patience that ends before the attest deadline, so an
        update that stays unavailable is rejected in time rather than stalling the round.
        """
        delay = 0.1
        while True:
            try:
                return self.store.get(cid, max_size=max_bytes)
            except (BlockNotFound, StoreUnavailable, StoreTimeout):
                if time.monotonic() + delay > self._fetch_until:
                    raise
                time.sleep(delay)
                delay = min(1.0, delay * 2)

    def round_inputs(self, info: RoundInfo) -> RoundInputs:
        """The public inputs of a round whose reveal window is over."""
        self.history.refresh()
        return round_inputs(
            self.history.events,
            info.round,
            chain_id=self.coordinator.deployment.chain_id,
            coordinator=self.coordinator.address,
            document=self.document,
            checkpoint_of=self._checkpoint_of,
            reference=self.reference,
        )

    def _result(self, info: RoundInfo) -> RoundResult:
        """The round's outcome, computed once per (round, seed)."""
        key = (info.round, info.seed)
        if key not in self._results:
            left = FETCH_PATIENCE_S  # a closed round has no deadline to keep
            if info.status == RoundStatus.OPEN:
                margin = self.config.deadline_margin_s + 2
                left = min(left, info.attest_deadline - self._chain_now() - margin)
            self._fetch_until = time.monotonic() + max(0.0, left)
            inputs = self.round_inputs(info)
            started = time.monotonic()
            result = compute_round(
                inputs, self._fetch, lambda blob, to: decrypt_blob(blob, self.keys, to)
            )
            seconds = time.monotonic() - started
            self._clock(info.round).add("verification", seconds)
            if not self.store.has(result.checkpoint.cid):
                self.store.put(result.checkpoint.blob)
            self._results[key] = result
            self._emit(
                EventKind.VERIFIED,
                info.round,
                accepted=sum(v.accepted for v in result.verdicts),
                rejected={str(v.index): v.reason.value for v in result.verdicts if v.reason},
                checkpoint_hash="0x" + result.outcome.checkpoint_hash.hex(),
                rewards_root="0x" + result.outcome.rewards_root.hex(),
                seconds=round(seconds, 4),
            )
        return self._results[key]

    # ---- closed rounds -----------------------------------------------------------------------

    def _report_rounds(self, current: int) -> None:
        """Report every round that closed since the last look (its clock stops): name a round
        this node missed, load and evaluate a finalized round's checkpoint and tell what this
        node is owed, or tell that the round failed."""
        self.next_report = min(self.next_report, current)
        while self.next_report < current:
            r = self.next_report
            self._clock(r).stop()
            info = self.coordinator.round_info(r)
            self._report_missed(info)
            if info.status == RoundStatus.FINALIZED:
                self._report_finalized(info)
            elif info.status == RoundStatus.FAILED:
                self._emit(
                    EventKind.FAILED,
                    r,
                    leading_stake=str(info.leading_stake),
                    required_stake=str(info.required_stake),
                )
            self.next_report = r + 1

    def _report_missed(self, info: RoundInfo) -> None:
        """Name a round this node took no part in because it did not run through the round's
        commit window (stalled or suspended): it sees such a round only once it closed."""
        r = info.round
        if (r, "commit") in self._skipped or info.active_at_open == 0:
            return
        eligible = self._eligibility.get(r)
        if eligible is None:  # never seen open: a member now, it was one then (no rejoin unseen)
            eligible = (
                any(self._eligibility.values())
                and self.coordinator.member_info().status == MemberStatus.ACTIVE
            )
        if eligible and not self._submitted(r):
            self._skip(r, "commit", "the round closed before this node committed")

    def _close_rounds(self, current: int) -> None:
        """Settle every reported round: claim, slash, then journal it closed."""
        self.next_close = min(self.next_close, self.next_report, current)
        while self.next_close < min(self.next_report, current):
            r = self.next_close
            info = self.coordinator.round_info(r)
            if info.status == RoundStatus.FINALIZED:
                outcome = self.coordinator.finalized_outcome(r)
                self._claim(info, outcome)
                self._slash_offenders(info, outcome)
            elif info.status == RoundStatus.FAILED:
                self._slash_offenders(info, None)
            self.journal.append("closed", round=r, status=info.status.name.lower())
            self._clocks.pop(r, None)
            self.next_close = r + 1
            self._forget(r)

    def _forget(self, closed: int) -> None:
        """Drop what a long run no longer needs: results of closed rounds, and checkpoints
        older than the last few finalized ones (the base of the next round and its own base)."""
        self._results = {k: v for k, v in self._results.items() if k[0] > closed}
        keep = sorted({r for r, _ in self._checkpoints})[-KEEP_CHECKPOINTS:]
        self._checkpoints = {k: v for k, v in self._checkpoints.items() if k[0] in keep}

    def _report_finalized(self, info: RoundInfo) -> None:
        r = info.round
        outcome = self.coordinator.finalized_outcome(r)
        checkpoint = self._checkpoint_of(r)
        tree = self._reward_tree(info, outcome)
        reward = 0 if tree is None else tree.amount_of(self.address)
        with one_thread():
            accuracy = evaluate(
                self.spec, checkpoint.state, self.reference, device=torch.device("cpu")
            ).accuracy
        self._emit(
            EventKind.FINALIZED,
            r,
            checkpoint_hash="0x" + outcome.checkpoint_hash.hex(),
            checkpoint_cid=outcome.checkpoint_cid,
            accepted=len(decode_bitmap(outcome.accepted_bitmap)),
            accuracy=accuracy,
            reward=str(reward),
            timings=self._clock(r).summary(),
        )

    def _reward_tree(self, info: RoundInfo, outcome: Outcome) -> RewardTree | None:
        """The finalized round's reward tree, if this node was accepted in it (recomputed and
        saved if this node did not attest); None, and a skipped claim, if none matches."""
        r = info.round
        if self.index not in decode_bitmap(outcome.accepted_bitmap):
            return None
        tree = load_reward_tree(self.rewards_dir, r)
        if tree is None or tree.root != outcome.rewards_root:
            tree = self._recomputed_tree(info, outcome)
        if tree is None:
            self._skip(r, "claim", "no reward tree matches the finalized root")
        return tree

    def _claim(self, info: RoundInfo, outcome: Outcome) -> None:
        """Claim this node's reward for a finalized round, if it is owed one."""
        r = info.round
        tree = self._reward_tree(info, outcome)
        amount = 0 if tree is None else tree.amount_of(self.address)
        if tree is not None and amount > 0:
            proof = tree.proof(self.address)
            self._send(
                "claim",
                r,
                lambda: self.coordinator.claim(r, self.address, amount, proof),
                amount=str(amount),
            )

    def _recomputed_tree(self, info: RoundInfo, outcome: Outcome) -> RewardTree | None:
        """Recompute a round this node did not attest (it was down): the tree if it matches."""
        try:
            result = self._result(info)
        except CannotJudge:
            return None
        if result.outcome.rewards_root != outcome.rewards_root:
            return None
        save_reward_tree(self.rewards_dir, info.round, result.tree)
        return result.tree

    def _slash_offenders(self, info: RoundInfo, outcome: Outcome | None) -> None:
        """Slash the round's offenders (`node.runtime.slashing`) if it is this node's turn.

        Unrevealed and, when finalized, rejected submitters get ``slash``; in a failed round, a
        revealed member left out of attested tuples holding quorum stake gets ``slashRejected``.
        The turn rotates over the members whose reveal stood, so one node sends each slash; if
        that node is down, an unrevealed or finalized-rejected offender is slashed anyway when
        it next commits (a failed round's rejection only by a later turn or anyone's call).
        """
        r = info.round
        self.history.refresh()
        plan = slash_plan(self.history, r, info.required_stake, outcome)
        if plan.sender(r) != self.address:
            return
        for offence in plan.offences:
            if self.coordinator.submission(r, offence.node).state == SubmissionState.SLASHED:
                continue
            call = (
                partial(self.coordinator.slash_rejected, r, offence.node, offence.rejected_by)
                if offence.rejected_by
                else partial(self.coordinator.slash, r, offence.node)
            )
            self._send("slash", r, call, node=offence.node)


def _phase_at(info: RoundInfo, now: int) -> Phase:
    """The window `now` falls in (the chain's own rule, evaluated at the next block's time)."""
    if info.status != RoundStatus.OPEN or now >= info.attest_deadline:
        return Phase.ENDED
    if now < info.commit_deadline:
        return Phase.COMMIT
    if now < info.reveal_deadline:
        return Phase.REVEAL
    return Phase.ATTEST


def _reveal_of(record: Record) -> Reveal:
    return Reveal(
        cid=record["cid"],
        content_hash=bytes.fromhex(record["content_hash"][2:]),
        num_samples=int(record["num_samples"]),
        salt=bytes.fromhex(record["salt"][2:]),
    )


_OUTCOME_KEYS = ("checkpoint_hash", "checkpoint_cid", "bitmap", "rewards_root", "reward_total")


def _outcome_fields(round_id: int, result: RoundResult) -> dict[str, Any]:
    outcome = result.outcome
    return {
        "round": round_id,
        "checkpoint_hash": "0x" + outcome.checkpoint_hash.hex(),
        "checkpoint_cid": outcome.checkpoint_cid,
        "bitmap": "0x" + outcome.accepted_bitmap.hex(),
        "rewards_root": "0x" + outcome.rewards_root.hex(),
        "reward_total": str(outcome.reward_total),
        "verdicts": [
            {
                "index": v.index,
                "node": v.node,
                "cid": v.cid,
                "reason": None if v.reason is None else v.reason.value,
                "detail": v.detail,
            }
            for v in result.verdicts
        ],
    }
