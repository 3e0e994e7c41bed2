"""Local development and tests only, never production.

Tooling that starts and drives local processes: an Anvil chain (`anvil`), a js-ipfs peer
(`ipfs_peer`), a harness that funds members and warps time on a local chain (`harness`), and
swarms of real node processes (`swarm`), all on one managed-process base (`process`). It relies on
dev accounts with public keys and Anvil-only RPC methods, so production code (deploy, join,
audit) never imports it; only local commands such as ``swarm chain`` and ``swarm demo`` do.
"""
