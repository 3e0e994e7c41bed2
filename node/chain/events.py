"""Typed chain events: one frozen dataclass per event of ``SwarmCoordinator`` and ``SwarmToken``.

The coordinator's events are the swarm's provenance record: from them alone an auditor rebuilds
every round, update, attestation, slash and reward. `EventDecoder.decode` turns one raw log into
its dataclass; `EventDecoder.fetch` reads a block range in chunks and returns the events in order.
Field names are the ABI names in snake case; hashes are ``bytes``, addresses checksummed ``str``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from eth_abi.codec import ABICodec
from eth_abi.exceptions import DecodingError
from eth_typing import ABIEvent
from eth_utils.abi import collapse_if_tuple, event_abi_to_log_topic
from eth_utils.address import to_checksum_address
from web3 import Web3
from web3.exceptions import Web3Exception
from web3.types import LogReceipt

from swarmchain.node.chain.abis import abi_of
from swarmchain.node.chain.protocol import CoordinatorParams, Outcome, SlashReason
from swarmchain.node.errors import ChainError

LOG_CHUNK_BLOCKS = 5_000  # blocks per eth_getLogs request; many RPC providers cap the range


@dataclass(frozen=True)
class ChainEvent:
    """Where an event was logged; every event dataclass starts with these fields."""

    block_number: int
    log_index: int
    tx_hash: str  # 0x-prefixed


@dataclass(frozen=True)
class SwarmConfigured(ChainEvent):
    """The coordinator's task and parameters, emitted once by its constructor."""

    round: int
    token: str
    task_spec_hash: bytes
    task_spec_cid: str
    params: CoordinatorParams


@dataclass(frozen=True)
class Joined(ChainEvent):
    """A member joined with a stake and its public keys."""

    round: int
    node: str
    index: int
    stake: int
    ed25519_key: bytes
    x25519_key: bytes


@dataclass(frozen=True)
class ExitRequested(ChainEvent):
    """A member left the active set (forced: a slash left it below the minimum stake)."""

    round: int
    node: str
    stake: int
    unbonding_ends: int
    forced: bool


@dataclass(frozen=True)
class Withdrawn(ChainEvent):
    """An exited member took its stake back."""

    round: int
    node: str
    amount: int


@dataclass(frozen=True)
class RewardsFunded(ChainEvent):
    """Tokens were added to the reward pool."""

    round: int
    funder: str
    amount: int
    pool: int


@dataclass(frozen=True)
class RoundOpened(ChainEvent):
    """A round opened from the checkpoint of `base_round` (0: the task spec's genesis)."""

    round: int
    base_round: int
    base_checkpoint_hash: bytes
    seed: bytes
    stake_at_open: int
    active_at_open: int
    commit_deadline: int


@dataclass(frozen=True)
class Committed(ChainEvent):
    """A member committed to an update."""

    round: int
    node: str
    commitment: bytes


@dataclass(frozen=True)
class Revealed(ChainEvent):
    """A member revealed its committed update."""

    round: int
    node: str
    cid: str
    content_hash: bytes
    num_samples: int
    salt: bytes


@dataclass(frozen=True)
class Attested(ChainEvent):
    """A member attested to an outcome with its stake at round open."""

    round: int
    node: str
    outcome_key: bytes
    outcome: Outcome
    weight: int
    outcome_stake: int


@dataclass(frozen=True)
class RoundFinalized(ChainEvent):
    """A round finalized with `outcome`; the next round opened in the same transaction."""

    round: int
    caller: str
    outcome_key: bytes
    outcome: Outcome
    outcome_stake: int
    stake_at_open: int

    @property
    def reward_budget(self) -> int:
        """Tokens finalization moved from the pool to the round's claims: the tuple's total."""
        return self.outcome.reward_total


@dataclass(frozen=True)
class RoundFailed(ChainEvent):
    """A round ended without quorum; the next round retries from `base_round`."""

    round: int
    caller: str
    base_round: int
    leading_stake: int
    required_stake: int


@dataclass(frozen=True)
class Slashed(ChainEvent):
    """A member's stake was slashed for its offence in a closed round."""

    round: int
    node: str
    reason: SlashReason
    amount: int
    remaining_stake: int


@dataclass(frozen=True)
class Claimed(ChainEvent):
    """A reward was paid to `account`."""

    round: int
    account: str
    amount: int


@dataclass(frozen=True)
class Transfer(ChainEvent):
    """SwarmToken: tokens moved (from the zero address: the one mint)."""

    sender: str
    receiver: str
    value: int


@dataclass(frozen=True)
class Approval(ChainEvent):
    """SwarmToken: an allowance was set."""

    owner: str
    spender: str
    value: int


def _outcome(args: Mapping[str, Any]) -> Outcome:
    return Outcome(
        checkpoint_hash=bytes(args["checkpointHash"]),
        checkpoint_cid=args["checkpointCid"],
        accepted_bitmap=bytes(args["acceptedBitmap"]),
        rewards_root=bytes(args["rewardsRoot"]),
        reward_total=args["rewardTotal"],
    )


def _params(p: Mapping[str, Any]) -> CoordinatorParams:
    return CoordinatorParams(
        quorum_bps=p["quorumBps"],
        slash_bps=p["slashBps"],
        commit_duration=p["commitDuration"],
        reveal_duration=p["revealDuration"],
        attest_duration=p["attestDuration"],
        unbonding_delay=p["unbondingDelay"],
        min_stake=p["minStake"],
        reward_per_round=p["rewardPerRound"],
    )


# The same few member addresses recur in every round's logs, and checksumming (a keccak) is most
# of the cost of decoding one.
_checksum = functools.lru_cache(maxsize=4096)(to_checksum_address)

_Meta = dict[str, Any]
_Builder = Callable[[Mapping[str, Any], _Meta], ChainEvent]

# Event name -> builder from the decoded ABI arguments and the log's position.
_BUILDERS: dict[str, _Builder] = {
    "SwarmConfigured": lambda a, m: SwarmConfigured(
        **m,
        round=a["round"],
        token=_checksum(a["token"]),
        task_spec_hash=bytes(a["taskSpecHash"]),
        task_spec_cid=a["taskSpecCid"],
        params=_params(a["params"]),
    ),
    "Joined": lambda a, m: Joined(
        **m,
        round=a["round"],
        node=_checksum(a["node"]),
        index=a["index"],
        stake=a["stake"],
        ed25519_key=bytes(a["ed25519Key"]),
        x25519_key=bytes(a["x25519Key"]),
    ),
    "ExitRequested": lambda a, m: ExitRequested(
        **m,
        round=a["round"],
        node=_checksum(a["node"]),
        stake=a["stake"],
        unbonding_ends=a["unbondingEnds"],
        forced=a["forced"],
    ),
    "Withdrawn": lambda a, m: Withdrawn(
        **m, round=a["round"], node=_checksum(a["node"]), amount=a["amount"]
    ),
    "RewardsFunded": lambda a, m: RewardsFunded(
        **m,
        round=a["round"],
        funder=_checksum(a["funder"]),
        amount=a["amount"],
        pool=a["pool"],
    ),
    "RoundOpened": lambda a, m: RoundOpened(
        **m,
        round=a["round"],
        base_round=a["baseRound"],
        base_checkpoint_hash=bytes(a["baseCheckpointHash"]),
        seed=bytes(a["seed"]),
        stake_at_open=a["stakeAtOpen"],
        active_at_open=a["activeAtOpen"],
        commit_deadline=a["commitDeadline"],
    ),
    "Committed": lambda a, m: Committed(
        **m,
        round=a["round"],
        node=_checksum(a["node"]),
        commitment=bytes(a["commitment"]),
    ),
    "Revealed": lambda a, m: Revealed(
        **m,
        round=a["round"],
        node=_checksum(a["node"]),
        cid=a["cid"],
        content_hash=bytes(a["contentHash"]),
        num_samples=a["numSamples"],
        salt=bytes(a["salt"]),
    ),
    "Attested": lambda a, m: Attested(
        **m,
        round=a["round"],
        node=_checksum(a["node"]),
        outcome_key=bytes(a["outcomeKey"]),
        outcome=_outcome(a),
        weight=a["weight"],
        outcome_stake=a["outcomeStake"],
    ),
    "RoundFinalized": lambda a, m: RoundFinalized(
        **m,
        round=a["round"],
        caller=_checksum(a["caller"]),
        outcome_key=bytes(a["outcomeKey"]),
        outcome=_outcome(a),
        outcome_stake=a["outcomeStake"],
        stake_at_open=a["stakeAtOpen"],
    ),
    "RoundFailed": lambda a, m: RoundFailed(
        **m,
        round=a["round"],
        caller=_checksum(a["caller"]),
        base_round=a["baseRound"],
        leading_stake=a["leadingStake"],
        required_stake=a["requiredStake"],
    ),
    "Slashed": lambda a, m: Slashed(
        **m,
        round=a["round"],
        node=_checksum(a["node"]),
        reason=SlashReason(a["reason"]),
        amount=a["amount"],
        remaining_stake=a["remainingStake"],
    ),
    "Claimed": lambda a, m: Claimed(
        **m, round=a["round"], account=_checksum(a["account"]), amount=a["amount"]
    ),
    "Transfer": lambda a, m: Transfer(
        **m,
        sender=_checksum(a["from"]),
        receiver=_checksum(a["to"]),
        value=a["value"],
    ),
    "Approval": lambda a, m: Approval(
        **m,
        owner=_checksum(a["owner"]),
        spender=_checksum(a["spender"]),
        value=a["value"],
    ),
}


@dataclass(frozen=True)
class _EventLayout:
    """Where an event's arguments are in a log: the indexed ones in the topics after the
    signature, the others ABI-encoded together in the data."""

    name: str
    indexed: tuple[tuple[str, str], ...]  # (name, ABI type) of each topic after the signature
    fields: tuple[tuple[str, str], ...]  # (name, ABI type) of each argument in the data
    components: dict[str, tuple[str, ...]]  # field names of each tuple argument, by argument
    texts: tuple[str, ...]  # the string arguments in the data, read as bytes (see `arguments`)

    @classmethod
    def of(cls, item: Mapping[str, Any]) -> _EventLayout:
        inputs = item["inputs"]
        return cls(
            name=item["name"],
            # An indexed string, bytes, array or tuple is logged as the keccak hash of its value.
            indexed=tuple(
                (i["name"], "bytes32" if _hashed_when_indexed(i["type"]) else i["type"])
                for i in inputs
                if i["indexed"]
            ),
            fields=tuple(
                (i["name"], "bytes" if i["type"] == "string" else collapse_if_tuple(i))
                for i in inputs
                if not i["indexed"]
            ),
            components={
                i["name"]: tuple(c["name"] for c in i["components"])
                for i in inputs
                if i["type"] == "tuple"
            },
            texts=tuple(i["name"] for i in inputs if not i["indexed"] and i["type"] == "string"),
        )

    def arguments(self, codec: ABICodec, topics: Sequence[bytes], data: bytes) -> dict[str, Any]:
        """The event's arguments by name; a tuple argument as a mapping of its fields.

        A string is read as bytes, then as UTF-8 with U+FFFD for bytes that are not: the
        contracts take any bytes as a CID, and a member's malformed one must reach the checks
        that reject it (the same on every node), not stop every node reading the record.
        """
        if len(topics) != len(self.indexed):
            raise ChainError(
                f"a {self.name} log has {len(topics)} indexed topics, its ABI {len(self.indexed)}"
            )
        try:
            values = dict(
                zip(
                    (name for name, _ in self.fields),
                    codec.decode([t for _, t in self.fields], bytes(data)),
                    strict=True,
                )
            )
            for (name, kind), topic in zip(self.indexed, topics, strict=True):
                (values[name],) = codec.decode([kind], bytes(topic))
        except DecodingError as err:
            raise ChainError(f"a {self.name} log does not decode: {err}") from err
        for name, fields in self.components.items():
            values[name] = dict(zip(fields, values[name], strict=True))
        for name in self.texts:
            values[name] = values[name].decode("utf-8", "replace")
        return values


def _hashed_when_indexed(kind: str) -> bool:
    return kind in ("string", "bytes", "tuple") or kind.endswith("]")


EVENT_TYPES: dict[str, type[ChainEvent]] = {
    cls.__name__: cls for cls in ChainEvent.__subclasses__()
}


class EventDecoder:
    """Decodes the logs of one deployed contract into event dataclasses.

    Parameters
    ----------
    w3
        A connection (only its codec is used).
    address
        The contract's address; logs from other addresses are skipped.
    contract_name
        The artifact whose ABI describes the events (``SwarmCoordinator`` or ``SwarmToken``).
    """

    def __init__(self, w3: Web3, address: str, contract_name: str) -> None:
        self.address = to_checksum_address(address)
        self._codec = w3.codec
        self._layouts = {
            event_abi_to_log_topic(cast(ABIEvent, item)): _EventLayout.of(item)
            for item in abi_of(contract_name)
            if item["type"] == "event"
        }

    def decode(self, log: LogReceipt) -> ChainEvent | None:
        """The event in `log`, or None if the log is not one of this contract's events.

        Raises
        ------
        ChainError
            If the log carries one of the contract's event signatures but not its fields.
        """
        if _checksum(log["address"]) != self.address or not log["topics"]:
            return None
        topics = log["topics"]
        layout = self._layouts.get(bytes(topics[0]))
        if layout is None:
            return None
        meta: _Meta = {
            "block_number": log["blockNumber"],
            "log_index": log["logIndex"],
            "tx_hash": log["transactionHash"].to_0x_hex(),
        }
        return _BUILDERS[layout.name](layout.arguments(self._codec, topics[1:], log["data"]), meta)

    def fetch(
        self,
        w3: Web3,
        from_block: int,
        to_block: int | None = None,
        *,
        chunk_blocks: int = LOG_CHUNK_BLOCKS,
    ) -> list[ChainEvent]:
        """Every event of the contract in ``[from_block, to_block]`` (latest when None), in order.

        The range is read `chunk_blocks` blocks per ``eth_getLogs`` request.

        Raises
        ------
        ChainError
            If the node cannot serve the logs.
        """
        try:
            last = w3.eth.block_number if to_block is None else to_block
            events: list[ChainEvent] = []
            for start in range(from_block, last + 1, chunk_blocks):
                end = min(start + chunk_blocks - 1, last)
                logs = w3.eth.get_logs(
                    {"address": self.address, "fromBlock": start, "toBlock": end}
                )
                for log in logs:
                    event = self.decode(log)
                    if event is not None:
                        events.append(event)
        except (Web3Exception, OSError) as err:
            raise ChainError(f"reading logs of {self.address} failed: {err}") from err
        return sorted(events, key=lambda e: (e.block_number, e.log_index))
