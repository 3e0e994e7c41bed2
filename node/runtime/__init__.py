"""The swarm node runtime: rounds end to end with no central server.

- `round`: `compute_round`, the pure function from a round's public inputs to the attested tuple,
  the per-update verdicts and the rewards (shared by nodes, auditors and simulations);
- `verify`: the per-update checks and their named `RejectReason`s;
- `node`: `SwarmNode`, the resumable state machine one member runs;
- `journal`: the append-only, fsync'd local journal that makes restarts safe;
- `events`: the `NodeEvent`s a node reports to displays and logs;
- `slashing`: who is slashable for a closed round, and whose turn it is to send the slashes;
- `document`, `checkpoint`, `history`, `local`: the task document and genesis, checkpoints,
  the chain's event record, and local training (or a simulated attack);
- `deploy`: a ready-to-run swarm (local swarms of node processes live in `node.devtools`).
"""
