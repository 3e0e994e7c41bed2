"""Shared fixtures: one real Anvil chain for the whole session, funded accounts, and an
`evm_snapshot` / `evm_revert` pair around every test that touches the chain; the contract tests'
parameters, and their swarm deployed once per module (`PARAMS`, `MEMBERS` and `STAKE` of the
module decide what `harness` and `members` deploy and join)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from web3 import Web3

from swarmchain.node.chain.deploy import connect
from swarmchain.node.chain.deployment import SwarmParams
from swarmchain.node.chain.tx import Transaction
from swarmchain.node.devtools.anvil import Anvil, DevAccount
from swarmchain.node.devtools.harness import HarnessMember, SwarmHarness
from swarmchain.node.devtools.ipfs_peer import JsIpfsPeer

HOUR = 3600


def swarm_params(**changes: Any) -> SwarmParams:
    """The contract tests' parameters: hour-long windows and small token amounts, changed as
    given."""
    base = SwarmParams(
        task_spec_cid="bafkreitaskspec",
        task_spec_hash="0x" + "ab" * 32,
        quorum_bps=6667,
        slash_bps=1000,
        commit_duration_s=HOUR,
        reveal_duration_s=HOUR,
        attest_duration_s=HOUR,
        unbonding_delay_s=2 * HOUR,
        min_stake=100,
        reward_per_round=1_000,
        reward_pool=1_000_000,
        token_supply=10**9,
    )
    return replace(base, **changes)


def raw(member: HarnessMember, function: str, *args: Any) -> Transaction:
    """Send a call without the client's look-before-send, so the contract itself decides."""
    client = member.client
    assert client.sender is not None
    return client.sender.send(client.contract.functions[function](*args), function)


@pytest.fixture(scope="session")
def anvil() -> Iterator[Anvil]:
    """A real Anvil on 127.0.0.1 and a free port, stopped by its PID after the session."""
    with Anvil() as chain:
        yield chain


@pytest.fixture(scope="session")
def w3(anvil: Anvil) -> Web3:
    """A web3 connection to the session chain."""
    return connect(anvil.rpc_url)


@pytest.fixture(scope="session")
def accounts(anvil: Anvil) -> list[DevAccount]:
    """The chain's funded dev accounts (10,000 ether each at genesis)."""
    return anvil.accounts


@pytest.fixture(scope="session")
def ipfs_peer() -> Iterator[JsIpfsPeer]:
    """A real IPFS peer (js-ipfs, offline, free loopback port), stopped by its PID after the
    session; `npm ci` runs in tests/ipfs-peer first if js-ipfs is not installed there."""
    with JsIpfsPeer() as peer:
        yield peer


@pytest.fixture(autouse=True)
def _evm_isolation(request: pytest.FixtureRequest) -> Iterator[None]:
    """Snapshot the chain before each test that uses it and revert afterwards.

    Module- and session-scoped deployments are set up before this snapshot, so they survive;
    whatever a test itself changes (balances, time, blocks) does not leak into the next test.
    """
    if "anvil" not in request.fixturenames:
        yield
        return
    chain: Anvil = request.getfixturevalue("anvil")
    snapshot = chain.rpc("evm_snapshot")
    yield
    if chain.pid is not None:
        chain.rpc("evm_revert", [snapshot])


@pytest.fixture(scope="module")
def harness(anvil: Anvil, request: pytest.FixtureRequest) -> SwarmHarness:
    """The module's swarm (its `PARAMS`) deployed once on the session chain."""
    return SwarmHarness.deploy(anvil, request.module.PARAMS)


@pytest.fixture(scope="module")
def members(harness: SwarmHarness, request: pytest.FixtureRequest) -> list[HarnessMember]:
    """`MEMBERS` (default 3) members joined with the module's `STAKE`, then a round opened
    that counts them."""
    joined = harness.join_new(getattr(request.module, "MEMBERS", 3), request.module.STAKE)
    harness.open_round()
    return joined
