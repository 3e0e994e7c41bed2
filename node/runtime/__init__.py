"""The swarm node runtime: rounds end to end with no central server.

What every party computes identically lives in `swarmchain.node.protocol`.

- `node`: `SwarmNode`, the resumable loop one member runs, with its units: `session` (set up
  once), `duty` (skips, turns, sending), `participation` (this node's part in each round),
  `publish` (train and publish an update), `outcomes` (a round's result), `checkpoints`
  (patient fetches, finalized checkpoints), `closing` (closed rounds, settled beside
  training), `settlement` (report, claim, slash), `slots` (turns to train), `retry` (which
  failures are retried) and `clock` (chain time, round timings);
- `journal`: the append-only, fsync'd local journal that makes restarts safe;
- `events`: the `NodeEvent`s a node reports to displays and logs;
- `slashing`: who is slashable for a closed round, and whose turn it is to send the slashes;
- `history`, `local`: the chain's event record, and local training (or a simulated attack);
- `deploy`: a ready-to-run swarm (local swarms of node processes live in
  `swarmchain.node.devtools`).
"""
