"""`aeqprop train`, `plot`, `compare` and `gradcheck`: training runs and what is read from them."""

from __future__ import annotations

import json
import math

import click
import numpy as np

from aeqprop_circuits.cli.common import user_errors
from aeqprop_circuits.solvers import SOLVER_NAMES

ALGORITHM_HELP = ("p-ep n-ep c-ep multi-point-ep p-cpl n-cpl c-cpl cl aeqprop-optimistic aeqprop-pessimistic "
                  "aeqprop-centered exact-gradient (and tbp, rbp for Hopfield models)")


@click.command()
@click.argument("model", required=False)
@click.option("--model", "model_option", help="Model spec instead of a netlist (drn:1568-100-10, hopfield:...).")
@click.option("--data", default=None, help="iris|wine|digits|fmnist|mnist:DIR|regression|FILE.csv [default: iris]")
@click.option("--algorithm", default=None, help=ALGORITHM_HELP + " [default: c-ep]")
@click.option("--beta", type=float, default=None, help="Nudge strength (normalised units). [default: preset]")
@click.option("--epsilon", type=float, default=None, help="Knob coupling of Aeqprop; its step is epsilon*beta.")
@click.option("--lr", type=float, default=None, help="Learning rate of the EP/CL/CpL/exact rules.")
@click.option("--momentum", type=float, default=None,
              help="SGD momentum of the EP/CL/CpL/exact rules (velocity = momentum * velocity + gradient). "
                   "[default: 0]")
@click.option("--lr-decay", type=float, default=None,
              help="Factor applied to lr and epsilon after each epoch. [default: preset; 0.95 for netlists]")
@click.option("--epochs", type=int, default=None)
@click.option("--batch-size", type=int, default=None)
@click.option("--seed", type=int, default=None, help="[default: 0]")
@click.option("--solver", default=None, type=click.Choice(SOLVER_NAMES),
              help="[default: auto]")
@click.option("--controller", default=None, type=click.Choice(["proportional", "oracle"]),
              help="Homeostatic control: oracle (fast, uses dE/dtheta; default) or proportional "
                   "(agnostic, slow).")
@click.option("--relax-rounds", type=int, default=None,
              help="Aeqprop: relaxation rounds with the knobs clamped (1 = App. C's single parallel parameter "
                   "relaxation; many = the joint equilibrium of Theorems 1-3). [default: 1; 20 under a preset "
                   "that does not set it]")
@click.option("--preset", default=None,
              help="Named hyperparameters (see docs/training.md, docs/hopfield.md, docs/drn.md).")
@click.option("--max-train", type=int, default=None, help="Use only the first N training samples.")
@click.option("--augment", default=None, type=click.Choice(["none", "hflip"]),
              help="Training-set augmentation: hflip mirrors each training image with probability 1/2 "
                   "(seeded per epoch). [default: preset, else none]")
@click.option("--trace-every", type=int, default=None, help="Lyapunov trace every N steps (0: off).")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="A model option over the preset's (JSON value), e.g. --set cost_scale=1.0. Repeatable.")
@click.option("--out", default=None, help="Run directory (a fresh name is chosen if it exists).")
@click.option("--resume", default=None, help="Continue the run in this directory.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@user_errors
def train(model, model_option, resume, quiet, settings, **given):
    """Train a netlist (or model spec) on a dataset with one of the operator loops."""
    from aeqprop_circuits.experiments.session import parse_settings, run_training

    given["model_settings"] = parse_settings(settings) or None
    run_training(model_option or model, resume, quiet, given, echo=click.echo)


@click.command()
@click.argument("run_dir")
@user_errors
def plot(run_dir):
    """Write PNG plots of a run: metrics per epoch, Lyapunov trace, a relaxation's energy."""
    from aeqprop_circuits.experiments.plots import plot_run

    for path in plot_run(run_dir):
        click.echo(path)


@click.command()
@click.argument("run_dirs", nargs=-1, required=True)
@click.option("--label", "labels", multiple=True, help="Name of each run in the table and legend (in order).")
@click.option("--out", default="comparison.png", show_default=True, help="PNG to write.")
@click.option("--last", type=click.IntRange(min=0), default=0,
              help="Also give each run's mean ± std over its last N epochs (Aeqprop Table 1: 50).")
@click.option("--upto", type=click.IntRange(min=1), default=None,
              help="End the --last window at this epoch, to compare runs of different lengths at one stage.")
@user_errors
def compare(run_dirs, labels, out, last, upto):
    """Test error per epoch of several runs: a Markdown table on stdout and a PNG."""
    from aeqprop_circuits.experiments.plots import compare_runs

    table, path = compare_runs(list(run_dirs), list(labels) or None, out, last, upto)
    click.echo(table)
    click.echo(f"plot: {path}", err=True)


@click.command()
@click.argument("model")
@click.option("--algorithm", default="c-ep", show_default=True, help=ALGORITHM_HELP)
@click.option("--beta", type=float, default=0.1, show_default=True)
@click.option("--epsilon", type=float, default=0.01, show_default=True)
@click.option("--controller", default="oracle", show_default=True, type=click.Choice(["proportional", "oracle"]))
@click.option("--data", default="iris", show_default=True)
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--solver", default="auto", show_default=True)
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="A model option (JSON value), as for train, e.g. --set circuit=signed. Repeatable.")
@click.option("--json", "as_json", is_flag=True)
@user_errors
def gradcheck(model, algorithm, beta, epsilon, controller, data, batch_size, seed, solver, settings, as_json):
    """Compare an algorithm's gradient estimate with the exact gradient on one batch."""
    from aeqprop_circuits.data.datasets import load_dataset
    from aeqprop_circuits.experiments.session import parse_settings
    from aeqprop_circuits.learning.algorithms import get_algorithm
    from aeqprop_circuits.systems.models import load_system

    system = load_system(model, solver=solver, seed=seed, **parse_settings(settings))
    dataset = load_dataset(data, seed=seed)
    x, labels = dataset.x_train[:batch_size], dataset.y_train[:batch_size]
    target = dataset.targets(labels, system.n_outputs)
    options = {"epsilon": epsilon, "controller": controller} if algorithm.startswith("aeqprop") else {}
    estimate = get_algorithm(algorithm, beta=beta, **options).estimate(system, x, target).gradient
    exact = get_algorithm("exact-gradient").estimate(system, x, target).gradient
    norm = np.linalg.norm(exact) * np.linalg.norm(estimate)
    cosine = float(estimate @ exact / norm) if norm > 0 else math.nan
    relative = float(np.linalg.norm(estimate - exact) / max(np.linalg.norm(exact), 1e-300))
    if as_json:
        click.echo(json.dumps({"algorithm": algorithm, "beta": beta, "cosine": cosine, "relative_error": relative}))
    else:
        click.echo(f"{algorithm} (beta={beta}) vs exact gradient on {len(x)} samples of {data}: "
                   f"cosine {cosine:.6f}, relative error {relative:.3e}")
