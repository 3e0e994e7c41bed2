"""`swarm demo` as a real subprocess: a small swarm with an attacker, audited, reported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from browser import load_page, needs_chromium

pytestmark = pytest.mark.integration

SWARM = str(Path(sys.executable).parent / "swarm")
NODES = 3
ROUNDS = 1


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("demo") / "run"
    done = subprocess.run(
        [
            SWARM, "demo",
            "--nodes", str(NODES),
            "--rounds", str(ROUNDS),
            "--attack", "scaling",
            "--out", str(out),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_summary_has_the_documented_shape(demo: dict[str, object]) -> None:
    assert {"rounds", "rewards", "slashed", "audit", "report"} <= set(demo)
    rounds = demo["rounds"]
    assert isinstance(rounds, list) and len(rounds) == ROUNDS
    row = rounds[0]
    assert {"round", "accuracy", "baseline_accuracy", "accepted", "rejected"} <= set(row)
    assert isinstance(row["accuracy"], float) and isinstance(row["baseline_accuracy"], float)
    assert demo["final_accuracy"] == rounds[-1]["accuracy"]
    assert isinstance(demo["centralised_accuracy"], float)
    assert demo["audit"]["result"] == "MATCH"  # type: ignore[index]


def test_the_attacker_is_rejected_slashed_and_unpaid(demo: dict[str, object]) -> None:
    nodes = demo["nodes"]
    assert isinstance(nodes, list) and len(nodes) == NODES
    (attacker,) = [n["address"] for n in nodes if n["attacker"]]
    honest = [n["address"] for n in nodes if not n["attacker"]]
    row = demo["rounds"][0]  # type: ignore[index]

    assert (row["accepted"], row["rejected"]) == (NODES - 1, 1)
    assert demo["slashed"][attacker] > 0  # type: ignore[index]
    assert demo["rewards"][attacker] == 0  # type: ignore[index]
    assert all(demo["slashed"][a] == 0 for a in honest)  # type: ignore[index]
    # The attacker was rejected, so the swarm made exactly the run without it.
    assert row["accuracy"] == row["baseline_accuracy"]


@needs_chromium
def test_report_renders_offline_in_chromium(demo: dict[str, object], tmp_path: Path) -> None:
    report = Path(str(demo["report"]))
    assert report.is_file()

    load = load_page(report, tmp_path / "profile")

    assert load.errors == []
    assert load.requests == [report.resolve().as_uri()]
    assert load.svg_count == 3
    assert load.title == "Swarmchain demo"
