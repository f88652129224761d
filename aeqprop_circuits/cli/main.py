"""The `aeqprop` command: check | solve | train | plot | compare | summary | evaluate | gradcheck | reproduce |
sweep | bench.

Every user error (bad netlist, bad option, missing data or ngspice, diverging phase) ends
in a one-line message and a non-zero exit code, never a traceback. The commands live in the
modules of this package; this one only groups them.
"""

from __future__ import annotations

import click

from aeqprop_circuits.cli.bench import bench
from aeqprop_circuits.cli.circuits import check, solve
from aeqprop_circuits.cli.evaluate import evaluate
from aeqprop_circuits.cli.gradcheck import gradcheck
from aeqprop_circuits.cli.learning import compare, plot, train
from aeqprop_circuits.cli.meta import meta
from aeqprop_circuits.cli.reproduce import reproduce
from aeqprop_circuits.cli.summary import summary
from aeqprop_circuits.cli.sweep import sweep


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="aeqprop-circuits")
def main():
    """Simulate and train physical learning machines described as SPICE netlists."""


for _command in (check, solve, train, plot, compare, evaluate, gradcheck, summary, reproduce, sweep, bench, meta):
    main.add_command(_command)
