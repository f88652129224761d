"""`aeqprop reproduce`: regenerate a paper's figures and claims with one command."""

from __future__ import annotations

import os

import click

from aeqprop_circuits.cli.common import progress_bar
from aeqprop_circuits.experiments.rundir import fresh_directory


@click.group("reproduce")
def reproduce():
    """Regenerate the source papers' experiments (figures, traces, summary.json)."""


@reproduce.command("regression")
@click.option("--samples", type=click.IntRange(min=1), default=None,
              help="Samples per run [default: 1000 for Figure 2, 5000 for Figure 3].")
@click.option("--seeds", type=click.IntRange(min=1), default=5, show_default=True,
              help="Seeds (target polynomial and sample order) per configuration.")
@click.option("--figure", "figures", type=click.Choice(["2", "3"]), multiple=True,
              help="Figure(s) to reproduce [default: both].")
@click.option("--grid", "grid_points", type=click.IntRange(min=2), default=501, show_default=True,
              help="Points of the [-1, 1] grid the loss is measured on.")
@click.option("--controller", type=click.Choice(["proportional", "oracle"]), default="proportional",
              show_default=True, help="Homeostatic controller (the paper's Sec. 5.2 uses proportional).")
@click.option("--dynamics", "knob_dynamics", type=click.Choice(["gradient", "exact"]), default="gradient",
              show_default=True, help="Knob-coupled relaxation: Sec. 5.1's 50 adaptive gradient steps per "
                                      "phase, or exact alternating settles (idealised physics).")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Output directory (a fresh name is chosen if it exists and is not empty).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def regression(samples, seeds, figures, grid_points, controller, knob_dynamics, out, quiet):
    """Aeqprop paper Sec. 5.2: SGD vs optimistic / pessimistic / centered Aeqprop (Figs. 2, 3)."""
    from aeqprop_circuits.errors import AeqpropError
    from aeqprop_circuits.experiments.reproduce.regression import reproduce as run_study

    figures = tuple(sorted({int(f) for f in figures})) or (2, 3)
    try:
        directory = fresh_directory(out)
    except OSError as err:
        raise click.ClickException(f"--out {out}: {err}") from None
    try:
        result = run_study(directory, figures=figures, seeds=seeds, samples=samples, grid_points=grid_points,
                           controller=controller, progress=progress_bar(quiet), knob_dynamics=knob_dynamics)
    except AeqpropError as err:
        raise click.ClickException(str(err)) from None
    _report(result, directory)


def _report(result: dict, directory: str) -> None:
    """One line of totals, then the files a study wrote."""
    records = result["records"]
    diverged = sum(r["diverged"] for r in records)
    increases = sum(r["lyapunov_increases"] or 0 for r in records)
    click.echo(f"{len(records)} runs, {diverged} diverged, {increases} Lyapunov increases in total; "
               f"written to {os.path.abspath(directory)}")
    for path in result["files"]:
        click.echo(f"  {os.path.basename(path)}")


@reproduce.command("circuit")
@click.option("--samples", type=click.IntRange(min=1), default=1000, show_default=True, help="Samples per run.")
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Seeds (target polynomial and sample order) per configuration.")
@click.option("--grid", "grid_points", type=click.IntRange(min=2), default=201, show_default=True,
              help="Points of the [-1, 1] grid the loss is measured on.")
@click.option("--controller", "controllers", type=click.Choice(["proportional", "oracle"]), multiple=True,
              help="Homeostatic controller(s) [default: both].")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Output directory (a fresh name is chosen if it exists and is not empty).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def circuit(samples, seeds, grid_points, controllers, out, quiet):
    """The Sec. 5.2 regression on a resistive circuit (bounded positive conductances)."""
    from aeqprop_circuits.experiments.reproduce.circuit_regression import CONTROLLERS
    from aeqprop_circuits.experiments.reproduce.circuit_regression import reproduce as run_study

    try:
        directory = fresh_directory(out)
    except OSError as err:
        raise click.ClickException(f"--out {out}: {err}") from None
    result = run_study(directory, seeds=seeds, samples=samples, grid_points=grid_points,
                       controllers=tuple(controllers) or CONTROLLERS, progress=progress_bar(quiet))
    _report(result, directory)
