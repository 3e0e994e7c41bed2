"""Total download deadlines: a real HTTP server on loopback trickles a block one byte at a time,
faster than any read timeout, and every client in `storage` gives up by its deadline with
`DeadlineExceeded`, long before the server would have finished."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from eth_utils.address import to_checksum_address

from swarmchain.node.protocol.task import default_task
from swarmchain.node.protocol.verify import (
    Rejected,
    RejectReason,
    RoundFrame,
    Submission,
    verify_submission,
)
from swarmchain.storage.cid import CID, RAW
from swarmchain.storage.deadline import deadline_client
from swarmchain.storage.embedded import EmbeddedStore
from swarmchain.storage.errors import DeadlineExceeded, StoreTimeout
from swarmchain.storage.gateway import RAW_MEDIA_TYPE
from swarmchain.storage.kubo import KuboStore
from swarmchain.storage.peers import fetch_block

BLOCK = bytes(range(40))  # 40 bytes at one per PAUSE_S: 8 s to send in full
PAUSE_S = 0.2
CID_OF_BLOCK = CID.of(RAW, BLOCK)
HANG_GUARD_S = 20.0  # far above the 2 s deadlines: only a hang gets near it


class _Trickler(BaseHTTPRequestHandler):
    """Answers any GET or POST with `BLOCK`, one byte per `PAUSE_S`, headers too if asked."""

    server: TricklingServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, data: bytes) -> bool:
        """Write `data` a byte at a time; False once the test stops or the client hung up."""
        for byte in data:
            if self.server.stopping.wait(PAUSE_S):
                return False
            try:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
            except OSError:
                return False
        return True

    def _trickle(self) -> None:
        self.server.requests += 1
        head = (
            f"HTTP/1.1 200 OK\r\nContent-Type: {RAW_MEDIA_TYPE}\r\n"
            f"Content-Length: {len(BLOCK)}\r\n\r\n"
        ).encode()
        if self.server.slow_headers:
            if not self._send(head):
                return
        else:
            self.wfile.write(head)
        if self._send(BLOCK):
            self.server.finished.set()

    def do_GET(self) -> None:
        self._trickle()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._trickle()


class TricklingServer(ThreadingHTTPServer):
    """A peer that serves every request slowly, on 127.0.0.1 and a free port."""

    daemon_threads = True

    def __init__(self, *, slow_headers: bool = False) -> None:
        super().__init__(("127.0.0.1", 0), _Trickler)
        self.slow_headers = slow_headers
        self.stopping = threading.Event()  # set by the test: handlers stop sending
        self.finished = threading.Event()  # set when a handler sent a whole block
        self.requests = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture(params=[False, True], ids=["slow-body", "slow-headers"])
def trickler(request: pytest.FixtureRequest) -> Iterator[TricklingServer]:
    server = TricklingServer(slow_headers=request.param)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.stopping.set()
    server.shutdown()
    thread.join()
    server.server_close()


def _assert_cut_short(trickler: TricklingServer, started: float) -> None:
    assert trickler.requests >= 1
    assert not trickler.finished.is_set()  # it returned before the server sent the block
    assert time.monotonic() - started < HANG_GUARD_S


def test_a_trickling_peer_cannot_stall_a_block_fetch(trickler: TricklingServer) -> None:
    started = time.monotonic()
    with (
        deadline_client(timeout=30) as client,  # no single read waits anywhere near 30 s
        pytest.raises(DeadlineExceeded, match=str(CID_OF_BLOCK)) as caught,
    ):
        fetch_block(client, [trickler.url], CID_OF_BLOCK, deadline_s=2)
    _assert_cut_short(trickler, started)
    assert isinstance(caught.value, StoreTimeout)  # transient: retried, then UNAVAILABLE


def test_the_embedded_store_ends_a_blob_by_its_deadline(
    trickler: TricklingServer, tmp_path: Path
) -> None:
    started = time.monotonic()
    with (
        EmbeddedStore(tmp_path, peers=[trickler.url], block_deadline_s=60, blob_deadline_s=2) as s,
        pytest.raises(DeadlineExceeded),
    ):
        s.get(str(CID_OF_BLOCK))
    _assert_cut_short(trickler, started)


def test_the_kubo_client_ends_a_cat_by_its_deadline(trickler: TricklingServer) -> None:
    started = time.monotonic()
    with (
        KuboStore(trickler.url, timeout=30, blob_deadline_s=2) as kubo,
        pytest.raises(DeadlineExceeded, match=f"IPFS daemon at {trickler.url}"),
    ):
        kubo.get(str(CID_OF_BLOCK))
    _assert_cut_short(trickler, started)


def test_a_trickled_envelope_is_rejected_as_unavailable(
    trickler: TricklingServer, tmp_path: Path
) -> None:
    node = to_checksum_address("0x" + "01" * 20)
    sub = Submission(0, node, str(CID_OF_BLOCK), bytes(32), 1, bytes(32))
    frame = RoundFrame(31337, node, 1, str(CID_OF_BLOCK), default_task())
    started = time.monotonic()
    with (
        EmbeddedStore(tmp_path, peers=[trickler.url], block_deadline_s=2) as store,
        pytest.raises(Rejected) as rejected,
    ):
        verify_submission(sub, frame, lambda cid, limit: store.get(cid, max_size=limit))
    assert rejected.value.reason == RejectReason.UNAVAILABLE
    _assert_cut_short(trickler, started)
