"""`aeqprop train`, `plot`, `compare` and `gradcheck`: training runs and what is read from them."""

from __future__ import annotations

import click

from aeqprop_circuits.cli.common import user_errors
from aeqprop_circuits.solvers import SOLVER_NAMES

ALGORITHM_HELP = ("p-ep n-ep c-ep multi-point-ep p-cpl n-cpl c-cpl cl aeqprop-optimistic aeqprop-pessimistic "
                  "aeqprop-centered exact-gradient lcp-output lcp lcp-current (least control; lcp-output's beta "
                  "is its controller's gain / leak) (and tbp, rbp for Hopfield models)")


def setting(key: str, *names, **options):
    """A `train` option for a TrainConfig setting: its help is the setting's description and default."""
    from aeqprop_circuits.experiments.config import FIELDS

    field = FIELDS[key]
    default = field.default if not callable(field.default_factory) else field.default_factory()
    shown = options.pop("shown_default", default)
    text = options.pop("help", field.metadata["doc"])
    return click.option(*(names or (f"--{key.replace('_', '-')}",)), key, default=None,
                        help=f"{text[0].upper()}{text[1:]}. [default: {shown}]", **options)


@click.command()
@click.argument("model", required=False)
@click.option("--model", "model_option", help="Model spec instead of a netlist (drn:1568-100-10, hopfield:784-2048-10, "
              "conv:..., dchn:...).")
@click.option("--preset", default=None, metavar="NAME",
              help="Named hyperparameters with their source: " + ", ".join(sorted(__import__(
                  "aeqprop_circuits.experiments.presets", fromlist=["PRESETS"]).PRESETS)) + ".")
@setting("data")
@setting("algorithm", help=ALGORITHM_HELP)
@setting("beta", type=float, shown_default="0.2 (a preset's)")
@setting("epsilon", type=float, shown_default="10 (2.5 for wine; a preset's)")
@setting("lr", type=float, shown_default="2 (0.5 for wine; a preset's)")
@setting("schedule", type=click.Choice(["exponential", "cosine"]))
@setting("lr_decay", type=float, shown_default="0.95 for netlists, 1 under a preset that does not set it")
@setting("lr_floor", type=float)
@setting("momentum", type=float)
@setting("weight_decay", type=float)
@setting("epochs", type=int)
@setting("batch_size", type=int)
@setting("seed", type=int)
@setting("solver", type=click.Choice(SOLVER_NAMES))
@setting("controller", type=click.Choice(["oracle", "proportional", "integral"]))
@setting("relax_rounds", type=int, shown_default="1; 20 under a preset that does not set it")
@setting("points", type=int)
@setting("target_amplitude", type=float, shown_default="0.5 V for netlists, 1 under a preset")
@setting("max_train", type=int, shown_default="all")
@setting("max_test", type=int, shown_default="all")
@setting("augment", type=click.Choice(["none", "hflip"]))
@setting("trace_every", type=int)
@setting("task", type=click.Choice(["classification", "regression"]), shown_default="guessed from the labels")
@setting("test_fraction", type=float, shown_default="0.2")
@setting("hardware", type=click.Choice(["none", "mismatch", "nonlinear", "diode", "spice"]))
@setting("mismatch", type=float, metavar="SIGMA")
@setting("hardware_seed", type=int)
@setting("nonlinearity", type=float, metavar="GAMMA")
@setting("training", type=click.Choice(["in-situ", "transfer", "physics-aware", "fine-tune"]))
@setting("transfer_epochs", type=int)
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="A model option over the preset's (JSON value), e.g. --set cost_scale=1.0. Repeatable. "
                   "Unknown options are refused with the valid ones listed.")
@click.option("--out", default=None, help="Run directory. [default: runs/MODEL-ALGORITHM-TIME; a fresh name "
                                          "(DIR-2, ...) when it exists]")
@click.option("--resume", default=None, metavar="DIR",
              help="Continue the run in DIR from its newest checkpoint (only --epochs may change).")
@click.option("--quiet", is_flag=True, help="No progress bar (none is drawn when stderr is not a terminal).")
@user_errors
def train(model, model_option, resume, quiet, settings, **given):
    """Train a netlist (or model spec) on a data set with one of the operator loops."""
    from aeqprop_circuits.errors import AeqpropError
    from aeqprop_circuits.experiments.config import parse_settings
    from aeqprop_circuits.experiments.session import RunInterrupted, run_training

    if model and model_option:
        raise AeqpropError(f"two models given: {model} and --model {model_option}; give one")
    given["model_options"] = parse_settings(settings) or None
    try:
        run_training(model_option or model, resume, quiet, given, echo=click.echo)
    except RunInterrupted as stop:
        click.echo(f"interrupted after the last checkpoint; continue with: aeqprop train --resume {stop.path}",
                   err=True)
        raise SystemExit(130) from None


@click.command()
@click.argument("run_dir")
@user_errors
def plot(run_dir):
    """Write PNG plots of a run in its units: metrics per epoch, Lyapunov trace, a relaxation's energy (where it
    takes several iterations), prediction against target (regression runs)."""
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
    """Test error (%) per epoch of several runs, or test loss in the runs' units for regression: a Markdown table
    on stdout and a PNG. Runs with the same curve are marked "(identical to X)" in the legend."""
    from aeqprop_circuits.experiments.plots import compare_runs

    table, path = compare_runs(list(run_dirs), list(labels) or None, out, last, upto)
    click.echo(table)
    click.echo(f"plot: {path}", err=True)
