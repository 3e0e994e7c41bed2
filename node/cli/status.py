"""`swarm status`: the swarm as its chain sees it now: members, stakes, round, phase, checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from swarmchain.node.audit.report import short, tokens
from swarmchain.node.chain.coordinator import Coordinator, RoundInfo
from swarmchain.node.chain.deploy import connect
from swarmchain.node.chain.deployment import load_deployment
from swarmchain.node.chain.events import Joined, RoundFinalized, Slashed
from swarmchain.node.chain.protocol import decode_bitmap
from swarmchain.node.cli import options
from swarmchain.node.cli.options import echo_json


@dataclass(frozen=True)
class MemberRow:
    """One member as the chain records it."""

    address: str
    index: int
    status: str  # "active", "exiting" or "none" (withdrawn)
    stake: int
    balance: int  # tokens held outside the stake
    slashed: int  # tokens slashed over the swarm's life


def swarm_status(coordinator: Coordinator) -> dict[str, Any]:
    """The swarm's state as one JSON-ready object.

    Parameters
    ----------
    coordinator
        A (read-only) client of the swarm.

    Returns
    -------
    dict
        ``chain_id``, ``coordinator``, ``round`` (id, status, phase, base round, deadlines,
        counts, stakes), ``members``, ``totals`` and ``checkpoint`` (the last finalized one, or
        None); token amounts are decimal strings of base units.
    """
    events = coordinator.events()
    joined = {e.node: e for e in events if isinstance(e, Joined)}
    slashed: dict[str, int] = {}
    for e in events:
        if isinstance(e, Slashed):
            slashed[e.node] = slashed.get(e.node, 0) + e.amount
    members = []
    for node, e in sorted(joined.items(), key=lambda item: item[1].index):
        member = coordinator.member_info(node)
        members.append(
            MemberRow(
                node,
                e.index,
                member.status.name.lower(),
                member.stake,
                coordinator.token.balance_of(node),
                slashed.get(node, 0),
            )
        )
    finals = [e for e in events if isinstance(e, RoundFinalized)]
    last = finals[-1] if finals else None
    current = coordinator.current_round()
    info = coordinator.round_info(current) if current > 0 else None
    totals = coordinator.totals()
    return {
        "chain_id": coordinator.deployment.chain_id,
        "coordinator": coordinator.address,
        "token": coordinator.token.address,
        "round": None if info is None else _round_json(info),
        "members": [
            {
                "address": m.address,
                "index": m.index,
                "status": m.status,
                "stake": str(m.stake),
                "balance": str(m.balance),
                "slashed": str(m.slashed),
            }
            for m in members
        ],
        "totals": {
            "active_members": totals.active_members,
            "active_stake": str(totals.active_stake),
            "total_staked": str(totals.total_staked),
            "reward_pool": str(totals.reward_pool),
            "rewards_outstanding": str(totals.rewards_outstanding),
        },
        "checkpoint": None
        if last is None
        else {
            "round": last.round,
            "cid": last.outcome.checkpoint_cid,
            "hash": "0x" + last.outcome.checkpoint_hash.hex(),
            "accepted": len(decode_bitmap(last.outcome.accepted_bitmap)),
        },
    }


def _round_json(info: RoundInfo) -> dict[str, Any]:
    return {
        "id": info.round,
        "status": info.status.name.lower(),
        "phase": info.phase.name.lower(),
        "base_round": info.base_round,
        "commit_deadline": info.commit_deadline,
        "reveal_deadline": info.reveal_deadline,
        "attest_deadline": info.attest_deadline,
        "active_at_open": info.active_at_open,
        "commits": info.commits,
        "reveals": info.reveals,
        "attests": info.attests,
        "stake_at_open": str(info.stake_at_open),
        "required_stake": str(info.required_stake),
        "leading_stake": str(info.leading_stake),
    }


def _print(state: dict[str, Any]) -> None:
    console = Console()
    console.print(
        f"swarm [bold]{state['coordinator']}[/bold] on chain {state['chain_id']} "
        f"(token {state['token']})"
    )
    r = state["round"]
    if r is None:
        console.print("no round opened yet")
    else:
        console.print(
            f"round [bold]{r['id']}[/bold] ({r['status']}, phase {r['phase']}), "
            f"from round {r['base_round']}: {r['commits']} commits, {r['reveals']} reveals, "
            f"{r['attests']} attestations of {r['active_at_open']} members"
        )
    cp = state["checkpoint"]
    if cp is None:
        console.print("no checkpoint finalized yet")
    else:
        console.print(
            f"last checkpoint: round {cp['round']}, {cp['cid']} ({short(cp['hash'])}), "
            f"{cp['accepted']} updates accepted"
        )
    table = Table(title=f"{len(state['members'])} member(s)")
    for column, justify in (
        ("index", "right"),
        ("address", "left"),
        ("status", "left"),
        ("stake", "right"),
        ("balance", "right"),
        ("slashed", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for m in state["members"]:
        table.add_row(
            str(m["index"]),
            m["address"],
            m["status"],
            tokens(int(m["stake"])),
            tokens(int(m["balance"])),
            tokens(int(m["slashed"])),
        )
    console.print(table)
    t = state["totals"]
    console.print(
        f"reward pool {tokens(int(t['reward_pool']))} tokens, "
        f"{tokens(int(t['rewards_outstanding']))} owed to claimants"
    )


def status(
    deployment: options.Deployment = options.DEFAULT_DEPLOYMENT,
    rpc: options.Rpc = options.DEFAULT_RPC,
    as_json: options.Json = False,
) -> None:
    """Show the swarm's members and stakes, the current round and phase, the last checkpoint.

    Examples:

        swarm status --deployment deployment.json --rpc http://127.0.0.1:8545

        swarm status --json
    """
    coordinator = Coordinator(connect(rpc), load_deployment(deployment))
    state = swarm_status(coordinator)
    if as_json:
        echo_json(state)
    else:
        _print(state)
