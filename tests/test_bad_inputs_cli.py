"""Bad command-line values and run directories: each is refused with its name, a non-zero exit and no traceback.

Every case is a row: the command, the exit code, the words the message must hold. A refused
`train` leaves no run directory behind.
"""

from __future__ import annotations

import json
import pathlib
import shutil

import pytest
from click.testing import CliRunner

from aeqprop_circuits.cli.main import main

ROOT = pathlib.Path(__file__).resolve().parents[1]
IRIS = str(ROOT / "netlists" / "iris.cir")

TRAIN_CASES = [  # (arguments after `train IRIS`, words)
    (["--epsilon", "-1", "--algorithm", "aeqprop-centered"], ["epsilon", "--epsilon", "out of range"]),
    (["--epsilon", "0"], ["epsilon", "out of range"]),
    (["--epsilon", "inf"], ["epsilon", "finite"]),
    (["--lr", "-1"], ["lr", "out of range"]),
    (["--lr", "nan"], ["lr", "finite"]),
    (["--beta", "0"], ["beta", "out of range"]),
    (["--beta", "-0.1"], ["beta", "out of range"]),
    (["--relax-rounds", "0"], ["relax_rounds", "out of range"]),
    (["--epochs", "0"], ["epochs", "out of range"]),
    (["--epochs", "-3"], ["epochs", "out of range"]),
    (["--batch-size", "0"], ["batch_size", "--batch-size"]),
    (["--trace-every", "-1"], ["trace_every", "out of range"]),
    (["--lr-decay", "0"], ["lr_decay", "out of range"]),
    (["--lr-decay", "1.5"], ["lr_decay", "out of range"]),
    (["--momentum", "1"], ["momentum", "out of range"]),
    (["--momentum", "-0.5"], ["momentum", "out of range"]),
    (["--weight-decay", "-1"], ["weight_decay", "out of range"]),
    (["--lr-floor", "-1"], ["lr_floor", "out of range"]),
    (["--target-amplitude", "0"], ["target_amplitude", "out of range"]),
    (["--max-train", "0"], ["max_train", "out of range"]),
    (["--points", "0", "--algorithm", "multi-point-ep"], ["points", "out of range"]),
    (["--test-fraction", "1.5"], ["test_fraction", "out of range"]),
    (["--test-fraction", "0"], ["test_fraction", "out of range"]),
    (["--seed", "-1"], ["seed", "out of range"]),
    (["--algorithm", "c-epp"], ["'c-epp'", "did you mean 'c-ep'"]),
    (["--algorithm", "aeqprop-centred"], ["did you mean 'aeqprop-centered'"]),
    (["--momentum", "0.9", "--algorithm", "aeqprop-centered"], ["momentum", "Aeqprop"]),
    (["--weight-decay", "0.1", "--algorithm", "aeqprop-optimistic"], ["weight_decay"]),
    (["--set", "width=2"], ["model option 'width'", "netlist"]),
    (["--set", "width"], ["KEY=VALUE"]),
    (["--model", "drn:4-8-3"], ["two models given"]),
    (["--data", "irs"], ["irs"]),
    (["--data", "missing.csv"], ["missing.csv"]),
    (["--data", "wine"], ["13 features", "4 inputs"]),
    (["--augment", "hflip"], ["hflip", "not an image data set"]),
    (["--preset", "drn-xl-nope"], ["unknown preset", "drn-xs"]),
    (["--task", "regression"], ["regression"]),
    (["--resume", "somewhere"], ["--resume", "give no model"]),
]


@pytest.mark.parametrize("arguments, words", TRAIN_CASES, ids=[" ".join(c[0]) for c in TRAIN_CASES])
def test_bad_train_values_are_refused_before_any_work(tmp_path, arguments, words):
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", IRIS, *arguments, "--out", str(out)])
    assert result.exit_code in (1, 2), result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    for word in words:
        assert word in result.output, (word, result.output)
    assert not out.exists(), "a refused run left a directory"


def test_a_pinned_output_is_refused_by_train_naming_its_line(tmp_path):
    netlist = tmp_path / "pinned.cir"
    netlist.write_text("pinned output\n*@ input V1\n*@ output a\n*@ learn R1\n"
                       "V1 a 0 DC 1\nR1 a b 1k\nR2 b 0 1k\n.end\n")
    result = CliRunner().invoke(main, ["train", str(netlist), "--data", "xor", "--out", str(tmp_path / "run")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{netlist}:3: output a is pinned" in result.output
    assert not (tmp_path / "run").exists()


def test_netlist_warnings_under_train_are_one_line_each(tmp_path):
    netlist = tmp_path / "annotated-title.cir"
    netlist.write_text(pathlib.Path(IRIS).read_text().replace(".end", ".tran 1n 10n\n.end"))
    result = CliRunner().invoke(main, ["train", str(netlist), "--epochs", "1", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    warning = [line for line in result.output.splitlines() if line.startswith("Warning: ")]
    assert warning and f"{netlist}:" in warning[0] and "only the DC operating point" in result.output


def test_set_keys_of_a_model_are_checked_and_listed(tmp_path):
    result = CliRunner().invoke(main, ["train", "--model", "hopfield:64-20-10", "--data", "digits",
                                       "--set", "cost_scal=1", "--out", str(tmp_path / "run")])
    assert result.exit_code == 1
    assert "did you mean 'cost_scale'" in result.output and "valid:" in result.output


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> pathlib.Path:
    run = tmp_path_factory.mktemp("runs") / "run"
    result = CliRunner().invoke(main, ["train", IRIS, "--epochs", "1", "--out", str(run)])
    assert result.exit_code == 0, result.output
    return run


def _copy(run: pathlib.Path, tmp_path: pathlib.Path) -> pathlib.Path:
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    return copy


def _damage_config(run):
    (run / "config.json").write_text('{"model": "netlists/iris.cir", "epo')


def _unknown_config_key(run):
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "learning_rat": 0.1}))


def _bad_config_value(run):
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "batch_size": 0}))


def _no_netlist_copy(run):
    shutil.rmtree(run / "netlist")


def _foreign_checkpoint(run):
    import numpy as np

    np.savez(run / "checkpoints" / "epoch0001.npz", parameters=np.zeros(3), epoch=np.array(1))


RUN_CASES = [  # (damage, extra arguments, exit code, words)
    (_damage_config, [], 1, ["config.json", "not valid JSON"]),
    (_unknown_config_key, [], 1, ["config.json", "learning_rat"]),
    (_bad_config_value, [], 1, ["batch_size", "out of range"]),
    (_no_netlist_copy, [], 1, ["netlist", "missing"]),
    (_foreign_checkpoint, [], 1, ["checkpoint holds 3 parameters"]),
    (None, ["--lr", "3"], 1, ["--lr", "only --epochs may change"]),
    (None, ["--epochs", "0"], 1, ["epochs", "done 1 epochs already"]),
]


@pytest.mark.parametrize("damage, extra, code, words", RUN_CASES, ids=[
    "truncated config", "unknown config key", "bad config value", "netlist copy gone", "foreign checkpoint",
    "changed option", "fewer epochs"])
def test_bad_run_directories_are_refused_by_name(finished_run, tmp_path, damage, extra, code, words):
    run = _copy(finished_run, tmp_path)
    if damage:
        damage(run)
    result = CliRunner().invoke(main, ["train", "--resume", str(run), *extra])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.output, (word, result.output)


@pytest.mark.parametrize("command, words", [
    (["train", "--resume", "no-such-run"], ["no-such-run", "not a run directory"]),
    (["plot", "no-such-run"], ["no-such-run", "not a run directory"]),
    (["compare", "no-such-run"], ["no metrics.csv"]),
    (["compare", "a", "b", "--upto", "0"], ["--upto"]),
    (["train"], ["no model"]),
    (["gradcheck", IRIS, "--beta", "abc"], ["--beta", "abc"]),
    (["solve", IRIS, "--solver", "fastest"], ["--solver", "fastest"]),
])
def test_bad_commands_name_what_is_wrong(command, words):
    result = CliRunner().invoke(main, command)
    assert result.exit_code != 0 and "Traceback" not in result.output
    for word in words:
        assert word in result.output, (word, result.output)


def test_a_damaged_metrics_line_is_named_by_plot(finished_run, tmp_path):
    run = _copy(finished_run, tmp_path)
    with open(run / "metrics.csv", "a") as f:
        f.write("2,0.1,abc")
    result = CliRunner().invoke(main, ["plot", str(run)])
    assert result.exit_code == 0, result.output  # a cut-short last line (a kill mid-write) is left out
    lines = (run / "metrics.csv").read_text().splitlines()[:3]
    (run / "metrics.csv").write_text("\n".join(lines + ["2,0.1,abc,0,0,0,0,0,0,0"]) + "\n")
    result = CliRunner().invoke(main, ["plot", str(run)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "metrics.csv:4:3: train_accuracy: expected a number, got 'abc'" in result.output
