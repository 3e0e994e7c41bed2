"""`verify_submission` checks a revealed envelope CID before fetching anything: an envelope is
one raw block, so a CID naming a DAG (or nothing parseable) is rejected without a download."""

from __future__ import annotations

import pytest
from eth_utils.address import to_checksum_address

from swarmchain.node.protocol.task import default_task
from swarmchain.node.protocol.verify import (
    Rejected,
    RejectReason,
    RoundFrame,
    Submission,
    round_recipients,
    verify_submission,
)
from swarmchain.storage.cid import CID, DAG_PB, RAW
from swarmchain.storage.dag import build_dag
from swarmchain.storage.keys import NodeKeys

NODE = to_checksum_address("0x" + "01" * 20)
FRAME = RoundFrame(31337, NODE, 1, str(CID.of(RAW, b"base")), default_task())


class _CountingFetch:
    """A fetch that records every call and never returns bytes."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, cid: str, max_bytes: int) -> bytes:
        self.calls.append(cid)
        raise AssertionError(f"fetched {cid}")


def _submission(cid: str) -> Submission:
    return Submission(0, NODE, cid, bytes(32), 1, bytes(32))


def test_a_dag_pb_envelope_cid_is_rejected_before_any_fetch() -> None:
    root, _ = build_dag(bytes(300_000))  # two chunks: a dag-pb root
    assert root.codec == DAG_PB
    fetch = _CountingFetch()
    with pytest.raises(Rejected, match="not a single raw block") as rejected:
        verify_submission(_submission(str(root)), FRAME, fetch)
    assert rejected.value.reason == RejectReason.BAD_ENVELOPE
    assert fetch.calls == []


def test_an_unparsable_envelope_cid_is_rejected_before_any_fetch() -> None:
    fetch = _CountingFetch()
    with pytest.raises(Rejected) as rejected:
        verify_submission(_submission("QmNotACIDv1"), FRAME, fetch)
    assert rejected.value.reason == RejectReason.CID_MISMATCH
    assert fetch.calls == []


def test_round_recipients_are_the_valid_keys_staked_at_open_by_index() -> None:
    keys = [NodeKeys.generate().encryption_public for _ in range(3)]
    low_order = bytes([1]) + bytes(31)
    members = [(2, keys[2], 100), (0, keys[0], 100), (1, keys[1], 0), (3, low_order, 100)]

    # Member 1 held no stake when the round opened; member 3's key can receive nothing.
    assert round_recipients(members) == (keys[0], keys[2])
