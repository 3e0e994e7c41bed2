"""The audit report's forms: Markdown, and one self-contained HTML file with hand-drawn SVG."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from browser import load_page, needs_chromium

from swarmchain.node.audit.html import render_html
from swarmchain.node.audit.report import (
    AttestationLine,
    AuditReport,
    Check,
    CheckKind,
    Result,
    RoundReport,
    SlashLine,
    UpdateLine,
    to_markdown,
)
from swarmchain.node.audit.svg import Series, line_chart, stacked_bars

ALICE = "0x" + "aa" * 20
EVIL = "0x" + "ee" * 20
HOSTILE = "<script>alert(1)</script>"
TOKEN = 10**18


def _round(r: int, accuracy: float, mismatch: bool = False) -> RoundReport:
    return RoundReport(
        round=r,
        base_round=r - 1,
        state="finalized",
        seed="0x" + "11" * 32,
        checkpoint_cid=f"bafkcheckpoint{r}",
        checkpoint_hash="0x" + f"{r:02x}" * 32,
        updates=(
            UpdateLine(0, ALICE, f"bafkalice{r}", "0x" + "00" * 32, 10, True),
            UpdateLine(
                1, EVIL, f"bafkevil{r}", "0x" + "00" * 32, 99, False, "norm_exceeded", HOSTILE
            ),
        ),
        attestations=(AttestationLine(ALICE, 100 * TOKEN, 100 * TOKEN, "0x" + "01" * 32, True),),
        slashes=(SlashLine(EVIL, "rejected", 10 * TOKEN),),
        reward=1000 * TOKEN,
        rewards={ALICE: 1000 * TOKEN, EVIL: 0},
        claimed={ALICE: 1000 * TOKEN},
        accuracy=accuracy,
        replayed=not mismatch,
    )


def _report(mismatch: bool) -> AuditReport:
    checks = [
        Check(0, CheckKind.TASK_DOCUMENT, "bafktask", True),
        Check(1, CheckKind.ENVELOPE, "bafkalice1", True),
        Check(2, CheckKind.ENVELOPE, "bafkalice2", not mismatch, "0x01", "0x02", HOSTILE),
        Check(2, CheckKind.CHECKPOINT_HASH, "bafkcheckpoint2", not mismatch),
    ]
    return AuditReport(
        chain_id=31337,
        coordinator=ALICE,
        task_name=HOSTILE,
        task_cid="bafktask",
        task_hash="0x" + "22" * 32,
        genesis_cid="bafkgenesis",
        genesis_hash="0x" + "33" * 32,
        genesis_accuracy=0.1,
        checkpoint_round=2,
        checkpoint_cid="bafkcheckpoint2",
        checkpoint_hash="0x" + "02" * 32,
        rounds=(_round(1, 0.5), _round(2, 0.75, mismatch)),
        checks=tuple(checks),
    )


def test_first_failed_check_is_the_first_mismatch() -> None:
    report = _report(mismatch=True)

    assert report.result == Result.MISMATCH
    assert report.first_mismatch is not None
    assert report.first_mismatch.subject == "bafkalice2"
    assert report.to_json()["result"] == "MISMATCH"
    assert report.to_json()["first_mismatch"]["subject"] == "bafkalice2"
    assert _report(mismatch=False).to_json()["result"] == "MATCH"


def test_markdown_lists_mismatches_before_the_rounds() -> None:
    text = to_markdown(_report(mismatch=True))

    assert text.index("## Mismatches") < text.index("## Round 1")
    assert "envelope bafkalice2: MISMATCH (chain: 0x01, found: 0x02)" in text
    assert "rejected (norm_exceeded)" in text


def test_html_is_self_contained_and_escapes_hostile_text() -> None:
    page = render_html(_report(mismatch=True), baseline={1: 0.4, 2: 0.8})

    assert HOSTILE not in page
    assert "&lt;script&gt;" in page
    assert "<script" not in page
    # No resource is loaded from anywhere: the only URL is the SVG namespace name.
    assert set(re.findall(r"https?://[^\s\"'<>]+", page)) == {"http://www.w3.org/2000/svg"}
    assert not re.search(r"\b(src|href)=|@import|url\(", page)
    assert page.count("<svg") == 3


def test_line_chart_draws_a_point_per_value_and_skips_gaps() -> None:
    svg = line_chart(
        "accuracy",
        ["a", "b", "c"],
        [Series("x", [0.0, None, 1.0]), Series("y", [0.5, 0.5, 0.5], dashed=True)],
        x_title="round",
        fmt=str,
        y_max=1.0,
    )

    assert svg.count("<circle") == 5
    assert svg.count("<polyline") == 2
    assert 'stroke-dasharray="6 4"' in svg


def test_stacked_bars_scale_segments_to_the_tallest_bar() -> None:
    svg = stacked_bars(
        "rewards",
        ["1", "2"],
        [Series("p", [1.0, 3.0]), Series("q", [1.0, 0.0])],
        x_title="round",
        fmt=str,
    )

    heights = [float(h) for h in re.findall(r'height="([\d.]+)" fill="#\w+"><title>', svg)]
    # Segments p1, q1, p2 (q2 is 0 and draws nothing); the axis top is 5, the plot 200 px tall.
    assert heights == pytest.approx([40.0, 40.0, 120.0])


@needs_chromium
def test_html_report_renders_in_chromium_without_console_errors(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_html(_report(mismatch=True), baseline={1: 0.4, 2: 0.8}))

    load = load_page(page, tmp_path / "profile")

    assert load.errors == []
    assert load.requests == [page.resolve().as_uri()]
    assert load.svg_count == 3
    assert load.title.startswith("Provenance audit")


@needs_chromium
def test_chromium_check_sees_console_errors_and_network_requests(tmp_path: Path) -> None:
    page = tmp_path / "bad.html"
    page.write_text(
        "<!DOCTYPE html><title>bad</title><script>console.error('boom')</script>"
        "<img src='http://127.0.0.1:9/missing.png'>"
    )

    load = load_page(page, tmp_path / "profile")

    assert any("boom" in e for e in load.errors)
    assert "http://127.0.0.1:9/missing.png" in load.requests
