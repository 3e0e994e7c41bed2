"""`LogWatch`: waits end when the watched contract emits on a real Anvil, and only then; without a
WebSocket endpoint, or while the chain is down, a wait is a plain sleep."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import cast

import pytest
from eth_typing import ABIEvent
from eth_utils.abi import event_abi_to_log_topic
from web3 import Web3

from swarmchain.node.chain.abis import abi_of
from swarmchain.node.chain.coordinator import Token
from swarmchain.node.chain.deploy import connect, deploy_contract
from swarmchain.node.chain.tx import Sender
from swarmchain.node.chain.watch import RECONNECT_S, LogWatch, websocket_url
from swarmchain.node.devtools.anvil import Anvil, DevAccount
from swarmchain.node.runtime.session import WAKING_EVENTS

SUPPLY = 10**6
LONG_S = 60.0  # a wait this long returning True was ended by a log, not by its timeout


def _token(w3: Web3, holder: DevAccount) -> Token:
    address = deploy_contract(w3, holder.private_key, "SwarmToken", holder.address, SUPPLY)
    return Token(w3, address, Sender(w3, holder.private_key))


@pytest.fixture
def watched(anvil: Anvil, w3: Web3, accounts: list[DevAccount]) -> Iterator[tuple[Token, Token]]:
    """Two tokens; the first is watched."""
    yield _token(w3, accounts[0]), _token(w3, accounts[0])


def _later(action: Callable[[], object]) -> threading.Thread:
    """Run `action` on another thread 0.2 s from now (while the test thread waits)."""
    thread = threading.Timer(0.2, action)
    thread.start()
    return thread


@pytest.mark.parametrize(
    ("rpc_url", "expected"),
    [
        ("http://127.0.0.1:8545", "ws://127.0.0.1:8545"),
        ("https://rpc.example.org/v1/key", "wss://rpc.example.org/v1/key"),
        ("ws://127.0.0.1:8545", "ws://127.0.0.1:8545"),
        ("/tmp/anvil.ipc", None),
    ],
)
def test_websocket_url_keeps_host_port_and_path(rpc_url: str, expected: str | None) -> None:
    assert websocket_url(rpc_url) == expected


def test_a_wait_ends_when_the_watched_contract_emits(
    anvil: Anvil, watched: tuple[Token, Token], accounts: list[DevAccount]
) -> None:
    token, _ = watched
    watch = LogWatch(anvil.rpc_url, token.address)
    assert watch.open()
    sender = _later(lambda: token.transfer(accounts[1].address, 1))

    woken = watch.wait(LONG_S)

    sender.join()
    watch.close()
    assert woken


def test_logs_announced_before_a_wait_end_it_at_once_and_count_once(
    anvil: Anvil, watched: tuple[Token, Token], accounts: list[DevAccount]
) -> None:
    token, _ = watched
    watch = LogWatch(anvil.rpc_url, token.address)
    assert watch.open()
    for amount in (1, 2, 3):
        token.transfer(accounts[1].address, amount)
    time.sleep(1.0)  # the notifications reach the watch's reader thread

    first = watch.wait(LONG_S)
    second = watch.wait(0.3)

    watch.close()
    assert (first, second) == (True, False)


def test_blocks_without_a_log_of_the_watched_contract_do_not_end_a_wait(
    anvil: Anvil, watched: tuple[Token, Token], accounts: list[DevAccount]
) -> None:
    token, other = watched
    watch = LogWatch(anvil.rpc_url, token.address)
    assert watch.open()
    sender = _later(lambda: (other.transfer(accounts[1].address, 1), anvil.rpc("evm_mine")))

    woken = watch.wait(1.5)

    sender.join()
    watch.close()
    assert not woken


def test_only_logs_with_a_watched_topic_end_a_wait(
    anvil: Anvil, watched: tuple[Token, Token], accounts: list[DevAccount]
) -> None:
    token, _ = watched
    approval = event_abi_to_log_topic(
        cast(ABIEvent, next(e for e in abi_of("SwarmToken") if e.get("name") == "Approval"))
    )
    watch = LogWatch(anvil.rpc_url, token.address, [approval])
    assert watch.open()
    spender = accounts[2].address
    transfer = _later(lambda: token.transfer(accounts[1].address, 1))
    by_transfer = watch.wait(1.5)
    transfer.join()
    approve = _later(lambda: token.ensure_allowance(spender, 5))
    by_approval = watch.wait(LONG_S)
    approve.join()
    watch.close()

    assert (by_transfer, by_approval) == (False, True)


def test_the_node_wakes_on_events_the_coordinator_has() -> None:
    events = {e["name"] for e in abi_of("SwarmCoordinator") if e.get("type") == "event"}

    assert set(WAKING_EVENTS) <= events


@pytest.mark.parametrize("rpc_url", ["/tmp/anvil.ipc", "http://127.0.0.1:9"])
def test_without_a_websocket_endpoint_a_wait_is_a_sleep(rpc_url: str) -> None:
    watch = LogWatch(rpc_url, "0x" + "11" * 20)

    assert not watch.open()
    assert not watch.wait(0.05)
    assert not watch.subscribed


def test_the_watch_subscribes_again_after_the_chain_restarts() -> None:
    with Anvil() as chain:
        w3 = connect(chain.rpc_url)
        token = _token(w3, chain.accounts[0])
        watch = LogWatch(chain.rpc_url, token.address)
        assert watch.open()
        chain.restart()  # no state file: the token is gone, the address stays watchable

        dropped = watch.wait(0.3)
        token = _token(connect(chain.rpc_url), chain.accounts[0])  # deployer nonce 0 again
        time.sleep(RECONNECT_S)
        resubscribed = watch.open()
        sender = _later(lambda: token.transfer(chain.accounts[1].address, 1))
        woken = watch.wait(LONG_S)
        sender.join()
        watch.close()

    assert not dropped
    assert resubscribed
    assert woken
