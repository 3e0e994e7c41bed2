"""The swarm's task document: the blob whose CID and SHA-256 the coordinator fixes at deployment.

It binds the task spec to the checkpoint round 1 starts from and to how contributions are
valued, so that a node needs nothing but the chain and the content store to know exactly what to
train and what to attest::

    {"format":"swarmchain-task/1","genesis":{"cid":"bafk...","sha256":"0x..."},"task":{...},
     "valuation":{"antithetic":true,"method":"auto",...,"truncation":"1/100"}}

The bytes are canonical JSON (sorted keys, no whitespace, ASCII), ``task`` is
`swarmchain.node.protocol.task.TaskSpec.to_dict`, ``genesis`` names the genesis checkpoint: the
task's model initialised from ``task.train.seed``
(`swarmchain.node.learning.training.genesis_state`), encoded with the update codec, and
``valuation`` holds every field of `swarmchain.incentives.shapley.ValuationConfig` (fractions
written ``"p/q"``): the estimator and its budget, a trade-off between the precision of rewards and
the time every member spends on them each round. Nodes check the document against the on-chain hash
and the genesis blob against the document before using either, so a store can withhold them but not
swap them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from fractions import Fraction
from typing import Any, get_type_hints

from swarmchain.incentives.shapley import ESTIMATORS, ValuationConfig
from swarmchain.node import safejson
from swarmchain.node.errors import ConfigError, VerificationError
from swarmchain.node.learning.training import genesis_state
from swarmchain.node.protocol.checkpoint import Checkpoint, decode_checkpoint, encode_checkpoint
from swarmchain.node.protocol.evaluation import check_exact
from swarmchain.node.protocol.hashing import content_hash
from swarmchain.node.protocol.task import TaskSpec
from swarmchain.storage.cid import CID
from swarmchain.storage.errors import InvalidCID
from swarmchain.storage.store import Store

DOCUMENT_FORMAT = "swarmchain-task/1"
MAX_DOCUMENT_BYTES = 1 << 20  # a task document is a few KiB; refuse anything absurd


class TaskDocumentError(VerificationError):
    """A task document does not match its on-chain hash, or is malformed."""


@dataclass(frozen=True)
class TaskDocument:
    """A task spec, the genesis checkpoint it starts from, and how contributions are valued."""

    spec: TaskSpec  # the task every member trains
    genesis_cid: str  # CID of the genesis checkpoint blob
    genesis_hash: bytes  # SHA-256 of that blob (32 bytes)
    valuation: ValuationConfig = field(default_factory=ValuationConfig)  # Shapley estimator

    def canonical_bytes(self) -> bytes:
        """The document's canonical encoding: what is stored and hashed."""
        body = {
            "format": DOCUMENT_FORMAT,
            "genesis": {"cid": self.genesis_cid, "sha256": "0x" + self.genesis_hash.hex()},
            "task": self.spec.to_dict(),
            "valuation": _valuation_json(self.valuation),
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> TaskDocument:
        """Parse a document, insisting on its canonical form.

        Raises
        ------
        TaskDocumentError
            If the bytes are too long, not canonical JSON of this format, or name a malformed
            genesis; a bad task spec raises it too, carrying the spec's own message.
        """
        if len(data) > MAX_DOCUMENT_BYTES:
            raise TaskDocumentError(f"task document holds {len(data)} bytes, over the bound")
        try:
            body = safejson.loads(data.decode("ascii"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise TaskDocumentError(f"task document is not ASCII JSON: {err}") from None
        if not isinstance(body, dict) or set(body) != {"format", "genesis", "task", "valuation"}:
            raise TaskDocumentError(
                "task document must hold exactly format, genesis, task and valuation"
            )
        if body["format"] != DOCUMENT_FORMAT:
            raise TaskDocumentError(
                f"task document format {body['format']!r} is not {DOCUMENT_FORMAT!r}"
            )
        genesis = body["genesis"]
        if not isinstance(genesis, dict) or set(genesis) != {"cid", "sha256"}:
            raise TaskDocumentError("task document genesis must hold exactly cid and sha256")
        try:
            spec = TaskSpec.from_json(body["task"])
        except ConfigError as err:
            raise TaskDocumentError(f"task document holds an invalid task: {err}") from None
        valuation = _valuation(body["valuation"])
        document = cls(spec, _cid(genesis["cid"]), _sha256(genesis["sha256"]), valuation)
        if document.canonical_bytes() != data:
            raise TaskDocumentError("task document is not in canonical form")
        return document


def _valuation_json(config: ValuationConfig) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(ValuationConfig):
        value = getattr(config, f.name)
        out[f.name] = (
            f"{value.numerator}/{value.denominator}" if isinstance(value, Fraction) else value
        )
    return out


def _valuation(value: Any) -> ValuationConfig:
    """Parse and check the valuation section (every field of `ValuationConfig`, typed)."""
    names = {f.name for f in fields(ValuationConfig)}
    if not isinstance(value, dict) or set(value) != names:
        raise TaskDocumentError(f"task document valuation must hold exactly {sorted(names)}")
    hints = get_type_hints(ValuationConfig)
    parsed: dict[str, Any] = {}
    for name, given in value.items():
        hint = hints[name]
        if hint is Fraction:
            try:
                number = Fraction(given) if isinstance(given, str) and "/" in given else None
            except (ValueError, ZeroDivisionError):
                number = None
            if number is None or not 0 <= number < 1:
                raise TaskDocumentError(f"valuation.{name} must be a fraction 'p/q' in [0, 1)")
            parsed[name] = number
        elif hint is bool or hint is str:
            if not isinstance(given, hint):
                raise TaskDocumentError(f"valuation.{name} must be a {hint.__name__}")
            parsed[name] = given
        else:  # int, or int | None
            optional = hint is not int
            if not (given is None and optional) and (type(given) is not int or given < 0):
                raise TaskDocumentError(f"valuation.{name} must be an integer >= 0")
            parsed[name] = given
    if parsed["method"] != "auto" and parsed["method"] not in ESTIMATORS:
        raise TaskDocumentError(
            f"valuation.method {parsed['method']!r} is not auto or one of {sorted(ESTIMATORS)}"
        )
    return ValuationConfig(**parsed)


def _cid(value: Any) -> str:
    if not isinstance(value, str):
        raise TaskDocumentError(f"genesis cid must be a string, got {value!r}")
    try:
        CID.parse(value)
    except InvalidCID as err:
        raise TaskDocumentError(f"genesis cid: {err}") from None
    return value


def _sha256(value: Any) -> bytes:
    if isinstance(value, str) and value.startswith("0x") and len(value) == 66:
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            pass
    raise TaskDocumentError(f"genesis sha256 must be 0x + 64 hex digits, got {value!r}")


def publish_task(
    store: Store, spec: TaskSpec, valuation: ValuationConfig | None = None
) -> tuple[str, bytes, TaskDocument]:
    """Store a task's genesis checkpoint and its task document.

    Parameters
    ----------
    store
        Where members will fetch both blobs.
    spec
        The task.
    valuation
        How contributions are valued; the incentives package's default when None.

    Returns
    -------
    tuple[str, bytes, TaskDocument]
        The document's CID and SHA-256 (what the coordinator records) and the document.

    Raises
    ------
    ConfigError
        The task's network has a layer with no exact evaluation rule (valuation could not be
        reproduced across machines).
    """
    check_exact(spec)
    genesis = encode_checkpoint(genesis_state(spec))
    stored = store.put(genesis.blob)
    document = TaskDocument(spec, stored, genesis.hash, valuation or ValuationConfig())
    blob = document.canonical_bytes()
    return store.put(blob), content_hash(blob), document


def fetch_task(store: Store, cid: str, expected_hash: bytes) -> tuple[TaskDocument, Checkpoint]:
    """Fetch and check a swarm's task document and its genesis checkpoint.

    Parameters
    ----------
    store
        The content store.
    cid, expected_hash
        The document's CID and SHA-256 as the coordinator records them.

    Returns
    -------
    tuple[TaskDocument, Checkpoint]
        The document and the decoded genesis checkpoint.

    Raises
    ------
    TaskDocumentError
        If the document's hash differs from the chain's, or it is malformed.
    StorageError
        If a blob cannot be fetched.
    VerificationError
        If the genesis blob does not match the document or the task's shapes.
    """
    blob = store.get(cid, max_size=MAX_DOCUMENT_BYTES)
    if content_hash(blob) != expected_hash:
        raise TaskDocumentError(
            f"task document {cid} hashes to 0x{content_hash(blob).hex()}, the chain records "
            f"0x{expected_hash.hex()}"
        )
    document = TaskDocument.from_bytes(blob)
    genesis_blob = store.get(document.genesis_cid, max_size=document.spec.max_update_bytes)
    genesis = decode_checkpoint(
        genesis_blob, document.spec, cid=document.genesis_cid, expected_hash=document.genesis_hash
    )
    return document, genesis
