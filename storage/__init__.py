"""Content-addressed storage, the canonical tensor codec and signed update envelopes."""
