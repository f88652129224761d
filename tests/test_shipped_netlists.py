"""Every shipped netlist parses, passes `aeqprop check`, solves, and runs unchanged in ngspice."""

import glob
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
from click.testing import CliRunner

from aeqprop_circuits.cli.circuits import check
from aeqprop_circuits.cli.circuits import solve as solve_command
from aeqprop_circuits.netlist import parse_netlist
from aeqprop_circuits.solvers import solve

NETLISTS = os.path.join(os.path.dirname(__file__), "..", "netlists")
SHIPPED = sorted(glob.glob(os.path.join(NETLISTS, "*.cir")))
EXAMPLES = sorted(glob.glob(os.path.join(NETLISTS, "examples", "*.cir")))


def test_the_classifiers_and_the_regression_network_are_shipped():
    names = {os.path.basename(p) for p in SHIPPED}
    assert {"iris.cir", "wine.cir", "xor.cir", "linear_regression.cir"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=os.path.basename)
def test_shipped_netlist_parses_and_solves(path):
    circuit = parse_netlist(path)
    assert circuit.n_outputs > 0 and len(circuit.learning.trainable) > 0
    x = np.random.default_rng(0).uniform(-1, 1, (3, circuit.n_inputs))
    result = solve(circuit, x)
    assert result.success, result.message
    assert np.all(np.isfinite(result.potentials))


@pytest.mark.spice
@pytest.mark.skipif(shutil.which("ngspice") is None, reason="ngspice is not installed")
@pytest.mark.parametrize("path", SHIPPED, ids=os.path.basename)
def test_shipped_netlist_runs_unchanged_in_ngspice(path):
    run = subprocess.run(["ngspice", "-b", path], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-500:] + run.stderr[-500:]
    assert "error" not in (run.stdout + run.stderr).lower()


@pytest.mark.parametrize("path", SHIPPED + EXAMPLES, ids=os.path.basename)
def test_what_check_accepts_solve_solves(path):
    runner = CliRunner()
    checked = runner.invoke(check, [path])
    assert checked.exit_code == 0, checked.output
    assert "ok" in checked.output and "settles" in checked.output
    solved = runner.invoke(solve_command, [path, "--json"])
    assert solved.exit_code == 0, solved.output
    assert json.loads(solved.stdout)["success"]


def test_xor_netlist_learns_xor():
    import aeqprop_circuits as aq

    result = aq.train(os.path.join(NETLISTS, "xor.cir"), data="xor", epochs=12)
    assert result.metrics[0]["test_accuracy"] < 1.0  # the untrained circuit is not XOR
    assert result.metrics[-1]["test_accuracy"] == 1.0  # the four points, read by the output's sign
