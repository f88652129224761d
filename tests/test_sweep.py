"""`aeqprop sweep`: spec validation, a small sweep on a LocalCluster, skip/resume on rerun, failures, retries."""

from __future__ import annotations

import csv
import json
import os
import sys

import cloudpickle
import pytest
from click.testing import CliRunner

from aeqprop_circuits.cli.main import main
from aeqprop_circuits.experiments.sweep import SweepSpecError, load_spec
from aeqprop_circuits.experiments.sweep.runner import (
    logs_directory,
    point_state,
    points_directory,
    run_point,
    run_points,
    worker_environment,
)
from aeqprop_circuits.experiments.sweep.runner import start_client as start_dask_client

IRIS = os.path.join(os.path.dirname(__file__), os.pardir, "netlists", "iris.cir")
QUICK = {"model": IRIS, "data": "iris", "epochs": 1, "max_train": 10, "batch_size": 10, "trace_every": 0}


def write_spec(directory, spec: dict, name="spec.json") -> str:
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        json.dump(spec, f)
    return path


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --- specs --------------------------------------------------------------------------------------
def test_grid_expands_to_the_product_with_names_in_sorted_key_order(tmp_path):
    spec = load_spec(write_spec(tmp_path, {"base": QUICK, "grid": {"seed": [0, 1], "beta": [0.1, 0.2],
                                                                     "algorithm": ["c-ep", "p-ep"]}}))
    names = [p.name for p in spec.points]
    assert len(names) == 8 == len(set(names))
    assert names[0] == "algorithm=c-ep,beta=0.1,seed=0"
    point = spec.points[0]
    # unset options stay None: the training session resolves defaults and presets (runs/session.py)
    assert point.options["beta"] == 0.1 and point.options["solver"] is None
    assert os.path.isabs(point.options["model"])
    assert spec.group_keys == ["algorithm", "beta"]


def test_toml_and_yaml_specs_give_the_same_points_as_json(tmp_path):
    json_spec = load_spec(write_spec(tmp_path, {"base": QUICK, "grid": {"seed": [0, 1], "lr": [0.5, 1]}}))
    model = QUICK["model"].replace("\\", "/")
    (tmp_path / "spec.toml").write_text(
        f'[base]\nmodel = "{model}"\ndata = "iris"\nepochs = 1\nmax_train = 10\nbatch_size = 10\n'
        'trace_every = 0\n[grid]\nseed = [0, 1]\nlr = [0.5, 1.0]\n')
    toml_spec = load_spec(str(tmp_path / "spec.toml"))
    assert [p.name for p in toml_spec.points] == [p.name for p in json_spec.points]
    assert [p.options for p in toml_spec.points] == [p.options for p in json_spec.points]
    pytest.importorskip("yaml")
    (tmp_path / "spec.yaml").write_text(
        f"base: {{model: '{model}', data: iris, epochs: 1, max_train: 10, batch_size: 10, trace_every: 0}}\n"
        "grid:\n  seed: [0, 1]\n  lr: [0.5, 1.0]\n")
    assert [p.options for p in load_spec(str(tmp_path / "spec.yaml")).points] == [p.options for p in json_spec.points]


@pytest.mark.parametrize("spec, expected", [
    ({"base": QUICK, "grid": {"seeds": [0]}}, "grid.seeds: unknown key (did you mean 'seed'?)"),
    ({"base": QUICK, "grid": {"beta": ["abc"]}}, "grid.beta: beta (--beta): expected a finite number"),
    ({"base": QUICK, "grid": {"seed": 3}}, "grid.seed: expected a non-empty list of values, got 3"),
    ({"base": QUICK, "grid": {"seed": []}}, "grid.seed: expected a non-empty list"),
    ({"base": QUICK, "grid": {"epochs": [1]}}, "grid.epochs: set both in base and in grid"),
    ({"base": {"data": "iris"}, "grid": {"seed": [0]}}, "no model"),
    ({"base": QUICK, "grid": {"seed": [0, 0]}}, "grid.seed: value 0 appears twice"),
    ({"base": QUICK, "grid": {"solver": ["fast"]}}, "grid.solver: solver (--solver): 'fast' is not one of auto"),
    ({"base": {**QUICK, "epochs": 1.5}, "grid": {"seed": [0]}},
     "base.epochs: epochs (--epochs): expected an integer, got 1.5"),
    ({"base": QUICK, "grid": {"seed": [0]}, "workers": 3}, "workers: unknown key"),
    ({"base": QUICK}, "grid: expected a mapping of option -> list of values"),
    ({"base": QUICK, "grid": {"algorithm": ["c-ep", "no-such-rule"]}}, "'no-such-rule' is not one of"),
    ({"base": QUICK, "grid": {"algorithm": ["c-ep", "aeqprop-centered"], "momentum": [0.9]}},
     "point algorithm=aeqprop-centered,momentum=0.9: momentum applies to"),
])
def test_bad_spec_error_names_file_key_and_expectation(tmp_path, spec, expected):
    path = write_spec(tmp_path, spec)
    with pytest.raises(SweepSpecError) as info:
        load_spec(path)
    assert str(info.value).startswith(f"{path}: ")
    assert expected in str(info.value)


def test_unreadable_spec_files_are_errors_not_tracebacks(tmp_path):
    (tmp_path / "broken.json").write_text('{"base": {')
    (tmp_path / "spec.ini").write_text("[base]\n")
    runner = CliRunner()
    for path, expected in [(tmp_path / "broken.json", "not valid JSON"), (tmp_path / "spec.ini", "expected a .json"),
                           (tmp_path / "missing.json", "no such file")]:
        result = runner.invoke(main, ["sweep", str(path), "--out", str(tmp_path / "out")])
        assert result.exit_code == 1, result.output
        assert f"Error: {path}: " in result.output and expected in result.output
        assert "Traceback" not in result.output


# --- a small sweep ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """2 seeds x (iris, wine: 13 features for the 4 inputs of the Iris netlist), 1 epoch on 10 samples, threads."""
    directory = tmp_path_factory.mktemp("sweep")
    base = {key: value for key, value in QUICK.items() if key != "data"}
    spec = write_spec(directory, {"base": base, "grid": {"seed": [0, 1], "data": ["iris", "wine"]}})
    out = str(directory / "out")
    result = CliRunner().invoke(main, ["sweep", spec, "--out", out, "--threads", "--workers", "2", "--quiet"])
    return {"spec": spec, "out": out, "result": result}


def test_failing_point_is_reported_while_the_others_finish(sweep):
    assert sweep["result"].exit_code == 4, sweep["result"].output
    assert "Error: 2 of 4 points failed" in sweep["result"].output
    rows = {(r["data"], r["seed"]): r for r in read_csv(os.path.join(sweep["out"], "summary.csv"))}
    assert len(rows) == 4
    for seed in "01":
        ok, failed = rows[("iris", seed)], rows[("wine", seed)]
        assert ok["status"] == "ok" and ok["epochs"] == "1" and 0 <= float(ok["final_test_accuracy"]) <= 1
        assert float(ok["best_test_accuracy"]) >= float(ok["final_test_accuracy"])
        assert failed["status"] == "failed" and "wine has 13 features" in failed["message"]


def test_summary_groups_seeds_into_mean_and_std(sweep):
    rows = read_csv(os.path.join(sweep["out"], "summary.csv"))
    groups = {g["data"]: g for g in read_csv(os.path.join(sweep["out"], "summary_groups.csv"))}
    accuracy = [float(r["final_test_accuracy"]) for r in rows if r["data"] == "iris"]
    assert float(groups["iris"]["final_test_accuracy_mean"]) == pytest.approx(sum(accuracy) / 2)
    assert groups["iris"]["ok"] == "2" and groups["wine"]["ok"] == "0"
    markdown = open(os.path.join(sweep["out"], "summary.md")).read()
    assert "| data | ok | final test acc |" in markdown and "| iris | 2/2 |" in markdown
    assert os.path.getsize(os.path.join(sweep["out"], "summary.png")) > 1000


def test_rerun_skips_finished_points_and_retries_failed_ones(sweep):
    metrics = os.path.join(points_directory(sweep["out"]), "data=iris,seed=0", "metrics.csv")
    before = open(metrics).read()
    result = CliRunner().invoke(main, ["sweep", sweep["spec"], "--out", sweep["out"], "--threads", "--quiet"])
    assert result.exit_code == 4
    assert open(metrics).read() == before
    log = json.load(open(os.path.join(logs_directory(sweep["out"]), "data=iris,seed=0.json")))
    assert log["status"] == "ok"
    failed = json.load(open(os.path.join(logs_directory(sweep["out"]), "data=wine,seed=1.json")))
    assert failed["status"] == "failed" and failed["action"] == "ran"  # refused before a run directory was made
    listing = CliRunner().invoke(main, ["sweep", sweep["spec"], "--out", sweep["out"], "--list"])
    assert "finished  data=iris,seed=1" in listing.output
    assert "new       data=wine,seed=0 (last run failed" in listing.output


def test_partly_trained_point_resumes_to_its_last_epoch(sweep, tmp_path):
    spec = load_spec(write_spec(tmp_path, {"base": {**QUICK, "epochs": 2}, "grid": {"seed": [0]}}))
    point = spec.points[0]
    run_dir, log_dir = str(tmp_path / "points" / point.name), str(tmp_path / "logs")
    one_epoch = load_spec(write_spec(tmp_path, {"base": QUICK, "grid": {"seed": [0]}}, "one.json")).points[0]
    assert run_point(one_epoch, run_dir, log_dir)["action"] == "ran"
    assert point_state(run_dir, point.epochs) == "started"
    record = run_point(point, run_dir, log_dir)
    assert record["status"] == "ok" and record["action"] == "resumed"
    assert [row["epoch"] for row in read_csv(os.path.join(run_dir, "metrics.csv"))] == ["0", "1", "2"]
    assert run_point(point, run_dir, log_dir)["action"] == "skipped"


def test_point_directory_of_a_run_with_other_options_is_not_resumed(tmp_path):
    first = load_spec(write_spec(tmp_path, {"base": {**QUICK, "lr": 0.5}, "grid": {"seed": [0]}})).points[0]
    other = load_spec(write_spec(tmp_path, {"base": {**QUICK, "lr": 2.0, "epochs": 2},
                                            "grid": {"seed": [0]}}, "other.json")).points[0]
    run_dir, log_dir = str(tmp_path / "p"), str(tmp_path / "logs")
    run_point(first, run_dir, log_dir)
    record = run_point(other, run_dir, log_dir)
    assert record["status"] == "failed" and "lr: 0.5 there, 2.0 in the spec" in record["message"]


# --- the default path: worker processes, one of which dies --------------------------------------
def die_once_then_train(point, run_dir, log_dir):
    """Kill the worker process the first time this point runs; train normally on the retry."""
    marker = run_dir + ".died"
    if not os.path.exists(marker):
        os.makedirs(os.path.dirname(marker), exist_ok=True)
        open(marker, "w").close()
        os._exit(1)
    return run_point(point, run_dir, log_dir)


def test_point_whose_worker_process_dies_is_retried_on_a_process_cluster(tmp_path):
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
    spec = load_spec(write_spec(tmp_path, {"base": QUICK, "grid": {"seed": [0]}}))
    client = start_dask_client(None, 1)  # the CLI's default: a LocalCluster of worker processes
    try:
        assert os.getpid() not in client.run(os.getpid).values()
        expected = worker_environment(1)["NUMBA_NUM_THREADS"]
        assert set(client.run(os.getenv, "NUMBA_NUM_THREADS").values()) == {expected}
        assert set(client.run(lambda: __import__("numba").get_num_threads()).values()) == {int(expected)}
        records = run_points(spec.points, str(tmp_path / "out"), client, retries=2, progress=False,
                             task=die_once_then_train)
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    record = records["seed=0"]
    assert record["status"] == "ok" and record["action"] == "ran", record
    assert os.path.exists(os.path.join(points_directory(str(tmp_path / "out")), "seed=0.died"))


def test_local_workers_share_the_cores_among_their_numba_threads(monkeypatch):
    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    assert worker_environment(2, cores=2) == {"NUMBA_NUM_THREADS": "1"}
    assert worker_environment(3, cores=8) == {"NUMBA_NUM_THREADS": "2"}
    assert worker_environment(16, cores=8) == {"NUMBA_NUM_THREADS": "1"}
    assert worker_environment(None, cores=4) == {"NUMBA_NUM_THREADS": "1"}  # dask's default: a worker per core
    monkeypatch.setenv("NUMBA_NUM_THREADS", "3")
    assert worker_environment(2, cores=2) == {"NUMBA_NUM_THREADS": "3"}
