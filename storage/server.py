"""Serve a store's blocks read-only over HTTP: the trustless-gateway subset
(`swarmchain.storage.gateway`).

The server answers ``GET /ipfs/{cid}?format=raw`` (or ``Accept: application/vnd.ipld.raw``) with the
block's exact bytes as ``application/vnd.ipld.raw``, ``404`` for a block it lacks, and nothing else:
no writes, no paths inside a DAG, no CAR files. It serves blocks as stored, unchecked: in the
trustless model the client checks every block against the CID it asked for (as
`swarmchain.storage.peers.fetch_block` does), so a server never needs to be trusted, and this server
answers any trustless client.
"""

from __future__ import annotations

import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self
from urllib.parse import parse_qs, urlsplit

from swarmchain.storage.cid import CID
from swarmchain.storage.embedded import EmbeddedStore
from swarmchain.storage.errors import InvalidCID
from swarmchain.storage.gateway import RAW_MEDIA_TYPE

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
