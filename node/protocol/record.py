"""What a round's inputs read from the coordinator's events: one reader for node and auditor.

Every function here is a pure function of the coordinator's events in chain order (from its
deployment block), so a node (`swarmchain.node.runtime.history.ChainHistory`) and an auditor
(`swarmchain.node.audit.record.SwarmRecord`) that hold the same events read the same members,
submissions, recipients and reward.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from swarmchain.node.chain.events import (
    ChainEvent,
    ExitRequested,
    Joined,
    Revealed,
    RewardsFunded,
    RoundFinalized,
    RoundOpened,
    Slashed,
    SwarmConfigured,
)
from swarmchain.node.protocol.verify import Submission, round_recipients
from swarmchain.storage.envelope import valid_x25519_key


@dataclass(frozen=True)
class MemberKeys:
    """A member's index and registered public keys (from a `Joined`)."""

    node: str  # checksummed address
    index: int  # the member's bitmap index
    ed25519_key: bytes  # signs update envelopes
    x25519_key: bytes  # receives encrypted updates

    @classmethod
    def of(cls, joined: Joined) -> MemberKeys:
        """The keys a `Joined` event registers."""
        return cls(joined.node, joined.index, joined.ed25519_key, joined.x25519_key)


def configured(events: Sequence[ChainEvent]) -> SwarmConfigured:
    """The coordinator's `SwarmConfigured` (its task and immutable parameters).

    Raises
    ------
    ValueError
        If the events lack it (the scan started after the deployment block).
    """
    for e in events:
        if isinstance(e, SwarmConfigured):
            return e
    raise ValueError("the events hold no SwarmConfigured: read them from the deployment block")


def members(events: Sequence[ChainEvent]) -> dict[str, MemberKeys]:
    """Every member that ever joined, by address, with its latest keys."""
    return {e.node: MemberKeys.of(e) for e in events if isinstance(e, Joined)}


def opened(events: Sequence[ChainEvent], round_id: int) -> RoundOpened:
    """The round's `RoundOpened` (its seed and base round).

    Raises
    ------
    ValueError
        If the events do not reach the round's opening.
    """
    for e in events:
        if isinstance(e, RoundOpened) and e.round == round_id:
            return e
    raise ValueError(f"the events do not include the opening of round {round_id}")


def _joined_at_open(events: Sequence[ChainEvent], round_id: int) -> dict[str, Joined]:
    """The `Joined` of each member active when the round opened: the keys it had then."""
    active: dict[str, Joined] = {}
    for e in events:
        if isinstance(e, Joined):
            active[e.node] = e
        elif isinstance(e, ExitRequested):
            active.pop(e.node, None)
        elif isinstance(e, RoundOpened) and e.round == round_id:
            return active
    raise ValueError(f"the events do not include the opening of round {round_id}")


def recipients(events: Sequence[ChainEvent], round_id: int) -> tuple[bytes, ...]:
    """Who an encrypted update of the round must be wrapped for (`round_recipients`).

    Raises
    ------
    ValueError
        If the events do not reach the round's opening.
    """
    active = _joined_at_open(events, round_id).values()
    return round_recipients((e.index, e.x25519_key, 1) for e in active)


def unreachable(events: Sequence[ChainEvent], round_id: int) -> list[str]:
    """Members active in the round whose X25519 key can receive nothing (left out of
    `recipients`).

    Raises
    ------
    ValueError
        If the events do not reach the round's opening.
    """
    active = _joined_at_open(events, round_id).values()
    return [e.node for e in active if not valid_x25519_key(e.x25519_key)]


def submissions_by_round(events: Sequence[ChainEvent]) -> dict[int, tuple[Submission, ...]]:
    """Every round's revealed updates, in chain order, with the keys each member had at its reveal.

    Parameters
    ----------
    events
        The coordinator's events in chain order.

    Returns
    -------
    dict[int, tuple[Submission, ...]]
        Round id -> one `Submission` per `Revealed` of the round (rounds without reveals absent).
    """
    registered: dict[str, Joined] = {}
    out: dict[int, list[Submission]] = {}
    for e in events:
        if isinstance(e, Joined):
            registered[e.node] = e
        elif isinstance(e, Revealed):
            keys = registered[e.node]
            out.setdefault(e.round, []).append(
                Submission(
                    index=keys.index,
                    node=e.node,
                    cid=e.cid,
                    content_hash=e.content_hash,
                    num_samples=e.num_samples,
                    signer=keys.ed25519_key,
                )
            )
    return {r: tuple(subs) for r, subs in out.items()}


def submissions(events: Sequence[ChainEvent], round_id: int) -> tuple[Submission, ...]:
    """One round's revealed updates (`submissions_by_round`)."""
    return submissions_by_round(events).get(round_id, ())


def reward_for_round(events: Sequence[ChainEvent], round_id: int, reward_per_round: int) -> int:
    """Tokens a round pays: ``min(rewardPerRound, reward pool when the round opened)``.

    The pool only grows between a round's opening and its finalization (slashes and funding add
    to it; only finalization draws from it, exactly the finalized tree's total), so the pool at
    finalization always covers a tree that pays at most this amount.

    Parameters
    ----------
    events
        The coordinator's events in chain order, at least up to the round's `RoundOpened`.
    round_id
        The round.
    reward_per_round
        The coordinator's ``rewardPerRound`` parameter.

    Returns
    -------
    int
        The round's reward.

    Raises
    ------
    ValueError
        If the events do not reach the round's opening.
    """
    pool = 0
    for event in events:
        if isinstance(event, RewardsFunded | Slashed):
            pool += event.amount
        elif isinstance(event, RoundFinalized):
            pool -= event.reward_budget
        elif isinstance(event, RoundOpened) and event.round == round_id:
            return min(reward_per_round, pool)
    raise ValueError(f"the events do not include the opening of round {round_id}")
