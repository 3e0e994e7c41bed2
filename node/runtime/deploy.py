"""Deploy a ready-to-run swarm: task and genesis stored, contracts deployed, file written."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from web3 import Web3

from swarmchain.incentives.shapley import ValuationConfig
from swarmchain.node.chain.deploy import deploy_swarm
from swarmchain.node.chain.deployment import Deployment, SwarmParams, save_deployment
from swarmchain.node.protocol.document import publish_task
from swarmchain.node.protocol.task import TaskSpec
from swarmchain.storage.store import Store


def deploy_task_swarm(
    w3: Web3,
    deployer_key: str,
    store: Store,
    spec: TaskSpec,
    out: Path,
    params: SwarmParams | None = None,
    valuation: ValuationConfig | None = None,
) -> Deployment:
    """Store a task and its genesis checkpoint, deploy the swarm for it, write the deployment.

    Parameters
    ----------
    w3
        A connection to the target chain.
    deployer_key
        The deployer's private key (it receives a new token's supply and funds the pool).
    store
        Where members will fetch the task document and the genesis checkpoint.
    spec
        The task.
    out
        The deployment file to write.
    params
        The coordinator's parameters; the task fields are filled in here (defaults otherwise).
    valuation
        How contributions are valued (the incentives package's default when None).

    Returns
    -------
    Deployment
        The deployed swarm, as written to `out`.

    Raises
    ------
    ConfigError
        If a parameter is out of range.
    ChainError
        If a deployment transaction fails.
    """
    cid, digest, _ = publish_task(store, spec, valuation)
    base = params or SwarmParams(task_spec_cid=cid, task_spec_hash="0x" + digest.hex())
    chosen = replace(base, task_spec_cid=cid, task_spec_hash="0x" + digest.hex())
    deployment = deploy_swarm(w3, deployer_key, chosen)
    save_deployment(deployment, out)
    return deployment
