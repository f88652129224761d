"""`aeqprop summary`: final accuracy over seeds and Lyapunov counts of run directories, finished or not."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from aeqprop_circuits.cli.main import main
from aeqprop_circuits.experiments.results import lyapunov_counts, read_runs, summary


def make_run(path, algorithm, seed, accuracies, epochs, steps=()):
    """A run directory as training leaves it: config.json, metrics.csv, steps.jsonl (L before, after)."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model": "netlists/iris.cir", "algorithm": algorithm,
                                                  "seed": seed, "epochs": epochs}))
    rows = "".join(f"{k + 1},{a},2.0\n" for k, a in enumerate(accuracies))
    (path / "metrics.csv").write_text("epoch,test_accuracy,seconds\n0,0.3,0.0\n" + rows)  # epoch 0: untrained
    (path / "steps.jsonl").write_text("".join(json.dumps({"lyapunov_before": b, "lyapunov_after": a}) + "\n"
                                              for b, a in steps))
    return path


def test_only_rises_beyond_rounding_count_as_lyapunov_increases(tmp_path):
    steps = [(1.0, 0.9), (1.0, 1.0 + 1e-13), (1.0, 1.2), (2.0, 2.1)]
    run = make_run(tmp_path / "run", "c-ep", 0, [0.9], 1, steps)
    counts = lyapunov_counts(str(run / "steps.jsonl"))
    assert (counts.traced, counts.increases) == (4, 2)
    assert counts.largest_increase == pytest.approx(0.2) and counts.largest_relative_change == pytest.approx(0.2)


def test_seeds_are_pooled_per_rule_and_unfinished_runs_kept_apart(tmp_path):
    make_run(tmp_path / "s0", "c-ep", 0, [0.5, 0.8], 2, [(1.0, 0.5)])
    make_run(tmp_path / "s1", "c-ep", 1, [0.6, 1.0], 2, [(1.0, 1.5)])
    make_run(tmp_path / "s2", "c-ep", 2, [0.7], 2)  # still running
    make_run(tmp_path / "p0", "p-ep", 0, [0.4, 0.6], 2)
    by_rule = {row["algorithm"]: row for row in summary(read_runs([str(tmp_path)]))}
    assert by_rule["c-ep"]["test_accuracy_mean"] == pytest.approx(90.0)
    assert by_rule["c-ep"]["test_accuracy_std"] == pytest.approx(10.0)
    assert (by_rule["c-ep"]["finished"], by_rule["c-ep"]["unfinished"]) == (2, 1)
    assert (by_rule["c-ep"]["traced_steps"], by_rule["c-ep"]["lyapunov_increases"]) == (2, 1)
    assert by_rule["p-ep"]["traced_steps"] == 0


def test_a_sweep_directory_and_a_single_run_are_read_too(tmp_path):
    make_run(tmp_path / "sweep" / "points" / "algorithm=c-ep,seed=0", "c-ep", 0, [0.9], 1)
    make_run(tmp_path / "sweep" / "points" / "algorithm=c-ep,seed=1", "c-ep", 1, [0.7], 1)
    single = make_run(tmp_path / "single", "cl", 3, [0.5], 1, [(1.0, 0.9)])
    found = {row["algorithm"]: row for row in summary(read_runs([str(tmp_path / "sweep"), str(single)]))}
    assert found["c-ep"]["finished"] == 2 and found["cl"]["traced_steps"] == 1


def test_the_cli_tables(tmp_path):
    make_run(tmp_path / "s0", "c-ep", 0, [0.9], 1)
    make_run(tmp_path / "s3", "c-ep", 3, [0.7], 1)
    result = CliRunner().invoke(main, ["summary", str(tmp_path)])
    assert result.exit_code == 0 and "| c-ep | 80.0 ± 10.0 | 2 | 2.0 | 0 | 0 | – | – |" in result.output
    result = CliRunner().invoke(main, ["summary", "--seeds", str(tmp_path)])
    assert result.exit_code == 0 and "| c-ep | 90.0 | 70.0 |" in result.output
    result = CliRunner().invoke(main, ["summary", "--json", str(tmp_path)])
    assert json.loads(result.output)["largest_relative_change"] is None


def test_a_path_without_runs_is_an_error(tmp_path):
    result = CliRunner().invoke(main, ["summary", str(tmp_path)])
    assert result.exit_code == 1 and "neither a run directory" in result.output
