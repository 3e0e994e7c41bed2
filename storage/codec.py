"""The canonical update codec: named tensors to bytes and back, with no pickle anywhere.

An update is a safetensors file written here byte by byte, so the same tensors give the same
bytes (and CID) on every machine and with every library version::

    u64 little-endian N | N bytes of header JSON, space-padded to a multiple of 8 | tensor data

The header is canonical JSON (sorted keys, no whitespace) holding the fixed `METADATA` and, per
tensor, ``{"data_offsets": [begin, end], "dtype": "F32", "shape": [...]}``. Tensor data is
little-endian, C-contiguous, laid out in sorted name order with no gaps. Any safetensors reader
loads these files.

Decoding treats the bytes as hostile: it bounds the size before anything else, parses and checks
the header itself (length, JSON, types, dtypes, contiguous in-range offsets), matches names,
dtypes and shapes against the task spec, insists on the canonical form, and only then lets
safetensors build the tensors, which are finally checked for NaN and Inf.

Reference: the safetensors format (https://github.com/huggingface/safetensors#format).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from typing import Any

import torch
from safetensors.torch import load as load_safetensors  # no pickle: a JSON header, raw bytes

from swarmchain.node import safejson
from swarmchain.storage.errors import (
    DtypeMismatch,
    MalformedUpdate,
    NonFiniteValues,
    ShapeMismatch,
    TensorNameMismatch,
    UpdateTooLarge,
)

METADATA = {"format": "pt", "swarmchain": "update-v1"}  # fixed `__metadata__` of every update
MAX_HEADER_BYTES = 16 * 1024 * 1024  # longest header read; a header is ~100 bytes per tensor

# torch dtype name (as task specs write it) -> (safetensors dtype, torch dtype, bytes per element)
DTYPES: dict[str, tuple[str, torch.dtype, int]] = {
    "float64": ("F64", torch.float64, 8),
    "float32": ("F32", torch.float32, 4),
    "float16": ("F16", torch.float16, 2),
    "bfloat16": ("BF16", torch.bfloat16, 2),
    "int64": ("I64", torch.int64, 8),
    "int32": ("I32", torch.int32, 4),
    "int16": ("I16", torch.int16, 2),
    "int8": ("I8", torch.int8, 1),
    "uint8": ("U8", torch.uint8, 1),
}
_NAME_OF = {st: name for name, (st, _, _) in DTYPES.items()}
_NAME_OF_TORCH = {dtype: name for name, (_, dtype, _) in DTYPES.items()}

TensorSpec = Mapping[str, tuple[tuple[int, ...], str]]  # name -> (shape, torch dtype name)


def dtype_name(dtype: torch.dtype) -> str:
    """The spec name of a torch dtype (``torch.float32`` -> ``"float32"``).

    Raises
    ------
    ValueError
        If the codec does not carry this dtype.
    """
    try:
        return _NAME_OF_TORCH[dtype]
    except KeyError:
        raise ValueError(
            f"dtype {dtype} is not allowed in updates (allowed: {list(DTYPES)})"
        ) from None


def tensor_spec(tensors: Mapping[str, torch.Tensor]) -> dict[str, tuple[tuple[int, ...], str]]:
    """The spec (shape and dtype per name) that `decode_update` checks updates of these tensors
    against."""
    return {name: (tuple(t.shape), dtype_name(t.dtype)) for name, t in sorted(tensors.items())}


def _canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _header(spec: TensorSpec) -> bytes:
    """The padded canonical header for tensors of this spec."""
    entries: dict[str, Any] = {"__metadata__": METADATA}
    offset = 0
    for name in sorted(spec):
        shape, dtype = spec[name]
        end = offset + math.prod(shape) * DTYPES[dtype][2]
        entries[name] = {"data_offsets": [offset, end], "dtype": DTYPES[dtype][0], "shape": shape}
        offset = end
    header = _canonical_json(entries)
    return header + b" " * (-len(header) % 8)


def encoded_size(spec: TensorSpec) -> int:
    """The exact byte length of an update matching `spec`: a tight `max_bytes` for decoding."""
    data = sum(math.prod(shape) * DTYPES[dtype][2] for shape, dtype in spec.values())
    return 8 + len(_header(spec)) + data


def encode_update(tensors: Mapping[str, torch.Tensor]) -> bytes:
    """Serialise named tensors canonically.

    Parameters
    ----------
    tensors
        The update: parameter name -> tensor (any device; copied to CPU).

    Returns
    -------
    bytes
        A safetensors file; equal tensors (same names, dtypes, shapes, bits) give equal bytes.

    Raises
    ------
    ValueError
        If a name is empty or reserved, a dtype is not allowed, or a tensor holds NaN or Inf
        (peers would reject it).
    """
    for name, tensor in tensors.items():
        if not name or name == "__metadata__":
            raise ValueError(f"tensor name {name!r} is not allowed")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"tensor {name!r} holds NaN or Inf; peers reject such updates")
    spec = tensor_spec(tensors)
    parts = [b"", _header(spec)]
    parts[0] = struct.pack("<Q", len(parts[1]))
    for name in sorted(tensors):
        flat = tensors[name].detach().to("cpu").contiguous().reshape(-1)
        parts.append(flat.view(torch.uint8).numpy().tobytes())
    return b"".join(parts)


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise MalformedUpdate(f"header repeats a key among {sorted(keys)[:10]}")
    return dict(pairs)


def _reject_constant(literal: str) -> None:
    raise MalformedUpdate(f"header holds the non-JSON literal {literal}")


def _parse_header(data: bytes) -> tuple[dict[str, Any], int]:
    """The header object and where tensor data starts; raises MalformedUpdate."""
    if len(data) < 8:
        raise MalformedUpdate(f"update is truncated: {len(data)} bytes, no header length")
    (length,) = struct.unpack_from("<Q", data)
    if length > MAX_HEADER_BYTES:
        raise MalformedUpdate(f"header length {length} exceeds {MAX_HEADER_BYTES} bytes")
    if 8 + length > len(data):
        raise MalformedUpdate(f"update is truncated: header of {length} bytes, {len(data)} in all")
    try:
        header = safejson.loads(
            data[8 : 8 + length].decode("utf-8"),
            object_pairs_hook=_reject_duplicates,
            parse_constant=_reject_constant,
        )
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise MalformedUpdate(f"header is not UTF-8 JSON: {err}") from None
    if not isinstance(header, dict):
        raise MalformedUpdate(f"header is a JSON {type(header).__name__}, not an object")
    return header, 8 + length


def _is_uint(value: Any) -> bool:
    return type(value) is int and value >= 0


def _check_entry(name: str, entry: Any) -> tuple[str, tuple[int, ...], int, int]:
    """(dtype name, shape, begin, end) of one header entry; raises MalformedUpdate."""
    if not isinstance(entry, dict) or set(entry) != {"data_offsets", "dtype", "shape"}:
        raise MalformedUpdate(f"tensor {name!r}: entry must hold exactly data_offsets/dtype/shape")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in _NAME_OF:
        raise MalformedUpdate(f"tensor {name!r}: dtype {dtype!r} is not allowed")
    if not isinstance(shape, list) or not all(_is_uint(d) for d in shape):
        raise MalformedUpdate(f"tensor {name!r}: shape {shape!r} is not a list of sizes")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(map(_is_uint, offsets)):
        raise MalformedUpdate(f"tensor {name!r}: data_offsets {offsets!r} are not two offsets")
    return _NAME_OF[dtype], tuple(shape), offsets[0], offsets[1]


def decode_update(data: bytes, expected: TensorSpec, max_bytes: int) -> dict[str, torch.Tensor]:
    """Parse and check an update from a peer.

    Parameters
    ----------
    data
        The encoded update (already checked against its content hash).
    expected
        The task spec: name -> (shape, dtype name such as ``"float32"``).
    max_bytes
        Largest encoding accepted (`encoded_size(expected)` is the tight bound).

    Returns
    -------
    dict[str, torch.Tensor]
        The tensors, by sorted name.

    Raises
    ------
    UpdateTooLarge
        If `data` exceeds `max_bytes`; checked before anything is parsed.
    MalformedUpdate
        If it is truncated, not safetensors (e.g. a pickle), has a bad header, gaps or overlaps
        in the data, or a non-canonical encoding.
    TensorNameMismatch, DtypeMismatch, ShapeMismatch
        If names, dtypes or shapes differ from `expected`.
    NonFiniteValues
        If a float tensor holds NaN or Inf.
    """
    if len(data) > max_bytes:
        raise UpdateTooLarge(f"update holds {len(data)} bytes, more than the bound {max_bytes}")
    header, data_start = _parse_header(data)
    if header.pop("__metadata__", None) != METADATA:
        raise MalformedUpdate(f"header metadata is not {METADATA}")
    entries = {name: _check_entry(name, entry) for name, entry in header.items()}
    if set(entries) != set(expected):
        missing, extra = sorted(set(expected) - set(entries)), sorted(set(entries) - set(expected))
        raise TensorNameMismatch(f"update lacks tensors {missing} and has unexpected {extra}")
    offset = 0
    for name in sorted(entries):
        dtype, shape, begin, end = entries[name]
        want_shape, want_dtype = expected[name]
        if dtype != want_dtype:
            raise DtypeMismatch(f"tensor {name!r} is {dtype}, the task spec says {want_dtype}")
        if shape != tuple(want_shape):
            raise ShapeMismatch(
                f"tensor {name!r} has shape {list(shape)}, the task spec says {list(want_shape)}"
            )
        if begin != offset or end - begin != math.prod(shape) * DTYPES[dtype][2]:
            raise MalformedUpdate(f"tensor {name!r}: data_offsets [{begin}, {end}] out of place")
        offset = end
    if data_start + offset != len(data):
        raise MalformedUpdate(
            f"tensor data holds {len(data) - data_start} bytes, expected {offset}"
        )
    if data[8:data_start] != _header(expected):
        raise MalformedUpdate("header is not in canonical form (key order, spacing or padding)")
    try:
        tensors = load_safetensors(data)
    except Exception as err:  # the parser's own error types are not part of its API
        raise MalformedUpdate(f"safetensors rejected the update: {err}") from None
    for name in sorted(tensors):
        tensor = tensors[name]
        if tensor.is_floating_point():
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                raise NonFiniteValues(f"tensor {name!r} holds {bad} NaN or infinite values")
    return {name: tensors[name] for name in sorted(tensors)}
