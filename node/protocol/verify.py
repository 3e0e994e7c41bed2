"""Verification of one revealed update: every check a peer's bytes must pass, each with a name.

A member reveals the CID and SHA-256 of a signed envelope (`swarmchain.storage.envelope`); the
envelope names the update blob by CID and SHA-256, the base checkpoint it was trained from, the
round and the sample count. `verify_submission` runs the checks in an order that never parses bytes
before their hash is known to match::

    envelope:  fetch (CID-checked, size-bounded) -> SHA-256 == revealed hash -> signature by the
               registered Ed25519 key -> same swarm, round and node -> samples == revealed
               -> base == this round's base checkpoint
    update:    fetch -> SHA-256 == signed hash -> decrypt (if encrypted, and only in swarms
               whose task enables it) -> canonical safetensors with the task's names, shapes and
               dtypes -> finite -> L2 norm <= the task's bound

The first failed check rejects the update with its `RejectReason`. Every decision is a pure function
of public inputs (the norm is compared exactly on the fixed-point grid), so every honest node
rejects the same updates for the same reasons. Decryption is too: an encrypted update must be
wrapped for exactly the round's recipients (`round_recipients`, from chain state), and
`swarmchain.storage.envelope.decrypt_blob` accepts it only if every recipient would read the same
bytes. A verifier that is not a recipient cannot judge such an update at all; it raises
`CannotJudge` and abstains from the round rather than guess.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from swarmchain.node.aggregation.fixed_point import exact_sq_norms, quantise
from swarmchain.node.aggregation.limits import MAX_SAMPLES
from swarmchain.node.errors import StorageError, VerificationError
from swarmchain.node.protocol.checkpoint import State, codec_spec, max_blob_bytes
from swarmchain.node.protocol.hashing import content_hash
from swarmchain.node.protocol.task import TaskSpec
from swarmchain.storage.cid import CID, RAW
from swarmchain.storage.codec import decode_update
from swarmchain.storage.envelope import (
    MAX_ENVELOPE_BYTES,
    Manifest,
    is_encrypted,
    open_envelope,
    valid_x25519_key,
)
from swarmchain.storage.errors import (
    BadEncryption,
    BadSignature,
    ContentTooLarge,
    DtypeMismatch,
    InvalidCID,
    MalformedBlock,
    MalformedCiphertext,
    MalformedEnvelope,
    MalformedUpdate,
    NonFiniteValues,
    NotARecipient,
    ShapeMismatch,
    TamperedBlock,
    TensorNameMismatch,
    UnsupportedContent,
    UpdateTooLarge,
    WrongNode,
    WrongRound,
    WrongSigner,
    WrongSwarm,
)

Fetch = Callable[[str, int], bytes]  # (cid, max bytes) -> CID-checked content; StorageError if not
# (encrypted blob, the round's recipients) -> plaintext; BadEncryption, MalformedCiphertext, or
# NotARecipient when this verifier is not one of them
Decrypt = Callable[[bytes, Sequence[bytes]], bytes]
ENCRYPTION_OVERHEAD = 64 * 1024  # room for wrapped keys and the MAC around an encrypted update


class RejectReason(StrEnum):
    """Why an update was left out of a round's accepted set."""

    UNAVAILABLE = "unavailable"  # the envelope or update could not be fetched in time
    CID_MISMATCH = "cid_mismatch"  # content does not match its CID, or a CID is malformed
    HASH_MISMATCH = "hash_mismatch"  # SHA-256 differs from the revealed or signed hash
    BAD_SIGNATURE = "bad_signature"  # not signed by the member's registered Ed25519 key
    BAD_ENVELOPE = "bad_envelope"  # malformed, or for another swarm, round, node or sample count
    WRONG_BASE = "wrong_base"  # trained from another checkpoint than the round's base
    UNDECRYPTABLE = "undecryptable"  # encrypted, but not openable alike by every recipient
    ENCRYPTION_DISABLED = "encryption_disabled"  # encrypted in a swarm whose task does not allow it
    MALFORMED = "malformed_update"  # not a canonical safetensors update (pickle, truncated, ...)
    WRONG_SHAPE = "wrong_shape"  # tensor names, shapes or dtypes differ from the task's
    NON_FINITE = "non_finite"  # NaN or infinite values
    NORM_EXCEEDED = "norm_exceeded"  # L2 norm beyond the task's update_norm_bound
    FREE_RIDER = "free_rider"  # a zero update, or a copy of another member's update
    SCREENED = "screened"  # the robust aggregation rule screened it out


@dataclass(frozen=True)
class Submission:
    """A revealed update as the chain records it, with its member's registered signing key."""

    index: int  # the member's bit in accepted bitmaps
    node: str  # the member's checksummed address
    cid: str  # revealed CID of the signed envelope
    content_hash: bytes  # revealed SHA-256 of the envelope
    num_samples: int  # revealed sample count
    signer: bytes  # the member's registered Ed25519 public key


@dataclass(frozen=True)
class VerifiedUpdate:
    """An update that passed every per-update check."""

    submission: Submission
    manifest: Manifest
    delta: State  # float32 CPU tensors, sorted names


class CannotJudge(VerificationError):
    """This verifier cannot decide an update (it holds no key the update is wrapped for), so it
    cannot compute the round's tuple and must not attest one."""


class Rejected(VerificationError):
    """An update failed a check; `reason` names which."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason.value}: {detail}")


@dataclass(frozen=True)
class RoundFrame:
    """What every update of one round is checked against."""

    chain_id: int
    coordinator: str  # checksummed coordinator address
    round: int
    base_cid: str  # CID of the round's base checkpoint
    spec: TaskSpec
    recipients: tuple[bytes, ...] = ()  # X25519 keys encrypted updates must be wrapped for


def round_recipients(members: Iterable[tuple[int, bytes, int]]) -> tuple[bytes, ...]:
    """The X25519 keys an encrypted update of a round must be wrapped for, in order.

    Parameters
    ----------
    members
        ``(index, x25519 key, stake at the round's opening)`` of every registered member.

    Returns
    -------
    tuple[bytes, ...]
        The valid keys of the members that held stake when the round opened (exactly those who
        may attest it), by member index. A member that registered a key no secret can be agreed
        with (a low-order point) is left out: it can receive nothing, and it must not make the
        senders fail.
    """
    return tuple(key for _, key, stake in sorted(members) if stake > 0 and valid_x25519_key(key))


def _fetch(fetch: Fetch, cid: str, max_bytes: int, what: str) -> bytes:
    """Fetch a blob, mapping storage failures to rejections."""
    try:
        return fetch(cid, max_bytes)
    except (TamperedBlock, InvalidCID, MalformedBlock, UnsupportedContent) as err:
        raise Rejected(RejectReason.CID_MISMATCH, f"{what} {cid}: {err}") from None
    except ContentTooLarge as err:
        reason = RejectReason.BAD_ENVELOPE if what == "envelope" else RejectReason.MALFORMED
        raise Rejected(reason, f"{what} {cid}: {err}") from None
    except StorageError as err:
        raise Rejected(RejectReason.UNAVAILABLE, f"{what} {cid}: {err}") from None


def _open(sub: Submission, frame: RoundFrame, envelope: bytes) -> Manifest:
    """Check the envelope's hash, signature and fields."""
    digest = content_hash(envelope)
    if digest != sub.content_hash:
        raise Rejected(
            RejectReason.HASH_MISMATCH,
            f"envelope hashes to 0x{digest.hex()}, revealed 0x{sub.content_hash.hex()}",
        )
    try:
        manifest = open_envelope(
            envelope,
            signer=sub.signer,
            chain_id=frame.chain_id,
            coordinator=frame.coordinator,
            round=frame.round,
            node=sub.node,
        )
    except (WrongSigner, BadSignature) as err:
        raise Rejected(RejectReason.BAD_SIGNATURE, str(err)) from None
    except (MalformedEnvelope, WrongSwarm, WrongRound, WrongNode) as err:
        raise Rejected(RejectReason.BAD_ENVELOPE, str(err)) from None
    if manifest.num_samples > MAX_SAMPLES:
        raise Rejected(
            RejectReason.BAD_ENVELOPE,
            f"envelope claims {manifest.num_samples} samples, more than the {MAX_SAMPLES} one "
            "update may carry",
        )
    if manifest.num_samples != sub.num_samples:
        raise Rejected(
            RejectReason.BAD_ENVELOPE,
            f"envelope claims {manifest.num_samples} samples, {sub.num_samples} were revealed",
        )
    if manifest.base_cid != frame.base_cid:
        raise Rejected(
            RejectReason.WRONG_BASE,
            f"trained from {manifest.base_cid}, the round's base is {frame.base_cid}",
        )
    return manifest


def _decode(blob: bytes, manifest: Manifest, frame: RoundFrame, decrypt: Decrypt | None) -> State:
    """Check the update blob's hash, decrypt it if needed, and decode it."""
    spec = frame.spec
    digest = "0x" + content_hash(blob).hex()
    if digest != manifest.content_hash:
        raise Rejected(
            RejectReason.HASH_MISMATCH,
            f"update {manifest.update_cid} hashes to {digest}, signed {manifest.content_hash}",
        )
    if is_encrypted(blob):
        if not spec.encrypted_updates:
            raise Rejected(
                RejectReason.ENCRYPTION_DISABLED,
                f"update {manifest.update_cid} is encrypted; the task does not allow it",
            )
        if decrypt is None:
            raise CannotJudge(
                f"update {manifest.update_cid} is encrypted; this verifier has no key"
            )
        try:
            blob = decrypt(blob, frame.recipients)
        except NotARecipient as err:
            raise CannotJudge(f"update {manifest.update_cid}: {err}") from None
        except (BadEncryption, MalformedCiphertext) as err:
            raise Rejected(RejectReason.UNDECRYPTABLE, str(err)) from None
    try:
        return decode_update(blob, codec_spec(spec), max_blob_bytes(spec))
    except (UpdateTooLarge, MalformedUpdate) as err:
        raise Rejected(RejectReason.MALFORMED, str(err)) from None
    except (TensorNameMismatch, ShapeMismatch, DtypeMismatch) as err:
        raise Rejected(RejectReason.WRONG_SHAPE, str(err)) from None
    except NonFiniteValues as err:
        raise Rejected(RejectReason.NON_FINITE, str(err)) from None


def check_norm(delta: State, spec: TaskSpec) -> None:
    """Reject an update whose L2 norm exceeds the task's bound, compared exactly on the grid.

    Raises
    ------
    Rejected
        With `RejectReason.NORM_EXCEEDED`.
    """
    bits = spec.fixed_point_bits
    row = quantise([delta], [1], bits).values
    squared = exact_sq_norms(row)[0]
    bound = round(spec.update_norm_bound * (1 << bits))
    if squared > bound * bound:
        norm = squared**0.5 / (1 << bits)
        raise Rejected(
            RejectReason.NORM_EXCEEDED,
            f"L2 norm {norm:.6g} exceeds the task's bound {spec.update_norm_bound}",
        )


def verify_submission(
    sub: Submission, frame: RoundFrame, fetch: Fetch, decrypt: Decrypt | None = None
) -> VerifiedUpdate:
    """Run every per-update check on one revealed update.

    Parameters
    ----------
    sub
        The revealed update.
    frame
        The round it was revealed in.
    fetch
        Reads CID-checked content from the store.
    decrypt
        Opens updates encrypted for the round's recipients with this verifier's key; None for a
        verifier with no key (it can judge no encrypted update).

    Returns
    -------
    VerifiedUpdate
        The decoded delta and its signed manifest.

    Raises
    ------
    Rejected
        Naming the first check that failed. An envelope CID that is not one raw block is
        `BAD_ENVELOPE` (an honest envelope, at most 64 KiB, always is one), and one that does not
        parse is `CID_MISMATCH`, as a fetch would say; both before anything is fetched, so a DAG
        revealed as an envelope costs no download.
    CannotJudge
        If the update is encrypted and this verifier is not one of its required recipients.
    """
    try:
        envelope_cid = CID.parse(sub.cid)
    except InvalidCID as err:
        raise Rejected(RejectReason.CID_MISMATCH, f"envelope {sub.cid}: {err}") from None
    if envelope_cid.codec != RAW:
        raise Rejected(RejectReason.BAD_ENVELOPE, f"envelope {sub.cid} is not a single raw block")
    envelope = _fetch(fetch, sub.cid, MAX_ENVELOPE_BYTES, "envelope")
    manifest = _open(sub, frame, envelope)
    limit = max_blob_bytes(frame.spec) + ENCRYPTION_OVERHEAD
    blob = _fetch(fetch, manifest.update_cid, limit, "update")
    delta = _decode(blob, manifest, frame, decrypt)
    check_norm(delta, frame.spec)
    return VerifiedUpdate(sub, manifest, {name: delta[name] for name in sorted(delta)})
