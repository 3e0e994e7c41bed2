"""The journal, the task document, node configuration, attack plans and event lines."""

from __future__ import annotations

import json
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import pytest
import torch

from swarmchain.incentives.shapley import ValuationConfig
from swarmchain.node.errors import ConfigError
from swarmchain.node.protocol.checkpoint import CheckpointMismatch, encode_checkpoint
from swarmchain.node.protocol.document import (
    TaskDocument,
    TaskDocumentError,
    fetch_task,
    publish_task,
)
from swarmchain.node.protocol.hashing import content_hash
from swarmchain.node.protocol.task import default_task
from swarmchain.node.runtime.config import NodeConfig, load_node_data, read_private_key
from swarmchain.node.runtime.events import EventKind, NodeEvent, parse_event
from swarmchain.node.runtime.journal import Journal, JournalCorrupt
from swarmchain.node.runtime.local import AttackPlan
from swarmchain.storage.embedded import EmbeddedStore

KEY = "0x" + "11" * 32


def test_journal_records_survive_reopening(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.append("update", round=3, salt="0x01")
    journal.append("sent", round=3, action="commit", tx="0xaa")
    journal.close()

    again = Journal(tmp_path)

    assert [r["kind"] for r in again.records] == ["update", "sent"]
    last = again.last("sent", 3)
    assert last == {"round": 3, "action": "commit", "tx": "0xaa", "kind": "sent", "seq": 1}
    assert again.last("update", 4) is None


def test_a_torn_last_line_is_dropped_and_later_records_append_cleanly(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.append("update", round=1)
    journal.close()
    with (tmp_path / "journal.jsonl").open("ab") as out:
        out.write(b'{"kind":"sent","rou')  # a kill in the middle of a write

    again = Journal(tmp_path)
    again.append("closed", round=1)
    again.close()

    lines = (tmp_path / "journal.jsonl").read_text().splitlines()
    assert [json.loads(line)["kind"] for line in lines] == ["update", "closed"]


def test_a_damaged_record_before_the_last_line_is_reported(tmp_path: Path) -> None:
    (tmp_path / "journal.jsonl").write_text('{"kind":"update"}\nnot json\n{"kind":"sent"}\n')

    with pytest.raises(JournalCorrupt, match="line 2"):
        Journal(tmp_path)


def test_task_document_round_trips_through_the_store(tmp_path: Path) -> None:
    spec = default_task()
    with EmbeddedStore(tmp_path) as store:
        cid, digest, document = publish_task(store, spec)

        fetched, genesis = fetch_task(store, cid, digest)

    assert fetched == document
    assert fetched.spec == spec
    assert genesis.cid == document.genesis_cid
    assert TaskDocument.from_bytes(document.canonical_bytes()) == document


def test_task_document_must_match_the_chain_and_be_canonical(tmp_path: Path) -> None:
    spec = default_task()
    with EmbeddedStore(tmp_path) as store:
        cid, digest, document = publish_task(store, spec)
        with pytest.raises(TaskDocumentError, match="the chain records"):
            fetch_task(store, cid, bytes(32))
        spaced = json.dumps(json.loads(document.canonical_bytes()), indent=1).encode()
        with pytest.raises(TaskDocumentError, match="canonical"):
            TaskDocument.from_bytes(spaced)
        other = encode_checkpoint(
            {k: v + 1 for k, v in fetch_task(store, cid, digest)[1].state.items()}
        )
        forged = replace(document, genesis_cid=store.put(other.blob))
        blob = forged.canonical_bytes()
        with pytest.raises(CheckpointMismatch):
            fetch_task(store, store.put(blob), content_hash(blob))


def test_task_document_carries_the_valuation_settings(tmp_path: Path) -> None:
    cheap = ValuationConfig(method="loo", truncation=Fraction(1, 50), max_evaluations=40)
    with EmbeddedStore(tmp_path) as store:
        cid, digest, _ = publish_task(store, default_task(), cheap)

        fetched, _ = fetch_task(store, cid, digest)

    assert fetched.valuation == cheap
    body = json.loads(fetched.canonical_bytes())
    assert body["valuation"]["truncation"] == "1/50"
    body["valuation"]["method"] = "astrology"
    with pytest.raises(TaskDocumentError, match="astrology"):
        TaskDocument.from_bytes(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
    body["valuation"] = {"method": "auto"}
    with pytest.raises(TaskDocumentError, match="valuation must hold exactly"):
        TaskDocument.from_bytes(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())


def test_task_document_rejects_an_unknown_format_and_a_bad_task() -> None:
    genesis = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    body = json.loads(TaskDocument(default_task(), genesis, bytes(32)).canonical_bytes())
    with pytest.raises(TaskDocumentError, match="format"):
        TaskDocument.from_bytes(json.dumps({**body, "format": "v0"}).encode())
    body["task"]["train"]["lr"] = 0
    with pytest.raises(TaskDocumentError, match="lr"):
        TaskDocument.from_bytes(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())


def test_attack_plans_parse_names_and_parameters() -> None:
    assert AttackPlan.parse("alie") == AttackPlan("alie")
    assert AttackPlan.parse("alie:z=1.5").params == {"z": 1.5}
    with pytest.raises(ConfigError, match="unknown attack"):
        AttackPlan.parse("teleport")
    with pytest.raises(ConfigError, match="no parameter 'q'"):
        AttackPlan.parse("scaling:q=3")
    with pytest.raises(ConfigError, match="number"):
        AttackPlan.parse("scaling:factor=big")


def test_node_config_resolves_the_training_device(tmp_path: Path) -> None:
    config = NodeConfig(tmp_path / "d.json", KEY, tmp_path / "x.npz")
    gpu = torch.cuda.is_available()

    assert config.train_device().type == ("cuda" if gpu else "cpu")  # --device auto
    assert replace(config, device="cpu").train_device() == torch.device("cpu")
    with pytest.raises(ConfigError, match="device must be one of auto, cpu, cuda, got 'tpu'"):
        replace(config, device="tpu")
    with pytest.raises(ConfigError, match="--amp trains in bfloat16 on a CUDA GPU"):
        replace(config, device="cpu", amp=True).train_device()


def test_asking_for_a_gpu_on_a_machine_without_one_is_a_named_error(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU, so --device cuda is valid here")
    config = NodeConfig(tmp_path / "d.json", KEY, tmp_path / "x.npz", device="cuda")
    with pytest.raises(ConfigError, match="--device cuda: torch sees no CUDA GPU"):
        config.train_device()


def test_node_config_rejects_a_bad_key_and_reads_a_key_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="private key"):
        NodeConfig(tmp_path / "d.json", "0x1234", tmp_path / "x.npz")
    key_file = tmp_path / "key.txt"
    key_file.write_text(KEY + "\n")

    assert read_private_key(str(key_file)) == KEY
    with pytest.raises(ConfigError, match="key file: No such file or directory"):
        read_private_key(str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="file name this system can encode"):
        read_private_key("\ud800")  # a lone surrogate: no file name has it
    key_file.write_bytes(b"\x7fELF\xd0\x02")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        read_private_key(str(key_file))


def test_idx_data_needs_labels(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--labels"):
        load_node_data(tmp_path / "images.idx", None)


def test_event_lines_parse_back() -> None:
    event = NodeEvent(EventKind.FINALIZED, 4, {"accuracy": 0.9, "accepted": 5})

    assert parse_event(event.line()) == event
    assert "round 4 finalized" in event.describe()
