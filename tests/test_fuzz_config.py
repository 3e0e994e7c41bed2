"""Hostile task specs, deployment files, task documents and CIDs, fuzzed: each input is either
valid (and then round-trips) or raises a named `SwarmchainError`; nothing crashes."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swarmchain.node import safejson
from swarmchain.node.chain.deployment import load_deployment
from swarmchain.node.errors import ConfigError, SwarmchainError
from swarmchain.node.protocol.document import TaskDocument
from swarmchain.node.protocol.task import TaskSpec, default_task, load_task
from swarmchain.storage.cid import CID, DAG_PB, RAW
from swarmchain.storage.errors import InvalidCID

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ_JSON = settings(FUZZ, max_examples=40)  # generating nested JSON costs more than checking it
JSON_LEAF = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=12)
)
JSON = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
DEFAULT_SPEC = default_task().to_dict()
DEPLOYMENT: dict[str, Any] = {
    "format": 1,
    "chain_id": 31337,
    "token": "0x" + "11" * 20,
    "coordinator": "0x" + "22" * 20,
    "deploy_block": 3,
    "deployer": "0x" + "33" * 20,
    "params": {
        "task_spec_cid": "bafkreitaskspec",
        "task_spec_hash": "0x" + "ab" * 32,
        "quorum_bps": 6667,
        "slash_bps": 1000,
        "commit_duration_s": 300,
        "reveal_duration_s": 120,
        "attest_duration_s": 300,
        "unbonding_delay_s": 3600,
        "min_stake": 100,
        "reward_per_round": 1000,
        "reward_pool": 100_000,
        "token_supply": 10**9,
    },
    "artifacts": {
        name: {"source_hash": "0x00", "bytecode_hash": "0x00", "compiler": "0.8.37"}
        for name in ("SwarmToken", "SwarmCoordinator")
    },
}


def _leaf_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside nested dicts and lists, the root excluded."""
    children: list[tuple[Any, Any]] = []
    if isinstance(value, dict):
        children = list(value.items())
    elif isinstance(value, list):
        children = list(enumerate(value))
    paths = []
    for key, child in children:
        paths.append((*prefix, key))
        paths.extend(_leaf_paths(child, (*prefix, key)))
    return paths


def _replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    """A deep copy of `document` with the value at `path` replaced (or removed if `value` is
    the sentinel `_DROP`)."""
    copy = json.loads(json.dumps(document))
    parent = copy
    for key in path[:-1]:
        parent = parent[key]
    if value is _DROP:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return copy


_DROP = object()
SPEC_PATHS = _leaf_paths(DEFAULT_SPEC)
DEPLOYMENT_PATHS = _leaf_paths(DEPLOYMENT)


@contextmanager
def _file(content: bytes) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "input.json"
        path.write_bytes(content)
        yield path


# ---- task specs ------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes_are_not_a_task_spec(data: bytes) -> None:
    with pytest.raises(ConfigError):
        TaskSpec.from_json(data)
    with _file(data) as path, pytest.raises(ConfigError):
        load_task(path)


@FUZZ_JSON
@given(JSON)
def test_random_json_is_a_task_spec_or_a_config_error(value: Any) -> None:
    try:
        spec = TaskSpec.from_json(json.dumps(value))
    except ConfigError:
        return
    assert TaskSpec.from_json(spec.canonical_bytes()) == spec


@FUZZ_JSON
@given(st.sampled_from(SPEC_PATHS), JSON | st.just(_DROP))
def test_any_field_of_a_task_spec_replaced_is_valid_or_named(
    path: tuple[Any, ...], value: Any
) -> None:
    document = _replaced(DEFAULT_SPEC, path, value)
    try:
        spec = TaskSpec.from_json(json.dumps(document))
    except ConfigError as err:
        assert str(err).startswith("task")  # the message names the field
        return
    assert TaskSpec.from_json(spec.canonical_bytes()) == spec


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000,
        '{"model":' * 50_000,
        '{"model": {"hidden": [1e999]}}',
        '{"model": {"hidden": [100000000000000000000000000000]}}',
        '{"data": {"input_shape": [1, 9223372036854775807, 9223372036854775807]}}',
        '{"update_norm_bound": NaN}',
        '{"aggregation": {"rule": "krum", "params": {"f": {"a": [1]}}}}',
        '{"aggregation": {"pre": [{"name": "nnm", "params": {"f": -1}}]}}',
        '{"aggregation": {"pre": [{}]}}',
        "\ud800",
    ],
)
def test_pathological_task_specs_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError):
        TaskSpec.from_json(text)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_are_not_a_task_document(data: bytes) -> None:
    with pytest.raises(SwarmchainError):
        TaskDocument.from_bytes(data)


# ---- deployment files -----------------------------------------------------------------------


def test_the_reference_deployment_file_loads() -> None:
    with _file(json.dumps(DEPLOYMENT).encode()) as path:
        assert load_deployment(path).deploy_block == 3


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes_are_not_a_deployment_file(data: bytes) -> None:
    with _file(data) as path, pytest.raises(ConfigError):
        load_deployment(path)


@FUZZ_JSON
@given(st.sampled_from(DEPLOYMENT_PATHS), JSON | st.just(_DROP))
def test_any_field_of_a_deployment_file_replaced_is_valid_or_named(
    path: tuple[Any, ...], value: Any
) -> None:
    with _file(json.dumps(_replaced(DEPLOYMENT, path, value)).encode()) as file:
        try:
            deployment = load_deployment(file)
        except ConfigError as err:
            assert str(file) in str(err)  # the message names the file
            return
    assert deployment.params.validate() is None


@pytest.mark.parametrize(
    "content",
    [
        b"[" * 100_000,
        b"\xff\xfe\x00garbage",
    ],
)
def test_pathological_deployment_files_are_config_errors(content: bytes) -> None:
    with _file(content) as path, pytest.raises(ConfigError):
        load_deployment(path)


def test_a_lone_surrogate_in_a_deployment_field_is_a_config_error() -> None:
    document = _replaced(DEPLOYMENT, ("params", "task_spec_cid"), "\ud800")
    with _file(json.dumps(document).encode()) as path, pytest.raises(ConfigError):
        load_deployment(path)


# ---- CIDs -------------------------------------------------------------------------------------


VALID_CID = str(CID.of(RAW, b"hello"))


@FUZZ
@given(st.text(max_size=80) | st.text(alphabet="abcdefghijklmnopqrstuvwxyz234567", max_size=80))
def test_any_text_is_a_canonical_cid_or_invalid(text: str) -> None:
    try:
        cid = CID.parse("b" + text)
    except InvalidCID:
        return
    assert str(cid) == "b" + text


@FUZZ
@given(st.binary(max_size=48))
def test_any_bytes_are_a_binary_cid_or_invalid(raw: bytes) -> None:
    try:
        cid = CID.from_bytes(raw)
    except InvalidCID:
        return
    assert cid.to_bytes() == raw and cid.codec in (RAW, DAG_PB)


@FUZZ
@given(st.integers(0, len(VALID_CID) - 1), st.characters())
def test_an_edited_cid_is_another_canonical_cid_or_invalid(position: int, char: str) -> None:
    text = VALID_CID[:position] + char + VALID_CID[position + 1 :]
    try:
        cid = CID.parse(text)
    except InvalidCID:
        return
    assert str(cid) == text


# ---- the bounded JSON parser -------------------------------------------------------------------


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


@FUZZ_JSON
@given(JSON)
def test_nesting_depth_is_exact_for_json(value: Any) -> None:
    text = json.dumps(value)
    assert safejson.nesting_depth(text) == _depth(value)


@FUZZ
@given(st.integers(safejson.MAX_DEPTH + 1, 5_000), st.sampled_from(["[", '{"a":', '["]",']))
def test_deep_nesting_is_refused_before_parsing(depth: int, opener: str) -> None:
    with pytest.raises(json.JSONDecodeError, match="nesting depth"):
        safejson.loads(opener * depth)
