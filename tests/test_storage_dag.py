"""CIDs and UnixFS DAGs: encoding by hand-checkable examples, and hostile blocks on reading."""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from swarmchain.storage.cid import CID, DAG_PB, RAW, decode_varint, encode_varint
from swarmchain.storage.dag import (
    CHUNK_SIZE,
    MAX_DEPTH,
    Link,
    _pb_node,
    _unixfs_file,
    block_budget,
    build_dag,
    cid_of,
    dag_cids,
    decode_file_node,
    read_file,
)
from swarmchain.storage.errors import (
    ContentTooLarge,
    InvalidCID,
    MalformedBlock,
    ReadBudgetExceeded,
    TamperedBlock,
    UnsupportedContent,
)

# Known CIDs that `ipfs add --cid-version=1 --raw-leaves` prints (Kubo and js-ipfs agree).
EMPTY_CID = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
HELLO_CID = "bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am"  # b"hello\n"


def _blob(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def _loader(blocks: dict[CID, bytes]) -> Callable[[CID], bytes]:
    def load(cid: CID) -> bytes:
        block = blocks[cid]
        if not cid.matches(block):
            raise TamperedBlock(str(cid), "test dict")
        return block

    return load


@pytest.mark.parametrize(
    ("value", "encoded"),
    [(0, b"\x00"), (1, b"\x01"), (127, b"\x7f"), (128, b"\x80\x01"), (300, b"\xac\x02")],
)
def test_varint_round_trips(value: int, encoded: bytes) -> None:
    assert encode_varint(value) == encoded
    assert decode_varint(encoded, 0) == (value, len(encoded))


@pytest.mark.parametrize(
    "encoded", [b"", b"\x80", b"\x81\x00", b"\xff" * 10], ids=["empty", "cut", "padded", "long"]
)
def test_varint_rejects_malformed(encoded: bytes) -> None:
    with pytest.raises(ValueError):
        decode_varint(encoded, 0)


def test_known_cids_of_small_blobs() -> None:
    assert cid_of(b"") == EMPTY_CID
    assert cid_of(b"hello\n") == HELLO_CID


def test_cid_string_round_trips_and_names_the_sha256() -> None:
    cid = CID.parse(HELLO_CID)
    assert cid.codec == RAW
    assert cid.digest == hashlib.sha256(b"hello\n").digest()
    assert str(cid) == HELLO_CID
    assert CID.from_bytes(cid.to_bytes()) == cid


@pytest.mark.parametrize(
    "text",
    [
        "QmRaaUwTNfwgFZpeUy8qrZwrp2dY4kCKmmB5xEqvH3vtD1",  # CIDv0
        HELLO_CID.upper(),  # base32upper, not the canonical form
        "z" + HELLO_CID[1:],  # another multibase
        HELLO_CID[:-2],  # truncated digest
        "b!!!!",  # not base32
        "b"  # dag-json codec (0x0129)
        + base64.b32encode(b"\x01\xa9\x02\x12\x20" + bytes(32)).decode().lower().rstrip("="),
        "",
    ],
)
def test_parse_rejects_unsupported_or_malformed(text: str) -> None:
    with pytest.raises(InvalidCID):
        CID.parse(text)


def test_single_chunk_is_one_raw_block() -> None:
    data = _blob(262_144)
    root, blocks = build_dag(data)
    assert root.codec == RAW
    assert [(cid, bytes(block)) for cid, block in blocks] == [(root, data)]


def test_two_chunks_make_a_dag_pb_root_with_sizes() -> None:
    data = _blob(262_145)
    root, blocks = build_dag(data)
    assert root.codec == DAG_PB
    assert len(blocks) == 3
    node = decode_file_node(root, blocks[-1][1])
    assert node.filesize == 262_145
    assert [link.cid for link in node.links] == [blocks[0][0], blocks[1][0]]
    assert [link.tsize for link in node.links] == [262_144, 1]


def test_balanced_layout_groups_max_links_per_node() -> None:
    # 7 chunks, 3 links per node: leaves in groups of 3,3,1, then one root over the 3 parents.
    data = _blob(7 * 10)
    root, blocks = build_dag(data, chunk_size=10, max_links=3)
    by_cid = {cid: bytes(block) for cid, block in blocks}
    top = decode_file_node(root, by_cid[root])
    sizes = [decode_file_node(link.cid, by_cid[link.cid]).filesize for link in top.links]
    assert sizes == [30, 30, 10]
    assert read_file(root, _loader(by_cid)) == data
    assert len(list(dag_cids(root, _loader(by_cid)))) == 7 + 3 + 1


def test_read_file_checks_every_block() -> None:
    data = _blob(70)
    root, blocks = build_dag(data, chunk_size=10, max_links=3)
    by_cid = {cid: bytes(block) for cid, block in blocks}
    leaf = blocks[4][0]
    by_cid[leaf] = bytes([by_cid[leaf][0] ^ 1]) + by_cid[leaf][1:]
    with pytest.raises(TamperedBlock, match=str(leaf)):
        read_file(root, _loader(by_cid))


def test_max_size_is_enforced_from_the_announced_size() -> None:
    data = _blob(100)
    root, blocks = build_dag(data, chunk_size=10)
    with pytest.raises(ContentTooLarge, match=str(root)):
        read_file(root, _loader({cid: bytes(b) for cid, b in blocks}), max_size=99)
    assert read_file(root, _loader({cid: bytes(b) for cid, b in blocks}), max_size=100) == data


def _node_block(links: list[Link], filesize: int, sizes: list[int]) -> tuple[CID, bytes]:
    block = _pb_node(links, _unixfs_file(filesize, sizes))
    return CID.of(DAG_PB, block), block


def test_announced_size_must_match_the_content() -> None:
    leaf = b"abc"
    leaf_cid = CID.of(RAW, leaf)
    root, block = _node_block([Link(leaf_cid, 3)], 1, [3])  # claims 1 byte, holds 3
    with pytest.raises(MalformedBlock, match="announces 1 bytes but holds 3"):
        read_file(root, _loader({root: block, leaf_cid: leaf}))


def test_a_lying_small_announced_size_cannot_bypass_max_size() -> None:
    leaf = _blob(50)
    leaf_cid = CID.of(RAW, leaf)
    root, block = _node_block([Link(leaf_cid, 50)] * 3, 1, [50] * 3)
    with pytest.raises(ContentTooLarge):
        read_file(root, _loader({root: block, leaf_cid: leaf}), max_size=100)


def test_depth_is_bounded() -> None:
    leaf = b"z"
    blocks = {CID.of(RAW, leaf): leaf}
    cid = CID.of(RAW, leaf)
    for _ in range(MAX_DEPTH + 1):
        cid, block = _node_block([Link(cid, 1)], 1, [1])
        blocks[cid] = block
    with pytest.raises(MalformedBlock, match="deeper than"):
        read_file(cid, _loader(blocks))


@pytest.mark.parametrize(
    ("block", "reason"),
    [
        (b"\x0a\x02\x08\x02\x12\x00", "fields after Data"),  # Data then a Link
        (b"\x1a\x00", "unexpected PBNode field 3"),
        (b"\x0a\x05\x08", "runs past the end"),
        (b"\x12\x02\x18\x01\x0a\x02\x08\x02", "link without a Hash"),
        (b"", "no UnixFS Data"),
        (b"\x0a\x02\x10\x01", "without a Type"),
        (b"\x0b", "wire type 3"),
    ],
)
def test_malformed_dag_pb_is_rejected_with_the_cid(block: bytes, reason: str) -> None:
    cid = CID.of(DAG_PB, block)
    with pytest.raises(MalformedBlock, match=reason) as caught:
        decode_file_node(cid, block)
    assert str(cid) in str(caught.value)


def test_directories_are_not_files() -> None:
    block = b"\x0a\x02\x08\x01"  # UnixFS Type=Directory, no links
    cid = CID.of(DAG_PB, block)
    with pytest.raises(UnsupportedContent, match="directory"):
        read_file(cid, _loader({cid: block}))


class _Counting:
    """A checking loader over a dict of blocks that counts its calls."""

    def __init__(self, blocks: dict[CID, bytes]) -> None:
        self.load = _loader(blocks)
        self.calls = 0

    def __call__(self, cid: CID) -> bytes:
        self.calls += 1
        return self.load(cid)


def _repeated_dag(leaf: bytes, leaf_size: int, fanout: int = 1_000) -> tuple[CID, dict[CID, bytes]]:
    """Three dag-pb levels, each linking the level below `fanout` times, over one raw leaf;
    every node declares `leaf_size` per leaf below it."""
    cid = CID.of(RAW, leaf)
    blocks = {cid: leaf}
    size = leaf_size
    for _ in range(3):
        cid, block = _node_block([Link(cid, size)] * fanout, size * fanout, [size] * fanout)
        blocks[cid] = block
        size *= fanout
    return cid, blocks


def test_a_billion_empty_blocks_are_refused_at_the_root() -> None:
    root, blocks = _repeated_dag(b"", 0)
    assert all(len(block) < 50_000 for block in blocks.values())  # ~46 KB each, as in review
    for walk in (
        lambda load: read_file(root, load, max_size=65_536),
        lambda load: read_file(root, load),
        lambda load: list(dag_cids(root, load)),
    ):
        load = _Counting(blocks)
        with pytest.raises(MalformedBlock, match="as an empty block"):
            walk(load)
        assert load.calls == 1


def test_links_without_block_sizes_are_refused_at_the_root() -> None:
    empty = CID.of(RAW, b"")
    block = _pb_node([Link(empty, 0)] * 1_000, b"\x08\x02")  # UnixFS File, no sizes at all
    root = CID.of(DAG_PB, block)
    load = _Counting({root: block, empty: b""})
    with pytest.raises(MalformedBlock, match="0 block sizes for 1000 links"):
        read_file(root, load)
    assert load.calls == 1


def test_a_billion_one_byte_leaves_stay_within_the_block_budget() -> None:
    root, blocks = _repeated_dag(b"a", 1)  # honest sizes: 10**9 bytes of content
    load = _Counting(blocks)
    with pytest.raises(ContentTooLarge):
        read_file(root, load, max_size=10 * 2**20)
    assert load.calls == 1
    load = _Counting(blocks)
    with pytest.raises(ReadBudgetExceeded, match="blocks for 1000000000 bytes"):
        read_file(root, load)
    assert load.calls <= block_budget(10**9)
    load = _Counting(blocks)
    assert len(list(dag_cids(root, load))) == 4  # each distinct block once
    assert load.calls == 3


def test_repeated_leaves_of_an_honest_file_are_read() -> None:
    data = bytes(10 * CHUNK_SIZE) + b"tail"  # runs of zeros dedupe to one leaf CID
    root, blocks = build_dag(data)
    by_cid = {cid: bytes(block) for cid, block in blocks}
    assert len(by_cid) == 3
    load = _Counting(by_cid)
    assert read_file(root, load, max_size=len(data)) == data
    assert load.calls == 12
    assert len(list(dag_cids(root, _loader(by_cid)))) == 3


def test_a_leaf_longer_than_declared_is_refused_when_loaded() -> None:
    leaf = b"abcd"
    leaf_cid = CID.of(RAW, leaf)
    root, block = _node_block([Link(leaf_cid, None)], 3, [3])
    with pytest.raises(MalformedBlock, match="holds 4 bytes, its parent declares 3"):
        read_file(root, _loader({root: block, leaf_cid: leaf}))


def test_a_child_whose_size_disagrees_with_its_parent_is_refused_before_its_links() -> None:
    leaf = b"abc"
    leaf_cid = CID.of(RAW, leaf)
    middle, middle_block = _node_block([Link(leaf_cid, 3)] * 2, 6, [3, 3])
    root, root_block = _node_block([Link(middle, None)], 5, [5])
    load = _Counting({root: root_block, middle: middle_block, leaf_cid: leaf})
    with pytest.raises(MalformedBlock, match="holds 6 bytes, its parent declares 5"):
        read_file(root, load)
    assert load.calls == 2


def test_a_raw_leaf_tsize_must_match_its_block_size() -> None:
    leaf = b"abc"
    leaf_cid = CID.of(RAW, leaf)
    root, block = _node_block([Link(leaf_cid, 99)], 3, [3])
    load = _Counting({root: block, leaf_cid: leaf})
    with pytest.raises(MalformedBlock, match="with Tsize 99"):
        read_file(root, load)
    assert load.calls == 1


# Random DAGs: every read ends within its bounds, and returns exactly what the DAG holds.

_CAP = 1 << 16  # content materialised for reference up to this size; max_size stays below


@dataclass(frozen=True)
class _Node:
    """A block of a generated DAG and the truth about it."""

    cid: CID
    size: int  # content bytes it really holds
    content: bytes | None  # that content, if at most _CAP bytes
    levels: int  # dag-pb nodes with links on its longest path down
    visits: int  # blocks a read visits below and including it, repeats counted
    honest: bool  # every size it and its descendants declare is true, no empty child


def _unixfs(kind: int, data: bytes, filesize: int | None, blocksizes: list[int]) -> bytes:
    out = bytearray(b"\x08" + encode_varint(kind))
    if data:
        out += b"\x12" + encode_varint(len(data)) + data
    if filesize is not None:
        out += b"\x18" + encode_varint(filesize)
    for size in blocksizes:
        out += b"\x20" + encode_varint(size)
    return bytes(out)


_LIES = ["none", "none", "none", "no-filesize", "filesize", "blocksize", "raw-tsize", "no-sizes"]


@st.composite
def _dags(draw: st.DrawFn) -> tuple[CID, dict[CID, bytes], _Node]:
    blocks: dict[CID, bytes] = {}
    pool: list[_Node] = []
    liar = draw(st.booleans())  # else every size is true and no leaf is empty
    leaves = st.binary(min_size=0 if liar else 1, max_size=6)
    for leaf in draw(st.lists(leaves, min_size=1, max_size=4)):
        cid = CID.of(RAW, leaf)
        blocks[cid] = leaf
        pool.append(_Node(cid, len(leaf), leaf, 0, 1, True))
    for _ in range(draw(st.integers(0, 24))):
        chain = draw(st.booleans())
        children = (
            [pool[-1]]
            if chain
            else [draw(st.sampled_from(pool)) for _ in range(draw(st.integers(1, 12)))]
        )
        data = draw(st.binary(max_size=3)) if draw(st.integers(0, 4)) == 0 else b""
        lie = draw(st.sampled_from(_LIES)) if liar else "none"
        sizes = [child.size for child in children]
        true_size = len(data) + sum(sizes)
        filesize: int | None = true_size
        links = [
            Link(child.cid, child.size if child.cid.codec == RAW else len(blocks[child.cid]))
            for child in children
        ]
        if lie == "no-filesize":
            filesize = None
        elif lie == "filesize":
            filesize = max(0, true_size + draw(st.sampled_from([-2, -1, 1, 5])))
        elif lie == "blocksize":
            at = draw(st.integers(0, len(sizes) - 1))
            sizes[at] = max(0, sizes[at] + draw(st.sampled_from([-1, 1, 3])))
        elif lie == "raw-tsize" and children[0].cid.codec == RAW:
            links[0] = Link(children[0].cid, children[0].size + 1)
        elif lie == "no-sizes":
            sizes = []
        kind = 1 if liar and draw(st.integers(0, 20)) == 0 else 2  # now and then a directory
        block = _pb_node(links, _unixfs(kind, data, filesize, sizes))
        cid = CID.of(DAG_PB, block)
        blocks[cid] = block
        honest = (
            kind == 2
            and [child.size for child in children] == sizes
            and filesize in (None, true_size)
            and (children[0].cid.codec == DAG_PB or links[0].tsize == children[0].size)
            and all(child.honest and child.size > 0 for child in children)
        )
        contents = [child.content for child in children]
        content = (
            data + b"".join(c for c in contents if c is not None)
            if true_size <= _CAP and all(c is not None for c in contents)
            else None
        )
        levels = 1 + max(child.levels for child in children)
        visits = 1 + sum(child.visits for child in children)
        pool.append(_Node(cid, true_size, content, levels, visits, honest))
    root = pool[-1] if draw(st.booleans()) else draw(st.sampled_from(pool))
    return root.cid, blocks, root


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_dags(), st.integers(0, _CAP))
def test_every_read_of_a_random_dag_ends_within_its_bounds(
    dag: tuple[CID, dict[CID, bytes], _Node], max_size: int
) -> None:
    root, blocks, truth = dag
    load = _Counting(blocks)
    try:
        content = read_file(root, load, max_size)
    except (MalformedBlock, ContentTooLarge, UnsupportedContent) as err:
        event(type(err).__name__)
        readable = (
            truth.honest
            and truth.size <= max_size
            and truth.levels <= MAX_DEPTH
            and truth.visits <= block_budget(truth.size)
        )
        assert not readable, "an honest DAG within every bound was refused"
    else:
        assert content == truth.content
        event("read")  # outcomes show with --hypothesis-show-statistics
    assert load.calls <= block_budget(max_size)

    load = _Counting(blocks)
    try:
        listed = list(dag_cids(root, load))
    except (MalformedBlock, UnsupportedContent):
        pass
    else:
        assert len(listed) == len(set(listed))
    dag_pb = sum(1 for cid in blocks if cid.codec == DAG_PB)
    assert load.calls <= dag_pb  # each dag-pb node loaded at most once
