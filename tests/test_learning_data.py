"""Dataset loaders on small files the tests write, partitioners, and the seeded holdout."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
import pytest
import torch

from swarmchain.node.learning.data import (
    DataError,
    Dataset,
    check_dataset,
    holdout_split,
    load_digits,
    load_idx,
    load_npz,
    read_idx,
    task_splits,
)
from swarmchain.node.learning.partition import (
    dirichlet_partition,
    iid_partition,
    partition,
    quantity_skew_partition,
    shard_partition,
)
from swarmchain.node.protocol.task import DataSpec, ReferenceSpec, TaskSpec


def write_idx(path: Path, array: np.ndarray, code: int) -> None:
    """Write an IDX file: two zero bytes, type code, ndim, big-endian dims, big-endian data."""
    header = bytes([0, 0, code, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


@pytest.fixture
def mnist_like() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (5, 4, 3), dtype=np.uint8), np.array([3, 1, 4, 1, 5], np.uint8)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_load_idx_reads_images_and_labels(
    tmp_path: Path, mnist_like: tuple[np.ndarray, np.ndarray], suffix: str
) -> None:
    images, labels = mnist_like
    write_idx(tmp_path / f"img.idx{suffix}", images, 0x08)
    write_idx(tmp_path / f"lbl.idx{suffix}", labels, 0x08)
    data = load_idx(tmp_path / f"img.idx{suffix}", tmp_path / f"lbl.idx{suffix}")
    assert data.x.shape == (5, 1, 4, 3) and data.x.dtype == torch.float32
    assert torch.allclose(data.x[:, 0], torch.from_numpy(images.astype(np.float32) / 255))
    assert data.y.tolist() == [3, 1, 4, 1, 5]


def test_read_idx_keeps_wide_types(tmp_path: Path) -> None:
    values = np.array([[1.5, -2.0], [3.25, 4.0]], dtype=np.float32)
    write_idx(tmp_path / "f.idx", values, 0x0D)
    assert np.array_equal(read_idx(tmp_path / "f.idx"), values)


def test_read_idx_rejects_malformed_files(tmp_path: Path) -> None:
    bad_magic = tmp_path / "magic.idx"
    bad_magic.write_bytes(b"\x01\x00\x08\x01" + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(DataError, match="bad magic"):
        read_idx(bad_magic)
    short = tmp_path / "short.idx"
    short.write_bytes(b"\x00\x00\x08\x01" + (4).to_bytes(4, "big") + b"abc")
    with pytest.raises(DataError, match="header declares"):
        read_idx(short)
    code = tmp_path / "code.idx"
    code.write_bytes(b"\x00\x00\x42\x01" + (1).to_bytes(4, "big") + b"a")
    with pytest.raises(DataError, match="unknown IDX type"):
        read_idx(code)
    with pytest.raises(DataError, match="more than the 8 allowed"):
        read_idx(short, max_bytes=8)
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path / "missing.idx")
    not_gzip = tmp_path / "x.idx.gz"
    not_gzip.write_bytes(b"plain")
    with pytest.raises(DataError, match="not valid gzip"):
        read_idx(not_gzip)


def test_load_idx_rejects_mismatched_counts(
    tmp_path: Path, mnist_like: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = mnist_like
    write_idx(tmp_path / "img.idx", images, 0x08)
    write_idx(tmp_path / "lbl.idx", labels[:4], 0x08)
    with pytest.raises(DataError, match="5 images but labels of shape"):
        load_idx(tmp_path / "img.idx", tmp_path / "lbl.idx")


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def test_load_npz_from_path_and_bytes(tmp_path: Path) -> None:
    x = np.linspace(0, 1, 2 * 3 * 8 * 8, dtype=np.float32).reshape(2, 3, 8, 8)
    raw = npz_bytes(x=x, y=np.array([0, 9]))
    (tmp_path / "d.npz").write_bytes(raw)
    for source in (tmp_path / "d.npz", raw):
        data = load_npz(source)
        assert torch.equal(data.x, torch.from_numpy(x))
        assert data.y.tolist() == [0, 9]


def test_load_npz_rejects_hostile_or_malformed_archives() -> None:
    with pytest.raises(DataError, match="not a readable npz"):
        load_npz(b"not a zip")
    with pytest.raises(DataError, match="must hold arrays 'x' and 'y'"):
        load_npz(npz_bytes(x=np.zeros((1, 2, 2))))
    pickled = npz_bytes(x=np.array([{"a": 1}], dtype=object), y=np.array([0]))
    with pytest.raises(DataError, match="not a readable npz"):
        load_npz(pickled)
    with pytest.raises(DataError, match="NaN or infinity"):
        load_npz(npz_bytes(x=np.full((1, 2, 2), np.nan), y=np.array([0])))
    buf = io.BytesIO()
    np.savez_compressed(buf, x=np.zeros((100, 8, 8)), y=np.zeros(100, np.int64))
    assert len(buf.getvalue()) < 2000
    with pytest.raises(DataError, match="expands to"):
        load_npz(buf.getvalue(), max_bytes=2000)


def test_check_dataset_against_the_spec() -> None:
    data = Dataset(torch.zeros(2, 1, 8, 8), torch.tensor([0, 10]))
    with pytest.raises(DataError, match=r"classes 0\.\.9"):
        check_dataset(data, DataSpec())
    with pytest.raises(DataError, match="the task needs"):
        check_dataset(data, DataSpec(input_shape=(1, 28, 28)))


def test_digits_and_the_seeded_holdout() -> None:
    digits = load_digits()
    assert digits.x.shape == (1797, 1, 8, 8)
    assert float(digits.x.max()) == 1.0
    rest, held = holdout_split(digits, 300, seed=5)
    assert len(held) == 300 and len(rest) == 1497
    again = holdout_split(digits, 300, seed=5)[1]
    assert torch.equal(held.x, again.x)
    assert not torch.equal(held.y, holdout_split(digits, 300, seed=6)[1].y)
    pool, reference = task_splits(TaskSpec(reference=ReferenceSpec(size=300, seed=5)))
    assert torch.equal(reference.y, held.y) and len(pool) == 1497
    with pytest.raises(DataError, match="only a holdout"):
        task_splits(TaskSpec(reference=ReferenceSpec(source="cid", cid="bafy")))


# --- partitions -------------------------------------------------------------------------------

LABELS = np.repeat(np.arange(10), 30)  # 300 examples, 30 per class


def assert_disjoint_cover(parts: list[np.ndarray], total: int) -> None:
    joined = np.concatenate(parts)
    assert len(joined) == len(set(joined.tolist())) == total


def test_iid_partition_is_balanced_and_seeded() -> None:
    parts = iid_partition(300, 7, seed=1)
    assert_disjoint_cover(parts, 300)
    assert {len(p) for p in parts} <= {42, 43}
    assert all(
        np.array_equal(a, b) for a, b in zip(parts, iid_partition(300, 7, seed=1), strict=True)
    )


def test_dirichlet_skew_grows_as_alpha_shrinks() -> None:
    def classes_per_part(alpha: float) -> float:
        parts = dirichlet_partition(LABELS, 10, alpha, seed=3, min_size=5)
        assert_disjoint_cover(parts, 300)
        assert min(len(p) for p in parts) >= 5
        return float(np.mean([len(np.unique(LABELS[p])) for p in parts]))

    assert classes_per_part(0.1) < classes_per_part(100.0)
    with pytest.raises(DataError, match="alpha > 0"):
        dirichlet_partition(LABELS, 10, 0.0, seed=3)
    with pytest.raises(DataError, match="no Dirichlet"):
        dirichlet_partition(LABELS, 10, 0.01, seed=3, min_size=30)


def test_shards_give_each_part_few_classes() -> None:
    parts = shard_partition(LABELS, 10, 2, seed=4)
    assert_disjoint_cover(parts, 300)
    assert max(len(np.unique(LABELS[p])) for p in parts) <= 2


def test_quantity_skew_varies_sizes_and_covers_everything() -> None:
    parts = quantity_skew_partition(300, 6, 0.5, seed=2, min_size=3)
    assert_disjoint_cover(parts, 300)
    sizes = [len(p) for p in parts]
    assert min(sizes) >= 3 and max(sizes) > 2 * min(sizes)


def test_partition_dispatches_by_name() -> None:
    assert len(partition(LABELS, "shards", 5, seed=0, shards_per_part=3)) == 5
    with pytest.raises(DataError, match="unknown partition scheme"):
        partition(LABELS, "round_robin", 5, seed=0)
    with pytest.raises(DataError, match="cannot split"):
        partition(LABELS, "iid", 301, seed=0)
