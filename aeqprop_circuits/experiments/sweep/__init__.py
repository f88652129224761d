"""Sweeps: grids of training runs (seeds x algorithms x hyperparameters x models) on dask.distributed.

spec.py reads and validates a sweep spec into points; runner.py runs each point as a dask task
in its own resumable run directory; summary.py tabulates and plots the results; cli.py is
`aeqprop sweep`. See docs/how-to/sweep.md.
"""

from aeqprop_circuits.experiments.sweep.spec import Point, SweepSpec, SweepSpecError, load_spec

__all__ = ["Point", "SweepSpec", "SweepSpecError", "load_spec"]
