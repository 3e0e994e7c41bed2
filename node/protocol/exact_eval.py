"""Exact, device-independent evaluation: what every attestation's utilities are (issue 19).

A float32 forward pass rounds differently on every CPU kernel family, BLAS build, thread count
and GPU, so a utility computed from it can split honest peers. This module defines evaluation by
integer arithmetic instead, in the style of integer-only inference (I-BERT, Kim et al. 2021) and
bitwise-reproducible operators (Gensyn's RepOps): the result is the mathematics below, and any
machine that adds integers below ``2**53`` exactly (every IEEE-754 float64 BLAS, in any order and
with or without FMA) reproduces it bit for bit. `exact_plan` turns a network into the `Plan` of
layers this module runs; a layer with no rule here is refused when the task is published.

Every tensor is an integer array ``q`` and, per example, a grid exponent ``f`` (it stands for
``q * 2**-f``; a per-example block exponent, so an example's result never depends on the other
examples or on how they are batched). The rules:

* Inputs are quantised to the grid ``2**-INPUT_FRAC_BITS`` (round half to even).
* Before a layer multiplies, its input is *requantised*: shifted right (round half to even) by the
  fewest bits that bring the example's largest entry below ``2**ACT_BITS`` (up to the rounding:
  at most ``2**ACT_BITS``) and its grid to at most ``2**-ACT_FRAC_MAX``.
* A linear or convolution layer's weight and bias share one power-of-two grid chosen from their
  largest magnitude ``m < 2**e``: ``q_w = round_half_even(w * 2**(WEIGHT_BITS - e))``, so
  ``|q_w| <= 2**16``. The layer is an integer matrix product (convolutions via im2col, zero
  padding) plus the bias rounded half to even onto the product's grid ``2**-(f + f_w)``.
* Batch norm in eval mode is the per-channel affine map ``x * s + t`` with ``s = gamma /
  sqrt(var + eps)`` and ``t = beta - mean * s`` (float64, each operation correctly rounded, so
  the same on every IEEE machine), then quantised and applied like a layer with a diagonal weight.
* ReLU, max-pooling (its padding never wins) and flattening act on the integers. Average
  pooling sums each window and divides by its size, rounding half to even. A residual add
  requantises both operands, moves the finer one onto the coarser grid (round half to even), and
  adds.
* Predictions are the argmax of the exact logits, ties to the lowest class index.
* The loss is cross-entropy from a fixed-point log-sum-exp (`_cross_entropy_fixed`): logits on
  the grid ``2**-LOGIT_FRAC_BITS``, saturated at ``±2**(MAX_LOGIT_BITS - LOGIT_FRAC_BITS)``;
  ``exp`` from two tables of ``e**-x`` and ``ln`` from a table plus a cubic, all in int64 with
  stated rounding. It is the loss training minimises, so neg-loss valuation keeps its meaning;
  rounding the logits to ``2**-16`` dominates its error against the real cross-entropy of the
  exact logits (the tests check ``< 2**-16`` per example, relative above a loss of 1). The
  tables are built with `decimal`, whose ``exp`` and ``ln`` are correctly rounded, so they too
  are identical on every machine.

Overflow proof (checked where each value enters; `ExactBoundError` otherwise):

* A requantised activation has ``|q_a| <= 2**ACT_BITS = 2**16`` and ``|q_w| <= 2**WEIGHT_BITS =
  2**16``, so every product is at most ``2**32`` and, with fan-in ``K <= MAX_FAN_IN = 2**20``,
  every partial sum of a dot product is an integer of magnitude at most ``2**52``: exact in
  float64 in any order, with FMA.
* The bias on the product's grid is at most ``2**WEIGHT_BITS * 2**ACT_FRAC_MAX = 2**40`` (the
  weight grid makes ``|b| * 2**f_w <= 2**16``; requantised grids are at most ``2**-24``), so a
  pre-activation is an integer below ``2**52 + 2**40 < 2**53``; ReLU and max-pooling keep it so.
* A pooling window sums at most ``2**20`` requantised entries (``<= 2**36``); a residual add sums
  two entries of at most ``2**16``.
* Logits on the ``2**-16`` grid saturate at ``2**MAX_LOGIT_BITS = 2**46`` units, so a per-example
  loss in ``2**-24`` units is below ``2**55 + 2**30`` (int64), and a state's losses are summed in
  two int64 halves (``2**31`` examples at most). Table products are at most ``2**60``.
* Activations and products are held in float64: integers below ``2**53`` are exact there, and
  so are ReLU, max-pooling, sums below ``2**53`` and scaling by powers of two: a right shift
  is at most ``16 - e + 53`` bits with ``e >= -148`` (float32's smallest exponent), so a nonzero
  integer stays a normal float64 and ``rint`` rounds it exactly; a scaled bias below float64's
  normal range is below 1/2 and rounds to 0 under any underflow mode.
"""

from __future__ import annotations

import decimal
import functools
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

INPUT_FRAC_BITS: Final = 8  # inputs on the grid 2**-8 (the bundled digits, k/16, are exact)
WEIGHT_BITS: Final = 16  # |q_w| <= 2**16 for every weight and bias of a layer
ACT_BITS: Final = 16  # |q_a| <= 2**16 for every activation entering a layer
ACT_FRAC_MAX: Final = 24  # requantised grids are never finer than 2**-24
MAX_FAN_IN: Final = 1 << 20  # 2**20 * 2**16 * 2**16 = 2**52: partial sums exact in float64
LOGIT_FRAC_BITS: Final = 16  # logits enter the loss on the grid 2**-16
MAX_LOGIT_BITS: Final = 46  # logits saturate at 2**46 units of 2**-16
LOSS_FRAC_BITS: Final = 24  # per-example losses in units of 2**-24
_EXP_BITS: Final = 30  # e**-x tables hold round(e**-x * 2**30)
_EXP_CUTOFF: Final = 32  # e**-x counts as 0 from x = 32 on (it is below 2**-46)
_LN_INDEX_BITS: Final = 7  # ln(x), x in [1, 2): table at 1 + i/128, cubic for the rest
_CELLS_AT_ONCE: Final = 1 << 18  # float64 cells of activations one chunk of work may hold

Backend = Literal["torch", "numpy", "int64"]
IntArray = npt.NDArray[np.int64]
F64Array = npt.NDArray[np.float64]  # in this module: integers below 2**53, held exactly
Matmul = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class ExactBoundError(ValueError):
    """A state or dataset exceeds a bound that exact evaluation needs."""


@dataclass(frozen=True)
class ExactMetrics:
    """An exact evaluation: identical bytes on every machine."""

    correct: int  # examples whose argmax (ties to the lowest index) is the label
    total: int  # examples evaluated
    loss_sum: int  # sum of per-example cross-entropies, in units of 2**-LOSS_FRAC_BITS

    @property
    def accuracy(self) -> float:
        """``correct / total`` (0 for no examples)."""
        return self.correct / max(1, self.total)

    @property
    def loss(self) -> float:
        """Mean cross-entropy, ``loss_sum / (total * 2**LOSS_FRAC_BITS)`` correctly rounded."""
        return self.loss_sum / (max(1, self.total) << LOSS_FRAC_BITS)


# ---- the layers a plan is made of ----


@dataclass(frozen=True)
class Linear:
    """``x @ weight.T + bias`` over the last axis; ``weight`` is ``(out, in)``."""

    weight: str
    bias: str | None


@dataclass(frozen=True)
class Conv2d:
    """2-d convolution: one group, no dilation, zero padding; ``weight`` is ``(out, C, kh, kw)``."""

    weight: str
    bias: str | None
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass(frozen=True)
class BatchNorm:
    """Batch norm in eval mode over axis 1 (channels), from its running statistics."""

    weight: str | None
    bias: str | None
    mean: str
    var: str
    eps: float


@dataclass(frozen=True)
class Relu:
    """``max(x, 0)``."""


@dataclass(frozen=True)
class MaxPool2d:
    """Max over ``kernel`` windows every ``stride``, the map padded by ``padding`` entries that
    never win (minus infinity); partial windows are dropped."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class AvgPool2d:
    """Mean over ``kernel`` windows every ``stride`` (no padding), rounded half to even."""

    kernel: tuple[int, int]
    stride: tuple[int, int]


@dataclass(frozen=True)
class AdaptiveAvgPool2d:
    """torch's adaptive average pooling to ``output`` bins, each mean rounded half to even."""

    output: tuple[int, int]


@dataclass(frozen=True)
class Flatten:
    """Every axis after the batch axis into one."""


@dataclass(frozen=True)
class Add:
    """The sum of two values (a residual connection)."""


Op = Linear | Conv2d | BatchNorm | Relu | MaxPool2d | AvgPool2d | AdaptiveAvgPool2d | Flatten | Add


@dataclass(frozen=True)
class Step:
    """One layer and the values it reads (0 is the input, ``i + 1`` is step ``i``'s output)."""

    op: Op
    inputs: tuple[int, ...]


@dataclass(frozen=True)
class Plan:
    """A network as exact layers: its last step's output is the logits ``(batch, classes)``."""

    steps: tuple[Step, ...]
    shapes: tuple[tuple[str, tuple[int, ...]], ...]  # every tensor the steps read, and its shape
    cells: int  # most float64 cells one example needs at once in any step (im2col included)

    def __post_init__(self) -> None:
        shapes = dict(self.shapes)
        for step in self.steps:
            if isinstance(step.op, Linear | Conv2d):
                shape = shapes[step.op.weight]
                fan_in = int(np.prod(shape[1:]))
                if fan_in > MAX_FAN_IN:
                    raise ExactBoundError(
                        f"{step.op.weight} has fan-in {fan_in} > {MAX_FAN_IN}: its partial sums "
                        "could exceed 2**53"
                    )


def exact_evaluate(
    plan: Plan,
    state: Mapping[str, npt.ArrayLike],
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    backend: Backend = "torch",
    device: str = "cpu",
) -> ExactMetrics:
    """Evaluate one state exactly: correct predictions and summed cross-entropy.

    Parameters
    ----------
    plan
        The network's layers (`swarmchain.node.protocol.exact_plan.exact_plan`).
    state
        Float32 tensors by name (torch tensors on the CPU or arrays); names the plan does not
        read are ignored.
    x
        ``(N, ...)`` examples with ``|x| <= 2**(ACT_BITS - INPUT_FRAC_BITS)``.
    y
        ``(N,)`` integer labels.
    backend
        Who multiplies the integer matrices: NumPy in float64 or int64, or torch in float64 on
        ``device``. Every backend returns the same integers (see the module's proof).
    device
        Torch device for ``backend="torch"`` (``"cpu"`` or ``"cuda"``).

    Returns
    -------
    ExactMetrics
        Counts and the loss in fixed point, identical on every machine and backend.

    Raises
    ------
    ExactBoundError
        The state or the data exceed a bound of the proof, or do not fit the plan.
    """
    stacked = {name: np.asarray(state[name])[None] for name, _ in _read(plan, state)}
    return exact_evaluate_stacked(plan, stacked, x, y, backend=backend, device=device)[0]


def exact_evaluate_stacked(
    plan: Plan,
    params: Mapping[str, npt.ArrayLike],
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    backend: Backend = "torch",
    device: str = "cpu",
) -> list[ExactMetrics]:
    """`exact_evaluate` of ``K`` states given as one ``(K, *shape)`` array per tensor name.

    Parameters
    ----------
    plan, x, y, backend, device
        As for `exact_evaluate`.
    params
        Every tensor the plan reads, stacked over the states along a new first axis.

    Returns
    -------
    list[ExactMetrics]
        The ``K`` states' results, in order.

    Raises
    ------
    ExactBoundError
        A state or the data exceed a bound of the proof, or do not fit the plan.
    """
    arrays = {name: np.asarray(params[name], dtype=np.float32) for name, _ in _read(plan, params)}
    k = {a.shape[0] for a in arrays.values()}
    if len(k) != 1 or any(arrays[n].shape[1:] != s for n, s in plan.shapes):
        raise ExactBoundError(
            "stacked tensors must share their first axis and fit the plan's shapes "
            f"{dict(plan.shapes)}"
        )
    states = k.pop()
    for name, a in arrays.items():
        if not np.isfinite(a).all():
            raise ExactBoundError(f"{name} has a non-finite entry")
    xs, ys = np.asarray(x), np.asarray(y, dtype=np.int64)
    if xs.ndim < 2 or ys.shape != (xs.shape[0],):
        raise ExactBoundError(f"need (N, ...) examples and (N,) labels, got {xs.shape}, {ys.shape}")
    run = _Run(torch.device(device), _matmul(backend))
    inputs = _quantise_inputs(xs)
    n = xs.shape[0]
    per_chunk = max(1, _CELLS_AT_ONCE // max(1, plan.cells))  # (state, example) pairs at once
    rows = min(n, per_chunk)
    group = max(1, per_chunk // rows)
    labels = torch.from_numpy(ys)
    correct = torch.zeros(states, dtype=torch.int64)
    losses = _LossSums(states)
    for first in range(0, states, group):
        chunk = {name: a[first : first + group] for name, a in arrays.items()}
        layers = _quantise_layers(plan, chunk, run)
        for start in range(0, n, rows):
            label = labels[start : start + rows]
            part = _Value(run.tensor(inputs[:, start : start + rows]), _input_frac(len(label)))
            out = _forward(plan, layers, part, run)
            logits = _Value(out.q.cpu(), out.frac)
            # argmax returns the first maximum: ties go to the lowest class index.
            correct[first : first + group] += (logits.q.argmax(dim=2) == label).sum(dim=1)
            losses.add(first, _to_logit_grid(logits), label)
    return [
        ExactMetrics(c, n, loss) for c, loss in zip(correct.tolist(), losses.totals(), strict=True)
    ]


class _LossSums:
    """Each state's summed cross-entropy, computed a large batch of examples at a time (the
    fixed-point log-sum-exp costs little per example but much per call)."""

    _ROWS: Final = 1 << 15

    def __init__(self, states: int) -> None:
        # Two int64 halves: each sum stays below 2**63 for up to 2**31 examples.
        self.hi = torch.zeros(states, dtype=torch.int64)
        self.lo = torch.zeros(states, dtype=torch.int64)
        self.pending: list[tuple[int, torch.Tensor, torch.Tensor]] = []
        self.rows = 0

    def add(self, first: int, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Logits ``(k, n, classes)`` (int64, logit grid) of states ``first..first + k``."""
        self.pending.append((first, logits, labels))
        self.rows += logits.shape[0] * logits.shape[1]
        if self.rows >= self._ROWS:
            self._flush()

    def totals(self) -> list[int]:
        """Every state's loss sum, in units of ``2**-LOSS_FRAC_BITS``."""
        self._flush()
        return [(hi << 32) + lo for hi, lo in zip(self.hi.tolist(), self.lo.tolist(), strict=True)]

    def _flush(self) -> None:
        if not self.pending:
            return
        z = torch.cat([g.reshape(-1, g.shape[2]) for _, g, _ in self.pending]).numpy()
        y = torch.cat([label.repeat(g.shape[0]) for _, g, label in self.pending]).numpy()
        each = torch.from_numpy(_cross_entropy_fixed(z, y))
        at = 0
        for first, g, _ in self.pending:
            k, n = g.shape[:2]
            block = each[at : at + k * n].reshape(k, n)
            self.hi[first : first + k] += (block >> 32).sum(dim=1)
            self.lo[first : first + k] += (block & 0xFFFFFFFF).sum(dim=1)
            at += k * n
        self.pending, self.rows = [], 0


def _read(plan: Plan, *states: Mapping[str, object]) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """The plan's tensors, after checking that every state holds each of them."""
    for state in states:
        missing = sorted(name for name, _ in plan.shapes if name not in state)
        if missing:
            raise ExactBoundError(f"the state lacks {missing}, which the network reads")
    return plan.shapes


# ---- the forward pass on integers ----


@dataclass(frozen=True)
class _Value:
    """Integers ``q`` ``(K, N, ...)`` (float64, on the run's device) on the grids ``2**-frac``
    ``(K, N)`` (int64 NumPy, on the CPU). ``K`` is 1 for the input, shared by every state."""

    q: torch.Tensor
    frac: IntArray

    def scaled(self, shift: IntArray) -> torch.Tensor:
        """``q * 2**shift`` per example (exact while it stays an integer below 2**53)."""
        scale = np.ldexp(1.0, shift).reshape(shift.shape + (1,) * (self.q.dim() - 2))
        return self.q * torch.from_numpy(scale).to(self.q.device)


@dataclass(frozen=True)
class _Layer:
    """A linear map quantised per state: weight ``(K, in, out)`` or ``(K, C)``, bias ``(K, out)``
    (the float32 values, not yet on any grid) and the weight's grid exponent ``(K,)``."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    frac: IntArray


@dataclass(frozen=True)
class _Run:
    """Where the integers live and who multiplies their matrices."""

    device: torch.device
    matmul: Matmul

    def tensor(self, a: npt.NDArray[np.float64]) -> torch.Tensor:
        """A float64 NumPy array on the run's device."""
        return torch.from_numpy(np.ascontiguousarray(a)).to(self.device)


def _quantise_layers(
    plan: Plan, params: Mapping[str, npt.NDArray[np.float32]], run: _Run
) -> list[_Layer]:
    """Each linear, convolution and batch norm step's weights on its grid, in step order, on
    the run's device."""
    out = []
    for step in plan.steps:
        op = step.op
        if isinstance(op, Linear | Conv2d):
            w = params[op.weight]
            w = w.reshape(w.shape[0], w.shape[1], -1)  # (K, out, fan_in)
            b = None if op.bias is None else params[op.bias].astype(np.float64)
            out.append(_quantise(w.astype(np.float64).transpose(0, 2, 1), b, run))
        elif isinstance(op, BatchNorm):
            var = params[op.var].astype(np.float64)
            mean = params[op.mean].astype(np.float64)
            gamma = np.ones_like(var) if op.weight is None else params[op.weight].astype(np.float64)
            beta = np.zeros_like(var) if op.bias is None else params[op.bias].astype(np.float64)
            if (var + op.eps <= 0).any():
                raise ExactBoundError(f"{op.var} + eps is not positive")
            scale = gamma / np.sqrt(var + op.eps)  # each operation correctly rounded
            out.append(_quantise(scale, beta - mean * scale, run))
    return out


def _quantise(w: F64Array, b: F64Array | None, run: _Run) -> _Layer:
    """Per state (axis 0), weight and bias on one grid ``2**-(16 - e)`` with ``max < 2**e``."""
    k = w.shape[0]
    top = np.abs(w.reshape(k, -1)).max(axis=1, initial=0.0)
    if b is not None:
        top = np.maximum(top, np.abs(b).max(axis=1, initial=0.0))
    if not np.isfinite(top).all():
        raise ExactBoundError("a layer's scale is not finite")
    frac = (WEIGHT_BITS - np.frexp(top)[1]).astype(np.int64)  # top < 2**e; frexp is exact
    scale = np.ldexp(1.0, frac).reshape((k,) + (1,) * (w.ndim - 1))
    bias = None if b is None else run.tensor(b)
    return _Layer(run.tensor(np.rint(w * scale)), bias, frac)


def _forward(plan: Plan, layers: list[_Layer], inputs: _Value, run: _Run) -> _Value:
    """The exact logits ``(K, N, classes)`` and their grid exponents ``(K, N)``."""
    values = [inputs]
    readers = Counter(i for step in plan.steps for i in step.inputs)
    quantised = iter(layers)
    for step in plan.steps:
        op = step.op
        v = values[step.inputs[0]]
        if isinstance(op, Linear):
            out = _linear(_requantise(v), next(quantised), run)
        elif isinstance(op, Conv2d):
            out = _conv2d(_requantise(v), next(quantised), op, run)
        elif isinstance(op, BatchNorm):
            out = _affine(_requantise(v), next(quantised))
        elif isinstance(op, Relu):
            alone = readers[step.inputs[0]] == 1 and step.inputs[0] > 0  # nobody else reads it
            out = _Value(v.q.clamp_min_(0.0) if alone else v.q.clamp_min(0.0), v.frac)
        elif isinstance(op, MaxPool2d):
            out = _max_pool(v, op)
        elif isinstance(op, AvgPool2d):
            out = _avg_pool(_requantise(v), op)
        elif isinstance(op, AdaptiveAvgPool2d):
            out = _adaptive_mean(_requantise(v), op.output)
        elif isinstance(op, Flatten):
            out = _Value(v.q.reshape(v.q.shape[0], v.q.shape[1], -1), v.frac)
        else:
            out = _add(_requantise(v), _requantise(values[step.inputs[1]]))
        values.append(out)
    return values[-1]


def _matmul(backend: Backend) -> Matmul:
    """The integer matrix product ``a @ w`` of the chosen backend (float64 in and out)."""
    if backend == "torch":
        return torch.matmul
    if backend in ("numpy", "int64"):
        dtype = np.float64 if backend == "numpy" else np.int64

        def numpy_matmul(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            product = np.matmul(a.cpu().numpy().astype(dtype), w.cpu().numpy().astype(dtype))
            return torch.from_numpy(product.astype(np.float64)).to(a.device)

        return numpy_matmul
    raise ExactBoundError(f"unknown backend {backend!r}; use torch, numpy or int64")


def _quantise_inputs(x: npt.NDArray[np.generic]) -> F64Array:
    """Inputs ``(1, N, ...)`` on the grid ``2**-INPUT_FRAC_BITS`` (round half to even)."""
    x64 = x.astype(np.float64)
    if not np.isfinite(x64).all() or np.abs(x64).max(initial=0.0) > 2.0 ** (
        ACT_BITS - INPUT_FRAC_BITS
    ):
        raise ExactBoundError(
            f"inputs must be finite with |x| <= {2 ** (ACT_BITS - INPUT_FRAC_BITS)}"
        )
    out: F64Array = np.rint(np.ldexp(x64, INPUT_FRAC_BITS))[None]
    return out


def _input_frac(n: int) -> IntArray:
    """The inputs' grid exponents ``(1, n)``."""
    return np.full((1, n), INPUT_FRAC_BITS, dtype=np.int64)


def _requantise(v: _Value) -> _Value:
    """Shift each example right until ``|q| <= 2**ACT_BITS`` and its grid is at most 2**-24."""
    k, n = v.q.shape[:2]
    flat = v.q.reshape(k, n, -1)
    top = torch.maximum(flat.amax(dim=2), -flat.amin(dim=2)).cpu().numpy()  # (K, N), < 2**53
    bits = np.frexp(top)[1].astype(np.int64)  # top < 2**bits
    frac = np.broadcast_to(v.frac, (k, n))
    s = np.maximum(np.maximum(bits - ACT_BITS, frac - ACT_FRAC_MAX), 0)
    if not s.any():
        return _Value(v.q, frac)
    # Dividing an integer below 2**53 by 2**s is exact; torch.round rounds half to even.
    return _Value(v.scaled(-s).round_(), frac - s)


def _with_bias(acc: torch.Tensor, layer: _Layer, frac: IntArray, axis: int) -> torch.Tensor:
    """``acc`` plus the bias ``(K, C)`` on each example's grid ``2**-frac`` (rounded half to
    even), its channels along ``axis`` of ``acc`` ``(K, N, ...)``. ``|bias| <= 2**40``."""
    if layer.bias is None:
        return acc
    k, c = layer.bias.shape
    shape = [k, 1] + [1] * (acc.dim() - 2)
    shape[axis] = c
    if (frac == frac[:, :1]).all():  # every example on its state's grid (as inputs are)
        frac = frac[:, :1]
    bias = _Value(layer.bias.reshape(shape), frac).scaled(frac)
    return acc.add_(bias.round_())


def _linear(v: _Value, layer: _Layer, run: _Run) -> _Value:
    """``a @ w + b`` over the last axis, on the product grid (exact integers)."""
    ka, n = v.q.shape[:2]
    acc = run.matmul(v.q.reshape(ka, -1, v.q.shape[-1]), layer.weight)  # Ka = 1 broadcasts
    acc = acc.reshape(acc.shape[0], n, *v.q.shape[2:-1], acc.shape[-1])
    frac = v.frac + layer.frac[:, None]
    return _Value(_with_bias(acc, layer, frac, acc.dim() - 1), frac)


def _conv2d(v: _Value, layer: _Layer, op: Conv2d, run: _Run) -> _Value:
    """A convolution as one integer product per state (im2col), on the product grid."""
    ka, n, c, h, w = v.q.shape
    (kh, kw), (sh, sw), (ph, pw) = op.kernel, op.stride, op.padding
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    if ho < 1 or wo < 1:
        raise ExactBoundError(f"a {op.kernel} kernel does not fit a {(h, w)} map")
    cols = F.unfold(v.q.reshape(ka * n, c, h, w), op.kernel, padding=op.padding, stride=op.stride)
    cols = cols.transpose(1, 2).reshape(ka, n * ho * wo, c * kh * kw)  # (Ka, N * L, fan_in)
    acc = run.matmul(cols, layer.weight)  # (K, N * L, out)
    acc = acc.reshape(acc.shape[0], n, ho * wo, -1).transpose(2, 3)
    acc = acc.reshape(acc.shape[0], n, -1, ho, wo)  # (K, N, out, Ho, Wo)
    frac = v.frac + layer.frac[:, None]
    return _Value(_with_bias(acc, layer, frac, 2), frac)


def _affine(v: _Value, layer: _Layer) -> _Value:
    """Batch norm's ``x * s + t`` per channel (axis 2), on the product grid."""
    k, c = layer.weight.shape
    acc = v.q * layer.weight.reshape([k, 1, c] + [1] * (v.q.dim() - 3))  # products < 2**32
    frac = v.frac + layer.frac[:, None]
    return _Value(_with_bias(acc, layer, frac, 2), frac)


def _maps(q: torch.Tensor) -> torch.Tensor:
    """``(K, N, C, H, W)`` as ``(K * N, C, H, W)`` for torch's pooling."""
    return q.reshape(q.shape[0] * q.shape[1], *q.shape[2:])


def _max_pool(v: _Value, op: MaxPool2d) -> _Value:
    """Max over each window: exact on integers."""
    out = F.max_pool2d(_maps(v.q), op.kernel, op.stride, op.padding)
    return _Value(out.reshape(*v.q.shape[:2], *out.shape[1:]), v.frac)


def _avg_pool(v: _Value, op: AvgPool2d) -> _Value:
    """Each window's sum (exact, below 2**53) divided by its size, rounded half to even."""
    sums = F.avg_pool2d(_maps(v.q), op.kernel, op.stride, divisor_override=1)
    out = _round_div(sums, op.kernel[0] * op.kernel[1])
    return _Value(out.reshape(*v.q.shape[:2], *out.shape[1:]), v.frac)


def _round_div(v: torch.Tensor, d: int) -> torch.Tensor:
    """``round_half_even(v / d)`` for integers ``|v| < 2**53`` and ``d >= 1``, in int64."""
    i = v.to(torch.int64)
    q = torch.div(i, d, rounding_mode="floor")
    r = i - q * d  # 0 <= r < d
    up = (2 * r > d) | ((2 * r == d) & (q % 2 == 1))
    return (q + up.to(torch.int64)).to(torch.float64)


def _adaptive_mean(v: _Value, output: tuple[int, int]) -> _Value:
    """torch's adaptive average pooling: bin ``i`` spans ``[floor(i H / o), ceil((i+1) H / o))``."""
    h, w = v.q.shape[-2:]
    oh, ow = output
    rows = []
    for i in range(oh):
        r0, r1 = i * h // oh, -(-(i + 1) * h // oh)
        cols = []
        for j in range(ow):
            c0, c1 = j * w // ow, -(-(j + 1) * w // ow)
            sums = v.q[..., r0:r1, c0:c1].sum(dim=(-2, -1))  # integers below 2**53: exact
            cols.append(_round_div(sums, (r1 - r0) * (c1 - c0)))
        rows.append(torch.stack(cols, dim=-1))
    return _Value(torch.stack(rows, dim=-2), v.frac)


def _add(a: _Value, b: _Value) -> _Value:
    """``a + b`` on the coarser of the two grids (the finer operand rounded half to even)."""
    frac = np.minimum(a.frac, b.frac)
    return _Value(a.scaled(frac - a.frac).round_() + b.scaled(frac - b.frac).round_(), frac)


def _to_logit_grid(logits: _Value) -> torch.Tensor:
    """Logits ``(K, N, classes)`` on the grid ``2**-LOGIT_FRAC_BITS`` (round half to even),
    saturated at 2**46, as int64 on the CPU."""
    # A left shift beyond 60 bits saturates any nonzero logit anyway; capping it keeps the
    # scale finite. Otherwise scaling an integer below 2**53 by a power of two is exact.
    scaled = logits.scaled(np.minimum(LOGIT_FRAC_BITS - logits.frac, 60))
    limit = float((1 << MAX_LOGIT_BITS) - 1)
    return scaled.round_().clamp_(-limit, limit).to(torch.int64)


def _shift_round(v: IntArray, s: IntArray) -> IntArray:
    """``round_half_even(v / 2**s)`` for int64 ``v`` and shifts ``0 <= s < 63``."""
    q = v >> s  # floor
    r = v - (q << s)  # in [0, 2**s)
    half = (np.int64(1) << s) >> 1  # 0 when s = 0, and then r = 0 too
    up = (s > 0) & ((r > half) | ((r == half) & (q & 1 == 1)))
    out: IntArray = q + up
    return out


@functools.cache
def _tables() -> tuple[IntArray, IntArray, IntArray, int]:
    """``e**-x`` at x = j/2**8 (then 0) and c/2**16, and ``ln(1 + i/128)``, correctly rounded."""
    ctx = decimal.Context(prec=40, rounding=decimal.ROUND_HALF_EVEN)

    def fixed(v: decimal.Decimal, bits: int) -> int:
        return int(
            ctx.multiply(v, decimal.Decimal(1 << bits)).to_integral_value(decimal.ROUND_HALF_EVEN)
        )

    def exp_neg(num: int, den: int) -> int:
        return fixed(ctx.exp(decimal.Decimal(-num) / decimal.Decimal(den)), _EXP_BITS)

    coarse = [exp_neg(j, 1 << 8) for j in range(_EXP_CUTOFF << 8)]
    e_hi = np.array([*coarse, 0], dtype=np.int64)  # the last entry stands for every d >= 32
    e3 = np.array([exp_neg(c, 1 << 16) for c in range(1 << 8)], dtype=np.int64)
    k = 1 << _LN_INDEX_BITS
    ln = np.array(
        [
            fixed(ctx.ln(decimal.Decimal(k + i) / decimal.Decimal(k)), LOSS_FRAC_BITS)
            for i in range(k)
        ],
        dtype=np.int64,
    )
    ln2 = fixed(ctx.ln(decimal.Decimal(2)), LOSS_FRAC_BITS)
    return e_hi, e3, ln, ln2


def _cross_entropy_fixed(z: IntArray, y: IntArray) -> IntArray:
    """Per-example cross-entropy in units of ``2**-24`` from logits on the ``2**-16`` grid.

    ``CE = (z_max - z_y) + ln(sum_j e**-(z_max - z_j))``. With ``d = z_max - z_j`` written as
    ``j/2**8 + c/2**16``, ``e**-d`` is the product of two table entries (each
    ``round(e**-t * 2**30)``), rounded half up; it is 0 from ``d >= 32``.
    The sum ``S`` lies in ``[2**30, classes * 2**30]``. With ``S = 2**k * x``, ``x`` in
    ``[1, 2)``, ``ln S = k ln 2 + ln(1 + i/128) + ln(1 + r)`` where ``i`` is the top 7 bits of
    ``x``'s fraction and ``r < 2**-7`` is computed by a floor division in ``2**-24`` units;
    ``ln(1 + r) ~ r - r**2/2 + r**3/3`` (error ``< r**4/4 < 2**-30``).
    """
    e_hi, e3, ln_table, ln2 = _tables()
    n = z.shape[0]
    zmax = z.max(axis=1)
    d = zmax[:, None] - z  # >= 0, < 2**47
    hi = np.minimum(d >> 8, _EXP_CUTOFF << 8)  # the last index holds 0
    ex = (e_hi[hi] * e3[d & 0xFF] + (1 << (_EXP_BITS - 1))) >> _EXP_BITS  # product <= 2**60
    total = ex.sum(axis=1)  # in [2**30, classes * 2**30]
    if bool((total >= (np.int64(1) << 52)).any()):
        raise ExactBoundError("too many classes for the fixed-point log-sum-exp")
    k = np.frexp(total.astype(np.float64))[1].astype(np.int64) - 1  # 2**k <= total < 2**(k+1)
    # x = total / 2**k on the grid 2**-30 (exact: k >= 30 means a right shift of k - 30 bits).
    x30 = _shift_round(total, k - 30)  # in [2**30, 2**31]
    carry = x30 >> 31  # rounding can reach 2**31 exactly: then x = 1 at k + 1
    k = k + carry
    x30 = np.where(carry == 1, np.int64(1) << 30, x30)
    i = (x30 >> (30 - _LN_INDEX_BITS)) - (1 << _LN_INDEX_BITS)  # in [0, 128)
    base = (i + (1 << _LN_INDEX_BITS)) << (30 - _LN_INDEX_BITS)  # 2**30 * (1 + i/128)
    r = ((x30 - base) << LOSS_FRAC_BITS) // base  # floor(r * 2**24), r < 2**-7, x30 - base < 2**23
    r2 = (r * r) >> LOSS_FRAC_BITS
    r3 = (r2 * r) >> LOSS_FRAC_BITS
    ln_x = ln_table[i] + r - (r2 >> 1) + r3 // 3
    ln_sum = (k - _EXP_BITS) * ln2 + ln_x  # ln(total / 2**30)
    margin = (zmax - z[np.arange(n), y]) << (LOSS_FRAC_BITS - LOGIT_FRAC_BITS)
    out: IntArray = margin + ln_sum
    return out
