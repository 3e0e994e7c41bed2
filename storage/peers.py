"""The trustless-gateway subset: serve blocks read-only over HTTP, and fetch them from peers.

A server answers ``GET /ipfs/{cid}?format=raw`` (or ``Accept: application/vnd.ipld.raw``) with the
block's exact bytes as ``application/vnd.ipld.raw``, ``404`` for a block it lacks, and nothing
else: no writes, no paths inside a DAG, no CAR files. It serves blocks as stored, unchecked: in the
trustless model the client checks every block against the CID it asked for, so a server never
needs to be trusted, and `fetch_block` does exactly that. Any IPFS gateway that implements the
spec can serve as a peer, and this server answers any trustless client. Each download from a peer
ends by a total deadline (`storage.deadline`), so a peer trickling bytes costs a bounded wait.

Reference: the Trustless Gateway spec (https://specs.ipfs.tech/http-gateways/trustless-gateway/).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TYPE_CHECKING, Self
from urllib.parse import parse_qs, urlsplit

import httpx

from storage.cid import CID
from storage.deadline import BLOCK_DEADLINE_S, deadline, passed
from storage.errors import BlockNotFound, DeadlineExceeded, InvalidCID, TamperedBlock

if TYPE_CHECKING:
    from storage.embedded import EmbeddedStore

RAW_MEDIA_TYPE = "application/vnd.ipld.raw"
MAX_BLOCK_SIZE = 2 * 1024 * 1024  # largest block accepted from a peer (Kubo's bitswap limit)

log = logging.getLogger(__name__)


class _BlockHandler(BaseHTTPRequestHandler):
    server: BlockServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _reply(self, status: HTTPStatus, body: bytes, content_type: str, *, head: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        if status == HTTPStatus.OK:
            self.send_header("Cache-Control", "public, max-age=29030400, immutable")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _error(self, status: HTTPStatus, message: str, *, head: bool) -> None:
        self._reply(status, message.encode() + b"\n", "text/plain; charset=utf-8", head=head)

    def _serve(self, *, head: bool) -> None:
        url = urlsplit(self.path)
        parts = url.path.split("/")
        if len(parts) != 3 or parts[:2] != ["", "ipfs"]:
            self._error(HTTPStatus.NOT_FOUND, "only /ipfs/{cid} is served", head=head)
            return
        formats = parse_qs(url.query).get("format", [])
        wants_raw = formats == ["raw"] or (
            not formats and RAW_MEDIA_TYPE in self.headers.get("Accept", "")
        )
        if not wants_raw:
            self._error(
                HTTPStatus.NOT_ACCEPTABLE,
                f"only ?format=raw ({RAW_MEDIA_TYPE}) is served",
                head=head,
            )
            return
        try:
            cid = CID.parse(parts[2])
        except InvalidCID as err:
            self._error(HTTPStatus.BAD_REQUEST, str(err), head=head)
            return
        block = self.server.store.read_block(cid)
        if block is None:
            self._error(HTTPStatus.NOT_FOUND, f"block {cid} not found", head=head)
            return
        self._reply(HTTPStatus.OK, block, RAW_MEDIA_TYPE, head=head)

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)


class BlockServer(ThreadingHTTPServer):
    """Serves an embedded store's blocks read-only, on its own thread when used as a context.

    Parameters
    ----------
    store
        The store whose blocks are served.
    host
        Interface to bind; loopback by default.
    port
        Port to bind; a free one when 0.
    """

    daemon_threads = True

    def __init__(self, store: EmbeddedStore, host: str = "127.0.0.1", port: int = 0) -> None:
        self.store = store
        super().__init__((host, port), _BlockHandler)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL peers pass to `EmbeddedStore(peers=...)`."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> Self:
        self._thread = threading.Thread(
            target=self.serve_forever, args=(0.05,), name="block-server", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
        self.server_close()


def _download(client: httpx.Client, peer: str, cid: CID, at: float) -> bytes | str:
    """The block's bytes from one peer, or why it did not supply them; raises
    `DeadlineExceeded` when the download runs past `at` (a monotonic instant)."""
    url = f"{peer.rstrip('/')}/ipfs/{cid}?format=raw"
    try:
        with deadline(at), client.stream("GET", url, headers={"Accept": RAW_MEDIA_TYPE}) as reply:
            if reply.status_code != HTTPStatus.OK:
                return f"HTTP {reply.status_code}"
            body = bytearray()
            for piece in reply.iter_bytes():
                body += piece
                if len(body) > MAX_BLOCK_SIZE:
                    return f"block larger than {MAX_BLOCK_SIZE} bytes"
            return bytes(body)
    except httpx.HTTPError as err:
        if passed(at):
            raise DeadlineExceeded(f"peer {peer} did not send block {cid} in time") from err
        return f"{type(err).__name__}: {err}"


def fetch_block(
    client: httpx.Client,
    peers: Sequence[str],
    cid: CID,
    *,
    deadline_s: float = BLOCK_DEADLINE_S,
    until: float | None = None,
) -> bytes:
    """Fetch one block from the first peer that supplies bytes matching its CID.

    Parameters
    ----------
    client
        The HTTP client, made by `storage.deadline.deadline_client` (its timeout bounds each
        read, the deadlines each download).
    peers
        Trustless-gateway base URLs, tried in order.
    cid
        The block wanted.
    deadline_s
        Seconds the download from one peer may take in all, however slowly bytes arrive.
    until
        A `time.monotonic()` instant by which every download ends (the blob's deadline), or None.

    Returns
    -------
    bytes
        The block, checked against `cid`.

    Raises
    ------
    TamperedBlock
        If no peer supplied matching bytes and at least one supplied others; names the peers.
    DeadlineExceeded
        If no peer supplied the block and a download ran past its deadline (or `until` passed).
    BlockNotFound
        If no peer supplied the block at all; the hint says what each answered.
    """
    failures: list[str] = []
    tampered: list[str] = []
    late = False
    for peer in peers:
        if passed(until):
            break
        at = time.monotonic() + deadline_s
        try:
            got = _download(client, peer, cid, at if until is None else min(at, until))
        except DeadlineExceeded:
            late = True
            failures.append(f"{peer}: not sent in time")
            continue
        if isinstance(got, str):
            failures.append(f"{peer}: {got}")
        elif cid.matches(got):
            return got
        else:
            tampered.append(peer)
    if tampered:
        raise TamperedBlock(str(cid), "peer " + ", ".join(tampered))
    answers = "peers answered: " + "; ".join(failures)
    if late or passed(until):
        raise DeadlineExceeded(f"block {cid} was not downloaded by its deadline", hint=answers)
    raise BlockNotFound(str(cid), hint=answers)
