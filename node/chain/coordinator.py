"""The typed client of a deployed swarm: `Coordinator` (rounds, membership, rewards) and `Token`.

Writes are idempotent from the node's point of view: each one first reads the chain, and when
the chain already shows the effect (the member joined, the commitment is stored, the round is
finalized, ...) it sends nothing and returns None; otherwise it sends one transaction through a
`Sender`, waits for the receipt and returns the `Transaction` with its decoded events. A revert
raises the named error from `swarmchain.node.chain.reverts`. Reads return frozen dataclasses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from eth_abi.exceptions import DecodingError
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3 import Web3

from swarmchain.node.chain.abis import abi_of, contract_at
from swarmchain.node.chain.deploy import connect
from swarmchain.node.chain.deployment import Deployment, load_deployment
from swarmchain.node.chain.events import ChainEvent, EventDecoder
from swarmchain.node.chain.protocol import (
    CoordinatorParams,
    MemberStatus,
    Outcome,
    Phase,
    Reveal,
    RoundStatus,
    SubmissionState,
    commitment,
)
from swarmchain.node.chain.reverts import AlreadyCommitted
from swarmchain.node.chain.tx import Sender, Transaction, call_view, json_rpc
from swarmchain.node.errors import ChainError, ConfigError


@dataclass(frozen=True)
class RoundInfo:
    """Everything about one round (``roundInfo``)."""

    round: int
    status: RoundStatus
    phase: Phase  # at the latest block; ENDED once closed
    base_round: int  # round whose checkpoint this one starts from; 0 = the task spec's genesis
    opened_at: int
    commit_deadline: int  # commits while block time < commit_deadline
    reveal_deadline: int  # reveals in [commit_deadline, reveal_deadline)
    attest_deadline: int  # attestations in [reveal_deadline, attest_deadline)
    active_at_open: int
    commits: int
    reveals: int
    attests: int
    stake_at_open: int  # the quorum's denominator
    required_stake: int  # stake one tuple needs to finalize
    leading_stake: int  # stake behind the most-attested tuple
    reward_remaining: int  # the tuple's reward total, reserved at finalization, less claims
    seed: bytes  # the round's public deterministic seed


@dataclass(frozen=True)
class MemberInfo:
    """Everything about one member (``memberInfo``); status NONE for a stranger."""

    address: str
    status: MemberStatus
    registered: bool  # holds a member index
    index: int  # bit position in accepted bitmaps (meaningful when registered)
    stake: int  # escrowed, slashable until withdrawn
    stake_at_open: int  # weight in the current round; 0 = may not act in it
    unbonding_ends: int
    last_commit_round: int
    last_attest_round: int
    ed25519_key: bytes
    x25519_key: bytes


@dataclass(frozen=True)
class Submission:
    """What a node did in a round; `commitment` is set only while it is unrevealed."""

    state: SubmissionState
    commitment: bytes | None


@dataclass(frozen=True)
class Totals:
    """The coordinator's aggregate accounting."""

    active_stake: int  # counted at the next round's open
    active_members: int
    total_staked: int  # active and exiting stake held in escrow
    reward_pool: int  # available for future rounds' budgets
    rewards_outstanding: int  # reserved for finalized rounds, not yet claimed
    last_finalized_round: int


def _tuple(values: Any) -> tuple[Any, ...]:
    return tuple(values)


def _abi_type(param: dict[str, Any]) -> str:
    """The canonical type of an ABI parameter (``(uint8,bytes32)`` for a struct)."""
    kind: str = param["type"]
    if kind.startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in param["components"])
        return f"({inner}){kind.removeprefix('tuple')}"
    return kind


class _View:
    """One view function of a contract, called with a plain ``eth_call``.

    A node reads the coordinator dozens of times a round; web3's contract layer (argument
    binding, validation and formatting middleware) spends ~4 ms of CPU per read, this ~1 ms. It
    encodes and decodes with the connection's own ABI codec, so values come back as web3's
    contract calls return them (structs as tuples, several outputs as a tuple, addresses
    checksummed), and reverts raise the same named errors.
    """

    def __init__(self, w3: Web3, address: str, abi: dict[str, Any]) -> None:
        self.w3 = w3
        self.address = address
        self.name: str = abi["name"]
        self.inputs = [_abi_type(p) for p in abi["inputs"]]
        self.selector = keccak(text=f"{self.name}({','.join(self.inputs)})")[:4]
        self.outputs = [_abi_type(p) for p in abi["outputs"]]

    def __call__(self, *args: Any) -> Any:
        data = "0x" + (self.selector + self.w3.codec.encode(self.inputs, args)).hex()
        result = json_rpc(self.w3, "eth_call", [{"to": self.address, "data": data}, "latest"])
        try:
            values = self.w3.codec.decode(self.outputs, bytes.fromhex(result[2:]))
        except (DecodingError, TypeError, ValueError) as err:
            raise ChainError(f"{self.name} returned no valid result: {err}") from err
        values = tuple(
            to_checksum_address(v) if kind == "address" else v
            for kind, v in zip(self.outputs, values, strict=True)
        )
        return values[0] if len(values) == 1 else values


class Token:
    """The swarm's ERC-20.

    Parameters
    ----------
    w3
        The connection.
    address
        The token's address.
    sender
        Signs writes; None for a read-only client.
    """

    def __init__(self, w3: Web3, address: str, sender: Sender | None = None) -> None:
        self.w3 = w3
        self.address = to_checksum_address(address)
        self.contract = contract_at(w3, "SwarmToken", self.address)
        self.events = EventDecoder(w3, self.address, "SwarmToken")
        self.sender = sender

    def balance_of(self, account: str) -> int:
        """Tokens held by `account`."""
        fn = self.contract.functions.balanceOf(to_checksum_address(account))
        return int(call_view(fn.call, "balanceOf"))

    def total_supply(self) -> int:
        """The fixed total supply."""
        return int(call_view(self.contract.functions.totalSupply().call, "totalSupply"))

    def allowance(self, owner: str, spender: str) -> int:
        """Tokens `spender` may still pull from `owner`."""
        fn = self.contract.functions.allowance(
            to_checksum_address(owner), to_checksum_address(spender)
        )
        return int(call_view(fn.call, "allowance"))

    def ensure_allowance(self, spender: str, amount: int) -> Transaction | None:
        """Approve `spender` for `amount` unless it may already pull at least that much."""
        sender = self._require_sender()
        if self.allowance(sender.address, spender) >= amount:
            return None
        fn = self.contract.functions.approve(to_checksum_address(spender), amount)
        return sender.send(fn, f"approve({spender}, {amount})")

    def transfer(self, to: str, amount: int) -> Transaction:
        """Send `amount` tokens to `to` (not idempotent: every call moves tokens)."""
        fn = self.contract.functions.transfer(to_checksum_address(to), amount)
        return self._require_sender().send(fn, f"transfer({to}, {amount})")

    def _require_sender(self) -> Sender:
        if self.sender is None:
            raise ChainError("this token client is read-only", hint="pass a private key")
        return self.sender


class Coordinator:
    """Client of one deployed swarm.

    Parameters
    ----------
    w3
        A connection to the swarm's chain.
    deployment
        The deployment record (addresses, chain id, first block).
    private_key
        The member's key; None for a read-only client (auditors).
    receipt_timeout_s
        How long a write waits for its receipt.

    Raises
    ------
    ConfigError
        If the chain id differs from the deployment's, or no contract code is at its addresses.
    """

    def __init__(
        self,
        w3: Web3,
        deployment: Deployment,
        private_key: str | None = None,
        *,
        receipt_timeout_s: float = 120.0,
    ) -> None:
        chain_id = call_view(lambda: w3.eth.chain_id, "eth_chainId")
        if chain_id != deployment.chain_id:
            raise ConfigError(
                f"the node's chain id is {chain_id} but the deployment is on {deployment.chain_id}",
                hint="point --rpc at the chain the deployment file names",
            )
        self.address = to_checksum_address(deployment.coordinator)
        token_address = to_checksum_address(deployment.token)
        for name, address in (("coordinator", self.address), ("token", token_address)):
            if not call_view(partial(w3.eth.get_code, address), "eth_getCode"):
                raise ConfigError(f"no contract code at the {name} address {address}")
        self.w3 = w3
        self.deployment = deployment
        self.contract = contract_at(w3, "SwarmCoordinator", self.address)
        self._views = {
            f["name"]: _View(w3, self.address, f)
            for f in abi_of("SwarmCoordinator")
            if f.get("type") == "function" and f.get("stateMutability") in ("view", "pure")
        }
        self.decoder = EventDecoder(w3, self.address, "SwarmCoordinator")
        token_decoder = EventDecoder(w3, deployment.token, "SwarmToken")
        self.sender = (
            Sender(
                w3,
                private_key,
                [self.decoder, token_decoder],
                receipt_timeout_s=receipt_timeout_s,
            )
            if private_key is not None
            else None
        )
        self.token = Token(w3, deployment.token, self.sender)

    @classmethod
    def connect(
        cls, rpc_url: str, deployment_file: Path, private_key: str | None = None
    ) -> Coordinator:
        """Open a client from an RPC URL and a deployment file.

        Raises
        ------
        ChainError
            If nothing answers at `rpc_url`.
        ConfigError
            If the deployment file is bad or names another chain.
        """
        return cls(connect(rpc_url), load_deployment(deployment_file), private_key)

    @property
    def account(self) -> str:
        """The client's account address.

        Raises
        ------
        ChainError
            For a read-only client.
        """
        return self._require_sender().address

    # ---- membership ---------------------------------------------------------------------------

    def join(self, stake: int, ed25519_key: bytes, x25519_key: bytes) -> Transaction | None:
        """Stake and register keys (approving the coordinator first if needed).

        Returns None if the account is already an active member with these keys.

        Raises
        ------
        ChainError
            A named revert such as `StakeBelowMinimum`, `AlreadyMember` or `InvalidPublicKey`.
        """
        me = self.member_info()
        if (
            me.status == MemberStatus.ACTIVE
            and me.ed25519_key == ed25519_key
            and me.x25519_key == x25519_key
        ):
            return None
        self.token.ensure_allowance(self.address, stake)
        fn = self.contract.functions.join(stake, ed25519_key, x25519_key)
        return self._send(fn, f"join(stake={stake})")

    def exit(self) -> Transaction | None:
        """Leave the active set; None if already exiting."""
        if self.member_info().status == MemberStatus.EXITING:
            return None
        return self._send(self.contract.functions.exit(), "exit()")

    def withdraw(self) -> Transaction | None:
        """Take the stake back after unbonding; None if it was already withdrawn."""
        me = self.member_info()
        if me.status == MemberStatus.NONE and me.registered:
            return None
        return self._send(self.contract.functions.withdraw(), "withdraw()")

    def fund_rewards(self, amount: int) -> Transaction:
        """Add `amount` tokens to the reward pool (not idempotent: every call adds)."""
        self.token.ensure_allowance(self.address, amount)
        return self._send(self.contract.functions.fundRewards(amount), f"fundRewards({amount})")

    # ---- rounds -------------------------------------------------------------------------------

    def commitment_for(self, reveal: Reveal, round_id: int) -> bytes:
        """The commitment this account makes for `reveal` in `round_id`."""
        return commitment(reveal, self.account, round_id, self.address)

    def commit(self, round_id: int, commitment_hash: bytes) -> Transaction | None:
        """Commit to an update; None if this exact commitment is already on chain (or revealed).

        Raises
        ------
        AlreadyCommitted
            If a different commitment is already stored for this round.
        ChainError
            Another named revert (`DeadlinePassed`, `NotEligible`, ...).
        """
        mine = self.submission(round_id)
        if mine.state == SubmissionState.COMMITTED and mine.commitment != commitment_hash:
            raise AlreadyCommitted(
                {"round": round_id, "node": self.account},
                context=f"commit(round {round_id}) with a commitment other than the stored one",
            )
        if mine.state != SubmissionState.NONE:
            return None
        fn = self.contract.functions.commit(round_id, commitment_hash)
        return self._send(fn, f"commit(round {round_id})")

    def reveal(self, round_id: int, reveal: Reveal) -> Transaction | None:
        """Reveal the committed update; None if already revealed."""
        if self.submission(round_id).state in (SubmissionState.REVEALED, SubmissionState.SLASHED):
            return None
        fn = self.contract.functions.reveal(
            round_id, reveal.cid, reveal.content_hash, reveal.num_samples, reveal.salt
        )
        return self._send(fn, f"reveal(round {round_id})")

    def attest(self, round_id: int, outcome: Outcome) -> Transaction | None:
        """Attest to the round's outcome; None if this account already attested in it."""
        if self.member_info().last_attest_round == round_id:
            return None
        fn = self.contract.functions.attest(round_id, outcome.as_abi())
        return self._send(fn, f"attest(round {round_id})")

    def finalize(self, round_id: int, outcome: Outcome) -> Transaction | None:
        """Finalize the round with a tuple at quorum; None if it is already finalized."""
        if self._round_status(round_id) == RoundStatus.FINALIZED:
            return None
        fn = self.contract.functions.finalize(round_id, outcome.as_abi())
        return self._send(fn, f"finalize(round {round_id})")

    def fail_round(self, round_id: int) -> Transaction | None:
        """Close an expired round without quorum; None if it already failed."""
        if self._round_status(round_id) == RoundStatus.FAILED:
            return None
        return self._send(self.contract.functions.failRound(round_id), f"failRound({round_id})")

    def slash(self, round_id: int, node: str) -> Transaction | None:
        """Slash `node` for its offence in a closed round; None if already slashed."""
        if self.submission(round_id, node).state == SubmissionState.SLASHED:
            return None
        fn = self.contract.functions.slash(round_id, to_checksum_address(node))
        return self._send(fn, f"slash(round {round_id}, {node})")

    def slash_rejected(
        self, round_id: int, node: str, tuples: Sequence[Outcome]
    ) -> Transaction | None:
        """Slash `node` for an update attested tuples holding quorum rejected in a failed round.

        Parameters
        ----------
        round_id
            The failed round.
        node
            The revealed member.
        tuples
            Attested tuples that leave `node` out, in increasing key order
            (`swarmchain.node.chain.protocol.rejecting_outcomes`).

        Returns
        -------
        Transaction | None
            None if the member is already slashed for the round.

        Raises
        ------
        ChainError
            A named revert: `RoundNotFailed`, `NotSlashable`, `TuplesNotSorted`,
            `TupleNotAttested`, `TupleAcceptsNode` or `RejectionBelowQuorum`.
        """
        if self.submission(round_id, node).state == SubmissionState.SLASHED:
            return None
        fn = self.contract.functions.slashRejected(
            round_id, to_checksum_address(node), [t.as_abi() for t in tuples]
        )
        return self._send(fn, f"slashRejected(round {round_id}, {node})")

    def claim(
        self, round_id: int, account: str, amount: int, proof: Sequence[bytes]
    ) -> Transaction | None:
        """Pay `account` its reward for a finalized round; None if already claimed."""
        if self.has_claimed(round_id, account):
            return None
        fn = self.contract.functions.claim(
            round_id, to_checksum_address(account), amount, list(proof)
        )
        return self._send(fn, f"claim(round {round_id}, {account})")

    # ---- views --------------------------------------------------------------------------------

    def current_round(self) -> int:
        """The open round's id."""
        return int(self._view("currentRound"))

    def round_info(self, round_id: int | None = None) -> RoundInfo:
        """Everything about a round (the current one when None).

        Raises
        ------
        UnknownRound
            For 0 or a round not opened yet.
        """
        rid = self.current_round() if round_id is None else round_id
        v = _tuple(self._view("roundInfo", rid))
        return RoundInfo(
            round=rid,
            status=RoundStatus(v[0]),
            phase=Phase(v[1]),
            base_round=v[2],
            opened_at=v[3],
            commit_deadline=v[4],
            reveal_deadline=v[5],
            attest_deadline=v[6],
            active_at_open=v[7],
            commits=v[8],
            reveals=v[9],
            attests=v[10],
            stake_at_open=v[11],
            required_stake=v[12],
            leading_stake=v[13],
            reward_remaining=v[14],
            seed=bytes(v[15]),
        )

    def round_seed(self, round_id: int) -> bytes:
        """The round's public deterministic seed."""
        return bytes(self._view("roundSeed", round_id))

    def finalized_outcome(self, round_id: int) -> Outcome:
        """The stored tuple of a finalized round.

        Raises
        ------
        RoundNotFinalized
            If the round is not finalized.
        """
        v = _tuple(self._view("finalizedOutcome", round_id))
        return Outcome(bytes(v[0]), v[1], bytes(v[2]), bytes(v[3]), int(v[4]))

    def member_info(self, node: str | None = None) -> MemberInfo:
        """Everything about a member (this account when None)."""
        address = self.account if node is None else to_checksum_address(node)
        v = _tuple(self._view("memberInfo", address))
        return MemberInfo(
            address=address,
            status=MemberStatus(v[0]),
            registered=v[1],
            index=v[2],
            stake=v[3],
            stake_at_open=v[4],
            unbonding_ends=v[5],
            last_commit_round=v[6],
            last_attest_round=v[7],
            ed25519_key=bytes(v[8]),
            x25519_key=bytes(v[9]),
        )

    def member_index(self, node: str | None = None) -> int | None:
        """The member's bitmap index, or None if it never joined."""
        info = self.member_info(node)
        return info.index if info.registered else None

    def member_at(self, index: int) -> str:
        """The account holding member index `index` (the zero address if unassigned)."""
        return str(to_checksum_address(self._view("memberAt", index)))

    def member_count(self) -> int:
        """How many member indices were assigned."""
        return int(self._view("memberCount"))

    def stake_at_open(self, node: str | None = None) -> int:
        """The member's weight in the current round (0: it may not act in it)."""
        return self.member_info(node).stake_at_open

    def submission(self, round_id: int, node: str | None = None) -> Submission:
        """What a node (this account when None) did in a round."""
        address = self.account if node is None else to_checksum_address(node)
        state, stored = self._view("submission", round_id, address)
        state = SubmissionState(state)
        return Submission(state, bytes(stored) if state == SubmissionState.COMMITTED else None)

    def outcome_stake(self, round_id: int, outcome: Outcome) -> int:
        """Stake that attested `outcome` in the round."""
        return int(self._view("outcomeStake", round_id, outcome.key()))

    def has_claimed(self, round_id: int, account: str) -> bool:
        """Whether `account` claimed its reward for the round."""
        return bool(self._view("claimed", round_id, to_checksum_address(account)))

    def params(self) -> CoordinatorParams:
        """The immutable parameters, read from the chain."""
        return CoordinatorParams.from_abi(self._view("params"))

    def task_spec(self) -> tuple[str, bytes]:
        """The task spec's CID and SHA-256, read from the chain."""
        return str(self._view("taskSpecCid")), bytes(self._view("taskSpecHash"))

    def totals(self) -> Totals:
        """The aggregate accounting."""
        return Totals(
            active_stake=int(self._view("activeStake")),
            active_members=int(self._view("activeMembers")),
            total_staked=int(self._view("totalStaked")),
            reward_pool=int(self._view("rewardPool")),
            rewards_outstanding=int(self._view("rewardsOutstanding")),
            last_finalized_round=int(self._view("lastFinalizedRound")),
        )

    def timestamp(self) -> int:
        """The latest block's timestamp: the clock the round windows run on."""
        block = call_view(lambda: self.w3.eth.get_block("latest"), "eth_getBlockByNumber")
        return int(block["timestamp"])

    def events(
        self, from_block: int | None = None, to_block: int | None = None
    ) -> list[ChainEvent]:
        """The coordinator's events in a block range, in chain order.

        Parameters
        ----------
        from_block
            First block; the deployment block when None.
        to_block
            Last block; the latest when None.
        """
        start = self.deployment.deploy_block if from_block is None else from_block
        return self.decoder.fetch(self.w3, start, to_block)

    # ---- helpers ------------------------------------------------------------------------------

    def _view(self, name: str, *args: Any) -> Any:
        return self._views[name](*args)

    def _round_status(self, round_id: int) -> RoundStatus:
        if round_id < 1 or round_id > self.current_round():
            return RoundStatus.NONE
        return self.round_info(round_id).status

    def _send(self, fn: Any, context: str) -> Transaction:
        return self._require_sender().send(fn, context)

    def _require_sender(self) -> Sender:
        if self.sender is None:
            raise ChainError("this coordinator client is read-only", hint="pass a private key")
        return self.sender
