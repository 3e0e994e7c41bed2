"""Waking up when a contract emits: an ``eth_subscribe("logs")`` subscription over WebSocket.

A node decides everything from chain state, so it has to look again whenever that state changed.
Every change a swarm cares about is a coordinator transaction, and every such transaction emits a
coordinator event, so `LogWatch.wait` returns as soon as the chain announces a new log of the
watched address, and otherwise after its timeout (a window that ends by the clock mines no
block, so callers still look at least once per timeout).

The subscription only shortens waits; it never decides anything. An endpoint without WebSocket
support, or a chain that went away, turns `wait` into a plain sleep, and the watch subscribes
again (at most once per `RECONNECT_S`) so a restarted chain wakes its nodes again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

from websockets.exceptions import WebSocketException
from websockets.sync.client import ClientConnection, connect

RECONNECT_S = 2.0  # least time between two attempts to subscribe
OPEN_TIMEOUT_S = 2.0  # connecting and subscribing; a chain this slow is treated as down


def websocket_url(rpc_url: str) -> str | None:
    """The WebSocket URL of an HTTP JSON-RPC endpoint (same host, port and path), if any.

    Anvil, Geth and most nodes serve both protocols on the same port.

    Parameters
    ----------
    rpc_url
        An ``http://`` or ``https://`` (or already ``ws://`` / ``wss://``) URL.

    Returns
    -------
    str or None
        The ``ws://`` or ``wss://`` URL, or None for any other scheme.
    """
    parts = urlsplit(rpc_url)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    return None if scheme is None else urlunsplit(parts._replace(scheme=scheme))


class LogWatch:
    """Waits until a contract emits a new event, or a timeout passes.

    Parameters
    ----------
    rpc_url
        The chain's JSON-RPC endpoint (its WebSocket twin is derived with `websocket_url`).
    address
        The contract whose logs wake the waiter.
    topics
        Event topics (``topic0``, the event signature hashes) that wake it; every log of the
        contract when empty.
    """

    def __init__(self, rpc_url: str, address: str, topics: Sequence[bytes] = ()) -> None:
        self.url = websocket_url(rpc_url)
        self.address = address
        self.topics = ["0x" + t.hex() for t in topics]
        self._connection: ClientConnection | None = None
        self._next_attempt = 0.0  # monotonic time before which no new subscription is tried

    @property
    def subscribed(self) -> bool:
        """Whether a subscription is open (waits end at the next log)."""
        return self._connection is not None

    def open(self) -> bool:
        """Subscribe now if not subscribed; returns whether a subscription is open.

        Waits subscribe by themselves; opening first means no event emitted after this call
        is missed by the next `wait`.
        """
        if self._connection is None and self.url is not None:
            now = time.monotonic()
            if now >= self._next_attempt:
                self._next_attempt = now + RECONNECT_S
                self._connection = self._subscribe(self.url)
        return self._connection is not None

    def _subscribe(self, url: str) -> ClientConnection | None:
        log_filter: dict[str, object] = {"address": self.address}
        if self.topics:
            log_filter["topics"] = [self.topics]  # topic0 is any one of them
        request = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "eth_subscribe",
            "params": ["logs", log_filter],
        }
        connection: ClientConnection | None = None
        try:
            # legacy=True: a plain connection (websockets 17 otherwise warns, or reconnects).
            connection = connect(
                url,
                open_timeout=OPEN_TIMEOUT_S,
                compression=None,  # messages are small; deflate would only cost CPU
                max_queue=None,  # `wait` drains them; the sender must never be paused
                legacy=True,
            )
            connection.send(json.dumps(request))
            reply = json.loads(connection.recv(timeout=OPEN_TIMEOUT_S))
        except (OSError, TimeoutError, WebSocketException, ValueError):
            if connection is not None:
                connection.close()
            return None
        if not isinstance(reply, dict) or "result" not in reply:
            connection.close()
            return None
        return connection

    def wait(self, timeout: float) -> bool:
        """Block until a log announced since the last wait, or `timeout` seconds.

        Parameters
        ----------
        timeout
            The longest wait in seconds.

        Returns
        -------
        bool
            True when woken by a log (any number announced since the last wait count as one),
            False when the timeout passed or no subscription could be made.
        """
        if not self.open():
            time.sleep(timeout)
            return False
        assert self._connection is not None
        try:
            woken = self._drain()
            if not woken:
                self._connection.recv(timeout=timeout)
                self._drain()
                woken = True
        except TimeoutError:
            return False
        except (OSError, WebSocketException):
            self.close()
            return False
        return woken

    def _drain(self) -> bool:
        """Consume every message already received; whether there was any."""
        assert self._connection is not None
        drained = False
        while True:
            try:
                self._connection.recv(timeout=0)
            except TimeoutError:
                return drained
            drained = True

    def close(self) -> None:
        """End the subscription (a later wait subscribes again)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None
