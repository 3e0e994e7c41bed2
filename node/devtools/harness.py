"""Drive a swarm on a local Anvil chain: funded members, time travel, whole rounds.

For tests, benchmarks and demos only: it relies on Anvil's ``anvil_setBalance``,
``evm_increaseTime`` and ``evm_mine``, and derives member keys from a public label, so never point
it at a real chain.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from web3.contract.contract import ContractFunction
from web3.types import Nonce, TxParams, Wei

from swarmchain.incentives.merkle import RewardTree
from swarmchain.node.chain.coordinator import Coordinator
from swarmchain.node.chain.deploy import connect, deploy_swarm
from swarmchain.node.chain.deployment import Deployment, SwarmParams
from swarmchain.node.chain.protocol import Outcome, Phase, Reveal, encode_bitmap
from swarmchain.node.devtools.anvil import Anvil
from swarmchain.node.errors import ChainError
from swarmchain.node.protocol.hashing import content_hash

GAS_ETHER = 10**20  # wei given to each harness member for gas (100 ether)
BULK_GAS = 300_000  # fixed gas limit of `join_many`'s transactions (a join needs under 220k)


def sample_reveal(address: str, round_id: int) -> Reveal:
    """A reproducible stand-in update of `address` in `round_id` (its blob is never stored)."""
    blob = f"update/{address}/{round_id}".encode()
    return Reveal(
        cid=f"bafkfake{keccak(blob).hex()[:40]}",
        content_hash=content_hash(blob),
        num_samples=10 + int(address[-2:], 16),
        salt=keccak(b"salt/" + blob),
    )


def sample_outcome(
    accepted: Iterable[int], rewards: Mapping[str, int], label: str = "checkpoint"
) -> tuple[Outcome, RewardTree]:
    """A stand-in outcome accepting member indices `accepted` and paying `rewards`."""
    tree = RewardTree.from_amounts(rewards)
    blob = label.encode()
    outcome = Outcome(
        checkpoint_hash=content_hash(blob),
        checkpoint_cid=f"bafkfake{keccak(blob).hex()[:40]}",
        accepted_bitmap=encode_bitmap(accepted),
        rewards_root=tree.root,
        reward_total=tree.total,
    )
    return outcome, tree


@dataclass(frozen=True)
class HarnessMember:
    """A funded account with its own client and public keys."""

    client: Coordinator
    private_key: str
    ed25519_key: bytes
    x25519_key: bytes

    @property
    def address(self) -> str:
        """The member's checksummed address."""
        return self.client.account


class SwarmHarness:
    """A deployed swarm on a local Anvil, with helpers to add members and move time.

    Parameters
    ----------
    anvil
        The running local chain.
    deployment
        The swarm on it.
    deployer_key
        Key of the account holding the token supply (it funds members).
    """

    def __init__(self, anvil: Anvil, deployment: Deployment, deployer_key: str) -> None:
        self.anvil = anvil
        self.w3 = connect(anvil.rpc_url)
        self.deployment = deployment
        self.deployer = Coordinator(self.w3, deployment, deployer_key)
        self.deployer_key = deployer_key
        self._created = 0

    @classmethod
    def deploy(cls, anvil: Anvil, params: SwarmParams) -> SwarmHarness:
        """Deploy a fresh swarm from Anvil's first dev account."""
        deployer = anvil.accounts[0]
        deployment = deploy_swarm(connect(anvil.rpc_url), deployer.private_key, params)
        return cls(anvil, deployment, deployer.private_key)

    def new_member(self, tokens: int, label: str = "member") -> HarnessMember:
        """A new account with gas money and `tokens` from the deployer (not yet joined).

        Keys are derived from `label` and a counter, so runs are reproducible.
        """
        self._created += 1
        seed = f"swarm-harness/{label}/{self._created}".encode()
        private_key = "0x" + keccak(seed).hex()
        address = Account.from_key(private_key).address
        self.rpc("anvil_setBalance", [address, hex(GAS_ETHER)])
        if tokens > 0:
            self.deployer.token.transfer(address, tokens)
        return HarnessMember(
            client=Coordinator(self.w3, self.deployment, private_key),
            private_key=private_key,
            ed25519_key=keccak(seed + b"/ed25519"),
            x25519_key=keccak(seed + b"/x25519"),
        )

    def join_new(self, count: int, stake: int, label: str = "member") -> list[HarnessMember]:
        """Create `count` members and join each with `stake`, one checked transaction at a time."""
        members = []
        for _ in range(count):
            member = self.new_member(stake, label)
            member.client.join(stake, member.ed25519_key, member.x25519_key)
            members.append(member)
        return members

    def join_many(self, count: int, stake: int, label: str = "bulk") -> list[HarnessMember]:
        """Like `join_new`, but fast: transactions are signed with fixed gas and sent without
        waiting, then every receipt is checked at the end.

        Raises
        ------
        ChainError
            If any of the transactions reverted.
        """
        members = [self.new_member(0, label) for _ in range(count)]
        token = self.deployer.token.contract
        coordinator = self.deployer.contract
        deployer = Account.from_key(self.deployer_key)
        nonce = self.w3.eth.get_transaction_count(deployer.address, "pending")
        hashes = [
            self._send_raw(deployer.key, token.functions.transfer(m.address, stake), nonce + i)
            for i, m in enumerate(members)
        ]
        for m in members:
            approve = token.functions.approve(coordinator.address, stake)
            join = coordinator.functions.join(stake, m.ed25519_key, m.x25519_key)
            hashes.append(self._send_raw(m.private_key, approve, 0))
            hashes.append(self._send_raw(m.private_key, join, 1))
        for tx_hash in hashes:
            receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, poll_latency=0.01)
            if receipt["status"] != 1:
                raise ChainError(f"bulk join transaction {tx_hash.to_0x_hex()} reverted")
        return members

    def rpc(self, method: str, params: list[Any]) -> Any:
        """One JSON-RPC call (``evm_snapshot``, ``anvil_setBalance``, ...) over the pooled
        web3 session; returns its result.

        Raises
        ------
        ChainError
            If the node answers with an error.
        """
        reply = self.w3.provider.make_request(method, params)  # type: ignore[arg-type]
        if "error" in reply:
            raise ChainError(f"anvil {method} failed: {reply['error']}")
        return reply.get("result")

    def _send_raw(self, private_key: Any, fn: ContractFunction, nonce: int) -> HexBytes:
        params: TxParams = {
            "from": Account.from_key(private_key).address,
            "gas": BULK_GAS,
            "nonce": Nonce(nonce),
            "chainId": self.deployment.chain_id,
            "maxFeePerGas": Wei(10**11),
            "maxPriorityFeePerGas": Wei(1),
        }
        tx = fn.build_transaction(params)
        signed = Account.sign_transaction(tx, private_key)
        return self.w3.eth.send_raw_transaction(signed.raw_transaction)

    def timestamp(self) -> int:
        """The latest block's timestamp."""
        return self.deployer.timestamp()

    def advance(self, seconds: int) -> None:
        """Move chain time forward by `seconds` and mine a block."""
        self.rpc("evm_increaseTime", [seconds])
        self.rpc("evm_mine", [])

    def advance_to(self, timestamp: int) -> None:
        """Mine a block at `timestamp` or later (now, if that is already past)."""
        self.advance(max(0, timestamp - self.timestamp()))

    def advance_to_phase(self, phase: Phase) -> None:
        """Move time to the start of `phase` of the current round (ENDED: past every window)."""
        info = self.deployer.round_info()
        starts = {
            Phase.COMMIT: info.opened_at,
            Phase.REVEAL: info.commit_deadline,
            Phase.ATTEST: info.reveal_deadline,
            Phase.ENDED: info.attest_deadline,
        }
        self.advance_to(starts[phase])

    def commit_all(self, members: Iterable[HarnessMember], round_id: int) -> dict[str, Reveal]:
        """Commit a reproducible update for each member; returns the reveals by address."""
        reveals = {}
        for member in members:
            reveal = sample_reveal(member.address, round_id)
            member.client.commit(round_id, member.client.commitment_for(reveal, round_id))
            reveals[member.address] = reveal
        return reveals

    def reveal_all(
        self, members: Iterable[HarnessMember], reveals: Mapping[str, Reveal], round_id: int
    ) -> None:
        """Reveal each member's committed update."""
        for member in members:
            member.client.reveal(round_id, reveals[member.address])

    def attest_all(self, members: Iterable[HarnessMember], outcome: Outcome, round_id: int) -> None:
        """Attest `outcome` from each member."""
        for member in members:
            member.client.attest(round_id, outcome)

    def open_round(self) -> int:
        """Fail the current round once it has ended, opening one that counts today's members.

        Returns
        -------
        int
            The new current round.
        """
        info = self.deployer.round_info()
        self.advance_to(info.attest_deadline)
        self.deployer.fail_round(info.round)
        return self.deployer.current_round()
