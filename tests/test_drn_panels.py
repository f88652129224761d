"""SignedDRNSystem on blocks larger than its cache panels: the same numbers as whole-block products."""

import numpy as np
import pytest

from aeqprop_circuits.learning.algorithms import ep_step, get_algorithm
from aeqprop_circuits.systems import kernels
from aeqprop_circuits.systems.base import Phase
from aeqprop_circuits.systems.drn import signed
from aeqprop_circuits.systems.drn.signed import SignedDRNSystem


def _trained(momentum, dtype, steps=3):
    system = SignedDRNSystem([40, 8, 4, 3], seed=2, input_gain=0.5, iterations=4, dtype=dtype)
    system.momentum = momentum
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, (steps * 2, 40)).astype(dtype)
    y = np.eye(3, dtype=dtype)[rng.integers(0, 3, steps * 2)]
    rule = get_algorithm("c-ep", beta=0.2)
    for i in range(steps):
        ep_step(system, rule, x[2 * i:2 * i + 2], y[2 * i:2 * i + 2], 0.05)
    return system, system.settle(Phase(x[:2])).layers[-1]


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_panelled_update_and_drive_match_whole_blocks(monkeypatch, momentum, dtype):
    whole, outputs = _trained(momentum, dtype)
    monkeypatch.setattr(kernels, "PANEL_BYTES", 64)  # panels of one or two rows; the drive of 2 rows panelled
    products = []
    monkeypatch.setattr(signed, "matmul", lambda a, b: products.append(a.shape) or np.matmul(a, b))
    panelled, panelled_outputs = _trained(momentum, dtype)
    assert (2, 64 // (8 * np.dtype(dtype).itemsize)) in products  # the drive of a training step, by panels
    tol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(panelled.parameters, whole.parameters, rtol=tol, atol=tol)
    np.testing.assert_allclose(panelled_outputs, outputs, rtol=tol, atol=tol)
    # the conductance sums the update leaves for the next settle are the blocks' own sums
    fresh = [W.sum(axis=0) for W in panelled.weights]
    fresh[0] = fresh[0] + panelled.weights[1].sum(axis=1)
    fresh[1] = fresh[1] + panelled.weights[2].sum(axis=1)
    for cached, expected in zip(panelled._conductance_sums(), fresh):
        np.testing.assert_allclose(cached, expected, rtol=tol)


def test_initial_conductances_are_one_draw_per_block_in_the_system_dtype():
    system = SignedDRNSystem([1200, 900, 3], seed=4, init_gain=1.5)  # the first block is drawn in several chunks
    rng = np.random.default_rng(4)
    expected = np.concatenate([np.maximum(rng.uniform(-1, 1, (a, b)) * 1.5 / np.sqrt(a), 0).ravel()
                               for a, b in [(2400, 900), (900, 3)]])
    assert system.parameters.dtype == np.float32
    np.testing.assert_array_equal(system.parameters[:system.n_weights], expected.astype(np.float32))
    assert not system.parameters[system.n_weights:].any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("with_velocity", [False, True])
def test_a_panels_finish_is_the_step_the_clip_and_the_sums(dtype, with_velocity):
    """panels.finish: W <- max(W - step v, 0) (max(W, 0) without v), column sums added, row sums set; NaN kept."""
    from aeqprop_circuits.systems.drn import panels

    rng = np.random.default_rng(9)
    W, velocity = rng.normal(size=(7, 37)).astype(dtype), rng.normal(size=(7, 37)).astype(dtype)
    W[2, 5] = np.nan
    expected = np.maximum(W - 0.3 * velocity, 0.0) if with_velocity else np.maximum(W, 0.0)
    assert (expected == 0).any() and (expected > 0).any()
    columns, rows = np.full(37, 2.0, dtype), np.full(7, 5.0, dtype)
    panels.finish(W, velocity if with_velocity else None, 0.3, columns, rows)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(W, expected, rtol=tol)
    np.testing.assert_allclose(columns, 2.0 + expected.sum(axis=0), rtol=tol)
    np.testing.assert_allclose(rows, expected.sum(axis=1), rtol=tol)
    assert np.isnan(W[2, 5]) and np.isnan(rows[2]) and np.isnan(columns[5]) and np.isfinite(rows[3])
