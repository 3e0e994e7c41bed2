"""Sending transactions: one account, one transaction at a time, reverts as named errors.

`Sender` signs locally with the account's key, takes the nonce from the node's pending count under a
lock (so threads of one process never reuse a nonce), estimates gas first (a transaction that would
revert is never sent: the estimate's revert data becomes the named error of
`swarmchain.node.chain.reverts`), waits for the receipt, and decodes the receipt's events. Run one
`Sender` per key: two processes sending from one key can still race for a nonce.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from eth_account import Account
from eth_typing import ChecksumAddress
from hexbytes import HexBytes
from web3 import Web3
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractLogicError, TimeExhausted, Web3Exception
from web3.providers import JSONBaseProvider
from web3.types import Nonce, RPCEndpoint, TxParams, Wei

from swarmchain.node.chain.events import ChainEvent, EventDecoder
from swarmchain.node.chain.reverts import UnknownRevert, decode_revert
from swarmchain.node.errors import ChainError

GAS_MARGIN = 1.25  # estimates are exact for the state they ran on; leave room for a changed one
T = TypeVar("T")


@dataclass(frozen=True)
class Transaction:
    """A mined, successful transaction."""

    tx_hash: str  # 0x-prefixed
    block_number: int
    gas_used: int
    events: tuple[ChainEvent, ...]  # events of the known contracts it emitted, in order


class TransactionReverted(ChainError):
    """A sent transaction was mined but reverted, and replaying it gave no revert data."""


def revert_data(err: ContractLogicError) -> bytes:
    """The raw revert bytes web3 attached to a contract logic error (empty if none)."""
    data = err.data
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, str) and data.startswith("0x"):
        return bytes(HexBytes(data))
    return b""


def call_view(fn: Callable[[], T], context: str) -> T:
    """Run a contract read, turning reverts into named errors and transport failures into
    `ChainError`."""
    try:
        return fn()
    except ContractLogicError as err:
        raise decode_revert(revert_data(err), context=context) from err
    except (Web3Exception, OSError) as err:
        raise ChainError(f"{context} failed: {err}") from err


def json_rpc(w3: Web3, method: str, params: list[Any], context: str = "") -> Any:
    """One plain JSON-RPC call, without web3's formatting (milliseconds of CPU per call).

    Parameters
    ----------
    w3
        The connection.
    method
        The JSON-RPC method, e.g. ``eth_call``.
    params
        Its parameters, JSON-ready.
    context
        What the call is for, in error messages (the method when empty).

    Returns
    -------
    Any
        The response's ``result``.

    Raises
    ------
    ChainError
        A named revert error for a reverted call, else a `ChainError` when the chain cannot be
        reached or answers with an error.
    """
    context = context or method
    return _result(
        call_view(lambda: w3.provider.make_request(RPCEndpoint(method), params), context), context
    )


def json_rpc_batch(w3: Web3, calls: Sequence[tuple[str, list[Any]]], context: str) -> list[Any]:
    """Several plain JSON-RPC calls in one HTTP request (one round trip instead of several).

    Parameters
    ----------
    w3
        The connection (an HTTP provider).
    calls
        ``(method, params)`` of each call.
    context
        What the calls are for, in error messages.

    Returns
    -------
    list
        Each call's ``result``, in order.

    Raises
    ------
    ChainError
        As `json_rpc`, for the first call that failed.
    """
    provider = w3.provider
    if not isinstance(provider, JSONBaseProvider):
        raise ChainError(f"{context}: the connection cannot batch JSON-RPC requests")
    batch = [(RPCEndpoint(method), params) for method, params in calls]
    responses = call_view(lambda: provider.make_batch_request(batch), context)
    if not isinstance(responses, list) or len(responses) != len(calls):
        error = responses.get("error") if isinstance(responses, dict) else responses
        raise _call_error(error, context)
    return [_result(response, context) for response in responses]


def _result(response: Any, context: str) -> Any:
    """The ``result`` of one JSON-RPC response; its error as a named `ChainError`."""
    error = response.get("error")
    if error is not None:
        raise _call_error(error, context)
    if "result" not in response:
        raise ChainError(f"{context} returned no result")
    return response["result"]


def _call_error(error: Any, context: str) -> ChainError:
    """The named error of a failed ``eth_call`` (a revert), else a `ChainError`."""
    if not isinstance(error, dict):
        return ChainError(f"{context} failed: {error}")
    data = error.get("data")
    if isinstance(data, dict):
        data = data.get("data")
    message = str(error.get("message", ""))
    if isinstance(data, str) and data.startswith("0x"):
        try:
            return decode_revert(bytes.fromhex(data[2:]), context=context)
        except ValueError:
            pass
    if error.get("code") == 3 or "revert" in message:
        return decode_revert(b"", context=context)
    return ChainError(f"{context} failed: {message}")


class Sender:
    """Signs and sends the transactions of one account.

    Parameters
    ----------
    w3
        The connection.
    private_key
        The account's 0x-prefixed private key.
    decoders
        Decoders for the events of the contracts this sender talks to.
    receipt_timeout_s
        How long to wait for a receipt before raising `ChainError`.
    poll_s
        Seconds between receipt polls (web3's default, 0.1 s, dominates on an instant-mining
        local chain).
    """

    def __init__(
        self,
        w3: Web3,
        private_key: str,
        decoders: Sequence[EventDecoder] = (),
        *,
        receipt_timeout_s: float = 120.0,
        poll_s: float = 0.02,
    ) -> None:
        self.w3 = w3
        self._account = Account.from_key(private_key)
        self.address: ChecksumAddress = self._account.address
        self.decoders = list(decoders)
        self.receipt_timeout_s = receipt_timeout_s
        self.poll_s = poll_s
        self._lock = threading.Lock()

    def send(self, fn: ContractFunction, context: str, *, gas: int | None = None) -> Transaction:
        """Estimate, sign, send and wait for one contract call.

        Parameters
        ----------
        fn
            The bound contract function to call.
        context
            What this does (e.g. ``"commit(round 3)"``), for error messages.
        gas
            A fixed gas limit: skips the estimate, so a reverting call is mined (and its revert
            decoded by replaying it). None estimates first and never sends a reverting call.

        Returns
        -------
        Transaction
            The mined transaction and its decoded events.

        Raises
        ------
        ChainError
            The named `ContractRevert` subclass when the call reverts; `TransactionReverted`
            when a mined transaction reverted without data; `ChainError` for transport failures
            and receipt timeouts.
        """
        with self._lock:
            try:
                tx = self._prepared(fn, gas, context)
                signed = self._account.sign_transaction(tx)
                tx_hash = json_rpc(
                    self.w3, "eth_sendRawTransaction", [signed.raw_transaction.to_0x_hex()], context
                )
                receipt = self.w3.eth.wait_for_transaction_receipt(
                    tx_hash, timeout=self.receipt_timeout_s, poll_latency=self.poll_s
                )
            except TimeExhausted as err:
                raise ChainError(
                    f"{context}: no receipt within {self.receipt_timeout_s}s",
                    hint="the transaction may still be mined; check before sending again",
                ) from err
            except (Web3Exception, OSError) as err:
                raise ChainError(f"{context} failed: {err}") from err
        if receipt["status"] != 1:
            raise self._replay_revert(tx, receipt["blockNumber"], context)
        events = tuple(
            event
            for log in receipt["logs"]
            for decoder in self.decoders
            if (event := decoder.decode(log)) is not None
        )
        return Transaction(
            tx_hash=receipt["transactionHash"].to_0x_hex(),
            block_number=receipt["blockNumber"],
            gas_used=receipt["gasUsed"],
            events=events,
        )

    def _prepared(self, fn: ContractFunction, gas: int | None, context: str) -> TxParams:
        """The unsigned EIP-1559 transaction, with its gas estimate (a call that would revert
        raises its named error here), nonce (of the pending state) and fees (web3's default:
        the suggested tip plus twice the latest base fee)."""
        given: TxParams = {
            "from": self.address,
            "chainId": self.w3.eth.chain_id,
            "nonce": Nonce(0),
            "gas": 0,
            "maxFeePerGas": Wei(0),
            "maxPriorityFeePerGas": Wei(0),
        }
        tx = fn.build_transaction(given)  # only encodes: no field is left for web3 to ask for
        if gas is None:
            call = {"from": self.address, "to": tx["to"], "data": tx["data"]}
            estimate = json_rpc(self.w3, "eth_estimateGas", [call, "pending"], context)
            gas = int(int(estimate, 16) * GAS_MARGIN)
        nonce, tip, base_fee = self._nonce_and_fees(context)
        tx["gas"] = gas
        tx["nonce"] = Nonce(nonce)
        tx["maxPriorityFeePerGas"] = Wei(tip)
        tx["maxFeePerGas"] = Wei(tip + 2 * base_fee)
        return tx

    def _nonce_and_fees(self, context: str) -> tuple[int, int, int]:
        """The pending nonce, the suggested tip and the latest base fee, in one batched request;
        through web3's separate calls where the endpoint refuses batches or the tip method
        (web3 then derives the tip from ``eth_feeHistory``)."""
        calls: list[tuple[str, list[Any]]] = [
            ("eth_getTransactionCount", [self.address, "pending"]),
            ("eth_maxPriorityFeePerGas", []),
            ("eth_getBlockByNumber", ["latest", False]),
        ]
        try:
            nonce, tip, block = json_rpc_batch(self.w3, calls, context)
            return int(nonce, 16), int(tip, 16), int(block["baseFeePerGas"], 16)
        except (ChainError, KeyError, TypeError, ValueError):
            pass
        nonce = call_view(
            lambda: self.w3.eth.get_transaction_count(self.address, "pending"), context
        )
        tip = call_view(lambda: self.w3.eth.max_priority_fee, context)
        block = call_view(lambda: self.w3.eth.get_block("latest"), context)
        if "baseFeePerGas" not in block:
            raise ChainError(f"{context}: the chain's blocks have no base fee (before London)")
        return int(nonce), int(tip), int(block["baseFeePerGas"])

    def _replay_revert(self, tx: Any, block_number: int, context: str) -> ChainError:
        """Re-run a reverted transaction as a call on the state before its block for its data."""
        call: TxParams = {"from": self.address, "to": tx["to"], "data": tx["data"]}
        try:
            self.w3.eth.call(call, block_identifier=block_number - 1)
        except ContractLogicError as err:
            error = decode_revert(revert_data(err), context=context)
            if not isinstance(error, UnknownRevert):
                return error
        except (Web3Exception, OSError):
            pass
        return TransactionReverted(f"{context} reverted in block {block_number}")
