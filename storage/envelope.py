"""Signed update envelopes, and optional encryption of update blobs for the swarm's members.

An envelope is a small canonical manifest that says which update a node published for which
round of which swarm, signed with the node's Ed25519 key::

    {"manifest":{...},"signature":"0x<64 bytes>","signer":"0x<32 bytes>"}

All JSON here is canonical: sorted keys, no whitespace, UTF-8, integers within 2**53 - 1, finite
floats in Python's shortest round-trip form; an envelope whose bytes are not exactly the
canonical form of what they parse to is rejected. The signature covers ``DOMAIN`` followed by the
canonical manifest. The manifest carries the chain id and coordinator address (no replay into
another swarm), the round (no replay into another round) and the node address.

Encryption (only in swarms whose task enables it): a fresh SecretBox key K (XSalsa20-Poly1305)
encrypts the blob, and K is wrapped for each recipient's X25519 key ``P_i`` with an ephemeral key
pair ``(e, E)``::

    b"SWENC\\x02" | E | u16 big-endian n | n x (P_i | wrap_i) | SecretBox_K(e) | SecretBox_K(blob)
    wrap_i = SecretBox(K, nonce 0, key = BLAKE2b(X25519(e, P_i), E | P_i))   (48 bytes)

Every wrap is a deterministic function of ``(e, K, P_i)``, and ``e`` travels under K. So whoever
opens its own wrap recovers ``e`` and re-derives every other wrap; `decrypt_blob` accepts a blob
only if all of them match. That makes the verdict the same for every recipient: a sender that
wraps K for some members and garbage for others is rejected by the ones it served (a wrap differs
from its derivation) and by the ones it did not (their wrap does not open), so it cannot split
honest verifiers by what it shows each of them. The recipient list itself is public and must be
exactly the list the round requires. The CID and content hash of an encrypted update are those
of the encrypted bytes.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

import nacl.bindings
import nacl.encoding
import nacl.exceptions
import nacl.hash
import nacl.secret
import nacl.utils
from eth_utils.address import is_address, is_checksum_address, to_checksum_address
from nacl.signing import VerifyKey

from swarmchain.node import safejson
from swarmchain.storage.cid import CID
from swarmchain.storage.errors import (
    BadEncryption,
    BadSignature,
    InvalidCID,
    MalformedCiphertext,
    MalformedEnvelope,
    NotARecipient,
    WrongNode,
    WrongRound,
    WrongSigner,
    WrongSwarm,
)
from swarmchain.storage.keys import NodeKeys

DOMAIN = b"swarmchain/update-envelope/v1\n"  # prefix of every signed message
MAX_ENVELOPE_BYTES = 64 * 1024  # larger envelopes are rejected before parsing
MAX_SAFE_INT = 2**53 - 1  # largest integer every JSON implementation reads exactly
ENCRYPTED_MAGIC = b"SWENC\x02"
_KEY = nacl.secret.SecretBox.KEY_SIZE  # 32: K, X25519 keys and scalars alike
_BOX = nacl.secret.SecretBox.NONCE_SIZE + nacl.secret.SecretBox.MACBYTES  # 40 bytes around a box
_WRAP = _KEY + nacl.secret.SecretBox.MACBYTES  # 48: a wrap stores no nonce (its key is single-use)
_ZERO_NONCE = bytes(nacl.secret.SecretBox.NONCE_SIZE)
_WRAP_PERSON = b"swarmchain-wrap1"  # BLAKE2b personalisation: 16 bytes
_PROBE = bytes([9]) + bytes(31)  # a clamped test scalar for `valid_x25519_key`
_FIELDS = (
    "base_cid",
    "chain_id",
    "content_hash",
    "coordinator",
    "metrics",
    "node",
    "num_samples",
    "round",
    "update_cid",
)


def canonical_json(value: Any) -> bytes:
    """Canonical JSON: sorted keys, no whitespace, UTF-8, no NaN or Infinity."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _int(name: str, value: Any) -> int:
    if type(value) is not int or not 0 <= value <= MAX_SAFE_INT:
        raise ValueError(f"{name} must be an integer in [0, 2**53 - 1], got {value!r}")
    return value


def _address(name: str, value: Any) -> str:
    if not isinstance(value, str) or not is_address(value):
        raise ValueError(f"{name} must be a 0x address, got {value!r}")
    digits = value[2:]
    if digits not in (digits.lower(), digits.upper()) and not is_checksum_address(value):
        raise ValueError(f"{name} {value} has mixed case but an invalid EIP-55 checksum")
    return to_checksum_address(value)


def _cid(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a CID string, got {value!r}")
    try:
        CID.parse(value)
    except InvalidCID as err:
        raise ValueError(f"{name}: {err}") from None
    return value


def _metrics(value: Any) -> dict[str, int | float]:
    if not isinstance(value, Mapping):
        raise ValueError(f"metrics must be an object, got {value!r}")
    out: dict[str, int | float] = {}
    for key, number in value.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"metric names must be non-empty strings, got {key!r}")
        if type(number) is int:
            out[key] = _int(f"metric {key!r}", number)
        elif type(number) is float and math.isfinite(number):
            out[key] = number
        else:
            raise ValueError(f"metric {key!r} must be a finite number, got {number!r}")
    return out


@dataclass(frozen=True)
class Manifest:
    """What a node says about the update it published; every field is checked on creation.

    Raises
    ------
    ValueError
        If a field has the wrong type or form.
    """

    chain_id: int  # EIP-155 chain id of the swarm's chain
    coordinator: str  # the swarm's coordinator contract (checksummed)
    round: int  # the round this update belongs to
    node: str  # the publishing node's chain account (checksummed)
    base_cid: str  # CID of checkpoint round-1, which the update starts from
    update_cid: str  # CID of the update blob (encrypted bytes, if encrypted)
    content_hash: str  # 0x + SHA-256 hex of the update blob's exact bytes
    num_samples: int  # training samples behind the update
    metrics: Mapping[str, int | float] = field(default_factory=dict)  # e.g. local loss

    def __post_init__(self) -> None:
        for name in ("chain_id", "round", "num_samples"):
            _int(name, getattr(self, name))
        object.__setattr__(self, "coordinator", _address("coordinator", self.coordinator))
        object.__setattr__(self, "node", _address("node", self.node))
        _cid("base_cid", self.base_cid)
        _cid("update_cid", self.update_cid)
        digest = self.content_hash
        if (
            not isinstance(digest, str)
            or len(digest) != 66
            or not digest.startswith("0x")
            or digest[2:] != digest[2:].lower()
            or not all(c in "0123456789abcdef" for c in digest[2:])
        ):
            raise ValueError(f"content_hash must be 0x + 64 lower-case hex, got {digest!r}")
        object.__setattr__(self, "metrics", _metrics(self.metrics))

    def to_json(self) -> dict[str, Any]:
        """The manifest as a JSON object."""
        return {name: getattr(self, name) for name in _FIELDS} | {"metrics": dict(self.metrics)}

    @classmethod
    def from_json(cls, value: Any) -> Self:
        """Build a manifest from a parsed JSON object.

        Raises
        ------
        MalformedEnvelope
            If fields are missing, extra or malformed.
        """
        if not isinstance(value, dict) or set(value) != set(_FIELDS):
            keys = sorted(value) if isinstance(value, dict) else value
            raise MalformedEnvelope(f"manifest must hold exactly {list(_FIELDS)}, got {keys!r}")
        try:
            return cls(**value)
        except ValueError as err:
            raise MalformedEnvelope(f"manifest: {err}") from None


def sign_manifest(manifest: Manifest, keys: NodeKeys) -> bytes:
    """Sign a manifest with the node's Ed25519 key.

    Returns
    -------
    bytes
        The canonical envelope.
    """
    body = manifest.to_json()
    signature = keys.signing.sign(DOMAIN + canonical_json(body)).signature
    return canonical_json(
        {
            "manifest": body,
            "signature": "0x" + signature.hex(),
            "signer": "0x" + keys.signing_public.hex(),
        }
    )


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise MalformedEnvelope("envelope repeats a JSON key")
    return out


def _hex_bytes(name: str, value: Any, size: int) -> bytes:
    # Lower case only: one signed manifest has exactly one envelope encoding (no malleability).
    if (
        isinstance(value, str)
        and value.startswith("0x")
        and len(value) == 2 + 2 * size
        and all(c in "0123456789abcdef" for c in value[2:])
    ):
        return bytes.fromhex(value[2:])
    raise MalformedEnvelope(f"{name} must be 0x + {2 * size} lower-case hex digits")


def open_envelope(
    data: bytes,
    *,
    signer: bytes,
    chain_id: int,
    coordinator: str,
    round: int,
    node: str | None = None,
) -> Manifest:
    """Verify an envelope from a peer and return its manifest.

    Parameters
    ----------
    data
        The envelope's bytes.
    signer
        The Ed25519 public key the node registered on-chain.
    chain_id, coordinator
        The swarm this node is in.
    round
        The round being verified.
    node
        The chain address that revealed the update, if the envelope must name it.

    Returns
    -------
    Manifest
        The signed manifest.

    Raises
    ------
    MalformedEnvelope
        If the bytes are too long, not canonical JSON, or miss or mistype fields.
    WrongSigner
        If it is signed by another key than `signer`.
    BadSignature
        If the signature does not cover the manifest (a field was modified).
    WrongSwarm
        If it was made for another chain id or coordinator.
    WrongRound
        If it was made for another round.
    WrongNode
        If it names another node than `node`.
    """
    if len(data) > MAX_ENVELOPE_BYTES:
        raise MalformedEnvelope(f"envelope holds {len(data)} bytes, more than {MAX_ENVELOPE_BYTES}")
    try:
        parsed = safejson.loads(data.decode("utf-8"), object_pairs_hook=_reject_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise MalformedEnvelope(f"envelope is not UTF-8 JSON: {err}") from None
    if not isinstance(parsed, dict) or set(parsed) != {"manifest", "signature", "signer"}:
        raise MalformedEnvelope("envelope must hold exactly manifest, signature and signer")
    try:
        canonical = canonical_json(parsed)
    except ValueError as err:
        raise MalformedEnvelope(f"envelope holds a non-JSON value: {err}") from None
    if canonical != data:
        raise MalformedEnvelope("envelope is not in canonical form")
    claimed = _hex_bytes("signer", parsed["signer"], 32)
    if claimed != signer:
        raise WrongSigner(
            f"envelope signed by 0x{claimed.hex()}, registered key is 0x{signer.hex()}"
        )
    signature = _hex_bytes("signature", parsed["signature"], 64)
    try:
        VerifyKey(signer).verify(DOMAIN + canonical_json(parsed["manifest"]), signature)
    except nacl.exceptions.BadSignatureError:
        raise BadSignature(
            f"envelope signature by 0x{signer.hex()} does not match its manifest"
        ) from None
    manifest = Manifest.from_json(parsed["manifest"])
    if manifest.chain_id != chain_id or manifest.coordinator != _address(
        "coordinator", coordinator
    ):
        raise WrongSwarm(
            f"envelope is for chain {manifest.chain_id} coordinator {manifest.coordinator}, "
            f"this swarm is chain {chain_id} coordinator {coordinator}"
        )
    if manifest.round != round:
        raise WrongRound(f"envelope is for round {manifest.round}, verifying round {round}")
    if node is not None and manifest.node != _address("node", node):
        raise WrongNode(f"envelope names node {manifest.node}, the update was revealed by {node}")
    return manifest


def valid_x25519_key(key: bytes) -> bool:
    """Whether `key` is a 32-byte X25519 public key a shared secret can be agreed with.

    The low-order points (and their non-canonical encodings) give the all-zero secret for every
    private key, which libsodium refuses; a member that registered one can receive nothing.
    """
    if len(key) != _KEY:
        return False
    try:
        nacl.bindings.crypto_scalarmult(_PROBE, key)
    except nacl.exceptions.RuntimeError:
        return False
    return True


def _wrap_key(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    return nacl.hash.blake2b(
        ephemeral + recipient,
        digest_size=_KEY,
        key=shared,
        person=_WRAP_PERSON,
        encoder=nacl.encoding.RawEncoder,
    )


def _wrap(content_key: bytes, secret: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    shared = nacl.bindings.crypto_scalarmult(secret, recipient)
    box = nacl.secret.SecretBox(_wrap_key(shared, ephemeral, recipient))
    return bytes(box.encrypt(content_key, _ZERO_NONCE).ciphertext)


def encrypt_blob(blob: bytes, recipients: Sequence[bytes]) -> bytes:
    """Encrypt a blob so that exactly the given recipients can read it.

    Parameters
    ----------
    blob
        The plaintext (an encoded update).
    recipients
        X25519 public keys of the recipients in the order the round requires
        (`swarmchain.node.protocol.verify.round_recipients`), the sender included.

    Returns
    -------
    bytes
        The encrypted blob.

    Raises
    ------
    ValueError
        If there are no recipients, more than 65,535, or a key is not a valid X25519 key.
    """
    if not 1 <= len(recipients) <= 0xFFFF:
        raise ValueError(f"need 1 to 65535 recipients, got {len(recipients)}")
    for key in recipients:
        if not valid_x25519_key(key):
            raise ValueError(f"0x{key.hex()} is not a valid X25519 public key")
    content_key = nacl.utils.random(_KEY)
    secret = nacl.utils.random(_KEY)
    ephemeral = nacl.bindings.crypto_scalarmult_base(secret)
    body = nacl.secret.SecretBox(content_key)
    return b"".join(
        [
            ENCRYPTED_MAGIC,
            ephemeral,
            struct.pack(">H", len(recipients)),
            *(key + _wrap(content_key, secret, ephemeral, key) for key in recipients),
            bytes(body.encrypt(secret)),
            bytes(body.encrypt(blob)),
        ]
    )


def is_encrypted(data: bytes) -> bool:
    """Whether `data` starts like an encrypted blob (of this or an earlier format)."""
    return data.startswith(ENCRYPTED_MAGIC[:-1])


@dataclass(frozen=True)
class _Sealed:
    ephemeral: bytes  # E
    recipients: list[bytes]  # P_i, in order
    wraps: list[bytes]  # wrap_i, in order
    secret: bytes  # SecretBox_K(e)
    body: bytes  # SecretBox_K(blob)


def _parse(data: bytes) -> _Sealed:
    if not data.startswith(ENCRYPTED_MAGIC):
        raise MalformedCiphertext("not an encrypted blob of format 2 (magic bytes missing)")
    head = len(ENCRYPTED_MAGIC) + _KEY + 2
    if len(data) < head:
        raise MalformedCiphertext(f"encrypted blob of {len(data)} bytes is truncated")
    (count,) = struct.unpack_from(">H", data, head - 2)
    secret_at = head + count * (_KEY + _WRAP)
    body_at = secret_at + _BOX + _KEY
    if count == 0 or len(data) < body_at + _BOX:
        raise MalformedCiphertext(f"encrypted blob of {len(data)} bytes is truncated")
    entries = [
        data[head + i * (_KEY + _WRAP) : head + (i + 1) * (_KEY + _WRAP)] for i in range(count)
    ]
    return _Sealed(
        ephemeral=data[len(ENCRYPTED_MAGIC) : len(ENCRYPTED_MAGIC) + _KEY],
        recipients=[entry[:_KEY] for entry in entries],
        wraps=[entry[_KEY:] for entry in entries],
        secret=data[secret_at:body_at],
        body=data[body_at:],
    )


def encrypted_recipients(data: bytes) -> list[bytes]:
    """The X25519 keys an encrypted blob lists as its recipients, in order.

    Raises
    ------
    MalformedCiphertext
        If the blob is not a well-formed encrypted blob.
    """
    return _parse(data).recipients


def decrypt_blob(data: bytes, keys: NodeKeys, recipients: Sequence[bytes]) -> bytes:
    """Decrypt a blob, accepting it only if every recipient would read the same plaintext.

    Every check but the first is one that each listed recipient makes alike (see the module
    docstring), so the verdict does not depend on which recipient is asking.

    Parameters
    ----------
    data
        The encrypted blob.
    keys
        This node's keys.
    recipients
        The recipient list the round requires, in order.

    Returns
    -------
    bytes
        The plaintext.

    Raises
    ------
    NotARecipient
        If this node's key is not in `recipients`: it cannot judge the blob at all.
    MalformedCiphertext
        If the blob is truncated or not of this format.
    BadEncryption
        If the blob lists other recipients than required, a wrap does not open or differs from
        its derivation, or the ephemeral key or the body fails authentication.
    """
    me = keys.encryption_public
    if me not in recipients:
        raise NotARecipient(f"X25519 key 0x{me.hex()} is not among the round's recipients")
    sealed = _parse(data)
    if sealed.recipients != list(recipients):
        raise BadEncryption(
            f"wrapped for {len(sealed.recipients)} keys that are not the round's "
            f"{len(recipients)} recipients in order"
        )
    position = sealed.recipients.index(me)
    try:
        shared = nacl.bindings.crypto_scalarmult(bytes(keys.encryption), sealed.ephemeral)
        own = nacl.secret.SecretBox(_wrap_key(shared, sealed.ephemeral, me))
        content_key = own.decrypt(sealed.wraps[position], _ZERO_NONCE)
        box = nacl.secret.SecretBox(content_key)
        secret = box.decrypt(sealed.secret)
    except (nacl.exceptions.CryptoError, nacl.exceptions.RuntimeError):
        raise BadEncryption(f"the key wrapped for recipient {position} does not open") from None
    if len(secret) != _KEY or nacl.bindings.crypto_scalarmult_base(secret) != sealed.ephemeral:
        raise BadEncryption("the sealed ephemeral key does not match the blob's public one")
    for index, (key, wrap) in enumerate(zip(sealed.recipients, sealed.wraps, strict=True)):
        try:
            derived = _wrap(content_key, secret, sealed.ephemeral, key)
        except nacl.exceptions.RuntimeError:
            raise BadEncryption(f"recipient {index} has no valid X25519 key") from None
        if derived != wrap:
            raise BadEncryption(
                f"the key wrapped for recipient {index} differs from its derivation"
            )
    try:
        return bytes(box.decrypt(sealed.body))
    except nacl.exceptions.CryptoError:
        raise BadEncryption("the encrypted body fails authentication") from None
