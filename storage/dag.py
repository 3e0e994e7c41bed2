"""UnixFS files as Merkle DAGs, byte for byte as ``ipfs add --cid-version=1 --raw-leaves``.

A blob is cut into 256 KiB chunks; each chunk is a raw block. A blob of one chunk (or none) is
that raw block. Larger blobs get Kubo's balanced layout: leaves are grouped left to right into
dag-pb nodes of at most 174 links, those nodes again, until one root is left, so every leaf sits
at the same depth. Each interior node is a dag-pb ``PBNode`` whose links carry the child CID, an
empty name and the child's cumulative size, and whose data is a UnixFS ``File`` message with the
file size and one block size per child.

Reading walks the DAG from the root, loading each block through a callback that must check it
against its CID, and bounds the total size and the depth, since a DAG can be crafted by anyone.

References: the dag-pb spec (https://ipld.io/specs/codecs/dag-pb/spec/), the UnixFS spec
(https://specs.ipfs.tech/unixfs/) and Kubo's ``boxo/ipld/unixfs/importer/balanced/builder.go``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from storage.cid import CID, DAG_PB, RAW, decode_varint, encode_varint
from storage.errors import ContentTooLarge, InvalidCID, MalformedBlock, UnsupportedContent

CHUNK_SIZE = 262_144  # bytes per leaf: Kubo's default `size-262144` chunker
MAX_LINKS = 174  # links per interior node: Kubo's balanced layout default
MAX_DEPTH = 16  # interior levels a reader follows; 174**16 chunks is far beyond any blob

UNIXFS_RAW = 0  # UnixFS Data.Type values this reader accepts as file content
UNIXFS_FILE = 2
_UNIXFS_TYPES = {0: "raw", 1: "directory", 2: "file", 3: "metadata", 4: "symlink", 5: "hamt-shard"}

_VARINT = 0  # protobuf wire types
_LEN = 2

LEAF_BATCH = 64  # leaves loaded at once while reading; the size bound is checked between batches

Block = tuple[CID, bytes | memoryview]  # a block's CID and its exact bytes
Loader = Callable[[CID], bytes | memoryview]  # returns a block's bytes, checked against its CID


@dataclass(frozen=True, slots=True)
class Link:
    """One link of a dag-pb node."""

    cid: CID  # the child block
    tsize: int  # cumulative serialised size of the child's DAG (Kubo's `Tsize`)


@dataclass(frozen=True, slots=True)
class FileNode:
    """A decoded dag-pb node holding (part of) a UnixFS file."""

    links: list[Link]  # children, in file order
    data: bytes  # inline content that precedes the children's content
    filesize: int | None  # the UnixFS `filesize` field, if present


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
# PBLink field 2 (Name), present and empty as Kubo and js-ipfs write it, then field 3's key (Tsize)
_LINK_NAME_TSIZE = _field(2, _LEN) + encode_varint(0) + _field(3, _VARINT)


def _pb_node(links: list[Link], data: bytes) -> bytes:
    out = bytearray()
    for link in links:
        body = _LINK_HASH + link.cid.to_bytes() + _LINK_NAME_TSIZE + encode_varint(link.tsize)
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
    tsize = 0
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
        If the protobuf is not a well-formed dag-pb node with UnixFS data.
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
    if blocksizes and len(blocksizes) != len(links):
        raise MalformedBlock(str(cid), f"{len(blocksizes)} block sizes for {len(links)} links")
    return FileNode(links, data, filesize)


def _walk(
    root: CID, load: Loader, max_size: int | None
) -> tuple[int | None, Iterator[CID | bytes]]:
    """The root's announced size, and the file's raw leaves (as CIDs, not loaded) and inline data
    in order; loads only dag-pb nodes, bounds depth, checks the announced size first."""
    if root.codec == RAW:
        return None, iter([root])
    top = decode_file_node(root, load(root))
    if max_size is not None and (top.filesize or 0) > max_size:
        raise ContentTooLarge(str(root), top.filesize or 0, max_size)

    def descend() -> Iterator[CID | bytes]:
        stack: list[tuple[CID, FileNode | None, int]] = [(root, top, 0)]
        while stack:
            cid, node, depth = stack.pop()
            if cid.codec == RAW:
                yield cid
                continue
            node = node or decode_file_node(cid, load(cid))
            if node.links and depth >= MAX_DEPTH:
                raise MalformedBlock(str(cid), f"DAG deeper than {MAX_DEPTH} levels")
            if node.data:
                yield node.data
            stack.extend((link.cid, None, depth + 1) for link in reversed(node.links))

    return top.filesize, descend()


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
        Largest content accepted, or None for no bound.
    load_many
        Loads a batch of leaves (in order), e.g. in parallel; `load` one by one when None.

    Returns
    -------
    bytes
        The content.

    Raises
    ------
    ContentTooLarge
        If the root announces, or the leaves add up to, more than `max_size` bytes (checked
        after each batch of `LEAF_BATCH` leaves, so a lying DAG cannot exhaust memory).
    MalformedBlock
        If a node is malformed, the DAG is deeper than `MAX_DEPTH`, or the content's length
        disagrees with the root's announced file size.
    UnsupportedContent
        If the root is not a file.
    """
    fetch = load_many or (lambda cids: [load(cid) for cid in cids])
    pieces: list[bytes | memoryview] = []
    total = 0
    batch: list[CID] = []

    def take(piece: bytes | memoryview) -> None:
        nonlocal total
        total += len(piece)
        if max_size is not None and total > max_size:
            raise ContentTooLarge(str(root), total, max_size)
        pieces.append(piece)

    announced, items = _walk(root, load, max_size)
    for item in items:
        if isinstance(item, CID):
            batch.append(item)
            if len(batch) < LEAF_BATCH:
                continue
        for leaf in fetch(batch):
            take(leaf)
        batch = []
        if not isinstance(item, CID):
            take(item)
    for leaf in fetch(batch):
        take(leaf)
    if announced is not None and announced != total:
        raise MalformedBlock(str(root), f"announces {announced} bytes but holds {total}")
    return b"".join(pieces)


def dag_cids(root: CID, load: Loader) -> Iterator[CID]:
    """Every CID of a file's DAG, root first, loading only the dag-pb nodes (not the leaves).

    Raises
    ------
    MalformedBlock, UnsupportedContent
        As `iter_file` does.
    """
    stack: list[tuple[CID, int]] = [(root, 0)]
    while stack:
        cid, depth = stack.pop()
        yield cid
        if cid.codec == DAG_PB:
            node = decode_file_node(cid, load(cid))
            if node.links and depth >= MAX_DEPTH:
                raise MalformedBlock(str(cid), f"DAG deeper than {MAX_DEPTH} levels")
            stack.extend((link.cid, depth + 1) for link in reversed(node.links))
