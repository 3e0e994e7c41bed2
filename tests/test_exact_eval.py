"""Exact evaluation is the mathematics, not a float run: identical bytes everywhere.

(d) On small networks it equals a reference written here with Python integers and fractions
only (no NumPy, no BLAS), including states far from an optimum (losses of 2-20); (d') every
backend gives the same bytes; (a) fresh interpreters under each CPU kernel family and thread
count print the same hash of many evaluations; (e) CUDA matches the CPU where a GPU is present.
"""

from __future__ import annotations

import decimal
import math
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from swarmchain.node.learning.models import build_model
from swarmchain.node.protocol.exact_eval import (
    ExactBoundError,
    ExactMetrics,
    architecture,
    exact_evaluate,
    exact_evaluate_many,
)
from swarmchain.node.protocol.task import DataSpec, ModelSpec

REPO = Path(__file__).resolve().parent.parent

MLP = (ModelSpec(arch="mlp", hidden=(6, 5)), DataSpec(input_shape=(1, 4, 4), num_classes=4))
CNN = (
    ModelSpec(arch="cnn", hidden=(5,), channels=(3, 2, 2)),  # 5x5 -> 2x2 -> 1x1 -> 1x1, unpooled
    DataSpec(input_shape=(2, 5, 5), num_classes=3),
)


def _state(model: ModelSpec, data: DataSpec, seed: int, scale: float) -> dict[str, torch.Tensor]:
    """A random state of the network, its weights multiplied by ``scale``."""
    torch.manual_seed(seed)
    net = build_model(model, data)
    return {k: (v.detach() * scale).float() for k, v in net.state_dict().items()}


def _data(data: DataSpec, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` examples on the digits' grid (k/16) and random labels."""
    rng = np.random.default_rng(seed)
    x = (rng.integers(0, 17, (n, *data.input_shape)) / 16).astype(np.float32)
    return x, rng.integers(0, data.num_classes, n)


# ---- the reference: Python integers and fractions, one example at a time ----


def _round(v: Fraction) -> int:
    """Round half to even (Python's round on a Fraction is exact)."""
    return round(v)


def _layer(
    state: dict[str, torch.Tensor], prefix: str
) -> tuple[list[list[int]], list[Fraction], int]:
    w = state[f"{prefix}.weight"]
    rows = [[Fraction(float(v)) for v in row.flatten().tolist()] for row in w]
    bias = [Fraction(float(v)) for v in state[f"{prefix}.bias"].tolist()]
    m = max(abs(v) for v in [*bias, *(v for row in rows for v in row)])
    e = 0
    if m:
        e = math.frexp(float(m))[1]  # m < 2**e
    fw = 16 - e
    return [[_round(v * 2**fw) for v in row] for row in rows], bias, fw


def _requant(values: list[int], frac: int) -> tuple[list[int], int]:
    top = max(abs(v) for v in values)
    s = max(top.bit_length() - 16, frac - 24, 0)
    return [_round(Fraction(v, 2**s)) for v in values], frac - s


def _ref_logits(
    state: dict[str, torch.Tensor], shape: tuple[int, ...], x: list[float]
) -> tuple[list[int], int]:
    """One example's exact logits and their grid exponent."""
    act = [_round(Fraction(v) * 256) for v in x]
    frac = 8
    c, h, w = shape
    k = 0
    while f"convs.{k}.weight" in state:
        wq, bias, fw = _layer(state, f"convs.{k}")
        out_c = len(wq)
        acc = []
        for o in range(out_c):
            for i in range(h):
                for j in range(w):
                    total = _round(bias[o] * 2 ** (frac + fw))
                    for ci in range(c):
                        for di in range(3):
                            for dj in range(3):
                                ii, jj = i + di - 1, j + dj - 1
                                if 0 <= ii < h and 0 <= jj < w:
                                    total += (
                                        wq[o][ci * 9 + di * 3 + dj] * act[(ci * h + ii) * w + jj]
                                    )
                    acc.append(max(total, 0))
        frac += fw
        if h >= 2 and w >= 2:
            ph, pw = h // 2, w // 2
            acc = [
                max(acc[(o * h + 2 * i + a) * w + 2 * j + b] for a in (0, 1) for b in (0, 1))
                for o in range(out_c)
                for i in range(ph)
                for j in range(pw)
            ]
            h, w = ph, pw
        c = out_c
        act, frac = _requant(acc, frac)
        k += 1
    head = "head.layers" if k else "layers"
    n = 0
    while f"{head}.{n + 1}.weight" in state:
        n += 1
    for layer in range(n + 1):
        wq, bias, fw = _layer(state, f"{head}.{layer}")
        acc = [
            sum(a * b for a, b in zip(row, act, strict=True)) + _round(bb * 2 ** (frac + fw))
            for row, bb in zip(wq, bias, strict=True)
        ]
        frac += fw
        if layer < n:
            act, frac = _requant([max(v, 0) for v in acc], frac)
    return acc, frac


def _ref_cross_entropy(logits: list[int], frac: int, label: int) -> int:
    """The fixed-point cross-entropy in 2**-24 units, written out scalar by scalar."""
    ctx = decimal.Context(prec=40)
    scale = decimal.Decimal(2**30)

    def table(v: decimal.Decimal) -> int:
        return int(ctx.multiply(v, scale).to_integral_value(decimal.ROUND_HALF_EVEN))

    z = [_round(Fraction(v) * 2 ** (16 - frac)) for v in logits]
    zmax = max(z)
    total = 0
    for zj in z:
        d = zmax - zj
        if d >> 8 >= 32 * 256:
            continue
        hi = table(ctx.exp(decimal.Decimal(-(d >> 8)) / 256))
        lo = table(ctx.exp(decimal.Decimal(-(d & 255)) / 65536))
        total += (hi * lo + 2**29) >> 30
    k = total.bit_length() - 1
    x30 = _round(Fraction(total, 2 ** (k - 30)))
    if x30 == 2**31:
        k, x30 = k + 1, 2**30
    i = (x30 >> 23) - 128
    base = (i + 128) << 23
    r = ((x30 - base) << 24) // base
    r2 = (r * r) >> 24
    r3 = (r2 * r) >> 24
    ln_i = ctx.ln(decimal.Decimal(128 + i) / 128)
    ln_x = (
        int(ctx.multiply(ln_i, decimal.Decimal(2**24)).to_integral_value())
        + r
        - (r2 >> 1)
        + r3 // 3
    )
    ln2 = int(ctx.multiply(ctx.ln(decimal.Decimal(2)), decimal.Decimal(2**24)).to_integral_value())
    return ((zmax - z[label]) << 8) + (k - 30) * ln2 + ln_x


def _reference(
    state: dict[str, torch.Tensor], data: DataSpec, x: np.ndarray, y: np.ndarray
) -> tuple[ExactMetrics, float]:
    """The reference metrics, and the largest gap to the real cross-entropy of its logits."""
    correct, loss_sum, gap = 0, 0, 0.0
    for xi, yi in zip(x, y, strict=True):
        logits, frac = _ref_logits(state, data.input_shape, [float(v) for v in xi.flatten()])
        best = max(logits)
        correct += logits.index(best) == int(yi)  # ties to the lowest index
        ce = _ref_cross_entropy(logits, frac, int(yi))
        loss_sum += ce
        real = [float(Fraction(v) / 2**frac) for v in logits]
        top = max(real)
        true_ce = top - real[int(yi)] + math.log(sum(math.exp(v - top) for v in real))
        gap = max(gap, abs(ce / 2**24 - true_ce) / max(1.0, true_ce))
    return ExactMetrics(correct, len(y), loss_sum), gap


@pytest.mark.parametrize("net", [MLP, CNN], ids=["mlp", "cnn"])
@pytest.mark.parametrize("scale", [1.0, 8.0, 40.0])
def test_exact_evaluation_equals_the_integer_reference(
    net: tuple[ModelSpec, DataSpec], scale: float
) -> None:
    model, data = net
    x, y = _data(data, 12, seed=int(scale))
    for seed in range(2):
        state = _state(model, data, seed, scale)
        got = exact_evaluate(state, x, y)
        want, gap = _reference(state, data, x, y)
        assert got == want
        assert gap < 2**-16  # within rounding of the quantised logits' true cross-entropy


def test_far_states_have_large_losses_and_still_match() -> None:
    model, data = MLP
    x, y = _data(data, 16, seed=5)
    losses = []
    for seed in range(4):
        state = _state(model, data, seed, 30.0)
        got = exact_evaluate(state, x, y)
        assert got == _reference(state, data, x, y)[0]
        losses.append(got.loss)
    assert max(losses) > 2.0


@pytest.mark.parametrize("net", [MLP, CNN], ids=["mlp", "cnn"])
def test_every_backend_gives_the_same_bytes(net: tuple[ModelSpec, DataSpec]) -> None:
    model, data = net
    x, y = _data(data, 40, seed=3)
    for seed, scale in enumerate([0.5, 4.0, 25.0]):
        state = _state(model, data, seed, scale)
        results = {b: exact_evaluate(state, x, y, backend=b) for b in ("float64", "int64", "torch")}
        results["float64 input"] = exact_evaluate(state, x.astype(np.float64), y)
        assert len(set(results.values())) == 1, results


def test_argmax_ties_go_to_the_lowest_class() -> None:
    model, data = MLP
    state = {k: torch.zeros_like(v) for k, v in _state(model, data, 0, 1.0).items()}
    x, y = _data(data, 4, seed=0)
    got = exact_evaluate(state, x, np.zeros(4, dtype=np.int64))
    assert got.correct == 4
    assert got.loss_sum == 4 * round(math.log(data.num_classes) * 2**24)
    assert exact_evaluate(state, x, y).correct == int((y == 0).sum())


def test_unknown_layers_and_huge_fan_in_are_refused() -> None:
    model, data = MLP
    state = _state(model, data, 0, 1.0)
    with pytest.raises(ExactBoundError, match=r"norm\.weight"):
        architecture({**state, "norm.weight": torch.ones(3)}, data.input_shape)
    with pytest.raises(ExactBoundError, match="fan-in"):
        architecture(
            {"layers.0.weight": np.zeros((1, 2**20 + 1)), "layers.0.bias": np.zeros(1)}, (1, 1, 1)
        )
    with pytest.raises(ExactBoundError, match="inputs"):
        exact_evaluate(state, np.full((1, 1, 4, 4), 300.0, dtype=np.float32), [0])
    x, y = _data(data, 2, seed=0)
    with pytest.raises(ExactBoundError, match="non-finite"):
        exact_evaluate({**state, "layers.1.bias": torch.full((5,), math.nan)}, x, y)
    with pytest.raises(ExactBoundError, match="logit"):
        exact_evaluate({k: v * 1e30 for k, v in state.items()}, x, y)


# ---- (a) fresh interpreters per CPU kernel family and thread count ----

SCRIPT = r"""
import dataclasses, hashlib, sys
import numpy as np
import torch
torch.set_num_threads(int(sys.argv[1]))
from swarmchain.node.learning.data import task_splits
from swarmchain.node.learning.training import genesis_state
from swarmchain.node.protocol.exact_eval import exact_evaluate
from swarmchain.node.protocol.task import TaskSpec

# States from integer draws (not torch's initialisers, whose CNN output itself varies with the
# kernel family): uniform on a 2**-12 grid, times a per-state scale, so losses reach 2-20.
rng = np.random.default_rng(19)
digest = hashlib.sha256()
for arch in ("mlp", "cnn"):
    spec = TaskSpec()
    spec = dataclasses.replace(spec, model=dataclasses.replace(spec.model, arch=arch))
    _, ref = task_splits(spec)
    shapes = {k: tuple(v.shape) for k, v in genesis_state(spec).items()}
    for seed in range(8):
        scale = (0.05, 0.2, 0.6, 1.5)[seed % 4]
        state = {
            k: torch.from_numpy((rng.integers(-4096, 4097, s) / 4096 * scale).astype(np.float32))
            for k, s in shapes.items()
        }
        for backend in ("float64", "torch"):
            m = exact_evaluate(state, ref.x, ref.y, backend=backend)
            digest.update(f"{arch},{seed},{backend},{m.correct},{m.total},{m.loss_sum};".encode())
print(digest.hexdigest())
"""

KERNELS = {
    "default": {
        "ATEN_CPU_CAPABILITY": "default",
        "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
        "DNNL_MAX_CPU_ISA": "SSE41",
    },
    "avx2": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "DNNL_MAX_CPU_ISA": "AVX2",
    },
    "avx512": {
        "ATEN_CPU_CAPABILITY": "avx512",
        "MKL_ENABLE_INSTRUCTIONS": "AVX512",
        "DNNL_MAX_CPU_ISA": "AVX512_CORE",
    },
}


def _digest(kernels: str, threads: int) -> str:
    env = dict(os.environ) | KERNELS[kernels]
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(threads)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )
    return done.stdout.strip()


def test_exact_evaluation_is_identical_across_cpu_kernels_and_threads() -> None:
    runs = {
        (kernels, threads): _digest(kernels, threads)
        for kernels, threads in [("default", 1), ("avx2", 1), ("avx512", 1), ("avx512", 2)]
    }
    assert len(set(runs.values())) == 1, runs


# ---- (e) CPU against CUDA ----


def test_exact_evaluation_on_cuda_matches_the_cpu() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine")
    for model, data in (MLP, CNN):
        x, y = _data(data, 64, seed=9)
        for seed, scale in enumerate([1.0, 6.0, 30.0]):
            state = _state(model, data, seed, scale)
            cpu = exact_evaluate(state, x, y, backend="float64")
            cuda = exact_evaluate(state, x, y, backend="torch", device="cuda")
            assert cpu == cuda


def test_evaluating_many_states_equals_one_at_a_time() -> None:
    model, data = CNN
    x, y = _data(data, 20, seed=4)
    states = [_state(model, data, seed, 2.0**seed) for seed in range(4)]
    assert exact_evaluate_many(states, x, y) == [exact_evaluate(s, x, y) for s in states]
