"""Attack simulators: what Byzantine nodes send, for tests and robustness benchmarks.

* Label flipping: train honestly on labels ``c -> C - 1 - c`` (a data-poisoning attack).
* Sign flipping: send ``-scale * own`` (Damaskinos et al., ICML 2018, "Asynchronous Byzantine
  Machine Learning").
* Gaussian noise: send ``N(0, sigma^2)`` per coordinate (Blanchard et al., NeurIPS 2017).
* Scaling: send ``factor * own`` (Bhagoji et al., ICML 2019, "Analyzing Federated Learning
  through an Adversarial Lens", explicit boosting).
* ALIE: Baruch, Baruch, Goldberg, "A Little Is Enough: Circumventing Defenses For Distributed
  Learning", NeurIPS 2019: send ``mean - z * std`` of the honest updates, per coordinate, with
  ``z`` small enough to hide inside their spread.
* IPM: Xie, Koyejo, Gupta, "Fall of Empires: Breaking Byzantine-tolerant SGD by Inner Product
  Manipulation", UAI 2019: send ``-epsilon * mean`` of the honest updates.
* Free-rider: send the base model (a zero delta) or a copy of another node's update (Lin, Du,
  Liu, "Free-riders in Federated Learning: Attacks and Defenses", 2019).
* Sample inflation: send a sign-flipped update and claim 100 times the examples trained on, to
  take over any rule that weighs updates by their self-reported sample counts.

Model attacks are omniscient where the paper's are: they see this round's honest updates. In the
real protocol commit-reveal hides those until every commitment is in, which is exactly why the
copy attack must fail there.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import torch

Update = Mapping[str, torch.Tensor]
State = dict[str, torch.Tensor]


@dataclass(frozen=True)
class AttackContext:
    """What a Byzantine node knows when it forges its update."""

    own: Update  # the update the node would send if honest (trained on its own data)
    honest: Sequence[Update]  # this round's honest updates (omniscient attacker)
    num_byzantine: int  # f: Byzantine nodes in the round
    num_total: int  # n: all nodes in the round
    seed: int  # seed for random attacks


def flip_labels(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Label flipping: class ``c`` becomes ``num_classes - 1 - c``."""
    return (num_classes - 1) - y


def sign_flip(ctx: AttackContext, *, scale: float = 1.0) -> State:
    """Send the negated own update, scaled."""
    return {k: -scale * v for k, v in _sorted(ctx.own).items()}


def gaussian_noise(ctx: AttackContext, *, sigma: float = 1.0) -> State:
    """Send i.i.d. Gaussian noise of standard deviation ``sigma`` in every coordinate."""
    gen = torch.Generator().manual_seed(ctx.seed)
    return {k: sigma * torch.randn(v.shape, generator=gen) for k, v in _sorted(ctx.own).items()}


def scaling(ctx: AttackContext, *, factor: float = 10.0) -> State:
    """Send the own update multiplied by ``factor`` (boosting)."""
    return {k: factor * v for k, v in _sorted(ctx.own).items()}


def alie_z(num_total: int, num_byzantine: int) -> float:
    """Baruch et al.'s largest undetectable shift: ``z = Phi^-1((n - s) / n)`` with
    ``s = floor(n / 2 + 1) - f`` supporters needed."""
    s = num_total // 2 + 1 - num_byzantine
    return statistics.NormalDist().inv_cdf((num_total - s) / num_total)


def alie(ctx: AttackContext, *, z: float | None = None) -> State:
    """ "A little is enough": ``mean - z * std`` of the honest updates, per coordinate.

    Parameters
    ----------
    ctx
        The attacker's knowledge (needs at least two honest updates).
    z
        Shift in standard deviations; Baruch et al.'s `alie_z` when omitted.
    """
    shift = alie_z(ctx.num_total, ctx.num_byzantine) if z is None else z
    mean, std = _moments(ctx.honest)
    return {k: mean[k] - shift * std[k] for k in mean}


def ipm(ctx: AttackContext, *, epsilon: float = 0.1) -> State:
    """Inner-product manipulation: ``-epsilon`` times the honest mean."""
    mean, _ = _moments(ctx.honest)
    return {k: -epsilon * v for k, v in mean.items()}


def free_rider(ctx: AttackContext, *, copy: bool = False) -> State:
    """Contribute nothing: a zero delta (the base model), or a copy of an honest update.

    Parameters
    ----------
    ctx
        The attacker's knowledge; ``copy=True`` needs at least one honest update.
    copy
        Copy the honest update picked by ``ctx.seed`` instead of sending zeros.
    """
    if copy:
        if not ctx.honest:
            raise ValueError("a copying free-rider needs at least one honest update")
        return {k: v.clone() for k, v in _sorted(ctx.honest[ctx.seed % len(ctx.honest)]).items()}
    return {k: torch.zeros_like(v) for k, v in _sorted(ctx.own).items()}


@dataclass(frozen=True)
class Attack:
    """A named attack: a data attack changes the labels trained on, a model attack the update."""

    flips_labels: bool  # train on flipped labels (then send that update unchanged)
    forge: Callable[[AttackContext], State] | None  # replaces the update; None: send it as is
    sample_factor: int = 1  # claim this many times the examples actually trained on


ATTACKS: Final[Mapping[str, Attack]] = {
    "label_flip": Attack(True, None),
    "sign_flip": Attack(False, sign_flip),
    "gaussian": Attack(False, gaussian_noise),
    "scaling": Attack(False, scaling),
    "alie": Attack(False, alie),
    "ipm": Attack(False, ipm),
    "free_rider": Attack(False, free_rider),
    "copycat": Attack(False, lambda ctx: free_rider(ctx, copy=True)),
    "sample_inflation": Attack(False, sign_flip, sample_factor=100),
}


def _moments(updates: Sequence[Update]) -> tuple[State, State]:
    """Per-coordinate mean and (population) standard deviation of the updates."""
    if len(updates) < 2:
        raise ValueError(f"this attack needs at least 2 honest updates, got {len(updates)}")
    names = sorted(updates[0])
    stacked = {k: torch.stack([u[k].float() for u in updates]) for k in names}
    return (
        {k: s.mean(dim=0) for k, s in stacked.items()},
        {k: s.std(dim=0, correction=0) for k, s in stacked.items()},
    )


def _sorted(update: Update) -> State:
    """The update's tensors as a dict with sorted names."""
    return {k: update[k] for k in sorted(update)}
