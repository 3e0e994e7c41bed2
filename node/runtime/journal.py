"""The node's local journal: an append-only, fsync'd log of what it decided and sent.

The chain is the authority on what happened; the journal keeps what the chain cannot: the
secrets behind a commitment (the salt and the update's CIDs) and the node's own decisions. A
record is written, flushed and fsync'd *before* the action it enables, so a node killed at any
instant finds on restart every secret it may already have committed to.

One file, ``journal.jsonl``, one canonical JSON object per line::

    {"kind":"started","node":"0x..","coordinator":"0x..","chain_id":31337,"round":2,"seq":0}
    {"kind":"update","round":2,"base_cid":"bafy..","cid":"bafk..","content_hash":"0x..",
     "update_cid":"bafy..","num_samples":180,"salt":"0x..","commitment":"0x..","seq":1}
    {"kind":"sent","round":2,"action":"commit","tx":"0x..","block":41,"seq":2}
    {"kind":"outcome","round":2,"checkpoint_hash":"0x..","checkpoint_cid":"bafk..",
     "bitmap":"0x3f","rewards_root":"0x..","reward_total":"1000","verdicts":[...],"seq":5}
    {"kind":"closed","round":2,"status":"finalized","seq":9}
    {"kind":"skipped","round":3,"phase":"commit","reason":"..","seq":12}

``seq`` numbers records from 0. Only the last line can be torn (a kill mid-write); opening the
journal drops such a tail. Any other damage is reported, never repaired silently.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from swarmchain.node.errors import ConfigError

JOURNAL_FILE = "journal.jsonl"
Record = dict[str, Any]


class JournalCorrupt(ConfigError):
    """A journal line other than the last is not a record."""


def _encode(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode() + b"\n"


class Journal:
    """An append-only record log in a directory.

    Parameters
    ----------
    directory
        Where the journal lives (created if missing).

    Raises
    ------
    JournalCorrupt
        If a complete line of the existing journal is not a JSON record.
    """

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.path = directory / JOURNAL_FILE
        self.records: list[Record] = self._read()
        self._file = self.path.open("ab")

    def _read(self) -> list[Record]:
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        complete, tail = lines[:-1], lines[-1]
        records = []
        for number, line in enumerate(complete, start=1):
            try:
                record = json.loads(line)
            except (UnicodeDecodeError, json.JSONDecodeError):
                record = None
            if not isinstance(record, dict) or "kind" not in record:
                raise JournalCorrupt(
                    f"journal {self.path} line {number} is not a record",
                    hint="move the journal away only if this node never committed with it",
                )
            records.append(record)
        if tail:
            # A write cut short by a kill: the record it began was never relied on.
            with self.path.open("r+b") as out:
                out.truncate(len(data) - len(tail))
                os.fsync(out.fileno())
        return records

    def append(self, kind: str, **fields: Any) -> Record:
        """Write one record and fsync it before returning.

        Parameters
        ----------
        kind
            The record's kind (``"update"``, ``"sent"``, ...).
        **fields
            JSON-ready values.

        Returns
        -------
        dict
            The record as written (with ``kind`` and ``seq``).
        """
        record = {**fields, "kind": kind, "seq": len(self.records)}
        self._file.write(_encode(record))
        self._file.flush()
        os.fsync(self._file.fileno())
        self.records.append(record)
        return record

    def of_kind(self, kind: str, round_id: int | None = None) -> Iterator[Record]:
        """Records of one kind (and one round, when given), oldest first."""
        for record in self.records:
            if record["kind"] == kind and (round_id is None or record.get("round") == round_id):
                yield record

    def last(self, kind: str, round_id: int | None = None) -> Record | None:
        """The newest record of a kind (and round), or None."""
        matches = list(self.of_kind(kind, round_id))
        return matches[-1] if matches else None

    def close(self) -> None:
        """Close the file; records already appended are on disk."""
        self._file.close()
