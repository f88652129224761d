"""A fast version of the Aeqprop linear-regression study (Sec. 5.2): one (epsilon, beta) pair per claim."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from aeqprop_circuits.cli.reproduce import reproduce
from aeqprop_circuits.experiments.reproduce.regression import Run, simulate, summary_records


@pytest.fixture(scope="module")
def records():
    runs = [Run(2, method, eps, beta, 0, 300, 0.0)
            for method, eps, beta in [("sgd", 0.5, 0.5), ("aeqprop-optimistic", 0.5, 0.5),
                                      ("sgd", 0.5, 0.01), ("aeqprop-centered", 0.5, 0.01)]]
    traces = simulate(runs, grid_points=101, progress=False)
    return {(r["method"], r["beta"]): r for r in summary_records(traces)}


def test_sgd_diverges_at_epsilon_beta_one_half(records):
    # learning rate 0.25 with |phi|^2 = 11: 0.25 * 11 > 2
    assert records[("sgd", 0.5)]["diverged"] and records[("sgd", 0.5)]["final_loss"] is None


def test_optimistic_aeqprop_still_optimises_at_epsilon_beta_one_half(records):
    run = records[("aeqprop-optimistic", 0.5)]
    assert not run["diverged"]
    assert run["final_loss"] < 0.3 * run["initial_loss"]


def test_centered_aeqprop_tracks_sgd_at_small_beta(records):
    sgd, centered = records[("sgd", 0.01)], records[("aeqprop-centered", 0.01)]
    assert not centered["diverged"]
    assert centered["final_loss"] < sgd["initial_loss"]
    progress = sgd["initial_loss"] - sgd["final_loss"]  # the curves agree to 5 % of what SGD learnt
    assert abs(centered["final_loss"] - sgd["final_loss"]) < 0.05 * progress


def test_lyapunov_function_never_increases(records):
    for key in (("aeqprop-optimistic", 0.5), ("aeqprop-centered", 0.01)):
        assert records[key]["lyapunov_increases"] == 0


def test_cli_writes_summary_figures_traces_and_never_overwrites(tmp_path):
    out = str(tmp_path / "study")
    runner = CliRunner()
    first = runner.invoke(reproduce, ["regression", "--figure", "2", "--samples", "3", "--seeds", "1",
                                      "--grid", "21", "--quiet", "--out", out])
    assert first.exit_code == 0, first.output
    records = json.load(open(os.path.join(out, "summary.json")))
    keys = {"figure", "method", "epsilon", "beta", "seed", "initial_loss", "final_loss", "diverged",
            "lyapunov_increases"}
    assert len(records) == 4 * 9 and all(keys <= set(r) for r in records)
    assert {r["method"] for r in records} == {"sgd", "aeqprop-optimistic", "aeqprop-pessimistic",
                                              "aeqprop-centered"}
    assert os.path.getsize(os.path.join(out, "figure2.png")) > 0
    with np.load(os.path.join(out, "figure2_traces.npz")) as traces:
        assert traces["loss"].shape == (4, 3, 3, 1, 4)
        assert traces["lyapunov_after"].shape == (4, 3, 3, 1, 3)
    second = runner.invoke(reproduce, ["regression", "--figure", "2", "--samples", "2", "--seeds", "1",
                                       "--grid", "21", "--out", out])
    assert second.exit_code == 0, second.output
    assert "sample/s" not in second.output  # without a terminal, no progress bar even without --quiet
    assert os.path.exists(out + "-2") and len(json.load(open(os.path.join(out, "summary.json")))) == 36
