"""Local training and evaluation.

A round reads top to bottom: load the round's base weights into the task's model, run SGD with
momentum (plus the FedProx proximal term when ``fedprox_mu > 0``) over the node's own data, and
publish the delta ``local - base`` as named float32 CPU tensors. Training runs on CUDA when it is
available and on the CPU otherwise. `evaluate` is float32 too, for progress and plots only:
whatever an attestation reads is bit-identical across machines, aggregation by fixed point
(`swarmchain.node.aggregation.fixed_point`) and evaluation by integer arithmetic
(`swarmchain.node.protocol.evaluation`).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from swarmchain.node.aggregation.limits import MAX_SAMPLES
from swarmchain.node.aggregation.randomness import derive_seed
from swarmchain.node.learning.data import DataError, Dataset, check_dataset
from swarmchain.node.learning.models import build_model
from swarmchain.node.protocol.task import TaskSpec, TrainSpec

State = dict[str, torch.Tensor]


@dataclass(frozen=True)
class LocalUpdate:
    """What one node's local training produced."""

    delta: State  # local weights - base weights, float32 CPU tensors, sorted names
    num_samples: int  # examples the node trained on
    train_loss: float  # mean training loss of the last pass


@dataclass(frozen=True)
class Metrics:
    """Evaluation of a model on a dataset."""

    loss: float  # mean cross-entropy
    accuracy: float  # correct / total
    correct: int  # examples classified correctly
    total: int  # examples evaluated


def default_device() -> torch.device:
    """CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def training_seed(train: TrainSpec, round_index: int, node_id: str) -> int:
    """The seed a node uses for its local shuffling in a round.

    Parameters
    ----------
    train
        The task's training section (its ``seed`` and ``seed_policy``).
    round_index
        The round number.
    node_id
        The node's identity (e.g. its chain address).

    Returns
    -------
    int
        ``train.seed`` under the ``fixed`` policy, else a SHA-256 derivation of
        (seed, round, node).
    """
    if train.seed_policy == "fixed":
        return train.seed
    return derive_seed("train", train.seed, round_index, node_id)


def genesis_state(spec: TaskSpec) -> State:
    """The round-0 weights: the task's model initialised from ``spec.train.seed`` on the CPU."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.train.seed)
        model = build_model(spec.model, spec.data)
    return _cpu_state(model.state_dict())


def state_delta(local: Mapping[str, torch.Tensor], base: Mapping[str, torch.Tensor]) -> State:
    """``local - base`` per tensor, float32 CPU, sorted names."""
    _same_names(local, base)
    return {
        k: (local[k].detach().cpu().float() - base[k].detach().cpu().float()) for k in sorted(base)
    }


def apply_delta(base: Mapping[str, torch.Tensor], delta: Mapping[str, torch.Tensor]) -> State:
    """``base + delta`` per tensor, float32 CPU, sorted names (elementwise, so deterministic)."""
    _same_names(base, delta)
    return {
        k: (base[k].detach().cpu().float() + delta[k].detach().cpu().float()) for k in sorted(base)
    }


def train_local(
    spec: TaskSpec,
    base: Mapping[str, torch.Tensor],
    data: Dataset,
    *,
    seed: int,
    device: torch.device | None = None,
    amp: bool = False,
) -> LocalUpdate:
    """Train from ``base`` on ``data`` and return the delta.

    Parameters
    ----------
    spec
        The task (model, data shape and training hyper-parameters).
    base
        The round's starting weights.
    data
        The node's own examples (must fit ``spec.data``).
    seed
        Seed of the batch shuffling (see `training_seed`).
    device
        Where to train; `default_device` when omitted.
    amp
        Run the forward pass and loss in bfloat16 autocast (CUDA only; weights, gradients and
        the published delta stay float32).

    Returns
    -------
    LocalUpdate
        The delta, the number of examples and the last pass's mean loss.

    Raises
    ------
    DataError
        The data does not fit the task, or is empty.
    """
    check_dataset(data, spec.data)
    if len(data) == 0:
        raise DataError("cannot train on an empty dataset")
    dev = default_device() if device is None else device
    if amp and dev.type != "cuda":
        raise ValueError(f"mixed precision trains on a CUDA GPU, not on {dev}")
    cfg = spec.train
    model = build_model(spec.model, spec.data).to(dev)
    model.load_state_dict({k: v.to(dev) for k, v in base.items()})
    anchor = [p.detach().clone() for p in model.parameters()]  # w_round, for FedProx
    opt = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    x, y = data.x.to(dev), data.y.to(dev)
    n = len(data)
    gen = torch.Generator().manual_seed(seed)
    steps_per_pass = math.ceil(n / cfg.batch_size)
    total_steps = cfg.local_steps if cfg.local_steps > 0 else cfg.local_epochs * steps_per_pass
    model.train()
    loss_sum, loss_count = 0.0, 0
    order = torch.randperm(n, generator=gen)
    for step in range(total_steps):
        k = step % steps_per_pass
        if k == 0 and step > 0:
            order = torch.randperm(n, generator=gen)
            loss_sum, loss_count = 0.0, 0
        idx = order[k * cfg.batch_size : (k + 1) * cfg.batch_size].to(dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x[idx])  # (batch, num_classes)
            loss = F.cross_entropy(logits, y[idx])
        objective = loss
        if cfg.fedprox_mu > 0:
            prox = sum(
                ((p - a) ** 2).sum() for p, a in zip(model.parameters(), anchor, strict=True)
            )
            objective = loss + 0.5 * cfg.fedprox_mu * prox
        opt.zero_grad(set_to_none=True)
        objective.backward()  # type: ignore[no-untyped-call]
        opt.step()
        loss_sum += float(loss.detach()) * len(idx)
        loss_count += len(idx)
    local = _cpu_state(model.state_dict())
    # Peers reject a larger claim (see MAX_SAMPLES); the aggregation weight saturates there.
    claimed = min(n, MAX_SAMPLES)
    return LocalUpdate(state_delta(local, base), claimed, loss_sum / max(1, loss_count))


def evaluate(
    spec: TaskSpec,
    state: Mapping[str, torch.Tensor],
    data: Dataset,
    *,
    device: torch.device | None = None,
    batch_size: int = 1024,
) -> Metrics:
    """Loss and accuracy of the weights ``state`` on ``data``, in float32 (for progress, not
    for decisions: those read `swarmchain.node.protocol.evaluation.exact_metrics`).

    Parameters
    ----------
    spec
        The task.
    state
        Model weights (e.g. a checkpoint, or base + an aggregated delta).
    data
        Examples to evaluate on (must fit ``spec.data``).
    device
        Where to evaluate; `default_device` when omitted.
    batch_size
        Examples per forward pass.

    Returns
    -------
    Metrics
        Mean cross-entropy, accuracy, and the counts behind it.
    """
    return evaluate_many(spec, [state], data, device=device, batch_size=batch_size)[0]


def evaluate_many(
    spec: TaskSpec,
    states: Iterable[Mapping[str, torch.Tensor]],
    data: Dataset,
    *,
    device: torch.device | None = None,
    batch_size: int = 1024,
) -> list[Metrics]:
    """`evaluate` of many weights on the same data, with one network and one copy of the data.

    Each result is bit for bit `evaluate`'s (the same operations on the same thread count); the
    data is checked and batched once, and each state's weights are written into one network.

    Parameters
    ----------
    spec
        The task.
    states
        Model weights to evaluate, one after another (each is read before the next is drawn).
    data
        Examples to evaluate on (must fit ``spec.data``).
    device
        Where to evaluate; `default_device` when omitted.
    batch_size
        Examples per forward pass.

    Returns
    -------
    list[Metrics]
        Mean cross-entropy, accuracy, and the counts behind it, of each state in turn.
    """
    check_dataset(data, spec.data)
    dev = default_device() if device is None else device
    model = _evaluation_model(spec, dev)
    params = dict(model.named_parameters())
    shapes = [(name, param, param.shape) for name, param in params.items()]
    batches = [
        (data.x[start : start + batch_size].to(dev), data.y[start : start + batch_size].to(dev))
        for start in range(0, len(data), batch_size)
    ]
    total = len(data)
    out: list[Metrics] = []
    with torch.no_grad():
        for state in states:
            if state.keys() != params.keys() or any(
                state[name].shape != shape for name, _, shape in shapes
            ):
                _same_names(params, state)  # raises, naming both sets
            for name, param, _ in shapes:
                param.copy_(state[name])  # what load_state_dict does, without its overhead
            loss_sum, correct = 0.0, 0
            for x, y in batches:
                logits = model(x)
                loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
                correct += int((logits.argmax(dim=1) == y).sum())
            out.append(Metrics(loss_sum / max(1, total), correct / max(1, total), correct, total))
    return out


_evaluation_models = threading.local()  # per thread: (model spec, data spec, device) -> network


def _evaluation_model(spec: TaskSpec, device: torch.device) -> nn.Module:
    """This thread's network for evaluating `spec` on `device`, built once (weights unset).

    Valuation evaluates hundreds of coalitions a round; building (and randomly initialising) a
    fresh network for each cost more than the forward pass itself.
    """
    cache: dict[tuple[object, ...], nn.Module] = _evaluation_models.__dict__.setdefault("cache", {})
    key = (spec.model, spec.data, device)
    model = cache.get(key)
    if model is None:
        with torch.device("meta"):
            model = build_model(spec.model, spec.data)
        model = model.to_empty(device=device).eval().requires_grad_(False)
        cache[key] = model
    return model


def _cpu_state(state: Mapping[str, torch.Tensor]) -> State:
    """Detached float32 CPU copies, sorted by name."""
    return {k: state[k].detach().cpu().float().clone() for k in sorted(state)}


def _same_names(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> None:
    """Raise ValueError unless both hold the same tensor names and shapes."""
    if set(a) != set(b) or any(a[k].shape != b[k].shape for k in a):
        raise ValueError(
            f"tensor sets differ: {sorted((k, tuple(v.shape)) for k, v in a.items())} vs "
            f"{sorted((k, tuple(v.shape)) for k, v in b.items())}"
        )
