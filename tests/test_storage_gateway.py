"""Peers without Kubo: one store serves its blocks read-only (`swarm store serve`, a separate
process), another fetches from a list of peers and checks every block."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from swarmchain.node.devtools.process import free_port
from swarmchain.storage.cid import CID
from swarmchain.storage.dag import build_dag
from swarmchain.storage.embedded import EmbeddedStore
from swarmchain.storage.errors import BlockNotFound, TamperedBlock
from swarmchain.storage.gateway import RAW_MEDIA_TYPE
from swarmchain.storage.server import BlockServer

SWARM = str(Path(sys.executable).parent / "swarm")


def _blob(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.fixture(scope="module")
def serving(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmbeddedStore, str]]:
    """A store directory served by `swarm store serve` in its own process, and the URL."""
    store = EmbeddedStore(tmp_path_factory.mktemp("served"))
    process = subprocess.Popen(
        [SWARM, "store", "serve", "--store", str(store.path), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith(f"serving {store.path} at http://127.0.0.1:"), process.stderr
    yield store, line.split(" at ")[1].strip()
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=60)  # generous: a loaded 2-core machine can take seconds to unwind
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


def test_a_second_process_fetches_and_checks_every_block(
    serving: tuple[EmbeddedStore, str], tmp_path: Path
) -> None:
    source, url = serving
    data = _blob(700_000, seed=10)
    cid = source.put(data)
    with EmbeddedStore(tmp_path, peers=[url]) as fetcher:
        assert fetcher.get(cid) == data
        assert not fetcher.has(cid)  # fetched blocks are cached, not pinned
        fetcher.pin(cid)
        assert fetcher.has(cid)
    offline = EmbeddedStore(tmp_path)
    assert offline.get(cid) == data  # every block is now local


def test_pin_fetches_missing_blocks_from_peers(
    serving: tuple[EmbeddedStore, str], tmp_path: Path
) -> None:
    source, url = serving
    data = _blob(600_000, seed=11)
    cid = source.put(data)
    with EmbeddedStore(tmp_path, peers=[url]) as fetcher:
        fetcher.pin(cid)
    assert EmbeddedStore(tmp_path).get(cid) == data


def test_a_tampered_block_at_the_peer_is_rejected_naming_cid_and_peer(
    serving: tuple[EmbeddedStore, str], tmp_path: Path
) -> None:
    source, url = serving
    data = _blob(300_000, seed=12)
    cid = source.put(data)
    leaf_cid = build_dag(data)[1][1][0]  # the second leaf, packed at offset 262144
    (source.path / "packs" / cid).write_bytes(data[:262_144] + b"forged" + data[262_150:])
    with EmbeddedStore(tmp_path, peers=[url]) as fetcher, pytest.raises(TamperedBlock) as caught:
        fetcher.get(cid)
    assert str(leaf_cid) in str(caught.value) and url in str(caught.value)
    assert not (tmp_path / "blocks" / leaf_cid.digest[:1].hex() / str(leaf_cid)).exists()


def test_peers_are_tried_in_order_until_one_has_the_block(
    serving: tuple[EmbeddedStore, str], tmp_path: Path
) -> None:
    source, url = serving
    data = _blob(1000, seed=13)
    cid = source.put(data)
    down = f"http://127.0.0.1:{free_port()}"
    with EmbeddedStore(tmp_path / "empty") as empty, BlockServer(empty) as lacking:
        peers = [down, lacking.url, url]
        with EmbeddedStore(tmp_path / "fetcher", peers=peers, timeout=5) as fetcher:
            assert fetcher.get(cid) == data


def test_block_found_nowhere_lists_what_each_peer_said(tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    with EmbeddedStore(tmp_path / "empty") as empty, BlockServer(empty) as lacking:
        fetcher = EmbeddedStore(tmp_path / "fetcher", peers=[lacking.url, down], timeout=5)
        cid = str(CID.of(0x55, b"nowhere"))
        with pytest.raises(BlockNotFound, match=cid) as caught:
            fetcher.get(cid)
        fetcher.close()
    message = str(caught.value)
    assert f"{lacking.url}: HTTP 404" in message and f"{down}: ConnectError" in message


def test_server_speaks_only_the_raw_block_subset(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    cid = store.put(b"block bytes")
    with BlockServer(store) as server, httpx.Client(base_url=server.url) as client:
        raw = client.get(f"/ipfs/{cid}", params={"format": "raw"})
        assert raw.status_code == 200
        assert raw.headers["content-type"] == RAW_MEDIA_TYPE
        assert raw.content == b"block bytes"
        by_accept = client.get(f"/ipfs/{cid}", headers={"Accept": RAW_MEDIA_TYPE})
        assert by_accept.content == b"block bytes"
        head = client.head(f"/ipfs/{cid}?format=raw")
        assert head.status_code == 200 and head.headers["content-length"] == "11"
        assert client.get(f"/ipfs/{cid}").status_code == 406
        assert client.get(f"/ipfs/{cid}", params={"format": "car"}).status_code == 406
        assert client.get("/ipfs/not-a-cid?format=raw").status_code == 400
        assert client.get(f"/ipfs/{cid}/path?format=raw").status_code == 404
        assert client.get(f"/ipns/{cid}?format=raw").status_code == 404
        assert client.post(f"/ipfs/{cid}?format=raw", content=b"x").status_code == 501
