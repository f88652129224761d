"""`aeqprop plot` and `aeqprop compare`: the PNGs a run promises, and the comparison table."""

from __future__ import annotations

import csv
import os

import pytest
from click.testing import CliRunner

from aeqprop_circuits.cli.main import main
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
    assert lines[0] == "| epoch | centred | positive |"
    with open(os.path.join(runs[1], "metrics.csv")) as f:
        third = {int(row["epoch"]): row for row in csv.DictReader(f)}[3]
    assert lines[2].startswith("| 0 | ")  # the untrained networks
    assert lines[5] == f"| 3 |  | {100 * float(third['test_error']):.2f} |"  # c-ep ran 2 epochs: empty cell
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
