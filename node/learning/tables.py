"""Members' tables: CSV and Parquet files, read through the columns and scaling the task fixes.

A hospital's data is often a table: one row per patient, some feature columns and an outcome.
The task names the feature columns (in the order the network reads them), the label column and
each feature's centre and scale (`swarmchain.node.protocol.task.DataSpec`), so every member feeds
the network alike whatever else its file holds. A file that does not fit is refused whole, with
an error naming the file and the first offending column or row: nothing half-read is trained on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pa_parquet
import torch

from swarmchain.node.learning.data import MAX_DATA_BYTES, DataError, Dataset
from swarmchain.node.protocol.task import DataSpec

TABLE_SUFFIXES = (".csv", ".parquet")


def read_table(path: Path, *, max_bytes: int = MAX_DATA_BYTES) -> pa.Table:
    """A CSV or Parquet file as an Arrow table (columns typed as the file gives them).

    Raises
    ------
    DataError
        An unknown suffix, an oversized or unreadable file, or one that does not parse.
    """
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise DataError(f"{path}: a table must be a .csv or .parquet file")
    try:
        size = path.stat().st_size
    except OSError as err:
        raise DataError(f"{path}: {err.strerror}") from None
    if size > max_bytes:
        raise DataError(f"{path} is {size} bytes, more than the {max_bytes} allowed")
    try:
        if suffix == ".csv":
            return pa_csv.read_csv(path)
        return pa_parquet.read_table(path)
    except (pa.ArrowException, OSError) as err:
        kind = "CSV" if suffix == ".csv" else "Parquet"
        raise DataError(f"{path}: not a readable {kind} table: {err}") from None


def write_table(table: pa.Table, path: Path) -> None:
    """Write a table in the format its suffix names (the inverse of `read_table`)."""
    if path.suffix.lower() == ".csv":
        pa_csv.write_csv(table, path)
    else:
        pa_parquet.write_table(table, path)


def load_table(path: Path, spec: DataSpec, *, max_bytes: int = MAX_DATA_BYTES) -> Dataset:
    """A member's table as examples of the task: its feature columns, scaled, and its labels.

    Parameters
    ----------
    path
        A ``.csv`` (header row first) or ``.parquet`` file.
    spec
        The task's data section: ``features``, ``label``, ``center``, ``scale``, classes.
    max_bytes
        Bound on the file's size.

    Returns
    -------
    Dataset
        ``x`` of shape ``(rows, 1, 1, features)``: ``(value - center) / scale`` in float32;
        ``y`` the labels.

    Raises
    ------
    DataError
        Naming the file and the first problem: the task names no columns, a column is missing,
        holds text, a missing or non-finite value (by row), or a label that is not a whole
        number in ``0 .. num_classes - 1`` (by row).
    """
    if not spec.features:
        raise DataError(
            f"{path}: the task names no feature columns (task.data.features), so it reads no tables"
        )
    table = read_table(path, max_bytes=max_bytes)
    missing = [c for c in (*spec.features, spec.label) if c not in table.column_names]
    if missing:
        raise DataError(f"{path} has no column {missing[0]!r}; its columns: {table.column_names}")
    features = np.stack([_numbers(table, c, path) for c in spec.features], axis=1)
    labels = class_labels(table, spec.label, path, spec.num_classes)
    center = np.asarray(spec.center or [0.0] * len(spec.features))
    scale = np.asarray(spec.scale or [1.0] * len(spec.features))
    x = ((features - center) / scale).astype(np.float32)
    n = x.shape[0]
    return Dataset(
        torch.from_numpy(x.reshape(n, 1, 1, -1)), torch.from_numpy(labels.astype(np.int64))
    )


def class_labels(
    table: pa.Table, name: str, path: Path, num_classes: int | None = None
) -> npt.NDArray[np.float64]:
    """A label column as whole numbers from 0 (below ``num_classes`` when given).

    Raises
    ------
    DataError
        Naming the first row whose label is missing, not a number, or not a class.
    """
    labels = _numbers(table, name, path)
    top = np.inf if num_classes is None else num_classes
    bad = np.flatnonzero(~((np.floor(labels) == labels) & (labels >= 0) & (labels < top)))
    if bad.size:
        i = int(bad[0])
        classes = "a class 0, 1, ..." if num_classes is None else f"a class 0..{num_classes - 1}"
        raise DataError(f"{_where(path, i)}: label {name!r} is {labels[i]:g}, not {classes}")
    return labels


def _numbers(table: pa.Table, name: str, path: Path) -> npt.NDArray[np.float64]:
    """A column as finite float64 numbers, or a DataError naming the first bad row."""
    column = table.column(name)
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        raise DataError(f"{path}: column {name!r} holds {column.type}, not numbers")
    if column.null_count:
        i = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(f"{_where(path, i)}: column {name!r} has no value")
    values: npt.NDArray[np.float64] = np.asarray(column.to_numpy(), dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        i = int(bad[0])
        raise DataError(f"{_where(path, i)}: column {name!r} is {values[i]}")
    return values


def _where(path: Path, index: int) -> str:
    """Data row ``index`` (from 0) as a reader finds it: a CSV's line (after the header), or a
    Parquet file's row (from 1)."""
    if path.suffix.lower() == ".csv":
        return f"{path}, line {index + 2}"
    return f"{path}, row {index + 1}"
