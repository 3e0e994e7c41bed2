"""Members' CSV and Parquet tables: read through the task's columns and scaling, or refused whole
with the file, column and row named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from cli_run import run_swarm

from swarmchain.node.errors import ConfigError
from swarmchain.node.learning.data import DataError
from swarmchain.node.learning.tables import load_table, write_table
from swarmchain.node.protocol.task import DataSpec, TaskSpec
from swarmchain.node.runtime.config import load_node_data

SPEC = DataSpec(
    dataset="patients",
    input_shape=(1, 1, 2),
    num_classes=3,
    features=("age", "dose"),
    label="outcome",
    center=(50.0, 0.0),
    scale=(10.0, 2.0),
)


def _table(**columns: list[object]) -> pa.Table:
    base: dict[str, list[object]] = {
        "id": ["p1", "p2", "p3", "p4"],
        "dose": [1.0, 2.0, 4.0, 0.5],
        "age": [40, 50, 70, 55],
        "outcome": [0, 2, 1, 2],
    }
    return pa.table(base | columns)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_table_is_read_through_the_tasks_columns_and_scaling(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"site{suffix}"
    write_table(_table(), path)

    data = load_table(path, SPEC)

    assert data.x.shape == (4, 1, 1, 2)
    expected = [[-1.0, 0.5], [0.0, 1.0], [2.0, 2.0], [0.5, 0.25]]  # (age - 50)/10, dose/2
    assert data.x.reshape(4, 2).tolist() == expected
    assert data.y.tolist() == [0, 2, 1, 2]
    assert load_node_data(path, None, SPEC).x.tolist() == data.x.tolist()


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"age": None}, r"site.csv has no column 'age'"),
        ({"dose": ["a", "b", "c", "d"]}, r"site.csv: column 'dose' holds string, not numbers"),
        ({"dose": [1.0, None, 2.0, 3.0]}, r"site.csv, line 3: column 'dose' has no value"),
        ({"dose": [1.0, 2.0, 3.0, float("inf")]}, r"site.csv, line 5: column 'dose' is inf"),
        ({"outcome": [0, 1, 3, 0]}, r"site.csv, line 4: label 'outcome' is 3, not a class 0..2"),
        ({"outcome": [0, 1.5, 1, 0]}, r"site.csv, line 3: label 'outcome' is 1.5"),
    ],
)
def test_a_bad_table_is_refused_naming_the_column_and_line(
    tmp_path: Path, columns: dict[str, list[object] | None], message: str
) -> None:
    table = _table(**{k: v for k, v in columns.items() if v is not None})
    for name, values in columns.items():
        if values is None:
            table = table.drop_columns([name])
    path = tmp_path / "site.csv"
    write_table(table, path)

    with pytest.raises(DataError, match=message):
        load_table(path, SPEC)


def test_unreadable_and_unasked_tables_are_named_errors(tmp_path: Path) -> None:
    broken = tmp_path / "site.parquet"
    broken.write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match=r"site.parquet: not a readable Parquet table"):
        load_table(broken, SPEC)
    with pytest.raises(DataError, match="names no feature columns"):
        load_table(broken, DataSpec())
    with pytest.raises(ConfigError, match="reading it needs the task's columns"):
        load_node_data(tmp_path / "site.csv", None)
    with pytest.raises(DataError, match="more than the 10 allowed"):
        load_table(broken, SPEC, max_bytes=10)


def test_the_task_checks_its_table_fields_and_keeps_them_in_json() -> None:
    spec = TaskSpec(data=SPEC)
    assert TaskSpec.from_json(spec.to_json()) == spec
    assert TaskSpec.from_json(spec.to_json()).canonical_bytes() == spec.canonical_bytes()
    table = {"features": ["a", "b"], "label": "y", "num_classes": 2}
    with pytest.raises(ConfigError, match=r"input_shape must be \(1, 1, 2\)"):
        DataSpec(**table)  # type: ignore[arg-type]
    fields = {**table, "input_shape": (1, 1, 2)}
    with pytest.raises(ConfigError, match="scale must not contain 0"):
        DataSpec(**fields, scale=(1.0, 0.0))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="center has 1 values for 2 features"):
        DataSpec(**fields, center=(1.0,))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="a column is named twice"):
        DataSpec(**{**fields, "label": "a"})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="needs features"):
        DataSpec(label="y", input_shape=(1, 1, 2))


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_data_split_splits_a_table_into_tables_keeping_rows_whole(
    tmp_path: Path, suffix: str
) -> None:
    rng = np.random.default_rng(0)
    rows = 60
    table = pa.table(
        {
            "note": [f"r{i}" for i in range(rows)],
            "age": rng.integers(20, 90, rows),
            "dose": rng.random(rows),
            "outcome": rng.integers(0, 3, rows),
        }
    )
    source = tmp_path / f"all{suffix}"
    write_table(table, source)

    code, out, err = run_swarm(
        ["data", "split", "--from", str(source), "--label", "outcome", "--parts", "3",
         "--out", str(tmp_path / "sites"), "--json"]
    )  # fmt: skip

    assert code == 0, err
    files = json.loads(out)["files"]
    assert [Path(f["path"]).name for f in files] == [f"site-{i}{suffix}" for i in range(3)]
    assert sum(f["examples"] for f in files) == rows
    parts = [load_table(Path(f["path"]), SPEC) for f in files]
    assert sum(len(p) for p in parts) == rows
    code, _, err = run_swarm(["data", "split", "--from", str(source), "--out", str(tmp_path)])
    assert code != 0 and "--label" in err
