"""`swarm store add|serve --json` for scripts; `swarm store cat` writes raw bytes instead."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from swarmchain.node.cli.app import app
from swarmchain.storage.dag import cid_of
from swarmchain.storage.embedded import EmbeddedStore

SWARM = Path(sys.executable).with_name("swarm")
DATA = b"one blob, small enough to check by eye\n"


def test_add_json_prints_the_cid_and_size_of_what_it_stored(tmp_path: Path) -> None:
    blob = tmp_path / "blob.bin"
    blob.write_bytes(DATA)
    store = tmp_path / "store"

    added = CliRunner().invoke(app, ["store", "add", str(blob), "--store", str(store), "--json"])

    assert added.exit_code == 0, added.output
    assert json.loads(added.stdout) == {"cid": cid_of(DATA), "size": len(DATA)}
    read = CliRunner().invoke(app, ["store", "cat", cid_of(DATA), "--store", str(store)])
    assert read.stdout_bytes == DATA


def test_add_only_hash_json_reads_standard_input(tmp_path: Path) -> None:
    done = CliRunner().invoke(
        app, ["store", "add", "--only-hash", "--json", "-", "--store", str(tmp_path)], input=DATA
    )

    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout) == {"cid": cid_of(DATA), "size": len(DATA)}


def test_cat_help_says_why_it_has_no_json_option() -> None:
    done = CliRunner().invoke(app, ["store", "cat", "--help"], terminal_width=200)

    assert done.exit_code == 0
    assert "raw bytes, so it has no --json" in done.output


def test_serve_json_prints_one_startup_line_with_the_url_peers_fetch_from(
    tmp_path: Path,
) -> None:
    served = EmbeddedStore(tmp_path / "served")
    cid = served.put(DATA)
    process = subprocess.Popen(
        [SWARM, "store", "serve", "--store", str(served.path), "--port", "0", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        startup = json.loads(process.stdout.readline())
        assert startup["url"].startswith("http://127.0.0.1:")
        assert startup["store"] == str(served.path)
        with EmbeddedStore(tmp_path / "fetcher", peers=[startup["url"]]) as fetcher:
            assert fetcher.get(cid) == DATA
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert out == ""  # no "stopped" line: stdout stays the one JSON line
