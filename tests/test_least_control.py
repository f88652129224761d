"""Least-control learning: the update is the gradient of the control cost, the output controller's two limits."""

import inspect

import numpy as np
import pytest
from click.testing import CliRunner

from aeqprop_circuits.circuit.builder import deep_resistive_network
from aeqprop_circuits.cli.main import main
from aeqprop_circuits.learning import least_control as learning_least_control
from aeqprop_circuits.learning.algorithms import get_algorithm
from aeqprop_circuits.learning.least_control import observe_and_inject
from aeqprop_circuits.netlist import parse_netlist
from aeqprop_circuits.systems.base import Phase
from aeqprop_circuits.systems.circuit import CircuitSystem
from aeqprop_circuits.systems.least_control import InjectionHandle, control_gradient, least_control

CIRCUITS = {"shockley": lambda: deep_resistive_network([3, 5, 2], seed=3, ideal=False),
            "ideal-diodes": lambda: parse_netlist("netlists/xor.cir"),
            "linear": lambda: parse_netlist("netlists/regression_fourier.cir")}


def batch(system, seed=0, size=4):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (size, system.n_inputs)), rng.uniform(-0.2, 0.2, (size, system.n_outputs))


def control_cost(system, x, y, measure):
    start = system.settle(Phase(x)).result.free
    return least_control(system, x, y, start=start, measure=measure).cost.mean()


@pytest.mark.parametrize("measure", ["current", "voltage"])
@pytest.mark.parametrize("name", sorted(CIRCUITS))
def test_lcp_update_is_the_gradient_of_the_control_cost(name, measure):
    system = CircuitSystem(CIRCUITS[name]())
    x, y = batch(system)
    controlled = least_control(system, x, y, start=system.settle(Phase(x)).result.free, measure=measure)
    gradient = control_gradient(system, controlled)
    theta = system.parameters
    for k in np.random.default_rng(1).choice(len(theta), 4, replace=False):
        h = 1e-5 * theta[k]
        system.parameters = theta + h * np.eye(len(theta))[k]
        up = control_cost(system, x, y, measure)
        system.parameters = theta - h * np.eye(len(theta))[k]
        down = control_cost(system, x, y, measure)
        system.parameters = theta
        assert (up - down) / (2 * h) == pytest.approx(gradient[k], rel=1e-6, abs=1e-12)


def test_least_control_holds_the_outputs_with_the_least_current():
    """A linear network: the controlled outputs sit at the target, and psi* is the minimum-norm current that
    puts them there (the dense least-norm solution over the free potentials)."""
    system = CircuitSystem(CIRCUITS["linear"]())
    x, y = batch(system, size=1)
    controlled = least_control(system, x, y, measure="current")
    problem = controlled.problem
    K = problem.network_hessian.toarray() / system.g0
    c = problem.gradient(np.zeros((1, problem.n_free)))[0] / system.g0  # grad E = K z + c
    Mo = problem.Mo.toarray()
    # z = z_p + N w over the outputs' constraint; least squares for |K z + c|
    z_p = np.linalg.lstsq(Mo, -problem.offset_o[0], rcond=None)[0]
    null = np.linalg.svd(Mo)[2][Mo.shape[0]:].T
    w = np.linalg.lstsq(K @ null, -(K @ z_p + c), rcond=None)[0]
    psi = K @ (z_p + null @ w) + c
    assert np.allclose(controlled.control[0], psi, atol=1e-10)
    outputs = controlled.potentials[:, problem.circuit.learning.outputs[:, 0]] \
        - controlled.potentials[:, problem.circuit.learning.outputs[:, 1]]
    assert np.allclose(outputs, y, atol=1e-12)


@pytest.fixture(scope="module")
def shockley():
    system = CircuitSystem(CIRCUITS["shockley"]())
    return (system, *batch(system, seed=2, size=6))


def test_output_controller_weak_limit_is_ep(shockley):
    """Steady state of the leaky integral controller = the nudged phase at beta = gain / leak."""
    system, x, y = shockley
    for beta in (0.3, 0.03, 0.003):
        ep = get_algorithm("p-ep", beta=beta).estimate(system, x, y).gradient
        lcp = get_algorithm("lcp-output", beta=beta).estimate(system, x, y).gradient
        assert np.allclose(lcp, (1 + beta) * ep, rtol=1e-9, atol=1e-15)
        assert np.linalg.norm(lcp - ep) / np.linalg.norm(ep) == pytest.approx(beta, rel=1e-6)


def test_output_controller_strong_limit_is_cl(shockley):
    system, x, y = shockley
    cl = get_algorithm("cl").estimate(system, x, y).gradient
    assert np.allclose(get_algorithm("lcp-output", beta=1.0, leak=0.0).estimate(system, x, y).gradient, cl,
                       rtol=1e-9)
    errors = [np.linalg.norm(get_algorithm("lcp-output", beta=b).estimate(system, x, y).gradient - cl)
              for b in (1e2, 1e3, 1e4)]
    assert errors[0] > 5 * errors[1] > 25 * errors[2] and errors[2] < 1e-3 * np.linalg.norm(cl)


@pytest.mark.parametrize("leak", [1.0, 0.0])
def test_integral_controller_settles_where_the_oracle_puts_it(shockley, leak):
    system, x, y = shockley
    oracle = get_algorithm("lcp-output", beta=0.5, leak=leak).estimate(system, x, y).gradient
    integral = get_algorithm("lcp-output", beta=0.5, leak=leak, controller="integral").estimate(system, x, y).gradient
    assert np.allclose(integral, oracle, rtol=1e-6, atol=1e-9 * np.abs(oracle).max())


def test_lcp_needs_a_circuit():
    from aeqprop_circuits.errors import AeqpropError
    from aeqprop_circuits.systems.energy import linear_regression_system

    with pytest.raises(AeqpropError, match="circuit netlist"):
        get_algorithm("lcp").estimate(linear_regression_system(), np.zeros((1, 1)), np.zeros((1, 1)))


def test_lcp_lowers_the_control_and_the_loss_on_xor():
    system = CircuitSystem(parse_netlist("netlists/xor.cir"))
    x = np.array([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
    y = np.array([[-0.2], [0.2], [0.2], [-0.2]])
    rule, low, high = get_algorithm("lcp"), *system.parameter_bounds()
    before = control_cost(system, x, y, "voltage"), system.output_cost(system.predict(x), y).mean()
    for _ in range(60):
        system.parameters = np.clip(system.parameters - 2.0 * rule.estimate(system, x, y).gradient, low, high)
    after = control_cost(system, x, y, "voltage"), system.output_cost(system.predict(x), y).mean()
    assert after[0] < 0.1 * before[0] and after[1] < 0.1 * before[1]


@pytest.mark.parametrize("algorithm", ["lcp", "lcp-output"])
def test_train_command_takes_the_least_control_rules(tmp_path, algorithm):
    result = CliRunner().invoke(main, ["train", "netlists/iris.cir", "--data", "iris", "--algorithm", algorithm,
                                       "--epochs", "1", "--quiet", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "metrics.csv").exists()


@pytest.mark.parametrize("measure", ["current", "voltage"])
@pytest.mark.parametrize("name", sorted(CIRCUITS))
def test_integral_controller_finds_the_oracles_least_control(name, measure):
    """Observing the outputs and injecting currents, the feedback controller settles on the oracle's psi*,
    so the update is the oracle's."""
    system = CircuitSystem(CIRCUITS[name]())
    x, y = batch(system)
    oracle = least_control(system, x, y, start=system.settle(Phase(x)).result.free, measure=measure)
    handle = InjectionHandle(system, x)
    found = observe_and_inject(handle, y, measure)
    assert found.unsettled == 0
    assert np.allclose(found.control, oracle.control, rtol=1e-6, atol=1e-8 * np.abs(oracle.control).max())
    assert np.allclose(control_gradient(system, found), control_gradient(system, oracle), rtol=1e-6,
                       atol=1e-8 * np.abs(control_gradient(system, oracle)).max())
    rule = "lcp" if measure == "voltage" else "lcp-current"
    assert np.allclose(get_algorithm(rule, controller="integral").estimate(system, x, y).gradient,
                       control_gradient(system, oracle), rtol=1e-6, atol=1e-8 * np.abs(oracle.control).max())


def test_integral_controller_reaches_the_circuit_only_through_its_handle():
    system = CircuitSystem(CIRCUITS["linear"]())
    handle = InjectionHandle(system, batch(system)[0])
    public = {name for name in dir(handle) if not name.startswith("_")}
    assert public == {"batch", "channels", "controlled", "node_conductance", "nodes", "relax", "relaxations"}
    for loop in (learning_least_control.observe_and_inject, learning_least_control._integrate):
        body = inspect.getsource(loop).split('"""')[-1]
        for forbidden in ("energy", "gradient", "hessian", "settle", "system", "problem", "least_control("):
            assert forbidden not in body, (loop.__name__, forbidden)


def test_learning_with_the_integral_controller_never_calls_the_energy(monkeypatch):
    """Steps of lcp with the integral controller on XOR: no energy, energy gradient or loss of the system is
    read, nor the model-based least-control solver; the control cost still falls."""
    system = CircuitSystem(parse_netlist("netlists/xor.cir"))
    x = np.array([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
    y = np.array([[-0.2], [0.2], [0.2], [-0.2]])
    before = control_cost(system, x, y, "voltage")

    def refuse(name):
        def method(*args, **kwargs):
            raise AssertionError(f"the integral controller's loop called {name}")
        return method

    for name in ("energy", "energy_gradient", "loss_gradient", "cost"):
        monkeypatch.setattr(system, name, refuse(name))
    monkeypatch.setattr(learning_least_control, "least_control", refuse("least_control"))
    rule, (low, high) = get_algorithm("lcp", controller="integral"), system.parameter_bounds()
    for _ in range(2):
        system.parameters = np.clip(system.parameters - 2.0 * rule.estimate(system, x, y).gradient, low, high)
    monkeypatch.undo()
    assert control_cost(system, x, y, "voltage") < before


def test_train_command_takes_the_integral_least_control_controller(tmp_path):
    run = ["train", "netlists/xor.cir", "--data", "xor", "--epochs", "1", "--quiet"]
    result = CliRunner().invoke(main, [*run, "--algorithm", "lcp", "--controller", "integral",
                                       "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert '"controller": "integral"' in (tmp_path / "run" / "config.json").read_text()
    result = CliRunner().invoke(main, [*run, "--algorithm", "c-ep", "--controller", "integral",
                                       "--out", str(tmp_path / "bad")])
    assert result.exit_code != 0 and "least-control controller" in result.output
    assert "Traceback" not in result.output


def test_both_controllers_act_on_a_hardwares_own_device_laws():
    """On a mismatched, nonlinear hardware (I = g (V + gamma V^3)) the observing controller relaxes the hardware
    itself and the oracle solves with its laws: the same least control, unlike the netlist's."""
    from aeqprop_circuits.systems.hardware import HardwareSpec, build_hardware

    model = CircuitSystem(CIRCUITS["linear"]())
    hardware = build_hardware(model, HardwareSpec("nonlinear", 0.05, 1, 1.0))
    x, y = batch(model, size=3)
    oracle = get_algorithm("lcp").estimate(hardware, x, y)
    integral = get_algorithm("lcp", controller="integral").estimate(hardware, x, y)
    assert integral.extras["control_cost"] == pytest.approx(oracle.extras["control_cost"], rel=1e-6)
    assert np.allclose(integral.gradient, oracle.gradient, rtol=1e-5, atol=1e-7 * np.abs(oracle.gradient).max())
    assert oracle.extras["control_cost"] != pytest.approx(get_algorithm("lcp").estimate(model, x, y)
                                                          .extras["control_cost"], rel=1e-2)
