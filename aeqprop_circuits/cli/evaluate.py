"""`aeqprop evaluate RUN_DIR`: a checkpoint's test error under other evaluation physics."""

from __future__ import annotations

import click

from aeqprop_circuits.cli.common import user_errors
from aeqprop_circuits.cli.summary import json_row

COLUMNS = ("physics", "images", "test error (%)", "test cost", "same class as trained", "max output change",
           "unsolved", "seconds")


class SweepCount(click.ParamType):
    """Block sweeps per phase: a positive integer, or 'converged'."""

    name = "N|converged"

    def convert(self, value, param, ctx):
        if value in (None, "converged"):
            return None
        try:
            count = int(value)
        except (TypeError, ValueError):
            count = 0
        if count < 1:
            self.fail(f"expected a positive integer or 'converged', got '{value}'", param, ctx)
        return count


@click.command()
@click.argument("run_dir")
@click.option("--epoch", type=click.IntRange(min=0), default=None,
              help="Evaluate the checkpoint of this epoch. [default: the latest]")
@click.option("--images", type=click.IntRange(min=1), default=None,
              help="Evaluate on the first N test images. [default: all]")
@click.option("--batch", type=click.IntRange(min=1), default=None,
              help="Images per settle, or per ngspice load with --solver spice. [default: the training loop's "
                   "evaluation batch, 512; 100 for ngspice]")
@click.option("--iterations", type=SweepCount(), multiple=True,
              help="DRN block sweeps per phase, or 'converged' (until the largest change is below the "
                   "tolerance, 1e-12 V in float64). Repeat for one row per value. [default: the run's]")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default=None,
              help="DRN float precision. [default: the run's]")
@click.option("--diodes", type=click.Choice(["ideal", "shockley"]), default=None,
              help="DRN diode model: ideal (clipping) or shockley (exponential). [default: the run's]")
@click.option("--saturation-current", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Saturation current Is of Shockley diodes, in A. [default: the run's, else 1e-14 A]")
@click.option("--emission", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Emission coefficient n of Shockley diodes (dimensionless). [default: the run's, else 1]")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Any other model option (JSON value), e.g. --set threshold=3.125e-5 for a Hopfield "
                   "network's relaxation. Repeatable. [default: the run's]")
@click.option("--solver", type=click.Choice(["spice"]), default=None,
              help="spice: ngspice solves the trained circuit, its netlist loaded once per --batch images. "
                   "[default: the run's solver]")
@click.option("--spice-model", default=None, metavar="PARAMETERS",
              help="With --solver spice: the exponential diode (.model D parameters, is in A) written for "
                   "each ideal diode. [default: is=1e-20 n=0.001, a ~1 mV forward drop at mA]")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per row instead of a Markdown table.")
@user_errors
def evaluate(run_dir, epoch, images, batch, iterations, dtype, diodes, saturation_current, emission, settings,
             solver, spice_model, as_json):
    """Test error of RUN_DIR's checkpoint under its own physics, then under the physics the options change.

    Each row classifies the same test images; "same class as trained" and "max output change"
    (V for circuits) compare its outputs, image by image, with the first row's. For example
    `--iterations 8 --iterations converged --dtype float64` asks whether the run's block sweeps
    settled the network, `--diodes shockley` what its ideal diodes cost, `--solver spice` whether
    ngspice classifies as the simulator does.
    """
    from aeqprop_circuits.experiments.evaluate import Variant, evaluate_checkpoint
    from aeqprop_circuits.experiments.session import parse_settings

    options = {key: value for key, value in (("dtype", dtype), ("diodes", diodes),
                                              ("saturation_current", saturation_current),
                                              ("emission", emission)) if value is not None}
    options.update(parse_settings(settings))
    spice = solver == "spice"
    variants = [Variant({"iterations": count, **options}, spice, spice_model) for count in iterations]
    if not variants and (options or spice):
        variants = [Variant(options, spice, spice_model)]
    shown = []

    def show(row):
        if as_json:
            click.echo(json_row(row.as_dict()))
            return
        if not shown:
            click.echo("| " + " | ".join(COLUMNS) + " |")
            click.echo("|" + "---|" * len(COLUMNS))
        shown.append(row)
        click.echo("| " + " | ".join(str(cell) for cell in row.as_dict().values()) + " |")

    saved_epoch, _ = evaluate_checkpoint(run_dir, variants, epoch=epoch, images=images, batch=batch, log=show,
                                         echo=lambda message: click.echo(message, err=True))
    click.echo(f"{run_dir}, checkpoint of epoch {saved_epoch}", err=True)
