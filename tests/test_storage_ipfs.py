"""Against a real IPFS peer (js-ipfs, started once per session): identical CIDs from the peer and
the embedded store, and the Kubo RPC client's add, cat, pin, verification, timeouts and retries."""

from __future__ import annotations

import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise
from pathlib import Path

import httpx
import pytest

from swarmchain.node.devtools.ipfs_peer import JsIpfsPeer
from swarmchain.node.devtools.process import free_port
from swarmchain.storage.dag import build_dag
from swarmchain.storage.embedded import EmbeddedStore
from swarmchain.storage.errors import (
    ContentTooLarge,
    StoreTimeout,
    StoreUnavailable,
    TamperedBlock,
)
from swarmchain.storage.kubo import KuboStore, RetryPolicy

pytestmark = pytest.mark.integration

SWARM = str(Path(sys.executable).parent / "swarm")
KIB = 1024
MIB = 1024 * KIB


def _blob(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _peer_add(peer: JsIpfsPeer, data: bytes, **params: str) -> str:
    """`ipfs add --cid-version=1 --raw-leaves` straight through the peer's RPC (no client code)."""
    reply = httpx.post(
        f"{peer.api_url}/api/v0/add",
        params={"cid-version": "1", "raw-leaves": "true", "cid-base": "base32", **params},
        files={"file": ("blob", data, "application/octet-stream")},
        timeout=120,
    )
    reply.raise_for_status()
    cid: str = reply.json()["Hash"]
    return cid


@pytest.fixture
def kubo(ipfs_peer: JsIpfsPeer) -> Iterator[KuboStore]:
    with KuboStore(ipfs_peer.api_url, timeout=30) as store:
        yield store


@pytest.mark.parametrize(
    "size",
    [0, 1, 256 * KIB, 256 * KIB + 1, 1 * MIB, 10 * MIB],
    ids=["0B", "1B", "256KiB", "256KiB+1", "1MiB", "10MiB"],
)
def test_peer_and_embedded_store_give_identical_cids(
    ipfs_peer: JsIpfsPeer, kubo: KuboStore, tmp_path: Path, size: int
) -> None:
    data = _blob(size, seed=size)
    peer_cid = _peer_add(ipfs_peer, data)
    embedded = EmbeddedStore(tmp_path)
    assert embedded.put(data) == peer_cid
    assert kubo.get(peer_cid) == data
    assert embedded.get(peer_cid) == data


def test_balanced_layout_matches_the_peer_beyond_174_links(ipfs_peer: JsIpfsPeer) -> None:
    data = _blob(174 * KIB + 1, seed=7)  # 175 chunks of 1 KiB: a root over two interior nodes
    peer_cid = _peer_add(ipfs_peer, data, chunker="size-1024", pin="false")
    assert peer_cid == str(build_dag(data, chunk_size=KIB)[0])


def test_kubo_store_adds_cats_and_pins(ipfs_peer: JsIpfsPeer, kubo: KuboStore) -> None:
    data = _blob(300 * KIB, seed=21)
    cid = kubo.put(data)
    assert kubo.has(cid)
    assert kubo.get(cid) == data
    unpinned = _blob(1000, seed=22)
    other = _peer_add(ipfs_peer, unpinned, pin="false")
    assert not kubo.has(other)
    kubo.pin(other)
    assert kubo.has(other)


def test_kubo_get_reads_dags_laid_out_differently(ipfs_peer: JsIpfsPeer, kubo: KuboStore) -> None:
    data = _blob(600 * KIB, seed=23)
    cid = _peer_add(ipfs_peer, data, **{"raw-leaves": "false"})  # dag-pb leaves, another CID
    assert cid != str(build_dag(data)[0])
    assert kubo.get(cid) == data


def test_kubo_get_bounds_the_size(kubo: KuboStore) -> None:
    cid = kubo.put(_blob(2000, seed=24))
    with pytest.raises(ContentTooLarge, match=cid):
        kubo.get(cid, max_size=1999)
    assert len(kubo.get(cid, max_size=2000)) == 2000


def test_a_block_tampered_in_the_peer_repo_is_named(ipfs_peer: JsIpfsPeer, kubo: KuboStore) -> None:
    data = _blob(256 * KIB + 5000, seed=25)
    cid = kubo.put(data)
    tail_cid, tail = build_dag(data)[1][1]
    stored = [p for p in ipfs_peer.blocks_dir.rglob("*.data") if p.read_bytes() == bytes(tail)]
    assert len(stored) == 1
    stored[0].write_bytes(bytes(tail[:-1]) + bytes([tail[-1] ^ 1]))
    with pytest.raises(TamperedBlock, match=str(tail_cid)):
        kubo.get(cid)


def test_a_daemon_that_is_down_is_named_by_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    store = KuboStore(url, timeout=2, retry=RetryPolicy(retries=2, backoff_s=0.01))
    with pytest.raises(StoreUnavailable, match=f"IPFS daemon at {url} failed add 3 times"):
        store.put(b"anything")


def test_a_daemon_that_never_answers_times_out() -> None:
    with socket.socket() as silent:  # accepts connections (backlog) but never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        store = KuboStore(url, timeout=0.5)
        with pytest.raises(StoreTimeout, match=f"IPFS daemon at {url} did not answer add"):
            store.put(b"anything")


def test_content_the_peer_cannot_find_times_out(ipfs_peer: JsIpfsPeer) -> None:
    missing = str(build_dag(b"no peer has this")[0])
    with (
        KuboStore(ipfs_peer.api_url, timeout=1) as store,
        pytest.raises(StoreTimeout, match=ipfs_peer.api_url),
    ):
        store.get(missing)


class _FlakyProxy(ThreadingHTTPServer):
    """Answers the first `failures` requests with 503, then forwards to the real peer."""

    def __init__(self, upstream: str, failures: int) -> None:
        super().__init__(("127.0.0.1", 0), _FlakyHandler)
        self.upstream = upstream
        self.failures = failures
        self.arrivals: list[float] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _FlakyHandler(BaseHTTPRequestHandler):
    server: _FlakyProxy

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.server.lock:
            self.server.arrivals.append(time.monotonic())
            fail = len(self.server.arrivals) <= self.server.failures
        if fail:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        reply = httpx.post(
            self.server.upstream + self.path,
            content=body,
            headers={"Content-Type": self.headers["Content-Type"] or ""},
            timeout=30,
        )
        self.send_response(reply.status_code)
        self.send_header("Content-Type", reply.headers.get("content-type", ""))
        self.send_header("Content-Length", str(len(reply.content)))
        self.end_headers()
        self.wfile.write(reply.content)


@pytest.fixture
def flaky(ipfs_peer: JsIpfsPeer, request: pytest.FixtureRequest) -> Iterator[_FlakyProxy]:
    proxy = _FlakyProxy(ipfs_peer.api_url, failures=request.param)
    thread = threading.Thread(target=proxy.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield proxy
    proxy.shutdown()
    thread.join()
    proxy.server_close()


@pytest.mark.parametrize("flaky", [2], indirect=True)
def test_transient_failures_are_retried_with_backoff(flaky: _FlakyProxy) -> None:
    policy = RetryPolicy(retries=3, backoff_s=0.05)
    data = _blob(5000, seed=26)
    with KuboStore(flaky.url, retry=policy) as store:
        cid = store.put(data)
    assert cid == str(build_dag(data)[0])
    assert len(flaky.arrivals) == 3
    gaps = [later - earlier for earlier, later in pairwise(flaky.arrivals)]
    assert all(gap >= delay for gap, delay in zip(gaps, policy.delays()[:2], strict=True))


@pytest.mark.parametrize("flaky", [100], indirect=True)
def test_retries_give_up_naming_the_url(flaky: _FlakyProxy) -> None:
    with (
        KuboStore(flaky.url, retry=RetryPolicy(retries=2, backoff_s=0.01)) as store,
        pytest.raises(StoreUnavailable, match=f"{flaky.url} failed add 3 times; last: HTTP 503"),
    ):
        store.put(b"anything")
    assert len(flaky.arrivals) == 3


def test_cli_uses_the_daemon_with_ipfs_api(ipfs_peer: JsIpfsPeer, tmp_path: Path) -> None:
    data = _blob(400 * KIB, seed=27)
    (tmp_path / "blob").write_bytes(data)
    api = ["--ipfs-api", ipfs_peer.api_url]
    added = subprocess.run(
        [SWARM, "store", "add", "-Q", str(tmp_path / "blob"), *api],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    cid = added.stdout.decode().strip()
    assert cid == _peer_add(ipfs_peer, data, pin="false")
    cat = subprocess.run(
        [SWARM, "store", "cat", cid, *api], capture_output=True, timeout=60, check=False
    )
    assert cat.stdout == data
