"""How much of a round's reward a member earns without private data, and print JSON.

Six members split the default task's training pool by Dirichlet(0.5) label skew and train the
digits MLP honestly for 2, 4 or 8 rounds with the real round function (`combine_round`: sample
cap, screened centered clipping, exact Shapley over the reference set, 1,000 tokens a round).
Then one round is played again with member 5 (or members 4 and 5) cheating, and its or their
share of that round's reward is read from the settled amounts:

- ``honest``: member 5 trains on its own data (the baseline);
- ``reference_trained``: member 5 has no data and trains on the public reference set;
- ``sybil_pair_honest`` / ``sybil_pair_reference``: members 4 and 5 together, honest, or both
  trained on the reference set with different shuffles;
- ``replay_step``: member 5 re-sends the step the swarm took last round;
- ``replay_update``: member 5 re-sends member 0's update of the previous round.

Each over ``--seeds`` seeds; ``no_private_data_share`` and ``replay_share`` are the worst cases
(fractions of the round's reward) of the reference-trained rows and of the replays. The goal is
at most 0.05 and 0.

``sealed`` simulates the remedy of a reference set sealed until each round's commitments are
fixed: every round is valued on a fresh slice of 60 held-out examples, never reused, and the
member without data trains on every slice revealed before (public by then), since the current
one is out of its reach. ``sealed_no_private_data_share`` is its worst case.

``honest_runs`` counts the honest updates the free-rider rules rejected over ``--honest-rounds``
rounds of 10 honest members, with Dirichlet(0.5) skew and with IID data
(alpha 100); the goal is none.

Usage: ``.venv/bin/python scripts/bench_farming.py [--seeds 3] [--honest-rounds 30]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, replace
from typing import Any

import torch

from swarmchain.node.aggregation.randomness import derive_seed
from swarmchain.node.learning.data import Dataset, holdout_split, task_splits
from swarmchain.node.learning.partition import dirichlet_partition
from swarmchain.node.learning.training import (
    State,
    genesis_state,
    train_local,
    training_seed,
)
from swarmchain.node.protocol.checkpoint import encode_checkpoint
from swarmchain.node.protocol.round import Contribution, RoundInputs, RoundResult, combine_round
from swarmchain.node.protocol.task import TaskSpec, default_task
from swarmchain.node.protocol.verify import RejectReason

MEMBERS = 6
REWARD = 1_000
DEPTHS = (2, 4, 8)  # honest rounds before the measured one
ROWS = (
    "honest",
    "reference_trained",
    "sybil_pair_honest",
    "sybil_pair_reference",
    "replay_step",
    "replay_update",
)


@dataclass
class Swarm:
    """One simulated swarm: its members' data and where training has got to."""

    spec: TaskSpec
    data: list[Dataset]
    reference: Dataset
    seed: int
    state: State
    step: State | None = None  # the step that produced `state`
    previous: list[State] | None = None  # every member's update of the last round
    played: int = 0  # rounds played so far

    def train(self, member: int, data: Dataset, salt: str = "") -> Contribution:
        """Member `member` trains from the current state on `data`."""
        seed = training_seed(self.spec.train, self.played, f"{self.seed}/{member}{salt}")
        update = train_local(self.spec, self.state, data, seed=seed)
        return Contribution(member, _address(member), update.num_samples, update.delta)

    def play(self, contributions: list[Contribution]) -> RoundResult:
        """Combine one round's contributions with the real round function."""
        spec = self.spec
        inputs = RoundInputs(
            chain_id=31337,
            coordinator=_address(99),
            round=self.played + 2,
            seed=derive_seed("farming", self.seed, self.played).to_bytes(32, "big"),
            reward=REWARD,
            spec=spec,
            base=encode_checkpoint(self.state),
            step=self.step,
            reference=self.reference,
            submissions=(),
        )
        return combine_round(inputs, contributions)

    def advance(self) -> RoundResult:
        """One honest round: everybody trains on its own data; the round's result."""
        contributions = [self.train(i, d) for i, d in enumerate(self.data)]
        result = self.play(contributions)
        new = result.checkpoint.state
        self.step = {k: new[k] - self.state[k] for k in new}
        self.previous = [c.delta for c in contributions]
        self.state = new
        self.played += 1
        return result


def _address(member: int) -> str:
    return f"0x{member + 1:040x}"


def new_swarm(spec: TaskSpec, members: int, alpha: float, seed: int) -> Swarm:
    """A swarm of `members` with Dirichlet(alpha) label skew, at the genesis of `seed`."""
    pool, reference = task_splits(spec)
    train, _ = holdout_split(pool, 300, seed)
    parts = dirichlet_partition(
        train.y.numpy(), members, alpha, seed, min_size=spec.train.batch_size // 2
    )
    reseeded = replace(spec, train=replace(spec.train, seed=seed))
    data = [train.subset(p) for p in parts]
    return Swarm(spec, data, reference, seed, genesis_state(reseeded))


def _share(result: RoundResult, members: list[int]) -> float:
    return sum(result.amounts.get(_address(m), 0) for m in members) / REWARD


def measured_round(swarm: Swarm, row: str) -> float:
    """The cheaters' share of one round played with `row`'s behaviour."""
    honest = [swarm.train(i, d) for i, d in enumerate(swarm.data)]
    played = list(honest)
    cheaters = [5]
    if row == "reference_trained":
        played[5] = swarm.train(5, swarm.reference)
    elif row == "sybil_pair_honest":
        cheaters = [4, 5]
    elif row == "sybil_pair_reference":
        cheaters = [4, 5]
        played[4] = swarm.train(4, swarm.reference, salt="a")
        played[5] = swarm.train(5, swarm.reference, salt="b")
    elif row == "replay_step":
        assert swarm.step is not None
        played[5] = replace(honest[5], delta=swarm.step)
    elif row == "replay_update":
        assert swarm.previous is not None
        played[5] = replace(honest[5], delta=swarm.previous[0])
    return _share(swarm.play(played), cheaters)


def bench_rows(spec: TaskSpec, seeds: int) -> dict[str, Any]:
    """Every row's share at every depth and seed."""
    shares: dict[str, dict[int, list[float]]] = {row: {d: [] for d in DEPTHS} for row in ROWS}
    for seed in range(seeds):
        swarm = new_swarm(spec, MEMBERS, 0.5, seed)
        for depth in DEPTHS:
            while swarm.played < depth:
                swarm.advance()
            for row in ROWS:
                shares[row][depth].append(measured_round(swarm, row))
            _progress(f"seed {seed}, {depth} rounds before: done")
    return {row: {str(d): v for d, v in by_depth.items()} for row, by_depth in shares.items()}


SLICE = 60  # examples per sealed reference slice


def sealed_rows(spec: TaskSpec, seeds: int) -> dict[str, Any]:
    """Member 5's share, honest and trained on the revealed slices, with sealed references."""
    shares: dict[str, dict[int, list[float]]] = {
        row: {d: [] for d in DEPTHS} for row in ("honest", "past_slices_trained")
    }
    for seed in range(seeds):
        swarm = new_swarm(spec, MEMBERS, 0.5, seed)
        pool, reference = task_splits(spec)
        _, test = holdout_split(pool, 300, seed)
        sealed = Dataset(torch.cat([reference.x, test.x]), torch.cat([reference.y, test.y]))

        for depth in DEPTHS:
            while swarm.played < depth:
                swarm.reference = _slices(sealed, swarm.played, swarm.played + 1)
                swarm.advance()
            swarm.reference = _slices(sealed, depth, depth + 1)
            honest = [swarm.train(i, d) for i, d in enumerate(swarm.data)]
            farmed = [*honest[:5], swarm.train(5, _slices(sealed, 0, depth))]
            shares["honest"][depth].append(_share(swarm.play(honest), [5]))
            shares["past_slices_trained"][depth].append(_share(swarm.play(farmed), [5]))
    return {row: {str(d): v for d, v in by_depth.items()} for row, by_depth in shares.items()}


def _slices(sealed: Dataset, first: int, last: int) -> Dataset:
    """Sealed slices ``first .. last - 1`` together."""
    return sealed.subset(range(first * SLICE, last * SLICE))


def honest_rejections(spec: TaskSpec, seeds: int, rounds: int, alpha: float) -> dict[str, int]:
    """Honest updates the free-rider rules rejected, over whole honest runs of 10 members."""
    rejected = updates = 0
    for seed in range(seeds):
        swarm = new_swarm(spec, 10, alpha, seed)
        for _ in range(rounds):
            result = swarm.advance()
            rejected += sum(v.reason == RejectReason.FREE_RIDER for v in result.verdicts)
            updates += len(result.verdicts)
    return {"updates": updates, "rejected": rejected}


def _worst(rows: dict[str, Any], names: tuple[str, ...]) -> float:
    return max(v for name in names for values in rows[name].values() for v in values)


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> None:
    """Run the benchmark and print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="swarms per row")
    parser.add_argument("--honest-rounds", type=int, default=30, help="rounds of honest runs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = default_task()
    rows = bench_rows(spec, args.seeds)
    sealed = sealed_rows(spec, args.seeds)

    def honest(alpha: float) -> dict[str, int]:
        return honest_rejections(spec, args.seeds, args.honest_rounds, alpha)

    report = {
        "setup": {"members": MEMBERS, "reward": REWARD, "seeds": args.seeds, "depths": DEPTHS},
        "rows": rows,
        "no_private_data_share": _worst(rows, ("reference_trained", "sybil_pair_reference")),
        "replay_share": _worst(rows, ("replay_step", "replay_update")),
        "sealed": sealed,
        "sealed_no_private_data_share": _worst(sealed, ("past_slices_trained",)),
        "honest_runs": {"dirichlet_0.5": honest(0.5), "iid": honest(100.0)},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
