"""A node's session: everything it sets up once, before its first look at a round.

`open_session` connects to the chain, opens the journal, the store and the log subscription,
fetches and checks the task document and genesis, loads the node's data and the reference set,
and joins the swarm if needed. The result is a frozen `Session`; the handles it opens live in
`Handles`, which survive a setup retried after a transient failure and are closed once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch
from eth_typing import ABIEvent
from eth_utils.abi import event_abi_to_log_topic
from threadpoolctl import threadpool_limits

from swarmchain.node.aggregation.parallel import set_threads as set_aggregation_threads
from swarmchain.node.chain.abis import abi_of
from swarmchain.node.chain.coordinator import Coordinator
from swarmchain.node.chain.deploy import connect
from swarmchain.node.chain.deployment import Deployment, load_deployment
from swarmchain.node.chain.protocol import CoordinatorParams, MemberStatus
from swarmchain.node.chain.watch import LogWatch
from swarmchain.node.errors import ConfigError
from swarmchain.node.learning.data import Dataset, check_dataset, load_npz, task_splits
from swarmchain.node.protocol.checkpoint import Checkpoint
from swarmchain.node.protocol.document import TaskDocument, fetch_task
from swarmchain.node.protocol.task import TaskSpec
from swarmchain.node.runtime.config import NodeConfig, load_node_data
from swarmchain.node.runtime.events import EventKind
from swarmchain.node.runtime.heap import keep_freed_heap
from swarmchain.node.runtime.history import ChainHistory
from swarmchain.node.runtime.journal import Journal
from swarmchain.storage.deadline import BLOB_DEADLINE_S, BLOCK_DEADLINE_S
from swarmchain.storage.embedded import EmbeddedStore
from swarmchain.storage.keys import NodeKeys
from swarmchain.storage.open import open_store
from swarmchain.storage.server import BlockServer
from swarmchain.storage.store import Store

KEYS_FILE = "node-keys.json"
REWARDS_DIR = "rewards"  # the journal's folder of reward trees
# Coordinator events that can end a node's wait: a window closing early (the last commit,
# reveal or attestation), a quorum, a round closing and the next opening, a member joining (the
# first round opens once enough joined). Claims, slashes and funding change nothing a node
# waits on; deadlines pass without any event, so the node also looks every `poll_s`.
WAKING_EVENTS = ("Joined", "Committed", "Revealed", "Attested", "RoundFinalized", "RoundFailed")

Emit = Callable[..., None]  # (kind, round, **data): report a `NodeEvent`


@dataclass(frozen=True)
class Session:
    """What a node set up before its first round; fixed for the rest of its run."""

    config: NodeConfig  # where the swarm is and how to run
    deployment: Deployment  # the swarm's addresses and chain id
    coordinator: Coordinator  # the swarm's contract, with this node's key
    params: CoordinatorParams  # the coordinator's immutable parameters
    journal: Journal  # the local journal that makes restarts safe
    watch: LogWatch  # wakes the node when the coordinator emits
    store: Store  # the content store
    keys: NodeKeys  # Ed25519 (envelopes) and X25519 (encrypted updates) keys
    document: TaskDocument  # the task document (spec, genesis, valuation)
    genesis: Checkpoint  # round 0's checkpoint
    data: Dataset  # this node's training data
    device: torch.device  # where it trains (`--device`, resolved)
    reference: Dataset  # the task's reference set
    history: ChainHistory  # the coordinator's event record, kept current
    index: int  # this member's bitmap index
    first_round: int  # the round open when this journal started
    rewards_dir: Path  # where the reward trees of attested rounds are kept

    @property
    def address(self) -> str:
        """This node's account."""
        return self.coordinator.account

    @property
    def spec(self) -> TaskSpec:
        """The task spec."""
        return self.document.spec


class Handles:
    """The handles a session opens, kept across retried setups and closed once by `close`."""

    def __init__(self) -> None:
        self.watch: LogWatch | None = None
        self.journal: Journal | None = None
        self.store: Store | None = None
        self.server: BlockServer | None = None

    def close(self) -> None:
        """Release the chain subscription, the store, the block server and the journal."""
        if self.watch is not None:
            self.watch.close()
            self.watch = None
        if self.server is not None:
            self.server.__exit__(None, None, None)
            self.server = None
        if self.store is not None:
            self.store.close()
            self.store = None
        if self.journal is not None:
            self.journal.close()
            self.journal = None


def open_session(config: NodeConfig, handles: Handles, emit: Emit) -> Session:
    """Set a node up: connect, open its handles, check the task, load data, join if needed.

    Parameters
    ----------
    config
        Where the swarm is and how to run.
    handles
        Where the opened handles go; those already open (from a failed try) are reused.
    emit
        Reports the node's events (``JOINED``, ``STARTED``).

    Returns
    -------
    Session
        The node's session.

    Raises
    ------
    ConfigError
        For a bad deployment, key, data or journal, or too few tokens to stake.
    VerificationError
        If the task document or genesis checkpoint fails its checks.
    ChainError, StorageError
        If the chain or the store cannot be reached (the caller retries).
    """
    keep_freed_heap()
    device = config.train_device()  # a GPU asked for and absent fails before anything starts
    if config.threads is not None:
        torch.set_num_threads(config.threads)
        # NumPy's BLAS (the exact integer aggregation and valuation) would otherwise start a
        # thread per core, whose spin-waits take CPU from the other nodes on the machine.
        threadpool_limits(config.threads, user_api="blas")
        set_aggregation_threads(config.threads)
    deployment = load_deployment(config.deployment)
    coordinator = Coordinator(connect(config.rpc_url), deployment, config.private_key)
    address = coordinator.account
    if handles.watch is None:
        # Between looks the node sleeps until the coordinator emits (or `poll_s` passes):
        # it acts on a closed window, or on its own mined transaction, at once.
        topics = [
            event_abi_to_log_topic(cast(ABIEvent, item))
            for item in abi_of("SwarmCoordinator")
            if item.get("type") == "event" and item["name"] in WAKING_EVENTS
        ]
        handles.watch = LogWatch(config.rpc_url, deployment.coordinator, topics)
        handles.watch.open()
    if handles.journal is None:
        handles.journal = Journal(config.journal_dir())
    journal = handles.journal
    started = journal.last("started")
    if started is not None and (
        started["node"] != address or started["coordinator"] != deployment.coordinator
    ):
        raise ConfigError(
            f"journal {journal.path} belongs to node {started['node']} of swarm "
            f"{started['coordinator']}",
            hint="give each node and swarm its own --journal directory",
        )
    keys = _node_keys(config.journal_dir() / KEYS_FILE)
    params = coordinator.params()
    if handles.store is None:
        # A blob that takes more than half the attest window cannot be verified in time.
        patience = min(BLOB_DEADLINE_S, max(1.0, params.attest_duration / 2))
        handles.store = open_store(
            config.store,
            config.ipfs_api,
            peers=config.peers,
            block_deadline_s=min(BLOCK_DEADLINE_S, patience),
            blob_deadline_s=patience,
        )
        if config.serve is not None:
            handles.server = _serve(handles.store, config.serve)
    store = handles.store
    document, genesis = fetch_task(store, *coordinator.task_spec())
    spec = document.spec
    if config.encrypt and not spec.encrypted_updates:
        raise ConfigError(
            f"--encrypt: task {spec.name!r} does not allow encrypted updates, so every "
            "member would reject them",
            hint="publish a task with encrypted_updates: true, or run without --encrypt",
        )
    data = load_node_data(config.data, config.labels, spec.data)
    check_dataset(data, spec.data)
    reference = _reference_set(spec, store)
    history = ChainHistory(coordinator)
    index = _join(config, coordinator, params, keys, emit)
    if started is None:
        started = journal.append(
            "started",
            node=address,
            coordinator=deployment.coordinator,
            chain_id=deployment.chain_id,
            round=coordinator.current_round(),
        )
    emit(
        EventKind.STARTED,
        coordinator.current_round(),
        node=address,
        coordinator=deployment.coordinator,
        chain_id=deployment.chain_id,
        task=spec.name,
        journal=str(journal.path),
    )
    return Session(
        config=config,
        deployment=deployment,
        coordinator=coordinator,
        params=params,
        journal=journal,
        watch=handles.watch,
        store=store,
        keys=keys,
        document=document,
        genesis=genesis,
        data=data,
        device=device,
        reference=reference,
        history=history,
        index=index,
        first_round=int(started["round"]),
        rewards_dir=config.journal_dir() / REWARDS_DIR,
    )


def _reference_set(spec: TaskSpec, store: Store) -> Dataset:
    """The task's reference set: its holdout split, or the stored set its spec names."""
    if spec.reference.source == "holdout":
        return task_splits(spec)[1]
    return load_npz(store.get(spec.reference.cid))


def _node_keys(path: Path) -> NodeKeys:
    """The node's envelope and encryption keys, generated on first start."""
    if path.exists():
        return NodeKeys.load(path)
    keys = NodeKeys.generate()
    keys.save(path)
    return keys


def _serve(store: Store, address: str) -> BlockServer:
    """Serve the embedded store's blocks to peers on ``host:port``."""
    if not isinstance(store, EmbeddedStore):
        raise ConfigError("--serve needs the embedded store, not --ipfs-api")
    host, _, port = address.rpartition(":")
    try:
        server = BlockServer(store, host or "127.0.0.1", int(port))
    except (ValueError, OSError) as err:
        raise ConfigError(f"cannot serve blocks on {address}: {err}") from None
    server.__enter__()
    return server


def _join(
    config: NodeConfig,
    coordinator: Coordinator,
    params: CoordinatorParams,
    keys: NodeKeys,
    emit: Emit,
) -> int:
    """Join the swarm unless this account already is a member; its bitmap index."""
    me = coordinator.member_info()
    public = (keys.signing_public, keys.encryption_public)
    if me.status != MemberStatus.NONE:
        if (me.ed25519_key, me.x25519_key) != public:
            raise ConfigError(
                f"{coordinator.account} is a member with other public keys than {KEYS_FILE}",
                hint="run with the journal directory this account joined with",
            )
        return me.index
    stake = config.stake or params.min_stake
    balance = coordinator.token.balance_of(coordinator.account)
    if balance < stake:
        raise ConfigError(
            f"{coordinator.account} holds {balance} tokens, fewer than the stake {stake}",
            hint="get tokens from the swarm's deployer first",
        )
    tx = coordinator.join(stake, *public)
    index = coordinator.member_info().index
    if tx is not None:
        emit(EventKind.JOINED, coordinator.current_round(), stake=stake, index=index)
    return index
