"""`aeqprop bench`: speed measured side by side in one run (ratios, never timed tests)."""

from __future__ import annotations

import click


@click.group()
def bench():
    """Benchmarks: solve (ours vs ngspice)."""


@bench.command()
@click.option("--hidden", type=int, multiple=True, default=(10, 100, 1024), show_default=True)
@click.option("--batch", type=int, default=64, show_default=True)
@click.option("--repeats", type=int, default=5, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-ngspice", is_flag=True, help="Skip the ngspice side (our timings only).")
def solve(hidden, batch, repeats, seed, no_ngspice):
    """Deep resistive networks 784x2 inputs - H - 10x2 outputs: our solve against ngspice's .op."""
    import sys

    from .bench import bench_solve

    _, table = bench_solve(tuple(hidden), seed=seed, batch=batch, repeats=repeats, ngspice=not no_ngspice,
                           log=lambda message: print(message, file=sys.stderr, flush=True))
    click.echo(table)
