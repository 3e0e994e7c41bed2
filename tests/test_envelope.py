"""Signed update envelopes and member encryption: what verifies, and each named rejection."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from swarmchain.node.errors import ConfigError
from swarmchain.storage.dag import cid_of
from swarmchain.storage.envelope import (
    ENCRYPTED_MAGIC,
    MAX_ENVELOPE_BYTES,
    Manifest,
    canonical_json,
    decrypt_blob,
    encrypt_blob,
    encrypted_recipients,
    is_encrypted,
    open_envelope,
    sign_manifest,
    valid_x25519_key,
)
from swarmchain.storage.errors import (
    BadEncryption,
    BadSignature,
    MalformedCiphertext,
    MalformedEnvelope,
    NotARecipient,
    WrongNode,
    WrongRound,
    WrongSigner,
    WrongSwarm,
)
from swarmchain.storage.keys import NodeKeys

COORDINATOR = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
OTHER_COORDINATOR = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
NODE = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
UPDATE = b"update bytes"


def _manifest(**changes: Any) -> Manifest:
    fields: dict[str, Any] = {
        "chain_id": 31337,
        "coordinator": COORDINATOR,
        "round": 4,
        "node": NODE,
        "base_cid": cid_of(b"checkpoint 3"),
        "update_cid": cid_of(UPDATE),
        "content_hash": "0x" + hashlib.sha256(UPDATE).hexdigest(),
        "num_samples": 120,
        "metrics": {"loss": 0.25, "accuracy_ppm": 912_000},
    }
    return Manifest(**(fields | changes))


@pytest.fixture(scope="module")
def keys() -> NodeKeys:
    return NodeKeys.generate()


def _open(envelope: bytes, keys: NodeKeys, **changes: Any) -> Manifest:
    expected: dict[str, Any] = {
        "signer": keys.signing_public,
        "chain_id": 31337,
        "coordinator": COORDINATOR,
        "round": 4,
        "node": NODE,
    }
    return open_envelope(envelope, **(expected | changes))


def test_a_signed_envelope_verifies_and_returns_its_manifest(keys: NodeKeys) -> None:
    envelope = sign_manifest(_manifest(), keys)
    assert _open(envelope, keys) == _manifest()


def test_the_envelope_is_canonical_json(keys: NodeKeys) -> None:
    envelope = sign_manifest(_manifest(), keys)
    assert canonical_json(json.loads(envelope)) == envelope
    assert b" " not in envelope and b"\n" not in envelope
    assert sign_manifest(_manifest(), keys) == envelope  # Ed25519 signatures are deterministic


def test_addresses_are_normalised_to_checksums() -> None:
    assert _manifest(node=NODE.lower()).node == NODE


def test_a_wrong_key_is_rejected(keys: NodeKeys) -> None:
    envelope = sign_manifest(_manifest(), NodeKeys.generate())
    with pytest.raises(WrongSigner):
        _open(envelope, keys)


def test_a_forged_signer_field_is_rejected(keys: NodeKeys) -> None:
    """An attacker who names the victim's key as signer cannot produce its signature."""
    forged = json.loads(sign_manifest(_manifest(num_samples=10**6), NodeKeys.generate()))
    forged["signer"] = "0x" + keys.signing_public.hex()
    with pytest.raises(BadSignature):
        _open(canonical_json(forged), keys)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("round", 5),
        ("chain_id", 1),
        ("coordinator", OTHER_COORDINATOR),
        ("node", "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"),
        ("base_cid", cid_of(b"another checkpoint")),
        ("update_cid", cid_of(b"another update")),
        ("content_hash", "0x" + "00" * 32),
        ("num_samples", 121),
        ("metrics", {"loss": 0.2, "accuracy_ppm": 912_000}),
    ],
)
def test_any_modified_field_breaks_the_signature(keys: NodeKeys, field: str, value: Any) -> None:
    envelope = json.loads(sign_manifest(_manifest(), keys))
    envelope["manifest"][field] = value
    with pytest.raises(BadSignature):
        _open(canonical_json(envelope), keys)


def test_a_replay_into_another_round_is_rejected(keys: NodeKeys) -> None:
    envelope = sign_manifest(_manifest(round=3), keys)
    with pytest.raises(WrongRound, match="round 3, verifying round 4"):
        _open(envelope, keys)


@pytest.mark.parametrize(
    "swarm", [{"chain_id": 1}, {"coordinator": OTHER_COORDINATOR}], ids=["chain", "coordinator"]
)
def test_a_replay_into_another_swarm_is_rejected(keys: NodeKeys, swarm: dict[str, Any]) -> None:
    envelope = sign_manifest(_manifest(**swarm), keys)
    with pytest.raises(WrongSwarm):
        _open(envelope, keys)


def test_an_envelope_naming_another_node_is_rejected(keys: NodeKeys) -> None:
    envelope = sign_manifest(_manifest(), keys)
    with pytest.raises(WrongNode):
        _open(envelope, keys, node="0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e + b" ",
        lambda e: e.replace(b'"round":4', b'"round": 4'),
        lambda e: b"[" + e + b"]",
        lambda e: e[:-5],
        lambda e: b"\xff" + e,
        lambda e: b" " * (MAX_ENVELOPE_BYTES + 1),
    ],
    ids=["trailing-space", "spacing", "not-object", "truncated", "not-utf8", "too-large"],
)
def test_malformed_envelopes_are_rejected(keys: NodeKeys, mutate: Any) -> None:
    with pytest.raises(MalformedEnvelope):
        _open(mutate(sign_manifest(_manifest(), keys)), keys)


def test_a_signed_but_mistyped_manifest_is_rejected(keys: NodeKeys) -> None:
    body = _manifest().to_json() | {"num_samples": "120"}
    signature = keys.signing.sign(b"swarmchain/update-envelope/v1\n" + canonical_json(body))
    envelope = canonical_json(
        {
            "manifest": body,
            "signature": "0x" + signature.signature.hex(),
            "signer": "0x" + keys.signing_public.hex(),
        }
    )
    with pytest.raises(MalformedEnvelope, match="num_samples"):
        _open(envelope, keys)


@pytest.mark.parametrize(
    "changes",
    [
        {"round": -1},
        {"num_samples": True},
        {"chain_id": 2**53},
        {"node": "0x1234"},
        {"node": "0x70997970C51812dc3A010C7d01b50e0d17dc79c8"},  # mixed case, bad checksum
        {"base_cid": "QmRaaUwTNfwgFZpeUy8qrZwrp2dY4kCKmmB5xEqvH3vtD1"},
        {"content_hash": "0x" + "AB" * 32},
        {"metrics": {"loss": float("nan")}},
        {"metrics": {"": 1}},
    ],
)
def test_manifest_fields_are_validated(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        _manifest(**changes)


def _wrap_at(position: int) -> int:
    """Where recipient `position`'s 48-byte wrap starts in an encrypted blob."""
    return len(ENCRYPTED_MAGIC) + 32 + 2 + position * (32 + 48) + 32


def test_members_decrypt_and_outsiders_cannot() -> None:
    members = [NodeKeys.generate() for _ in range(3)]
    recipients = [m.encryption_public for m in members]
    sealed = encrypt_blob(UPDATE, recipients)
    assert is_encrypted(sealed) and UPDATE not in sealed
    assert encrypted_recipients(sealed) == recipients
    assert all(decrypt_blob(sealed, member, recipients) == UPDATE for member in members)
    with pytest.raises(NotARecipient):
        decrypt_blob(sealed, NodeKeys.generate(), recipients)


def test_each_encryption_uses_a_fresh_key() -> None:
    member = NodeKeys.generate().encryption_public
    assert encrypt_blob(UPDATE, [member]) != encrypt_blob(UPDATE, [member])


def test_tampered_ciphertext_is_rejected() -> None:
    member = NodeKeys.generate()
    recipients = [member.encryption_public]
    sealed = bytearray(encrypt_blob(UPDATE, recipients))
    sealed[-1] ^= 1
    with pytest.raises(BadEncryption, match="authentication"):
        decrypt_blob(bytes(sealed), member, recipients)
    with pytest.raises(MalformedCiphertext, match="truncated"):
        decrypt_blob(bytes(sealed[:50]), member, recipients)
    with pytest.raises(MalformedCiphertext, match="magic"):
        decrypt_blob(UPDATE, member, recipients)


@pytest.mark.parametrize("spoiled", [0, 1, 2])
def test_a_wrap_spoiled_for_one_member_is_rejected_by_every_member(spoiled: int) -> None:
    # The split attack: K wrapped properly for some members and garbage for another. Those it
    # served see the spoiled wrap differ from its derivation; the spoiled one cannot open.
    members = [NodeKeys.generate() for _ in range(3)]
    recipients = [m.encryption_public for m in members]
    sealed = bytearray(encrypt_blob(UPDATE, recipients))
    sealed[_wrap_at(spoiled) + 5] ^= 0x40
    for member in members:
        with pytest.raises(BadEncryption):
            decrypt_blob(bytes(sealed), member, recipients)


def test_a_key_wrapped_for_different_members_is_rejected_by_every_member() -> None:
    # Two blobs' wraps spliced together: each member opens a key, but not the same one.
    members = [NodeKeys.generate() for _ in range(2)]
    recipients = [m.encryption_public for m in members]
    first, second = (encrypt_blob(UPDATE, recipients) for _ in range(2))
    spliced = first[: _wrap_at(1)] + second[_wrap_at(1) : _wrap_at(1) + 48]
    spliced += first[_wrap_at(1) + 48 :]
    for member in members:
        with pytest.raises(BadEncryption):
            decrypt_blob(spliced, member, recipients)


def test_a_blob_for_other_recipients_than_the_round_requires_is_rejected() -> None:
    members = [NodeKeys.generate() for _ in range(3)]
    recipients = [m.encryption_public for m in members]
    for listed in (recipients[:2], recipients[::-1]):
        sealed = encrypt_blob(UPDATE, listed)
        for member in members[:2]:
            with pytest.raises(BadEncryption, match="not the round's"):
                decrypt_blob(sealed, member, recipients)


def test_low_order_keys_are_invalid_and_refused_as_recipients() -> None:
    low_order = bytes([1]) + bytes(31)
    assert not valid_x25519_key(low_order)
    assert not valid_x25519_key(bytes(32))
    assert not valid_x25519_key(b"short")
    assert valid_x25519_key(NodeKeys.generate().encryption_public)
    with pytest.raises(ValueError, match="not a valid X25519"):
        encrypt_blob(UPDATE, [NodeKeys.generate().encryption_public, low_order])


def test_keyfile_round_trips_with_owner_only_permissions(tmp_path: Path) -> None:
    keys = NodeKeys.generate()
    path = tmp_path / "node.keys"
    keys.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = NodeKeys.load(path)
    assert loaded.signing_public == keys.signing_public
    assert loaded.encryption_public == keys.encryption_public
    with pytest.raises(ConfigError, match="already exists"):
        NodeKeys.generate().save(path)


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        '{"format": "other"}',
        '{"format": "swarmchain-node-keys/1", "ed25519_seed": "zz", "x25519_private": "00"}',
        '{"format": "swarmchain-node-keys/1", "ed25519_seed": "00", "x25519_private": "00"}',
    ],
)
def test_bad_keyfiles_are_config_errors(tmp_path: Path, content: str) -> None:
    path = tmp_path / "node.keys"
    path.write_text(content)
    with pytest.raises(ConfigError):
        NodeKeys.load(path)
    with pytest.raises(ConfigError, match="not found"):
        NodeKeys.load(tmp_path / "missing.keys")
