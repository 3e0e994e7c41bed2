"""Local training, evaluation, FedProx, deltas and seeds on the bundled digits."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from swarmchain.node.learning.data import DataError, Dataset, load_digits
from swarmchain.node.learning.training import (
    apply_delta,
    evaluate,
    evaluate_many,
    genesis_state,
    state_delta,
    train_local,
    training_seed,
)
from swarmchain.node.protocol.task import ModelSpec, TaskSpec, TrainSpec
from swarmchain.node.runtime.local import local_update

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from threads, and on a busy machine the OpenMP spin-waits of
    a second thread slow every step by orders of magnitude."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits() -> tuple[Dataset, Dataset]:
    data = load_digits()
    return data.subset(range(0, 600)), data.subset(range(1500, 1797))


def test_training_improves_accuracy_and_returns_a_sorted_delta(
    digits: tuple[Dataset, Dataset],
) -> None:
    train, test = digits
    spec = TaskSpec(train=TrainSpec(local_epochs=3))
    base = genesis_state(spec)
    before = evaluate(spec, base, test, device=CPU)
    update = train_local(spec, base, train, seed=1, device=CPU)
    after = evaluate(spec, apply_delta(base, update.delta), test, device=CPU)
    assert list(update.delta) == sorted(base)
    assert all(t.dtype == torch.float32 and t.device == CPU for t in update.delta.values())
    assert update.num_samples == 600
    assert after.accuracy > 0.8 > before.accuracy
    assert after.loss < before.loss
    assert after.total == 297 and after.correct == round(after.accuracy * 297)


def test_training_is_reproducible_from_its_seed(digits: tuple[Dataset, Dataset]) -> None:
    spec = TaskSpec(train=TrainSpec(local_steps=5))
    base = genesis_state(spec)
    first = train_local(spec, base, digits[0], seed=7, device=CPU)
    second = train_local(spec, base, digits[0], seed=7, device=CPU)
    other = train_local(spec, base, digits[0], seed=8, device=CPU)
    assert all(torch.equal(first.delta[k], second.delta[k]) for k in base)
    assert any(not torch.equal(first.delta[k], other.delta[k]) for k in base)


def test_fedprox_keeps_the_update_closer_to_the_base(digits: tuple[Dataset, Dataset]) -> None:
    def norm(mu: float) -> float:
        spec = TaskSpec(train=TrainSpec(local_epochs=2, fedprox_mu=mu))
        delta = train_local(spec, genesis_state(spec), digits[0], seed=3, device=CPU).delta
        return float(sum((v**2).sum() for v in delta.values()) ** 0.5)

    assert norm(1.0) < 0.9 * norm(0.0)


def test_cnn_trains(digits: tuple[Dataset, Dataset]) -> None:
    spec = TaskSpec(
        model=ModelSpec(arch="cnn", hidden=(32,), channels=(8,)), train=TrainSpec(local_steps=3)
    )
    base = genesis_state(spec)
    update = train_local(spec, base, digits[0], seed=0, device=CPU)
    assert {k: tuple(v.shape) for k, v in update.delta.items()} == {
        k: tuple(v.shape) for k, v in base.items()
    }
    assert any(bool(v.abs().sum() > 0) for v in update.delta.values())


def test_evaluation_depends_only_on_the_weights_given(digits: tuple[Dataset, Dataset]) -> None:
    train, test = digits
    spec = TaskSpec(train=TrainSpec(local_steps=20))
    base = genesis_state(spec)
    trained = apply_delta(base, train_local(spec, base, train, seed=0, device=CPU).delta)
    rng_before = torch.random.get_rng_state()
    first = evaluate(spec, base, test, device=CPU)
    other = evaluate(spec, trained, test, device=CPU)  # the reused network now holds these
    again = evaluate(spec, base, test, device=CPU)
    assert first == again != other
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    with pytest.raises(ValueError, match="tensor sets differ"):
        evaluate(spec, {k: v for k, v in base.items() if k != "layers.0.bias"}, test, device=CPU)


def test_evaluating_many_states_gives_each_state_its_own_metrics(
    digits: tuple[Dataset, Dataset],
) -> None:
    train, test = digits
    spec = TaskSpec(train=TrainSpec(local_steps=20))
    base = genesis_state(spec)
    delta = train_local(spec, base, train, seed=0, device=CPU).delta
    half = {name: tensor / 2 for name, tensor in delta.items()}
    states = [base, apply_delta(base, delta), base, apply_delta(base, half)]

    together = list(evaluate_many(spec, iter(states), test, device=CPU, batch_size=100))

    assert together == [evaluate(spec, s, test, device=CPU, batch_size=100) for s in states]
    assert together[0] == together[2] != together[1] != together[3]
    with pytest.raises(ValueError, match="tensor sets differ"):
        list(evaluate_many(spec, [base, {"layers.0.bias": base["layers.0.bias"]}], test))


def test_training_rejects_data_of_the_wrong_shape() -> None:
    spec = TaskSpec()
    wrong = Dataset(torch.zeros(4, 1, 28, 28), torch.zeros(4, dtype=torch.int64))
    with pytest.raises(DataError, match="the task needs"):
        train_local(spec, genesis_state(spec), wrong, seed=0, device=CPU)
    empty = Dataset(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.int64))
    with pytest.raises(DataError, match="empty"):
        train_local(spec, genesis_state(spec), empty, seed=0, device=CPU)


def test_genesis_and_seeds_are_deterministic() -> None:
    spec = TaskSpec()
    a, b = genesis_state(spec), genesis_state(spec)
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = genesis_state(TaskSpec(train=TrainSpec(seed=1)))
    assert not torch.equal(a["layers.0.weight"], other["layers.0.weight"])
    per_round = TrainSpec(seed=3)
    assert training_seed(per_round, 1, "0xabc") == training_seed(per_round, 1, "0xabc")
    assert training_seed(per_round, 1, "0xabc") != training_seed(per_round, 2, "0xabc")
    assert training_seed(TrainSpec(seed=3, seed_policy="fixed"), 9, "0xabc") == 3


def test_delta_and_apply_are_inverse() -> None:
    base = {"w": torch.tensor([1.0, 2.0]), "b": torch.tensor([0.5])}
    local = {"w": torch.tensor([1.5, 1.0]), "b": torch.tensor([0.25])}
    delta = state_delta(local, base)
    assert list(delta) == ["b", "w"]
    assert delta["w"].tolist() == [0.5, -1.0]
    assert all(torch.equal(apply_delta(base, delta)[k], local[k]) for k in base)
    with pytest.raises(ValueError, match="tensor sets differ"):
        state_delta({"w": torch.zeros(2)}, base)


def test_a_node_trains_on_cuda_with_and_without_amp_and_publishes_float32_cpu_tensors() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine")
    spec = TaskSpec()
    data = load_digits().subset(range(64))
    update = local_update(
        spec,
        genesis_state(spec),
        data,
        round_id=2,
        node="0x" + "11" * 20,
        device=torch.device("cuda"),
    )
    assert set(update.delta) == set(genesis_state(spec))
    assert all(t.device.type == "cpu" and t.dtype == torch.float32 for t in update.delta.values())
