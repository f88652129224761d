"""Experiments: the training config, the one training loop, run directories, plots, presets, sweeps and the
papers' reproductions."""
