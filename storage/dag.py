"""UnixFS files as Merkle DAGs, byte for byte as ``ipfs add --cid-version=1 --raw-leaves``.

A blob is cut into 256 KiB chunks; each chunk is a raw block. A blob of one chunk (or none) is
that raw block. Larger blobs get Kubo's balanced layout: leaves are grouped left to right into
dag-pb nodes of at most 174 links, those nodes again, until one root is left, so every leaf sits
at the same depth. Each interior node is a dag-pb ``PBNode`` whose links carry the child CID, an
empty name and the child's cumulative size, and whose data is a UnixFS ``File`` message with the
file size and one block size per child.

Reading walks the DAG from the root, loading each block through a callback that must check it
against its CID. A DAG can be crafted by anyone, so a read is bounded in every dimension. Let
``S`` be the content size the root declares (refused at once above the caller's ``max_size``):

* Declared sizes agree with the blocks, checked as soon as a block is decoded or loaded: a node
  has one UnixFS block size per link, each at least 1 (the empty block is only ever the empty
  file's root), and its ``filesize``, if present, equals its inline data plus its block sizes; a
  child holds exactly the block size its parent declares for it; a link's ``Tsize`` to a raw
  leaf, if present, equals that block size (checked in the parent, before any load; ``Tsize`` to
  a dag-pb child bounds nothing and readers ignore it, so it is not checked). The content is thus
  exactly ``S`` bytes or the read fails with `MalformedBlock` at the first lie, and every link
  the walk follows leads to at least one byte.
* Blocks: ``loads <= block_budget(S) = MIN_BLOCKS + 2 * ceil(S / CHUNK_SIZE)``. Proof: the walk
  charges every block to one counter, the root once decoded and every other block before it is
  loaded (each dag-pb node, each leaf handed to the loader, a link repeated ``k`` times charged
  ``k`` times), and raises `ReadBudgetExceeded` when the count would pass the budget (at least 1),
  so no load escapes it; ``S <= max_size`` makes it at most ``block_budget(max_size)``. Honest
  DAGs fit: ``n = ceil(S / c)`` leaves of ``c >= CHUNK_SIZE`` bytes have ``ceil(n / 174**k) <=
  n / 174**k + 1`` nodes on each interior level ``k <= MAX_DEPTH``, at most ``n + n / 173 +
  MAX_DEPTH < 2 * n + MIN_BLOCKS`` blocks in all; DAGs of smaller chunks (or other layouts, such
  as trickle) stay readable while they have at most ``block_budget(S)`` blocks.
* Bytes: leaves hold exactly their declared sizes and inline data is part of ``S``, so content is
  ``S`` bytes; what dag-pb blocks carry beyond their inline data (links, sizes, metadata) is
  charged to a second counter capped at ``overhead_budget(S) = BYTES_PER_BLOCK *
  block_budget(S)`` (an honest node carries at most ~65 bytes per link plus ~40, and each block
  has one incoming link). A block breaking a bound is dropped as soon as it is checked: at most
  one batch of `LEAF_BATCH` leaves is held unchecked.
* Depth: at most `MAX_DEPTH` interior levels are followed.

References: the dag-pb spec (https://ipld.io/specs/codecs/dag-pb/spec/), the UnixFS spec
(https://specs.ipfs.tech/unixfs/) and Kubo's ``boxo/ipld/unixfs/importer/balanced/builder.go``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from swarmchain.storage.cid import CID, DAG_PB, RAW, decode_varint, encode_varint
from swarmchain.storage.errors import (
    ContentTooLarge,
    InvalidCID,
    MalformedBlock,
    ReadBudgetExceeded,
    UnsupportedContent,
)

CHUNK_SIZE = 262_144  # bytes per leaf: Kubo's default `size-262144` chunker
MAX_LINKS = 174  # links per interior node: Kubo's balanced layout default
MAX_DEPTH = 16  # interior levels a reader follows; 174**16 chunks is far beyond any blob

UNIXFS_RAW = 0  # UnixFS Data.Type values this reader accepts as file content
UNIXFS_FILE = 2
_UNIXFS_TYPES = {0: "raw", 1: "directory", 2: "file", 3: "metadata", 4: "symlink", 5: "hamt-shard"}

_VARINT = 0  # protobuf wire types
_LEN = 2

LEAF_BATCH = 64  # leaves loaded at once while reading; their sizes are checked between batches
MIN_BLOCKS = 1024  # blocks any read may load, so DAGs of small chunks stay readable
BYTES_PER_BLOCK = 256  # dag-pb bytes beyond inline data charged per block; honest ones use ~105

Block = tuple[CID, bytes | memoryview]  # a block's CID and its exact bytes
Loader = Callable[[CID], bytes | memoryview]  # returns a block's bytes, checked against its CID


@dataclass(frozen=True, slots=True)
class Link:
    """One link of a dag-pb node."""

    cid: CID  # the child block
    tsize: int | None  # cumulative serialised size of the child's DAG (Kubo's `Tsize`), if given


@dataclass(frozen=True, slots=True)
class FileNode:
    """A decoded dag-pb node holding (part of) a UnixFS file."""

    links: list[Link]  # children, in file order
    data: bytes  # inline content that precedes the children's content
    filesize: int | None  # the UnixFS `filesize` field, if present
    blocksizes: list[int] = field(default_factory=list)  # content bytes under each link

    @property
    def size(self) -> int:
        """The content bytes the node holds by its own parts: inline data plus block sizes."""
        return len(self.data) + sum(self.blocksizes)


def _field(number: int, wire_type: int) -> bytes:
    return encode_varint(number << 3 | wire_type)


def _unixfs_file(filesize: int, blocksizes: list[int]) -> bytes:
    out = bytearray(_field(1, _VARINT) + encode_varint(UNIXFS_FILE))
    out += _field(3, _VARINT) + encode_varint(filesize)
    for size in blocksizes:
        out += _field(4, _VARINT) + encode_varint(size)
    return bytes(out)


# PBLink field 1 (Hash) with the 36-byte length of a binary CIDv1 sha2-256
_LINK_HASH = _field(1, _LEN) + encode_varint(36)
# PBLink field 2 (Name), present and empty as Kubo and js-ipfs write it
_LINK_NAME = _field(2, _LEN) + encode_varint(0)
_LINK_TSIZE = _field(3, _VARINT)


def _pb_node(links: list[Link], data: bytes) -> bytes:
    out = bytearray()
    for link in links:
        body = _LINK_HASH + link.cid.to_bytes() + _LINK_NAME
        if link.tsize is not None:
            body += _LINK_TSIZE + encode_varint(link.tsize)
        out += _field(2, _LEN) + encode_varint(len(body)) + body
    out += _field(1, _LEN) + encode_varint(len(data)) + data
    return bytes(out)


def split(data: bytes | memoryview, chunk_size: int = CHUNK_SIZE) -> list[memoryview]:
    """Cut a blob into leaf chunks (views, no copies); an empty blob is one empty chunk."""
    view = memoryview(data).cast("B")
    return [view[start : start + chunk_size] for start in range(0, max(len(view), 1), chunk_size)]


def build_tree(
    leaves: Sequence[tuple[CID, int]], max_links: int = MAX_LINKS
) -> tuple[CID, list[Block]]:
    """Build the balanced interior nodes over hashed leaves.

    Parameters
    ----------
    leaves
        Each leaf's CID and size, in file order (at least one).
    max_links
        Links per interior node.

    Returns
    -------
    tuple[CID, list[Block]]
        The root CID (the leaf itself for a single leaf) and the interior blocks, bottom up.
    """
    blocks: list[Block] = []
    # (cid, tsize, content size) of each node on the level being grouped
    level = [(cid, size, size) for cid, size in leaves]
    while len(level) > 1:
        parents: list[tuple[CID, int, int]] = []
        for first in range(0, len(level), max_links):
            group = level[first : first + max_links]
            sizes = [content for _, _, content in group]
            node = _pb_node(
                [Link(cid, tsize) for cid, tsize, _ in group], _unixfs_file(sum(sizes), sizes)
            )
            cid = CID.of(DAG_PB, node)
            blocks.append((cid, node))
            parents.append((cid, len(node) + sum(tsize for _, tsize, _ in group), sum(sizes)))
        level = parents
    return level[0][0], blocks


def build_dag(
    data: bytes | memoryview, *, chunk_size: int = CHUNK_SIZE, max_links: int = MAX_LINKS
) -> tuple[CID, list[Block]]:
    """Cut a blob into the blocks of its UnixFS DAG.

    Parameters
    ----------
    data
        The blob.
    chunk_size
        Bytes per leaf (``ipfs add --chunker=size-N``).
    max_links
        Links per interior node.

    Returns
    -------
    tuple[CID, list[Block]]
        The root CID and every block (leaves as views into `data`, then interior nodes bottom up).
    """
    chunks = split(data, chunk_size)
    leaves: list[Block] = [(CID.of(RAW, chunk), chunk) for chunk in chunks]
    root, interior = build_tree([(cid, len(chunk)) for cid, chunk in leaves], max_links)
    return root, leaves + interior


def cid_of(data: bytes | memoryview) -> str:
    """The CID ``ipfs add --cid-version=1 --raw-leaves`` gives `data`, without storing anything."""
    return str(build_dag(data)[0])


class _Reader:
    """A cursor over one protobuf message; raises ValueError on anything malformed."""

    def __init__(self, data: bytes | memoryview) -> None:
        self.data = data
        self.pos = 0

    def done(self) -> bool:
        return self.pos >= len(self.data)

    def key(self) -> tuple[int, int]:
        key, self.pos = decode_varint(self.data, self.pos)
        return key >> 3, key & 7

    def varint(self) -> int:
        value, self.pos = decode_varint(self.data, self.pos)
        return value

    def chunk(self) -> bytes:
        length = self.varint()
        end = self.pos + length
        if end > len(self.data):
            raise ValueError(f"field of {length} bytes runs past the end")
        out = bytes(self.data[self.pos : end])
        self.pos = end
        return out

    def skip(self, wire_type: int) -> None:
        if wire_type == _VARINT:
            self.varint()
        elif wire_type == _LEN:
            self.chunk()
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")


def _decode_link(raw: bytes) -> Link:
    reader = _Reader(raw)
    cid: CID | None = None
    tsize: int | None = None
    last = 0
    while not reader.done():
        number, wire_type = reader.key()
        if number <= last:
            raise ValueError(f"link field {number} repeated or out of order")
        last = number
        if (number, wire_type) == (1, _LEN):
            cid = CID.from_bytes(reader.chunk())
        elif (number, wire_type) == (2, _LEN):
            reader.chunk()
        elif (number, wire_type) == (3, _VARINT):
            tsize = reader.varint()
        else:
            raise ValueError(f"unexpected link field {number} (wire type {wire_type})")
    if cid is None:
        raise ValueError("link without a Hash")
    return Link(cid, tsize)


def _decode_unixfs(raw: bytes) -> tuple[int, bytes, int | None, list[int]]:
    reader = _Reader(raw)
    kind: int | None = None
    data = b""
    filesize: int | None = None
    blocksizes: list[int] = []
    while not reader.done():
        number, wire_type = reader.key()
        if (number, wire_type) == (1, _VARINT):
            kind = reader.varint()
        elif (number, wire_type) == (2, _LEN):
            data = reader.chunk()
        elif (number, wire_type) == (3, _VARINT):
            filesize = reader.varint()
        elif (number, wire_type) == (4, _VARINT):
            blocksizes.append(reader.varint())
        else:
            reader.skip(wire_type)  # hashType, fanout, mode, mtime: not needed to read a file
    if kind is None:
        raise ValueError("UnixFS data without a Type")
    return kind, data, filesize, blocksizes


def decode_file_node(cid: CID, block: bytes | memoryview) -> FileNode:
    """Decode a dag-pb block that holds part of a UnixFS file.

    Parameters
    ----------
    cid
        The block's CID (already checked against `block`), for error messages.
    block
        The block's bytes.

    Returns
    -------
    FileNode
        Its links and content fields.

    Raises
    ------
    MalformedBlock
        If the protobuf is not a well-formed dag-pb node with UnixFS data, or its number of
        block sizes differs from its number of links.
    UnsupportedContent
        If the node is a UnixFS directory, symlink or other non-file.
    """
    reader = _Reader(block)
    links: list[Link] = []
    unixfs: bytes | None = None
    try:
        while not reader.done():
            number, wire_type = reader.key()
            if unixfs is not None:
                raise ValueError("fields after Data (dag-pb puts Links first, Data last)")
            if (number, wire_type) == (2, _LEN):
                links.append(_decode_link(reader.chunk()))
            elif (number, wire_type) == (1, _LEN):
                unixfs = reader.chunk()
            else:
                raise ValueError(f"unexpected PBNode field {number} (wire type {wire_type})")
        if unixfs is None:
            raise ValueError("no UnixFS Data")
        kind, data, filesize, blocksizes = _decode_unixfs(unixfs)
    except (ValueError, InvalidCID) as err:
        raise MalformedBlock(str(cid), str(err)) from None
    if kind not in (UNIXFS_RAW, UNIXFS_FILE):
        raise UnsupportedContent(
            f"{cid} is a UnixFS {_UNIXFS_TYPES.get(kind, f'type {kind}')}, not a file"
        )
    if len(blocksizes) != len(links):
        raise MalformedBlock(str(cid), f"{len(blocksizes)} block sizes for {len(links)} links")
    return FileNode(links, data, filesize, blocksizes)


def block_budget(size: int) -> int:
    """Most blocks a read of a file declaring `size` content bytes may load (module docstring)."""
    return MIN_BLOCKS + 2 * -(-size // CHUNK_SIZE)


def overhead_budget(size: int) -> int:
    """Most dag-pb bytes beyond inline data such a read may load (module docstring)."""
    return BYTES_PER_BLOCK * block_budget(size)


class _Budget:
    """What one walk has spent, in blocks and in dag-pb overhead bytes; raises past its caps."""

    def __init__(self, root: CID, size: int) -> None:
        self.root = root
        self.size = size
        self.blocks = 0
        self.overhead = 0
        self.max_blocks = block_budget(size)
        self.max_overhead = overhead_budget(size)

    def visit(self) -> None:
        self.blocks += 1
        if self.blocks > self.max_blocks:
            raise ReadBudgetExceeded(str(self.root), f"{self.max_blocks} blocks", self.size)

    def carry(self, overhead: int) -> None:
        self.overhead += overhead
        if self.overhead > self.max_overhead:
            raise ReadBudgetExceeded(
                str(self.root), f"{self.max_overhead} bytes of dag-pb overhead", self.size
            )


@dataclass(frozen=True, slots=True)
class _Visit:
    """One block the walk reached, with what its parent declares for it."""

    cid: CID
    size: int | None  # content bytes its parent declares (None for the root)
    depth: int  # interior levels above it
    data: bytes = b""  # a dag-pb node's inline content, once decoded


def _check_node(visit: _Visit, node: FileNode, max_size: int | None) -> None:
    """Check a decoded node's declared sizes against its parts, its parent and the caller."""
    cid = str(visit.cid)
    declared = max(node.size, node.filesize or 0)
    if max_size is not None and declared > max_size:
        raise ContentTooLarge(cid, declared, max_size)
    if node.filesize is not None and node.filesize != node.size:
        raise MalformedBlock(
            cid, f"announces {node.filesize} bytes but holds {node.size} by its data and links"
        )
    if visit.size is not None and node.size != visit.size:
        raise MalformedBlock(cid, f"holds {node.size} bytes, its parent declares {visit.size}")
    if node.links and visit.depth >= MAX_DEPTH:
        raise MalformedBlock(cid, f"DAG deeper than {MAX_DEPTH} levels")
    for link, size in zip(node.links, node.blocksizes, strict=True):
        if size == 0:  # only the empty file's root may be empty: no link can cost nothing
            raise MalformedBlock(cid, f"links {link.cid} as an empty block")
        if link.cid.codec == RAW and link.tsize is not None and link.tsize != size:
            raise MalformedBlock(cid, f"links {link.cid} of {size} bytes with Tsize {link.tsize}")


def _walk(root: CID, load: Loader, max_size: int | None, *, once: bool = False) -> Iterator[_Visit]:
    """Every block of a file's DAG in depth-first order, each dag-pb node loaded and checked
    (leaves are yielded unloaded); with `once`, a block reached again is neither walked nor
    yielded again, only checked against what was declared for it the first time."""
    if root.codec == RAW:
        yield _Visit(root, None, 0)
        return
    block = load(root)
    top = decode_file_node(root, block)
    _check_node(_Visit(root, None, 0), top, max_size)
    budget = _Budget(root, top.size)
    loaded: FileNode | None = top
    seen: dict[CID, int | None] = {}  # with `once`: the size declared for each block reached
    stack = [_Visit(root, None, 0)]
    while stack:
        visit = stack.pop()
        if once and visit.cid in seen:
            if visit.size != seen[visit.cid]:
                raise MalformedBlock(
                    str(visit.cid), f"declared as {seen[visit.cid]} and {visit.size} bytes"
                )
            continue
        budget.visit()
        if visit.cid.codec == RAW:
            if once:
                seen[visit.cid] = visit.size
            yield visit
            continue
        if loaded is None:
            block = load(visit.cid)
            node = decode_file_node(visit.cid, block)
            _check_node(visit, node, None)  # its size is its parent's, checked against the root's
        else:
            node, loaded = loaded, None
        budget.carry(len(block) - len(node.data))
        if once:
            seen[visit.cid] = visit.size
        yield _Visit(visit.cid, visit.size, visit.depth, node.data)
        stack.extend(
            _Visit(link.cid, size, visit.depth + 1)
            for link, size in reversed(list(zip(node.links, node.blocksizes, strict=True)))
        )


def read_file(
    root: CID,
    load: Loader,
    max_size: int | None = None,
    *,
    load_many: Callable[[list[CID]], Iterable[bytes | memoryview]] | None = None,
) -> bytes:
    """A UnixFS file's whole content, every block loaded through a checking callback.

    Parameters
    ----------
    root
        The file's root CID.
    load
        Returns a block's bytes, already checked against its CID.
    max_size
        Largest content accepted, or None for no bound but the root's declared size.
    load_many
        Loads a batch of leaves (in order), e.g. in parallel; `load` one by one when None.

    Returns
    -------
    bytes
        The content.

    Raises
    ------
    ContentTooLarge
        If the root declares more than `max_size` bytes, or a raw root holds more.
    ReadBudgetExceeded
        If the walk would load more than ``block_budget(S)`` blocks, or more dag-pb overhead
        than ``overhead_budget(S)`` bytes, for the root's declared size ``S``.
    MalformedBlock
        If a node is malformed, the DAG is deeper than `MAX_DEPTH`, a link leads to an empty
        block, or a declared size (filesize, block size, a raw leaf's Tsize) disagrees with the
        blocks, as soon as the block that shows it is decoded or loaded.
    UnsupportedContent
        If the root is not a file.
    """
    fetch = load_many or (lambda cids: [load(cid) for cid in cids])
    pieces: list[bytes | memoryview] = []
    total = 0
    batch: list[_Visit] = []

    def take(piece: bytes | memoryview) -> None:
        nonlocal total
        total += len(piece)
        if max_size is not None and total > max_size:
            raise ContentTooLarge(str(root), total, max_size)
        pieces.append(piece)

    def flush() -> None:
        leaves = fetch([visit.cid for visit in batch])
        for visit, leaf in zip(batch, leaves, strict=True):
            if visit.size is not None and len(leaf) != visit.size:
                raise MalformedBlock(
                    str(visit.cid), f"holds {len(leaf)} bytes, its parent declares {visit.size}"
                )
            take(leaf)
        batch.clear()

    for visit in _walk(root, load, max_size):
        if visit.cid.codec == RAW:
            batch.append(visit)
            if len(batch) == LEAF_BATCH:
                flush()
        elif visit.data:
            flush()
            take(visit.data)
    flush()
    return b"".join(pieces)


def dag_cids(root: CID, load: Loader) -> Iterator[CID]:
    """Every distinct CID of a file's DAG, root first, loading each dag-pb node once (no leaves).

    The walk has `read_file`'s bounds for the root's declared size, and never walks a block
    twice, so a DAG that links one node many times costs one load per distinct node.

    Raises
    ------
    ReadBudgetExceeded, MalformedBlock, UnsupportedContent
        As `read_file` does (leaves are not loaded, so their lengths are not checked).
    """
    for visit in _walk(root, load, None, once=True):
        yield visit.cid
