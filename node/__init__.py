"""Swarmchain node: config, CLI, chain client, training, aggregation, verification, audit."""

__version__ = "0.1.0"
