"""Hostile command-line values, fuzzed: `swarm` never shows a traceback. A value the command
rejects is one ``error: ...`` line and exit code 1; a value the parser rejects (a word where a
number belongs, an unknown option) is one ``error: ...`` line and exit code 2.

Hypothesis drives the real entry point (`swarmchain.node.cli.app.main`) in-process, where thousands
of invocations are cheap; a handful of cases run the installed ``swarm`` executable as a subprocess,
so the console script itself is held to the same rule.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cli_run import run_swarm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swarmchain.storage.cid import CID, RAW

SWARM = Path(sys.executable).with_name("swarm")
DEAD_RPC = "http://127.0.0.1:9"  # the discard port: nothing answers JSON-RPC there
VALID_KEY = "0x" + "11" * 32
FUZZ = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
# Argument text: no NUL. It includes undecodable bytes as surrogate escapes (as argv gives them),
# and lone surrogates no shell can pass but an in-process caller can.
ARG = st.text(st.characters(exclude_characters="\x00"), max_size=40) | st.sampled_from(
    ["", "-", "--", "-1", "0x", "\udcff\udcfe", "../../etc/passwd", "%s%n", "1e309", "\n\n"]
)
NUMBER = st.integers(-(2**300), 2**300).map(str) | ARG
UNKNOWN_CID = str(CID.of(RAW, b"never stored"))


@contextmanager
def _workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as directory:
        yield Path(directory)


def _run(args: list[str]) -> tuple[int, str]:
    """Run `swarm ARGS` in-process; its exit code and standard error."""
    code, _, stderr = run_swarm(args)
    return code, stderr


def _assert_clean_failure(code: int, stderr: str) -> None:
    """A rejected value: one ``error:`` line, exit 1 (the command's) or 2 (the parser's)."""
    assert code in (1, 2), (code, stderr)
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr


def _assert_no_traceback(code: int, stderr: str) -> None:
    if code != 0:
        _assert_clean_failure(code, stderr)


@FUZZ
@given(ARG)
def test_store_cat_of_any_text_fails_cleanly(cid: str) -> None:
    with _workdir() as store:
        code, stderr = _run(["store", "cat", "--store", str(store), "--", cid])
    _assert_clean_failure(code, stderr)


@FUZZ
@given(NUMBER)
def test_store_cat_with_any_size_bound_fails_cleanly(max_size: str) -> None:
    with _workdir() as store:
        code, stderr = _run(
            ["store", "cat", "--store", str(store), "--max-size", max_size, UNKNOWN_CID]
        )
    _assert_clean_failure(code, stderr)


@FUZZ
@given(ARG)
def test_store_add_of_any_path_succeeds_or_fails_cleanly(path: str) -> None:
    with _workdir() as directory:
        code, stderr = _run(["store", "add", "--only-hash", "--", str(directory / path)])
    _assert_no_traceback(code, stderr)


@pytest.mark.parametrize(
    "args",
    [
        ["store", "add", "--only-hash", "\ud800"],
        ["rewards", "claim", "--deployment", "d.json", "--key", "\ud800", "--rpc", DEAD_RPC],
        ["rewards", "claim", "--deployment", "d.json", "--key", sys.executable, "--rpc", DEAD_RPC],
    ],
    ids=["store-add-unencodable-name", "key-unencodable-name", "key-binary-file"],
)
def test_a_file_that_cannot_be_named_or_read_as_text_fails_cleanly(args: list[str]) -> None:
    """A lone surrogate (only an in-process caller can pass one: argv decoding never makes it)
    cannot be encoded as a file name; a binary file given as the key file is not UTF-8 text."""
    _assert_clean_failure(*_run(args))


DEPLOY_OPTIONS = [
    "--task-spec-cid",
    "--task-spec-hash",
    "--quorum-bps",
    "--slash-bps",
    "--commit-duration",
    "--reveal-duration",
    "--attest-duration",
    "--unbonding-delay",
    "--min-stake",
    "--reward-per-round",
    "--reward-pool",
    "--token-supply",
    "--key",
    "--token",
]


@FUZZ
@given(st.dictionaries(st.sampled_from(DEPLOY_OPTIONS), NUMBER, min_size=1, max_size=4))
def test_deploy_with_any_parameters_fails_cleanly(values: dict[str, str]) -> None:
    arguments = {
        "--task-spec-cid": "bafkreitaskspec",
        "--task-spec-hash": "0x" + "ab" * 32,
        "--rpc": DEAD_RPC,
    } | values
    with _workdir() as directory:
        args = ["deploy", "--out", str(directory / "deployment.json")]
        for option, value in arguments.items():
            args += [option, value]
        code, stderr = _run(args)
    _assert_clean_failure(code, stderr)


@FUZZ
@given(ARG, st.binary(max_size=200) | st.just(b"[" * 100_000))
def test_rewards_claim_with_any_key_or_deployment_fails_cleanly(key: str, content: bytes) -> None:
    with _workdir() as directory:
        deployment = directory / "deployment.json"
        deployment.write_bytes(content)
        args = ["rewards", "claim", "--deployment", str(deployment), "--rpc", DEAD_RPC]
        code, stderr = _run([*args, "--journal", str(directory), "--key", key])
    _assert_clean_failure(code, stderr)


@FUZZ
@given(
    st.lists(
        st.sampled_from(["store", "cat", "add", "deploy", "rewards", "claim", "--store", "--key"])
        | ARG,
        max_size=6,
    )
)
def test_any_argument_list_never_shows_a_traceback(args: list[str]) -> None:
    if "serve" in args or "join" in args or "demo" in args:
        return  # they run until stopped (a server, a node, a demo chain)
    with _workdir() as directory:
        code, stderr = _run(["store", "--help"] if not args else [*args, "--store", str(directory)])
    _assert_no_traceback(code, stderr)


def test_the_swarm_executable_reports_hostile_values_without_tracebacks() -> None:
    with _workdir() as directory:
        garbage = directory / "deployment.json"
        garbage.write_bytes(b"[" * 100_000)
        data = directory / "site.npz"
        data.write_bytes(b"not an npz")
        env = os.environ | {"SWARM_STORE": str(directory / "store"), "HOME": str(directory)}
        # Each start of the executable imports torch and web3 (seconds of CPU): keep these few.
        cases: list[list[bytes | str]] = [
            ["store", "cat", os.fsencode("b\udcff\nerror: forged line")],
            ["node", "join", "--deployment", str(garbage), "--key", VALID_KEY, "--data", str(data)],
        ]
        processes = [
            subprocess.Popen(
                [SWARM, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
            )
            for args in cases
        ]
        for process in processes:
            _, err = process.communicate(timeout=240)
            stderr = err.decode()  # valid UTF-8: undecodable input bytes come back escaped
            assert process.returncode == 1, stderr
            _assert_clean_failure(process.returncode, stderr)
