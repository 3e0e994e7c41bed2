"""CIDs and UnixFS DAGs: encoding by hand-checkable examples, and hostile blocks on reading."""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import Callable

import pytest

from storage.cid import CID, DAG_PB, RAW, decode_varint, encode_varint
from storage.dag import (
    MAX_DEPTH,
    Link,
    _pb_node,
    _unixfs_file,
    build_dag,
    cid_of,
    dag_cids,
    decode_file_node,
    read_file,
)
from storage.errors import (
    ContentTooLarge,
    InvalidCID,
    MalformedBlock,
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
