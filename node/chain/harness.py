"""Drive a swarm on a local Anvil chain: funded members, time travel, deadlines.

For tests, benchmarks and demos only: it relies on Anvil's ``anvil_setBalance``,
``evm_increaseTime`` and ``evm_mine``, and derives member keys from a public label, so never point
it at a real chain.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_account import Account
from eth_utils.crypto import keccak

from node.chain.anvil import Anvil
from node.chain.coordinator import Coordinator
from node.chain.deploy import connect, deploy_swarm
from node.chain.deployment import Deployment, SwarmParams

GAS_ETHER = 10**20  # wei given to each harness member for gas (100 ether)


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
        self.anvil.rpc("anvil_setBalance", [address, hex(GAS_ETHER)])
        if tokens > 0:
            self.deployer.token.transfer(address, tokens)
        return HarnessMember(
            client=Coordinator(self.w3, self.deployment, private_key),
            private_key=private_key,
            ed25519_key=keccak(seed + b"/ed25519"),
            x25519_key=keccak(seed + b"/x25519"),
        )

    def join_new(self, count: int, stake: int, label: str = "member") -> list[HarnessMember]:
        """Create `count` members and join each with `stake`."""
        members = []
        for _ in range(count):
            member = self.new_member(stake, label)
            member.client.join(stake, member.ed25519_key, member.x25519_key)
            members.append(member)
        return members

    def timestamp(self) -> int:
        """The latest block's timestamp."""
        return self.deployer.timestamp()

    def advance(self, seconds: int) -> None:
        """Move chain time forward by `seconds` and mine a block."""
        self.anvil.rpc("evm_increaseTime", [seconds])
        self.anvil.rpc("evm_mine")

    def advance_to(self, timestamp: int) -> None:
        """Mine a block at `timestamp` or later (now, if that is already past)."""
        self.advance(max(0, timestamp - self.timestamp()))

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
