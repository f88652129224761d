"""`aeqprop gradcheck MODEL`: gradient estimates against a reference on one batch."""

from __future__ import annotations

import math

import click

from aeqprop_circuits.cli.common import user_errors
from aeqprop_circuits.cli.learning import ALGORITHM_HELP
from aeqprop_circuits.cli.summary import json_row
from aeqprop_circuits.solvers import SOLVER_NAMES


class Epsilon(click.ParamType):
    """Aeqprop's knob coupling: one number, or one per parameter group as NAME=VALUE,NAME=VALUE."""

    name = "EPSILON"

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float, dict)):
            return value
        try:
            if "=" not in value:
                return float(value)
            pairs = [item.split("=", 1) for item in value.split(",")]
            return {name.strip(): float(number) for name, number in pairs}
        except ValueError:
            self.fail(f"expected a number or NAME=VALUE,... (e.g. w1=3e-6,w2=0.3,b=0.3), got '{value}'", param, ctx)


def _cell(value) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.6g}"
    if isinstance(value, dict) and "index" in value:  # the largest difference
        return f"theta[{value['index']}] (others {_cell(value['others'])})"
    if isinstance(value, dict) and all(isinstance(entry, dict) for entry in value.values()):  # per group
        return ", ".join(f"{key} {_cell(entry['cosine'])} ({_cell(entry['norm_ratio'])}x)"
                         for key, entry in value.items())
    if isinstance(value, dict):
        return ",".join(f"{key}={_cell(entry)}" for key, entry in value.items())
    return str(value)


@click.command()
@click.argument("model", required=False)
@click.option("--preset", default=None, metavar="NAME",
              help="Take the model, data (normalisation included), model options, beta, epsilon, controller, "
                   "relax rounds and target amplitude of a training preset; options given here win. "
                   "[default: none]")
@click.option("--algorithm", "algorithms", multiple=True, default=("c-ep",), show_default=True,
              help=ALGORITHM_HELP + ". Repeat for one row per rule.")
@click.option("--beta", type=float, default=None,
              help="Nudge strength (normalised units). [default: the preset's, else 0.1]")
@click.option("--epsilon", "epsilons", type=Epsilon(), multiple=True,
              help="Aeqprop's knob coupling (normalised units), or one per parameter group as "
                   "NAME=VALUE,... (e.g. w1=3e-6,w2=0.3,b=0.3; then each row also compares per group). "
                   "Repeat for one row per value. [default: the preset's, else 0.01]")
@click.option("--controller", default=None, type=click.Choice(["proportional", "oracle"]),
              help="Aeqprop's homeostatic control: oracle (uses dE/dtheta) or proportional (agnostic). "
                   "[default: the preset's, else oracle]")
@click.option("--relax-rounds", type=click.IntRange(min=1), default=None,
              help="Aeqprop: relaxation rounds with the knobs clamped (1 = App. C's single parameter "
                   "relaxation). [default: the preset's, else 20: the joint equilibrium of Theorems 1-3]")
@click.option("--fixed-gain", is_flag=True,
              help="Proportional controller with the plain gain 1/4 instead of its adaptive gain. [default: adaptive]")
@click.option("--no-step-check", is_flag=True,
              help="Proportional controller: give the step even where its holds' residual exceeds 0.1 of it "
                   "(the check that stops training with 'homeostasis too loose').")
@click.option("--reference", default="exact-gradient", show_default=True,
              help="exact-gradient | ep (an Aeqprop rule's EP estimate of the same phases) | oracle (the same "
                   "Aeqprop rule with the oracle controller) | any other rule name, e.g. rbp for Hopfield models.")
@click.option("--curvature", is_flag=True,
              help="Also give the curvature |h| of F(theta) = min_s E and a = epsilon |h| per row "
                   "(a proportional hold needs a < 1; one settle per parameter).")
@click.option("--fraction-of-bound", is_flag=True,
              help="Read each --epsilon as a = epsilon |h|, a fraction of the bound 1/|h| (implies --curvature).")
@click.option("--data", default=None,
              help="iris|wine|digits|fmnist|mnist:DIR|regression|xor|FILE.csv [default: the preset's, else iris]")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True,
              help="The batch: the first N training samples.")
@click.option("--target-amplitude", type=float, default=None,
              help="Target of the correct class's output (V for circuits); the others' is 0. "
                   "[default: the preset's, else 1]")
@click.option("--seed", type=int, default=0, show_default=True, help="Model initialisation and data split.")
@click.option("--solver", default=None, type=click.Choice(SOLVER_NAMES),
              help="The solver settling circuit phases. [default: auto]")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="A model option (JSON value) over the preset's, as for train, e.g. --set circuit=signed. "
                   "Repeatable.")
@click.option("--hardware", default=None, type=click.Choice(["none", "mismatch", "nonlinear", "diode", "spice"]),
              help="Check on a hardware built from the netlist, as train --hardware: the estimates measured on it, "
                   "the reference its own exact gradient. [default: none]")
@click.option("--mismatch", type=float, default=None, metavar="SIGMA",
              help="Hardware: relative spread of its element values (0.1 = 10 %). [default: 0]")
@click.option("--hardware-seed", type=int, default=None, help="Hardware: seed of its device errors. [default: 0]")
@click.option("--nonlinearity", type=float, default=None, metavar="GAMMA",
              help="Nonlinear hardware: gamma (1/V^2) of I = g (V + gamma V^3). [default: 0]")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per row instead of a Markdown table.")
@user_errors
def gradcheck(model, preset, algorithms, beta, epsilons, controller, relax_rounds, fixed_gain, no_step_check,
              reference, curvature, fraction_of_bound, data, batch_size, target_amplitude, seed, solver, settings,
              hardware, mismatch, hardware_seed, nonlinearity, as_json):
    """Compare gradient estimates with a reference (default: the exact gradient) on one batch.

    One row per rule, and per --epsilon for the Aeqprop rules: cosine, relative error
    |estimate - reference| / |reference|, norm ratio |estimate| / |reference| and the norm of the
    reference. A row whose estimate diverged (a proportional hold that failed) gives the reason instead.
    """
    from aeqprop_circuits.errors import AeqpropError
    from aeqprop_circuits.experiments.config import resolve
    from aeqprop_circuits.experiments.gradcheck import check_gradients
    from aeqprop_circuits.experiments.session import parse_settings, prepare
    from aeqprop_circuits.learning.lyapunov import free_energy_curvature

    config = resolve(model, preset, data=data, seed=seed, solver=solver, hardware=hardware, mismatch=mismatch,
                     hardware_seed=hardware_seed, nonlinearity=nonlinearity,
                     model_options=parse_settings(settings) or None)
    setup = prepare(config, progress=False, echo=lambda message: click.echo(message, err=True))

    def chosen(value, key: str, default):
        """The value given here, else the preset's, else gradcheck's default."""
        return value if value is not None else (getattr(config, key) if preset else default)

    beta, controller = chosen(beta, "beta", 0.1), chosen(controller, "controller", "oracle")
    relax_rounds = chosen(relax_rounds, "relax_rounds", None)
    epsilons = list(epsilons) or [chosen(None, "epsilon", 0.01)]
    system, dataset = setup.system, setup.data
    x, labels = dataset.x_train[:batch_size], dataset.y_train[:batch_size]
    target = dataset.targets(labels, system.n_outputs, chosen(target_amplitude, "target_amplitude", 1.0))
    h = free_energy_curvature(system, x, target) if curvature or fraction_of_bound else None
    if fraction_of_bound:
        if any(isinstance(epsilon, dict) for epsilon in epsilons):
            raise AeqpropError("--fraction-of-bound takes one number per --epsilon, not values per group")
        epsilons = [float(f"{a / h:.6g}") for a in epsilons]
    options = {"step_rtol": None} if no_step_check else {}
    if relax_rounds is not None:
        options["relax_rounds"] = relax_rounds
    if fixed_gain:
        options["adaptive_gain"] = False
    rows = check_gradients(system, x, target, algorithms, beta, epsilons, controller, reference, options, h)
    if as_json:
        for row in rows:
            click.echo(json_row(row.as_dict()))
        return
    on = "" if setup.bench is None else f" on the {config.hardware} hardware (seed {config.hardware_seed})"
    click.echo(f"{config.model}{on}, {len(x)} samples of {config.data}" + (
        f", curvature |h| {h:.4g}, bound 1/|h| {1 / h:.4g}" if h is not None else ""))
    table = [row.as_dict() for row in rows]
    columns = list(dict.fromkeys(key for row in table for key in row))
    names = {"groups": "per group: cosine (norm ratio)", "largest_difference": "largest difference"}
    click.echo("| " + " | ".join(names.get(key, key.replace("_", " ")) for key in columns) + " |")
    click.echo("|" + "---|" * len(columns))
    for row in table:
        row["message"] = row.get("message", "").split(":")[0]  # its reason; --json gives the whole message
        click.echo("| " + " | ".join(_cell(row.get(key, "")) for key in columns) + " |")
