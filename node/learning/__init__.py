"""Local learning: models, datasets and partitions, training and evaluation, attack simulators."""
