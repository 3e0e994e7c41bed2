"""Hostile update blobs, fuzzed: every input either decodes to tensors of exactly the expected
spec or raises a named `VerificationError`; nothing crashes, allocates what a header merely
claims, or runs code hidden in a pickle."""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swarmchain.node.errors import VerificationError
from swarmchain.storage.codec import decode_update, encode_update, encoded_size, tensor_spec
from swarmchain.storage.errors import MalformedUpdate, UpdateTooLarge

UPDATE = {
    "fc.bias": torch.arange(3, dtype=torch.float32),
    "fc.weight": torch.linspace(-1.0, 1.0, 12).reshape(3, 4),
}
SPEC = tensor_spec(UPDATE)
VALID = encode_update(UPDATE)
BOUND = encoded_size(SPEC)
LOOSE = 1 << 26  # a bound far above the tight one, so only the parser stands in the way

FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
JSON_LEAF = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
JSON = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


def _decode(data: bytes, max_bytes: int = LOOSE) -> dict[str, torch.Tensor] | None:
    """Decode hostile bytes: the tensors if they are a valid update, None if a named error."""
    try:
        tensors = decode_update(data, SPEC, max_bytes)
    except VerificationError:
        return None
    assert tensor_spec(tensors) == dict(SPEC)
    assert all(bool(torch.isfinite(t).all()) for t in tensors.values())
    return tensors


def _file(header_length: int, header: bytes, data: bytes = b"") -> bytes:
    return struct.pack("<Q", header_length) + header + data


@FUZZ
@given(st.binary(max_size=512))
def test_random_bytes_are_rejected_by_name(data: bytes) -> None:
    assert _decode(data) is None


@FUZZ
@given(st.binary(min_size=1, max_size=8).map(lambda b: b * 64))
def test_repeated_patterns_are_rejected_by_name(data: bytes) -> None:
    assert _decode(data) is None


@given(st.integers(min_value=0, max_value=len(VALID) - 1))
@settings(max_examples=60, deadline=None)
def test_every_truncation_is_rejected_as_malformed(cut: int) -> None:
    with pytest.raises(MalformedUpdate):
        decode_update(VALID[:cut], SPEC, LOOSE)


@FUZZ
@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_a_lying_header_length_is_rejected_as_malformed(length: int) -> None:
    true_length = struct.unpack_from("<Q", VALID)[0]
    if length == true_length:
        length += 1
    with pytest.raises(MalformedUpdate):
        decode_update(struct.pack("<Q", length) + VALID[8:], SPEC, LOOSE)


@FUZZ
@given(
    st.sampled_from(["fc.bias", "fc.weight"]),
    st.lists(st.integers(min_value=0, max_value=2**64), min_size=0, max_size=4),
    st.tuples(st.integers(min_value=0, max_value=2**64), st.integers(min_value=0, max_value=2**64)),
)
def test_huge_declared_sizes_are_rejected_by_name(
    name: str, shape: list[int], offsets: tuple[int, int]
) -> None:
    length = struct.unpack_from("<Q", VALID)[0]
    header = json.loads(VALID[8 : 8 + length])
    original = header[name]
    header[name] = {"data_offsets": list(offsets), "dtype": "F32", "shape": shape}
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    if _decode(_file(len(text), text, VALID[8 + length :])) is not None:
        assert header[name] == original  # only the true entry decodes


@FUZZ
@given(JSON)
def test_any_json_header_is_rejected_or_exact(header: Any) -> None:
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    _decode(_file(len(text), text, VALID[-60:]))


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_deeply_nested_headers_are_rejected_as_malformed(depth: int) -> None:
    for opener in (b"[", b'{"a":'):
        text = opener * depth
        with pytest.raises(MalformedUpdate):
            decode_update(_file(len(text), text), SPEC, LOOSE)


@FUZZ
@given(st.integers(min_value=0, max_value=len(VALID) * 8 - 1), st.integers(1, 4))
def test_bit_flips_give_a_named_error_or_an_update_of_the_spec(position: int, count: int) -> None:
    data = bytearray(VALID)
    for k in range(count):
        bit = (position + 7919 * k) % (len(VALID) * 8)
        data[bit // 8] ^= 1 << (bit % 8)
    _decode(bytes(data))


@FUZZ
@given(st.binary(min_size=1, max_size=64))
def test_oversized_blobs_are_refused_before_parsing(extra: bytes) -> None:
    with pytest.raises(UpdateTooLarge):
        decode_update(VALID + extra, SPEC, BOUND)


class _Exploit:
    """Unpickling it would create `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


class _ShellExploit(_Exploit):
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def _pickles(marker: Path) -> list[bytes]:
    """Pickle-bearing payloads a hostile peer could send as an 'update'."""
    payloads = [
        pickle.dumps(cls(marker), protocol=protocol)
        for cls in (_Exploit, _ShellExploit)
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1)
    ]
    buffer = io.BytesIO()
    torch.save({"fc.weight": _Exploit(marker)}, buffer)  # a torch zip with data.pkl inside
    payloads.append(buffer.getvalue())
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(_ShellExploit(marker)))
    payloads.append(zipped.getvalue())
    # A safetensors-looking prefix whose tensor bytes are a pickle.
    body = pickle.dumps(_Exploit(marker))
    header = json.dumps(
        {"x": {"data_offsets": [0, len(body)], "dtype": "U8", "shape": [len(body)]}}
    ).encode()
    payloads.append(_file(len(header), header, body))
    return payloads


def test_pickle_payloads_are_rejected_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payloads = _pickles(marker)
    assert len(payloads) >= 10
    for payload in payloads:
        with pytest.raises(MalformedUpdate):
            decode_update(payload, SPEC, LOOSE)
    assert not marker.exists()


@given(st.binary(max_size=64), st.integers(min_value=0, max_value=15))
@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_pickles_with_junk_around_them_never_run(tmp_path: Path, junk: bytes, which: int) -> None:
    marker = tmp_path / "pwned"
    payloads = _pickles(marker)
    payload = payloads[which % len(payloads)]
    for blob in (junk + payload, payload + junk, payload[: len(payload) // 2] + junk):
        assert _decode(blob) is None
    assert not marker.exists()
