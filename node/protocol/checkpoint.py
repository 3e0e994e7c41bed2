"""Checkpoints: model weights as canonical codec bytes, named by CID and SHA-256.

A checkpoint is encoded exactly like an update (`swarmchain.storage.codec.encode_update` over the
model's ``state_dict`` tensors), so equal weights give equal bytes, CID and hash on every machine;
the attested ``checkpointHash`` is the SHA-256 of those bytes and ``checkpointCid`` their CID.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache

import torch

from swarmchain.node.errors import VerificationError
from swarmchain.node.protocol.hashing import content_hash
from swarmchain.node.protocol.task import TaskSpec, expected_shapes
from swarmchain.storage.codec import decode_update, encode_update, encoded_size
from swarmchain.storage.dag import cid_of

State = dict[str, torch.Tensor]
CodecSpec = dict[str, tuple[tuple[int, ...], str]]

# `swarmchain.node.protocol.task.expected_shapes` dtype names -> the codec's torch names.
_CODEC_DTYPES = {"F32": "float32", "F64": "float64", "F16": "float16", "BF16": "bfloat16"}


class CheckpointMismatch(VerificationError):
    """A checkpoint blob does not hash to the value recorded for it."""


@dataclass(frozen=True)
class Checkpoint:
    """Model weights with their canonical bytes and names; equal when their hashes are."""

    state: State = field(compare=False)  # parameter name -> float32 CPU tensor, sorted names
    blob: bytes = field(compare=False, repr=False)  # canonical codec bytes
    cid: str  # CID of `blob` (CIDv1, raw leaves)
    hash: bytes  # SHA-256 of `blob` (32 bytes)


@cache
def _codec_spec(spec_json: bytes) -> CodecSpec:
    spec = TaskSpec.from_json(spec_json)
    return {
        name: (shape, _CODEC_DTYPES[dtype])
        for name, (shape, dtype) in expected_shapes(spec).items()
    }


def codec_spec(spec: TaskSpec) -> CodecSpec:
    """The names, shapes and codec dtype names every update and checkpoint of the task has."""
    return _codec_spec(spec.canonical_bytes())


def max_blob_bytes(spec: TaskSpec) -> int:
    """The exact size of any update or checkpoint of the task: the tight decoding bound."""
    return min(spec.max_update_bytes, encoded_size(codec_spec(spec)))


def encode_checkpoint(state: Mapping[str, torch.Tensor]) -> Checkpoint:
    """Encode weights canonically and name them.

    Parameters
    ----------
    state
        Parameter name -> tensor (copied to float32 CPU).

    Returns
    -------
    Checkpoint
        The weights with their bytes, CID and SHA-256.
    """
    tensors = {name: state[name].detach().cpu().float() for name in sorted(state)}
    blob = encode_update(tensors)
    return Checkpoint(tensors, blob, cid_of(blob), content_hash(blob))


def decode_checkpoint(blob: bytes, spec: TaskSpec, *, cid: str, expected_hash: bytes) -> Checkpoint:
    """Check a checkpoint blob against its recorded hash and the task's shapes, then decode it.

    Parameters
    ----------
    blob
        The bytes fetched for `cid` (the store already checked them against `cid`).
    spec
        The task whose model the checkpoint holds.
    cid
        The checkpoint's CID.
    expected_hash
        The SHA-256 recorded on-chain (or in the task document).

    Returns
    -------
    Checkpoint
        The decoded checkpoint.

    Raises
    ------
    CheckpointMismatch
        If the blob's SHA-256 differs from `expected_hash`.
    VerificationError
        A named codec error if the blob is not a canonical checkpoint of the task.
    """
    digest = content_hash(blob)
    if digest != expected_hash:
        raise CheckpointMismatch(
            f"checkpoint {cid} hashes to 0x{digest.hex()}, expected 0x{expected_hash.hex()}"
        )
    state = decode_update(blob, codec_spec(spec), max_blob_bytes(spec))
    return Checkpoint(state, blob, cid, digest)


def aggregate_of(checkpoint: Checkpoint, base: Checkpoint) -> State:
    """The step from `base` to `checkpoint` (``checkpoint - base``, elementwise float32).

    It is the centre rules such as centered clipping start from in the next round: a pure
    function of two public checkpoints, the same on every machine.
    """
    return {name: checkpoint.state[name] - base.state[name] for name in sorted(checkpoint.state)}
