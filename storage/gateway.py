"""The trustless-gateway subset that peers speak: block requests by CID, raw bytes back.

A peer answers ``GET /ipfs/{cid}?format=raw`` (or ``Accept: application/vnd.ipld.raw``) with the
block's exact bytes. `swarmchain.storage.server` serves a store's blocks this way and
`swarmchain.storage.peers` fetches and checks them; both share the constants here.

Reference: the Trustless Gateway spec (https://specs.ipfs.tech/http-gateways/trustless-gateway/).
"""

RAW_MEDIA_TYPE = "application/vnd.ipld.raw"
MAX_BLOCK_SIZE = 2 * 1024 * 1024  # largest block accepted from a peer (Kubo's bitswap limit)
