"""`swarm audit`: a checkpoint's provenance from chain events and the content store alone.

Exit status: 0 when every check matches, 3 on any MISMATCH, 1 when the audit cannot run (an
unreachable chain, a bad deployment file, an unknown checkpoint).
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from swarmchain.node.audit.html import render_html
from swarmchain.node.audit.report import AuditReport, Result, to_markdown
from swarmchain.node.chain.coordinator import Coordinator
from swarmchain.node.chain.deploy import connect
from swarmchain.node.chain.deployment import load_deployment
from swarmchain.node.cli import options
from swarmchain.node.cli.options import echo_json
from swarmchain.node.errors import ConfigError
from swarmchain.storage.open import open_store

MISMATCH_EXIT = 3


class ReportFormat(StrEnum):
    """How the report is written."""

    MD = "md"
    JSON = "json"
    HTML = "html"


def run_audit(
    rpc: str,
    deployment_file: Path,
    checkpoint: str,
    store_dir: Path | None,
    ipfs_api: str | None,
    peers: list[str],
    *,
    show_progress: bool,
) -> AuditReport:
    """Read the chain's record, open the store, and audit `checkpoint`.

    Raises
    ------
    ChainError
        If the chain cannot be reached.
    ConfigError
        For a bad deployment file, another chain, or an unknown checkpoint.
    """
    deployment = load_deployment(deployment_file)
    coordinator = Coordinator(connect(rpc), deployment)
    # Imported only now: they pull in torch, which a mistyped file or URL should not wait for.
    from swarmchain.node.audit.record import SwarmRecord
    from swarmchain.node.audit.replay import Auditor

    record = SwarmRecord.of(coordinator.events())
    with open_store(store_dir, ipfs_api, peers=peers) as store:
        auditor = Auditor(record, deployment, store)
        if not show_progress:
            return auditor.audit(checkpoint)
        console = Console(stderr=True)
        columns = (TextColumn("auditing rounds"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task("audit", total=None)

            def advance(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            return auditor.audit(checkpoint, advance)


def render(report: AuditReport, fmt: ReportFormat) -> str:
    """The report in the chosen format."""
    if fmt == ReportFormat.HTML:
        return render_html(report)
    if fmt == ReportFormat.MD:
        return to_markdown(report)
    return json.dumps(report.to_json(), indent=2)  # result and summary first


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as err:
        raise ConfigError(f"cannot write the report to {path}: {err.strerror}") from None


def audit(
    checkpoint: Annotated[
        str,
        typer.Argument(
            help="The checkpoint: `latest`, a finalized round id, a checkpoint CID or its 0x hash."
        ),
    ] = "latest",
    deployment: options.Deployment = options.DEFAULT_DEPLOYMENT,
    rpc: options.Rpc = options.DEFAULT_RPC,
    store: options.Store = None,
    ipfs_api: options.IpfsApi = None,
    peer: options.Peers = None,
    fmt: Annotated[
        ReportFormat, typer.Option("--format", help="Report format: md, json or html.")
    ] = ReportFormat.MD,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write the report to this file and print only the verdict."),
    ] = None,
    html: Annotated[
        Path | None,
        typer.Option("--html", help="Also write the HTML report to this file."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
) -> None:
    """Verify a checkpoint's lineage back to genesis from chain events and the content store.

    Every blob is checked against its on-chain hash, every round is re-run through the same
    function the nodes ran, and rewards are recomputed; the verdict is MATCH or the first
    MISMATCH (exit status 3).

    Examples:

        swarm audit latest --deployment deployment.json --rpc http://127.0.0.1:8545

        swarm audit bafkrei... --format html --out report.html

        swarm audit 4 --ipfs-api http://127.0.0.1:5001 --json --html report.html
    """
    if as_json:
        fmt = ReportFormat.JSON
    if not checkpoint:
        raise ConfigError("the checkpoint argument is empty", hint="pass `latest`")
    report = run_audit(
        rpc,
        deployment,
        checkpoint,
        store,
        ipfs_api,
        list(peer or ()),
        show_progress=sys.stderr.isatty(),
    )
    text = render(report, fmt)
    if html is not None:
        _write(html, render(report, ReportFormat.HTML))
    if out is None:
        typer.echo(text)
    else:
        _write(out, text)
        if fmt == ReportFormat.JSON:
            echo_json({"result": report.result.value, "report": str(out)})
        else:
            typer.echo(f"{report.summary()}\nreport written to {out}")
    if report.result == Result.MISMATCH:
        raise typer.Exit(MISMATCH_EXIT)
