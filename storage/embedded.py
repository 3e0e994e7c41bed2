"""The embedded store: a directory of content-addressed blocks, with no external process.

It implements `swarmchain.storage.store.Store`: it names a blob by the CID that ``ipfs add
--cid-version=1 --raw-leaves`` gives it, and every `get` checks each block against its CID before
returning a byte, so the store (or a peer) can lose content but never alter it unnoticed.

Its layout, under the store's directory::

    <path>/blocks/<2 hex digits>/<cid>   single blocks: interior nodes, one-chunk blobs, and
                                         blocks fetched from peers, each file its exact bytes
    <path>/packs/<root cid>              a multi-chunk blob put here: its raw leaves back to back,
                                         which is the blob itself
    <path>/index.sqlite                  each packed leaf: (digest, pack, offset, length)
    <path>/pins/<cid>                    an empty file per pinned root (kept by `gc`)
    <path>/tmp/                          staging: files are written there, then renamed in place

Packing a blob's leaves into one file makes `put` and `get` one large write and one large read
(hundreds of 256 KiB files cost far more than their bytes), while every leaf stays addressable
by its CID for peers. A packed blob is checked on `get` by re-deriving its CID from the bytes
read, which hashes every leaf and rebuilds every interior node; on a mismatch the DAG is walked
block by block to name the block that changed. Missing blocks are fetched from a list of peers
that serve the trustless-gateway subset (`swarmchain.storage.peers`), checked, and kept as unpinned
blocks; each block's download from a peer, and each blob's in all, ends by a total deadline.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

import httpx

from swarmchain.storage.cid import CID, DAG_PB, RAW
from swarmchain.storage.dag import CHUNK_SIZE, Block, build_tree, dag_cids, read_file, split
from swarmchain.storage.deadline import BLOB_DEADLINE_S, BLOCK_DEADLINE_S, deadline_client
from swarmchain.storage.errors import BlockNotFound, ContentTooLarge, TamperedBlock
from swarmchain.storage.peers import fetch_block
from swarmchain.storage.store import DEFAULT_TIMEOUT_S

IO_THREADS = 4  # threads that hash, read and write the blocks of one blob in parallel
PARALLEL_MIN_BLOCKS = 8  # fewer blocks are processed on the calling thread

_In = TypeVar("_In")
_Out = TypeVar("_Out")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS packed (
    digest BLOB NOT NULL,   -- a raw leaf's SHA-256 (its CID is raw + sha2-256 of this digest)
    pack TEXT NOT NULL,     -- the root CID naming the pack file that holds it
    offset INTEGER NOT NULL,
    length INTEGER NOT NULL,
    PRIMARY KEY (digest, pack)
) WITHOUT ROWID
"""


class EmbeddedStore:
    """A directory of blocks that can also fetch missing blocks from peers.

    Several processes may share one directory (a node and ``swarm store serve``): files appear
    by atomic rename and the index is an SQLite database.

    Parameters
    ----------
    path
        The store's directory, created if missing.
    peers
        Base URLs of trustless gateways (``swarm store serve``, any IPFS gateway) to fetch missing
        blocks from, tried in order.
    timeout
        Seconds to wait on a peer for any one connect or read before trying the next one.
    block_deadline_s
        Seconds a block's download from one peer may take in all, however slowly bytes arrive
        (default 60: a 2 MiB block at 35 KiB/s).
    blob_deadline_s
        Seconds fetching the missing blocks of one blob may take in all, in `get` and `pin`
        (default 600).
    """

    def __init__(
        self,
        path: Path | str,
        *,
        peers: Sequence[str] = (),
        timeout: float = DEFAULT_TIMEOUT_S,
        block_deadline_s: float = BLOCK_DEADLINE_S,
        blob_deadline_s: float = BLOB_DEADLINE_S,
    ) -> None:
        self.path = Path(path)
        self.peers = tuple(peers)
        self.timeout = timeout
        self.block_deadline_s = block_deadline_s
        self.blob_deadline_s = blob_deadline_s
        self._blocks = self.path / "blocks"
        self._packs = self.path / "packs"
        self._pins = self.path / "pins"
        self._tmp = self.path / "tmp"
        for folder in (self._blocks, self._packs, self._pins, self._tmp):
            folder.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path / "index.sqlite", check_same_thread=False)
        self._db_lock = threading.Lock()  # one connection, shared by the I/O and server threads
        with self._db_lock, self._db:
            self._db.execute("PRAGMA journal_mode=WAL")
            # No fsync per commit, like the block files: a crash may lose recent index rows, never
            # consistency, and a lost row only hides a packed leaf from peers until it is re-put.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
        self._shards: set[str] = set()  # block subfolders known to exist
        self._client: httpx.Client | None = None
        self._pool: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        return f"EmbeddedStore({str(self.path)!r})"

    def _map(self, task: Callable[[_In], _Out], items: list[_In]) -> list[_Out]:
        """`task` over `items` in order, on the I/O threads when there are enough items to repay
        the hand-off (hashing and file I/O release the GIL, so blocks are processed in parallel)."""
        if len(items) < PARALLEL_MIN_BLOCKS:
            return [task(item) for item in items]
        return list(self._threads().map(task, items))

    def _threads(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(IO_THREADS, thread_name_prefix="embedded-store")
        return self._pool

    def _block_path(self, cid: CID) -> Path:
        return self._blocks / cid.digest[:1].hex() / str(cid)

    def _stage(self, final: Path, data: bytes | memoryview) -> None:
        """Write `data` to `final` atomically: readers see the whole file or none."""
        staged = self._tmp / uuid.uuid4().hex
        with staged.open("wb") as out:
            out.write(data)
        os.replace(staged, final)

    def _write_block(self, cid: CID, block: bytes | memoryview) -> None:
        path = self._block_path(cid)
        if path.parent.name not in self._shards:
            path.parent.mkdir(exist_ok=True)
            self._shards.add(path.parent.name)
        if not path.exists():
            self._stage(path, block)

    def _locate(self, cid: CID) -> tuple[Path, int, int] | None:
        """Where a packed leaf lives: (pack file, offset, length)."""
        with self._db_lock:
            rows = self._db.execute(
                "SELECT pack, offset, length FROM packed WHERE digest = ?", (cid.digest,)
            ).fetchall()
        for pack, offset, length in rows:
            path = self._packs / pack
            if path.exists():
                return path, offset, length
        return None

    def read_block(self, cid: CID) -> bytes | None:
        """A block's bytes as stored locally, unchecked, or None (what the gateway serves)."""
        try:
            return self._block_path(cid).read_bytes()
        except FileNotFoundError:
            pass
        location = self._locate(cid) if cid.codec == RAW else None
        if location is None:
            return None
        path, offset, length = location
        with path.open("rb") as pack:
            pack.seek(offset)
            return pack.read(length)

    def _holds(self, cid: CID) -> bool:
        return self._block_path(cid).exists() or (
            cid.codec == RAW and self._locate(cid) is not None
        )

    def _load(self, cid: CID, until: float | None = None) -> bytes:
        """A block, checked, from here or else from peers by `until` (a monotonic instant)."""
        block = self.read_block(cid)
        if block is None:
            return self._fetch(cid, until)
        if not cid.matches(block):
            raise TamperedBlock(str(cid), f"embedded store {self.path}")
        return block

    def _fetch(self, cid: CID, until: float | None = None) -> bytes:
        if not self.peers:
            raise BlockNotFound(
                str(cid), hint=f"not in {self.path} and no peers given to fetch it from"
            )
        if self._client is None:
            self._client = deadline_client(self.timeout)
        block = fetch_block(
            self._client, self.peers, cid, deadline_s=self.block_deadline_s, until=until
        )
        self._write_block(cid, block)
        return block

    def _blob_loader(self) -> Callable[[CID], bytes]:
        """`_load` with a deadline for one blob's missing blocks, starting now."""
        return partial(self._load, until=time.monotonic() + self.blob_deadline_s)

    def _hash(self, data: bytes) -> tuple[CID, list[tuple[CID, int]], list[Block]]:
        """The root CID of `data`, its leaves' (CID, size) and its interior blocks; the leaves
        are hashed on the I/O threads."""
        chunks = split(data)
        cids = self._map(lambda chunk: CID.of(RAW, chunk), chunks)
        leaves = [(cid, len(chunk)) for cid, chunk in zip(cids, chunks, strict=True)]
        root, interior = build_tree(leaves)
        return root, leaves, interior

    def put(self, data: bytes) -> str:
        """Store and pin a blob.

        Parameters
        ----------
        data
            The blob.

        Returns
        -------
        str
            Its CID, as ``ipfs add --cid-version=1 --raw-leaves`` prints it.
        """
        if len(data) <= CHUNK_SIZE:
            root = CID.of(RAW, data)
            self._write_block(root, data)
        else:
            staged = self._tmp / uuid.uuid4().hex
            if len(data) < PARALLEL_MIN_BLOCKS * CHUNK_SIZE:
                staged.write_bytes(data)
                root, leaves, interior = self._hash(data)
            else:
                writing = self._threads().submit(staged.write_bytes, data)  # overlaps hashing
                root, leaves, interior = self._hash(data)
                writing.result()
            for cid, block in interior:
                self._write_block(cid, block)
            os.replace(staged, self._packs / str(root))
            self._index(root, leaves)
        (self._pins / str(root)).touch()
        return str(root)

    def _index(self, root: CID, leaves: list[tuple[CID, int]]) -> None:
        rows = []
        offset = 0
        for cid, size in leaves:
            rows.append((cid.digest, str(root), offset, size))
            offset += size
        with self._db_lock, self._db:
            self._db.executemany("INSERT OR IGNORE INTO packed VALUES (?, ?, ?, ?)", rows)

    def get(self, cid: str, *, max_size: int | None = None) -> bytes:
        """Read a blob, checking every block against its CID.

        Parameters
        ----------
        cid
            The blob's CID.
        max_size
            Largest blob accepted, or None for no bound.

        Returns
        -------
        bytes
            The blob.

        Raises
        ------
        InvalidCID
            If `cid` is not a supported CIDv1.
        BlockNotFound
            If a block is neither here nor at any peer.
        TamperedBlock
            If a block (stored or fetched) does not match its CID; the message names it.
        DeadlineExceeded
            If missing blocks were not downloaded from peers within the block or blob deadline.
        ContentTooLarge, MalformedBlock, UnsupportedContent
            If the DAG is too large, malformed (`ReadBudgetExceeded` included), or not a file.
        """
        root = CID.parse(cid)
        packed = self._read_pack(root, max_size) if root.codec == DAG_PB else None
        if packed is not None and self._hash(packed)[0] == root:
            return packed
        load = self._blob_loader()
        return read_file(root, load, max_size, load_many=lambda c: self._map(load, c))

    def _read_pack(self, root: CID, max_size: int | None) -> bytes | None:
        """The pack named `root`, unchecked, or None if there is none."""
        try:
            with (self._packs / str(root)).open("rb") as pack:
                size = os.fstat(pack.fileno()).st_size
                if max_size is not None and size > max_size:
                    raise ContentTooLarge(str(root), size, max_size)
                return pack.read()
        except FileNotFoundError:
            return None

    def has(self, cid: str) -> bool:
        """Whether `cid` is pinned here (put or pinned, so `gc` keeps it)."""
        return (self._pins / str(CID.parse(cid))).exists()

    def pin(self, cid: str) -> None:
        """Make sure every block of `cid` is here (fetching from peers if needed) and pin it.

        Raises
        ------
        BlockNotFound, TamperedBlock, DeadlineExceeded, MalformedBlock, UnsupportedContent
            As `get` does; nothing is pinned then.
        """
        root = CID.parse(cid)
        load = self._blob_loader()
        for block_cid in dag_cids(root, load):
            if block_cid.codec == RAW and not self._holds(block_cid):
                load(block_cid)
        (self._pins / str(root)).touch()

    def unpin(self, cid: str) -> None:
        """Stop keeping `cid`; its blocks go at the next `gc` unless another pin reaches them."""
        (self._pins / str(CID.parse(cid))).unlink(missing_ok=True)

    def pins(self) -> list[str]:
        """The pinned root CIDs, sorted."""
        return sorted(path.name for path in self._pins.iterdir())

    def gc(self) -> int:
        """Delete every block and pack no pin reaches, and stale staging files.

        Run it while no other process writes to the store: a blob being put is not pinned until
        its `put` returns.

        Returns
        -------
        int
            How many files (blocks and packs) were deleted.
        """
        reachable = {
            cid for pinned in self.pins() for cid in dag_cids(CID.parse(pinned), self._load)
        }
        keep = {str(cid) for cid in reachable}
        keep_leaves = {cid.digest for cid in reachable if cid.codec == RAW}
        removed = 0
        for path in self._blocks.glob("*/*"):
            if path.name not in keep:
                path.unlink()
                removed += 1
        for pack in self._packs.iterdir():
            with self._db_lock:
                leaves = self._db.execute(
                    "SELECT digest FROM packed WHERE pack = ?", (pack.name,)
                ).fetchall()
            if pack.name not in keep and not any(leaf in keep_leaves for (leaf,) in leaves):
                with self._db_lock, self._db:
                    self._db.execute("DELETE FROM packed WHERE pack = ?", (pack.name,))
                pack.unlink()
                removed += 1
        for staged in self._tmp.iterdir():
            staged.unlink()
        return removed

    def close(self) -> None:
        """Stop the I/O threads and close the index and the connections to peers."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        with self._db_lock:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
