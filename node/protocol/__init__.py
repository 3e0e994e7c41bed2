"""What every honest party computes identically from public inputs.

- `task`: the task spec (model, training, aggregation rule, deadlines) and its tensor shapes;
- `document`: the task document in the content store (spec, genesis, reference set, valuation);
- `checkpoint`: the canonical checkpoint codec; `hashing`: content hashes;
- `verify`: the per-update checks and their named `RejectReason`s;
- `record`: the one reader of the coordinator's events (members, submissions, reward);
- `inputs`: `round_inputs`, the one builder of a round's inputs (node, auditor and demo);
- `round`: `compute_round`, the pure function from a round's public inputs to the attested tuple.
"""
