"""What every honest party computes identically from public inputs.

- `task`: the task spec (model, training, aggregation rule, deadlines) and its tensor shapes;
- `document`: the task document in the content store (spec, genesis, reference set, valuation);
- `checkpoint`: the canonical checkpoint codec and its content hash;
- `verify`: the per-update checks and their named `RejectReason`s;
- `round`: `compute_round`, the pure function from a round's public inputs to the attested tuple.
"""
