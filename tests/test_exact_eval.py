"""Exact evaluation is the mathematics, not a float run: identical bytes everywhere.

(d) On small networks it equals a reference written here with Python integers and fractions
only (no NumPy, no BLAS), including states far from an optimum (losses of 2-20); (d') every
backend gives the same bytes; (a) fresh interpreters under each CPU kernel family and thread
count print the same hash of many evaluations; (e) CUDA matches the CPU where a GPU is present.
"""

from __future__ import annotations

import decimal
import json
import math
import subprocess
import sys
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from kernels import kernel_env
from test_round_replay import record
from torch import nn

from swarmchain.node.errors import ConfigError
from swarmchain.node.learning.models import build_model
from swarmchain.node.protocol.evaluation import exact_plan, quantised_utility, task_plan
from swarmchain.node.protocol.exact_eval import (
    ExactBoundError,
    ExactMetrics,
    exact_evaluate,
    exact_evaluate_stacked,
)
from swarmchain.node.protocol.task import (
    AggregationSpec,
    DataSpec,
    ModelSpec,
    ValuationSpec,
    default_task,
)

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

    limit = 2**46 - 1  # logits saturate
    z = [max(-limit, min(limit, _round(Fraction(v) * 2 ** (16 - frac)))) for v in logits]
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
        got = exact_evaluate(task_plan(model, data), state, x, y)
        want, gap = _reference(state, data, x, y)
        assert got == want
        assert gap < 2**-16  # within rounding of the quantised logits' true cross-entropy


def test_far_states_have_large_losses_and_still_match() -> None:
    model, data = MLP
    x, y = _data(data, 16, seed=5)
    losses = []
    for seed in range(4):
        state = _state(model, data, seed, 30.0)
        got = exact_evaluate(task_plan(model, data), state, x, y)
        assert got == _reference(state, data, x, y)[0]
        losses.append(got.loss)
    assert max(losses) > 2.0


@pytest.mark.parametrize("net", [MLP, CNN], ids=["mlp", "cnn"])
def test_every_backend_gives_the_same_bytes(net: tuple[ModelSpec, DataSpec]) -> None:
    model, data = net
    plan = task_plan(model, data)
    x, y = _data(data, 40, seed=3)
    for seed, scale in enumerate([0.5, 4.0, 25.0]):
        state = _state(model, data, seed, scale)
        results = {b: exact_evaluate(plan, state, x, y, backend=b) for b in BACKENDS}
        results["float64 input"] = exact_evaluate(plan, state, x.astype(np.float64), y)
        results["float64 state"] = exact_evaluate(
            plan, {k: v.double().numpy() for k, v in state.items()}, x, y
        )
        assert len(set(results.values())) == 1, results


BACKENDS = ("torch", "numpy", "int64")  # torch's BLAS, NumPy's OpenBLAS, integer NumPy


def test_quantised_utility_rounds_the_exact_rational() -> None:
    loss_sum = round(0.123456 * 100_000 * 2**24)
    metrics = ExactMetrics(correct=87_654, total=100_000, loss_sum=loss_sum)
    assert quantised_utility(metrics, ValuationSpec("accuracy", 1e-4)) == 8765
    assert quantised_utility(metrics, ValuationSpec("neg_loss", 1e-3)) == -123
    # 3 / 20,000 is 1.5 quanta exactly: half to even gives 2 (a float division gives 1.4999...)
    assert quantised_utility(ExactMetrics(3, 20_000, 0), ValuationSpec("accuracy", 1e-4)) == 2


def test_argmax_ties_go_to_the_lowest_class() -> None:
    model, data = MLP
    plan = task_plan(model, data)
    state = {k: torch.zeros_like(v) for k, v in _state(model, data, 0, 1.0).items()}
    x, y = _data(data, 4, seed=0)
    got = exact_evaluate(plan, state, x, np.zeros(4, dtype=np.int64))
    assert got.correct == 4
    assert got.loss_sum == 4 * round(math.log(data.num_classes) * 2**24)
    assert exact_evaluate(plan, state, x, y).correct == int((y == 0).sum())


def test_bad_states_and_inputs_are_refused_and_huge_logits_saturate() -> None:
    model, data = MLP
    plan = task_plan(model, data)
    state = _state(model, data, 0, 1.0)
    x, y = _data(data, 6, seed=0)
    with pytest.raises(ExactBoundError, match="inputs"):
        exact_evaluate(plan, state, np.full((1, 1, 4, 4), 300.0, dtype=np.float32), [0])
    with pytest.raises(ExactBoundError, match="non-finite"):
        exact_evaluate(plan, {**state, "layers.1.bias": torch.full((5,), math.nan)}, x, y)
    with pytest.raises(ExactBoundError, match=r"lacks \['layers\.2\.bias'\]"):
        exact_evaluate(plan, {k: v for k, v in state.items() if k != "layers.2.bias"}, x, y)
    huge = {k: v * 1e30 for k, v in state.items()}
    got = exact_evaluate(plan, huge, x, y)
    assert got == _reference(huge, data, x, y)[0]
    assert got.loss > 1e6  # saturated logits, a huge but exact loss


def test_layers_without_an_exact_rule_are_refused_by_name() -> None:
    def net(*middle: nn.Module) -> nn.Sequential:
        return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), *middle, nn.Linear(8, 3))

    for layer, name in [(nn.LayerNorm(8), "LayerNorm"), (nn.GELU(), "GELU"), (nn.Tanh(), "Tanh")]:
        with pytest.raises(ConfigError, match=f"layer 2: {name}"):
            exact_plan(net(layer), (1, 4, 4))

    class Tanh(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tanh(x.flatten(1))

    with pytest.raises(ConfigError, match="tanh"):
        exact_plan(Tanh(), (1, 4, 4))
    with pytest.raises(ConfigError, match=r"layer 0: Conv2d.*groups=2"):
        exact_plan(nn.Sequential(nn.Conv2d(2, 2, 3, groups=2), nn.Flatten()), (2, 4, 4))
    with torch.device("meta"):
        wide = nn.Sequential(nn.Flatten(), nn.Linear(2**20 + 1, 1))
    with pytest.raises(ConfigError, match="fan-in"):
        exact_plan(wide, (1, 1, 2**20 + 1))


class _Block(nn.Module):
    """A residual block: conv-BN-ReLU-conv-BN plus the input, then ReLU."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding="same", bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x
        return torch.relu(out)


def _small_resnet() -> nn.Module:
    """Every layer kind the exact rules cover, in one network on 2x9x9 inputs."""
    return nn.Sequential(
        nn.Conv2d(2, 6, 3, stride=2, padding=1),  # 9x9 -> 5x5
        nn.BatchNorm2d(6),
        nn.ReLU(),
        _Block(6),
        nn.MaxPool2d(3, stride=2, padding=1),  # 5x5 -> 3x3, overlapping, padded (a ResNet stem)
        nn.Dropout(0.3),
        nn.AvgPool2d(2, stride=1),  # 3x3 -> 2x2
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Identity(),
        nn.Linear(6, 12),
        nn.ReLU(),
        nn.Linear(12, 4),
    )


def test_common_layers_evaluate_exactly_close_to_float() -> None:
    torch.manual_seed(0)
    network = _small_resnet()
    for module in network.modules():  # running statistics as a trained network has them
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    network.eval()
    plan = exact_plan(network, (2, 9, 9))
    rng = np.random.default_rng(0)
    x = (rng.integers(0, 256, (64, 2, 9, 9)) / 64).astype(np.float32)
    y = rng.integers(0, 4, 64)
    state = {k: v for k, v in network.state_dict().items() if v.is_floating_point()}
    got = {b: exact_evaluate(plan, state, x, y, backend=b) for b in BACKENDS}
    assert len(set(got.values())) == 1, got
    with torch.no_grad():
        logits = network(torch.from_numpy(x))
    float_loss = float(F.cross_entropy(logits, torch.from_numpy(y)))
    exact = got["torch"]
    assert abs(exact.loss - float_loss) < 1e-3 * max(1.0, float_loss)
    assert abs(exact.correct - int((logits.argmax(1).numpy() == y).sum())) <= 1
    # Each example's result is its own: any split of the examples sums to the whole.
    halves = [exact_evaluate(plan, state, x[s], y[s]) for s in (slice(0, 23), slice(23, None))]
    assert exact.loss_sum == sum(h.loss_sum for h in halves)
    assert exact.correct == sum(h.correct for h in halves)


# ---- (a) fresh interpreters per CPU kernel family and thread count ----

SCRIPT = r"""
import dataclasses, hashlib, sys
import numpy as np
import torch
torch.set_num_threads(int(sys.argv[1]))
from swarmchain.node.learning.data import task_splits
from swarmchain.node.learning.training import genesis_state
from swarmchain.node.protocol.evaluation import task_plan
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
    plan = task_plan(spec.model, spec.data)
    shapes = {k: tuple(v.shape) for k, v in genesis_state(spec).items()}
    for seed in range(8):
        scale = (0.05, 0.2, 0.6, 1.5)[seed % 4]
        state = {
            k: torch.from_numpy((rng.integers(-4096, 4097, s) / 4096 * scale).astype(np.float32))
            for k, s in shapes.items()
        }
        for backend in ("torch", "numpy"):
            m = exact_evaluate(plan, state, ref.x, ref.y, backend=backend)
            digest.update(f"{arch},{seed},{backend},{m.correct},{m.total},{m.loss_sum};".encode())
print(digest.hexdigest())
"""

SETTINGS = [("default", 1), ("avx2", 1), ("avx512", 1), ("avx512", 2)]  # kernels, threads


def _printed(script: str, kernels: str, threads: int, *args: str) -> str:
    """What a fresh interpreter under these kernels and threads prints running `script`."""
    done = subprocess.run(
        [sys.executable, "-c", script, str(threads), *args],
        cwd=REPO,
        env=kernel_env(kernels, threads),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_exact_evaluation_is_identical_across_cpu_kernels_and_threads() -> None:
    runs = {(k, t): _printed(SCRIPT, k, t) for k, t in SETTINGS}
    assert len(set(runs.values())) == 1, runs


REPLAY = r"""
import json, sys
from pathlib import Path
import torch
torch.set_num_threads(int(sys.argv[1]))
sys.path.insert(0, "tests")
from test_round_replay import game_table, replay
path = Path(sys.argv[2])
print(json.dumps([replay(path, Path(sys.argv[3]))[0], game_table(path)], sort_keys=True))
"""


def test_a_whole_round_tuple_is_identical_across_cpu_kernels(tmp_path: Path) -> None:
    # The CNN valued by the smooth loss to 1e-6, with large deltas and plain FedAvg, so that
    # coalitions' models sit far from any optimum (losses of 2-20), where float evaluation splits
    # most: float32 valuation of this very round gives three different tables under the three
    # kernel families.
    task = default_task()
    spec = replace(
        task,
        model=ModelSpec(arch="cnn"),
        aggregation=AggregationSpec("fedavg", {}, ()),
        update_norm_bound=64.0,
        valuation=ValuationSpec("neg_loss", 1e-6),
    )
    record(tmp_path / "round", spec, scale=0.4)
    runs = {
        (k, t): _printed(REPLAY, k, t, str(tmp_path / "round"), str(tmp_path / f"{k}-{t}"))
        for k, t in SETTINGS
    }
    assert len(set(runs.values())) == 1, runs
    outcome, table = json.loads(runs["default", 1])
    assert outcome == json.loads((tmp_path / "round" / "round.json").read_text())["outcome"]
    losses = sorted(-v / 1e6 for v in table)
    assert losses[0] > 2 and losses[-1] < 20  # every coalition's model far from an optimum
    rider = 1 << 4  # member 4 sent a zero delta: it changes no coalition's value
    assert all(table[m] == table[m | rider] for m in range(len(table)))
    assert len({table[m] for m in range(len(table)) if not m & rider}) == len(table) // 2


# ---- (e) CPU against CUDA ----


def test_exact_evaluation_on_cuda_matches_the_cpu() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine")
    for model, data in (MLP, CNN):
        x, y = _data(data, 64, seed=9)
        for seed, scale in enumerate([1.0, 6.0, 30.0]):
            state = _state(model, data, seed, scale)
            plan = task_plan(model, data)
            cpu = exact_evaluate(plan, state, x, y)
            cuda = exact_evaluate(plan, state, x, y, device="cuda")
            assert cpu == cuda


def test_evaluating_many_states_equals_one_at_a_time() -> None:
    model, data = CNN
    x, y = _data(data, 20, seed=4)
    states = [_state(model, data, seed, 2.0**seed) for seed in range(4)]
    plan = task_plan(model, data)
    stacked = {name: np.stack([s[name].numpy() for s in states]) for name in states[0]}
    many = exact_evaluate_stacked(plan, stacked, x, y)
    assert many == [exact_evaluate(plan, s, x, y) for s in states]
