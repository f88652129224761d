"""The Sec. 5.2 regression on a resistive circuit: physics checks and a short study."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from aeqprop_circuits.cli.reproduce import reproduce
from aeqprop_circuits.experiments.reproduce import circuit_regression as cr
from aeqprop_circuits.netlist import parse_netlist
from aeqprop_circuits.systems.base import Phase
from aeqprop_circuits.systems.energy import fourier_features

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_shipped_netlist_is_the_builders_circuit():
    shipped = parse_netlist(os.path.join(ROOT, "netlists", "regression_fourier.cir"))
    built = cr.fourier_regression_circuit()
    assert (shipped.n_inputs, shipped.n_outputs, len(shipped.learning.trainable)) == (21, 1, 84)
    np.testing.assert_allclose(shipped.resistors.conductance, built.resistors.conductance)
    np.testing.assert_allclose(shipped.learning.low, built.learning.low)
    np.testing.assert_allclose(shipped.learning.high, built.learning.high)


def test_nodal_settle_matches_the_generic_newton_solver():
    base = cr.fourier_regression_circuit()
    low = np.array([0.0, -0.3, -0.15, 0.0])  # optimistic, pessimistic, centered, never nudged
    span = np.array([0.3, 0.3, 0.3, 0.0])
    fast, slow = (cr.ReplicaCircuitSystem(base, 4, low, span, fast=f) for f in (True, False))
    rng = np.random.default_rng(1)
    theta = rng.uniform(0.01, 0.3, fast.parameters.shape)
    fast.parameters = slow.parameters = theta
    inputs = fourier_features(rng.uniform(-1, 1, 4)).reshape(1, -1)
    target = rng.normal(0, 0.3, (1, 4))
    for dial in (0.0, 1.0):
        a, b = fast.settle(Phase(inputs, dial, target)), slow.settle(Phase(inputs, dial, target))
        np.testing.assert_allclose(a.potentials, b.potentials, atol=1e-12)
        np.testing.assert_allclose(fast.replica_energy(a), slow.replica_energy(b), atol=1e-12)
        np.testing.assert_allclose(fast.energy_gradient(a), slow.energy_gradient(b), atol=1e-12)
    a, b = fast.settle(Phase(inputs)), slow.settle(Phase(inputs))
    np.testing.assert_allclose(fast.loss_gradient(a, target), slow.loss_gradient(b, target), atol=1e-12)


def test_start_matches_the_abstract_model():
    """Output 0 V, nudged output (o + beta y) / (1 + beta), |do/dtheta|^2 = |phi|^2 = 11."""
    system = cr.ReplicaCircuitSystem(cr.fourier_regression_circuit(), 1, 0.0, 0.4)
    inputs = fourier_features(np.array([0.37]))
    free = system.settle(Phase(inputs))
    assert abs(system.outputs(free)[0, 0]) < 1e-12
    np.testing.assert_allclose(system.node_conductances(), ([2.0], [2.0]))
    nudged = system.settle(Phase(inputs, 1.0, np.array([[0.5]])))
    np.testing.assert_allclose(system.outputs(nudged)[0, 0], 0.4 * 0.5 / 1.4)
    jacobian = system.loss_gradient(free, np.array([[-1.0]]))  # (o - y) do/dtheta with o - y = 1
    np.testing.assert_allclose(np.sum(jacobian ** 2), 11.0)


def test_free_co_content_is_concave_in_the_conductances():
    """F(0, theta) = min_V co-content / g0 has Hessian -u u^T / G at each output node, u_k = V_k - V_node:
    along u its curvature is -|u|^2 / G = -22 / 2 at the start, hence the convexity limit epsilon < 1/11 of the
    joint energy |u - theta|^2 / 2 epsilon + F(beta, theta)."""
    system = cr.ReplicaCircuitSystem(cr.fourier_regression_circuit(), 1)
    inputs = fourier_features(np.array([0.61]))
    theta = system.parameters
    u = system.resistor_voltages(system.settle(Phase(inputs)))[0] * system._at_pos  # o+ node's resistors
    direction, h = u / np.linalg.norm(u), 1e-3

    def free_energy(t):
        system.parameters = t
        return system.replica_energy(system.settle(Phase(inputs)))[0]

    curvature = (free_energy(theta + h * direction) + free_energy(theta - h * direction)
                 - 2 * free_energy(theta)) / h ** 2
    np.testing.assert_allclose(curvature, -np.sum(u ** 2) / 2.0, rtol=1e-4)
    np.testing.assert_allclose(np.sum(u ** 2), 22.0)


def test_a_too_negative_nudge_is_a_divergence_not_a_crash():
    # beta_1 = -1.5 < -G+ G- / (G+ + G-) = -1: the co-content has no minimum for that replica only
    system = cr.ReplicaCircuitSystem(cr.fourier_regression_circuit(), 2, [-1.5, -0.5], [1.5, 0.5])
    state = system.settle(Phase(fourier_features(np.array([0.1, 0.2])).reshape(1, -1), 0.0, np.zeros((1, 2))))
    assert system.broken.tolist() == [True, False]
    assert np.all(np.isfinite(state.potentials))


@pytest.fixture(scope="module")
def records():
    runs = [cr.Run("sgd", None, 0.05, 10.0, 0, 100),
            cr.Run("aeqprop-optimistic", "proportional", 0.05, 10.0, 0, 100),
            cr.Run("aeqprop-optimistic", "oracle", 0.05, 10.0, 0, 100),
            cr.Run("aeqprop-pessimistic", "oracle", 0.05, 2.0, 0, 100),
            cr.Run("aeqprop-optimistic", "oracle", 0.5, 0.5, 0, 100)]
    traces = cr.simulate(runs, grid_points=51, record_every=25, progress=False)
    return {(r["method"], r["controller"], r["epsilon"], r["beta"]): r for r in cr.summary_records(traces)}


def test_optimistic_aeqprop_trains_the_circuit_at_the_largest_stable_step(records):
    # epsilon = 0.05 is below the convexity limit G / sum (V_k - V_node)^2 = 1/11; beta = 10, eps beta = 0.5
    for controller in ("proportional", "oracle"):
        run = records[("aeqprop-optimistic", controller, 0.05, 10.0)]
        assert not run["diverged"]
        assert run["final_loss"] < 0.1 * run["initial_loss"]
    sgd = records[("sgd", None, 0.05, 10.0)]
    assert sgd["final_loss"] < 0.1 * sgd["initial_loss"]  # SGD does not diverge on the circuit either


def test_lyapunov_never_increases_with_the_oracle_below_the_convexity_limit(records):
    assert records[("aeqprop-optimistic", "oracle", 0.05, 10.0)]["lyapunov_increases"] == 0


def test_above_the_convexity_limit_the_lyapunov_function_does_increase(records):
    # epsilon = 0.5 > 1/11: the joint energy of (V, theta) is not convex in theta (the co-content minimised
    # over V is concave in the conductances), so Theorem 3's homeostatic minimum is only a stationary point
    assert records[("aeqprop-optimistic", "oracle", 0.5, 0.5)]["lyapunov_increases"] > 0


def test_pessimistic_diverges_when_the_negative_nudge_beats_the_network(records):
    run = records[("aeqprop-pessimistic", "oracle", 0.05, 2.0)]  # beta_1 = -2 < -G/2 = -1
    assert run["diverged"] and run["diverged_at"] == 1 and run["final_loss"] is None


def test_cli_writes_summary_table_and_figure(tmp_path):
    out = str(tmp_path / "study")
    result = CliRunner().invoke(reproduce, ["circuit", "--samples", "2", "--seeds", "1", "--grid", "11",
                                            "--controller", "oracle", "--quiet", "--out", out])
    assert result.exit_code == 0, result.output
    records = json.load(open(os.path.join(out, "summary.json")))
    keys = {"figure", "method", "controller", "epsilon", "beta", "seed", "initial_loss", "final_loss", "diverged",
            "lyapunov_increases"}
    assert len(records) == 4 * len(cr.PANELS) and all(keys <= set(r) for r in records)
    assert {"table.md", "circuit.png", "traces.npz", "config.json"} <= set(os.listdir(out))
