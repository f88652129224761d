"""Training defaults on the shipped netlists: resolved config, Lyapunov descent of the first epoch."""

import json

import numpy as np
import pytest

from aeqprop_circuits.circuit.builder import deep_resistive_network
from aeqprop_circuits.errors import AeqpropError
from aeqprop_circuits.experiments.config import ConfigError, TrainConfig, parse_settings, resolve
from aeqprop_circuits.experiments.session import run_training


def test_circuit_defaults_are_the_documented_ones():
    config = resolve("netlists/iris.cir")
    assert (config.epochs, config.lr, config.beta, config.epsilon) == (60, 2.0, 0.2, 10.0)
    assert config.lr_decay == 0.95 and config.relax_rounds == 1 and config.trace_every == 1
    assert config.controller == "oracle" and config.algorithm == "c-ep"
    assert resolve("netlists/iris.cir", relax_rounds=20).relax_rounds == 20
    for data in ("wine", "wine:validation"):
        wine = resolve("netlists/wine.cir", data=data)
        assert (wine.lr, wine.epsilon, wine.epochs, wine.beta) == (0.5, 2.5, 60, 0.2)
    assert resolve("netlists/wine.cir", data="wine", lr=2.0).lr == 2.0


def test_presets_do_not_inherit_the_circuit_schedule():
    """A preset that does not name lr_decay / relax_rounds / target_amplitude takes the neutral values."""
    from aeqprop_circuits.experiments.presets import PRESETS

    for name, entry in PRESETS.items():
        config = resolve(preset=name)
        assert config.lr_decay == entry.get("lr_decay", 1.0), name
        assert config.relax_rounds == entry.get("relax_rounds", 20), name
        assert config.target_amplitude == entry.get("target_amplitude", 1.0), name


def test_every_preset_key_is_a_setting_or_says_where_it_comes_from():
    from aeqprop_circuits.experiments.config import FIELDS
    from aeqprop_circuits.experiments.presets import PRESET_METADATA, PRESETS

    for name, entry in PRESETS.items():
        assert "source" in entry, name
        assert set(entry) <= set(FIELDS) | set(PRESET_METADATA), (name, set(entry) - set(FIELDS))


def test_set_overrides_one_model_option_of_a_preset_and_keeps_the_others():
    preset = resolve(preset="aeqprop-dense").model_options
    options = resolve(preset="aeqprop-dense",
                      model_options=parse_settings(["cost_scale=1.0", "schedule=alternating"])).model_options
    assert options["cost_scale"] == 1.0 != preset["cost_scale"] and options["schedule"] == "alternating"
    assert {k: v for k, v in options.items() if k not in ("cost_scale", "schedule")} == \
        {k: v for k, v in preset.items() if k not in ("cost_scale", "schedule")}
    assert parse_settings(["bounds=[[0, 1], [-1, 2]]"]) == {"bounds": [[0, 1], [-1, 2]]}
    with pytest.raises(AeqpropError, match="KEY=VALUE"):
        parse_settings(["cost_scale"])


@pytest.mark.parametrize("settings, words", [
    ({"epsilon": -1.0}, ["epsilon", "--epsilon", "out of range"]),
    ({"epsilon": 0.0}, ["epsilon", "out of range"]),
    ({"lr": -1.0}, ["lr", "out of range"]),
    ({"lr": {"w1": 0.1, "b1": float("nan")}}, ["lr[b1]", "finite"]),
    ({"beta": 0.0}, ["beta", "out of range"]),
    ({"epochs": 0}, ["epochs", "out of range"]),
    ({"batch_size": 0}, ["batch_size", "--batch-size"]),
    ({"relax_rounds": 0}, ["relax_rounds", "out of range"]),
    ({"trace_every": -1}, ["trace_every"]),
    ({"lr_decay": 1.5}, ["lr_decay", "out of range"]),
    ({"momentum": 1.0}, ["momentum", "out of range"]),
    ({"epochs": 2.5}, ["epochs", "integer"]),
    ({"algorithm": "c-epp"}, ["c-ep", "did you mean"]),
    ({"solver": "newtn"}, ["newton"]),
    ({"controller": "proportinal"}, ["proportional"]),
    ({"test_fraction": 1.0}, ["test_fraction", "out of range"]),
    ({"normalize": [0.5, 0.0]}, ["normalize", "std"]),
    ({"momentum": 0.9, "algorithm": "aeqprop-centered"}, ["momentum", "Aeqprop"]),
    ({"model_options": {"cost_scal": 1.0}}, ["cost_scal", "not an option"]),
    ({"learning_rate": 0.1}, ["unknown setting", "learning_rate"]),
])
def test_every_setting_is_checked_before_any_work(settings, words):
    model = "hopfield:4-3-2" if "model_options" in settings else "netlists/iris.cir"
    with pytest.raises(ConfigError) as error:
        resolve(model, **settings)
    for word in words:
        assert word in str(error.value), (word, str(error.value))


def test_unknown_keys_get_the_closest_valid_name():
    with pytest.raises(ConfigError, match="did you mean 'batch_size'"):
        TrainConfig.from_dict({"model": "netlists/iris.cir", "batchsize": 4})
    with pytest.raises(ConfigError, match="did you mean 'ebl-dchn'"):
        resolve(preset="ebl-dhcn")
    with pytest.raises(ConfigError, match="not an option of netlists/iris.cir"):
        resolve("netlists/iris.cir", model_options={"width": 2})


def test_config_round_trips_through_its_dictionary():
    config = resolve(preset="aeqprop-dense", seed=3)
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert TrainConfig.from_dict({**config.to_dict(), "g0": 1e-3, "n_parameters": 10}) == config


def test_builder_init_scale_multiplies_the_initial_conductances():
    base = deep_resistive_network([4, 16, 3], seed=0, g0=1e-3)
    scaled = deep_resistive_network([4, 16, 3], seed=0, g0=1e-3, init_scale=2.0)
    assert np.allclose(scaled.resistors.conductance, 2.0 * base.resistors.conductance, rtol=1e-15, atol=0)


@pytest.mark.parametrize("algorithm", ["c-ep", "aeqprop-centered"])
def test_default_settings_descend_the_lyapunov_function_on_the_shipped_iris_netlist(tmp_path, algorithm):
    """First epoch (12 steps) of the default run: every step lowers its batch's L_{b1;b2}.

    With the builder's default initial conductances (half those shipped), the first lr = 2
    step overshoots and L doubles; see experiments/netlists.py.
    """
    out = run_training("netlists/iris.cir", None, True,
                       {"algorithm": algorithm, "epochs": 1, "out": str(tmp_path / "run")}, echo=lambda *a: None)
    with open(f"{out}/steps.jsonl") as f:
        steps = [json.loads(line) for line in f]
    assert len(steps) == 12
    for step in steps:
        assert step["lyapunov_after"] <= step["lyapunov_before"] + 1e-9 * abs(step["lyapunov_before"]) + 1e-12


def test_hflip_needs_an_image_dataset_and_is_recorded(tmp_path):
    assert resolve(preset="aeqprop-dense").augment == "hflip"  # the authors' code flips
    assert resolve("netlists/iris.cir").augment == "none"
    with pytest.raises(AeqpropError, match="not an image data set"):
        run_training("netlists/iris.cir", None, True, {"augment": "hflip", "epochs": 1,
                                                       "out": str(tmp_path / "run")}, echo=lambda m: None)


def test_momentum_is_refused_for_aeqprop_whose_step_is_the_physics(tmp_path):
    with pytest.raises(AeqpropError, match="momentum"):
        run_training("netlists/iris.cir", None, True, {"algorithm": "aeqprop-centered", "momentum": 0.9,
                                                       "out": str(tmp_path / "run")}, echo=lambda m: None)


def test_a_failed_proportional_hold_stops_the_run_with_exit_3_and_keeps_it(tmp_path):
    """At the Iris default eps = 10 (a = eps |curvature| = 14) no proportional controller holds theta."""
    from click.testing import CliRunner

    from aeqprop_circuits.cli.main import main

    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "netlists/iris.cir", "--algorithm", "aeqprop-centered",
                                       "--controller", "proportional", "--epochs", "1", "--quiet",
                                       "--out", str(out)])
    assert result.exit_code == 3, result.output
    assert "homeostasis failed at beta=0" in result.output and "--epsilon" in result.output
    assert json.loads((out / "config.json").read_text())["controller"] == "proportional"


def test_train_seconds_count_the_steps_and_not_the_evaluation(tmp_path, monkeypatch):
    """An epoch's `seconds` holds its evaluation, `train_seconds` only the training steps."""
    import time

    from aeqprop_circuits.experiments import trainer

    evaluate = trainer.evaluate

    def slow_evaluate(*args, **kwargs):
        time.sleep(0.3)
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(trainer, "evaluate", slow_evaluate)
    out = run_training("netlists/iris.cir", None, True, {"epochs": 1, "trace_every": 0, "out": str(tmp_path / "r")},
                       echo=lambda *a: None)
    import csv

    row = list(csv.DictReader(open(f"{out}/metrics.csv")))[-1]
    assert float(row["seconds"]) >= 0.3 > float(row["train_seconds"])
