"""`aeqprop evaluate`: a checkpoint under its own physics gives the run's numbers; other physics is compared with it."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner

from aeqprop_circuits.cli.main import main
from aeqprop_circuits.experiments.evaluate import Variant, evaluate_checkpoint
from aeqprop_circuits.solvers.spice import ngspice_available

NETLIST = "netlists/iris.cir"


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def drn_run(tmp_path_factory):
    """A DRN trained two epochs with 3 block sweeps per phase in float32 (unconverged on purpose)."""
    out = tmp_path_factory.mktemp("runs") / "drn"
    result = invoke("train", "--model", "drn:8-6-3", "--data", "iris", "--epochs", 2, "--set", "iterations=3",
                    "--set", "dtype=float32", "--trace-every", 0, "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def netlist_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "iris"
    result = invoke("train", NETLIST, "--epochs", 1, "--trace-every", 0, "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    return out


def last_metrics(run) -> dict:
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))[-1]


def test_as_trained_reproduces_the_runs_test_metrics(drn_run):
    epoch, (row,) = evaluate_checkpoint(str(drn_run), [])
    metrics = last_metrics(drn_run)
    assert epoch == int(metrics["epoch"]) and row.label == "as trained"
    assert row.test_error == pytest.approx(100 * float(metrics["test_error"]))
    assert row.test_cost == pytest.approx(float(metrics["test_loss"]), rel=1e-6)  # the DRN's cost is 1/2 |o - y|^2
    assert row.same_class == row.images and row.max_output_change == 0.0


def test_a_variant_is_compared_image_by_image_with_the_runs_physics(drn_run):
    _, rows = evaluate_checkpoint(str(drn_run), [Variant({"iterations": 3}), Variant({"iterations": None,
                                                                                      "dtype": "float64"})])
    same, converged = rows[1], rows[2]
    assert same.label == "iterations=3" and same.max_output_change == 0.0
    assert converged.label == "iterations=converged, dtype=float64"
    assert 0.0 < converged.max_output_change < 0.05  # 3 sweeps in float32 leave the outputs near the equilibrium


def test_the_cli_gives_one_row_per_iterations_value(drn_run):
    result = invoke("evaluate", drn_run, "--iterations", 8, "--iterations", "converged", "--dtype", "float64",
                    "--json", "--epoch", 1)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["physics"] for r in rows] == ["as trained", "iterations=8, dtype=float64",
                                            "iterations=converged, dtype=float64"]
    assert all(r["images"] == 30 and r["unsolved"] == 0 for r in rows)


def test_shockley_diodes_move_the_outputs(drn_run):
    _, rows = evaluate_checkpoint(str(drn_run), [Variant({"diodes": "shockley", "saturation_current": 1e-14,
                                                          "emission": 1.0})], images=10)
    assert rows[1].images == 10 and rows[1].max_output_change > 1e-3


@pytest.mark.spice
@pytest.mark.skipif(not ngspice_available(), reason="ngspice not installed")
@pytest.mark.parametrize("run", ["drn_run", "netlist_run"])
def test_ngspice_classifies_the_trained_circuit_as_the_simulator(run, request):
    """ngspice's near-ideal stand-in diodes drop ~1 mV where the ideal ones drop nothing."""
    _, rows = evaluate_checkpoint(str(request.getfixturevalue(run)), [Variant(spice=True)], images=12, batch=6)
    spice = rows[1]
    assert spice.unsolved == 0 and spice.same_class == 12 and spice.max_output_change < 5e-3


@pytest.mark.parametrize("args, message", [
    (["nowhere"], "not a run directory"),
    (["RUN", "--epoch", 7], "no checkpoint of epoch 7"),
    (["RUN", "--set", "iteration=8"], "did you mean 'iterations'"),
    (["NETLIST_RUN", "--iterations", 8], "a netlist's settings are in the netlist"),
])
def test_bad_input_is_one_line_and_exit_code_1(args, message, drn_run, netlist_run):
    args = [{"RUN": drn_run, "NETLIST_RUN": netlist_run}.get(a, a) for a in args]
    result = invoke("evaluate", *args)
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


def test_a_sweep_count_is_positive_or_converged(drn_run):
    result = invoke("evaluate", drn_run, "--iterations", 0)
    assert result.exit_code == 2 and "positive integer or 'converged'" in result.output
