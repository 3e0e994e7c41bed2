"""The task spec: defaults, strict validation naming the field, JSON round trip, canonical hash."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from swarmchain.node.errors import ConfigError
from swarmchain.node.learning.models import build_model
from swarmchain.node.protocol.task import (
    AggregationSpec,
    DataSpec,
    ModelSpec,
    StepSpec,
    TaskSpec,
    TrainSpec,
    default_task,
    dump_task,
    expected_shapes,
    load_task,
)


def test_default_task_is_an_mlp_on_digits() -> None:
    spec = default_task()
    assert spec.data.dataset == "digits"
    assert spec.data.input_shape == (1, 8, 8)
    assert expected_shapes(spec) == {
        "layers.0.bias": ((64,), "F32"),
        "layers.0.weight": ((64, 64), "F32"),
        "layers.1.bias": ((10,), "F32"),
        "layers.1.weight": ((10, 64), "F32"),
    }


def test_cnn_shapes_follow_the_spec() -> None:
    spec = TaskSpec(model=ModelSpec(arch="cnn", hidden=(32,), channels=(8, 16)))
    shapes = expected_shapes(spec)
    assert shapes["convs.0.weight"] == ((8, 1, 3, 3), "F32")
    assert shapes["convs.1.weight"] == ((16, 8, 3, 3), "F32")
    # 8x8 -> pool -> 4x4 -> pool -> 2x2, so the head sees 16 * 2 * 2 inputs.
    assert shapes["head.layers.0.weight"] == ((32, 64), "F32")
    assert list(shapes) == sorted(shapes)


def test_json_round_trip_preserves_spec_and_hash(tmp_path: Path) -> None:
    spec = TaskSpec(
        name="robust",
        train=TrainSpec(lr=0.1, fedprox_mu=0.01),
        aggregation=AggregationSpec("multi_krum", {"f": 1}, (StepSpec("nnm", {"f": 1}),)),
    )
    path = tmp_path / "task.json"
    dump_task(spec, path)
    loaded = load_task(path)
    assert loaded == spec
    assert loaded.canonical_bytes() == spec.canonical_bytes()
    assert loaded.task_hash() == hashlib.sha256(spec.canonical_bytes()).digest()


def test_canonical_bytes_are_sorted_compact_and_complete() -> None:
    spec = default_task()
    raw = spec.canonical_bytes()
    assert b" " not in raw and b"\n" not in raw
    assert raw == json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")).encode()
    # Defaults of rule parameters are written out, so the hash covers them.
    krum = TaskSpec(aggregation=AggregationSpec("multi_krum", {"f": 1}, ()))
    assert json.loads(krum.canonical_bytes())["aggregation"]["params"] == {"f": 1, "m": None}


def test_equal_specs_hash_equal_however_they_are_written() -> None:
    typed = TaskSpec(train=TrainSpec(lr=1, momentum=0))
    parsed = TaskSpec.from_json('{"train": {"lr": 1.0, "momentum": 0.0}}')
    assert typed.task_hash() == parsed.task_hash()
    assert TaskSpec(train=TrainSpec(lr=0.2)).task_hash() != typed.task_hash()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"train": {"lr": 0}}', "task.train.lr must be > 0, got 0.0"),
        ('{"train": {"lr": "fast"}}', "task.train.lr must be a number"),
        ('{"train": {"batch_size": 1.5}}', "task.train.batch_size must be an integer"),
        ('{"train": {"batch_size": true}}', "task.train.batch_size must be an integer"),
        ('{"train": {"lrr": 0.1}}', "task.train has no field 'lrr'"),
        ('{"train": {"momentum": 1.0}}', "task.train.momentum must be in [0, 1)"),
        ('{"train": {"seed_policy": "never"}}', "task.train.seed_policy must be one of"),
        ('{"model": {"arch": "transformer"}}', "task.model.arch must be one of"),
        ('{"model": {"hidden": [64, 0]}}', "task.model.hidden[1] must be an integer >= 1"),
        ('{"data": {"input_shape": [8, 8]}}', "task.data.input_shape must be (channels"),
        ('{"data": {"num_classes": 1}}', "task.data.num_classes must be an integer >= 2"),
        ('{"aggregation": {"rule": "average"}}', "unknown rule 'average'"),
        (
            '{"aggregation": {"rule": "krum", "params": {}, "pre": []}}',
            "task.aggregation.params: rule 'krum' needs parameter 'f'",
        ),
        (
            '{"aggregation": {"rule": "median", "params": {}, "pre": [{"name": "sort"}]}}',
            "unknown step 'sort'",
        ),
        (
            '{"aggregation": {"rule": "median", "params": {}, "pre": [{"name": "nnm"}]}}',
            "task.aggregation.pre.nnm: step 'nnm' needs parameter 'f'",
        ),
        ('{"fixed_point_bits": 31}', "task.fixed_point_bits must be in [1, 30]"),
        ('{"update_norm_bound": 100.0}', "task.update_norm_bound must be <= 64.0"),
        ('{"max_update_bytes": 100}', "task.max_update_bytes must be an integer >= 19240"),
        ('{"reference": {"source": "cid"}}', "task.reference.cid must be set exactly when"),
        ('{"valuation": {"utility": "f1"}}', "task.valuation.utility must be one of"),
        ('{"valuation": {"quantum": 0}}', "task.valuation.quantum must be > 0"),
        ('{"version": 2}', "task.version must be 1"),
        ('{"model": []}', "task.model must be a JSON object"),
        ("[1, 2", "task spec is not valid JSON"),
    ],
)
def test_invalid_specs_name_the_field(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        TaskSpec.from_json(text)
    assert message in str(info.value)


def test_load_task_reports_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read task spec"):
        load_task(tmp_path / "missing.json")


def test_spec_is_frozen() -> None:
    spec = default_task()
    with pytest.raises(AttributeError):
        spec.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.aggregation.params["tau"] = 2.0  # type: ignore[index]


@pytest.mark.parametrize(
    ("model", "data"),
    [
        (ModelSpec(), DataSpec()),
        (ModelSpec(hidden=(32, 16)), DataSpec(input_shape=(3, 5, 7), num_classes=4)),
        (ModelSpec(hidden=()), DataSpec(input_shape=(2, 4, 4))),
        (ModelSpec(arch="cnn"), DataSpec()),
        (ModelSpec(arch="cnn", channels=(4, 8, 8), hidden=(10,)), DataSpec(input_shape=(3, 9, 5))),
        (ModelSpec(arch="cnn", channels=(2,), hidden=()), DataSpec(input_shape=(1, 1, 6))),
    ],
)
def test_expected_shapes_match_the_built_models_state_dict(
    model: ModelSpec, data: DataSpec
) -> None:
    spec = TaskSpec(model=model, data=data)

    state = build_model(model, data).state_dict()

    assert expected_shapes(spec) == {
        name: (tuple(state[name].shape), "F32") for name in sorted(state)
    }


def test_a_task_spec_is_read_and_validated_without_importing_torch() -> None:
    probe = (
        "import sys\n"
        "from swarmchain.node.protocol.task import TaskSpec, default_task\n"
        "TaskSpec.from_json(default_task().to_json())\n"
        "print('torch' in sys.modules, 'swarmchain.node.learning.models' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )

    assert done.stdout.split() == ["False", "False"]
