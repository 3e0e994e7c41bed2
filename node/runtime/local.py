"""A node's own contribution to a round: local training, or a simulated Byzantine forgery.

Honest nodes train from the round's base checkpoint on their own data with the task's
hyper-parameters and the seed `swarmchain.node.learning.training.training_seed` derives from the
round and the node's address, so a node restarted mid-round trains the same update again.

A node started with ``--attack NAME`` (for tests, demos and soaks) forges its update with one of
`swarmchain.node.learning.attacks.ATTACKS`. The model attacks of the literature are omniscient: they
read the round's honest updates. Commit-reveal hides those until every commitment is in, so here the
attacker estimates them the way a real one must: it trains on `ESTIMATE_SHARDS` disjoint shards of
its own data and treats those updates as the honest sample (the non-omniscient setting of Baruch et
al., "A Little Is Enough", NeurIPS 2019). Parameters are given after a colon, e.g. ``alie:z=1.5`` or
``scaling:factor=20`` (see each attack's keyword parameters).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from swarmchain.node.errors import ConfigError
from swarmchain.node.learning.attacks import (
    ATTACKS,
    AttackContext,
    alie,
    flip_labels,
    gaussian_noise,
    ipm,
    scaling,
    sign_flip,
)
from swarmchain.node.learning.data import Dataset
from swarmchain.node.learning.training import LocalUpdate, State, train_local, training_seed
from swarmchain.node.protocol.task import TaskSpec

ESTIMATE_SHARDS = 4  # shards a model attacker trains on to estimate the honest updates
CPU = torch.device("cpu")

# Attacks whose forging function takes keyword parameters, by name.
_PARAMETRISED: dict[str, Callable[..., State]] = {
    "alie": alie,
    "sign_flip": sign_flip,
    "gaussian": gaussian_noise,
    "scaling": scaling,
    "ipm": ipm,
}


@dataclass(frozen=True)
class AttackPlan:
    """A parsed ``--attack`` value."""

    name: str  # a key of swarmchain.node.learning.attacks.ATTACKS
    params: Mapping[str, float] = field(default_factory=dict)  # keyword parameters of its forge

    @classmethod
    def parse(cls, text: str) -> AttackPlan:
        """Parse ``NAME`` or ``NAME:key=value,key=value``.

        Raises
        ------
        ConfigError
            For an unknown attack, or a malformed or unknown parameter.
        """
        name, _, rest = text.partition(":")
        if name not in ATTACKS:
            raise ConfigError(f"unknown attack {name!r} (known: {', '.join(sorted(ATTACKS))})")
        params: dict[str, float] = {}
        for item in filter(None, rest.split(",")):
            key, sep, value = item.partition("=")
            if not sep or name not in _PARAMETRISED:
                raise ConfigError(f"attack parameter {item!r} is not key=value for {name!r}")
            try:
                params[key] = float(value)
            except ValueError:
                raise ConfigError(f"attack parameter {key!r} must be a number") from None
        plan = cls(name, params)
        if params:
            plan._check_params()
        return plan

    def _check_params(self) -> None:
        signature = inspect.signature(_PARAMETRISED[self.name])
        known = {p.name for p in signature.parameters.values() if p.kind is p.KEYWORD_ONLY}
        unknown = sorted(set(self.params) - known)
        if unknown:
            raise ConfigError(
                f"attack {self.name!r} has no parameter {unknown[0]!r} (known: {sorted(known)})"
            )

    def forge(self, ctx: AttackContext) -> State:
        """The forged update."""
        if self.params:
            return _PARAMETRISED[self.name](ctx, **self.params)
        forge = ATTACKS[self.name].forge
        if forge is None:
            return dict(ctx.own)
        return forge(ctx)


def local_update(
    spec: TaskSpec,
    base: Mapping[str, torch.Tensor],
    data: Dataset,
    *,
    round_id: int,
    node: str,
    attack: AttackPlan | None = None,
    members: int = 2,
    device: torch.device = CPU,
    amp: bool = False,
) -> LocalUpdate:
    """This node's update for a round.

    Parameters
    ----------
    spec
        The task.
    base
        The round's base weights.
    data
        The node's own examples.
    round_id
        The round (seeds the shuffling).
    node
        The node's address (seeds the shuffling).
    attack
        Forge the update with this attack instead of sending the honest one.
    members
        Members in the round (n, for attacks that scale with it).
    device
        Where to train (the update comes back as float32 CPU tensors either way).
    amp
        Train in bfloat16 autocast (CUDA only).

    Returns
    -------
    LocalUpdate
        The delta to publish, the sample count to reveal and the training loss.
    """
    seed = training_seed(spec.train, round_id, node)
    if attack is not None and ATTACKS[attack.name].flips_labels:
        data = Dataset(data.x, flip_labels(data.y, spec.data.num_classes))
    own = train_local(spec, base, data, seed=seed, device=device, amp=amp)
    if attack is None or ATTACKS[attack.name].forge is None:
        return own
    shards = np.array_split(np.arange(len(data)), min(ESTIMATE_SHARDS, len(data)))
    estimates = [
        train_local(spec, base, data.subset(shard), seed=seed + k, device=device, amp=amp).delta
        for k, shard in enumerate(shards)
        if len(shard)
    ]
    ctx = AttackContext(own.delta, estimates, 1, max(members, 2), seed)
    return LocalUpdate(attack.forge(ctx), own.num_samples, own.train_loss)
