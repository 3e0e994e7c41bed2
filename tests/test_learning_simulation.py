"""The in-process swarm used by the robustness benchmark."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from swarmchain.node.learning.simulation import simulate
from swarmchain.node.protocol.task import AggregationSpec, TaskSpec

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from threads, and on a busy machine the OpenMP spin-waits of
    a second thread slow every step by orders of magnitude."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_honest_swarm_learns() -> None:
    spec = TaskSpec(aggregation=AggregationSpec("mean", {}, ()))
    result = simulate(spec, attack=None, num_nodes=4, rounds=3, test_size=200, seed=1, device=CPU)
    assert len(result.accuracy) == 3
    assert result.accuracy[-1] > 0.5
    assert result.screened_byzantine == result.screened_honest == 0


def test_krum_screens_scaled_updates_from_byzantine_nodes() -> None:
    spec = TaskSpec(aggregation=AggregationSpec("krum", {"f": 1}, ()))
    result = simulate(
        spec, attack="scaling", num_nodes=5, num_byzantine=1, rounds=2, seed=0, device=CPU
    )
    assert result.screened_byzantine == 2  # the scaled update, in both rounds
    assert result.screened_honest == 2 * 3  # Krum keeps one input of five


def test_unknown_attack_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown attack 'poison'"):
        simulate(TaskSpec(), attack="poison", rounds=1, device=CPU)
