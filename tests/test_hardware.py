"""Hardware and model as separate objects (systems/hardware.py, experiments/hardware.py).

A hardware is the netlist realised with seeded device errors, another device law or ngspice;
the rule acts on it, model-based methods compute with the netlist as written. What is held:
the cubic stamp is its co-content's derivatives; a hardware is deterministic per seed and, with
sigma = 0 and gamma = 0, is the model number for number, so every method equals its plain run;
the hardware's exact gradient is its loss's derivative; the agnostic loop touches no energy
method of any hardware; on a nonlinear law EP's error grows with gamma and Aeqprop's does not.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from aeqprop_circuits.circuit.elements import CUBIC
from aeqprop_circuits.experiments.rundir import read_metrics
from aeqprop_circuits.experiments.session import resume, train
from aeqprop_circuits.learning.algorithms import get_algorithm
from aeqprop_circuits.solvers.spice import ngspice_available
from aeqprop_circuits.systems.base import Phase
from aeqprop_circuits.systems.hardware import HardwareSpec, PhysicsAware, build_hardware, device_factors
from aeqprop_circuits.systems.models import load_system

REGRESSION = "netlists/regression_fourier.cir"
XOR = "netlists/xor.cir"
KINDS = [HardwareSpec("mismatch", 0.1, 1), HardwareSpec("nonlinear", 0.1, 2, 0.5)]


@pytest.fixture(scope="module")
def regression():
    """The regression circuit off its uniform start, and one batch of the Fourier task."""
    from aeqprop_circuits.data.datasets import load_dataset

    model = load_system(REGRESSION)
    model.parameters = model.parameters * np.random.default_rng(0).uniform(0.5, 2.0, model.parameters.size)
    data = load_dataset("regression:fourier")
    return model, data.x_train[:6], data.y_train[:6]


def _cosine(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_cubic_stamp_current_conductance_change_and_parameter_gradient_are_its_contents_derivatives():
    rng = np.random.default_rng(3)
    v, dv, c, h = rng.uniform(-1.5, 1.5, 7), rng.uniform(-0.5, 0.5, 7), rng.uniform(0.1, 2.0, 7), 1e-6
    np.testing.assert_allclose(CUBIC.current(v, c), (CUBIC.content(v + h, c) - CUBIC.content(v - h, c)) / (2 * h),
                               rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(CUBIC.conductance(v, c), (CUBIC.current(v + h, c) - CUBIC.current(v - h, c)) / (2 * h),
                               rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(CUBIC.change(v, dv, c), CUBIC.content(v + dv, c) - CUBIC.content(v, c), rtol=1e-9)
    np.testing.assert_allclose(CUBIC.parameter_gradient(v, c), (CUBIC.content(v, c + h) - CUBIC.content(v, c - h))
                               / (2 * h), rtol=1e-6)


def test_a_perturbed_hardware_is_deterministic_per_seed(regression):
    model, x, _ = regression
    first, again, other = (build_hardware(model, HardwareSpec("mismatch", 0.1, seed)) for seed in (4, 4, 5))
    assert np.array_equal(first.circuit.resistors.conductance, again.circuit.resistors.conductance)
    assert np.array_equal(first.gain, again.gain)
    assert np.array_equal(first.predict(x), again.predict(x))
    assert not np.allclose(first.predict(x), other.predict(x))
    factors = device_factors(model.circuit, 0.1, 4)["resistors"]
    assert 0.05 < np.std(np.log(factors)) < 0.15  # a spread of sigma, as the seed drew it


def _devices(hardware) -> list[np.ndarray]:
    """Every element value a seed draws: conductances, junctions, input map, programming gains."""
    circuit = hardware.circuit
    return [circuit.resistors.conductance, circuit.diodes.saturation_current, circuit.diodes.emission,
            circuit.learning.input_map, hardware.gain]


SEEDED_SPICE = pytest.param(HardwareSpec("spice", 0.1, 4), marks=pytest.mark.skipif(
    not ngspice_available(), reason="ngspice not installed"))


@pytest.mark.parametrize("spec", [HardwareSpec("nonlinear", 0.1, 4, 0.5), HardwareSpec("diode", 0.1, 4),
                                  SEEDED_SPICE], ids=lambda s: s.kind)
def test_every_hardware_kind_is_deterministic_per_seed(regression, spec):
    model, x, _ = regression
    if spec.kind == "diode":  # a circuit with ideal diodes to realise as junctions
        model, x = load_system(XOR), np.array([[1.0, -1.0], [1.0, 1.0]])
    first, again, other = (build_hardware(model, replace(spec, seed=seed)) for seed in (4, 4, 5))
    assert all(np.array_equal(a, b) for a, b in zip(_devices(first), _devices(again)))
    assert np.array_equal(first.predict(x), again.predict(x))
    assert not np.allclose(first.predict(x), other.predict(x))
    if spec.kind == "diode":  # the junctions drawn too
        assert not np.array_equal(first.circuit.diodes.saturation_current, other.circuit.diodes.saturation_current)


@pytest.mark.parametrize("kind", ["mismatch", "nonlinear", "diode"])
def test_without_device_errors_the_hardware_is_the_model(regression, kind):
    model, x, y = (load_system(XOR), np.array([[1.0, -1.0], [-1.0, -1.0]]), np.array([[0.5], [-0.5]])) \
        if kind == "diode" else regression
    hardware = build_hardware(model, HardwareSpec(kind))
    assert np.array_equal(hardware.parameters, model.parameters)
    if kind == "diode":  # another device law: the ideal diodes are real junctions on the hardware
        assert len(hardware.circuit.diodes.names) == len(model.circuit.ideal_diodes.names) > 0
        assert not np.allclose(hardware.predict(x), model.predict(x), atol=1e-3)
        return
    assert np.array_equal(hardware.predict(x), model.predict(x))
    free = hardware.settle(Phase(x))
    assert np.array_equal(hardware.loss_gradient(free, y), model.loss_gradient(model.settle(Phase(x)), y))
    assert np.array_equal(hardware.parameter_force(free), hardware.energy_gradient(free))


@pytest.mark.parametrize("spec", KINDS + [HardwareSpec("diode", 0.05, 3)], ids=lambda s: s.kind)
def test_the_hardwares_exact_gradient_is_the_derivative_of_its_loss(regression, spec):
    model, x, y = regression
    if spec.kind == "diode":
        model, x, y = load_system(XOR), np.array([[1.0, -1.0], [1.0, 1.0]]), np.array([[0.5], [-0.5]])
    hardware = build_hardware(model, spec)
    theta = hardware.parameters
    exact = hardware.loss_gradient(hardware.settle(Phase(x)), y)

    def loss(t):
        hardware.parameters = t
        return float(hardware.cost(hardware.settle(Phase(x)), y).mean())

    steps = 1e-6 * np.maximum(theta, 1e-3)
    numeric = np.array([(loss(theta + h * e) - loss(theta - h * e)) / (2 * h)
                        for h, e in zip(steps, np.eye(len(theta)))])
    hardware.parameters = theta
    np.testing.assert_allclose(exact, numeric, rtol=1e-5, atol=1e-7 * np.abs(numeric).max())


def test_an_unknown_nonlinearity_biases_ep_and_not_aeqprop(regression):
    """EP measures 1/2 dV^2, the law's dE/dtheta is 1/2 V^2 + gamma V^4 / 4; Aeqprop's parameters feel the latter."""
    model, x, y = regression
    errors = {}
    for gamma in (0.0, 1.0):
        hardware = build_hardware(model, HardwareSpec("nonlinear", 0.0, 0, gamma))
        exact = hardware.loss_gradient(hardware.settle(Phase(x)), y)
        for name, rule in (("c-ep", get_algorithm("c-ep", beta=0.05)),
                           ("aeqprop", get_algorithm("aeqprop-centered", beta=0.1, epsilon=0.01,
                                                     controller="proportional"))):
            estimate = rule.estimate(hardware, x, y).gradient
            hardware.parameters = model.parameters
            errors[name, gamma] = np.linalg.norm(estimate - exact) / np.linalg.norm(exact)
    assert errors["c-ep", 0.0] < 0.02 and errors["aeqprop", 0.0] < 0.05
    assert errors["c-ep", 1.0] > 0.2
    assert errors["aeqprop", 1.0] < 0.05


def _no_energy(hardware):
    """The hardware with every energy and gradient method of the system raising when called."""
    def refuse(name):
        def method(*args, **kwargs):
            raise AssertionError(f"the agnostic operator called {name}")
        return method

    for name in ("energy", "energy_gradient", "loss_gradient", "cost"):
        setattr(hardware, name, refuse(name))
    return hardware


SPICE = pytest.param(HardwareSpec("spice", 0.05, 1), marks=pytest.mark.skipif(not ngspice_available(),
                                                                              reason="ngspice not installed"))


@pytest.mark.parametrize("spec", KINDS + [HardwareSpec("diode", 0.05, 1), SPICE], ids=lambda s: s.kind)
def test_the_agnostic_loop_never_calls_the_hardwares_energy(regression, spec):
    model, x, y = regression
    if spec.kind == "diode":  # a circuit with ideal diodes to realise
        model, x, y = load_system(XOR), np.array([[1.0, -1.0], [1.0, 1.0]]), np.array([[0.5], [-0.5]])
    hardware = _no_energy(build_hardware(model, spec))
    x, y = x[:2], y[:2]
    before = hardware.parameters
    rule = get_algorithm("aeqprop-centered", beta=0.2, epsilon=0.05, controller="proportional", rounds=10,
                         relax_rounds=2, hold_rtol=None, step_rtol=None)  # the calls are checked, not the hold
    estimate = rule.estimate(hardware, x, y)
    assert np.all(np.isfinite(estimate.new_parameters)) and not np.array_equal(estimate.new_parameters, before)


@pytest.mark.parametrize("training", ["in-situ", "transfer", "physics-aware", "fine-tune"])
def test_at_sigma_zero_every_method_equals_its_unperturbed_run(training):
    settings = dict(data="regression:fourier", algorithm="c-ep", epochs=1, max_train=40, lr=0.5, trace_every=0)
    plain = train(REGRESSION, **settings)
    if training == "fine-tune":  # its epoch 0 is the transfer: the model after exact-gradient epochs
        plain = train(REGRESSION, **{**settings, "algorithm": "exact-gradient"})
        settings["transfer_epochs"] = 1
    run = train(REGRESSION, hardware="mismatch", training=training, **settings)
    rows = run.metrics if training != "fine-tune" else run.metrics[:1]
    for row, reference in zip(rows, plain.metrics if training != "fine-tune" else plain.metrics[-1:]):
        assert row["hardware_test_loss"] == row["test_loss"] == reference["test_loss"]


@pytest.mark.parametrize("controller", ["oracle", "proportional"])
def test_at_sigma_zero_aeqprop_in_situ_equals_its_unperturbed_run(controller):
    settings = dict(data="regression:fourier", algorithm="aeqprop-centered", controller=controller, beta=1.0,
                    epsilon=0.05, epochs=1, max_train=20, trace_every=0)
    plain = train(REGRESSION, **settings)
    run = train(REGRESSION, hardware="mismatch", hardware_seed=3, **settings)
    assert len(run.metrics) == len(plain.metrics) == 2
    for row, reference in zip(run.metrics, plain.metrics):
        assert row["hardware_test_loss"] == row["test_loss"] == reference["test_loss"]


def test_physics_aware_feeds_the_hardwares_error_to_the_models_gradient(regression):
    model, x, y = regression
    hardware = build_hardware(model, HardwareSpec("nonlinear", 0.1, 0, 0.3))
    aware = PhysicsAware(hardware, model)
    free = aware.settle(Phase(x))
    assert np.array_equal(aware.outputs(free), hardware.predict(x))
    shifted = y - (hardware.predict(x) - model.predict(x))
    assert np.allclose(aware.loss_gradient(free, y), model.loss_gradient(model.settle(Phase(x)), shifted))
    # the EP estimate through the model with the hardware's error tends to that gradient
    ep = get_algorithm("c-ep", beta=0.01).estimate(aware, x, y).gradient
    assert _cosine(ep, aware.loss_gradient(free, y)) > 0.9999


def test_config_json_records_the_hardware_and_the_model(tmp_path):
    run = train(REGRESSION, data="regression:fourier", hardware="nonlinear", mismatch=0.05, hardware_seed=3,
                nonlinearity=0.1, training="transfer", epochs=1, max_train=20, trace_every=0,
                out=str(tmp_path / "run"))
    with open(tmp_path / "run" / "config.json") as f:
        config = json.load(f)
    systems = config["systems"]
    assert systems["hardware"] == {"kind": "nonlinear", "mismatch": 0.05, "seed": 3, "nonlinearity": 0.1,
                                   "law": "I = g (V + nonlinearity V^3) for trainable elements"}
    assert systems["model"]["g0"] == 1e-3 and systems["rule_acts_on"] == "model"
    assert (config["hardware"], config["mismatch"], config["hardware_seed"]) == ("nonlinear", 0.05, 3)
    assert run.metrics[-1]["hardware_test_loss"] != run.metrics[-1]["test_loss"]


@pytest.mark.parametrize("arguments, message", [
    (["--mismatch", "0.1"], "applies to a hardware"),
    (["--hardware", "mismatch", "--nonlinearity", "0.1"], "applies to --hardware nonlinear"),
    (["--hardware", "mismatch", "--mismatch", "-0.1"], "out of range"),
    (["--hardware", "mismatch", "--training", "physics-aware", "--algorithm", "aeqprop-centered"], "no such form"),
    (["--hardware", "nonlinear", "--nonlinearity", "0.1", "--data", "xor"], "ideal diodes"),
])
def test_bad_hardware_settings_are_refused_by_name(tmp_path, arguments, message):
    from click.testing import CliRunner

    from aeqprop_circuits.cli.main import main

    netlist = XOR if "xor" in arguments else REGRESSION
    data = [] if "--data" in arguments else ["--data", "regression:fourier"]
    result = CliRunner().invoke(main, ["train", netlist, *data, *arguments, "--epochs", "1",
                                       "--out", str(tmp_path / "run")])
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_summary_gives_the_hardware_metric_over_seeds_and_draws_it(tmp_path):
    from click.testing import CliRunner

    from aeqprop_circuits.cli.main import main

    for seed in (0, 1):
        train(REGRESSION, data="regression:fourier", hardware="mismatch", mismatch=0.2, hardware_seed=seed,
              training="transfer", algorithm="exact-gradient", epochs=1, max_train=20, trace_every=0,
              out=str(tmp_path / f"runs/s{seed}"))
    runner = CliRunner()
    result = runner.invoke(main, ["summary", str(tmp_path / "runs"), "--by", "training", "--by", "mismatch",
                                  "--metric", "hardware_test_loss", "--plot", str(tmp_path / "loss.png")])
    assert result.exit_code == 0, result.output
    assert "| transfer | 0.2 |" in result.output and "hardware test loss" in result.output
    assert (tmp_path / "loss.png").stat().st_size > 0
    result = runner.invoke(main, ["summary", str(tmp_path / "runs"), "--by", "training", "--by", "mismatch",
                                  "--metric", "hardware_test_loss", "--wide"])
    assert result.exit_code == 0 and "| mismatch | transfer |" in result.output and "| 0.2 | " in result.output
    result = runner.invoke(main, ["summary", str(tmp_path / "runs"), "--metric", "hardware_loss"])
    assert result.exit_code != 0 and "hardware_test_loss" in result.output and "Traceback" not in result.output


def test_a_resumed_hardware_run_equals_an_uninterrupted_one(tmp_path):
    settings = dict(data="regression:fourier", hardware="nonlinear", mismatch=0.1, hardware_seed=2, nonlinearity=0.3,
                    training="transfer", algorithm="exact-gradient", max_train=30, trace_every=0)
    whole = train(REGRESSION, epochs=2, out=str(tmp_path / "whole"), **settings)
    train(REGRESSION, epochs=1, out=str(tmp_path / "part"), **settings)
    resume(str(tmp_path / "part"), {"epochs": 2}, progress=False, echo=lambda line: None)
    resumed = read_metrics(str(tmp_path / "part"))
    assert [row["hardware_test_loss"] for row in resumed] == [row["hardware_test_loss"] for row in whole.metrics]
