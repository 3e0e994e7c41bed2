"""Contract reverts as named Python errors: the one place revert data is decoded.

Every custom error in the ABIs of ``SwarmCoordinator`` and ``SwarmToken`` has a class here with the
same name, a subclass of `ContractRevert` (itself a `ChainError`); its decoded arguments are in
``.values`` (enums as their Python `IntEnum`). `decode_revert` turns raw revert data into the
matching error; ``Panic(uint256)`` becomes `ContractPanic`, ``Error(string)`` becomes
`RevertedWithMessage`, anything else `UnknownRevert`. A test checks that the classes and the ABIs
name exactly the same errors.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, ClassVar

from eth_abi.abi import decode
from eth_abi.exceptions import DecodingError
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.address import to_checksum_address

from swarmchain.node.chain.abis import abi_of
from swarmchain.node.chain.protocol import MemberStatus, Phase, RoundStatus, SubmissionState
from swarmchain.node.errors import ChainError

# Contracts whose reverts can reach a caller: the coordinator, and the token (directly, or
# bubbled up through the coordinator's SafeERC20 calls).
REVERTING_CONTRACTS = ("SwarmCoordinator", "SwarmToken")


class ContractRevert(ChainError):
    """A call or transaction reverted with one of the contracts' custom errors.

    Parameters
    ----------
    values
        The error's arguments by ABI name.
    context
        What was being done (e.g. ``"commit"``), for the message.
    """

    hint_text: ClassVar[str | None] = None
    enum_fields: ClassVar[dict[str, type[IntEnum]]] = {}

    def __init__(self, values: dict[str, Any], *, context: str | None = None) -> None:
        self.values = {
            name: self.enum_fields[name](value) if name in self.enum_fields else value
            for name, value in values.items()
        }
        self.context = context
        shown = ", ".join(f"{name}={_show(value)}" for name, value in self.values.items())
        prefix = f"{context} reverted: " if context else ""
        super().__init__(f"{prefix}{type(self).__name__}({shown})", hint=self.hint_text)


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, IntEnum):
        return value.name
    return str(value)


class ContractPanic(ChainError):
    """A call or transaction hit a Solidity panic (assert, overflow, bad enum, ...): a bug."""

    def __init__(self, code: int, *, context: str | None = None) -> None:
        self.code = code
        prefix = f"{context} " if context else ""
        super().__init__(f"{prefix}panicked with code 0x{code:02x}")


class RevertedWithMessage(ChainError):
    """A call or transaction reverted with ``Error(string)``."""

    def __init__(self, reason: str, *, context: str | None = None) -> None:
        self.reason = reason
        prefix = f"{context} " if context else ""
        super().__init__(f"{prefix}reverted: {reason}")


class UnknownRevert(ChainError):
    """A revert whose data matches no known error (or carries no data at all)."""

    def __init__(self, data: bytes, *, context: str | None = None) -> None:
        self.data = data
        prefix = f"{context} " if context else ""
        shown = "0x" + data.hex() if data else "no data"
        super().__init__(f"{prefix}reverted with unknown data ({shown})")


# ---- membership ------------------------------------------------------------------------------


class StakeBelowMinimum(ContractRevert):
    """The stake offered at join is below the swarm's minimum."""

    hint_text = "join with at least `minimum` tokens"


class InvalidPublicKey(ContractRevert):
    """An Ed25519 or X25519 public key given at join is zero."""


class AlreadyMember(ContractRevert):
    """The account already holds an active or exiting membership."""

    enum_fields: ClassVar[dict[str, type[IntEnum]]] = {"status": MemberStatus}


class NotMember(ContractRevert):
    """The account holds no membership."""

    hint_text = "join the swarm first"


class NotActive(ContractRevert):
    """Exit needs an active member."""

    enum_fields: ClassVar[dict[str, type[IntEnum]]] = {"status": MemberStatus}


class NotExiting(ContractRevert):
    """Withdraw needs a member that exited."""

    enum_fields: ClassVar[dict[str, type[IntEnum]]] = {"status": MemberStatus}
    hint_text = "call exit first, then withdraw after the unbonding delay"


class UnbondingNotOver(ContractRevert):
    """The unbonding delay after exit has not passed yet."""

    hint_text = "withdraw after `unbondingEnds`"


class RoundStillOpen(ContractRevert):
    """The member committed in the still-open round; withdraw once it closes."""


class ZeroAmount(ContractRevert):
    """An amount of zero tokens."""


# ---- rounds ----------------------------------------------------------------------------------


class WrongRound(ContractRevert):
    """The call named a round other than the current one."""

    hint_text = "read currentRound and act in it"


class UnknownRound(ContractRevert):
    """The round id was never opened."""


class PhaseNotStarted(ContractRevert):
    """The window the call needs has not opened yet."""

    enum_fields: ClassVar[dict[str, type[IntEnum]]] = {"phase": Phase}


class DeadlinePassed(ContractRevert):
    """The window the call needs is over."""

    enum_fields: ClassVar[dict[str, type[IntEnum]]] = {"phase": Phase}


class NotEligible(ContractRevert):
    """The member held no stake when the round opened, so it may not act in it."""

    hint_text = "members count from the round after the one they joined in"


class InvalidCommitment(ContractRevert):
    """A commitment is zero or a reserved marker value."""


class AlreadyCommitted(ContractRevert):
    """The member already committed in the round."""


class NotCommitted(ContractRevert):
    """The member did not commit in the round."""


class AlreadyRevealed(ContractRevert):
    """The member already revealed in the round."""


class CommitmentMismatch(ContractRevert):
    """The reveal does not hash to the member's commitment."""

    hint_text = "reveal the exact cid, content hash, sample count and salt that were committed"


class InvalidCid(ContractRevert):
    """A CID is empty or longer than the bound."""


class ZeroHash(ContractRevert):
    """A content, checkpoint or task-spec hash is zero."""


class ZeroSamples(ContractRevert):
    """A reveal claims zero training samples."""


class BitmapTooLong(ContractRevert):
    """An accepted bitmap has more bytes than the member indices need."""


class RewardTotalTooHigh(ContractRevert):
    """A tuple's reward total exceeds min(rewardPool, rewardPerRound)."""

    hint_text = "a round's reward tree may pay at most what the pool held when the round opened"


class AlreadyAttested(ContractRevert):
    """The member already attested in the round."""


class QuorumNotReached(ContractRevert):
    """The tuple's attested stake is below the quorum."""


class RoundAlreadyFinalized(ContractRevert):
    """The round is already finalized."""


class RoundNotExpired(ContractRevert):
    """failRound was called before the attest window ended."""


class QuorumReached(ContractRevert):
    """failRound was called while a tuple holds quorum."""

    hint_text = "finalize the round instead"


class RoundNotClosed(ContractRevert):
    """The round is not finalized or failed yet."""

    enum_fields: ClassVar[dict[str, type[IntEnum]]] = {"status": RoundStatus}


class RoundNotFinalized(ContractRevert):
    """The round is not finalized."""

    enum_fields: ClassVar[dict[str, type[IntEnum]]] = {"status": RoundStatus}


class NotSlashable(ContractRevert):
    """The member has no slashable offence in the round."""

    enum_fields: ClassVar[dict[str, type[IntEnum]]] = {"state": SubmissionState}


class AlreadySlashed(ContractRevert):
    """The member was already slashed for the round."""


class RoundNotFailed(ContractRevert):
    """slashRejected needs a failed round."""

    enum_fields: ClassVar[dict[str, type[IntEnum]]] = {"status": RoundStatus}
    hint_text = "in a finalized round, slash a rejected member with slash"


class TuplesNotSorted(ContractRevert):
    """slashRejected's tuples are not in strictly increasing key order (or one repeats)."""

    hint_text = "sort the tuples by outcome key and list each once"


class TupleNotAttested(ContractRevert):
    """No stake attested one of slashRejected's tuples in the round."""


class TupleAcceptsNode(ContractRevert):
    """One of slashRejected's tuples accepts the member it should reject."""


class RejectionBelowQuorum(ContractRevert):
    """The tuples that reject the member hold less than the round's required stake."""


class InvalidProof(ContractRevert):
    """The Merkle proof does not prove (account, amount) under the round's rewards root."""


class AlreadyClaimed(ContractRevert):
    """The account already claimed its reward for the round."""


class RewardBudgetExceeded(ContractRevert):
    """The claim exceeds what is left of the round's reward budget."""


# ---- deployment ------------------------------------------------------------------------------


class InvalidParameter(ContractRevert):
    """A deployment parameter is out of range."""


# ---- OpenZeppelin library and token errors ---------------------------------------------------


class SafeCastOverflowedUintDowncast(ContractRevert):
    """A value did not fit the integer width it is stored in."""


class SafeERC20FailedOperation(ContractRevert):
    """A token transfer reported failure."""


class ERC20InsufficientAllowance(ContractRevert):
    """The coordinator may not pull that many tokens."""

    hint_text = "approve the coordinator for the amount first"


class ERC20InsufficientBalance(ContractRevert):
    """The sender holds fewer tokens than the transfer needs."""


class ERC20InvalidApprover(ContractRevert):
    """Approval from the zero address."""


class ERC20InvalidReceiver(ContractRevert):
    """Transfer to the zero address."""


class ERC20InvalidSender(ContractRevert):
    """Transfer from the zero address."""


class ERC20InvalidSpender(ContractRevert):
    """Approval of the zero address."""


def _revert_classes() -> dict[str, type[ContractRevert]]:
    return {cls.__name__: cls for cls in ContractRevert.__subclasses__()}


REVERT_TYPES: dict[str, type[ContractRevert]] = _revert_classes()

_PANIC = function_signature_to_4byte_selector("Panic(uint256)")
_ERROR = function_signature_to_4byte_selector("Error(string)")


def _abi_errors() -> dict[bytes, tuple[str, list[str], list[str]]]:
    """Selector -> (error name, argument types, argument names) over the reverting contracts."""
    table: dict[bytes, tuple[str, list[str], list[str]]] = {}
    for contract in REVERTING_CONTRACTS:
        for item in abi_of(contract):
            if item["type"] != "error":
                continue
            types = [arg["type"] for arg in item["inputs"]]
            names = [arg["name"] for arg in item["inputs"]]
            selector = function_signature_to_4byte_selector(f"{item['name']}({','.join(types)})")
            table[selector] = (item["name"], types, names)
    return table


ABI_ERRORS = _abi_errors()


def decode_revert(data: bytes, *, context: str | None = None) -> ChainError:
    """Turn raw revert data into its named error.

    Parameters
    ----------
    data
        The revert data: a 4-byte selector and ABI-encoded arguments (possibly empty).
    context
        What was being done, for the message.

    Returns
    -------
    ChainError
        A `ContractRevert` subclass for a known custom error, `ContractPanic`,
        `RevertedWithMessage`, or `UnknownRevert`.
    """
    selector, body = data[:4], data[4:]
    try:
        if selector == _PANIC:
            return ContractPanic(decode(["uint256"], body)[0], context=context)
        if selector == _ERROR:
            return RevertedWithMessage(decode(["string"], body)[0], context=context)
        known = ABI_ERRORS.get(selector)
        if known is None:
            return UnknownRevert(data, context=context)
        name, types, names = known
        decoded = decode(types, body)
        values = {
            name: to_checksum_address(value) if kind == "address" else value
            for name, kind, value in zip(names, types, decoded, strict=True)
        }
    except DecodingError:  # malformed argument bytes: report the raw data
        return UnknownRevert(data, context=context)
    return REVERT_TYPES[name](values, context=context)
