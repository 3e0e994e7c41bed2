"""Hostile envelopes and ciphertexts, fuzzed: no modified, foreign, replayed or malformed
envelope ever opens, and every rejection is a named `VerificationError`."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from swarmchain.node.errors import VerificationError
from swarmchain.storage.dag import cid_of
from swarmchain.storage.envelope import (
    ENCRYPTED_MAGIC,
    Manifest,
    decrypt_blob,
    encrypt_blob,
    open_envelope,
    sign_manifest,
)
from swarmchain.storage.errors import (
    BadEncryption,
    MalformedCiphertext,
    MalformedEnvelope,
    WrongNode,
    WrongRound,
    WrongSigner,
    WrongSwarm,
)
from swarmchain.storage.keys import NodeKeys

FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ_JSON = settings(FUZZ, max_examples=40)  # generating nested JSON costs more than checking it
COORDINATOR = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
NODE = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
CHAIN_ID = 31337
ROUND = 4
UPDATE = b"update bytes"
KEYS = NodeKeys.generate()
ATTACKER = NodeKeys.generate()
MANIFEST = Manifest(
    chain_id=CHAIN_ID,
    coordinator=COORDINATOR,
    round=ROUND,
    node=NODE,
    base_cid=cid_of(b"checkpoint 3"),
    update_cid=cid_of(UPDATE),
    content_hash="0x" + hashlib.sha256(UPDATE).hexdigest(),
    num_samples=120,
    metrics={"loss": 0.25, "accuracy_ppm": 912_000},
)
ENVELOPE = sign_manifest(MANIFEST, KEYS)
EXPECTED: dict[str, Any] = {
    "signer": KEYS.signing_public,
    "chain_id": CHAIN_ID,
    "coordinator": COORDINATOR,
    "round": ROUND,
    "node": NODE,
}
ADDRESSES = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)


def _open(data: bytes, **changes: Any) -> Manifest:
    return open_envelope(data, **(EXPECTED | changes))


def test_the_genuine_envelope_opens() -> None:
    assert _open(ENVELOPE) == MANIFEST


@FUZZ
@given(st.lists(st.integers(0, len(ENVELOPE) * 8 - 1), min_size=1, max_size=3, unique=True))
def test_no_bit_flip_of_an_envelope_opens(bits: list[int]) -> None:
    data = bytearray(ENVELOPE)
    for bit in bits:
        data[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(VerificationError):
        _open(bytes(data))


@pytest.mark.parametrize("field", ["signature", "signer"])
def test_upper_case_hex_is_not_a_second_encoding_of_the_envelope(field: str) -> None:
    body = json.loads(ENVELOPE)
    body[field] = "0x" + body[field][2:].upper()
    with pytest.raises(MalformedEnvelope):
        _open(_canonical(body))


def test_deeply_nested_json_is_a_malformed_envelope() -> None:
    with pytest.raises(MalformedEnvelope):
        _open(b"[" * 60_000)


@FUZZ
@given(st.binary(max_size=256))
def test_random_bytes_are_malformed_envelopes(data: bytes) -> None:
    with pytest.raises(MalformedEnvelope):
        _open(data)


@FUZZ_JSON
@given(JSON)
def test_random_json_is_a_malformed_envelope(value: Any) -> None:
    with pytest.raises(MalformedEnvelope):
        _open(json.dumps(value, sort_keys=True, separators=(",", ":")).encode())


@FUZZ_JSON
@given(st.dictionaries(st.sampled_from(sorted(MANIFEST.to_json())), JSON, min_size=1))
def test_a_re_signed_manifest_with_hostile_fields_is_rejected_by_name(
    changes: dict[str, Any],
) -> None:
    body = MANIFEST.to_json() | changes
    signature = KEYS.signing.sign(b"swarmchain/update-envelope/v1\n" + _canonical(body))
    envelope = _canonical(
        {
            "manifest": body,
            "signature": "0x" + signature.signature.hex(),
            "signer": "0x" + KEYS.signing_public.hex(),
        }
    )
    try:
        manifest = _open(envelope)
    except VerificationError:
        return
    assert manifest == Manifest.from_json(body)  # a well-typed manifest for this swarm/round/node


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@FUZZ
@given(st.binary(min_size=32, max_size=32))
def test_any_other_registered_key_rejects_the_envelope(signer: bytes) -> None:
    assume(signer != KEYS.signing_public)
    with pytest.raises(WrongSigner):
        _open(ENVELOPE, signer=signer)


def test_an_attacker_re_signing_a_victims_manifest_is_the_wrong_signer() -> None:
    forged = sign_manifest(MANIFEST, ATTACKER)
    with pytest.raises(WrongSigner):
        _open(forged)


@FUZZ
@given(st.integers(0, 2**53 - 1))
def test_a_replay_into_any_other_round_is_rejected(round_id: int) -> None:
    assume(round_id != ROUND)
    with pytest.raises(WrongRound):
        _open(ENVELOPE, round=round_id)


@FUZZ
@given(st.integers(0, 2**53 - 1), ADDRESSES)
def test_a_replay_into_any_other_swarm_is_rejected(chain_id: int, coordinator: str) -> None:
    assume(chain_id != CHAIN_ID or coordinator.lower() != COORDINATOR.lower())
    with pytest.raises(WrongSwarm):
        _open(ENVELOPE, chain_id=chain_id, coordinator=coordinator)


@FUZZ
@given(ADDRESSES)
def test_a_replay_by_any_other_node_is_rejected(node: str) -> None:
    assume(node.lower() != NODE.lower())
    with pytest.raises(WrongNode):
        _open(ENVELOPE, node=node)


RECIPIENTS = [KEYS.encryption_public, ATTACKER.encryption_public]
CIPHERTEXT = encrypt_blob(UPDATE * 4, RECIPIENTS)


def test_the_genuine_ciphertext_decrypts_for_each_member() -> None:
    assert decrypt_blob(CIPHERTEXT, KEYS, RECIPIENTS) == UPDATE * 4
    assert decrypt_blob(CIPHERTEXT, ATTACKER, RECIPIENTS) == UPDATE * 4


def _verdict(data: bytes, member: NodeKeys) -> type[Exception] | bytes:
    try:
        return decrypt_blob(data, member, RECIPIENTS)
    except (MalformedCiphertext, BadEncryption) as err:
        return type(err)


@FUZZ
@given(st.lists(st.integers(0, len(CIPHERTEXT) * 8 - 1), min_size=1, max_size=3, unique=True))
def test_any_bit_flip_is_rejected_alike_by_every_recipient(bits: list[int]) -> None:
    data = bytearray(CIPHERTEXT)
    for bit in bits:
        data[bit // 8] ^= 1 << (bit % 8)
    # Every byte is either authenticated or re-derived, so no flip opens, and no recipient
    # judges the blob differently from another.
    verdict = _verdict(bytes(data), KEYS)
    assert verdict in (MalformedCiphertext, BadEncryption)
    assert _verdict(bytes(data), ATTACKER) == verdict


@FUZZ
@given(st.binary(max_size=400), st.booleans())
def test_random_ciphertexts_are_rejected_by_name(data: bytes, with_magic: bool) -> None:
    blob = ENCRYPTED_MAGIC + data if with_magic else data
    with pytest.raises((MalformedCiphertext, BadEncryption)):
        decrypt_blob(blob, KEYS, RECIPIENTS)


@given(st.integers(0, len(CIPHERTEXT) - 1))
@settings(max_examples=60, deadline=None)
def test_truncated_ciphertexts_are_rejected_by_name(cut: int) -> None:
    with pytest.raises((MalformedCiphertext, BadEncryption)):
        decrypt_blob(CIPHERTEXT[:cut], KEYS, RECIPIENTS)
