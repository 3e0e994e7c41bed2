"""The rule registry is the one place that knows rules by name; everyone else asks it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from swarmchain.node.aggregation.registry import DEFAULT_RULE, RULES

ROOT = Path(__file__).resolve().parent.parent
# Benchmarks choose which rules to measure, and against which reference implementations, by
# name: that is their input, as a task spec's is, not a branch on a rule's abilities.
BENCHMARKS_THAT_PICK_RULES = {"scripts/bench_aggregation.py", "scripts/bench_robustness.py"}


def _sources_outside_the_aggregation_room() -> list[Path]:
    files = [
        p
        for folder in ("node", "incentives", "storage", "scripts")
        for p in (ROOT / folder).rglob("*.py")
    ]
    return sorted(
        p
        for p in files
        if not p.is_relative_to(ROOT / "node" / "aggregation")
        and p.relative_to(ROOT).as_posix() not in BENCHMARKS_THAT_PICK_RULES
    )


def test_no_module_outside_the_aggregation_room_spells_a_rule_name() -> None:
    sources = _sources_outside_the_aggregation_room()
    assert len(sources) > 50  # the walk found the packages

    spelled = [
        f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}"
        for path in sources
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in RULES
    ]

    assert spelled == []


@pytest.mark.parametrize(
    ("name", "reads_gram", "batched", "streaming"),
    [
        ("mean", False, False, False),
        ("fedavg", False, False, True),
        ("median", False, False, None),
        ("krum", True, False, None),
        ("multi_krum", True, False, None),
        ("bulyan", True, False, None),
        ("centered_clipping", False, True, None),
    ],
)
def test_each_rule_declares_what_it_can_do(
    name: str, reads_gram: bool, batched: bool, streaming: bool | None
) -> None:
    rule = RULES[name]

    assert rule.reads_gram is reads_gram
    assert (rule.coalition_batch is not None) is batched
    assert rule.streaming_mean is streaming


def test_the_default_rule_is_registered() -> None:
    assert DEFAULT_RULE in RULES
