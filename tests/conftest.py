"""Shared fixtures: one real Anvil chain for the whole session, funded accounts, and an
`evm_snapshot` / `evm_revert` pair around every test that touches the chain."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from web3 import Web3

from node.chain.deploy import connect
from node.devtools.anvil import Anvil, DevAccount
from node.devtools.ipfs_peer import JsIpfsPeer


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
