"""`swarm store add|cat|serve`: the content store from the shell, mirroring `ipfs add` / `ipfs cat`.

The embedded store (``--store DIR``, default ``$SWARM_STORE`` or ``~/.swarmchain/store``) is used
unless ``--ipfs-api URL`` names an IPFS daemon.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from swarmchain.node.cli.options import Json, echo_json
from swarmchain.node.errors import ConfigError
from swarmchain.storage.dag import cid_of
from swarmchain.storage.embedded import EmbeddedStore
from swarmchain.storage.open import open_store
from swarmchain.storage.server import BlockServer
from swarmchain.storage.store import default_store_path

app = typer.Typer(
    name="store",
    help="Content-addressed storage: add, cat and serve blobs by CID.",
    no_args_is_help=True,
)

StoreOption = Annotated[
    Path | None,
    typer.Option(
        "--store",
        envvar="SWARM_STORE",
        help="Embedded store directory (default ~/.swarmchain/store).",
        show_default=False,
    ),
]
IpfsApiOption = Annotated[
    str | None,
    typer.Option(
        "--ipfs-api",
        envvar="SWARM_IPFS_API",
        help="Use the IPFS daemon at this RPC URL (e.g. http://127.0.0.1:5001) instead.",
    ),
]


def _read_input(file: str) -> bytes:
    if file == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(file).read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read {file}: {err.strerror}") from None
    except UnicodeEncodeError:
        raise ConfigError(f"cannot read {file!r}: this system cannot encode the name") from None


@app.command()
def add(
    file: Annotated[str, typer.Argument(help="The file to add, or - for standard input.")],
    only_hash: Annotated[
        bool, typer.Option("--only-hash", "-n", help="Only compute the CID; store nothing.")
    ] = False,
    quieter: Annotated[
        bool, typer.Option("--quieter", "-Q", help="Print only the final CID.")
    ] = False,
    store: StoreOption = None,
    ipfs_api: IpfsApiOption = None,
    as_json: Json = False,
) -> None:
    """Add a file and print its CID (the one `ipfs add --cid-version=1 --raw-leaves` prints).

    With --json: one object, {"cid": ..., "size": bytes}.

    Examples:

        swarm store add update.safetensors

        swarm store add --json - < update.safetensors
    """
    data = _read_input(file)
    if only_hash:
        cid = cid_of(data)
    else:
        with open_store(store, ipfs_api) as target:
            cid = target.put(data)
    if as_json:
        echo_json({"cid": cid, "size": len(data)})
    else:
        typer.echo(cid if quieter else f"added {cid} {file}")


@app.command()
def cat(
    cid: Annotated[str, typer.Argument(help="The CID to read.")],
    store: StoreOption = None,
    ipfs_api: IpfsApiOption = None,
    peers: Annotated[
        list[str] | None,
        typer.Option("--peer", help="A peer's gateway URL to fetch missing blocks from (repeat)."),
    ] = None,
    max_size: Annotated[
        int | None, typer.Option("--max-size", help="Refuse content larger than this many bytes.")
    ] = None,
) -> None:
    """Write the content of CID to standard output, every block checked against its CID.

    It writes raw bytes, so it has no --json: redirect them to a file or pipe them on.

    Example: swarm store cat bafkrei... --peer http://10.0.0.2:8080 > update.safetensors
    """
    with open_store(store, ipfs_api, peers=peers or ()) as source:
        data = source.get(cid, max_size=max_size)
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


@app.command()
def serve(
    store: StoreOption = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8080,
    as_json: Annotated[
        bool,
        typer.Option("--json", help='Print the startup line as JSON: {"url": ..., "store": ...}.'),
    ] = False,
) -> None:
    """Serve the embedded store's blocks read-only to peers (GET /ipfs/{cid}?format=raw).

    Prints the URL peers pass to `--peer`, then serves until interrupted.

    Examples:

        swarm store serve --host 0.0.0.0 --port 8080

        swarm store serve --port 0 --json
    """
    blocks = EmbeddedStore(store or default_store_path())
    server = BlockServer(blocks, host, port)
    if as_json:
        echo_json({"url": server.url, "store": str(blocks.path)})
    else:
        typer.echo(f"serving {blocks.path} at {server.url}")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        if not as_json:  # stdout stays one JSON line for scripts
            typer.echo("stopped")
    finally:
        server.server_close()
