"""The audit's view of the chain: events grouped by round, lineage back to genesis."""

from __future__ import annotations

import pytest

from swarmchain.node.audit.record import RoundState, SwarmRecord
from swarmchain.node.chain.events import (
    ChainEvent,
    Joined,
    Revealed,
    RoundFailed,
    RoundFinalized,
    RoundOpened,
    Slashed,
    SwarmConfigured,
)
from swarmchain.node.chain.protocol import CoordinatorParams, Outcome, SlashReason
from swarmchain.node.errors import ConfigError
from swarmchain.node.protocol.record import members, opened, submissions

ALICE = "0x" + "aa" * 20
BOB = "0x" + "bb" * 20
PARAMS = CoordinatorParams(6667, 1000, 60, 60, 60, 3600, 100, 1000)


class _Chain:
    """Builds events in chain order, one block each."""

    def __init__(self) -> None:
        self.events: list[ChainEvent] = []

    def _meta(self) -> dict[str, object]:
        n = len(self.events)
        return {"block_number": n + 1, "log_index": 0, "tx_hash": f"0x{n:064x}"}

    def add(self, cls: type[ChainEvent], **fields: object) -> None:
        self.events.append(cls(**self._meta(), **fields))  # type: ignore[arg-type]

    def opened(self, r: int, base: int) -> None:
        self.add(
            RoundOpened,
            round=r,
            base_round=base,
            base_checkpoint_hash=bytes(32),
            seed=bytes([r]) * 32,
            stake_at_open=200,
            active_at_open=2,
            commit_deadline=100 * r,
        )

    def finalized(self, r: int, cid: str) -> None:
        outcome = Outcome(bytes([r]) * 32, cid, b"\x03", bytes(32), 0)
        self.add(
            RoundFinalized,
            round=r,
            caller=ALICE,
            outcome_key=bytes([r]) * 32,
            outcome=outcome,
            outcome_stake=200,
            stake_at_open=200,
        )

    def failed(self, r: int, base: int) -> None:
        self.add(
            RoundFailed, round=r, caller=ALICE, base_round=base, leading_stake=0, required_stake=134
        )


@pytest.fixture
def chain() -> _Chain:
    """Round 1 fails, 2 finalizes from genesis, 3 fails, 4 finalizes from 2, 5 is open."""
    c = _Chain()
    c.add(
        SwarmConfigured,
        round=1,
        token=BOB,
        task_spec_hash=bytes(32),
        task_spec_cid="bafktask",
        params=PARAMS,
    )
    c.opened(1, 0)
    for i, node in enumerate((ALICE, BOB)):
        c.add(
            Joined,
            round=1,
            node=node,
            index=i,
            stake=100,
            ed25519_key=bytes([i]) * 32,
            x25519_key=bytes(32),
        )
    c.failed(1, 0)
    c.opened(2, 0)
    c.add(
        Revealed,
        round=2,
        node=BOB,
        cid="bafkbob2",
        content_hash=bytes(32),
        num_samples=7,
        salt=bytes(32),
    )
    c.finalized(2, "bafkcheckpoint2")
    c.opened(3, 2)
    c.add(Slashed, round=2, node=BOB, reason=SlashReason.REJECTED, amount=10, remaining_stake=90)
    c.failed(3, 2)
    c.opened(4, 2)
    c.finalized(4, "bafkcheckpoint4")
    c.opened(5, 4)
    return c


def test_rounds_group_their_events(chain: _Chain) -> None:
    record = SwarmRecord.of(chain.events)

    assert [r.state for r in record.rounds.values()] == [
        RoundState.FAILED,
        RoundState.FINALIZED,
        RoundState.FAILED,
        RoundState.FINALIZED,
        RoundState.OPEN,
    ]
    two = record.rounds[2]
    assert [s.amount for s in two.slashes] == [10]  # filed under the round of the offence
    (submission,) = two.submissions()
    assert (submission.index, submission.node, submission.signer) == (1, BOB, bytes([1]) * 32)


def test_submissions_carry_the_keys_each_member_had_at_its_reveal(chain: _Chain) -> None:
    chain.add(
        Joined,
        round=5,
        node=BOB,
        index=1,
        stake=100,
        ed25519_key=bytes([9]) * 32,
        x25519_key=bytes(32),
    )

    (submission,) = submissions(chain.events, 2)

    assert submission.signer == bytes([1]) * 32  # not the key registered after the reveal
    assert members(chain.events)[BOB].ed25519_key == bytes([9]) * 32
    assert SwarmRecord.of(chain.events).rounds[2].submissions() == (submission,)
    assert submissions(chain.events, 4) == ()
    assert opened(chain.events, 4).base_round == 2


def test_lineage_runs_from_genesis_through_failed_retries(chain: _Chain) -> None:
    record = SwarmRecord.of(chain.events)

    assert [r.round for r in record.lineage(4)] == [1, 2, 3, 4]
    assert [r.round for r in record.lineage(2)] == [1, 2]


@pytest.mark.parametrize(
    ("name", "round_id"),
    [("latest", 4), ("2", 2), ("bafkcheckpoint2", 2), ("0x" + "04" * 32, 4)],
)
def test_checkpoint_is_found_by_round_cid_or_hash(chain: _Chain, name: str, round_id: int) -> None:
    assert SwarmRecord.of(chain.events).round_of_checkpoint(name) == round_id


@pytest.mark.parametrize("name", ["3", "5", "bafkunknown", "0x" + "ff" * 32])
def test_unknown_or_unfinalized_checkpoint_is_a_config_error(chain: _Chain, name: str) -> None:
    with pytest.raises(ConfigError, match="no finalized round produced"):
        SwarmRecord.of(chain.events).round_of_checkpoint(name)


def test_events_without_the_configuration_are_rejected(chain: _Chain) -> None:
    with pytest.raises(ConfigError, match="SwarmConfigured"):
        SwarmRecord.of(chain.events[1:])
