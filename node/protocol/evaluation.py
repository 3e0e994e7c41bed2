"""What the protocol's decisions read about a model: exact metrics on the reference set.

`exact_plan` traces a torch network (``torch.fx``) into the layers `exact_eval` evaluates exactly;
a layer it has no rule for is a `ConfigError` naming it, raised when the task is published
(`task_plan`), never a silent float path. `exact_metrics` evaluates states of the task's network
and `quantised_utility` turns the result into the valuation's integer: both are identical on
every machine.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterable, Mapping
from fractions import Fraction
from typing import Any

import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from swarmchain.node.errors import ConfigError
from swarmchain.node.learning.data import Dataset, check_dataset
from swarmchain.node.learning.models import build_model
from swarmchain.node.protocol.exact_eval import (
    AdaptiveAvgPool2d,
    Add,
    AvgPool2d,
    BatchNorm,
    Conv2d,
    ExactBoundError,
    ExactMetrics,
    Flatten,
    Linear,
    MaxPool2d,
    Op,
    Plan,
    Relu,
    Step,
    exact_evaluate_stacked,
)
from swarmchain.node.protocol.task import DataSpec, ModelSpec, TaskSpec, ValuationSpec

_PASS = object()  # a layer that is the identity in eval mode (dropout, identity)


@functools.cache
def task_plan(model: ModelSpec, data: DataSpec) -> Plan:
    """The exact plan of a task's network (traced once per model and data spec).

    Raises
    ------
    ConfigError
        The network has a layer with no exact evaluation rule, or exceeds a bound of the proof.
    """
    with torch.device("meta"):
        network = build_model(model, data)
    return exact_plan(network, data.input_shape)


def check_exact(spec: TaskSpec) -> None:
    """Raise `ConfigError` unless every layer of the task's network has an exact rule."""
    task_plan(spec.model, spec.data)


def exact_metrics(
    spec: TaskSpec,
    states: Iterable[Mapping[str, torch.Tensor]] | Mapping[str, npt.ArrayLike],
    data: Dataset,
    *,
    device: torch.device | None = None,
) -> list[ExactMetrics]:
    """Exact metrics of the task's network with each state on ``data``.

    Parameters
    ----------
    spec
        The task (its network and data shape).
    states
        Weights by name, one state after another; or every tensor stacked over the states along
        a new first axis.
    data
        Examples to evaluate on (must fit ``spec.data``).
    device
        Where the integer arithmetic runs (the CPU when omitted, or CUDA): the same bytes.

    Returns
    -------
    list[ExactMetrics]
        One per state, in order.

    Raises
    ------
    ExactBoundError
        A state or the data exceed a bound of the proof (non-finite weights, huge inputs).
    """
    check_dataset(data, spec.data)
    plan = task_plan(spec.model, spec.data)
    if isinstance(states, Mapping):
        stacked = states
    else:
        listed = list(states)
        if not listed:
            return []
        for state in listed:
            unknown = set(state) - {name for name, _ in plan.shapes}
            if unknown:
                raise ExactBoundError(f"the state holds {sorted(unknown)}, which the task lacks")
        stacked = {
            name: torch.stack([s[name].detach().cpu().float() for s in listed]).numpy()
            for name, _ in plan.shapes
            if all(name in s for s in listed)
        }
    return exact_evaluate_stacked(
        plan, stacked, data.x.numpy(), data.y.numpy(), device=str(device or "cpu")
    )


def quantised_utility(metrics: ExactMetrics, valuation: ValuationSpec) -> int:
    """The task's utility as an integer number of quanta: exact rational arithmetic throughout.

    Parameters
    ----------
    metrics
        An exact evaluation on the reference set.
    valuation
        The task's valuation section: ``accuracy`` or ``neg_loss``, and the quantum (read as the
        decimal it is written as, e.g. ``1e-4`` is exactly 1/10,000).

    Returns
    -------
    int
        ``round(accuracy / quantum)`` or ``round(-loss / quantum)``, rounding half to even.
    """
    total = max(1, metrics.total)
    value = (
        Fraction(metrics.correct, total)
        if valuation.utility == "accuracy"
        else -Fraction(metrics.loss_sum, total << 24)
    )
    return round(value / Fraction(repr(valuation.quantum)))


def exact_plan(network: nn.Module, input_shape: tuple[int, ...]) -> Plan:
    """Trace a network into exact layers.

    Parameters
    ----------
    network
        A torch module taking one ``(batch, *input_shape)`` tensor and returning logits; its
        parameters may live on any device, the meta device included.
    input_shape
        One example's shape.

    Returns
    -------
    Plan
        The layers in execution order, the tensors they read and the most memory one example
        needs.

    Raises
    ------
    ConfigError
        A layer or operation with no exact evaluation rule (named), a network torch.fx cannot
        trace, or one beyond a bound of the proof.
    """
    network = network.eval()
    try:
        graph = fx.symbolic_trace(network)
        first = next(iter(network.parameters()), None)
        device = torch.device("cpu") if first is None else first.device
        ShapeProp(graph).propagate(torch.empty((1, *input_shape), device=device))
    except (TypeError, RuntimeError, ValueError) as err:
        raise ConfigError(f"cannot trace the network for exact evaluation: {err}") from err
    modules = dict(graph.named_modules())
    tensors = network.state_dict()
    index: dict[fx.Node, int] = {}
    steps: list[Step] = []
    cells = 1
    for node in graph.graph.nodes:
        if node.op == "placeholder":
            if index:
                raise ConfigError("exact evaluation takes networks with one input")
            index[node] = 0
        elif node.op == "output":
            if node.args[0] not in index or index[node.args[0]] != len(steps):
                raise ConfigError("the network must return its last layer's output (the logits)")
        else:
            op, inputs = _rule(node, modules)
            if any(i not in index for i in inputs):
                raise ConfigError(f"{_describe(node, modules)} reads a value that is no tensor")
            if op is _PASS:
                index[node] = index[inputs[0]]
                continue
            assert isinstance(op, Op)
            steps.append(Step(op, tuple(index[i] for i in inputs)))
            index[node] = len(steps)
            cells = max(cells, _cells(node, op))
    names = sorted({n for s in steps for n in _tensors(s.op)})
    try:
        return Plan(tuple(steps), tuple((n, tuple(tensors[n].shape)) for n in names), cells)
    except ExactBoundError as err:
        raise ConfigError(str(err)) from None


def _rule(node: fx.Node, modules: Mapping[str, nn.Module]) -> tuple[object, list[fx.Node]]:
    """The exact layer of one traced operation, and the values it reads."""
    nodes = [a for a in node.args if isinstance(a, fx.Node)]
    if node.op == "call_module":
        module = modules[str(node.target)]
        rule = _MODULES.get(type(module))
        op = None if rule is None else rule(str(node.target), module)
    elif node.op == "call_function":
        rule_f = _FUNCTIONS.get(node.target)
        op = None if rule_f is None else rule_f(node)
    elif node.op == "call_method":
        rule_f = _METHODS.get(str(node.target))
        op = None if rule_f is None else rule_f(node)
    else:
        op = None
    if op is None:
        raise ConfigError(
            f"no exact evaluation rule for {_describe(node, modules)}",
            hint="exact rules: linear, conv2d, batch norm (eval), relu, max, avg and adaptive-avg "
            "pooling, flatten, residual add, dropout and identity",
        )
    return op, nodes


def _describe(node: fx.Node, modules: Mapping[str, nn.Module]) -> str:
    """A layer as a user recognises it: ``layer 2: LayerNorm((8,), ...)`` or ``torch.tanh``."""
    if node.op == "call_module":
        return f"layer {node.target}: {modules[str(node.target)]!r}"
    if node.op == "call_function":
        target: Any = node.target
        return f"function {getattr(target, '__module__', '')}.{getattr(target, '__name__', target)}"
    if node.op == "call_method":
        return f"method .{node.target}()"
    return f"{node.op} {node.target}"


def _pair(v: object) -> tuple[int, int] | None:
    """An int or a pair of ints as a pair, else None."""
    if isinstance(v, int) and not isinstance(v, bool):
        return (v, v)
    if isinstance(v, tuple | list) and len(v) == 2 and all(isinstance(i, int) for i in v):
        return (int(v[0]), int(v[1]))
    return None


def _arg(node: fx.Node, position: int, name: str, default: object = None) -> object:
    """An operation's argument, given by position or by name."""
    if len(node.args) > position:
        return node.args[position]
    return node.kwargs.get(name, default)


def _linear(target: str, m: nn.Module) -> Op | None:
    assert isinstance(m, nn.Linear)
    return Linear(f"{target}.weight", None if m.bias is None else f"{target}.bias")


def _conv(target: str, m: nn.Module) -> Op | None:
    assert isinstance(m, nn.Conv2d)
    kernel = _pair(m.kernel_size)
    padding = (0, 0) if m.padding == "valid" else _pair(m.padding)
    if m.padding == "same" and m.stride == (1, 1) and kernel and all(k % 2 for k in kernel):
        padding = (kernel[0] // 2, kernel[1] // 2)
    if (
        m.groups != 1
        or m.dilation != (1, 1)
        or m.padding_mode != "zeros"
        or kernel is None
        or padding is None
    ):
        return None
    stride = _pair(m.stride)
    assert stride is not None
    bias = None if m.bias is None else f"{target}.bias"
    return Conv2d(f"{target}.weight", bias, kernel, stride, padding)


def _batch_norm(target: str, m: nn.Module) -> Op | None:
    assert isinstance(m, nn.modules.batchnorm._BatchNorm)
    if not m.track_running_stats:
        return None
    affine = m.affine
    return BatchNorm(
        f"{target}.weight" if affine else None,
        f"{target}.bias" if affine else None,
        f"{target}.running_mean",
        f"{target}.running_var",
        float(m.eps),
    )


def _max_pool(
    kernel: object, stride: object, padding: object, dilation: object, ceil: object
) -> Op | None:
    k, s, p = _pair(kernel), _pair(kernel if stride is None else stride), _pair(padding)
    if k is None or s is None or p is None or _pair(dilation) != (1, 1) or ceil:
        return None
    return MaxPool2d(k, s, p)


def _avg_pool(
    kernel: object, stride: object, padding: object, ceil: object, divisor: object
) -> Op | None:
    k, s = _pair(kernel), _pair(kernel if stride is None else stride)
    if k is None or s is None or _pair(padding) != (0, 0) or ceil or divisor is not None:
        return None
    return AvgPool2d(k, s)


def _adaptive(output: object) -> Op | None:
    size = _pair(output)
    return None if size is None else AdaptiveAvgPool2d(size)


def _flatten(start: object, end: object) -> Op | None:
    return Flatten() if start == 1 and end == -1 else None


def _add(node: fx.Node) -> Op | None:
    values = [a for a in node.args if isinstance(a, fx.Node)]
    return Add() if len(node.args) == 2 and len(values) == 2 and not node.kwargs else None


_MODULES: dict[type[nn.Module], Callable[[str, nn.Module], object]] = {
    nn.Linear: _linear,
    nn.Conv2d: _conv,
    nn.BatchNorm1d: _batch_norm,
    nn.BatchNorm2d: _batch_norm,
    nn.ReLU: lambda t, m: Relu(),
    nn.MaxPool2d: lambda t, m: _max_pool(
        m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode
    ),
    nn.AvgPool2d: lambda t, m: _avg_pool(
        m.kernel_size, m.stride, m.padding, m.ceil_mode, m.divisor_override
    ),
    nn.AdaptiveAvgPool2d: lambda t, m: _adaptive(m.output_size),
    nn.Flatten: lambda t, m: _flatten(m.start_dim, m.end_dim),
    nn.Dropout: lambda t, m: _PASS,
    nn.Identity: lambda t, m: _PASS,
}

_FUNCTIONS: dict[object, Callable[[fx.Node], object]] = {
    F.relu: lambda n: Relu(),
    torch.relu: lambda n: Relu(),
    F.max_pool2d: lambda n: _max_pool(
        _arg(n, 1, "kernel_size"),
        _arg(n, 2, "stride"),
        _arg(n, 3, "padding", 0),
        _arg(n, 4, "dilation", 1),
        _arg(n, 5, "ceil_mode", False) or _arg(n, 6, "return_indices", False),
    ),
    F.avg_pool2d: lambda n: _avg_pool(
        _arg(n, 1, "kernel_size"),
        _arg(n, 2, "stride"),
        _arg(n, 3, "padding", 0),
        _arg(n, 4, "ceil_mode", False),
        _arg(n, 6, "divisor_override"),
    ),
    F.adaptive_avg_pool2d: lambda n: _adaptive(_arg(n, 1, "output_size")),
    torch.flatten: lambda n: _flatten(_arg(n, 1, "start_dim", 0), _arg(n, 2, "end_dim", -1)),
    operator.add: _add,
    operator.iadd: _add,
    torch.add: _add,
}

_METHODS: dict[str, Callable[[fx.Node], object]] = {
    "relu": lambda n: Relu(),
    "flatten": lambda n: _flatten(_arg(n, 1, "start_dim", 0), _arg(n, 2, "end_dim", -1)),
    "add": _add,
}


def _tensors(op: Op) -> list[str]:
    """The state tensors a layer reads."""
    if isinstance(op, Linear | Conv2d):
        return [op.weight] + ([] if op.bias is None else [op.bias])
    if isinstance(op, BatchNorm):
        return [n for n in (op.weight, op.bias, op.mean, op.var) if n is not None]
    return []


def _cells(node: fx.Node, op: Op) -> int:
    """Float64 cells one example needs in this step: its output, plus im2col's columns."""
    meta = node.meta["tensor_meta"]
    out = int(meta.shape.numel())
    if isinstance(op, Conv2d):
        (_, _, ho, wo) = meta.shape
        source = node.args[0]
        assert isinstance(source, fx.Node)
        channels = source.meta["tensor_meta"].shape[1]
        out += ho * wo * channels * op.kernel[0] * op.kernel[1]
    return out
