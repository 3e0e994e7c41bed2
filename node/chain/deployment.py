"""The deployment file: what nodes and auditors need to find and trust a swarm's contracts.

One JSON object (``format`` 1) records the chain id, the token and coordinator addresses, the
block the coordinator was deployed in (where event scans start), the deployer, the hashes of the
artifacts that were deployed, and every parameter. `save_deployment` writes it canonically;
`load_deployment` reads it back and raises `ConfigError` naming the file and the field when
anything is missing or malformed.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from eth_utils.address import is_address, to_checksum_address

from swarmchain.node import safejson
from swarmchain.node.chain.protocol import BPS, MAX_CID_LENGTH, CoordinatorParams
from swarmchain.node.errors import ConfigError

FORMAT_VERSION = 1
MAX_DURATION_S = 3650 * 24 * 3600  # SwarmCoordinator.MAX_DURATION
_HASH = re.compile(r"^0x[0-9a-f]{64}$")


@dataclass(frozen=True)
class SwarmParams:
    """Everything chosen at deployment: the task, the coordinator's parameters, the token."""

    task_spec_cid: str  # CID of the task spec blob (model, hyper-parameters, rule, genesis)
    task_spec_hash: str  # 0x SHA-256 of the task spec blob
    quorum_bps: int = 6667  # share of the stake at round open a tuple needs (> 5000)
    slash_bps: int = 1000  # share of a stake slashed per offence (<= 10000)
    commit_duration_s: int = 300  # commit window
    reveal_duration_s: int = 120  # reveal window
    attest_duration_s: int = 300  # attest window
    unbonding_delay_s: int = 3600  # exit to earliest withdrawal
    min_stake: int = 100 * 10**18  # smallest stake to join with, in token units
    reward_per_round: int = 1_000 * 10**18  # most a finalized round pays out
    reward_pool: int = 100_000 * 10**18  # moved into the coordinator's pool at deployment
    token_supply: int = 10_000_000 * 10**18  # fixed supply minted to the deployer (new token only)

    @classmethod
    def windows(
        cls, commit_s: int, reveal_s: int | None = None, attest_s: int | None = None, **changes: Any
    ) -> SwarmParams:
        """Parameters for `deploy_task_swarm` (which fills in the task's CID and hash) with these
        windows, reveal and attest as long as commit unless given, and any other `changes`."""
        return cls(
            task_spec_cid="-",
            task_spec_hash="0x" + "00" * 32,
            commit_duration_s=commit_s,
            reveal_duration_s=commit_s if reveal_s is None else reveal_s,
            attest_duration_s=commit_s if attest_s is None else attest_s,
            **changes,
        )

    def validate(self) -> None:
        """Check every value against the contract's rules before anything is sent.

        Raises
        ------
        ConfigError
            Naming the first value out of range and its bounds.
        """
        try:
            cid_bytes = self.task_spec_cid.encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigError(f"task_spec_cid {self.task_spec_cid!r} is not valid text") from None
        if not 0 < len(cid_bytes) <= MAX_CID_LENGTH:
            raise ConfigError(f"task_spec_cid must have 1..{MAX_CID_LENGTH} bytes")
        if not _HASH.match(self.task_spec_hash) or int(self.task_spec_hash, 16) == 0:
            raise ConfigError(
                f"task_spec_hash must be a non-zero 0x-prefixed 32-byte lowercase hex SHA-256, "
                f"got {self.task_spec_hash!r}"
            )
        checks = [
            ("quorum_bps", self.quorum_bps, BPS // 2 + 1, BPS),
            ("slash_bps", self.slash_bps, 0, BPS),
            ("commit_duration_s", self.commit_duration_s, 1, MAX_DURATION_S),
            ("reveal_duration_s", self.reveal_duration_s, 1, MAX_DURATION_S),
            ("attest_duration_s", self.attest_duration_s, 1, MAX_DURATION_S),
            ("unbonding_delay_s", self.unbonding_delay_s, 0, MAX_DURATION_S),
            ("min_stake", self.min_stake, 1, 2**128 - 1),
            ("reward_per_round", self.reward_per_round, 0, 2**128 - 1),
            ("reward_pool", self.reward_pool, 0, 2**128 - 1),
            ("token_supply", self.token_supply, 1, 2**128 - 1),
        ]
        for name, value, low, high in checks:
            if not low <= value <= high:
                raise ConfigError(f"{name} must be in [{low}, {high}], got {value}")
        if self.reward_pool > self.token_supply:
            raise ConfigError(
                f"reward_pool ({self.reward_pool}) exceeds token_supply ({self.token_supply})"
            )

    def coordinator_params(self) -> CoordinatorParams:
        """The subset the coordinator's constructor takes."""
        return CoordinatorParams(
            quorum_bps=self.quorum_bps,
            slash_bps=self.slash_bps,
            commit_duration=self.commit_duration_s,
            reveal_duration=self.reveal_duration_s,
            attest_duration=self.attest_duration_s,
            unbonding_delay=self.unbonding_delay_s,
            min_stake=self.min_stake,
            reward_per_round=self.reward_per_round,
        )


@dataclass(frozen=True)
class ArtifactRecord:
    """Which compiled contract was deployed."""

    source_hash: str  # 0x SHA-256 of the Solidity source file (from the artifact)
    bytecode_hash: str  # 0x keccak256 of the creation bytecode that was sent
    compiler: str  # solc version string


@dataclass(frozen=True)
class Deployment:
    """A deployed swarm."""

    chain_id: int
    token: str  # checksummed SwarmToken address
    coordinator: str  # checksummed SwarmCoordinator address
    deploy_block: int  # block of the coordinator's deployment: event scans start here
    deployer: str  # checksummed account that deployed and funded the pool
    params: SwarmParams
    artifacts: dict[str, ArtifactRecord]  # by contract name

    def to_json(self) -> dict[str, Any]:
        """The file's JSON object."""
        return {"format": FORMAT_VERSION, **asdict(self)}


def save_deployment(deployment: Deployment, path: Path) -> None:
    """Write `deployment` to `path` as canonical JSON (sorted keys, two-space indent).

    Raises
    ------
    ConfigError
        If the file cannot be written.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(deployment.to_json(), indent=2, sort_keys=True) + "\n")
    except OSError as err:
        raise ConfigError(f"cannot write deployment file {path}: {err}") from err


def _field(data: dict[str, Any], name: str, kind: type, where: str) -> Any:
    if name not in data:
        raise ConfigError(f"{where}: missing field {name!r}")
    value = data[name]
    # bool is an int subclass; a flag where a number belongs is a malformed file.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: field {name!r} must be {kind.__name__}, got {value!r}")
    return value


def _address(data: dict[str, Any], name: str, where: str) -> str:
    value = _field(data, name, str, where)
    if not is_address(value):
        raise ConfigError(f"{where}: field {name!r} is not an address: {value!r}")
    return str(to_checksum_address(value))


def load_deployment(path: Path) -> Deployment:
    """Read and check a deployment file.

    Parameters
    ----------
    path
        The JSON file `save_deployment` wrote (``swarm deploy --out``).

    Returns
    -------
    Deployment
        The parsed deployment, parameters validated.

    Raises
    ------
    ConfigError
        If the file is missing, not JSON, of another format version, or any field is missing,
        of the wrong type, or out of range.
    """
    where = str(path)
    try:
        data = safejson.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ConfigError(
            f"deployment file {path} does not exist", hint="run `swarm deploy --out FILE` first"
        ) from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"deployment file {path} is not readable JSON: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object")
    version = _field(data, "format", int, where)
    if version != FORMAT_VERSION:
        raise ConfigError(f"{where}: format {version} is not supported (expected {FORMAT_VERSION})")

    raw_params = _field(data, "params", dict, where)
    param_values: dict[str, Any] = {}
    for spec in fields(SwarmParams):
        kind = str if spec.type == "str" else int
        param_values[spec.name] = _field(raw_params, spec.name, kind, f"{where}: params")
    params = SwarmParams(**param_values)
    try:
        params.validate()
    except ConfigError as err:
        raise ConfigError(f"{where}: params: {err}") from err

    artifacts: dict[str, ArtifactRecord] = {}
    for name, record in _field(data, "artifacts", dict, where).items():
        if not isinstance(record, dict):
            raise ConfigError(f"{where}: artifacts.{name} must be an object")
        artifacts[name] = ArtifactRecord(
            **{
                spec.name: _field(record, spec.name, str, f"{where}: artifacts.{name}")
                for spec in fields(ArtifactRecord)
            }
        )
    for name in ("SwarmToken", "SwarmCoordinator"):
        if name not in artifacts:
            raise ConfigError(f"{where}: artifacts has no record for {name}")

    deploy_block = _field(data, "deploy_block", int, where)
    chain_id = _field(data, "chain_id", int, where)
    if deploy_block < 0 or chain_id <= 0:
        raise ConfigError(f"{where}: chain_id must be > 0 and deploy_block >= 0")
    return Deployment(
        chain_id=chain_id,
        token=_address(data, "token", where),
        coordinator=_address(data, "coordinator", where),
        deploy_block=deploy_block,
        deployer=_address(data, "deployer", where),
        params=params,
        artifacts=artifacts,
    )
