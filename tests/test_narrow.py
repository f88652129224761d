"""Products with a large narrow block (systems/drn/narrow.py) and the signed DRN's use of them."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from aeqprop_circuits.learning.algorithms import ep_step, get_algorithm
from aeqprop_circuits.systems.base import Phase
from aeqprop_circuits.systems.drn import narrow, signed


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("B, n, m", [(4, 10, 5000), (1, 1, 3), (0, 3, 100), (5, 16, 2049), (7, 2, 1)])
def test_the_products_equal_numpys(B, n, m, dtype, threads):
    """V @ WT and U @ WT.T for WT (n, m), on one thread and two (tiles and chunks, some empty)."""
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    rng = np.random.default_rng(m)
    WT = rng.normal(size=(n, m)).astype(dtype)
    V, U = rng.normal(size=(B, n)).astype(dtype), rng.normal(size=(B, m)).astype(dtype)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    ahead, back = narrow.times(V, WT), narrow.times_transpose(U, WT)
    assert ahead.shape == (B, m) and back.shape == (B, n) and ahead.dtype == back.dtype == dtype
    np.testing.assert_allclose(ahead, V.astype(np.float64) @ WT, rtol=tol, atol=tol * np.sqrt(n))
    np.testing.assert_allclose(back, U.astype(np.float64) @ WT.T, rtol=tol, atol=tol * np.sqrt(m))
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)


def test_a_nan_stays_a_nan():
    WT = np.ones((2, 3), np.float32)
    assert np.isnan(narrow.times(np.array([[np.nan, 1.0]], np.float32), WT)).all()
    assert np.isnan(narrow.times_transpose(np.array([[1.0, np.nan, 1.0]], np.float32), WT)).all()


def _trained(monkeypatch, use_narrow: bool, steps: int = 3):
    monkeypatch.setattr(signed, "_NARROW_BYTES", 0 if use_narrow else 1 << 62)
    system = signed.SignedDRNSystem([30, 40, 4], seed=2, input_gain=5.0)
    rule, rates = get_algorithm("c-ep", beta=0.5), system.in_place_rates(0.05)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        x, target = rng.random((4, 30)), np.eye(4)[rng.integers(0, 4, 4)]
        ep_step(system, rule, x, target, rates)
    return system, system.settle(Phase(rng.random((3, 30)), 0.0))


def test_training_with_the_narrow_products_is_training_with_blas(monkeypatch):
    """Same parameters and equilibria after steps that change the output block (its cached transpose
    must follow every update)."""
    (ours, settled), (blas, expected) = _trained(monkeypatch, True), _trained(monkeypatch, False)
    assert ours._transposes is not None and blas._transposes is None
    np.testing.assert_allclose(ours.parameters, blas.parameters, rtol=1e-5, atol=1e-6)
    for a, b in zip(settled.layers, expected.layers):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
