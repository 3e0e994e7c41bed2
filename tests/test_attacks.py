"""Attack simulators forge what the papers describe."""

from __future__ import annotations

import statistics

import pytest
import torch

from swarmchain.node.learning.attacks import (
    ATTACKS,
    AttackContext,
    alie,
    alie_z,
    flip_labels,
    free_rider,
    gaussian_noise,
    ipm,
    scaling,
    sign_flip,
)


@pytest.fixture
def ctx() -> AttackContext:
    honest = [{"w": torch.tensor([1.0, -2.0]), "b": torch.tensor([0.0])} for _ in range(2)]
    honest[1] = {"w": torch.tensor([3.0, -4.0]), "b": torch.tensor([2.0])}
    own = {"w": torch.tensor([0.5, 0.25]), "b": torch.tensor([-1.0])}
    return AttackContext(own=own, honest=honest, num_byzantine=2, num_total=10, seed=5)


def test_label_flipping_mirrors_the_classes() -> None:
    assert flip_labels(torch.tensor([0, 1, 9]), 10).tolist() == [9, 8, 0]


def test_sign_flip_and_scaling(ctx: AttackContext) -> None:
    assert sign_flip(ctx)["w"].tolist() == [-0.5, -0.25]
    assert sign_flip(ctx, scale=4.0)["b"].tolist() == [4.0]
    assert scaling(ctx, factor=10.0)["w"].tolist() == [5.0, 2.5]


def test_gaussian_noise_is_seeded(ctx: AttackContext) -> None:
    big = AttackContext({"w": torch.zeros(20000)}, [], 1, 5, seed=3)
    noise = gaussian_noise(big, sigma=2.0)["w"]
    assert float(noise.std()) == pytest.approx(2.0, rel=0.05)
    assert torch.equal(noise, gaussian_noise(big, sigma=2.0)["w"])
    assert list(gaussian_noise(ctx)) == ["b", "w"]


def test_alie_shifts_the_honest_mean_by_z_standard_deviations(ctx: AttackContext) -> None:
    # n = 10, f = 2: s = 10 // 2 + 1 - 2 = 4 and z = Phi^-1(6 / 10).
    z = alie_z(10, 2)
    assert z == pytest.approx(statistics.NormalDist().inv_cdf(0.6))
    forged = alie(ctx)
    # honest w: (1, 3) and (-2, -4): mean (2, -3), population std (1, 1)
    assert forged["w"].tolist() == pytest.approx([2 - z, -3 - z])
    assert alie(ctx, z=1.0)["b"].tolist() == [0.0]


def test_ipm_sends_a_small_negative_multiple_of_the_honest_mean(ctx: AttackContext) -> None:
    assert ipm(ctx, epsilon=0.5)["w"].tolist() == [-1.0, 1.5]
    lonely = AttackContext(ctx.own, ctx.honest[:1], 1, 2, seed=0)
    with pytest.raises(ValueError, match="at least 2 honest updates"):
        ipm(lonely)


def test_free_rider_sends_zeros_or_a_copy(ctx: AttackContext) -> None:
    assert free_rider(ctx)["w"].tolist() == [0.0, 0.0]
    copied = free_rider(ctx, copy=True)  # seed 5 picks honest[5 % 2]
    assert copied["w"].tolist() == [3.0, -4.0]
    with pytest.raises(ValueError, match="at least one honest"):
        free_rider(AttackContext(ctx.own, [], 1, 1, seed=0), copy=True)


def test_registry_names_every_attack(ctx: AttackContext) -> None:
    assert set(ATTACKS) == {
        "label_flip",
        "sign_flip",
        "gaussian",
        "scaling",
        "alie",
        "ipm",
        "free_rider",
        "copycat",
        "sample_inflation",
    }
    assert ATTACKS["label_flip"].flips_labels and ATTACKS["label_flip"].forge is None
    assert ATTACKS["sample_inflation"].sample_factor == 100
    for name, attack in ATTACKS.items():
        if attack.forge is not None:
            forged = attack.forge(ctx)
            assert list(forged) == ["b", "w"], name
