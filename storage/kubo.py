"""A client for an IPFS daemon's HTTP RPC (`/api/v0`, served by Kubo and by js-ipfs).

Only what a node needs: ``add`` (CIDv1, raw leaves, base32), ``cat``, ``block/get``, ``pin/add``
and ``pin/ls``. Every call is a POST with a timeout per read; downloads (``cat``, ``block/get``)
also end by a total deadline, so a daemon trickling bytes gives a `DeadlineExceeded`. Failures
that can pass (connection refused or reset, HTTP 429/502/503/504) are retried with exponential
backoff; a daemon that stays down gives a `StoreUnavailable` naming its URL.

Nothing the daemon returns is trusted: `put` checks that the daemon's CID equals the one computed
here, and `get` checks the bytes against the CID (recomputing it from the ``cat`` output, and, for
DAGs laid out differently, fetching and checking each block with ``block/get``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from http import HTTPStatus
from types import TracebackType
from typing import Any, Self

import httpx

from swarmchain.node.errors import StorageError
from swarmchain.storage.cid import CID
from swarmchain.storage.dag import CHUNK_SIZE, build_dag, read_file
from swarmchain.storage.deadline import (
    BLOB_DEADLINE_S,
    BLOCK_DEADLINE_S,
    deadline,
    deadline_client,
    passed,
)
from swarmchain.storage.errors import (
    ContentTooLarge,
    DeadlineExceeded,
    MalformedBlock,
    StoreTimeout,
    StoreUnavailable,
    TamperedBlock,
)
from swarmchain.storage.gateway import MAX_BLOCK_SIZE

_TRANSIENT_STATUS = {
    HTTPStatus.TOO_MANY_REQUESTS,
    HTTPStatus.BAD_GATEWAY,
    HTTPStatus.SERVICE_UNAVAILABLE,
    HTTPStatus.GATEWAY_TIMEOUT,
}
# Errors where the request may not have reached the daemon or the connection broke: retry.
_TRANSIENT_ERRORS = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)
_ADD_PARAMS = {
    "cid-version": "1",
    "raw-leaves": "true",
    "cid-base": "base32",
    "hash": "sha2-256",
    "chunker": f"size-{CHUNK_SIZE}",
    "pin": "true",
}


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a failed RPC call is retried."""

    retries: int = 3  # extra attempts after the first
    backoff_s: float = 0.2  # sleep before the first retry; doubles before each further one

    def delays(self) -> list[float]:
        """The sleeps before each retry, in order."""
        return [self.backoff_s * 2**attempt for attempt in range(self.retries)]


class _Transient(Exception):
    """A failure worth retrying; carries the description for the final error."""


class KuboStore:
    """A store backed by an IPFS daemon's RPC API.

    Parameters
    ----------
    api_url
        The RPC base URL, e.g. ``http://127.0.0.1:5001`` (``/api/v0`` is appended).
    timeout
        Seconds to wait for the daemon to accept, send or answer any one step of a call.
    retry
        Retry policy for transient failures.
    block_deadline_s
        Seconds one ``block/get`` may take in all, retries included (default 60).
    blob_deadline_s
        Seconds one `get` may take in all, its ``cat`` and any ``block/get`` included
        (default 600).
    """

    def __init__(
        self,
        api_url: str,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        block_deadline_s: float = BLOCK_DEADLINE_S,
        blob_deadline_s: float = BLOB_DEADLINE_S,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.block_deadline_s = block_deadline_s
        self.blob_deadline_s = blob_deadline_s
        self._client = deadline_client(timeout, base_url=f"{self.api_url}/api/v0/")

    def __repr__(self) -> str:
        return f"KuboStore({self.api_url!r})"

    def _attempt(
        self,
        endpoint: str,
        params: dict[str, str],
        files: dict[str, tuple[str, bytes, str]] | None,
        limit: int | None,
        until: float | None,
    ) -> bytes | None:
        """One call, ended by `until` (a monotonic instant): the body, or None when it exceeded
        `limit`; raises on failure."""
        try:
            with (
                deadline(until),
                self._client.stream("POST", endpoint, params=params, files=files) as reply,
            ):
                if reply.status_code in _TRANSIENT_STATUS:
                    raise _Transient(f"HTTP {reply.status_code}")
                body = bytearray()
                for piece in reply.iter_bytes():
                    body += piece
                    if limit is not None and len(body) > limit:
                        return None
                if reply.status_code != HTTPStatus.OK:
                    raise self._daemon_error(endpoint, reply.status_code, bytes(body))
                return bytes(body)
        except httpx.HTTPError as err:
            if passed(until):
                raise self._late(endpoint) from err
            if isinstance(err, _TRANSIENT_ERRORS):
                raise _Transient(f"{type(err).__name__}: {err}") from err
            if isinstance(err, httpx.TimeoutException):
                raise StoreTimeout(
                    f"IPFS daemon at {self.api_url} did not answer {endpoint} "
                    f"within {self.timeout}s",
                    hint="raise the timeout, or check the daemon is healthy",
                ) from err
            raise

    def _late(self, endpoint: str) -> DeadlineExceeded:
        return DeadlineExceeded(
            f"IPFS daemon at {self.api_url} did not finish {endpoint} by its deadline",
            hint="raise block_deadline_s or blob_deadline_s, or check the daemon is healthy",
        )

    def _call(
        self,
        endpoint: str,
        params: dict[str, str],
        files: dict[str, tuple[str, bytes, str]] | None = None,
        limit: int | None = None,
        until: float | None = None,
    ) -> bytes | None:
        """Call an RPC endpoint, retrying transient failures with backoff until `until`."""
        delays = self.retry.delays()
        attempt = 0
        while True:
            if passed(until):
                raise self._late(endpoint)
            try:
                return self._attempt(endpoint, params, files, limit, until)
            except _Transient as err:
                if attempt == len(delays):
                    raise StoreUnavailable(
                        f"IPFS daemon at {self.api_url} failed {endpoint} "
                        f"{attempt + 1} times; last: {err}",
                        hint="start it (`ipfs daemon`) or check --ipfs-api",
                    ) from err
                time.sleep(delays[attempt])
                attempt += 1

    def _daemon_error(self, endpoint: str, status: int, body: bytes) -> StorageError:
        try:
            message = str(json.loads(body)["Message"])
        except (ValueError, KeyError, TypeError):
            message = body[:200].decode(errors="replace") or f"HTTP {status}"
        if "timed out" in message or "deadline exceeded" in message:
            return StoreTimeout(f"IPFS daemon at {self.api_url} timed out on {endpoint}: {message}")
        return StorageError(f"IPFS daemon at {self.api_url} refused {endpoint}: {message}")

    def _json(self, endpoint: str, params: dict[str, str], **kwargs: Any) -> dict[str, Any]:
        """The last JSON object of a (possibly newline-delimited) JSON reply."""
        body = self._call(endpoint, params, **kwargs) or b""
        lines = body.strip().splitlines()
        try:
            last = json.loads(lines[-1])
        except (IndexError, ValueError):
            raise StorageError(
                f"IPFS daemon at {self.api_url} sent no JSON for {endpoint}: {body[:200]!r}"
            ) from None
        if not isinstance(last, dict):
            raise StorageError(f"IPFS daemon at {self.api_url} sent {last!r} for {endpoint}")
        return last

    def put(self, data: bytes) -> str:
        """Add and pin a blob (``ipfs add --cid-version=1 --raw-leaves``).

        Returns
        -------
        str
            Its CID.

        Raises
        ------
        StorageError
            If the daemon's CID differs from the one computed locally (a daemon configured with
            other defaults), or the daemon refuses the call.
        StoreUnavailable, StoreTimeout
            If the daemon cannot be reached or does not answer in time.
        """
        expected = str(build_dag(data)[0])
        reply = self._json(
            "add", _ADD_PARAMS, files={"file": ("blob", data, "application/octet-stream")}
        )
        if reply.get("Hash") != expected:
            raise StorageError(
                f"IPFS daemon at {self.api_url} named the blob {reply.get('Hash')!r}, "
                f"expected {expected}",
                hint="the daemon ignored cid-version=1/raw-leaves/chunker; upgrade it",
            )
        return expected

    def _block(self, cid: CID, until: float | None = None) -> bytes:
        """One block, checked, by the block deadline or `until` if that comes first."""
        at = time.monotonic() + self.block_deadline_s
        until = at if until is None else min(at, until)
        block = self._call("block/get", {"arg": str(cid)}, limit=MAX_BLOCK_SIZE, until=until)
        if block is None:
            raise MalformedBlock(str(cid), f"larger than {MAX_BLOCK_SIZE} bytes")
        if not cid.matches(block):
            raise TamperedBlock(str(cid), f"IPFS daemon at {self.api_url}")
        return block

    def get(self, cid: str, *, max_size: int | None = None) -> bytes:
        """Read a blob and check it against its CID.

        ``cat`` fetches the bytes in one call; if they re-chunk to `cid` they are the content.
        Otherwise (tampering, or a DAG added with other settings) every block is fetched with
        ``block/get`` and checked, which either reads the content or names the bad block.

        Raises
        ------
        TamperedBlock
            If a block does not match its CID; the message names it.
        ContentTooLarge
            If the content exceeds `max_size`.
        MalformedBlock
            If the DAG is malformed or over its read budget (`swarmchain.storage.dag`).
        DeadlineExceeded
            If the download runs past the block or blob deadline.
        StoreUnavailable, StoreTimeout, StorageError
            If the daemon cannot be reached, is too slow, or refuses (e.g. an unknown CID).
        """
        root = CID.parse(cid)
        until = time.monotonic() + self.blob_deadline_s
        params = {"arg": cid}
        if max_size is not None:
            params["length"] = str(max_size + 1)
        data = self._call("cat", params, limit=None if max_size is None else max_size, until=until)
        if data is None:
            raise ContentTooLarge(cid, (max_size or 0) + 1, max_size or 0)
        if build_dag(data)[0] == root:
            return data
        return read_file(root, lambda block: self._block(block, until), max_size)

    def has(self, cid: str) -> bool:
        """Whether the daemon keeps `cid` pinned recursively (``pin ls --type=recursive``)."""
        CID.parse(cid)
        try:
            reply = self._json("pin/ls", {"arg": cid, "type": "recursive"})
        except StorageError as err:
            if "not pinned" in str(err):
                return False
            raise
        return bool(reply.get("Keys"))

    def pin(self, cid: str) -> None:
        """Pin `cid` recursively on the daemon, which fetches missing blocks itself.

        Raises
        ------
        StoreUnavailable, StoreTimeout, StorageError
            If the daemon cannot be reached, is too slow, or refuses.
        """
        CID.parse(cid)
        self._json("pin/add", {"arg": cid, "recursive": "true"})

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
