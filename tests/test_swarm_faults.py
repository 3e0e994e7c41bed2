"""Faults on a real Anvil with real node processes: nothing sent twice, nothing lost.

One scripted run of four nodes (each test checks one property of it against the chain):

- round 3: node 1 is SIGKILLed right after its commit, node 2 right after its reveal and node 3
  right after computing the outcome (in the attest phase); each restarts at once from its journal;
- once all four take part again, whichever node sends a round's finalize is SIGKILLed right
  after it (before claiming) and restarted;
- node 3 is stalled (SIGSTOP) right after revealing in one round, and released only once the
  next round's commit deadline has passed: it misses that round, which the others finalize;
- nodes 2 and 3 are stalled right after revealing: half the stake attests, the round fails
  visibly, and the next round retries from the same base;
- Anvil is stopped and restarted from its state file, and the swarm carries on.

Between faults the script waits for a round in which all four nodes committed, so that a slow
restart on a loaded machine delays the story but never changes it. Rounds are found at run time.
The task is kept light (one local epoch, leave-one-out valuation): these tests are about what
crashes and stalls do to the protocol, not about learning.
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import pytest

from swarmchain.incentives.claims import load_reward_tree
from swarmchain.incentives.shapley import ValuationConfig
from swarmchain.node.chain.coordinator import Coordinator
from swarmchain.node.chain.deploy import connect
from swarmchain.node.chain.deployment import SwarmParams
from swarmchain.node.chain.events import (
    ChainEvent,
    Claimed,
    Committed,
    Revealed,
    RoundFailed,
    RoundFinalized,
    RoundOpened,
    Slashed,
)
from swarmchain.node.chain.protocol import RoundStatus
from swarmchain.node.devtools.anvil import Anvil
from swarmchain.node.devtools.swarm import LocalSwarm, NodeProcess
from swarmchain.node.protocol.task import TaskSpec, default_task
from swarmchain.node.runtime.events import EventKind, NodeEvent

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

NODES = 4
WAIT_S = 180.0


@dataclass(frozen=True)
class SentTx:
    """A mined transaction of a node, decoded."""

    sender: str
    function: str
    args: dict[str, Any]
    ok: bool


@dataclass(frozen=True)
class Story:
    """What the scripted run left behind."""

    swarm: LocalSwarm
    events: list[ChainEvent]
    txs: list[SentTx]
    missed_round: int  # node 3 was stalled through its commit window
    no_quorum_round: int  # nodes 2 and 3 were stalled after revealing
    restart_round: int  # the round open when Anvil was restarted


def light_task() -> TaskSpec:
    """The default task with one local epoch."""
    spec = default_task()
    return replace(spec, train=replace(spec.train, local_epochs=1))


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)


def _reported(process: NodeProcess, kind: EventKind, round_id: int) -> NodeEvent:
    return process.wait_for(
        lambda e: e.kind == kind and e.round == round_id, WAIT_S, f"{kind.value} {round_id}"
    )


def _kill_after(process: NodeProcess, kind: EventKind, round_id: int) -> None:
    """SIGKILL a node right after it reports `kind` in `round_id`, then restart it."""
    _reported(process, kind, round_id)
    process.kill()
    process.start()


def _closed(coordinator: Coordinator, round_id: int) -> bool:
    return coordinator.current_round() > round_id


def _commit_closed(coordinator: Coordinator, round_id: int) -> bool:
    """Whether the round's commit window is over (the local chain runs on the wall clock)."""
    current = coordinator.current_round()
    if current != round_id:
        return current > round_id
    now = max(coordinator.timestamp(), int(time.time()))
    return now >= coordinator.round_info(round_id).commit_deadline


def _in_step(coordinator: Coordinator, nodes: list[NodeProcess]) -> int:
    """Wait for a round every node committed in, and for every node to see it finalized."""
    members = {n.member.address for n in nodes}
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        r = coordinator.current_round()
        _wait_until(partial(_closed, coordinator, r), f"round {r} to close")
        committed = {
            e.node for e in coordinator.events() if isinstance(e, Committed) and e.round == r
        }
        if committed == members and coordinator.round_info(r).status == RoundStatus.FINALIZED:
            for node in nodes:
                _reported(node, EventKind.FINALIZED, r)
            return r
    raise TimeoutError("no round in which every node took part")


def _stall_after_revealing(nodes: list[NodeProcess], after: int) -> int:
    """SIGSTOP each node the moment it reveals in the round after `after`; return that round.

    A node's next step after revealing is to attest, which waits for every reveal and a poll,
    so a node stopped at once never attests the round.
    """
    round_id = after + 1
    waiting = list(nodes)
    deadline = time.monotonic() + WAIT_S
    while waiting:
        for node in [n for n in waiting if n.of_kind(EventKind.REVEALED, round_id)]:
            node.signal(signal.SIGSTOP)
            waiting.remove(node)
        if time.monotonic() > deadline:
            raise TimeoutError(f"no reveal in round {round_id}")
        time.sleep(0.01)
    return round_id


def _mined(coordinator: Coordinator, senders: set[str]) -> list[SentTx]:
    """Every transaction the senders got mined, decoded against the coordinator and token."""
    w3 = coordinator.w3
    contracts = {c.address: c for c in (coordinator.contract, coordinator.token.contract)}
    out = []
    for number in range(coordinator.deployment.deploy_block, w3.eth.block_number + 1):
        block: Any = w3.eth.get_block(number, full_transactions=True)
        for tx in block["transactions"]:
            if tx["from"] not in senders:
                continue
            function, args = contracts[tx["to"]].decode_function_input(tx["input"])
            receipt = w3.eth.get_transaction_receipt(tx["hash"])
            out.append(SentTx(tx["from"], function.fn_name, dict(args), receipt["status"] == 1))
    return out


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Story:
    workdir = tmp_path_factory.mktemp("swarm-faults")
    # Commit: room to train on a loaded machine (a stall waits it out); reveal: long enough for
    # a node killed after committing to come back.
    params = SwarmParams.windows(20, 60, 10)
    with Anvil(state_file=workdir / "anvil-state.json", state_interval=1) as anvil:
        swarm = LocalSwarm.create(
            anvil, workdir, light_task(), NODES, params=params, valuation=ValuationConfig("loo")
        )
        coordinator = Coordinator(connect(anvil.rpc_url), swarm.deployment)
        with swarm:
            nodes = [swarm.start(i, "--min-members", str(NODES)) for i in range(NODES)]
            for node in nodes:
                _reported(node, EventKind.FINALIZED, 2)

            _kill_after(nodes[1], EventKind.COMMITTED, 3)
            _kill_after(nodes[2], EventKind.REVEALED, 3)
            _kill_after(nodes[3], EventKind.VERIFIED, 3)

            finalizing = _in_step(coordinator, nodes) + 1
            _wait_until(
                lambda: any(n.of_kind(EventKind.FINALIZE_SENT, finalizing) for n in nodes),
                f"a finalize of round {finalizing}",
            )
            finalizer = next(n for n in nodes if n.of_kind(EventKind.FINALIZE_SENT, finalizing))
            finalizer.kill()
            finalizer.start()

            stalled = _stall_after_revealing(nodes[3:], _in_step(coordinator, nodes))
            missed = stalled + 1
            _wait_until(partial(_commit_closed, coordinator, missed), f"round {missed} commits")
            nodes[3].signal(signal.SIGCONT)

            no_quorum = _stall_after_revealing(nodes[2:], _in_step(coordinator, nodes))
            _reported(nodes[0], EventKind.FAILED, no_quorum)
            for node in nodes[2:]:
                node.signal(signal.SIGCONT)

            _in_step(coordinator, nodes)
            restart_round = coordinator.current_round()
            anvil.restart()
            for node in nodes:
                node.wait_for(
                    lambda e: e.kind == EventKind.FINALIZED and e.round >= restart_round,
                    WAIT_S,
                    "a finalization after the restart",
                )
        events = coordinator.events()
        txs = _mined(coordinator, {m.address for m in swarm.members})
    return Story(swarm, events, txs, missed, no_quorum, restart_round)


def _by_round(events: list[ChainEvent], kind: type[ChainEvent]) -> dict[int, Any]:
    return {e.round: e for e in events if isinstance(e, kind)}  # type: ignore[attr-defined]


def test_no_node_sent_any_transaction_twice(story: Story) -> None:
    keys = Counter(
        (tx.sender, tx.function, tx.args.get("round"), tx.args.get("node"), tx.args.get("account"))
        for tx in story.txs
    )

    assert [key for key, count in keys.items() if count > 1] == []
    # A transaction estimated just before another node's finalize lands is mined after it and
    # reverts: a race lost to a peer (no double send), and the only kind of failure allowed.
    closers = {
        e.round: e.caller for e in story.events if isinstance(e, RoundFinalized | RoundFailed)
    }
    for tx in story.txs:
        if not tx.ok:
            assert tx.function in {"attest", "finalize", "failRound"}, tx
            assert closers[tx.args["round"]] != tx.sender, tx


def test_killed_nodes_lose_no_reward(story: Story) -> None:
    claimed = {(e.round, e.account): e.amount for e in story.events if isinstance(e, Claimed)}
    for r, event in _by_round(story.events, RoundFinalized).items():
        for member in story.swarm.members:
            tree = load_reward_tree(member.journal / "rewards", r)
            if tree is None:  # the member was not accepted (it missed the round)
                assert claimed.get((r, member.address), 0) == 0
                continue
            assert tree.root == event.outcome.rewards_root
            assert claimed.get((r, member.address), 0) == tree.amount_of(member.address)


def test_a_node_killed_after_committing_reveals_from_its_journal(story: Story) -> None:
    killed = story.swarm.members[1].address

    assert killed in {e.node for e in story.events if isinstance(e, Committed) and e.round == 3}
    assert killed in {e.node for e in story.events if isinstance(e, Revealed) and e.round == 3}
    assert 3 in _by_round(story.events, RoundFinalized)
    assert not any(isinstance(e, Slashed) for e in story.events)


def test_a_stalled_node_misses_the_round_and_the_others_finalize_it(story: Story) -> None:
    stalled = story.swarm.members[3].address
    missed = story.missed_round
    committed = {e.node for e in story.events if isinstance(e, Committed) and e.round == missed}

    assert stalled not in committed
    assert len(committed) == NODES - 1
    assert missed in _by_round(story.events, RoundFinalized)
    assert story.swarm.processes[3].of_kind(EventKind.SKIPPED, missed)


def test_a_round_without_quorum_fails_visibly_and_is_retried_from_the_same_base(
    story: Story,
) -> None:
    r = story.no_quorum_round
    failed = _by_round(story.events, RoundFailed)[r]
    opened = _by_round(story.events, RoundOpened)

    assert failed.leading_stake < failed.required_stake
    assert opened[r + 1].base_round == opened[r].base_round
    assert any(later > r for later in _by_round(story.events, RoundFinalized))


def test_the_swarm_carries_on_after_anvil_restarts_from_its_state_file(story: Story) -> None:
    finalized = _by_round(story.events, RoundFinalized)
    last = max(finalized)

    assert last >= story.restart_round
    held = {
        e.data["checkpoint_hash"]
        for p in story.swarm.processes.values()
        for e in p.of_kind(EventKind.FINALIZED, last)
    }
    assert held == {"0x" + finalized[last].outcome.checkpoint_hash.hex()}


def test_every_commitment_has_its_secret_in_the_journal(story: Story) -> None:
    for member in story.swarm.members:
        lines = (member.journal / "journal.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines]
        secrets = {r["commitment"] for r in records if r["kind"] == "update"}
        commitments = {
            "0x" + e.commitment.hex()
            for e in story.events
            if isinstance(e, Committed) and e.node == member.address
        }
        assert commitments <= secrets, member.journal
