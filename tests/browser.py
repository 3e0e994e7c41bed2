"""Load a local HTML file in headless Chromium and report what its console and network saw.

Chromium is driven over the DevTools protocol (a websocket): the page is navigated to a
``file://`` URL, and every console error, uncaught exception, browser log error and network
request is collected until the load event, plus a short grace period for late messages.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Skipped on a developer's machine without Chromium; in CI (which installs it) a missing browser
# fails the test instead, so a green CI run always rendered the reports.
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="Chromium is not installed (apt-get install chromium)",
)
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
)
_LISTENING = re.compile(r"DevTools listening on (ws://127\.0\.0\.1:(\d+)/\S+)")
GRACE_S = 0.5  # after the load event, for console messages that arrive late


@dataclass
class PageLoad:
    """What loading a page produced."""

    errors: list[str] = field(default_factory=list)  # console errors, exceptions, log errors
    requests: list[str] = field(default_factory=list)  # every URL the page requested
    title: str = ""
    svg_count: int = 0


class _DevTools:
    """A minimal DevTools protocol session on one page target."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params or {}}))
        while True:
            message = json.loads(self.ws.recv(timeout=30))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self.events.append(message)

    def wait_for(self, method: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {method} within {timeout}s")
            self.events.append(json.loads(self.ws.recv(timeout=left)))

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                self.events.append(json.loads(self.ws.recv(timeout=left)))
            except TimeoutError:
                return


def _collect(events: list[dict[str, Any]], load: PageLoad) -> None:
    for e in events:
        method, params = e.get("method"), e.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            texts = [str(a.get("value", a.get("description", ""))) for a in params["args"]]
            load.errors.append("console: " + " ".join(texts))
        elif method == "Runtime.exceptionThrown":
            load.errors.append("exception: " + json.dumps(params["exceptionDetails"])[:300])
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            load.errors.append("log: " + params["entry"]["text"])
        elif method == "Network.requestWillBeSent":
            load.requests.append(params["request"]["url"])


def load_page(page: Path, profile: Path, timeout: float = 60.0) -> PageLoad:
    """Open `page` in a fresh headless Chromium and collect what happened.

    Parameters
    ----------
    page
        The HTML file.
    profile
        An empty directory for Chromium's profile (``--user-data-dir``).
    timeout
        Seconds for Chromium to start and the page to load.
    """
    assert CHROMIUM is not None, "Chromium is not installed (apt-get install chromium)"
    process = subprocess.Popen(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stderr is not None
        port = None
        deadline = time.monotonic() + timeout
        for line in process.stderr:
            found = _LISTENING.search(line)
            if found:
                port = int(found.group(2))
                break
            if time.monotonic() > deadline:
                break
        assert port is not None, "Chromium did not report a DevTools port"
        drain = threading.Thread(target=process.stderr.read, daemon=True)
        drain.start()
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=timeout).json()
        url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        with connect(url, max_size=None, open_timeout=30) as ws:
            tools = _DevTools(ws)
            for domain in ("Runtime", "Log", "Network", "Page"):
                tools.call(f"{domain}.enable")
            tools.call("Page.navigate", {"url": page.resolve().as_uri()})
            tools.wait_for("Page.loadEventFired", timeout)
            tools.drain(GRACE_S)
            count = tools.call(
                "Runtime.evaluate",
                {"expression": "document.querySelectorAll('svg').length", "returnByValue": True},
            )
            title = tools.call(
                "Runtime.evaluate", {"expression": "document.title", "returnByValue": True}
            )
        load = PageLoad(
            title=str(title["result"]["value"]), svg_count=int(count["result"]["value"])
        )
        _collect(tools.events, load)
        return load
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
