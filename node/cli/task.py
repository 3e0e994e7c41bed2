"""`swarm task`: write a task spec to edit, and publish it (with its genesis) to the store.

Publishing stores the genesis checkpoint and the task document (`swarmchain.node.protocol.document`)
and prints the document's CID and SHA-256: the two values `swarm deploy` fixes on-chain.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from swarmchain.node.cli import options
from swarmchain.node.cli.options import echo_json
from swarmchain.node.errors import ConfigError
from swarmchain.storage.open import open_store

app = typer.Typer(
    name="task",
    help="Write and publish the task a swarm trains.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="Where to write the task spec JSON.")] = Path(
        "task.json"
    ),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    as_json: options.Json = False,
) -> None:
    """Write the default task (an MLP on the bundled 8x8 digits) as JSON to edit.

    Examples:

        swarm task init task.json

        swarm task init my-task.json --force
    """
    from swarmchain.node.protocol.task import (  # here: it pulls in torch, `--help` does not
        default_task,
        dump_task,
    )

    if path.exists() and not force:
        raise ConfigError(f"{path} already exists", hint="pass --force to overwrite it")
    try:
        dump_task(default_task(), path)
    except OSError as err:
        raise ConfigError(f"cannot write {path}: {err.strerror}") from None
    if as_json:
        echo_json({"task": str(path)})
    else:
        typer.echo(f"task spec written to {path}; edit it, then `swarm task publish {path}`")


@app.command()
def publish(
    path: Annotated[
        Path | None,
        typer.Argument(help="A task spec JSON (`swarm task init`); the default task if omitted."),
    ] = None,
    store: options.Store = None,
    ipfs_api: options.IpfsApi = None,
    as_json: options.Json = False,
) -> None:
    """Store a task and its genesis checkpoint; print the CID and hash to deploy with.

    Examples:

        swarm task publish --store ./store

        swarm task publish task.json --ipfs-api http://127.0.0.1:5001 --json
    """
    # Imported here, not at the top: they pull in torch, which `--help` does not need.
    from swarmchain.node.protocol.document import publish_task
    from swarmchain.node.protocol.task import default_task, load_task

    spec = default_task() if path is None else load_task(path)
    with open_store(store, ipfs_api) as opened:
        cid, digest, document = publish_task(opened, spec)
    result = {
        "task": spec.name,
        "cid": cid,
        "hash": "0x" + digest.hex(),
        "genesis_cid": document.genesis_cid,
    }
    if as_json:
        echo_json(result)
        return
    typer.echo(f"task {spec.name} published")
    typer.echo(f"  document {cid}")
    typer.echo(f"  sha256   {result['hash']}")
    typer.echo(f"  genesis  {document.genesis_cid}")
    typer.echo(f"next: swarm deploy --task-spec-cid {cid} --task-spec-hash {result['hash']}")
