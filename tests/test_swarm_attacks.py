"""Attacks by a minimum-stake member on a real Anvil with real honest node processes.

Each story runs three honest ``swarm node join`` processes and one attacker driven from this
process through the coordinator binding (it joins, commits and reveals what no honest node would
publish):

- encryption: the attacker tries to register the low-order X25519 point ``01 00..00`` (it once
  crashed every encrypting node inside PyNaCl; the contract now refuses it, and nodes leave such
  keys out of the recipients), then reveals an update whose content key is wrapped properly for
  two members and spoiled for the third (it once split the honest nodes into two tuples, and the
  round failed with nobody to blame);
- withholding: the attacker reveals an update whose blobs it keeps to itself, and publishes them
  only after the round (the auditor once re-ran the round with the late update accepted and
  reported MISMATCH for every later checkpoint).

In both, the honest nodes must finalize the round without the attacker, slash it, and exit
cleanly.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import pytest
import torch

from swarmchain.node.audit.record import SwarmRecord
from swarmchain.node.audit.replay import Auditor
from swarmchain.node.audit.report import AuditReport, Result
from swarmchain.node.chain.coordinator import Coordinator
from swarmchain.node.chain.deploy import connect
from swarmchain.node.chain.deployment import SwarmParams
from swarmchain.node.chain.events import ChainEvent, RoundFinalized, Slashed
from swarmchain.node.chain.protocol import Phase, Reveal, decode_bitmap
from swarmchain.node.chain.reverts import ContractRevert, InvalidPublicKey
from swarmchain.node.devtools.anvil import Anvil
from swarmchain.node.devtools.harness import SwarmHarness
from swarmchain.node.devtools.swarm import LocalSwarm
from swarmchain.node.protocol.document import fetch_task
from swarmchain.node.protocol.hashing import content_hash
from swarmchain.node.protocol.task import TaskSpec, default_task
from swarmchain.node.protocol.verify import RejectReason
from swarmchain.node.runtime.events import EventKind, NodeEvent
from swarmchain.storage.codec import encode_update
from swarmchain.storage.embedded import EmbeddedStore
from swarmchain.storage.envelope import ENCRYPTED_MAGIC, Manifest, encrypt_blob, sign_manifest
from swarmchain.storage.keys import NodeKeys

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

HONEST = 3
ROUND = 2  # the first counted round: round 1 opens before anyone joins and fails at once
WINDOW_S = 20  # every window closes early once all members acted
LOW_ORDER = bytes([1]) + bytes(31)  # an X25519 point of order 4: no secret can be agreed with it
WAIT_S = 240.0


@dataclass(frozen=True)
class Story:
    """What one attack left behind."""

    swarm: LocalSwarm
    attacker: str  # its address
    attacker_index: int  # its bit in accepted bitmaps
    events: list[ChainEvent]  # the coordinator's record
    node_events: list[list[NodeEvent]]  # each honest node's events
    audit: AuditReport | None  # after the attacker published late (withholding story only)
    refused: ContractRevert | None  # why the chain refused the attacker's first join, if it did


def light_task(*, encrypted: bool) -> TaskSpec:
    """The default task with one local epoch, optionally allowing encrypted updates."""
    spec = default_task()
    return replace(spec, train=replace(spec.train, local_epochs=1), encrypted_updates=encrypted)


def _wait(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)


class Attacker:
    """A member that publishes through the binding what no honest node would."""

    def __init__(self, swarm: LocalSwarm, x25519_key: bytes | None = None) -> None:
        harness = SwarmHarness(swarm.anvil, swarm.deployment, swarm.anvil.accounts[0].private_key)
        stake = swarm.deployment.params.min_stake
        member = harness.new_member(stake, label="attacker")
        self.client: Coordinator = member.client
        self.keys = NodeKeys.generate()
        self.refused: ContractRevert | None = None
        if x25519_key is not None:
            try:
                self.client.join(stake, self.keys.signing_public, x25519_key)
            except ContractRevert as err:
                self.refused = err
        self.client.join(stake, self.keys.signing_public, self.keys.encryption_public)
        self.address = self.client.account
        self.index = self.client.member_info().index
        self.spec = swarm.spec
        with EmbeddedStore(swarm.store) as store:
            _, self.genesis = fetch_task(store, *self.client.task_spec())

    def update(self) -> bytes:
        """A plausible update blob for the first counted round (small, non-zero, in bound)."""
        gen = torch.Generator().manual_seed(7)
        delta = {
            k: 0.01 * torch.randn(v.shape, generator=gen) for k, v in self.genesis.state.items()
        }
        return encode_update(delta)

    def envelope(self, blob: bytes, store: EmbeddedStore) -> bytes:
        """Sign a manifest for `blob` (stored in `store`)."""
        manifest = Manifest(
            chain_id=self.client.deployment.chain_id,
            coordinator=self.client.address,
            round=ROUND,
            node=self.address,
            base_cid=self.genesis.cid,
            update_cid=store.put(blob),
            content_hash="0x" + content_hash(blob).hex(),
            num_samples=50,
        )
        return sign_manifest(manifest, self.keys)

    def submit(self, envelope_cid: str, envelope: bytes) -> None:
        """Commit and reveal the envelope in the first counted round."""
        _wait(lambda: self.client.current_round() == ROUND, f"round {ROUND} to open")
        reveal = Reveal(envelope_cid, content_hash(envelope), 50, os.urandom(32))
        self.client.commit(ROUND, self.client.commitment_for(reveal, ROUND))
        _wait(lambda: self.client.round_info(ROUND).phase >= Phase.REVEAL, "the reveal window")
        self.client.reveal(ROUND, reveal)


def _params() -> SwarmParams:
    return SwarmParams.windows(WINDOW_S)


@contextmanager
def _attacked(
    workdir: Path,
    spec: TaskSpec,
    attack: Callable[[LocalSwarm, Attacker], None],
    *options: str,
    x25519_key: bytes | None = None,
) -> Iterator[tuple[LocalSwarm, Attacker, list[ChainEvent]]]:
    """Deploy, let the attacker join, run the honest nodes to the round after the attacked one
    while the attacker acts, and wait until it is slashed; the chain stays up inside."""
    with Anvil() as anvil:
        swarm = LocalSwarm.create(anvil, workdir, spec, HONEST, params=_params())
        with swarm:
            attacker = Attacker(swarm, x25519_key)
            common = ["--min-members", str(HONEST + 1), "--until-round", str(ROUND + 1)]
            for i in range(HONEST):
                swarm.start(i, *common, "--threads", "1", *options)
            attack(swarm, attacker)
            for process in swarm.processes.values():
                assert process.wait(timeout=WAIT_S) == 0, process.log_tail()
        coordinator = Coordinator(connect(anvil.rpc_url), swarm.deployment)
        slashed = partial(_slashed, coordinator, attacker.address)
        _wait(lambda: bool(slashed()), "the attacker's slash")
        yield swarm, attacker, coordinator.events()


def _slashed(coordinator: Coordinator, node: str) -> list[Slashed]:
    return [e for e in coordinator.events() if isinstance(e, Slashed) and e.node == node]


def _spoil_one_wrap(swarm: LocalSwarm, attacker: Attacker) -> None:
    """Wrap the content key properly for two honest members and spoil it for the second."""
    _wait(lambda: attacker.client.current_round() == ROUND, f"round {ROUND} to open")
    keys = [attacker.client.member_info(m.address).x25519_key for m in swarm.members]
    sealed = bytearray(encrypt_blob(attacker.update(), keys))
    sealed[len(ENCRYPTED_MAGIC) + 32 + 2 + (32 + 48) + 32 + 3] ^= 0x10
    with EmbeddedStore(swarm.store) as store:
        envelope = attacker.envelope(bytes(sealed), store)
        attacker.submit(store.put(envelope), envelope)


@pytest.fixture(scope="module")
def encryption(tmp_path_factory: pytest.TempPathFactory) -> Story:
    workdir = tmp_path_factory.mktemp("attack-encryption")
    spec = light_task(encrypted=True)
    with _attacked(workdir, spec, _spoil_one_wrap, "--encrypt", x25519_key=LOW_ORDER) as run:
        swarm, attacker, events = run
    node_events = [list(p.events) for p in swarm.processes.values()]
    return Story(
        swarm, attacker.address, attacker.index, events, node_events, None, attacker.refused
    )


@pytest.fixture(scope="module")
def withholding(tmp_path_factory: pytest.TempPathFactory) -> Story:
    workdir = tmp_path_factory.mktemp("attack-withholding")
    hidden = workdir / "attacker-store"
    late: list[tuple[bytes, bytes]] = []  # (envelope, update blob), published after the round

    def withhold(swarm: LocalSwarm, attacker: Attacker) -> None:
        blob = attacker.update()
        with EmbeddedStore(hidden) as store:
            envelope = attacker.envelope(blob, store)
            attacker.submit(store.put(envelope), envelope)
        late.append((envelope, blob))

    with _attacked(workdir, light_task(encrypted=False), withhold) as run:
        swarm, attacker, events = run
        with EmbeddedStore(swarm.store) as store:
            for envelope, blob in late:
                store.put(envelope)
                store.put(blob)
            report = Auditor(SwarmRecord.of(events), swarm.deployment, store).audit("latest")
    node_events = [list(p.events) for p in swarm.processes.values()]
    return Story(swarm, attacker.address, attacker.index, events, node_events, report, None)


def _verified(story: Story, round_id: int) -> list[NodeEvent]:
    return [
        e for events in story.node_events for e in events
        if e.kind == EventKind.VERIFIED and e.round == round_id
    ]  # fmt: skip


def _finalized(story: Story, round_id: int) -> RoundFinalized:
    (final,) = [e for e in story.events if isinstance(e, RoundFinalized) and e.round == round_id]
    return final


def test_a_spoiled_wrap_is_rejected_alike_by_every_honest_node(encryption: Story) -> None:
    verified = _verified(encryption, ROUND)

    assert len(verified) == HONEST
    reason = RejectReason.UNDECRYPTABLE.value
    assert all(e.data["rejected"] == {str(encryption.attacker_index): reason} for e in verified)
    final = _finalized(encryption, ROUND)
    assert encryption.attacker_index not in decode_bitmap(final.outcome.accepted_bitmap)
    assert len({e.data["checkpoint_hash"] for e in verified}) == 1


def test_the_splitting_member_is_slashed_and_the_swarm_moves_on(encryption: Story) -> None:
    slashes = [e for e in encryption.events if isinstance(e, Slashed)]

    assert [(e.round, e.node) for e in slashes] == [(ROUND, encryption.attacker)]
    assert _finalized(encryption, ROUND + 1).round == ROUND + 1


def test_a_low_order_key_is_refused_at_join(encryption: Story) -> None:
    stored = [
        e for events in encryption.node_events for e in events
        if e.kind == EventKind.STORED and e.round == ROUND
    ]  # fmt: skip

    assert isinstance(encryption.refused, InvalidPublicKey)
    assert len(stored) == HONEST  # every encrypting node published
    assert all(e.data["unreachable"] == [] for e in stored)


def test_a_withheld_update_is_rejected_as_unavailable_and_slashed(withholding: Story) -> None:
    verified = _verified(withholding, ROUND)
    reason = RejectReason.UNAVAILABLE.value

    assert all(e.data["rejected"] == {str(withholding.attacker_index): reason} for e in verified)
    assert [(e.round, e.node) for e in withholding.events if isinstance(e, Slashed)] == [
        (ROUND, withholding.attacker)
    ]


def test_an_update_published_after_its_round_keeps_the_audit_a_match(withholding: Story) -> None:
    report = withholding.audit
    assert report is not None

    assert report.result == Result.MATCH, report.first_mismatch
    assert report.checkpoint_round == ROUND + 1
    (attacked,) = [r for r in report.rounds if r.round == ROUND]
    assert f"Member(s) {withholding.attacker_index}" in attacked.note
    (line,) = [u for u in attacked.updates if u.node == withholding.attacker]
    assert (line.accepted, line.reason) == (False, RejectReason.UNAVAILABLE.value)
