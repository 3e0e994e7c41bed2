"""Storage faults between real stores over HTTP: a peer serving corrupted bytes is caught by the
CID check and its bytes are never stored or decoded; an unreachable peer is a transient
`BlockNotFound` the node retries, and the fetch succeeds once the peer is back."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from eth_utils.address import to_checksum_address
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from swarmchain.node.learning.training import genesis_state
from swarmchain.node.protocol.checkpoint import Checkpoint, encode_checkpoint
from swarmchain.node.protocol.hashing import content_hash
from swarmchain.node.protocol.task import TaskSpec, default_task
from swarmchain.node.protocol.verify import (
    Rejected,
    RejectReason,
    RoundFrame,
    Submission,
    verify_submission,
)
from swarmchain.storage.cid import CID
from swarmchain.storage.codec import encode_update
from swarmchain.storage.embedded import EmbeddedStore
from swarmchain.storage.envelope import Manifest, sign_manifest
from swarmchain.storage.errors import BlockNotFound, TamperedBlock
from swarmchain.storage.keys import NodeKeys
from swarmchain.storage.server import BlockServer

CHAIN_ID = 31337
COORDINATOR = to_checksum_address("0x" + "ab" * 20)
NODE = to_checksum_address("0x" + "01" * 20)
ROUND = 3
BIG = bytes(range(256)) * 4096  # 1 MiB: several leaf blocks under a dag-pb root


class CorruptingStore:
    """What a hostile peer serves: the real blocks, each with one bit flipped."""

    def __init__(self, store: EmbeddedStore) -> None:
        self.store = store
        self.served = 0

    def read_block(self, cid: CID) -> bytes | None:
        block = self.store.read_block(cid)
        if block is None:
            return None
        self.served += 1
        return bytes([block[0] ^ 1]) + block[1:]


@pytest.fixture
def origin(tmp_path: Path) -> Iterator[EmbeddedStore]:
    with EmbeddedStore(tmp_path / "origin") as store:
        yield store


@pytest.fixture
def honest(origin: EmbeddedStore) -> Iterator[BlockServer]:
    with BlockServer(origin) as server:
        yield server


@pytest.fixture
def corrupting(origin: EmbeddedStore) -> Iterator[tuple[BlockServer, CorruptingStore]]:
    lies = CorruptingStore(origin)
    with BlockServer(lies) as server:  # type: ignore[arg-type]
        yield server, lies


def test_a_corrupting_peer_is_skipped_for_an_honest_one(
    tmp_path: Path,
    origin: EmbeddedStore,
    honest: BlockServer,
    corrupting: tuple[BlockServer, CorruptingStore],
) -> None:
    cid = origin.put(BIG)
    liar, lies = corrupting
    with EmbeddedStore(tmp_path / "reader", peers=[liar.url, honest.url]) as reader:
        assert reader.get(cid) == BIG
        assert lies.served > 1  # every block was offered corrupted first
        assert reader.get(cid) == BIG  # and what was stored is the honest copy


def test_bytes_only_a_corrupting_peer_serves_are_refused_and_never_stored(
    tmp_path: Path, origin: EmbeddedStore, corrupting: tuple[BlockServer, CorruptingStore]
) -> None:
    cid = origin.put(BIG)
    liar, lies = corrupting
    with EmbeddedStore(tmp_path / "reader", peers=[liar.url]) as reader:
        with pytest.raises(TamperedBlock, match=liar.url):
            reader.get(cid)
        assert lies.served == 1  # the root block: nothing below it was even asked for
        assert not reader.has(cid)
        assert reader.read_block(CID.parse(cid)) is None


@pytest.fixture(scope="module")
def spec() -> TaskSpec:
    return default_task()


def _publish(store: EmbeddedStore, spec: TaskSpec, base: Checkpoint) -> Submission:
    keys = NodeKeys(SigningKey(b"\x07" * 32), PrivateKey(b"\x08" * 32))
    generator = torch.Generator().manual_seed(0)
    delta = {k: 0.01 * torch.randn(v.shape, generator=generator) for k, v in base.state.items()}
    blob = encode_update(delta)
    manifest = Manifest(
        chain_id=CHAIN_ID,
        coordinator=COORDINATOR,
        round=ROUND,
        node=NODE,
        base_cid=base.cid,
        update_cid=store.put(blob),
        content_hash="0x" + content_hash(blob).hex(),
        num_samples=50,
    )
    envelope = sign_manifest(manifest, keys)
    return Submission(
        index=0,
        node=NODE,
        cid=store.put(envelope),
        content_hash=content_hash(envelope),
        num_samples=50,
        signer=keys.signing_public,
    )


def test_an_update_served_only_corrupted_is_rejected_by_its_cid_never_decoded(
    tmp_path: Path,
    spec: TaskSpec,
    origin: EmbeddedStore,
    honest: BlockServer,
    corrupting: tuple[BlockServer, CorruptingStore],
) -> None:
    base = encode_checkpoint(genesis_state(spec))
    sub = _publish(origin, spec, base)
    frame = RoundFrame(CHAIN_ID, COORDINATOR, ROUND, base.cid, spec)
    liar, _ = corrupting
    with EmbeddedStore(tmp_path / "fooled", peers=[liar.url]) as fooled:
        with pytest.raises(Rejected) as rejected:
            verify_submission(sub, frame, lambda cid, limit: fooled.get(cid, max_size=limit))
        assert rejected.value.reason == RejectReason.CID_MISMATCH
        assert not fooled.has(sub.cid)
    with EmbeddedStore(tmp_path / "careful", peers=[liar.url, honest.url]) as careful:
        verified = verify_submission(
            sub, frame, lambda cid, limit: careful.get(cid, max_size=limit)
        )
    assert verified.manifest.num_samples == 50


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_peer_is_retryable_and_the_fetch_succeeds_once_it_is_back(
    tmp_path: Path, origin: EmbeddedStore
) -> None:
    cid = origin.put(b"an update the peer holds")
    port = _free_port()
    with EmbeddedStore(tmp_path / "reader", peers=[f"http://127.0.0.1:{port}"]) as reader:
        with pytest.raises(BlockNotFound, match="ConnectError"):  # the node retries this kind
            reader.get(cid)
        with BlockServer(origin, port=port):
            assert reader.get(cid) == b"an update the peer holds"
