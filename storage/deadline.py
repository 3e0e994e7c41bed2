"""Total deadlines for downloads: HTTP clients whose every socket operation ends by a deadline.

An httpx timeout bounds each read, not a download: a peer that sends one byte just before each
read timeout keeps a block fetch alive forever. `deadline_client` builds an `httpx.Client` whose
connections clamp every connect, read and write to what is left of the deadline that the calling
thread set with `deadline`, so a download ends by it however slowly bytes trickle (an expired
deadline raises `httpx.ReadTimeout` and its kin, which callers turn into `DeadlineExceeded`).
Outside a `deadline` block the client behaves like a plain `httpx.Client`.

The deadline lives in a context variable, so threads downloading in parallel each keep their own.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import httpcore
import httpx

BLOCK_DEADLINE_S = 60.0  # one block from one peer: 2 MiB at 35 KiB/s
BLOB_DEADLINE_S = 600.0  # one blob, every block and retry included

_DEADLINE: ContextVar[float | None] = ContextVar("storage_deadline", default=None)


@contextmanager
def deadline(at: float | None) -> Iterator[None]:
    """Make HTTP downloads on this thread end by `at` (a `time.monotonic()` instant; None: none)."""
    token = _DEADLINE.set(at)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def passed(at: float | None) -> bool:
    """Whether the deadline `at` (None: none) has passed."""
    return at is not None and time.monotonic() >= at


def _clamp(timeout: float | None, expired: type[httpcore.TimeoutException]) -> float | None:
    """`timeout` cut to what is left of this thread's deadline; raises `expired` once it passed."""
    at = _DEADLINE.get()
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise expired("the download's deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every operation ends by the calling thread's deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _clamp(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _clamp(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        tls = self._inner.start_tls(
            ssl_context, server_hostname, _clamp(timeout, httpcore.ConnectTimeout)
        )
        return _DeadlineStream(tls)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's socket backend, its streams wrapped in `_DeadlineStream`."""

    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(
            host, port, _clamp(timeout, httpcore.ConnectTimeout), local_address, socket_options
        )
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_unix_socket(
            path, _clamp(timeout, httpcore.ConnectTimeout), socket_options
        )
        return _DeadlineStream(stream)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _DeadlineTransport(httpx.HTTPTransport):
    """httpx's default transport over `_DeadlineBackend`."""

    def __init__(self) -> None:
        context = httpx.create_ssl_context()
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)  # httpx's own
        super().__init__(verify=context, limits=limits)
        # HTTPTransport takes no network backend, so its pool is rebuilt around ours; the
        # trickling-peer tests fail if a new httpx stops routing requests through `_pool`.
        self._pool = httpcore.ConnectionPool(
            ssl_context=context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_DeadlineBackend(),
        )


def deadline_client(timeout: float, **kwargs: Any) -> httpx.Client:
    """An `httpx.Client` whose downloads end by the deadline set with `deadline`.

    Parameters
    ----------
    timeout
        Seconds any one connect, read or write may wait (httpx's timeout), deadline or not.
    **kwargs
        Passed to `httpx.Client` (e.g. ``base_url``).

    Returns
    -------
    httpx.Client
        The client; environment proxy settings do not apply to it.
    """
    return httpx.Client(timeout=timeout, transport=_DeadlineTransport(), **kwargs)
