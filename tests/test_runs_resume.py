"""Run directories: a run killed at any moment and resumed ends as an uninterrupted run; resume is strict.

The kill test runs `aeqprop train` as a subprocess and SIGKILLs it at seeded random moments,
resuming each time, until the run finishes; then theta, the metrics and the step records
must equal those of an uninterrupted run (to 1e-12; only wall and CPU times differ).
"""

from __future__ import annotations

import csv
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from aeqprop_circuits.cli.main import main
from aeqprop_circuits.experiments.rundir import RunDir

ROOT = pathlib.Path(__file__).resolve().parents[1]
IRIS = str(ROOT / "netlists" / "iris.cir")
TIMES = ("seconds", "train_seconds", "train_cpu_seconds")
# A small DRN on Digits: ~0.1 s per epoch, so that kills land inside epochs and inside writes.
KILLED_RUN = ["--model", "drn:128-24-10", "--data", "digits", "--epochs", "10", "--batch-size", "8",
              "--max-train", "1000", "--lr", "0.05", "--beta", "0.1", "--momentum", "0.5", "--trace-every", "7"]


def aeqprop(*args, **kwargs) -> subprocess.Popen:
    environment = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "aeqprop_circuits", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=environment, **kwargs)


def finished(run: pathlib.Path) -> dict:
    """theta of the last checkpoint, metrics without times, step records."""
    directory = RunDir(str(run), create=False)
    last = directory.checkpoint_epochs()[-1]
    rows = [{k: v for k, v in row.items() if k not in TIMES} for row in csv.DictReader(open(run / "metrics.csv"))]
    steps = [json.loads(line) for line in open(run / "steps.jsonl")]
    return {"theta": directory.load_checkpoint(last)["parameters"], "rows": rows, "steps": steps, "last": last}


def test_a_run_killed_at_random_moments_and_resumed_equals_an_uninterrupted_run(tmp_path):
    whole = aeqprop("train", *KILLED_RUN, "--out", str(tmp_path / "whole"))
    assert whole.wait(timeout=120) == 0, whole.stderr.read()
    killed, rng, kills = tmp_path / "killed", np.random.default_rng(5), 0
    process = aeqprop("train", *KILLED_RUN, "--out", str(killed))
    for attempt in range(4):  # three kills at random moments, then the run may finish
        process.stdout.readline()  # "run directory: ...": set up, training from here on
        try:
            code = process.wait(timeout=rng.uniform(0.0, 0.5) if attempt < 3 else 120)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
            process = aeqprop("train", "--resume", str(killed))
            continue
        assert code == 0, process.stderr.read()
        break
    assert kills >= 2, "the run finished before the kills: lengthen it"
    a, b = finished(tmp_path / "whole"), finished(killed)
    assert a["last"] == b["last"] == 10
    assert np.abs(a["theta"] - b["theta"]).max() <= 1e-12 * max(1.0, np.abs(a["theta"]).max())
    assert a["rows"] == b["rows"]
    assert a["steps"] == b["steps"]


@pytest.fixture
def two_epochs(tmp_path) -> pathlib.Path:
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", IRIS, "--epochs", "2", "--out", str(run)])
    assert result.exit_code == 0, result.output
    return run


def test_resume_extends_a_run_from_another_directory_on_its_own_netlist_copy(two_epochs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert (two_epochs / "netlist" / "iris.cir").read_text() == pathlib.Path(IRIS).read_text()
    result = CliRunner().invoke(main, ["train", "--resume", str(two_epochs), "--epochs", "3"])
    assert result.exit_code == 0, result.output
    assert "resuming after epoch 2" in result.output
    epochs = [row["epoch"] for row in csv.DictReader(open(two_epochs / "metrics.csv"))]
    assert epochs == ["0", "1", "2", "3"]


def test_resume_warns_when_the_original_netlist_changed(two_epochs, tmp_path):
    edited = tmp_path / "iris.cir"
    shutil.copy(IRIS, edited)
    config = json.loads((two_epochs / "config.json").read_text())
    config["model"] = str(edited)
    (two_epochs / "config.json").write_text(json.dumps(config))
    edited.write_text(edited.read_text().replace("*@ g0", "* edited\n*@ g0"))
    result = CliRunner().invoke(main, ["train", "--resume", str(two_epochs), "--epochs", "3"])
    assert result.exit_code == 0, result.output
    assert "changed since the run started" in result.output and "run's copy" in result.output


def test_resume_refuses_settings_that_differ_from_the_runs(two_epochs):
    for args, words in ((["--lr", "1.0"], ["--lr", "only --epochs may change"]),
                        (["--epochs", "1"], ["--epochs 1", "done 2 epochs already"]),
                        (["--algorithm", "p-ep"], ["--algorithm", "c-ep"])):
        result = CliRunner().invoke(main, ["train", "--resume", str(two_epochs), *args])
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output and all(w in result.output for w in words), result.output


def test_resume_falls_back_to_the_newest_checkpoint_that_reads_and_cuts_the_records_back(two_epochs):
    reference = (two_epochs / "metrics.csv").read_text()
    checkpoint = two_epochs / "checkpoints" / "epoch0002.npz"
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])  # a truncated file
    with open(two_epochs / "steps.jsonl", "a") as f:
        f.write('{"epoch": 2, "step": 99, "loss_be')  # half a record (a kill mid-write)
    result = CliRunner().invoke(main, ["train", "--resume", str(two_epochs), "--epochs", "2"])
    assert result.exit_code == 0, result.output
    assert "unreadable checkpoint" in result.output and "resuming after epoch 1" in result.output
    assert (two_epochs / "metrics.csv").read_text().splitlines()[:3] == reference.splitlines()[:3]
    epochs = [row["epoch"] for row in csv.DictReader(open(two_epochs / "metrics.csv"))]
    assert epochs == ["0", "1", "2"]
    steps = [json.loads(line) for line in open(two_epochs / "steps.jsonl")]
    assert [s["step"] for s in steps] == list(range(1, 25))


def test_a_run_without_checkpoints_starts_over_without_doubling_its_metrics(two_epochs):
    shutil.rmtree(two_epochs / "checkpoints")
    result = CliRunner().invoke(main, ["train", "--resume", str(two_epochs)])
    assert result.exit_code == 0, result.output
    assert "starting over" in result.output
    epochs = [row["epoch"] for row in csv.DictReader(open(two_epochs / "metrics.csv"))]
    assert epochs == ["0", "1", "2"]


def test_ctrl_c_ends_with_exit_130_and_the_resume_command(tmp_path):
    run = tmp_path / "run"
    process = aeqprop("train", *KILLED_RUN, "--epochs", "200", "--out", str(run))
    deadline = time.time() + 60
    while not list((run / "checkpoints").glob("epoch0001.npz")) and time.time() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130
    error = process.stderr.read()
    assert f"aeqprop train --resume {run}" in error and "Traceback" not in error


def test_a_full_disk_is_a_clear_error_naming_the_file(two_epochs, monkeypatch):
    import builtins

    real_open = builtins.open

    def full_disk(path, mode="r", *args, **kwargs):
        if "a" in mode and str(path).endswith("metrics.csv"):
            raise OSError(28, "No space left on device")
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", full_disk)
    result = CliRunner().invoke(main, ["train", "--resume", str(two_epochs), "--epochs", "3"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "metrics.csv" in result.output and "No space left on device" in result.output
