"""Training: typed run configs, the loop (alone or under torchrun), checkpoints and metrics."""
