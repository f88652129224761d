"""Products with a large narrow block (systems/drn/narrow.py) and the signed DRN's use of them."""

from __future__ import annotations

import warnings

import numba
import numpy as np
import pytest

from aeqprop_circuits.errors import ThreadsWarning
from aeqprop_circuits.learning.algorithms import ep_step, get_algorithm
from aeqprop_circuits.systems import kernels
from aeqprop_circuits.systems.base import Phase
from aeqprop_circuits.systems.drn import narrow, signed


@pytest.fixture
def threads():
    """Set numba's thread count for a test; restored afterwards."""
    yield lambda n: numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)


@pytest.mark.parametrize("count", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("B, n, m", [(4, 10, 5000), (1, 1, 3), (0, 3, 100), (5, 16, 2049), (7, 2, 1)])
def test_the_products_equal_numpys(B, n, m, dtype, count, threads):
    """V @ WT and U @ WT.T for WT (n, m), on one thread and two (tiles, some of them fewer than the threads)."""
    threads(count)
    rng = np.random.default_rng(m)
    WT = rng.normal(size=(n, m)).astype(dtype)
    V, U = rng.normal(size=(B, n)).astype(dtype), rng.normal(size=(B, m)).astype(dtype)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    ahead, back = narrow.times(V, WT), narrow.times_transpose(U, WT)
    assert ahead.shape == (B, m) and back.shape == (B, n) and ahead.dtype == back.dtype == dtype
    np.testing.assert_allclose(ahead, V.astype(np.float64) @ WT, rtol=tol, atol=tol * np.sqrt(n))
    np.testing.assert_allclose(back, U.astype(np.float64) @ WT.T, rtol=tol, atol=tol * np.sqrt(m))


def test_the_products_do_not_depend_on_the_thread_count(threads):
    """A run reproduces on any number of threads: the sums over the wide dimension are made per tile, in order."""
    rng = np.random.default_rng(0)
    WT = rng.normal(size=(10, 3 * narrow.TILE + 5)).astype(np.float32)
    V, U = rng.normal(size=(4, 10)).astype(np.float32), rng.normal(size=(4, WT.shape[1])).astype(np.float32)
    results = []
    for count in (1, 2):
        threads(count)
        results.append((narrow.times(V, WT), narrow.times_transpose(U, WT)))
    assert all(np.array_equal(a, b) for a, b in zip(*results))


def test_operands_of_another_layout_or_dtype_are_taken_as_numpy_takes_them():
    rng = np.random.default_rng(1)
    WT = rng.normal(size=(3, 50)).astype(np.float32)
    V = rng.normal(size=(4, 6))[:, ::2]  # float64, not contiguous
    U = np.asfortranarray(rng.normal(size=(4, 50)))
    np.testing.assert_allclose(narrow.times(V, WT), V @ WT, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(narrow.times_transpose(U, WT), U @ WT.T, rtol=1e-5, atol=1e-5)


def test_a_nan_stays_a_nan():
    WT = np.ones((2, 3), np.float32)
    assert np.isnan(narrow.times(np.array([[np.nan, 1.0]], np.float32), WT)).all()
    assert np.isnan(narrow.times_transpose(np.array([[1.0, np.nan, 1.0]], np.float32), WT)).all()


@pytest.mark.parametrize("count", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k, n, m", [(14, 10, 2 * narrow.TILE + 7), (1, 1, 64), (3, 16, narrow.TILE)])
def test_the_update_on_the_transpose_is_descends_formula(k, n, m, dtype, count, threads):
    """W <- max(W - step left^T right, 0) in both layouts, with W's row and column sums; some values clip."""
    threads(count)
    rng = np.random.default_rng(k + n + m)
    W = rng.random((m, n)).astype(dtype)
    left, right = rng.normal(size=(k, m)).astype(dtype), rng.normal(size=(k, n)).astype(dtype)
    expected = np.maximum(W.astype(np.float64) - 0.3 * left.T.astype(np.float64) @ right, 0.0)
    WT = np.ascontiguousarray(W.T)
    rows, columns = narrow.descend(WT, W, left, right, 0.3)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert (expected == 0).any() and (expected > 0).any()
    np.testing.assert_allclose(W, expected, rtol=tol, atol=tol)
    np.testing.assert_array_equal(WT, W.T)
    np.testing.assert_allclose(rows, expected.sum(axis=1), rtol=tol, atol=tol * n)
    np.testing.assert_allclose(columns, expected.sum(axis=0), rtol=tol, atol=tol * m)


def test_the_update_on_the_transpose_does_not_depend_on_the_thread_count_and_keeps_nans(threads):
    rng = np.random.default_rng(7)
    W = rng.random((3 * narrow.TILE + 5, 10)).astype(np.float32)
    left, right = rng.normal(size=(5, len(W))).astype(np.float32), rng.normal(size=(5, 10)).astype(np.float32)
    results = []
    for count in (1, 2):
        threads(count)
        copy = W.copy()
        results.append((copy, *narrow.descend(np.ascontiguousarray(copy.T), copy, left, right, 0.1)))
    assert all(np.array_equal(a, b) for a, b in zip(*results))
    left[0, 3] = np.nan
    rows, columns = narrow.descend(np.ascontiguousarray(W.T), W, left, right, 0.1)
    assert np.isnan(W[3]).all() and np.isnan(rows[3]) and np.isnan(columns).all() and np.isfinite(W[4]).all()


def test_drn_xls_output_block_is_narrow_and_drn_1hs_is_not():
    assert signed.narrow_block((32768, 10), 4)  # DRN-XL's W2, 1.3 MB
    assert not signed.narrow_block((1024, 10), 4)  # DRN-1H's, 40 kB: BLAS is faster there
    assert not signed.narrow_block((32768, 32), 4)  # into more than 16 nodes
    assert not signed.narrow_block((1568, 32768), 4)


def _trained(monkeypatch, use_narrow: bool, sizes=(30, 40, 4), dtype="float32", steps: int = 3, momentum=0.0):
    monkeypatch.setattr(signed, "_NARROW_BYTES", 0 if use_narrow else 1 << 62)
    system = signed.SignedDRNSystem(list(sizes), seed=2, input_gain=5.0, dtype=dtype)
    system.momentum = momentum
    rule, rates = get_algorithm("c-ep", beta=0.5), system.in_place_rates(0.05)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        x, target = rng.random((4, sizes[0])), np.eye(sizes[-1])[rng.integers(0, sizes[-1], 4)]
        ep_step(system, rule, x, target, rates)
    return system, system.settle(Phase(rng.random((3, sizes[0])), 0.0))


@pytest.mark.parametrize("sizes, dtype, momentum", [((30, 40, 4), "float32", 0.0), ((30, 40, 8, 4), "float32", 0.0),
                                                    ((30, 40, 4), "float64", 0.0), ((30, 40, 4), "float64", 0.9)])
def test_training_with_the_narrow_products_is_training_with_blas(monkeypatch, sizes, dtype, momentum):
    """Same parameters and equilibria after steps that change the narrow blocks (their cached transposes must
    follow every update); with two hidden layers, a hidden-to-hidden block is narrow too; with momentum the
    narrow block goes through its velocity (by BLAS, in panels)."""
    (ours, settled), (blas, expected) = _trained(monkeypatch, True, sizes, dtype, momentum=momentum), \
        _trained(monkeypatch, False, sizes, dtype, momentum=momentum)
    assert blas._transposes is None
    assert sorted(ours._transposes[1]) == list(range(1, len(sizes) - 1))  # every block but the input block
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(ours.parameters, blas.parameters, rtol=tol, atol=tol / 10)
    for a, b in zip(settled.layers, expected.layers):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol / 10)


def test_new_parameters_are_multiplied_not_the_cached_transpose(monkeypatch):
    monkeypatch.setattr(signed, "_NARROW_BYTES", 0)
    system = signed.SignedDRNSystem([30, 40, 4], seed=2, input_gain=5.0)
    x = np.random.default_rng(3).random((2, 30))
    system.settle(Phase(x, 0.0))
    assert system._transposes is not None
    theta = system.parameters
    theta[system._slices[1]] *= 2.0  # the output block doubled
    system.parameters = theta
    fresh = signed.SignedDRNSystem([30, 40, 4], seed=2, input_gain=5.0)
    fresh.parameters = theta
    for a, b in zip(system.settle(Phase(x, 0.0)).layers, fresh.settle(Phase(x, 0.0)).layers):
        np.testing.assert_array_equal(a, b)


def test_a_threaded_blas_beside_the_numba_loops_is_warned_of(monkeypatch):
    monkeypatch.setattr(signed, "_NARROW_BYTES", 0)
    monkeypatch.setattr(kernels, "blas_threads", lambda: 4)
    with pytest.warns(ThreadsWarning, match="OPENBLAS_NUM_THREADS=1"):
        assert signed.SignedDRNSystem([30, 40, 4]).uses_numba_loops
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        monkeypatch.setattr(signed, "_NARROW_BYTES", 1 << 62)  # no numba loops: BLAS may use every core
        assert not signed.SignedDRNSystem([30, 40, 4]).uses_numba_loops
        monkeypatch.setattr(signed, "_NARROW_BYTES", 0)
        monkeypatch.setattr(kernels, "blas_threads", lambda: 1)
        signed.SignedDRNSystem([30, 40, 4])


def test_the_blas_thread_count_is_read_off_the_loaded_library():
    assert kernels.blas_threads() >= 1
