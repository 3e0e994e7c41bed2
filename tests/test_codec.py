"""The canonical update codec: determinism, safetensors compatibility, and named rejections of
hostile bytes (pickles, truncation, lying headers, wrong shapes/dtypes, NaN/Inf)."""

from __future__ import annotations

import io
import json
import math
import os
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.torch
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from swarmchain.node.errors import VerificationError
from swarmchain.storage.codec import (
    METADATA,
    decode_update,
    encode_update,
    encoded_size,
    tensor_spec,
)
from swarmchain.storage.errors import (
    DtypeMismatch,
    MalformedUpdate,
    NonFiniteValues,
    ShapeMismatch,
    TensorNameMismatch,
    UpdateTooLarge,
)


def _update() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "fc.weight": torch.randn(3, 4, generator=generator),
        "fc.bias": torch.randn(3, generator=generator),
        "bn.num_batches_tracked": torch.tensor(7, dtype=torch.int64),
        "emb": torch.randn(2, 2, generator=generator).to(torch.bfloat16),
    }


SPEC = tensor_spec(_update())
BOUND = 1 << 20


def _raw(header: dict[str, Any], data: bytes, *, pad: bool = True) -> bytes:
    """A safetensors-shaped file with any header, written by hand."""
    text = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def _header_of(encoded: bytes) -> dict[str, Any]:
    (length,) = struct.unpack_from("<Q", encoded)
    header: dict[str, Any] = json.loads(encoded[8 : 8 + length])
    return header


def test_equal_tensors_give_equal_bytes() -> None:
    update = _update()
    reordered = dict(reversed(list(update.items())))
    strided = {**update, "fc.weight": update["fc.weight"].t().contiguous().t()}
    assert not strided["fc.weight"].is_contiguous()
    assert encode_update(update) == encode_update(reordered) == encode_update(strided)


def test_encoding_is_sorted_canonical_safetensors() -> None:
    encoded = encode_update(_update())
    header = _header_of(encoded)
    assert header["__metadata__"] == METADATA
    assert [k for k in header if k != "__metadata__"] == sorted(_update())
    loaded = safetensors.torch.load(encoded)
    for name, tensor in _update().items():
        assert torch.equal(loaded[name], tensor)
    assert len(encoded) == encoded_size(SPEC)


def test_decode_round_trips() -> None:
    decoded = decode_update(encode_update(_update()), SPEC, BOUND)
    assert list(decoded) == sorted(_update())
    for name, tensor in _update().items():
        assert decoded[name].dtype == tensor.dtype
        assert torch.equal(decoded[name], tensor)


@settings(max_examples=25, deadline=None)
@given(
    st.dictionaries(
        st.text(alphabet="abcdefghij._", min_size=1, max_size=8),
        st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), max_size=6),
        max_size=4,
    )
)
def test_any_finite_float32_update_round_trips(values: dict[str, list[float]]) -> None:
    update = {name: torch.tensor(v, dtype=torch.float32) for name, v in values.items()}
    encoded = encode_update(update)
    decoded = decode_update(encoded, tensor_spec(update), encoded_size(tensor_spec(update)))
    assert encode_update(decoded) == encoded


def test_size_is_bounded_before_parsing() -> None:
    encoded = encode_update(_update())
    with pytest.raises(UpdateTooLarge, match=str(len(encoded))):
        decode_update(encoded, SPEC, len(encoded) - 1)


class _Exploit:
    """A pickle that would create a file if anything unpickled it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_payload_is_rejected_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"fc.weight": _Exploit(marker)})
    with pytest.raises(MalformedUpdate):
        decode_update(payload, SPEC, BOUND)
    assert not marker.exists()


def test_a_torch_save_file_is_rejected() -> None:
    buffer = io.BytesIO()
    torch.save(_update(), buffer)
    with pytest.raises(MalformedUpdate):
        decode_update(buffer.getvalue(), SPEC, BOUND)


@pytest.mark.parametrize("cut", [0, 5, 8, 40, -1], ids=["empty", "5B", "8B", "mid-header", "-1B"])
def test_a_truncated_file_is_rejected(cut: int) -> None:
    encoded = encode_update(_update())
    with pytest.raises(MalformedUpdate, match=r"truncated|data holds"):
        decode_update(encoded[:cut], SPEC, BOUND)


def test_every_rejection_is_a_verification_error() -> None:
    with pytest.raises(VerificationError):
        decode_update(b"\x00" * 3, SPEC, BOUND)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (struct.pack("<Q", 1 << 40) + b"{}", "header length"),
        (_raw({}, b"")[:8] + b"\xff" * 8, "not UTF-8 JSON"),
        (struct.pack("<Q", 8) + b"[1,2,3] ", "JSON list"),
        (struct.pack("<Q", 16) + b'{"a":1,"a":2}   ', "repeats a key"),
        (struct.pack("<Q", 8) + b"NaN     ", "non-JSON literal"),
        (_raw({"__metadata__": {"format": "pt"}}, b""), "metadata"),
    ],
    ids=["huge-length", "binary", "list", "duplicate", "nan-literal", "metadata"],
)
def test_malformed_headers_are_named(payload: bytes, reason: str) -> None:
    with pytest.raises(MalformedUpdate, match=reason):
        decode_update(payload, SPEC, BOUND)


def _tampered_header(change: dict[str, Any]) -> bytes:
    encoded = encode_update(_update())
    header = _header_of(encoded)
    (length,) = struct.unpack_from("<Q", encoded)
    header["fc.bias"] = {**header["fc.bias"], **change}
    return _raw(header, encoded[8 + length :])


@pytest.mark.parametrize(
    ("change", "error", "reason"),
    [
        ({"dtype": "F8_E4M3"}, MalformedUpdate, "not allowed"),
        ({"dtype": "F64"}, DtypeMismatch, "float64, the task spec says float32"),
        ({"shape": [4]}, ShapeMismatch, r"shape \[4\], the task spec says \[3\]"),
        ({"shape": [3.0]}, MalformedUpdate, "not a list of sizes"),
        ({"shape": [True, 3]}, MalformedUpdate, "not a list of sizes"),
        ({"data_offsets": [0, 11]}, MalformedUpdate, "out of place"),
        ({"data_offsets": [-4, 8]}, MalformedUpdate, "not two offsets"),
        ({"extra": 1}, MalformedUpdate, "exactly data_offsets/dtype/shape"),
    ],
)
def test_lying_entries_are_named(
    change: dict[str, Any], error: type[Exception], reason: str
) -> None:
    with pytest.raises(error, match=reason):
        decode_update(_tampered_header(change), SPEC, BOUND)


def test_wrong_tensor_names_are_named() -> None:
    update = _update()
    update["rogue"] = update.pop("fc.bias")
    with pytest.raises(TensorNameMismatch, match=r"lacks tensors \['fc.bias'\].*\['rogue'\]"):
        decode_update(encode_update(update), SPEC, BOUND)


def test_trailing_bytes_are_rejected() -> None:
    with pytest.raises(MalformedUpdate, match="data holds"):
        decode_update(encode_update(_update()) + b"\x00", SPEC, BOUND)


def test_a_non_canonical_header_is_rejected() -> None:
    encoded = encode_update(_update())
    (length,) = struct.unpack_from("<Q", encoded)
    header = json.dumps(_header_of(encoded), indent=1).encode()  # same content, other spacing
    header += b" " * (-len(header) % 8)
    respaced = struct.pack("<Q", len(header)) + header + encoded[8 + length :]
    with pytest.raises(MalformedUpdate, match="canonical"):
        decode_update(respaced, SPEC, BOUND)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_rejected(bad: float) -> None:
    encoded = bytearray(encode_update(_update()))
    header = _header_of(bytes(encoded))
    start = 8 + struct.unpack_from("<Q", encoded)[0] + header["fc.bias"]["data_offsets"][0]
    encoded[start : start + 4] = np.float32(bad).tobytes()
    with pytest.raises(NonFiniteValues, match=r"'fc\.bias' holds 1 NaN or infinite"):
        decode_update(bytes(encoded), SPEC, BOUND)


def test_encoding_refuses_what_peers_would_reject() -> None:
    with pytest.raises(ValueError, match="NaN or Inf"):
        encode_update({"w": torch.tensor([1.0, math.nan])})
    with pytest.raises(ValueError, match="not allowed"):
        encode_update({"w": torch.zeros(2, dtype=torch.complex64)})
    with pytest.raises(ValueError, match="not allowed"):
        encode_update({"__metadata__": torch.zeros(1)})
