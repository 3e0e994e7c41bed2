"""A round recorded before the protocol room was refactored replays to the same tuple, bit for bit.

`tests/data/recorded-round/` holds a round's public inputs (the task spec, the round's fields and
its revealed submissions in ``round.json``; the envelopes, updates and base checkpoint as files
named by their CIDs) and the outcome `compute_round` gave when it was recorded. Any change that
alters what an honest node attests for the same inputs fails here; a change meant to alter it (a
new valuation, say) records the round again with ``python tests/test_round_replay.py``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from eth_utils.address import to_checksum_address
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from swarmchain.incentives.game import round_utility
from swarmchain.node.learning.data import task_splits
from swarmchain.node.learning.training import genesis_state
from swarmchain.node.protocol.checkpoint import decode_checkpoint, encode_checkpoint
from swarmchain.node.protocol.hashing import content_hash
from swarmchain.node.protocol.round import RoundInputs, aggregation_seed, compute_round
from swarmchain.node.protocol.task import TaskSpec, default_task
from swarmchain.node.protocol.verify import Submission
from swarmchain.storage.codec import decode_update, encode_update, tensor_spec
from swarmchain.storage.embedded import EmbeddedStore
from swarmchain.storage.envelope import Manifest, sign_manifest
from swarmchain.storage.keys import NodeKeys

RECORDED = Path(__file__).parent / "data" / "recorded-round"
CHAIN_ID = 31337
COORDINATOR = to_checksum_address("0x" + "5c" * 20)
ROUND = 7


def _inputs(record: dict[str, Any], store: EmbeddedStore) -> RoundInputs:
    spec = TaskSpec.from_json(record["spec"])
    base_cid = record["base_cid"]
    base = decode_checkpoint(
        store.get(base_cid), spec, cid=base_cid, expected_hash=bytes.fromhex(record["base_hash"])
    )
    return RoundInputs(
        chain_id=record["chain_id"],
        coordinator=record["coordinator"],
        round=record["round"],
        seed=bytes.fromhex(record["seed"]),
        reward=record["reward"],
        spec=spec,
        base=base,
        step=None,
        reference=task_splits(spec)[1],
        submissions=tuple(
            Submission(
                index=s["index"],
                node=s["node"],
                cid=s["cid"],
                content_hash=bytes.fromhex(s["content_hash"]),
                num_samples=s["num_samples"],
                signer=bytes.fromhex(s["signer"]),
            )
            for s in record["submissions"]
        ),
    )


def _outcome(inputs: RoundInputs, store: EmbeddedStore) -> dict[str, Any]:
    result = compute_round(inputs, lambda cid, limit: store.get(cid, max_size=limit))
    return {
        "checkpoint_hash": result.outcome.checkpoint_hash.hex(),
        "checkpoint_cid": result.outcome.checkpoint_cid,
        "accepted_bitmap": result.outcome.accepted_bitmap.hex(),
        "rewards_root": result.outcome.rewards_root.hex(),
        "reward_total": result.outcome.reward_total,
        "verdicts": {
            str(v.index): None if v.reason is None else v.reason.value for v in result.verdicts
        },
    }


def replay(path: Path, work: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The outcome of the round recorded at `path` computed now (a store under `work`), and
    the recorded one."""
    record = json.loads((path / "round.json").read_text())
    with EmbeddedStore(work / "store") as store:
        for blob in sorted((path / "blobs").iterdir()):
            assert store.put(blob.read_bytes()) == blob.name
        return _outcome(_inputs(record, store), store), record["outcome"]


def game_table(path: Path) -> list[int]:
    """Every coalition's quantised utility in the round recorded at `path`, over all of its
    submissions (as valuation would value them had every one been accepted)."""
    record = json.loads((path / "round.json").read_text())
    spec = TaskSpec.from_json(record["spec"])
    blob = {p.name: p.read_bytes() for p in (path / "blobs").iterdir()}
    base_cid = record["base_cid"]
    expected = bytes.fromhex(record["base_hash"])
    base = decode_checkpoint(blob[base_cid], spec, cid=base_cid, expected_hash=expected)
    updates = [
        decode_update(
            blob[json.loads(blob[s["cid"]])["manifest"]["update_cid"]],
            tensor_spec(base.state),
            spec.max_update_bytes,
        )
        for s in record["submissions"]
    ]
    utility = round_utility(
        spec,
        base.state,
        updates,
        [s["num_samples"] for s in record["submissions"]],
        task_splits(spec)[1],
        seed=aggregation_seed(bytes.fromhex(record["seed"])),
    )
    return utility.values_of_masks(range(1 << len(updates)))


def test_the_recorded_round_replays_to_the_recorded_tuple(tmp_path: Path) -> None:
    now, recorded = replay(RECORDED, tmp_path)

    assert now == recorded


def record(path: Path, spec: TaskSpec | None = None, scale: float = 0.02) -> None:
    """Record a round of `spec` (the default task): four honest members (deltas of about
    `scale`), a free-rider and a sign-flipping member."""
    spec = spec or default_task()
    base = encode_checkpoint(genesis_state(spec))
    shutil.rmtree(path, ignore_errors=True)
    (path / "blobs").mkdir(parents=True)
    with EmbeddedStore(path / "store") as store:
        store.put(base.blob)
        gen = torch.Generator().manual_seed(2026)
        honest = [
            {k: scale * torch.randn(v.shape, generator=gen) for k, v in base.state.items()}
            for _ in range(4)
        ]
        deltas = [*honest, {k: torch.zeros(v.shape) for k, v in base.state.items()}]
        deltas.append({k: -3.0 * v for k, v in honest[0].items()})
        submissions = []
        for i, delta in enumerate(deltas):
            keys = NodeKeys(SigningKey(bytes([i + 1]) * 32), PrivateKey(bytes([i + 1]) * 32))
            node = to_checksum_address(f"0x{i + 1:040x}")
            blob = encode_update(delta)
            manifest = Manifest(
                chain_id=CHAIN_ID,
                coordinator=COORDINATOR,
                round=ROUND,
                node=node,
                base_cid=base.cid,
                update_cid=store.put(blob),
                content_hash="0x" + content_hash(blob).hex(),
                num_samples=30 + 7 * i,
            )
            envelope = sign_manifest(manifest, keys)
            submissions.append(
                {
                    "index": i,
                    "node": node,
                    "cid": store.put(envelope),
                    "content_hash": content_hash(envelope).hex(),
                    "num_samples": 30 + 7 * i,
                    "signer": keys.signing_public.hex(),
                }
            )
        record = {
            "spec": json.loads(spec.to_json()),
            "base_cid": base.cid,
            "base_hash": base.hash.hex(),
            "chain_id": CHAIN_ID,
            "coordinator": COORDINATOR,
            "round": ROUND,
            "seed": bytes(range(100, 132)).hex(),
            "reward": 1_000 * 10**18,
            "submissions": submissions,
        }
        record["outcome"] = _outcome(_inputs(record, store), store)
        for cid in [base.cid, *(s["cid"] for s in submissions)]:
            (path / "blobs" / cid).write_bytes(store.get(cid))
        for s in submissions:
            update = json.loads(store.get(s["cid"]))["manifest"]["update_cid"]
            (path / "blobs" / update).write_bytes(store.get(update))
    shutil.rmtree(path / "store")
    (path / "round.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    record(RECORDED)
