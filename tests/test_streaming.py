"""The one-pass update of a large first block (systems/drn/streaming.py) and the signed DRN's pending update."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from aeqprop_circuits.learning.algorithms import ep_step, get_algorithm
from aeqprop_circuits.systems.base import Phase
from aeqprop_circuits.systems.drn import signed, streaming
from aeqprop_circuits.systems.drn.streaming import stream_update


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n, m, k, batch", [(37, 1000, 7, 3), (8, 4100, 5, 4), (5, 33, 0, 0), (9, 64, 2, 0),
                                            (6, 70, 4, 2), (7, 4200, 12, 1), (1, 40, 5, 4), (5, 10, 5, 2),
                                            (4, 17, 3, 4), (3, 1, 5, 1)])
def test_one_pass_equals_update_clip_sums_and_drive_done_apart(n, m, k, batch, threads):
    """On one thread and on two (column chunks, some of them empty when m is small)."""
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    rng = np.random.default_rng(n)
    W = rng.uniform(-0.2, 1.0, (n, m)).astype(np.float32)
    left, right = rng.normal(size=(k, n)).astype(np.float32), rng.normal(size=(k, m)).astype(np.float32)
    x = (rng.uniform(size=(batch, n)) * (rng.uniform(size=(batch, n)) > 0.5)).astype(np.float32)
    offset = rng.normal(size=m).astype(np.float32)
    expected = np.maximum(W.astype(np.float64) - 0.3 * left.T.astype(np.float64) @ right, 0.0)
    columns, drive = stream_update(W, left, right, 0.3, x, offset)
    np.testing.assert_allclose(W, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(columns, expected.sum(axis=0), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(drive, offset + x @ expected, rtol=1e-5, atol=1e-4)
    assert drive.shape == (batch, m) and W.dtype == np.float32
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)


def test_the_pass_computes_in_the_weights_dtype():
    """Every value of the inner loop is float32 for float32 weights: a float64 value there (a literal 0 in the
    clip did that) makes the compiler convert each weight and halves the vector width."""
    chunk = numba.njit(fastmath=streaming.FASTMATH)(streaming._chunk.py_func)
    a = lambda *shape: np.ones(shape, np.float32)  # noqa: E731
    chunk(a(4, 8), a(5, 4), a(5, 8), np.float32(0.1), a(4, 4), a(8), a(8), a(4, 8), 0, 8)
    typemap = next(iter(chunk.overloads.values())).fndesc.typemap
    loop = {name: str(kind) for name, kind in typemap.items()
            if name.split(".")[0] in {"v0", "v1", "v2", "v3", "a00", "x00", "zero"}}
    assert {"v0", "v3", "a00", "x00", "zero"} <= set(loop)
    assert set(loop.values()) == {"float32"}, loop


def test_the_fused_drive_takes_at_most_four_rows():
    W = np.ones((3, 5), np.float32)
    with pytest.raises(ValueError, match="at most 4 rows"):
        stream_update(W, np.ones((2, 3)), np.ones((2, 5)), 0.1, np.ones((5, 3)))


def _trained(monkeypatch, stream: bool, steps: int = 3):
    monkeypatch.setattr(signed, "_STREAM_BYTES", 0 if stream else 1 << 62)
    system = signed.SignedDRNSystem([30, 16, 4], seed=1, input_gain=5.0)
    rule, rates = get_algorithm("c-ep", beta=0.5), system.in_place_rates(0.05)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        x, target = rng.random((4, 30)), np.eye(4)[rng.integers(0, 4, 4)]
        ep_step(system, rule, x, target, rates)
    return system


def test_a_pending_update_trains_as_the_update_made_at_once(monkeypatch):
    """Steps with W1's update pending until the next drive give the parameters, conductance sums and
    equilibria of steps that update W1 at once; anything reading theta sees the update applied."""
    streamed, direct = _trained(monkeypatch, True), _trained(monkeypatch, False)
    assert streamed._pending is not None and direct._pending is None
    np.testing.assert_allclose(streamed.parameters, direct.parameters, rtol=1e-5, atol=1e-6)
    assert streamed._pending is None  # reading the parameters applied it
    for ours, theirs in zip(streamed._conductance_sums(), direct._conductance_sums()):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5)
    x = np.random.default_rng(5).random((64, 30))  # a batch above the fused four rows: BLAS's drive
    np.testing.assert_allclose(streamed.outputs(streamed.settle(Phase(x))), direct.outputs(direct.settle(Phase(x))),
                               rtol=1e-4, atol=1e-6)


def test_a_second_update_before_any_drive_applies_the_first(monkeypatch):
    """Two descends with no settle between them: the first pending update is applied, not replaced."""
    systems = []
    for stream in (True, False):
        system = _trained(monkeypatch, stream, steps=1)
        x, target = np.random.default_rng(3).random((4, 30)), np.eye(4)[[0, 1, 2, 3]]
        free = system.settle(Phase(x, 0.0, target))
        nudged = system.settle(Phase(x, 0.5, target), start=free)
        rates = system.in_place_rates(0.05)
        system.descend([(-2.0, free), (2.0, nudged)], rates)
        system.descend([(-2.0, free), (2.0, nudged)], rates)  # the same contrast again, before any drive
        systems.append(system)
    np.testing.assert_allclose(systems[0].parameters, systems[1].parameters, rtol=1e-5, atol=1e-6)


def test_every_reader_of_theta_applies_a_pending_update(monkeypatch):
    direct = _trained(monkeypatch, False)
    state = direct.settle(Phase(np.random.default_rng(2).random((2, 30))))  # potentials only: theta is each system's
    readers = {
        "conductance sums": lambda s: s._conductance_sums()[0],
        "energy": lambda s: s.energy(state),
        "circuit": lambda s: s.circuit().resistors.conductance,
        "loss gradient": lambda s: s.loss_gradient(state, np.eye(4)[:2]),
    }
    for name, read in readers.items():
        streamed = _trained(monkeypatch, True)
        assert streamed._pending is not None, name
        np.testing.assert_allclose(read(streamed), read(direct), rtol=1e-4, atol=1e-6, err_msg=name)
    streamed = _trained(monkeypatch, True)
    streamed.parameters = direct.parameters  # replaced: the pending update is dropped, not applied on top
    np.testing.assert_array_equal(streamed.parameters, direct.parameters)


def test_a_diverged_weight_stays_not_a_number():
    """No NaN is clipped to 0 (the kernel's fast-math leaves NaNs alone): a diverged block still shows."""
    W = np.ones((5, 40), np.float32)
    W[2, 7] = np.nan
    columns, drive = stream_update(W, np.zeros((1, 5)), np.zeros((1, 40)), 0.1, np.ones((1, 5)))
    assert np.isnan(W[2, 7]) and np.isnan(columns[7]) and np.isnan(drive[0, 7])
    assert np.isfinite(np.delete(W, 7, axis=1)).all()
