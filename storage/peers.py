"""Fetch blocks from peers that serve the trustless-gateway subset (`swarmchain.storage.gateway`).

A peer is never trusted: `fetch_block` checks every block against the CID it asked for and tries the
next peer when the bytes do not match. Any IPFS gateway that implements the spec can serve as a
peer, as can `swarmchain.storage.server.BlockServer`. Each download from a peer ends by a total
deadline (`swarmchain.storage.deadline`), so a peer trickling bytes costs a bounded wait.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from http import HTTPStatus

import httpx

from swarmchain.storage.cid import CID
from swarmchain.storage.deadline import BLOCK_DEADLINE_S, deadline, passed
from swarmchain.storage.errors import BlockNotFound, DeadlineExceeded, TamperedBlock
from swarmchain.storage.gateway import MAX_BLOCK_SIZE, RAW_MEDIA_TYPE


def _download(client: httpx.Client, peer: str, cid: CID, at: float) -> bytes | str:
    """The block's bytes from one peer, or why it did not supply them; raises
    `DeadlineExceeded` when the download runs past `at` (a monotonic instant)."""
    url = f"{peer.rstrip('/')}/ipfs/{cid}?format=raw"
    try:
        with deadline(at), client.stream("GET", url, headers={"Accept": RAW_MEDIA_TYPE}) as reply:
            if reply.status_code != HTTPStatus.OK:
                return f"HTTP {reply.status_code}"
            body = bytearray()
            for piece in reply.iter_bytes():
                body += piece
                if len(body) > MAX_BLOCK_SIZE:
                    return f"block larger than {MAX_BLOCK_SIZE} bytes"
            return bytes(body)
    except httpx.HTTPError as err:
        if passed(at):
            raise DeadlineExceeded(f"peer {peer} did not send block {cid} in time") from err
        return f"{type(err).__name__}: {err}"


def fetch_block(
    client: httpx.Client,
    peers: Sequence[str],
    cid: CID,
    *,
    deadline_s: float = BLOCK_DEADLINE_S,
    until: float | None = None,
) -> bytes:
    """Fetch one block from the first peer that supplies bytes matching its CID.

    Parameters
    ----------
    client
        The HTTP client, made by `swarmchain.storage.deadline.deadline_client` (its timeout bounds
        each read, the deadlines each download).
    peers
        Trustless-gateway base URLs, tried in order.
    cid
        The block wanted.
    deadline_s
        Seconds the download from one peer may take in all, however slowly bytes arrive.
    until
        A `time.monotonic()` instant by which every download ends (the blob's deadline), or None.

    Returns
    -------
    bytes
        The block, checked against `cid`.

    Raises
    ------
    TamperedBlock
        If no peer supplied matching bytes and at least one supplied others; names the peers.
    DeadlineExceeded
        If no peer supplied the block and a download ran past its deadline (or `until` passed).
    BlockNotFound
        If no peer supplied the block at all; the hint says what each answered.
    """
    failures: list[str] = []
    tampered: list[str] = []
    late = False
    for peer in peers:
        if passed(until):
            break
        at = time.monotonic() + deadline_s
        try:
            got = _download(client, peer, cid, at if until is None else min(at, until))
        except DeadlineExceeded:
            late = True
            failures.append(f"{peer}: not sent in time")
            continue
        if isinstance(got, str):
            failures.append(f"{peer}: {got}")
        elif cid.matches(got):
            return got
        else:
            tampered.append(peer)
    if tampered:
        raise TamperedBlock(str(cid), "peer " + ", ".join(tampered))
    answers = "peers answered: " + "; ".join(failures)
    if late or passed(until):
        raise DeadlineExceeded(f"block {cid} was not downloaded by its deadline", hint=answers)
    raise BlockNotFound(str(cid), hint=answers)
