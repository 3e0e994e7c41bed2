"""This node's update for a round: train it, encode, (encrypt,) store, sign and journal it.

The journal holds the reveal's secret (its salt) before the commitment that depends on it can
be sent, so a node restarted between the two reveals what it committed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from swarmchain.node.chain.protocol import Reveal
from swarmchain.node.learning.training import LocalUpdate
from swarmchain.node.protocol.checkpoint import Checkpoint
from swarmchain.node.protocol.hashing import content_hash
from swarmchain.node.runtime.clock import RoundClock
from swarmchain.node.runtime.events import EventKind
from swarmchain.node.runtime.journal import Record
from swarmchain.node.runtime.local import local_update
from swarmchain.node.runtime.session import Emit, Session
from swarmchain.storage.codec import encode_update
from swarmchain.storage.envelope import Manifest, encrypt_blob, sign_manifest


@dataclass(frozen=True)
class Published:
    """An update in the store, ready to commit."""

    reveal: Reveal  # what the node will reveal (envelope CID and hash, samples, salt)
    update_cid: str  # the (possibly encrypted) update blob
    unreachable: list[str]  # members whose X25519 key can receive nothing (encrypted only)


def train(session: Session, round_id: int, base: Checkpoint, members: int) -> LocalUpdate:
    """Train this node's update from the round's base (or make its configured attack).

    Parameters
    ----------
    session
        The node's session (spec, data, attack).
    round_id
        The round (it seeds the training).
    base
        The round's base checkpoint.
    members
        Members active when the round opened (some attacks scale with it).

    Returns
    -------
    LocalUpdate
        The update, its sample count and training loss.
    """
    return local_update(
        session.spec,
        base.state,
        session.data,
        round_id=round_id,
        node=session.address,
        attack=session.config.attack,
        members=members,
        device=session.device,
        amp=session.config.amp,
    )


def publish(session: Session, round_id: int, base: Checkpoint, update: LocalUpdate) -> Published:
    """Encode, (encrypt,) store and sign an update; choose the reveal's secret salt.

    Parameters
    ----------
    session
        The node's session (store, keys, history for the recipients).
    round_id
        The round.
    base
        The checkpoint the update was trained from.
    update
        The trained update.

    Returns
    -------
    Published
        The reveal to commit to and where the blobs are.

    Raises
    ------
    StorageError
        If the store cannot take the blobs.
    """
    blob = encode_update(update.delta)
    unreachable: list[str] = []
    if session.config.encrypt:
        session.history.refresh()
        blob = encrypt_blob(blob, session.history.recipients(round_id))
        unreachable = session.history.unreachable(round_id)
    update_cid = session.store.put(blob)
    manifest = Manifest(
        chain_id=session.deployment.chain_id,
        coordinator=session.coordinator.address,
        round=round_id,
        node=session.address,
        base_cid=base.cid,
        update_cid=update_cid,
        content_hash="0x" + content_hash(blob).hex(),
        num_samples=update.num_samples,
        metrics={"train_loss": float(update.train_loss)},
    )
    envelope = sign_manifest(manifest, session.keys)
    envelope_cid = session.store.put(envelope)
    reveal = Reveal(envelope_cid, content_hash(envelope), update.num_samples, os.urandom(32))
    return Published(reveal, update_cid, unreachable)


def journal_update(
    session: Session, round_id: int, base: Checkpoint, published: Published
) -> Record:
    """Journal the update's reveal and commitment (before the commitment is sent)."""
    reveal = published.reveal
    return session.journal.append(
        "update",
        round=round_id,
        base_cid=base.cid,
        cid=reveal.cid,
        content_hash="0x" + reveal.content_hash.hex(),
        update_cid=published.update_cid,
        num_samples=reveal.num_samples,
        salt="0x" + reveal.salt.hex(),
        commitment="0x" + session.coordinator.commitment_for(reveal, round_id).hex(),
    )


class Publisher:
    """Trains and publishes this node's updates, timing each part and reporting it.

    Parameters
    ----------
    session
        The node's session.
    clock, emit
        Each round's clock and the node's event sink.
    """

    def __init__(self, session: Session, clock: Callable[[int], RoundClock], emit: Emit) -> None:
        self.session = session
        self.clock = clock
        self.emit = emit

    def train(self, round_id: int, base: Checkpoint, members: int) -> tuple[LocalUpdate, float]:
        """Train the round's update (`train`); the update and the seconds it took."""
        started = time.monotonic()
        update = train(self.session, round_id, base, members)
        return update, time.monotonic() - started

    def trained(
        self, round_id: int, update: LocalUpdate, seconds: float, waited: dict[str, float]
    ) -> None:
        """Count and report a trained update (`waited`: the TRAINED event's slot wait)."""
        attack = self.session.config.attack
        self.clock(round_id).add("training", seconds)
        self.emit(
            EventKind.TRAINED,
            round_id,
            num_samples=update.num_samples,
            train_loss=round(update.train_loss, 6),
            seconds=round(seconds, 4),
            **waited,
            attack=None if attack is None else attack.name,
        )

    def publish(self, round_id: int, base: Checkpoint, update: LocalUpdate) -> Record:
        """Store and sign the update (`publish`), report it, and journal its secret."""
        started = time.monotonic()
        published = publish(self.session, round_id, base, update)
        seconds = time.monotonic() - started
        self.clock(round_id).add("storage", seconds)
        self.emit(
            EventKind.STORED,
            round_id,
            cid=published.reveal.cid,
            update_cid=published.update_cid,
            seconds=round(seconds, 4),
            unreachable=published.unreachable,
        )
        return journal_update(self.session, round_id, base, published)


def reveal_of(record: Record) -> Reveal:
    """The reveal a journaled ``update`` record holds."""
    return Reveal(
        cid=record["cid"],
        content_hash=bytes.fromhex(record["content_hash"][2:]),
        num_samples=int(record["num_samples"]),
        salt=bytes.fromhex(record["salt"][2:]),
    )
