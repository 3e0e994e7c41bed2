"""The Python bindings: hashes computed exactly as the contract computes them, one named error
per ABI error, one dataclass per ABI event, safe sending, and an event log an auditor can rebuild
the swarm's history from."""

from __future__ import annotations

import http.server
import json
import re
import threading
from dataclasses import fields, replace
from typing import cast

import pytest
import requests
from conftest import HOUR, swarm_params
from eth_abi.abi import encode
from eth_typing import ABIEvent
from eth_utils.abi import event_abi_to_log_topic, function_signature_to_4byte_selector
from web3.types import LogReceipt

from swarmchain.node.chain.abis import abi_of, contract_at
from swarmchain.node.chain.coordinator import Coordinator
from swarmchain.node.chain.deploy import connect
from swarmchain.node.chain.events import (
    _BUILDERS,
    EVENT_TYPES,
    Approval,
    Attested,
    ChainEvent,
    Claimed,
    Joined,
    Revealed,
    RoundFinalized,
    Transfer,
)
from swarmchain.node.chain.protocol import (
    Outcome,
    Phase,
    Reveal,
    commitment,
    decode_bitmap,
    encode_bitmap,
    outcome_key,
    rejecting_outcomes,
    required_stake,
)
from swarmchain.node.chain.reverts import (
    ABI_ERRORS,
    REVERT_TYPES,
    ContractPanic,
    ContractRevert,
    DeadlinePassed,
    InvalidProof,
    RevertedWithMessage,
    UnknownRevert,
    WrongRound,
    decode_revert,
)
from swarmchain.node.devtools.anvil import Anvil
from swarmchain.node.devtools.harness import HarnessMember, SwarmHarness, sample_outcome
from swarmchain.node.errors import ChainError, ConfigError

STAKE = 1_000
PARAMS = swarm_params(
    unbonding_delay_s=HOUR,
)


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


# ---- pure helpers ----------------------------------------------------------------------------


def test_bitmaps_are_lsb_first_over_member_indices() -> None:
    assert encode_bitmap([]) == b""
    assert encode_bitmap([0]) == b"\x01"
    assert encode_bitmap([0, 9]) == b"\x01\x02"
    assert encode_bitmap([7, 300]) == b"\x80" + bytes(36) + b"\x10"
    assert decode_bitmap(encode_bitmap([3, 256, 257, 1000])) == {3, 256, 257, 1000}
    with pytest.raises(ValueError, match="indices are >= 0"):
        encode_bitmap([-1])


def test_rejecting_outcomes_need_quorum_together_and_come_in_key_order() -> None:
    def tuple_of(label: bytes, accepted: list[int]) -> Outcome:
        return Outcome(label * 32, "bafk", encode_bitmap(accepted), bytes(32), 0)

    a, b, c = tuple_of(b"a", [0, 1]), tuple_of(b"b", [0]), tuple_of(b"c", [0, 1, 2])
    stakes = {a: 1_000, b: 1_000, c: 1_000, tuple_of(b"d", []): 0}

    assert rejecting_outcomes(stakes, 2, 1_800) == tuple(sorted([a, b], key=outcome_key))
    assert rejecting_outcomes(stakes, 2, 2_001) == ()  # below quorum together
    assert rejecting_outcomes(stakes, 1, 1_000) == (b,)
    assert rejecting_outcomes(stakes, 0, 1) == ()  # every tuple with stake accepts member 0


def test_required_stake_rounds_up() -> None:
    assert required_stake(4_000, 6_667) == 2_667
    assert required_stake(3, 6_667) == 3
    assert required_stake(0, 6_667) == 1  # an empty round can never finalize


def test_every_abi_error_has_a_named_exception() -> None:
    abi_names = {name for name, _, _ in ABI_ERRORS.values()}
    assert abi_names == set(REVERT_TYPES)
    for cls in REVERT_TYPES.values():
        assert issubclass(cls, ContractRevert) and issubclass(cls, ChainError)
        assert cls.__doc__


def test_decode_revert_names_the_error_and_its_values() -> None:
    selector = function_signature_to_4byte_selector("WrongRound(uint64,uint64)")
    error = decode_revert(selector + encode(["uint64", "uint64"], [7, 5]), context="commit")
    assert isinstance(error, WrongRound)
    assert error.values == {"round": 7, "currentRound": 5}
    assert str(error).startswith("commit reverted: WrongRound(round=7, currentRound=5)")
    assert "currentRound" in str(error) and error.hint is not None

    phase = function_signature_to_4byte_selector("DeadlinePassed(uint64,uint8,uint256,uint256)")
    late = decode_revert(phase + encode(["uint64", "uint8", "uint256", "uint256"], [1, 2, 3, 4]))
    assert isinstance(late, DeadlinePassed) and late.values["phase"] is Phase.ATTEST


def test_decode_revert_handles_panics_messages_and_garbage() -> None:
    panic = function_signature_to_4byte_selector("Panic(uint256)") + encode(["uint256"], [0x11])
    assert isinstance(decode_revert(panic), ContractPanic)
    message = function_signature_to_4byte_selector("Error(string)") + encode(["string"], ["no"])
    reverted = decode_revert(message)
    assert isinstance(reverted, RevertedWithMessage) and reverted.reason == "no"
    assert isinstance(decode_revert(b""), UnknownRevert)
    assert isinstance(decode_revert(b"\xde\xad\xbe\xef"), UnknownRevert)
    truncated = function_signature_to_4byte_selector("WrongRound(uint64,uint64)") + b"\x00" * 5
    assert isinstance(decode_revert(truncated), UnknownRevert)


def test_every_abi_event_has_a_dataclass_with_its_fields() -> None:
    grouped = {
        "outcome": {
            "checkpoint_hash",
            "checkpoint_cid",
            "accepted_bitmap",
            "rewards_root",
            "reward_total",
        },
        "params": {"params"},
    }
    renamed = {"from": "sender", "to": "receiver"}
    seen = set()
    for contract in ("SwarmCoordinator", "SwarmToken"):
        for item in abi_of(contract):
            if item["type"] != "event":
                continue
            seen.add(item["name"])
            cls = EVENT_TYPES[item["name"]]
            own = {f.name for f in fields(cls)} - {f.name for f in fields(ChainEvent)}
            abi = {renamed.get(arg["name"], _snake(arg["name"])) for arg in item["inputs"]}
            expanded = set().union(*(grouped.get(name, {name}) for name in own))
            assert expanded == abi, item["name"]
    assert seen == set(EVENT_TYPES)


# ---- against a deployed swarm ----------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize(
    "reveal",
    [
        Reveal("bafkreiabc", b"\x01" * 32, 1, b"\x02" * 32),
        Reveal("bafk" + "é" * 40, b"\xff" * 32, 2**64 - 1, b"\x00" * 32),
    ],
)
def test_commitment_matches_the_contract(harness: SwarmHarness, reveal: Reveal) -> None:
    c = harness.deployer
    node = harness.w3.eth.accounts[3]
    on_chain = c.contract.functions.commitmentOf(
        reveal.cid, reveal.content_hash, reveal.num_samples, reveal.salt, node, 9
    ).call()
    assert commitment(reveal, node, 9, c.address) == bytes(on_chain)


@pytest.mark.integration
@pytest.mark.parametrize(
    "outcome",
    [
        Outcome(b"\x01" * 32, "bafkcheckpoint", b"", b"\x00" * 32, 0),
        Outcome(
            b"\xaa" * 32, "bafk" + "x" * 100, encode_bitmap(range(0, 600, 7)), b"\x05" * 32, 10**30
        ),
    ],
)
def test_outcome_key_matches_the_contract(harness: SwarmHarness, outcome: Outcome) -> None:
    on_chain = harness.deployer.contract.functions.outcomeKeyOf(outcome.as_abi()).call()
    assert outcome_key(outcome) == outcome.key() == bytes(on_chain)


@pytest.mark.integration
def test_a_mined_revert_is_decoded_by_replay(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    c = members[0].client
    assert c.sender is not None
    future = c.current_round() + 5
    with pytest.raises(WrongRound) as info:
        c.sender.send(c.contract.functions.commit(future, b"\x11" * 32), "commit", gas=200_000)
    assert info.value.values["round"] == future
    assert c.sender.w3.eth.get_block("latest")["gasUsed"] > 0  # it really was mined


@pytest.mark.integration
def test_concurrent_sends_from_one_account_never_reuse_a_nonce(harness: SwarmHarness) -> None:
    c = harness.deployer
    receivers = [harness.w3.eth.accounts[i] for i in range(5, 11)]
    errors: list[Exception] = []

    def pay(to: str) -> None:
        try:
            c.token.transfer(to, 7)
        except ChainError as err:
            errors.append(err)

    threads = [threading.Thread(target=pay, args=(to,)) for to in receivers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [c.token.balance_of(to) for to in receivers] == [7] * len(receivers)


@pytest.mark.integration
def test_read_only_clients_read_but_refuse_to_send(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    auditor = Coordinator(harness.w3, harness.deployment)
    assert auditor.current_round() == harness.deployer.current_round()
    assert auditor.member_info(members[0].address).stake == STAKE
    assert auditor.task_spec() == (PARAMS.task_spec_cid, bytes.fromhex("ab" * 32))
    assert auditor.params() == PARAMS.coordinator_params()
    with pytest.raises(ChainError, match="read-only"):
        auditor.exit()


@pytest.mark.integration
def test_a_client_refuses_a_deployment_of_another_chain(harness: SwarmHarness) -> None:
    with pytest.raises(ConfigError, match="chain id"):
        Coordinator(harness.w3, replace(harness.deployment, chain_id=1))
    nowhere = replace(harness.deployment, coordinator="0x" + "12" * 20)
    with pytest.raises(ConfigError, match="no contract code"):
        Coordinator(harness.w3, nowhere)


@pytest.mark.integration
def test_events_rebuild_the_swarm_history(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    """From logs alone: who joined, what each member revealed, who attested what, what was
    finalized and paid; and every coordinator event type is produced and decoded."""
    c = harness.deployer
    first_round = c.current_round()
    # round A fails with one non-revealer; round B finalizes and pays; the non-revealer is slashed
    reveals = harness.commit_all(members, first_round)
    harness.advance_to_phase(Phase.REVEAL)
    harness.reveal_all(members[1:], reveals, first_round)
    harness.advance_to_phase(Phase.ENDED)
    c.fail_round(first_round)
    c.slash(first_round, members[0].address)
    second = c.current_round()
    reveals = harness.commit_all(members, second)
    harness.reveal_all(members, reveals, second)
    outcome, tree = sample_outcome([0, 1, 2], {m.address: 100 for m in members})
    harness.attest_all(members, outcome, second)
    c.finalize(second, outcome)
    for m in members:
        c.claim(second, m.address, 100, tree.proof(m.address))
    members[2].client.exit()
    harness.advance_to(members[2].client.member_info().unbonding_ends)
    members[2].client.withdraw()

    events = c.events()

    names = {type(e).__name__ for e in events}
    coordinator_events = {
        item["name"] for item in abi_of("SwarmCoordinator") if item["type"] == "event"
    }
    assert names == coordinator_events
    assert events == sorted(events, key=lambda e: (e.block_number, e.log_index))
    joined = {e.node: e.index for e in events if isinstance(e, Joined)}
    assert joined == {m.address: i for i, m in enumerate(members)}
    revealed = {(e.round, e.node): e.cid for e in events if isinstance(e, Revealed)}
    assert revealed[(second, members[0].address)] == reveals[members[0].address].cid
    assert (first_round, members[0].address) not in revealed
    attested = [e for e in events if isinstance(e, Attested) and e.round == second]
    assert {e.outcome for e in attested} == {outcome}
    assert sum(e.weight for e in attested) == 3 * STAKE
    (final,) = [e for e in events if isinstance(e, RoundFinalized)]
    assert final.outcome == c.finalized_outcome(second)
    paid = sum(e.amount for e in events if isinstance(e, Claimed))
    assert paid == final.reward_budget - c.round_info(second).reward_remaining == 300
    assert c.decoder.fetch(harness.w3, harness.deployment.deploy_block, chunk_blocks=3) == events
    token_events = c.token.events.fetch(harness.w3, harness.deployment.deploy_block)
    assert {type(e) for e in token_events} == {Transfer, Approval}
    for decoder, name in ((c.decoder, "SwarmCoordinator"), (c.token.events, "SwarmToken")):
        for log in _logs(harness, decoder.address):
            assert decoder.decode(log) == _decoded_by_web3(harness, name, log)


def _logs(harness: SwarmHarness, address: str) -> list[LogReceipt]:
    return harness.w3.eth.get_logs(
        {"address": address, "fromBlock": harness.deployment.deploy_block, "toBlock": "latest"}
    )


def _decoded_by_web3(harness: SwarmHarness, contract_name: str, log: LogReceipt) -> ChainEvent:
    """What web3's own ABI decoding of the log gives, as the event dataclass."""
    names = {
        event_abi_to_log_topic(cast(ABIEvent, item)): item["name"]
        for item in abi_of(contract_name)
        if item["type"] == "event"
    }
    name = names[bytes(log["topics"][0])]
    contract = contract_at(harness.w3, contract_name, log["address"])
    data = contract.events[name]().process_log(log)
    meta = {
        "block_number": data["blockNumber"],
        "log_index": data["logIndex"],
        "tx_hash": data["transactionHash"].to_0x_hex(),
    }
    return _BUILDERS[name](data["args"], meta)


@pytest.mark.integration
def test_mangled_logs_are_named_and_a_cid_that_is_not_utf8_is_read(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    """A log with an event's signature but not its fields is a named error; a revealed CID that
    is not UTF-8 (the contract takes any bytes) decodes the same on every node, for the update
    checks to reject, instead of stopping every node that reads the record."""
    c = harness.deployer
    round_id = c.current_round()
    reveals = harness.commit_all(members, round_id)
    harness.reveal_all(members, reveals, round_id)
    logs = _logs(harness, c.address)
    revealed = next(log for log in logs if isinstance(c.decoder.decode(log), Revealed))
    with pytest.raises(ChainError, match="Revealed log has 1 indexed topics, its ABI 2"):
        c.decoder.decode({**revealed, "topics": revealed["topics"][:2]})
    with pytest.raises(ChainError, match="Revealed log does not decode"):
        c.decoder.decode({**revealed, "data": revealed["data"][:40]})

    # A string is ABI-encoded as bytes are: the same log with a CID of raw bytes.
    raw = encode(
        ["bytes", "bytes32", "uint64", "bytes32"], [b"bafy\xff\xfe", b"1" * 32, 5, b"2" * 32]
    )
    event = c.decoder.decode({**revealed, "data": raw})
    assert isinstance(event, Revealed)
    assert (event.cid, event.num_samples) == ("bafy\ufffd\ufffd", 5)


@pytest.mark.integration
def test_wrong_proofs_name_the_failing_claim(
    harness: SwarmHarness, members: list[HarnessMember]
) -> None:
    c = harness.deployer
    round_id = c.current_round()
    reveals = harness.commit_all(members, round_id)
    harness.reveal_all(members, reveals, round_id)
    outcome, tree = sample_outcome([0, 1, 2], {members[0].address: 10})
    harness.attest_all(members, outcome, round_id)
    c.finalize(round_id, outcome)
    with pytest.raises(InvalidProof, match=r"claim\(round \d+, 0x"):
        c.claim(round_id, members[1].address, 10, tree.proof(members[0].address))


class _NoBatches(http.server.BaseHTTPRequestHandler):
    """A JSON-RPC endpoint in front of Anvil that answers single requests and refuses batches
    (as some hosted endpoints do)."""

    upstream = ""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if body.lstrip().startswith(b"["):
            reply = json.dumps(
                {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "no batches"}}
            ).encode()
        else:
            reply = requests.post(
                self.upstream, data=body, headers={"Content-Type": "application/json"}, timeout=10
            ).content
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.integration
def test_sends_go_through_an_endpoint_that_refuses_batches(
    anvil: Anvil, harness: SwarmHarness
) -> None:
    handler = type("Handler", (_NoBatches,), {"upstream": anvil.rpc_url})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        w3 = connect(f"http://127.0.0.1:{server.server_address[1]}")
        payer = Coordinator(w3, harness.deployment, harness.deployer_key)
        receiver = harness.w3.eth.accounts[12]
        before = payer.token.balance_of(receiver)
        payer.token.transfer(receiver, 5)
        assert payer.token.balance_of(receiver) == before + 5
    finally:
        server.shutdown()
        server.server_close()
