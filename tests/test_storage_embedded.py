"""The embedded store: put/get/has/pin/gc on a directory, tampering, and the `swarm store` CLI."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from swarmchain.node.errors import StorageError, VerificationError
from swarmchain.storage.cid import CID
from swarmchain.storage.dag import build_dag, cid_of
from swarmchain.storage.embedded import EmbeddedStore
from swarmchain.storage.errors import BlockNotFound, ContentTooLarge, InvalidCID, TamperedBlock
from swarmchain.storage.kubo import KuboStore
from swarmchain.storage.open import open_store

SWARM = str(Path(sys.executable).parent / "swarm")


def _blob(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def _block_files(store: EmbeddedStore) -> list[Path]:
    return sorted((store.path / "blocks").glob("*/*"))


def _flip_first_byte(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(bytes([data[0] ^ 0xFF]) + data[1:])


@pytest.mark.parametrize("size", [0, 1, 262_144, 262_145, 1_048_576])
def test_put_then_get_round_trips(tmp_path: Path, size: int) -> None:
    store = EmbeddedStore(tmp_path)
    data = _blob(size)
    cid = store.put(data)
    assert cid == cid_of(data)
    assert store.get(cid) == data
    assert store.has(cid)


def test_put_is_idempotent_and_packs_the_leaves(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    data = _blob(600_000)
    assert store.put(data) == store.put(data)
    assert [p.name for p in (tmp_path / "packs").iterdir()] == [cid_of(data)]
    assert [p.name for p in _block_files(store)] == [cid_of(data)]  # the root node
    leaves = build_dag(data)[1][:3]
    assert [store.read_block(cid) for cid, _ in leaves] == [bytes(leaf) for _, leaf in leaves]


def test_a_tampered_packed_leaf_raises_naming_its_cid(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    data = _blob(300_000)
    cid = store.put(data)
    pack = tmp_path / "packs" / cid
    pack.write_bytes(data[:262_144] + b"X" + data[262_145:])
    leaf = build_dag(data)[1][1][0]
    with pytest.raises(TamperedBlock, match=str(leaf)) as caught:
        store.get(cid)
    assert isinstance(caught.value, StorageError)
    assert isinstance(caught.value, VerificationError)


def test_a_tampered_single_block_raises_naming_its_cid(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    cid = store.put(b"one small block")
    _flip_first_byte(_block_files(store)[0])
    with pytest.raises(TamperedBlock, match=cid):
        store.get(cid)


def test_missing_block_without_peers_is_not_found(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    with pytest.raises(BlockNotFound, match=cid_of(b"never stored")):
        store.get(cid_of(b"never stored"))


def test_get_refuses_content_above_max_size(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    cid = store.put(_blob(1_000_000))
    with pytest.raises(ContentTooLarge, match=cid):
        store.get(cid, max_size=999_999)


def test_invalid_cid_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidCID):
        EmbeddedStore(tmp_path).get("QmRaaUwTNfwgFZpeUy8qrZwrp2dY4kCKmmB5xEqvH3vtD1")


def test_gc_keeps_pinned_content_and_drops_the_rest(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    kept = _blob(300_000, seed=2)
    dropped = _blob(300_000, seed=3)
    kept_cid, dropped_cid = store.put(kept), store.put(dropped)
    store.unpin(dropped_cid)
    assert not store.has(dropped_cid)
    assert store.pins() == [kept_cid]
    assert store.gc() == 2  # the dropped blob's pack and root node
    assert store.get(kept_cid) == kept
    with pytest.raises(BlockNotFound):
        store.get(dropped_cid)


def test_gc_keeps_a_pack_whose_leaf_another_pin_reaches(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    shared = _blob(262_144, seed=4)
    first, second = shared + b"first tail", shared + b"second tail"
    first_cid, second_cid = store.put(first), store.put(second)
    store.unpin(second_cid)
    assert store.gc() == 1  # second's root node; its pack holds a leaf the first pin reaches
    assert store.get(first_cid) == first
    store.unpin(first_cid)
    assert store.gc() == 3  # both packs and the first root node
    assert list((tmp_path / "packs").iterdir()) == []


def test_pin_requires_every_block(tmp_path: Path) -> None:
    source = EmbeddedStore(tmp_path / "a")
    cid = source.put(_blob(300_000))
    partial = EmbeddedStore(tmp_path / "b")
    root = CID.parse(cid)
    root_block = source.read_block(root)
    assert root_block is not None
    (partial.path / "blocks" / root.digest[:1].hex()).mkdir()
    (partial.path / "blocks" / root.digest[:1].hex() / cid).write_bytes(root_block)
    with pytest.raises(BlockNotFound):
        partial.pin(cid)
    assert not partial.has(cid)


def test_open_store_picks_the_backend(tmp_path: Path) -> None:
    with open_store(tmp_path) as embedded, open_store(None, "http://127.0.0.1:9") as kubo:
        assert isinstance(embedded, EmbeddedStore)
        assert isinstance(kubo, KuboStore)
        assert kubo.api_url == "http://127.0.0.1:9"


def _swarm(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [SWARM, "store", *args], input=stdin, capture_output=True, timeout=60, check=False
    )


def test_cli_add_prints_the_cid_and_cat_returns_the_bytes(tmp_path: Path) -> None:
    data = _blob(300_000)
    (tmp_path / "blob.bin").write_bytes(data)
    store = str(tmp_path / "store")
    added = _swarm("add", str(tmp_path / "blob.bin"), "--store", store)
    assert added.returncode == 0, added.stderr
    cid = cid_of(data)
    assert added.stdout.decode() == f"added {cid} {tmp_path / 'blob.bin'}\n"
    quiet = _swarm("add", "-Q", "-", "--store", store, stdin=data)
    assert quiet.stdout.decode() == f"{cid}\n"
    cat = _swarm("cat", cid, "--store", store)
    assert cat.returncode == 0, cat.stderr
    assert cat.stdout == data


def test_cli_only_hash_stores_nothing(tmp_path: Path) -> None:
    store = tmp_path / "store"
    done = _swarm("add", "--only-hash", "-Q", "-", "--store", str(store), stdin=b"hello\n")
    assert done.stdout.decode() == cid_of(b"hello\n") + "\n"
    assert not store.exists()


def test_cli_cat_of_tampered_content_fails_with_one_line(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    cid = store.put(b"precious")
    _flip_first_byte(_block_files(store)[0])
    done = _swarm("cat", cid, "--store", str(tmp_path))
    assert done.returncode == 1
    assert done.stdout == b""
    message = done.stderr.decode()
    assert message.startswith(f"error: block {cid} from ") and "does not match its CID" in message
    assert message.count("\n") == 1
