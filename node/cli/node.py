"""`swarm node join`: stake, register keys, then run rounds until stopped.

Progress comes from the runtime's events: on a terminal a live table (round, phase, accuracy,
rewards, last event), otherwise one event per line, as words or (``--events json`` or
``--json``) as JSON objects that scripts, tests and displays read. Ctrl-C or SIGTERM stops the
node after its current step.
"""

from __future__ import annotations

import signal
import sys
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live

from swarmchain.node.cli.display import NodeView, node_panel
from swarmchain.node.cli.options import DEFAULT_RPC
from swarmchain.node.runtime.events import NodeEvent

app = typer.Typer(help="Run a swarm node.", no_args_is_help=True, add_completion=False)


class EventFormat(StrEnum):
    """How progress events are shown."""

    LIVE = "live"
    TEXT = "text"
    JSON = "json"


@app.command()
def join(
    deployment: Annotated[
        Path, typer.Option("--deployment", help="The deployment file `swarm deploy` wrote.")
    ],
    key: Annotated[
        str,
        typer.Option(
            "--key",
            envvar="SWARM_NODE_KEY",
            help="The member's chain private key (0x...), or a file holding it.",
        ),
    ],
    data: Annotated[
        Path, typer.Option("--data", help="The node's examples: .npz (x, y) or IDX images.")
    ],
    labels: Annotated[
        Path | None, typer.Option("--labels", help="IDX labels file (with IDX --data).")
    ] = None,
    rpc: Annotated[str, typer.Option("--rpc", help="JSON-RPC URL of the chain.")] = DEFAULT_RPC,
    store: Annotated[
        Path | None,
        typer.Option("--store", help="Embedded store directory (default ~/.swarmchain/store)."),
    ] = None,
    ipfs_api: Annotated[
        str | None, typer.Option("--ipfs-api", help="Use an IPFS daemon's RPC API as the store.")
    ] = None,
    peer: Annotated[
        list[str] | None,
        typer.Option("--peer", help="A gateway URL to fetch missing blocks from (repeatable)."),
    ] = None,
    serve: Annotated[
        str | None, typer.Option("--serve", help="Serve this node's blocks on HOST:PORT.")
    ] = None,
    journal: Annotated[
        Path | None,
        typer.Option("--journal", help="Journal directory (default ~/.swarmchain/nodes/ADDR)."),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads", help="CPU threads for torch, NumPy's BLAS and aggregation.", min=1
        ),
    ] = None,
    device: Annotated[
        str,
        typer.Option(
            "--device",
            help="Where to train: auto (a CUDA GPU when torch sees one), cpu or cuda. "
            "Evaluation that feeds a decision is exact, so it is the same on either.",
        ),
    ] = "auto",
    amp: Annotated[
        bool,
        typer.Option("--amp", help="Train in bfloat16 mixed precision (CUDA only)."),
    ] = False,
    train_slots: Annotated[
        int | None,
        typer.Option(
            "--train-slots",
            help="Nodes sharing this machine take turns: at most N of them train at once "
            "(give each the same N, e.g. the number of cores).",
            min=1,
        ),
    ] = None,
    attack: Annotated[
        str | None,
        typer.Option("--attack", help="Forge updates with an attack, e.g. alie or alie:z=1.5."),
    ] = None,
    encrypt: Annotated[
        bool, typer.Option("--encrypt", help="Encrypt updates for the round's members.")
    ] = False,
    stake: Annotated[
        int | None, typer.Option("--stake", help="Tokens to stake (default: the minimum).")
    ] = None,
    min_members: Annotated[
        int, typer.Option("--min-members", help="Open the first round at this many members.")
    ] = 1,
    until_round: Annotated[
        int | None,
        typer.Option("--until-round", help="Exit once this round is closed and settled."),
    ] = None,
    poll: Annotated[
        float,
        typer.Option(
            "--poll", help="Longest wait between looks at the chain (chain events wake it sooner)."
        ),
    ] = 0.25,
    events: Annotated[
        EventFormat | None,
        typer.Option(
            "--events",
            help="Show progress as a live table, text lines or JSON lines "
            "(default: live on a terminal, else text).",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Same as --events json.")] = False,
) -> None:
    """Join a swarm and run rounds until stopped (Ctrl-C leaves cleanly).

    Examples:

        swarm node join --deployment deployment.json --key key.txt --data site-a.npz

        swarm node join --key $KEY --data images.idx --labels labels.idx --ipfs-api URL

        swarm node join --deployment deployment.json --key key.txt --data a.npz --json
    """
    # Imported here, not at the top: they pull in torch, which `--help` does not need.
    from swarmchain.node.runtime.config import NodeConfig, read_private_key
    from swarmchain.node.runtime.local import AttackPlan
    from swarmchain.node.runtime.node import SwarmNode

    config = NodeConfig(
        deployment=deployment,
        private_key=read_private_key(key),
        data=data,
        labels=labels,
        rpc_url=rpc,
        store=store,
        ipfs_api=ipfs_api,
        peers=tuple(peer or ()),
        serve=serve,
        journal=journal,
        threads=threads,
        device=device,
        amp=amp,
        train_slots=train_slots,
        attack=None if attack is None else AttackPlan.parse(attack),
        encrypt=encrypt,
        stake=stake,
        min_members=min_members,
        until_round=until_round,
        poll_s=poll,
    )

    shown = EventFormat.JSON if as_json else events
    if shown is None:
        shown = EventFormat.LIVE if sys.stdout.isatty() else EventFormat.TEXT
    view = NodeView("this node")
    live = Live(node_panel(view), console=Console(), auto_refresh=False)

    def show(event: NodeEvent) -> None:
        if shown == EventFormat.LIVE:
            view.update(event)
            live.update(node_panel(view), refresh=True)
            return
        text = event.line() if shown == EventFormat.JSON else event.describe()
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    node = SwarmNode(config, on_event=show)

    def stop(signum: int, frame: FrameType | None) -> None:
        node.stop()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    if shown == EventFormat.LIVE:
        with live:
            node.run()
    else:
        node.run()
