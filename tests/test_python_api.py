"""The public Python API: what docs/python-api.md shows runs, and `train` equals `aeqprop train`."""

from __future__ import annotations

import csv
import pathlib
import re

import pytest

import aeqprop_circuits as aq

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_every_exported_name_exists_and_the_version_is_set():
    for name in aq.__all__:
        assert hasattr(aq, name), name
    assert re.match(r"^\d+\.\d+", aq.__version__)


def test_the_documented_example_runs(tmp_path, monkeypatch):
    text = (ROOT / "docs" / "python-api.md").read_text()
    block = re.search(r"<!-- python-api-example -->\n```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "netlists").symlink_to(ROOT / "netlists")
    exec(compile(block, "docs/python-api.md", "exec"), {})
    assert (tmp_path / "iris-accuracy.png").stat().st_size > 1000


def test_train_from_python_equals_the_command_line_run(tmp_path):
    """Same defaults, same arithmetic: the metrics of `train(...)` are the rows `aeqprop train` writes."""
    from click.testing import CliRunner

    from aeqprop_circuits.cli.main import main

    result = aq.train("netlists/iris.cir", epochs=2, out=str(tmp_path / "api"))
    cli = CliRunner().invoke(main, ["train", "netlists/iris.cir", "--epochs", "2", "--out", str(tmp_path / "cli")])
    assert cli.exit_code == 0, cli.output
    for directory in (result.run_dir, tmp_path / "cli"):
        rows = list(csv.DictReader(open(pathlib.Path(directory) / "metrics.csv")))
        assert [float(r["test_loss"]) for r in rows] == [row["test_loss"] for row in result.metrics]
    assert result.config == aq.resolve("netlists/iris.cir", epochs=2, out=result.run_dir)


def test_train_refuses_a_bad_setting_before_any_work(tmp_path):
    with pytest.raises(aq.AeqpropError, match="did you mean 'batch_size'"):
        aq.train("netlists/iris.cir", batchsize=4, out=str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_a_classification_run_reports_the_digital_baseline_on_its_own_split(tmp_path):
    """Logistic regression on the same split: the number a reader compares the circuit's accuracy with."""
    import json

    from click.testing import CliRunner
    from sklearn.linear_model import LogisticRegression

    from aeqprop_circuits.cli.main import main

    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "netlists/iris.cir", "--epochs", "1", "--seed", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    baseline = json.loads((out / "baseline.json").read_text())
    data = aq.load_dataset("iris", seed=3)
    expected = LogisticRegression(max_iter=2000).fit(data.x_train, data.y_train).score(data.x_test, data.y_test)
    assert baseline["test_accuracy"] == expected and baseline["train_samples"] == len(data.x_train)
    assert f"on the same split: {expected:.3f}" in result.output
