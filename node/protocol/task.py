"""The task spec: everything peers must agree on to train one model together.

One frozen dataclass per section, a comment per field. The spec is stored in the content store;
the SHA-256 of its canonical bytes (JSON, sorted keys, no whitespace) is the task hash fixed
on-chain at deployment, so every field that changes what peers compute lives here.

Every value is validated when the spec is built; a bad one raises `ConfigError` naming the field
(``task.train.lr must be > 0, got 0.0``).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import types
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Final, get_type_hints

from swarmchain.node import safejson
from swarmchain.node.aggregation.limits import COORD_BOUND, MAX_DIM, MAX_FRAC_BITS
from swarmchain.node.aggregation.registry import (
    DEFAULT_RULE,
    RULES,
    STEPS,
    ParamValue,
    resolve_params,
)
from swarmchain.node.errors import ConfigError

SPEC_VERSION: Final = 1
ARCHS: Final = ("mlp", "cnn")
SEED_POLICIES: Final = ("per_round", "fixed")
REFERENCE_SOURCES: Final = ("holdout", "cid")
UTILITIES: Final = ("accuracy", "neg_loss")


@dataclass(frozen=True)
class ModelSpec:
    """The network every peer trains."""

    arch: str = "mlp"  # "mlp": fully connected; "cnn": 3x3 conv+ReLU+maxpool layers, then MLP
    hidden: tuple[int, ...] = (64,)  # widths of the hidden fully connected layers
    channels: tuple[int, ...] = (16, 32)  # cnn only: output channels of each conv layer

    def __post_init__(self) -> None:
        _normalise(self)
        _one_of("task.model.arch", self.arch, ARCHS)
        _positive_ints("task.model.hidden", self.hidden)
        _positive_ints("task.model.channels", self.channels)
        if self.arch == "cnn" and not self.channels:
            raise ConfigError("task.model.channels must not be empty for arch 'cnn'")


@dataclass(frozen=True)
class DataSpec:
    """What one example looks like."""

    dataset: str = "digits"  # "digits" (bundled with scikit-learn) or a name for the peers' files
    input_shape: tuple[int, ...] = (1, 8, 8)  # (channels, height, width) of one example
    num_classes: int = 10  # labels are 0 .. num_classes - 1
    # Tables (CSV or Parquet): the feature columns in input order and the label column; each
    # feature enters the network as (value - center) / scale, fixed here so every member feeds
    # the network alike. input_shape is then (1, 1, len(features)). Empty for arrays and images.
    features: tuple[str, ...] = ()
    label: str = ""
    center: tuple[float, ...] = ()  # per feature (empty: 0)
    scale: tuple[float, ...] = ()  # per feature (empty: 1)
    # Image folders (one sub-folder per class, PNG or JPEG): the class folder names, label i being
    # classes[i]. Every image is converted to input_shape's channels (1: grey, 3: RGB), resized
    # to its height and width, scaled to [0, 1], then normalised per channel by mean and std.
    classes: tuple[str, ...] = ()
    mean: tuple[float, ...] = ()  # per channel (empty: 0)
    std: tuple[float, ...] = ()  # per channel (empty: 1)

    def __post_init__(self) -> None:
        _normalise(self)
        if not self.dataset:
            raise ConfigError("task.data.dataset must not be empty")
        if len(self.input_shape) != 3:
            raise ConfigError(
                f"task.data.input_shape must be (channels, height, width), got {self.input_shape}"
            )
        _positive_ints("task.data.input_shape", self.input_shape)
        _at_least("task.data.num_classes", self.num_classes, 2)
        if self.features or self.label:
            self._check_table()
        if self.classes or self.mean or self.std:
            self._check_images()

    def _check_table(self) -> None:
        """The table fields name distinct columns and fit the input shape."""
        names = [*self.features, self.label]
        if not self.features or not self.label or not all(names):
            raise ConfigError("task.data: a table needs features (column names) and a label column")
        if len(set(names)) != len(names):
            raise ConfigError(f"task.data: a column is named twice among {names}")
        if self.input_shape != (1, 1, len(self.features)):
            raise ConfigError(
                f"task.data.input_shape must be (1, 1, {len(self.features)}) for "
                f"{len(self.features)} feature columns, got {self.input_shape}"
            )
        for name in ("center", "scale"):
            values = getattr(self, name)
            if values and len(values) != len(self.features):
                raise ConfigError(
                    f"task.data.{name} has {len(values)} values for {len(self.features)} features"
                )
            if not all(math.isfinite(v) for v in values):
                raise ConfigError(f"task.data.{name} must be finite numbers")
        if any(v == 0 for v in self.scale):
            raise ConfigError("task.data.scale must not contain 0")

    def _check_images(self) -> None:
        """The image fields name one folder per class and fit the input's channels."""
        if self.features or self.label:
            raise ConfigError("task.data: a task reads tables or image folders, not both")
        if len(self.classes) != self.num_classes:
            raise ConfigError(
                f"task.data.classes names {len(self.classes)} folders for "
                f"{self.num_classes} classes"
            )
        if len(set(self.classes)) != len(self.classes) or not all(
            c and c not in (".", "..") and "/" not in c and "\\" not in c for c in self.classes
        ):
            raise ConfigError(
                f"task.data.classes must be distinct plain folder names, got {list(self.classes)}"
            )
        channels = self.input_shape[0]
        if channels not in (1, 3):
            raise ConfigError(f"task.data.input_shape: images have 1 or 3 channels, not {channels}")
        for path, values in (("task.data.mean", self.mean), ("task.data.std", self.std)):
            if values and len(values) != channels:
                raise ConfigError(f"{path} has {len(values)} values for {channels} channels")
            if not all(math.isfinite(v) for v in values):
                raise ConfigError(f"{path} must be finite numbers")
        if any(v == 0 for v in self.std):
            raise ConfigError("task.data.std must not contain 0")


@dataclass(frozen=True)
class TrainSpec:
    """Local training each peer runs every round."""

    local_epochs: int = 2  # passes over the local data per round (when local_steps == 0)
    local_steps: int = 0  # if > 0: exactly this many SGD steps per round instead of epochs
    batch_size: int = 32  # examples per SGD step
    lr: float = 0.1  # SGD learning rate
    momentum: float = 0.9  # SGD momentum, reset every round
    weight_decay: float = 0.0  # L2 penalty inside SGD
    fedprox_mu: float = 0.0  # FedProx proximal weight mu/2 * ||w - w_round||^2 (0: plain SGD)
    seed: int = 0  # base seed: genesis weights and local shuffling
    seed_policy: str = "per_round"  # "per_round": H(seed, round, node); "fixed": seed every round

    def __post_init__(self) -> None:
        _normalise(self)
        _at_least("task.train.local_epochs", self.local_epochs, 1)
        _at_least("task.train.local_steps", self.local_steps, 0)
        _at_least("task.train.batch_size", self.batch_size, 1)
        _positive("task.train.lr", self.lr)
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"task.train.momentum must be in [0, 1), got {self.momentum}")
        _non_negative("task.train.weight_decay", self.weight_decay)
        _non_negative("task.train.fedprox_mu", self.fedprox_mu)
        _at_least("task.train.seed", self.seed, 0)
        _one_of("task.train.seed_policy", self.seed_policy, SEED_POLICIES)


@dataclass(frozen=True)
class StepSpec:
    """One pre-aggregation step."""

    name: str  # a key of swarmchain.node.aggregation.registry.STEPS
    params: Mapping[str, ParamValue] = field(default_factory=dict)  # its parameters

    def __post_init__(self) -> None:
        if self.name not in STEPS:
            raise ConfigError(
                f"task.aggregation.pre: unknown step {self.name!r} (known: {sorted(STEPS)})"
            )
        object.__setattr__(
            self,
            "params",
            _resolved(
                STEPS[self.name].params, self.params, f"pre.{self.name}", f"step {self.name!r}"
            ),
        )


@dataclass(frozen=True)
class AggregationSpec:
    """How peers combine the accepted updates of a round."""

    # A task's default pipeline is `default_aggregation()`; these field defaults spell out plain
    # centered clipping, which weighs no self-reported count.
    rule: str = DEFAULT_RULE  # a key of swarmchain.node.aggregation.registry.RULES
    params: Mapping[str, ParamValue] = field(  # the rule's parameters (defaults filled in)
        default_factory=lambda: {"tau": 0.2, "iterations": 3}
    )
    pre: tuple[StepSpec, ...] = ()  # pre-aggregation steps run before the rule, in order

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ConfigError(
                f"task.aggregation.rule: unknown rule {self.rule!r} (known: {sorted(RULES)})"
            )
        object.__setattr__(
            self,
            "params",
            _resolved(RULES[self.rule].params, self.params, "params", f"rule {self.rule!r}"),
        )
        object.__setattr__(self, "pre", tuple(self.pre))


def default_aggregation() -> AggregationSpec:
    """The swarm's default rule, chosen by ``scripts/bench_robustness.py`` (10 nodes, 2 Byzantine,
    Dirichlet 0.5, 3 seeds) for the best worst case over all attacks.

    Centered clipping around the previous aggregate, weighted by sample counts capped at 1.5x the
    median, so that a node split over several identities pulls no harder than the whole; before
    it, the updates that point against a first unweighted pass are set aside, which undoes sign
    flipping and the sample inflation that weighing by counts invites.

    Returns
    -------
    AggregationSpec
        The rule, its parameters and its pre-aggregation steps.
    """
    return AggregationSpec(
        DEFAULT_RULE,
        {"tau": 0.2, "iterations": 3, "weighted": True, "screen": True},
        (StepSpec("sample_cap", {"factor": 1.5}),),
    )


@dataclass(frozen=True)
class ReferenceSpec:
    """The reference set every peer evaluates contributions on (Shapley valuation)."""

    source: str = "holdout"  # "holdout": seeded slice of the bundled dataset; "cid": an .npz blob
    size: int = 300  # examples held out (source "holdout"); the rest is the training pool
    seed: int = 0  # seed of the SHA-256 permutation that picks the held-out examples
    cid: str = ""  # content id of an .npz with arrays x and y (source "cid")

    def __post_init__(self) -> None:
        _normalise(self)
        _one_of("task.reference.source", self.source, REFERENCE_SOURCES)
        _at_least("task.reference.size", self.size, 1)
        _at_least("task.reference.seed", self.seed, 0)
        if (self.source == "cid") != bool(self.cid):
            raise ConfigError(
                "task.reference.cid must be set exactly when source is 'cid', "
                f"got source={self.source!r}, cid={self.cid!r}"
            )


@dataclass(frozen=True)
class ValuationSpec:
    """How contributions are valued."""

    # "accuracy" or "neg_loss" on the reference set, both evaluated exactly (identical on every
    # machine: `swarmchain.node.protocol.exact_eval`). neg_loss is minus the cross-entropy from a
    # fixed-point log-sum-exp: the loss training minimises, smooth in the weights, so it prices
    # contributions too small to change any prediction; accuracy moves a whole example at a time.
    utility: str = "accuracy"
    quantum: float = 1e-4  # utilities are rounded (half to even) to integer multiples of this

    def __post_init__(self) -> None:
        _normalise(self)
        _one_of("task.valuation.utility", self.utility, UTILITIES)
        _positive("task.valuation.quantum", self.quantum)


@dataclass(frozen=True)
class TaskSpec:
    """One swarm's task. Build it, or load it with `TaskSpec.from_json` / `load_task`."""

    version: int = SPEC_VERSION  # format version of this spec
    name: str = "digits-mlp"  # human-readable task name
    model: ModelSpec = field(default_factory=ModelSpec)  # the network
    data: DataSpec = field(default_factory=DataSpec)  # the examples
    train: TrainSpec = field(default_factory=TrainSpec)  # local training
    aggregation: AggregationSpec = field(default_factory=default_aggregation)  # robust rule
    fixed_point_bits: int = 24  # aggregation grid is 2**-fixed_point_bits
    update_norm_bound: float = 10.0  # updates with a larger L2 norm are rejected
    max_update_bytes: int = 1 << 20  # serialised updates larger than this are rejected
    reference: ReferenceSpec = field(default_factory=ReferenceSpec)  # the valuation reference set
    valuation: ValuationSpec = field(default_factory=ValuationSpec)  # contribution valuation
    # Members may encrypt updates for the round's members (`--encrypt`); when False every node
    # rejects encrypted updates, and an outside auditor can re-derive every round.
    encrypted_updates: bool = False

    def __post_init__(self) -> None:
        _normalise(self)
        if self.version != SPEC_VERSION:
            raise ConfigError(f"task.version must be {SPEC_VERSION}, got {self.version}")
        if not self.name:
            raise ConfigError("task.name must not be empty")
        if isinstance(self.fixed_point_bits, bool) or not (
            1 <= self.fixed_point_bits <= MAX_FRAC_BITS
        ):
            raise ConfigError(
                f"task.fixed_point_bits must be in [1, {MAX_FRAC_BITS}], "
                f"got {self.fixed_point_bits}"
            )
        limit = COORD_BOUND / (1 << self.fixed_point_bits)
        _positive("task.update_norm_bound", self.update_norm_bound)
        if self.update_norm_bound > limit:
            raise ConfigError(
                f"task.update_norm_bound must be <= {limit} (2**30 grid units at "
                f"fixed_point_bits={self.fixed_point_bits}), got {self.update_norm_bound}",
                hint="lower the bound or fixed_point_bits",
            )
        dim = sum(math.prod(shape) for shape, _ in expected_shapes(self).values())
        if dim > MAX_DIM:
            raise ConfigError(f"task.model has {dim} parameters, more than {MAX_DIM}")
        _at_least("task.max_update_bytes", self.max_update_bytes, 4 * dim)

    @classmethod
    def from_json(cls, data: str | bytes | Mapping[str, Any]) -> TaskSpec:
        """Build a spec from JSON text or a parsed mapping; missing fields take defaults.

        Parameters
        ----------
        data
            JSON text/bytes, or the parsed object.

        Returns
        -------
        TaskSpec
            The validated spec.

        Raises
        ------
        ConfigError
            Malformed JSON, an unknown field, a wrong type or an invalid value (named).
        """
        if isinstance(data, str | bytes):
            try:
                text = data.decode("utf-8") if isinstance(data, bytes) else data
                data = safejson.loads(text)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ConfigError(f"task spec is not valid JSON: {exc}") from exc
        spec: TaskSpec = _build(cls, data, "task")
        return spec

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain JSON-ready values (tuples become lists)."""
        return _plain(self)  # type: ignore[no-any-return]

    def to_json(self, *, indent: int | None = 2) -> str:
        """Human-readable JSON (sorted keys)."""
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    def canonical_bytes(self) -> bytes:
        """The canonical encoding: JSON, sorted keys, no whitespace, ASCII only."""
        return self._canonical

    @functools.cached_property
    def _canonical(self) -> bytes:
        # Verification keys its codec layout on these bytes for every update of a round; the
        # spec is frozen, so they are built once.
        return json.dumps(
            self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=True
        ).encode()

    def task_hash(self) -> bytes:
        """SHA-256 of `canonical_bytes`: the 32-byte task hash recorded on-chain."""
        return hashlib.sha256(self.canonical_bytes()).digest()


def load_task(path: Path) -> TaskSpec:
    """Read a task spec from a JSON file.

    Raises
    ------
    ConfigError
        The file is missing, unreadable or invalid.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read task spec {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"task spec {path} is not UTF-8 text: {exc}") from exc
    return TaskSpec.from_json(text)


def dump_task(spec: TaskSpec, path: Path) -> None:
    """Write a task spec as readable JSON (load it back with `load_task`)."""
    path.write_text(spec.to_json() + "\n")


def default_task() -> TaskSpec:
    """The default task: an MLP on scikit-learn's bundled 8x8 digits."""
    return TaskSpec()


def expected_shapes(spec: TaskSpec) -> dict[str, tuple[tuple[int, ...], str]]:
    """The parameter names, shapes and dtypes every update of the task must have.

    Computed from the spec alone, without building the model: the names and shapes are those of
    `swarmchain.node.learning.models.build_model`'s ``state_dict`` (a test holds the two together).

    Parameters
    ----------
    spec
        The task.

    Returns
    -------
    dict[str, tuple[tuple[int, ...], str]]
        Parameter name (the model's ``state_dict`` names, sorted) -> (shape, safetensors dtype,
        always ``"F32"``).
    """
    c, h, w = spec.data.input_shape
    shapes: dict[str, tuple[int, ...]] = {}
    prefix = "layers"
    if spec.model.arch == "cnn":
        for i, out_c in enumerate(spec.model.channels):
            shapes[f"convs.{i}.weight"] = (out_c, c, 3, 3)  # (out, in, kernel, kernel)
            shapes[f"convs.{i}.bias"] = (out_c,)
            pool = h >= 2 and w >= 2  # the CNN pools 2x2 while the map is at least 2x2
            c, h, w = out_c, (h // 2 if pool else h), (w // 2 if pool else w)
        prefix = "head.layers"
    widths = [c * h * w, *spec.model.hidden, spec.data.num_classes]
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
        shapes[f"{prefix}.{i}.weight"] = (fan_out, fan_in)
        shapes[f"{prefix}.{i}.bias"] = (fan_out,)
    return {name: (shapes[name], "F32") for name in sorted(shapes)}


def _resolved(
    table: Mapping[str, Any], given: Mapping[str, Any], path: str, what: str
) -> Mapping[str, Any]:
    """Validate aggregation parameters, fill defaults and freeze them."""
    try:
        values = resolve_params(table, dict(given), what)
    except ValueError as exc:
        raise ConfigError(f"task.aggregation.{path}: {exc}") from exc
    return types.MappingProxyType(values)


def _build(cls: type[Any], data: Any, path: str) -> Any:
    """Build dataclass ``cls`` from a JSON object, checking keys and types by field."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path} must be a JSON object, got {type(data).__name__}")
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{path} has no field {unknown[0]!r} (known: {sorted(known)})")
    required = [
        f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING
    ]
    missing = [name for name in required if name not in data]
    if missing:
        raise ConfigError(f"{path} needs field {missing[0]!r}")
    kwargs = {name: _convert(hints[name], data[name], f"{path}.{name}") for name in data}
    return cls(**kwargs)


def _convert(hint: Any, value: Any, path: str) -> Any:
    """Convert one JSON value to the field type ``hint``."""
    if is_dataclass(hint):
        return _build(hint, value, path)  # type: ignore[arg-type]
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{path} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path} must be a string, got {value!r}")
        return value
    if hint == tuple[int, ...]:
        if not isinstance(value, list):
            raise ConfigError(f"{path} must be a list of integers, got {value!r}")
        return tuple(_convert(int, v, f"{path}[{k}]") for k, v in enumerate(value))
    if hint == tuple[str, ...]:
        if not isinstance(value, list):
            raise ConfigError(f"{path} must be a list of strings, got {value!r}")
        return tuple(_convert(str, v, f"{path}[{k}]") for k, v in enumerate(value))
    if hint == tuple[float, ...]:
        if not isinstance(value, list):
            raise ConfigError(f"{path} must be a list of numbers, got {value!r}")
        return tuple(_convert(float, v, f"{path}[{k}]") for k, v in enumerate(value))
    if hint == tuple[StepSpec, ...]:
        if not isinstance(value, list):
            raise ConfigError(f"{path} must be a list of steps, got {value!r}")
        return tuple(_build(StepSpec, v, f"{path}[{k}]") for k, v in enumerate(value))
    if hint == Mapping[str, ParamValue]:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"{path} must be a JSON object, got {value!r}")
        return dict(value)
    raise TypeError(f"no JSON conversion for {path}: {hint}")


def _plain(value: Any) -> Any:
    """Dataclasses, mappings and tuples as JSON-ready dicts and lists."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _normalise(section: Any) -> None:
    """Store ints given for float fields as floats and lists as tuples, so that equal specs
    encode to equal canonical bytes however they were built."""
    for name, hint in get_type_hints(type(section)).items():
        value = getattr(section, name)
        if hint is float and isinstance(value, int) and not isinstance(value, bool):
            object.__setattr__(section, name, float(value))
        elif (hint == tuple[int, ...] and isinstance(value, list)) or (
            hint == tuple[str, ...] and isinstance(value, list)
        ):
            object.__setattr__(section, name, tuple(value))
        elif hint == tuple[float, ...] and isinstance(value, list | tuple):
            object.__setattr__(section, name, tuple(float(v) for v in value))


def _one_of(path: str, value: str, allowed: tuple[str, ...]) -> None:
    """Raise ConfigError unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ConfigError(f"{path} must be one of {list(allowed)}, got {value!r}")


def _at_least(path: str, value: int, low: int) -> None:
    """Raise ConfigError unless ``value`` is an integer >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{path} must be an integer >= {low}, got {value!r}")


def _positive(path: str, value: float) -> None:
    """Raise ConfigError unless ``value`` is a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{path} must be a number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{path} must be > 0, got {value}")


def _non_negative(path: str, value: float) -> None:
    """Raise ConfigError unless ``value`` is a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{path} must be a number, got {value!r}")
    if not (math.isfinite(value) and value >= 0):
        raise ConfigError(f"{path} must be >= 0, got {value}")


def _positive_ints(path: str, values: tuple[int, ...]) -> None:
    """Raise ConfigError unless every entry is an integer in [1, MAX_DIM] (a larger width or
    extent alone gives a model over the parameter cap)."""
    for k, v in enumerate(values):
        _at_least(f"{path}[{k}]", v, 1)
        if v > MAX_DIM:
            raise ConfigError(f"{path}[{k}] must be <= {MAX_DIM}, got {v}")
