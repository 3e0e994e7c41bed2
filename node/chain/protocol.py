"""The protocol's pure values, computed off-chain exactly as `SwarmCoordinator` computes them.

Every hash here mirrors one in ``contracts/src/libraries/SwarmHashes.sol`` byte for byte, and a
test holds both sides to it:

- the commitment a reveal must match:
  ``keccak256(abi.encode(cid, contentHash, numSamples, salt, node, round, coordinator))``;
- the key an attested tuple's stake accumulates under:
  ``keccak256(abi.encode(checkpointHash, checkpointCid, acceptedBitmap, rewardsRoot,
  rewardTotal))``;
- the round seed: ``keccak256(abi.encode(chainid, coordinator, round, baseRound,
  baseCheckpointHash, openedAt))``.

Content hashes are SHA-256 of the exact blob bytes (`swarmchain.node.protocol.hashing`). Accepted
sets are bitmaps over member indices: bit ``i`` is bit ``i % 8`` (least significant first) of byte
``i // 8``. Reward roots are OpenZeppelin StandardMerkleTree roots over ``(address, uint256)``,
built by `swarmchain.incentives.merkle.RewardTree`; the contract verifies claims against the leaf
``keccak256(bytes.concat(keccak256(abi.encode(account, amount))))``, and a finalized round reserves
exactly the tree's total (``rewardTotal``) for them.

In a failed round, a revealed member is slashable when attested tuples that all leave it out
hold the round's required stake together (`rejecting_outcomes` picks them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum

from eth_abi.abi import encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

MAX_CID_LENGTH = 128  # SwarmCoordinator.MAX_CID_LENGTH
BPS = 10_000  # basis points in one whole


class RoundStatus(IntEnum):
    """Lifecycle of a round id (``ISwarmCoordinator.RoundStatus``)."""

    NONE = 0
    OPEN = 1
    FINALIZED = 2
    FAILED = 3


class Phase(IntEnum):
    """Which window of the current round is open (``ISwarmCoordinator.Phase``)."""

    COMMIT = 0
    REVEAL = 1
    ATTEST = 2
    ENDED = 3


class MemberStatus(IntEnum):
    """A member's standing (``ISwarmCoordinator.MemberStatus``)."""

    NONE = 0
    ACTIVE = 1
    EXITING = 2


class SubmissionState(IntEnum):
    """What a node did in a round (``ISwarmCoordinator.SubmissionState``)."""

    NONE = 0
    COMMITTED = 1
    REVEALED = 2
    SLASHED = 3


class SlashReason(IntEnum):
    """Why a stake was slashed (``ISwarmCoordinator.SlashReason``)."""

    NOT_REVEALED = 0
    REJECTED = 1


@dataclass(frozen=True)
class CoordinatorParams:
    """The coordinator's immutable parameters (``ISwarmCoordinator.Params``)."""

    quorum_bps: int  # share of the stake at round open a tuple needs, in basis points (> 5000)
    slash_bps: int  # share of a stake slashed per offence, in basis points (<= 10000)
    commit_duration: int  # seconds of the commit window
    reveal_duration: int  # seconds of the reveal window
    attest_duration: int  # seconds of the attest window
    unbonding_delay: int  # seconds between exit and the earliest withdrawal
    min_stake: int  # smallest stake to join with, in token units
    reward_per_round: int  # most a finalized round pays out, in token units

    def as_abi(self) -> tuple[int, int, int, int, int, int, int, int]:
        """The struct in ABI order, for the constructor."""
        return (
            self.quorum_bps,
            self.slash_bps,
            self.commit_duration,
            self.reveal_duration,
            self.attest_duration,
            self.unbonding_delay,
            self.min_stake,
            self.reward_per_round,
        )

    @classmethod
    def from_abi(cls, values: Sequence[int]) -> CoordinatorParams:
        """Build from the struct as a contract call or event returns it (ABI order)."""
        return cls(*(int(v) for v in values))


@dataclass(frozen=True)
class Outcome:
    """The tuple members attest to and a finalized round records."""

    checkpoint_hash: bytes  # SHA-256 of the aggregated checkpoint blob (32 bytes)
    checkpoint_cid: str  # CID of that blob
    accepted_bitmap: bytes  # member indices whose updates were accepted (`encode_bitmap`)
    rewards_root: (
        bytes  # swarmchain.incentives.merkle.RewardTree root of the round's rewards (32 bytes)
    )
    reward_total: int  # the sum of that tree's amounts: what finalization reserves for claims

    def as_abi(self) -> tuple[bytes, str, bytes, bytes, int]:
        """The tuple in ABI order, for contract calls."""
        return (
            self.checkpoint_hash,
            self.checkpoint_cid,
            self.accepted_bitmap,
            self.rewards_root,
            self.reward_total,
        )

    def key(self) -> bytes:
        """The key the contract accumulates this tuple's stake under (`outcome_key`)."""
        return outcome_key(self)


@dataclass(frozen=True)
class Reveal:
    """What a node reveals for its committed update."""

    cid: str  # the update blob's CID
    content_hash: bytes  # SHA-256 of the update blob (32 bytes)
    num_samples: int  # local training samples behind the update (>= 1, < 2**64)
    salt: bytes  # 32 secret random bytes chosen at commit time


def commitment(reveal: Reveal, node: str, round_id: int, coordinator: str) -> bytes:
    """The commitment that `reveal` by `node` in `round_id` must match.

    Parameters
    ----------
    reveal
        The update's CID, content hash, sample count and salt.
    node
        The committing account.
    round_id
        The round of the commitment.
    coordinator
        The coordinator contract's address.

    Returns
    -------
    bytes
        32 bytes, equal to ``SwarmCoordinator.commitmentOf(...)``.
    """
    return keccak(
        encode(
            ["string", "bytes32", "uint64", "bytes32", "address", "uint64", "address"],
            [
                reveal.cid,
                reveal.content_hash,
                reveal.num_samples,
                reveal.salt,
                to_checksum_address(node),
                round_id,
                to_checksum_address(coordinator),
            ],
        )
    )


def outcome_key(outcome: Outcome) -> bytes:
    """The key an attested tuple's stake accumulates under (``outcomeKeyOf``)."""
    return keccak(
        encode(["bytes32", "string", "bytes", "bytes32", "uint256"], list(outcome.as_abi()))
    )


def rejecting_outcomes(
    stakes: Mapping[Outcome, int], index: int, required: int
) -> tuple[Outcome, ...]:
    """The attested tuples that prove a quorum rejected member `index` in a failed round.

    Parameters
    ----------
    stakes
        Each tuple attested in the round, with the stake that attested it (``outcomeStake``).
    index
        The member's bitmap index.
    required
        The round's required stake (``requiredStake``).

    Returns
    -------
    tuple[Outcome, ...]
        Every attested tuple whose bitmap leaves the member out, in increasing key order (the
        order ``slashRejected`` takes), if their stakes add up to `required`; else empty.
    """
    against = [o for o in stakes if stakes[o] > 0 and index not in decode_bitmap(o.accepted_bitmap)]
    if sum(stakes[o] for o in against) < required:
        return ()
    return tuple(sorted(against, key=outcome_key))


def round_seed(
    chain_id: int,
    coordinator: str,
    round_id: int,
    base_round: int,
    base_checkpoint_hash: bytes,
    opened_at: int,
) -> bytes:
    """A round's public seed, as ``SwarmCoordinator.roundSeed`` computes it."""
    return keccak(
        encode(
            ["uint256", "address", "uint64", "uint64", "bytes32", "uint64"],
            [
                chain_id,
                to_checksum_address(coordinator),
                round_id,
                base_round,
                base_checkpoint_hash,
                opened_at,
            ],
        )
    )


def required_stake(stake_at_open: int, quorum_bps: int) -> int:
    """Stake one tuple needs to finalize: ceil(stake * quorum / 10000), and at least 1."""
    return max(1, -(-stake_at_open * quorum_bps // BPS))


def encode_bitmap(indices: Iterable[int]) -> bytes:
    """The accepted bitmap of a set of member indices (no trailing zero bytes).

    Raises
    ------
    ValueError
        If an index is negative.
    """
    chosen = sorted(set(indices))
    if chosen and chosen[0] < 0:
        raise ValueError(f"member indices are >= 0, got {chosen[0]}")
    if not chosen:
        return b""
    out = bytearray(chosen[-1] // 8 + 1)
    for index in chosen:
        out[index // 8] |= 1 << (index % 8)
    return bytes(out)


def decode_bitmap(bitmap: bytes) -> frozenset[int]:
    """The member indices set in `bitmap`."""
    return frozenset(
        byte_index * 8 + bit
        for byte_index, byte in enumerate(bitmap)
        for bit in range(8)
        if byte >> bit & 1
    )
