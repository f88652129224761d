"""`aeqprop plot` and `aeqprop compare`: the PNGs a run promises, and the comparison table."""

from __future__ import annotations

import csv
import json
import os
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from aeqprop_circuits.cli.main import main
from aeqprop_circuits.experiments import plots
from aeqprop_circuits.experiments.session import run_training


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    out = []
    for algorithm, epochs in (("c-ep", 2), ("p-ep", 3)):
        out.append(run_training("netlists/iris.cir", None, True, {
            "algorithm": algorithm, "epochs": epochs, "max_train": 30, "trace_every": 2,
            "out": str(root / algorithm)}, echo=lambda *a: None))
    return out


def test_plot_writes_the_three_pngs_of_a_run(runs):
    result = CliRunner().invoke(main, ["plot", runs[0]])
    assert result.exit_code == 0, result.output
    for name in ("metrics.png", "lyapunov.png", "relaxation.png"):
        path = os.path.join(runs[0], name)
        assert path in result.output and os.path.getsize(path) > 1000


def test_compare_tabulates_each_runs_test_error_per_epoch(runs, tmp_path):
    png = str(tmp_path / "cmp.png")
    result = CliRunner().invoke(main, ["compare", *runs, "--label", "centred", "--label", "positive", "--out", png])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "Test error (%) per epoch:"  # the metric and its unit
    assert lines[2] == "| epoch | centred | positive |"
    with open(os.path.join(runs[1], "metrics.csv")) as f:
        third = {int(row["epoch"]): row for row in csv.DictReader(f)}[3]
    assert lines[4].startswith("| 0 | ")  # the untrained networks
    assert lines[7] == f"| 3 |  | {100 * float(third['test_error']):.2f} |"  # c-ep ran 2 epochs: empty cell
    assert os.path.getsize(png) > 1000


def test_compare_last_gives_mean_and_std_of_the_last_epochs(runs, tmp_path):
    result = CliRunner().invoke(main, ["compare", runs[1], "--last", "2", "--out", str(tmp_path / "c.png")])
    assert result.exit_code == 0, result.output
    with open(os.path.join(runs[1], "metrics.csv")) as f:
        rows = list(csv.DictReader(f))[1:]  # epochs 1-3 (epoch 0 is the untrained network)
    errors = [100 * float(r["test_error"]) for r in rows]
    window = errors[-2:]
    mean, std = sum(window) / 2, abs(window[0] - window[1]) / 2
    best = min(range(3), key=errors.__getitem__)
    train = 100 * (1 - (float(rows[1]["train_accuracy"]) + float(rows[2]["train_accuracy"])) / 2)
    summary = [line for line in result.output.splitlines() if line.startswith("| p-ep |")][-1]
    assert summary == (f"| p-ep | 2–3 | {mean:.2f} ± {std:.2f} | {errors[best]:.2f} ({best + 1}) | {train:.2f} |")


def test_compare_upto_ends_the_window_at_an_epoch(runs, tmp_path):
    result = CliRunner().invoke(main, ["compare", runs[1], "--last", "2", "--upto", "2",
                                       "--out", str(tmp_path / "c.png")])
    assert result.exit_code == 0, result.output
    with open(os.path.join(runs[1], "metrics.csv")) as f:
        rows = list(csv.DictReader(f))[1:]
    errors = [100 * float(r["test_error"]) for r in rows[:2]]
    best = min(range(2), key=errors.__getitem__)
    train = 100 * (1 - (float(rows[0]["train_accuracy"]) + float(rows[1]["train_accuracy"])) / 2)
    summary = [line for line in result.output.splitlines() if line.startswith("| p-ep |")][-1]
    assert summary == (f"| p-ep | 1–2 | {sum(errors) / 2:.2f} ± {abs(errors[0] - errors[1]) / 2:.2f} "
                       f"| {errors[best]:.2f} ({best + 1}) | {train:.2f} |")


def test_plot_and_compare_name_what_is_not_a_run(tmp_path):
    for command in (["plot", str(tmp_path)], ["compare", str(tmp_path)]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code != 0 and "run directory" in result.output and "Traceback" not in result.output


@pytest.fixture(scope="module")
def regression_run(tmp_path_factory):
    """A circuit without diodes (one linear solve per phase) trained on the 1-D regression task."""
    return run_training("netlists/linear_regression.cir", None, True, {
        "data": "regression", "epochs": 1, "max_train": 20, "trace_every": 0,
        "out": str(tmp_path_factory.mktemp("regression") / "run")}, echo=lambda *a: None)


def test_a_one_iteration_solve_has_no_relaxation_plot_and_a_regression_run_has_its_panel(regression_run):
    setup = plots._trained(regression_run)
    assert plots.relaxation_trace(setup.system, setup.data.x_test[:8]).size == 1  # one linear solve
    assert plots.plot_relaxation(regression_run, setup) is None
    assert not os.path.exists(os.path.join(regression_run, "relaxation.png"))
    path = plots.plot_regression(regression_run, setup)
    assert path == os.path.join(regression_run, "regression.png") and os.path.getsize(path) > 1000


def test_the_classification_runs_have_no_regression_panel(runs):
    assert plots.plot_regression(runs[0]) is None


def _drawn(monkeypatch) -> list:
    """The figures `plots` saves, kept open for inspection."""
    figures = []
    monkeypatch.setattr(plots, "_save", lambda plt, fig, path: figures.append(fig))
    return figures


def test_compare_names_its_metric_and_unit_on_the_axis(runs, regression_run, tmp_path, monkeypatch):
    figures = _drawn(monkeypatch)
    plots.compare_runs(runs, out=str(tmp_path / "a.png"))
    table, _ = plots.compare_runs([regression_run], out=str(tmp_path / "b.png"))
    assert [f.axes[0].get_ylabel() for f in figures] == ["test error (%)", "test loss (V²)"]
    assert table.splitlines()[0] == "Test loss (V²) per epoch:"


def test_a_system_without_conductance_units_is_dimensionless(regression_run, tmp_path, monkeypatch):
    dimensionless = str(tmp_path / "dimensionless")
    shutil.copytree(regression_run, dimensionless)
    with open(os.path.join(dimensionless, "config.json")) as f:
        config = json.load(f)
    with open(os.path.join(dimensionless, "config.json"), "w") as f:
        json.dump({**config, "g0": None}, f)  # what a Hopfield network's run records
    figures = _drawn(monkeypatch)
    plots.plot_metrics(dimensionless)
    plots.compare_runs([regression_run, dimensionless], ["circuit", "hopfield"], out=str(tmp_path / "c.png"))
    assert figures[0].axes[0].get_ylabel() == "loss (dimensionless)"
    legend = [t.get_text() for t in figures[1].axes[0].get_legend().get_texts()]
    assert legend[0] == "circuit [V²]" and legend[1].startswith("hopfield [dimensionless]")
    assert plots.run_units({}).loss_label("loss") == "loss"  # a config that records no g0: no unit claimed


def test_compare_keeps_identical_runs_visible(runs, tmp_path, monkeypatch):
    figures = _drawn(monkeypatch)
    plots.compare_runs([runs[0], runs[1], runs[0]], ["first", "second", "again"], out=str(tmp_path / "d.png"))
    ax = figures[0].axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["first", "second", "again (identical to first)"]
    lines = ax.get_lines()
    assert lines[0].get_linestyle() != lines[2].get_linestyle() and lines[0].get_marker() != lines[2].get_marker()


def test_coinciding_variants_of_a_reproduction_figure_stay_visible():
    plt = plots._pyplot()
    fig, ax = plt.subplots()
    curves = np.exp(-np.linspace(0, 3, 50))[None, :] * np.array([[1.0], [2.0], [0.5]])
    for index, name in enumerate(("SGD", "Aeqprop (optimistic)")):  # the same runs: the same median and band
        plots.median_band(ax, np.arange(50), curves, color=f"C{index}", label=name, index=index, of=2)
    medians = [line for line in ax.get_lines() if not line.get_label().startswith("_")]
    assert [line.get_label() for line in medians] == ["SGD", "Aeqprop (optimistic)"]
    assert medians[0].get_markevery() != medians[1].get_markevery()  # markers set at offsets of their own
    assert medians[0].get_marker() != medians[1].get_marker()
    assert max(c.get_zorder() for c in ax.collections) < min(line.get_zorder() for line in medians)
    plt.close(fig)
