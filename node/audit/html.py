"""The audit report as one self-contained HTML file: inline CSS and SVG, no script, no network.

It opens in any browser offline: the verdict, the task, three plots (accuracy per round,
rewards per node per round, accepted and rejected updates per round), then each round of the
lineage with its updates, attestations, rewards and slashes, and the list of checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

from swarmchain.node.audit.report import AuditReport, Check, Result, RoundReport, short, tokens
from swarmchain.node.audit.svg import Series, line_chart, stacked_bars

ACCEPTED_COLOR = "#009E73"
REJECTED_COLOR = "#D55E00"

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1b1b1b;
       max-width: 1080px; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: .25rem; }
h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
code { font: 12px ui-monospace, "SFMono-Regular", Menlo, monospace; word-break: break-all; }
table { border-collapse: collapse; margin: .5rem 0 1rem; width: 100%; }
th, td { border-bottom: 1px solid #eee; padding: .25rem .5rem; text-align: left;
         vertical-align: top; }
td.num, th.num { text-align: right; white-space: nowrap; }
.verdict { display: inline-block; padding: .3rem .8rem; border-radius: 4px; color: #fff;
           font-weight: 600; }
.MATCH { background: #1a7f37; }
.MISMATCH { background: #cf222e; }
.bad { color: #cf222e; }
.muted { color: #666; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr));
          gap: 1rem; }
svg.chart { width: 100%; height: auto; background: #fafafa; border: 1px solid #eee; }
svg .grid { stroke: #e4e4e4; }
svg .axis { stroke: #888; }
svg .tick, svg .legend { font: 11px system-ui, sans-serif; fill: #444; }
svg .axis-title { font: 12px system-ui, sans-serif; fill: #444; }
svg .chart-title { font: 600 13px system-ui, sans-serif; fill: #1b1b1b; }
details { margin: .5rem 0; }
"""


def _percent(value: float) -> str:
    return f"{100 * value:.0f}%"


def _count(value: float) -> str:
    return f"{value:g}"


def _tokens_axis(value: float) -> str:
    return f"{value:,.6g}"


def render_html(
    report: AuditReport,
    *,
    title: str | None = None,
    baseline: Mapping[int, float] | None = None,
    names: Mapping[str, str] | None = None,
    intro: str = "",
) -> str:
    """The report as one HTML document.

    Parameters
    ----------
    report
        The audit's findings.
    title
        The page title; a default naming the checkpoint's round when None.
    baseline
        Accuracy per round of a comparison run (``swarm demo``: the swarm without its
        attacker), drawn dashed beside the audited accuracy.
    names
        Display names of accounts (``node 3 (attacker)``); short addresses otherwise.
    intro
        A paragraph of plain text shown under the title.

    Returns
    -------
    str
        The document; it loads nothing from anywhere.
    """
    names = names or {}
    heading = title or f"Provenance audit: checkpoint of round {report.checkpoint_round}"
    body = [
        f"<h1>{escape(heading)}</h1>",
        f"<p>{escape(intro)}</p>" if intro else "",
        f'<p><span class="verdict {report.result.value}">{report.result.value}</span> '
        f"{escape(report.summary())}</p>",
        _facts(report),
        _mismatches(report),
        '<h2>Plots</h2><div class="charts">',
        _accuracy_chart(report, baseline),
        _rewards_chart(report, names),
        _verdict_chart(report),
        "</div>",
        *(_round_section(r, names) for r in report.rounds),
        _checks(report),
    ]
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{escape(heading)}</title>",
            f"<style>{_CSS}</style>",
            "</head><body>",
            *(part for part in body if part),
            "</body></html>",
            "",
        ]
    )


def _name(account: str, names: Mapping[str, str]) -> str:
    return names.get(account, short(account, 6))


def _facts(report: AuditReport) -> str:
    rows = [
        ("chain", f"{report.chain_id}, coordinator <code>{escape(report.coordinator)}</code>"),
        ("task", f"{escape(report.task_name or '-')}: <code>{escape(report.task_cid)}</code>"),
        ("task hash", f"<code>{escape(report.task_hash)}</code>"),
        ("genesis", f"<code>{escape(report.genesis_cid or '-')}</code>"),
        (
            "checkpoint",
            f"round {report.checkpoint_round}: <code>{escape(report.checkpoint_cid)}</code>",
        ),
        ("checkpoint hash", f"<code>{escape(report.checkpoint_hash)}</code>"),
    ]
    cells = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


def _mismatches(report: AuditReport) -> str:
    failed = [c for c in report.checks if not c.ok]
    if not failed:
        return ""
    items = "".join(f'<li class="bad">{escape(c.describe())}</li>' for c in failed)
    return f"<h2>Mismatches</h2><ol>{items}</ol>"


def _finalized(report: AuditReport) -> list[RoundReport]:
    return [r for r in report.rounds if r.checkpoint_cid]


def _accuracy_chart(report: AuditReport, baseline: Mapping[int, float] | None) -> str:
    rounds = _finalized(report)
    labels = ["genesis", *(str(r.round) for r in rounds)]
    series = [
        Series("audited checkpoints", [report.genesis_accuracy, *(r.accuracy for r in rounds)])
    ]
    if baseline:
        start = report.genesis_accuracy
        series.append(
            Series(
                "baseline (no attacker)",
                [start, *(baseline.get(r.round) for r in rounds)],
                dashed=True,
            )
        )
    return line_chart(
        "Accuracy on the reference set per round",
        labels,
        series,
        x_title="round",
        fmt=_percent,
        y_max=1.0,
    )


def _rewards_chart(report: AuditReport, names: Mapping[str, str]) -> str:
    rounds = _finalized(report)
    accounts = sorted({a for r in rounds for a in r.rewards}, key=lambda a: _name(a, names))
    stacks = [
        Series(
            _name(account, names),
            [r.rewards.get(account, 0) / 10**18 for r in rounds],
        )
        for account in accounts
    ]
    return stacked_bars(
        "Rewards per node per round (tokens)",
        [str(r.round) for r in rounds],
        stacks,
        x_title="round",
        fmt=_tokens_axis,
    )


def _verdict_chart(report: AuditReport) -> str:
    rounds = _finalized(report)
    return stacked_bars(
        "Accepted and rejected updates per round",
        [str(r.round) for r in rounds],
        [
            Series("accepted", [float(r.accepted) for r in rounds], ACCEPTED_COLOR),
            Series("rejected", [float(r.rejected) for r in rounds], REJECTED_COLOR),
        ],
        x_title="round",
        fmt=_count,
    )


def _round_section(r: RoundReport, names: Mapping[str, str]) -> str:
    parts = [f"<h2>Round {r.round} <span class='muted'>({escape(r.state)}, from round "]
    parts.append(f"{r.base_round})</span></h2>")
    if r.note:
        parts.append(f"<p>{escape(r.note)}</p>")
    if r.checkpoint_cid:
        accuracy = "-" if r.accuracy is None else f"{100 * r.accuracy:.1f}%"
        parts.append(
            f"<p>checkpoint <code>{escape(r.checkpoint_cid)}</code><br>"
            f"hash <code>{escape(r.checkpoint_hash)}</code><br>accuracy {accuracy}, "
            f"reward {escape(tokens(r.reward))} tokens"
            + ("" if r.replayed else ' <span class="bad">(not re-run)</span>')
            + "</p>"
        )
    if r.updates:
        rows = []
        for u in sorted(r.updates, key=lambda u: u.index):
            verdict = {True: "accepted", False: "rejected", None: "-"}[u.accepted]
            cls = ' class="bad"' if u.accepted is False else ""
            why = f" ({escape(u.reason)})" if u.reason else ""
            rows.append(
                f"<tr><td class='num'>{u.index}</td><td>{escape(_name(u.node, names))}</td>"
                f"<td><code>{escape(u.cid)}</code></td><td class='num'>{u.num_samples}</td>"
                f"<td{cls} title='{escape(u.detail)}'>{verdict}{why}</td></tr>"
            )
        parts.append(
            "<table><tr><th class='num'>index</th><th>node</th><th>update (envelope CID)</th>"
            "<th class='num'>samples</th><th>verdict</th></tr>" + "".join(rows) + "</table>"
        )
    if r.attestations:
        rows = [
            f"<tr><td>{escape(_name(a.node, names))}</td>"
            f"<td class='num'>{escape(tokens(a.weight))}</td>"
            f"<td><code>{escape(short(a.checkpoint_hash))}</code></td>"
            f"<td>{'yes' if a.final else 'no'}</td></tr>"
            for a in r.attestations
        ]
        parts.append(
            "<table><tr><th>attester</th><th class='num'>stake</th><th>tuple</th>"
            "<th>finalized tuple</th></tr>" + "".join(rows) + "</table>"
        )
    accounts = sorted(set(r.rewards) | set(r.claimed))
    if accounts:
        rows = [
            f"<tr><td>{escape(_name(a, names))}</td>"
            f"<td class='num'>{escape(tokens(r.rewards.get(a, 0)))}</td>"
            f"<td class='num'>{escape(tokens(r.claimed.get(a, 0)))}</td></tr>"
            for a in accounts
        ]
        parts.append(
            "<table><tr><th>account</th><th class='num'>reward</th><th class='num'>claimed</th>"
            "</tr>" + "".join(rows) + "</table>"
        )
    if r.slashes:
        items = "".join(
            f"<li>{escape(_name(s.node, names))} ({escape(s.reason)}): "
            f"{escape(tokens(s.amount))} tokens</li>"
            for s in r.slashes
        )
        parts.append(f"<p>Slashed:</p><ul>{items}</ul>")
    return "\n".join(parts)


def _check_row(c: Check) -> str:
    cls = "" if c.ok else ' class="bad"'
    where = "task" if c.round == 0 else str(c.round)
    return (
        f"<tr{cls}><td>{where}</td><td>{escape(c.kind.value)}</td>"
        f"<td><code>{escape(c.subject)}</code></td><td>{'ok' if c.ok else 'MISMATCH'}</td>"
        f"<td>{escape(c.detail)}</td></tr>"
    )


def _checks(report: AuditReport) -> str:
    rows = "".join(_check_row(c) for c in report.checks)
    opened = " open" if report.result == Result.MISMATCH else ""
    return (
        f"<h2>Checks</h2><details{opened}><summary>{len(report.checks)} checks</summary>"
        "<table><tr><th>round</th><th>check</th><th>subject</th><th>result</th><th>detail</th>"
        f"</tr>{rows}</table></details>"
    )
