"""Provenance audit: a checkpoint's lineage from chain events and the content store alone.

- `record`: the coordinator's events grouped into one `RoundRecord` per round;
- `replay`: verify every blob against its recorded hash and re-run each round through the
  runtime's pure round function (`swarmchain.node.protocol.round.compute_round`), check by check;
- `report`: the `AuditReport` and its JSON and Markdown forms;
- `html`, `svg`: the self-contained HTML report and the inline SVG plots it draws.
"""
