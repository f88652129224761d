"""EnergySystem: exact settles, parameter relaxation, implicit gradient, Sec. 5.1 dynamics, Theorem 1."""

from __future__ import annotations

import numpy as np
import pytest

from aeqprop_circuits.errors import AeqpropError, DivergenceError
from aeqprop_circuits.learning.algorithms import get_algorithm
from aeqprop_circuits.systems.base import Phase
from aeqprop_circuits.systems.energy import EnergySystem, fourier_features, linear_regression_system


def quadratic_system(seed=0, closed_forms=False, replicas=None):
    """E = s^T A s / 2 - s^T (W x + b), theta = (W, b) flattened; outputs s[1:] (n = 3, d = 2)."""
    rng = np.random.default_rng(seed)
    n, d = 3, 2
    M = rng.standard_normal((n, n))
    A = M @ M.T + n * np.eye(n)
    P = n * d + n

    def split(theta):
        W = theta[..., : n * d].reshape(*theta.shape[:-1], n, d)
        return W, theta[..., n * d:]

    def drive(theta, x):
        W, b = split(theta)
        return (np.einsum("...ij,bj->bi", W, x) if theta.ndim == 1 else np.einsum("bij,bj->bi", W, x)) + b

    def energy(theta, x, s):
        return 0.5 * np.einsum("bi,ij,bj->b", s, A, s) - np.sum(s * drive(theta, x), axis=1)

    def state_gradient(theta, x, s):
        return s @ A - drive(theta, x)

    def parameter_gradient(theta, x, s):
        return np.concatenate([-(s[:, :, None] * x[:, None, :]).reshape(len(s), -1), -s], axis=1)

    options = {}
    if closed_forms:
        def solve_state(theta, x, beta, target):
            H = np.broadcast_to(A, (len(x), n, n)).copy()
            rhs = drive(theta, x)
            H[:, 1:, 1:] += np.reshape(beta, (-1, 1, 1)) * np.eye(n - 1)
            if target is not None:
                rhs[:, 1:] += np.reshape(beta, (-1, 1)) * target
            return np.linalg.solve(H, rhs[:, :, None])[:, :, 0]

        options["solve_state"] = solve_state
    theta0 = rng.standard_normal((replicas, P) if replicas else P) * 0.5
    return EnergySystem(energy, state_gradient, parameter_gradient, theta0, n_inputs=d, n_states=n,
                        outputs=[1, 2], **options), rng


def test_numeric_settle_matches_the_closed_form_minimiser():
    numeric, rng = quadratic_system(closed_forms=False)
    exact, _ = quadratic_system(closed_forms=True)
    x, y = rng.uniform(-1, 1, (5, 2)), rng.uniform(-1, 1, (5, 2))
    for beta in (0.0, 0.7, -0.5):
        phase = Phase(x, beta, y)
        a, b = numeric.settle(phase), exact.settle(phase)
        assert np.allclose(a.states, b.states, atol=1e-7)
        assert np.allclose(numeric.energy(a), exact.energy(b), atol=1e-10)


def test_settle_reports_each_iteration_energy_and_never_raises_it():
    system, rng = quadratic_system()
    trace = []
    system.settle(Phase(rng.uniform(-1, 1, (4, 2))), callback=lambda e: trace.append(e.sum()))
    assert len(trace) > 1 and np.all(np.diff(trace) <= 1e-12)


def test_clamped_outputs_are_held():
    system, rng = quadratic_system()
    clamp = rng.uniform(-1, 1, (3, 2))
    state = system.settle(Phase(rng.uniform(-1, 1, (3, 2)), clamp=clamp))
    assert np.allclose(system.outputs(state), clamp)


def test_regression_settle_is_exact():
    system = linear_regression_system(state_penalty=1.0)
    system.parameters = np.random.default_rng(1).standard_normal(21)
    z, y = np.array([[0.3], [-0.8]]), np.array([[1.0], [-2.0]])
    for beta in (0.0, 0.5, -1.5):
        state = system.settle(Phase(z, beta, y))
        phi = fourier_features(z)
        expected = (phi @ system.parameters + beta * y[:, 0]) / (3.0 + beta)
        assert np.allclose(state.states[:, 0], expected, rtol=1e-13)
    with pytest.raises(DivergenceError):
        system.settle(Phase(z, -3.5, y))


def test_relax_parameters_numeric_matches_closed_form():
    system, rng = quadratic_system()
    x = rng.uniform(-1, 1, (6, 2))
    state = system.settle(Phase(x))
    knobs = system.parameters + 0.1
    theta = system.relax_parameters(state, knobs, 0.3)
    # stationarity of mean_b E(theta, s_b) + |knobs - theta|^2 / 2 epsilon
    mean_force = system._parameter_gradient(theta, state.features, state.states).mean(axis=0)
    assert np.allclose(mean_force + (theta - knobs) / 0.3, 0.0, atol=1e-6)
    regression = linear_regression_system()
    z = rng.uniform(-1, 1, (4, 1))
    free = regression.settle(Phase(z, 0.5, z))
    closed = regression.relax_parameters(free, np.ones(21), 0.2)
    generic = EnergySystem(regression._energy, regression._state_gradient, regression._parameter_gradient,
                           np.zeros(21), n_inputs=1, n_states=1, features=fourier_features)
    assert np.allclose(generic.relax_parameters(free, np.ones(21), 0.2), closed, atol=1e-6)


def test_loss_gradient_matches_finite_differences_of_the_loss():
    system, rng = quadratic_system(seed=3, closed_forms=True)
    x, y = rng.uniform(-1, 1, (4, 2)), rng.uniform(-1, 1, (4, 2))
    theta = system.parameters
    gradient = system.loss_gradient(system.settle(Phase(x)), y)

    def loss(t):
        system.parameters = t
        return np.mean(system.cost(system.settle(Phase(x)), y))

    h = 1e-5
    numeric = np.array([(loss(theta + h * e) - loss(theta - h * e)) / (2 * h) for e in np.eye(len(theta))])
    system.parameters = theta
    assert np.allclose(gradient, numeric, atol=1e-6)


def test_regression_loss_gradient_is_the_closed_form():
    system = linear_regression_system(state_penalty=1.0)
    theta = np.random.default_rng(2).standard_normal(21)
    system.parameters = theta
    z, y = np.array([[0.4]]), np.array([[0.5]])
    phi = fourier_features(z)[0]
    expected = (theta @ phi / 3 - 0.5) * phi / 3
    assert np.allclose(get_algorithm("exact-gradient").estimate(system, z, y).gradient, expected, atol=1e-9)


def test_replicas_behave_as_independent_devices():
    rng = np.random.default_rng(4)
    thetas = rng.standard_normal((3, 21))
    z, y = rng.uniform(-1, 1, (3, 1)), rng.uniform(-1, 1, (3, 1))
    stack = linear_regression_system(parameters=thetas, knob_dynamics="exact")
    eps = np.array([[0.5], [0.1], [0.01]])
    new = get_algorithm("aeqprop-centered", beta=0.2, epsilon=eps, controller="oracle").estimate(
        stack, z, y).new_parameters
    for r in range(3):
        single = linear_regression_system(parameters=thetas[r], knob_dynamics="exact")
        alone = get_algorithm("aeqprop-centered", beta=0.2, epsilon=float(eps[r, 0]),
                              controller="oracle").estimate(single, z[r:r + 1], y[r:r + 1]).new_parameters
        assert np.allclose(new[r], alone, atol=1e-10)
    with pytest.raises(AeqpropError):
        stack.settle(Phase(z[:2]))


def test_gradient_dynamics_never_raise_the_knob_coupled_energy():
    system = linear_regression_system(state_penalty=1.0, seed=5)
    system.parameters = np.random.default_rng(5).standard_normal(21)
    z, y = np.array([[0.1], [0.9]]), np.array([[1.0], [0.0]])
    knobs, epsilon = system.parameters + 0.3, 0.5
    phase = Phase(z, 0.8, y)

    def total(state, theta):
        system.parameters = theta
        return np.mean(system.phase_energy(theta, state.features, state.states, phase)) + \
            np.sum((knobs - theta) ** 2) / (2 * epsilon)

    state, theta = system.settle_with_knobs(phase, knobs, epsilon, steps=1)
    values = [total(state, theta)]
    for _ in range(60):
        state, theta = system.settle_with_knobs(phase, knobs, epsilon, start=state, theta=theta, steps=1)
        values.append(total(state, theta))
    assert np.all(np.diff(values) <= 1e-12 * (1 + np.abs(values[:-1])))
    assert state.theta_rate is not None and state.parameter_rate in (0.0, state.theta_rate)


def theorem_1_error(epsilon, beta, dynamics, controller, name="aeqprop-optimistic"):
    rng = np.random.default_rng(7)
    theta = rng.standard_normal(21) * 0.3
    z, y = np.array([[0.37]]), np.array([[1.3]])
    system = linear_regression_system(parameters=theta, knob_dynamics=dynamics)
    gradient = get_algorithm("exact-gradient").estimate(system, z, y).gradient
    step = get_algorithm(name, beta=beta, epsilon=epsilon, controller=controller, rounds=50,
                         relax_rounds=50).estimate(system, z, y).new_parameters - theta
    return np.linalg.norm(step + epsilon * beta * gradient) / np.linalg.norm(epsilon * beta * gradient)


@pytest.mark.parametrize("dynamics,controller", [("exact", "oracle"), ("gradient", "proportional")])
def test_aeqprop_step_is_sgd_up_to_second_order_theorem_1(dynamics, controller):
    """theta_t - theta_{t-1} = -eps beta grad L + O(eps^2 beta + eps beta^2): the relative error
    of the step is O(eps + beta), so it halves when eps and beta both halve."""
    errors = [theorem_1_error(h, h, dynamics, controller) for h in (0.02, 0.01, 0.005)]
    slopes = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(np.abs(slopes - 1.0) < 0.15), (errors, slopes)
    assert errors[-1] < 0.01


def test_centered_aeqprop_step_error_is_smaller_than_optimistic():
    optimistic = theorem_1_error(0.01, 0.02, "exact", "oracle")
    centered = theorem_1_error(0.01, 0.02, "exact", "oracle", name="aeqprop-centered")
    assert centered < optimistic / 5
