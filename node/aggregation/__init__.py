"""Deterministic Byzantine-robust aggregation.

Rules are pure functions over a fixed-point `Batch` (see `swarmchain.node.aggregation.fixed_point`),
one module per algorithm; `swarmchain.node.aggregation.registry` names them;
`swarmchain.node.aggregation.pipeline` runs a task's pre-aggregation steps and rule over float32
updates and returns the aggregated delta, the same bit for bit on every machine.
"""
