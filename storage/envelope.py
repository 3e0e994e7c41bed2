"""Signed update envelopes, and optional encryption of update blobs for the swarm's members.

An envelope is a small canonical manifest that says which update a node published for which
round of which swarm, signed with the node's Ed25519 key::

    {"manifest":{...},"signature":"0x<64 bytes>","signer":"0x<32 bytes>"}

All JSON here is canonical: sorted keys, no whitespace, UTF-8, integers within 2**53 - 1, finite
floats in Python's shortest round-trip form; an envelope whose bytes are not exactly the
canonical form of what they parse to is rejected. The signature covers ``DOMAIN`` followed by the
canonical manifest. The manifest carries the chain id and coordinator address (no replay into
another swarm), the round (no replay into another round) and the node address.

Encryption (optional): a fresh SecretBox key (XSalsa20-Poly1305) encrypts the blob, and that key
is wrapped for each member's X25519 public key with a SealedBox, so outsiders reading public IPFS
learn nothing but the blob's length and the number of recipients::

    b"SWENC\\x01" | u16 big-endian n | n x 80-byte SealedBox(key) | SecretBox(blob)

A recipient finds its wrapped key by trying each one. The CID and content hash of an encrypted
update are those of the encrypted bytes.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

import nacl.bindings
import nacl.exceptions
import nacl.secret
import nacl.utils
from eth_utils.address import is_address, is_checksum_address, to_checksum_address
from nacl.public import PublicKey, SealedBox
from nacl.signing import VerifyKey

from node import safejson
from storage.cid import CID
from storage.errors import (
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
from storage.keys import NodeKeys

DOMAIN = b"swarmchain/update-envelope/v1\n"  # prefix of every signed message
MAX_ENVELOPE_BYTES = 64 * 1024  # larger envelopes are rejected before parsing
MAX_SAFE_INT = 2**53 - 1  # largest integer every JSON implementation reads exactly
ENCRYPTED_MAGIC = b"SWENC\x01"
_WRAPPED_KEY_SIZE = nacl.secret.SecretBox.KEY_SIZE + nacl.bindings.crypto_box_SEALBYTES  # 80
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


def encrypt_blob(blob: bytes, members: Sequence[bytes]) -> bytes:
    """Encrypt a blob so that only the given members can read it.

    Parameters
    ----------
    blob
        The plaintext (an encoded update).
    members
        X25519 public keys (32 bytes each) of the recipients, the sender included if it wants to
        read it back.

    Returns
    -------
    bytes
        The encrypted blob.

    Raises
    ------
    ValueError
        If there are no members, more than 65,535, or a key is not 32 bytes.
    """
    if not 1 <= len(members) <= 0xFFFF:
        raise ValueError(f"need 1 to 65535 members, got {len(members)}")
    key = nacl.utils.random(nacl.secret.SecretBox.KEY_SIZE)
    wrapped = []
    for member in members:
        if len(member) != PublicKey.SIZE:
            raise ValueError(f"member keys are {PublicKey.SIZE} bytes, got {len(member)}")
        wrapped.append(bytes(SealedBox(PublicKey(member)).encrypt(key)))
    body = bytes(nacl.secret.SecretBox(key).encrypt(blob))
    return ENCRYPTED_MAGIC + struct.pack(">H", len(members)) + b"".join(wrapped) + body


def is_encrypted(data: bytes) -> bool:
    """Whether `data` starts like an `encrypt_blob` output."""
    return data.startswith(ENCRYPTED_MAGIC)


def decrypt_blob(data: bytes, keys: NodeKeys) -> bytes:
    """Decrypt a blob encrypted for this node.

    Raises
    ------
    MalformedCiphertext
        If the blob is truncated, not an encrypted blob, or fails authentication.
    NotARecipient
        If no wrapped key opens with this node's X25519 key.
    """
    if not is_encrypted(data) or len(data) < len(ENCRYPTED_MAGIC) + 2:
        raise MalformedCiphertext("not an encrypted blob (magic bytes missing)")
    start = len(ENCRYPTED_MAGIC) + 2
    (count,) = struct.unpack_from(">H", data, len(ENCRYPTED_MAGIC))
    body_start = start + count * _WRAPPED_KEY_SIZE
    if (
        count == 0
        or len(data)
        < body_start + nacl.secret.SecretBox.NONCE_SIZE + nacl.secret.SecretBox.MACBYTES
    ):
        raise MalformedCiphertext(f"encrypted blob of {len(data)} bytes is truncated")
    opener = SealedBox(keys.encryption)
    for index in range(count):
        wrapped = data[start + index * _WRAPPED_KEY_SIZE : start + (index + 1) * _WRAPPED_KEY_SIZE]
        try:
            key = opener.decrypt(wrapped)
        except nacl.exceptions.CryptoError:
            continue
        try:
            return bytes(nacl.secret.SecretBox(key).decrypt(data[body_start:]))
        except nacl.exceptions.CryptoError:
            raise MalformedCiphertext("encrypted blob fails authentication") from None
    raise NotARecipient(
        f"none of the {count} wrapped keys is for X25519 key 0x{keys.encryption_public.hex()}"
    )
