"""What a running node reports: one `NodeEvent` per step of its progress.

A display, a log, a test or a benchmark subscribes by passing a callback to `SwarmNode`; the
headless CLI prints each event as a JSON line (``--events json``) or as a human line. Events are
reports, never inputs: the node's decisions depend only on the chain and its journal.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class EventKind(StrEnum):
    """The kinds of node events, roughly in the order a round produces them.

    The ``data`` of each kind holds (besides anything more):

    - STARTED: node, coordinator, chain_id, task, journal
    - JOINED: stake, index (sent only when this run joined)
    - ROUND: base_round, eligible, members, commit_deadline (the node saw a new round)
    - TRAINED: num_samples, train_loss, seconds, attack, slot_wait_s (with ``--train-slots``)
    - STORED: cid, update_cid, seconds, unreachable (active members left out of an encrypted
      update's recipients: their registered X25519 key can receive nothing)
    - COMMITTED / REVEALED / ATTESTED / FINALIZE_SENT / FAIL_SENT / SLASH_SENT / CLAIMED: tx,
      plus outcome fields (ATTESTED), node (SLASH_SENT) or amount (CLAIMED)
    - VERIFIED: accepted, rejected ({index: reason}), checkpoint_hash, rewards_root, seconds
    - FINALIZED: checkpoint_hash, checkpoint_cid, accepted, accuracy (of the new checkpoint on
      the reference set), reward (this node's), timings (seconds by part of the round)
    - FAILED: leading_stake, required_stake
    - SKIPPED: phase, reason (a deadline missed, a secret lost, not eligible)
    - RETRYING: error, delay (the chain or the store failed; the node retries)
    - STOPPED: reason
    """

    STARTED = "started"
    JOINED = "joined"
    ROUND = "round"
    TRAINED = "trained"
    STORED = "stored"
    COMMITTED = "committed"
    REVEALED = "revealed"
    VERIFIED = "verified"
    ATTESTED = "attested"
    FINALIZE_SENT = "finalize_sent"
    FAIL_SENT = "fail_sent"
    FINALIZED = "finalized"
    FAILED = "failed"
    SLASH_SENT = "slash_sent"
    CLAIMED = "claimed"
    SKIPPED = "skipped"
    RETRYING = "retrying"
    STOPPED = "stopped"


@dataclass(frozen=True)
class NodeEvent:
    """One step of a node's progress."""

    kind: EventKind
    round: int  # the round it concerns (0 before any)
    data: Mapping[str, Any] = field(default_factory=dict)  # JSON-ready details (see EventKind)
    time: float = field(default_factory=time.time)  # unix seconds when it happened

    def to_json(self) -> dict[str, Any]:
        """The event as one JSON object."""
        return {"kind": self.kind.value, "round": self.round, "time": self.time, **self.data}

    def line(self) -> str:
        """The event as one compact JSON line."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    def describe(self) -> str:
        """The event in words, for a log."""
        details = " ".join(f"{key}={value}" for key, value in sorted(self.data.items()))
        return f"round {self.round} {self.kind.value} {details}".rstrip()


EventSink = Callable[[NodeEvent], None]


def parse_event(line: str) -> NodeEvent:
    """Read back a line written by `NodeEvent.line`.

    Raises
    ------
    ValueError
        If the line is not such an event.
    """
    body = json.loads(line)
    if not isinstance(body, dict):
        raise ValueError(f"not an event: {line!r}")
    kind = EventKind(body.pop("kind"))
    round_id = body.pop("round")
    stamp = body.pop("time")
    return NodeEvent(kind, int(round_id), body, float(stamp))
