"""Datasets: the bundled digits, IDX files (the MNIST family) and ``.npz`` files.

Every loader returns a `Dataset` of float32 images ``(N, C, H, W)`` scaled to ``[0, 1]`` and int64
labels. Files are the user's own or, for a reference set, bytes from peers: sizes are bounded
before reading, headers are checked against the payload, and ``.npz`` files are opened with
``allow_pickle=False``.
"""

from __future__ import annotations

import functools
import gzip
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
import torch

from swarmchain.node.aggregation.randomness import seeded_permutation
from swarmchain.node.errors import ConfigError

if TYPE_CHECKING:
    from swarmchain.node.protocol.task import DataSpec, TaskSpec

MAX_DATA_BYTES: Final = 1 << 30  # default bound on one data file, compressed or not
DIGITS: Final = "digits"

_IDX_DTYPES: Final[dict[int, np.dtype[Any]]] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class DataError(ConfigError):
    """A data file is missing, too large or malformed, or does not fit the task."""


@dataclass(frozen=True)
class Dataset:
    """Examples and labels held in memory."""

    x: torch.Tensor  # (N, C, H, W) float32 in [0, 1]
    y: torch.Tensor  # (N,) int64 class labels

    def __post_init__(self) -> None:
        if self.x.ndim != 4 or self.x.dtype != torch.float32:
            raise DataError(
                f"images must be (N, C, H, W) float32, got {self.x.dtype} {tuple(self.x.shape)}"
            )
        if self.y.shape != (self.x.shape[0],) or self.y.dtype != torch.int64:
            raise DataError(
                f"labels must be ({self.x.shape[0]},) int64, "
                f"got {self.y.dtype} {tuple(self.y.shape)}"
            )

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, indices: npt.ArrayLike) -> Dataset:
        """The examples at ``indices`` (in that order)."""
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return Dataset(self.x[idx], self.y[idx])


def load_digits() -> Dataset:
    """scikit-learn's bundled 8x8 handwritten digits: 1,797 images, 10 classes.

    Returns
    -------
    Dataset
        ``x`` is ``(1797, 1, 8, 8)`` scaled from 0..16 to ``[0, 1]``.
    """
    images, labels = _digits_arrays()
    return Dataset(torch.from_numpy(images.copy()), torch.from_numpy(labels.copy()))


@functools.cache
def _digits_arrays() -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """The digits as arrays, read from scikit-learn once per process."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = np.asarray(bunch.images, dtype=np.float32)[:, None] / np.float32(16.0)
    return images, np.asarray(bunch.target, dtype=np.int64)


def read_idx(path: Path, *, max_bytes: int = MAX_DATA_BYTES) -> npt.NDArray[np.generic]:
    """Read one IDX file (gzip-compressed when the name ends in ``.gz``).

    Parameters
    ----------
    path
        The file.
    max_bytes
        Largest file, and largest decompressed payload, accepted.

    Returns
    -------
    numpy.ndarray
        The array with the dimensions and type its header declares (native byte order).

    Raises
    ------
    DataError
        Missing file, bad magic number, unknown type code, or a payload whose size does not
        match the header.
    """
    raw = _read_bounded(path, max_bytes)
    if path.suffix == ".gz":
        raw = _gunzip(raw, max_bytes, path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path} is not an IDX file (bad magic number)")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES or ndim == 0:
        raise DataError(f"{path}: unknown IDX type code 0x{code:02x} or zero dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    dims = [int.from_bytes(raw[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim)]
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: header declares {dims} x {dtype.itemsize} bytes = {expected}, "
            f"file holds {len(raw) - header}"
        )
    array: npt.NDArray[np.generic] = np.frombuffer(raw, dtype=dtype, offset=header)
    return array.reshape(dims).astype(dtype.newbyteorder("="))


def load_idx(images: Path, labels: Path, *, max_bytes: int = MAX_DATA_BYTES) -> Dataset:
    """Load an image/label pair of IDX files (MNIST, Fashion-MNIST, KMNIST, ...).

    Parameters
    ----------
    images
        IDX file of ``(N, H, W)`` or ``(N, C, H, W)`` images; unsigned bytes are scaled by 1/255.
    labels
        IDX file of ``(N,)`` integer labels.
    max_bytes
        Bound on each file's size.

    Returns
    -------
    Dataset
        The examples.

    Raises
    ------
    DataError
        Malformed files or mismatched counts.
    """
    return _as_dataset(
        read_idx(images, max_bytes=max_bytes), read_idx(labels, max_bytes=max_bytes), str(images)
    )


def load_npz(source: Path | bytes, *, max_bytes: int = MAX_DATA_BYTES) -> Dataset:
    """Load a ``.npz`` archive holding arrays ``x`` (images) and ``y`` (labels).

    Parameters
    ----------
    source
        A path, or the archive's bytes (e.g. a reference set fetched from the content store).
    max_bytes
        Bound on the archive size and on each array's declared size.

    Returns
    -------
    Dataset
        The examples; ``x`` may be ``(N, H, W)`` or ``(N, C, H, W)``, unsigned bytes are scaled
        by 1/255.

    Raises
    ------
    DataError
        Oversized, not an npz, pickled objects, missing arrays, or mismatched shapes.
    """
    name = str(source) if isinstance(source, Path) else "npz bytes"
    raw = _read_bounded(source, max_bytes) if isinstance(source, Path) else source
    if len(raw) > max_bytes:
        raise DataError(f"{name} is {len(raw)} bytes, more than the {max_bytes} allowed")
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            declared = sum(info.file_size for info in archive.infolist())
        if declared > max_bytes:
            raise DataError(f"{name} expands to {declared} bytes, more than {max_bytes}")
        with np.load(io.BytesIO(raw), allow_pickle=False) as archive:
            if "x" not in archive.files or "y" not in archive.files:
                raise DataError(f"{name} must hold arrays 'x' and 'y', has {archive.files}")
            x, y = archive["x"], archive["y"]
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise DataError(f"{name} is not a readable npz archive: {exc}") from exc
    return _as_dataset(x, y, name)


def save_npz(data: Dataset, path: Path) -> None:
    """Write a dataset as an ``.npz`` with arrays ``x`` and ``y``, the layout `load_npz` reads.

    Parameters
    ----------
    data
        The examples to write.
    path
        The archive to create (or overwrite).
    """
    np.savez(path, x=data.x.numpy(), y=data.y.numpy())


def check_dataset(data: Dataset, spec: DataSpec) -> None:
    """Raise DataError unless ``data`` fits the task's input shape and classes.

    Parameters
    ----------
    data
        Loaded examples.
    spec
        The task's data section.
    """
    if tuple(data.x.shape[1:]) != spec.input_shape:
        raise DataError(
            f"examples have shape {tuple(data.x.shape[1:])}, the task needs {spec.input_shape}"
        )
    if len(data) and (int(data.y.min()) < 0 or int(data.y.max()) >= spec.num_classes):
        raise DataError(
            f"labels span {int(data.y.min())}..{int(data.y.max())}, "
            f"the task has classes 0..{spec.num_classes - 1}"
        )


def holdout_split(data: Dataset, size: int, seed: int) -> tuple[Dataset, Dataset]:
    """Split off ``size`` examples chosen by a SHA-256 permutation (identical everywhere).

    Parameters
    ----------
    data
        The full dataset.
    size
        Examples to hold out, ``1 <= size < len(data)``.
    seed
        Non-negative permutation seed.

    Returns
    -------
    tuple[Dataset, Dataset]
        ``(rest, held_out)``.
    """
    if not 1 <= size < len(data):
        raise DataError(f"holdout size must be in [1, {len(data)}), got {size}")
    perm = np.array(seeded_permutation(len(data), seed, "holdout"), dtype=np.int64)
    return data.subset(np.sort(perm[size:])), data.subset(np.sort(perm[:size]))


def task_splits(spec: TaskSpec) -> tuple[Dataset, Dataset]:
    """The training pool and the reference set of a task whose reference is a bundled holdout.

    Parameters
    ----------
    spec
        A task with ``data.dataset == "digits"`` and ``reference.source == "holdout"``.

    Returns
    -------
    tuple[Dataset, Dataset]
        ``(training_pool, reference_set)``, the same on every machine.

    Raises
    ------
    DataError
        The task's reference set is not a holdout of a bundled dataset.
    """
    if spec.reference.source != "holdout" or spec.data.dataset != DIGITS:
        raise DataError(
            f"task {spec.name!r} has reference source {spec.reference.source!r} on dataset "
            f"{spec.data.dataset!r}; only a holdout of the bundled {DIGITS!r} is built locally",
            hint="fetch the reference npz by its CID and use load_npz",
        )
    data = load_digits()
    check_dataset(data, spec.data)
    return holdout_split(data, spec.reference.size, spec.reference.seed)


def _as_dataset(x: npt.NDArray[np.generic], y: npt.NDArray[np.generic], name: str) -> Dataset:
    """Validate raw arrays and convert them to a `Dataset`."""
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise DataError(f"{name}: images must be (N, H, W) or (N, C, H, W), got shape {x.shape}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise DataError(f"{name}: {x.shape[0]} images but labels of shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{name}: labels must be integers, got {y.dtype}")
    if np.issubdtype(x.dtype, np.unsignedinteger) and x.dtype.itemsize == 1:
        images = x.astype(np.float32) / 255.0
    elif np.issubdtype(x.dtype, np.number) and not np.issubdtype(x.dtype, np.complexfloating):
        images = x.astype(np.float32)
    else:
        raise DataError(f"{name}: images must be numeric, got {x.dtype}")
    if not np.isfinite(images).all():
        raise DataError(f"{name}: images contain NaN or infinity")
    return Dataset(
        torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(y.astype(np.int64))
    )


def _read_bounded(path: Path, max_bytes: int) -> bytes:
    """Read a whole file after checking its size."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise DataError(f"{path} is {size} bytes, more than the {max_bytes} allowed")
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from exc


def _gunzip(raw: bytes, max_bytes: int, path: Path) -> bytes:
    """Decompress gzip data, refusing more than ``max_bytes`` of output."""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as stream:
            out = stream.read(max_bytes + 1)
    except (OSError, EOFError) as exc:
        raise DataError(f"{path} is not valid gzip: {exc}") from exc
    if len(out) > max_bytes:
        raise DataError(f"{path} decompresses to more than {max_bytes} bytes")
    return out
