"""The EBL study's App. B.2: one step of coupled learning raises the squared error, for any beta.

E(theta, o) = 1/2 (o - b(theta))^T A (o - b(theta)), A = [[1, -1], [-1, 2]],
b(theta) = (1 + theta_2, theta_1 + 2 theta_2), target y = (0, 0), theta_0 = (0, 0).
The paper shows the squared error rises by eta + O(eta^2) (eq. 86). With L = |b|^2 the gradient
is 2 b^T b' (eq. 77 drops the factor 2), so the rise is 2 eta + O(eta^2), which is what we assert.
EP on the same system descends.
"""

import numpy as np
import pytest

from aeqprop_circuits.learning.algorithms import get_algorithm
from aeqprop_circuits.systems.energy import EnergySystem

A = np.array([[1.0, -1.0], [-1.0, 2.0]])
B_JACOBIAN = np.array([[0.0, 1.0], [1.0, 2.0]])  # db/dtheta


def b(theta):
    return np.array([1.0, 0.0]) + np.asarray(theta) @ B_JACOBIAN.T


def counterexample_system():
    def energy(theta, x, o):
        d = o - b(theta)
        return 0.5 * np.einsum("bi,ij,bj->b", d, A, d)

    def state_gradient(theta, x, o):
        return (o - b(theta)) @ A

    def parameter_gradient(theta, x, o):
        return -((o - b(theta)) @ A) @ B_JACOBIAN

    return EnergySystem(energy, state_gradient, parameter_gradient, np.zeros(2), n_inputs=1, n_states=2,
                        knob_dynamics="exact")


def mse_after_step(name, beta, eta=1e-3):
    system = counterexample_system()
    x, y = np.zeros((1, 1)), np.zeros((1, 2))
    gradient = get_algorithm(name, beta=beta).estimate(system, x, y).gradient
    theta = system.parameters - eta * gradient
    return float(np.sum(b(theta) ** 2)), float(np.sum(b(system.parameters) ** 2))


@pytest.mark.parametrize("beta", [0.1, 0.5, -0.3])
def test_one_coupled_learning_step_increases_the_squared_error(beta):
    name = "p-cpl"
    if beta < 0:  # the paper's claim holds for any beta; n-cpl is p-cpl with beta -> -beta
        name, beta = "n-cpl", -beta
    eta = 1e-3
    after, before = mse_after_step(name, beta, eta)
    assert after > before
    assert (after - before) == pytest.approx(2 * eta, rel=0.02)


@pytest.mark.parametrize("name", ["p-ep", "c-ep"])
def test_equilibrium_propagation_descends_on_the_same_system(name):
    after, before = mse_after_step(name, 0.1)
    assert after < before
