"""`aeqprop bench`: speed measured side by side in one run (ratios, never timed tests)."""

from __future__ import annotations

import click

from aeqprop_circuits.experiments.presets import DRN_PRESETS


@click.group()
def bench():
    """Benchmarks: solve (ours vs ngspice), train (DRN training steps), hopfield (dense c-ep steps)."""


@bench.command()
@click.option("--hidden", type=int, multiple=True, default=(10, 100, 1024), show_default=True)
@click.option("--batch", type=int, default=64, show_default=True)
@click.option("--repeats", type=int, default=5, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-ngspice", is_flag=True, help="Skip the ngspice side (our timings only).")
def solve(hidden, batch, repeats, seed, no_ngspice):
    """Deep resistive networks 784x2 inputs - H - 10x2 outputs: our solve against ngspice's .op."""
    import sys

    from aeqprop_circuits.bench.solve import bench_solve

    _, table = bench_solve(tuple(hidden), seed=seed, batch=batch, repeats=repeats, ngspice=not no_ngspice,
                           log=lambda message: print(message, file=sys.stderr, flush=True))
    click.echo(table)


@bench.command("train")
@click.option("--model", default=None, help="drn: spec [default: the preset's model, drn:1568-100-10].")
@click.option("--preset", default=None, type=click.Choice(sorted(DRN_PRESETS)),
              help="The DRN preset whose circuit, iterations, dtype, beta and lr are used [default: drn-xs].")
@click.option("--algorithm", default="c-ep", show_default=True, help="p-ep | n-ep | c-ep | multi-point-ep")
@click.option("--steps", type=int, default=300, show_default=True)
@click.option("--batch", type=int, default=None, help="[default: the preset's, 4]")
@click.option("--eval-samples", type=int, default=4096, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def train(model, preset, algorithm, steps, batch, eval_samples, seed, as_json):
    """DRN training steps: time per step and per epoch, time in matrix products, memory."""
    import json

    from aeqprop_circuits.bench.drn import bench_train, format_report

    if not model and not preset:
        model = "drn:1568-100-10"
    report = bench_train(model, preset, algorithm, steps=steps, batch=batch, seed=seed, eval_samples=eval_samples)
    click.echo(json.dumps(report, indent=2) if as_json else format_report(report))


@bench.command("hopfield")
@click.option("--hidden", type=int, multiple=True, default=(1024, 2048), show_default=True,
              help="Hidden units of the dense 784-H-10 net (repeat the option for several).")
@click.option("--batch", type=int, default=16, show_default=True)
@click.option("--iterations", type=int, default=15, show_default=True, help="Free and nudged iterations each.")
@click.option("--beta", type=float, default=0.2, show_default=True)
@click.option("--steps", type=int, default=300, show_default=True, help="Lean-loop steps timed.")
@click.option("--generic-steps", type=int, default=30, show_default=True, help="Generic-path steps timed.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def hopfield(hidden, batch, iterations, beta, steps, generic_steps, seed, as_json):
    """Dense Hopfield c-ep at the reference settings: time per step and epoch, per iteration against its GEMMs."""
    import json

    from aeqprop_circuits.bench.hopfield import bench_hopfield, format_report

    rows = bench_hopfield(tuple(hidden), batch=batch, iterations=iterations, beta=beta, steps=steps,
                          generic_steps=generic_steps, seed=seed)
    click.echo(json.dumps(rows, indent=2) if as_json else format_report(rows))
