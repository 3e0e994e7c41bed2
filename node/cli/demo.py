"""`swarm demo`: a whole swarm on this machine, from nothing, audited at the end.

It starts a local Anvil chain, publishes the task and its genesis to an embedded store, deploys
the contracts, funds N members and gives each a Dirichlet label-skewed share of the data, then
starts N real ``swarm node join`` processes, one of them an attacker. While they train, commit,
reveal, verify, attest and finalize, progress bars follow each node's events. At the end it
re-runs the honest members in-process without the attacker (the baseline: the runtime's pure
round function on the same seeds), audits the final checkpoint from the chain and the store
alone, writes the HTML report, and prints the summary.

Everything lands in ``--out`` (default ``swarm-demo/``): the report, the deployment file, the
store, the chain's state, the nodes' journals and logs. ``swarm chain --state
swarm-demo/chain-state.json`` brings the chain back, so ``swarm status`` and ``swarm audit``
can be run on it afterwards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from swarmchain.node.audit.report import Result
from swarmchain.node.cli.audit import MISMATCH_EXIT
from swarmchain.node.cli.options import echo_json

DEFAULT_ATTACK = "scaling"  # boosted updates: rejected by the norm bound, then slashed


def demo(
    nodes: Annotated[int, typer.Option("--nodes", help="Node processes to run.")] = 6,
    rounds: Annotated[int, typer.Option("--rounds", help="Training rounds to run.")] = 15,
    attack: Annotated[
        str,
        typer.Option(
            "--attack",
            help="The last node's attack (alie, ipm, sign_flip, scaling:factor=20, "
            "label_flip, free_rider, ...), or none.",
        ),
    ] = DEFAULT_ATTACK,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Your examples (.npz with x and y, or IDX images with --labels) instead of "
            "the bundled digits.",
        ),
    ] = None,
    labels: Annotated[
        Path | None, typer.Option("--labels", help="IDX labels file (with IDX --data).")
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", help="Directory for the report, store, logs and chain state.")
    ] = Path("swarm-demo"),
    window: Annotated[
        int,
        typer.Option(
            "--window",
            help="Seconds of each commit, reveal and attest window (an upper bound).",
            min=5,
        ),
    ] = 40,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Run a complete swarm on this machine: chain, contracts, nodes (one attacking), audit.

    It starts Anvil, deploys, starts the nodes as separate processes, runs the rounds with
    progress bars, prints accuracy per round beside a run without the attacker, rewards and
    slashes per node and the audit of the final checkpoint, and writes an HTML report.

    Examples:

        swarm demo

        swarm demo --attack ipm --nodes 5 --rounds 3

        swarm demo --data mnist.npz --json
    """
    from swarmchain.node.cli.demo_swarm import (  # here: torch, not for `--help`
        print_summary,
        run_demo,
    )

    console = Console(stderr=True) if as_json else Console()
    result = run_demo(nodes, rounds, attack, data, labels, out, window, console)
    if as_json:
        echo_json(result.to_json())
    else:
        print_summary(result, console)
    if result.report.result == Result.MISMATCH:
        raise typer.Exit(MISMATCH_EXIT)
