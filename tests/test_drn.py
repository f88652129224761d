"""DRNSystem: the builder's deep resistive network on dense blocks (aeqprop_circuits/drn)."""

from __future__ import annotations

import numpy as np
import pytest

from aeqprop_circuits.circuit.builder import deep_resistive_network
from aeqprop_circuits.circuit.energy import Nudge
from aeqprop_circuits.errors import AeqpropError, DivergenceError
from aeqprop_circuits.learning.algorithms import get_algorithm
from aeqprop_circuits.solvers import solve
from aeqprop_circuits.systems import kernels
from aeqprop_circuits.systems.base import Phase
from aeqprop_circuits.systems.circuit import CircuitSystem
from aeqprop_circuits.systems.drn import DRNSystem

SIZES = ([6, 5, 3], [5, 4, 3, 2], [4, 3])


def _batch(sizes, seed=0, batch=6):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 1.0, (batch, sizes[0])), rng.uniform(-0.5, 1.0, (batch, sizes[-1]))


def _layers(circuit, potentials):
    return np.concatenate([potentials[:, layer] for layer in circuit.layers], axis=1)


@pytest.mark.parametrize("sizes", SIZES)
@pytest.mark.parametrize("beta", [0.0, 0.3, -0.2])
def test_settle_equals_the_qp_solver_on_the_builder_circuit(sizes, beta):
    system = DRNSystem(sizes, seed=1)
    x, y = _batch(sizes)
    state = system.settle(Phase(x, beta, y))
    circuit = system.circuit()
    reference = solve(circuit, sources=system.source_values(circuit, x), method="qp",
                      nudge=Nudge(beta * system.g0, y) if beta else None)
    assert np.abs(np.concatenate(state.layers, axis=1) - _layers(circuit, reference.potentials)).max() < 1e-9
    assert np.allclose(system.energy(state), reference.energy / system.g0, atol=1e-10)


def test_input_gain_is_the_input_sources_amplitude():
    system = DRNSystem([6, 5, 3], seed=2, input_gain=3.0)
    x, _ = _batch([6, 5, 3])
    circuit = system.circuit()
    reference = solve(circuit, sources=system.source_values(circuit, x), method="qp")
    assert np.abs(np.concatenate(system.settle(Phase(x)).layers, axis=1)
                  - _layers(circuit, reference.potentials)).max() < 1e-9


@pytest.mark.parametrize("sizes", SIZES[:2])
def test_block_update_is_the_exact_minimiser_over_its_layer(sizes):
    """With the other layers held anywhere, one block update minimises the co-content over the layer."""
    system = DRNSystem(sizes, seed=3)
    x, y = _batch(sizes, seed=4)
    rng = np.random.default_rng(5)
    for beta in (0.0, 0.4):
        phase = Phase(x, beta, y)
        derived = system._derived()
        v_in, first = system._input_current(x)
        nudge = system._nudge_rows([beta], y, len(x), derived) if beta else None
        V = [rng.uniform(-0.5, 1.5, (len(x), w)) for w in system.widths[1:]]
        for k in range(len(V)):
            r = system._incoming(k, V, first, derived.bias_current)
            last = k == len(V) - 1
            new = system._update_output(r, derived, nudge, None, k) if last else \
                system._update_hidden(r, derived.D[k], derived.inv_D[k])
            best = system._energy([*V[:k], new, *V[k + 1:]], v_in, phase)
            for _ in range(20):
                trial = new + rng.normal(0.0, 0.05, new.shape)
                if not last:
                    trial = np.clip(trial, system.v_low, system.v_high)
                assert (system._energy([*V[:k], trial, *V[k + 1:]], v_in, phase) >= best - 1e-12).all()
            V[k] = rng.uniform(-0.5, 1.5, new.shape)


@pytest.mark.parametrize("sizes", SIZES)
def test_gemm_form_energy_gradient_equals_the_per_resistor_formula(sizes):
    system = DRNSystem(sizes, seed=6)
    reference = CircuitSystem(system.circuit())
    x, y = _batch(sizes, seed=7)
    for beta in (0.0, 0.25):
        ours, theirs = system.settle(Phase(x, beta, y)), reference.settle(Phase(x, beta, y))
        assert np.abs(system.energy_gradient(ours) - reference.energy_gradient(theirs)).max() < 1e-10


def _settled_contrast():
    """A small DRN with one batch settled free and nudged at -0.1 / +0.1 (stacked)."""
    system = DRNSystem([6, 5, 3], seed=8)
    x, y = _batch([6, 5, 3], seed=9)
    base = Phase(x, 0.0, y)
    free = system.settle(base)
    minus, plus = system.settle_nudges(base, [-0.1, 0.1], start=free)
    return system, base, free, minus, plus


@pytest.mark.parametrize("panelled", [False, True])
def test_in_place_descent_equals_the_contrast_of_measured_gradients(panelled, monkeypatch):
    """Also with the blocks updated and clipped a panel of rows at a time (as a block beyond the L2 cache is)."""
    if panelled:
        monkeypatch.setattr(kernels, "PANEL_BYTES", 64)
    system, base, free, minus, plus = _settled_contrast()
    panels = [len(kernels.update_panels(*W.shape, W.itemsize)) for W in system.weights]
    assert min(panels) > 2 if panelled else max(panels) == 1
    for nudged, beta in ((minus, -0.1), (plus, 0.1)):  # stacked phases = separate phases
        alone = system.settle(base.nudged(beta), start=free)
        assert max(np.abs(a - b).max() for a, b in zip(nudged.layers, alone.layers)) < 1e-12
    terms = [(-5.0, minus), (5.0, plus), (0.3, free)]
    unclipped = system.parameters - 0.3 * sum(c * system.energy_gradient(s) for c, s in terms)
    assert any((unclipped[where] < 0).any() for where in system._slices)  # the weight clip has work to do
    system.descend(terms, 0.3)
    assert np.abs(system.parameters - np.maximum(unclipped, 0.0)).max() < 1e-12


def test_per_block_steps_scale_each_block_of_the_update():
    system, _, _, minus, plus = _settled_contrast()
    terms = [(-5.0, minus), (5.0, plus)]
    rates = system.per_parameter({"w1": 0.003, "w2": 0.05, "b": 0.02})
    assert system.block_steps(rates) == pytest.approx([0.003, 0.05, 0.02])
    expected = np.maximum(system.parameters - rates * sum(c * system.energy_gradient(s) for c, s in terms), 0.0)
    system.descend(terms, system.block_steps(rates))
    assert np.abs(system.parameters - expected).max() < 1e-12
    rates[3] = 1.0  # not constant within a block: the in-place loop must hand over to the generic trainer
    assert system.block_steps(rates) is None


@pytest.mark.parametrize("sizes", SIZES)
def test_loss_gradient_equals_implicit_differentiation_of_the_circuit(sizes):
    system = DRNSystem(sizes, seed=10)
    x, y = _batch(sizes, seed=11)
    reference = CircuitSystem(system.circuit())
    ours = system.loss_gradient(system.settle(Phase(x)), y)
    assert np.abs(ours - reference.loss_gradient(reference.settle(Phase(x)), y)).max() < 1e-9
    # and a finite difference along a random direction
    direction = np.random.default_rng(12).normal(size=system.n_parameters)
    theta, h = system.parameters, 1e-6

    def loss(t):
        system.parameters = t
        return system.cost(system.settle(Phase(x)), y).mean()

    numeric = (loss(theta + h * direction) - loss(theta - h * direction)) / (2 * h)
    assert numeric == pytest.approx(ours @ direction, rel=1e-5, abs=1e-9)


def test_shockley_loss_gradient_equals_implicit_differentiation_of_the_circuit():
    """The junctions' conductance enters the adjoint: held against the circuit's exact gradient."""
    system = DRNSystem([6, 5, 3], seed=18, diodes="shockley", saturation_current=1e-6, emission=2.0)
    x, y = _batch([6, 5, 3], seed=19)
    reference = CircuitSystem(system.circuit())
    ours = system.loss_gradient(system.settle(Phase(x)), y)
    theirs = reference.loss_gradient(reference.settle(Phase(x)), y)
    assert np.abs(ours - theirs).max() < 1e-9 * np.abs(theirs).max()


def test_centered_ep_estimate_aligns_with_the_exact_gradient_at_small_beta():
    system = DRNSystem([12, 8, 4], seed=13)
    x, y = _batch([12, 8, 4], seed=14, batch=8)
    exact = system.loss_gradient(system.settle(Phase(x)), y)
    estimate = get_algorithm("c-ep", beta=0.01).estimate(system, x, y).gradient
    assert estimate @ exact / np.linalg.norm(estimate) / np.linalg.norm(exact) > 0.9999


def test_too_negative_a_nudge_is_reported_not_settled():
    system = DRNSystem([6, 5, 3], seed=15)
    x, y = _batch([6, 5, 3])
    with pytest.raises(DivergenceError, match="non-convex"):
        system.settle(Phase(x, -5.0, y))


def test_the_compiled_step_refuses_a_non_convex_nudge_its_bound_alone_would_pass():
    """Just beyond the convexity limit, where the outputs' Schur bound fails but the co-content is not yet
    far from convex: the compiled step runs the full test, raises, and leaves theta as it was."""
    system = DRNSystem([6, 5, 3], seed=15, iterations=4)
    x, y = _batch([6, 5, 3])
    D, W = system._conductance_sums(), system.weights[-1]
    S = np.diag(D[-1]) - (W.T / D[-2]) @ W
    A = np.hstack([np.eye(3), -np.eye(3)])
    limit = -np.linalg.eigvalsh(S).min()  # from 0 down to it: the first beta with S + beta A^T A not positive
    beta = next(b for b in np.linspace(0.0, limit, 2001) if np.linalg.eigvalsh(S + b * A.T @ A).min() <= 0)
    assert (D[-1] + (W.sum(axis=1) / D[-2]) @ W).min() + 2 * beta > 0  # a bound with its sign flipped passes
    before = system.parameters
    with pytest.raises(DivergenceError, match="non-convex"):
        system.contrast_step(x, y, ((-1.0, beta), (1.0, -beta)), 0.01)
    np.testing.assert_array_equal(system.parameters, before)


def test_the_compiled_step_takes_a_nudge_its_bound_doubts_but_the_full_test_passes():
    """Where the outputs' Schur bound fails but the co-content is convex, the full test passes and the compiled
    step runs again to its end: the same update as the generic phases."""
    options = dict(seed=15, iterations=4, dtype="float64")
    system, generic = DRNSystem([6, 5, 3], **options), DRNSystem([6, 5, 3], **options)
    x, y = _batch([6, 5, 3])
    D, W = system._conductance_sums(), system.weights[-1]
    bound = (D[-1] - (W.sum(axis=1) / D[-2]) @ W).min()
    S = np.diag(D[-1]) - (W.T / D[-2]) @ W
    A = np.hstack([np.eye(3), -np.eye(3)])
    beta = -0.5 * bound - 1e-3  # bound + 2 beta < 0
    assert np.linalg.eigvalsh(S + beta * A.T @ A).min() > 0
    free = system.contrast_step(x, y, ((-1.0, beta), (1.0, -beta)), 0.01)
    base = Phase(x, 0.0, y)
    expected = generic.settle(base)
    low, high = generic.settle_nudges(base, [beta, -beta], start=expected)
    generic.descend([(-1.0, low), (1.0, high)], 0.01)
    np.testing.assert_allclose(free.layers[-1], expected.layers[-1], atol=1e-12)
    np.testing.assert_allclose(system.parameters, generic.parameters, atol=1e-12)


def test_the_compiled_step_takes_one_rate_or_three():
    system = DRNSystem([6, 5, 3], seed=15, iterations=4)
    x, y = _batch([6, 5, 3])
    with pytest.raises(AeqpropError, match="three"):
        system.contrast_step(x, y, ((-1.0, -0.1), (1.0, 0.1)), [0.01, 0.02])


def test_shockley_diodes_agree_with_newton_on_the_builder_circuit():
    system = DRNSystem([6, 5, 3], seed=16, diodes="shockley", saturation_current=1e-9, emission=1.0,
                       input_gain=2.0)
    x, y = _batch([6, 5, 3], seed=17)
    state = system.settle(Phase(x, 0.2, y))
    circuit = system.circuit()
    reference = solve(circuit, sources=system.source_values(circuit, x), method="newton",
                      nudge=Nudge(0.2 * system.g0, y))
    assert np.abs(np.concatenate(state.layers, axis=1) - _layers(circuit, reference.potentials)).max() < 1e-8


def test_parameters_are_the_builder_circuit_conductances_in_its_order():
    sizes = [6, 5, 4, 3]
    system = DRNSystem(sizes, seed=18)
    built = deep_resistive_network(sizes, seed=18)
    assert np.allclose(system.parameters * system.g0, built.resistors.conductance[built.learning.trainable],
                       rtol=1e-15, atol=0)
    # after a change, the circuit written back holds theta * g0 in the builder's resistor order
    theta = system.parameters * np.random.default_rng(19).uniform(0.5, 1.5, system.n_parameters)
    system.parameters = theta
    circuit = system.circuit()
    assert np.array_equal(circuit.resistors.conductance[circuit.learning.trainable], theta * system.g0)
    assert circuit.resistors.names[:2] == ("rw1_0_0", "rw1_0_1")


def test_float32_fixed_sweeps_match_the_paper_setting():
    """4 block sweeps in float32 (the presets) land within float32 rounding of the equilibrium for DRN-XS-like nets."""
    exact = DRNSystem([40, 20, 5], seed=20)
    fast = DRNSystem([40, 20, 5], seed=20, iterations=4, dtype="float32", input_gain=1.0)
    x, _ = _batch([40, 20, 5], seed=21, batch=16)
    assert np.abs(exact.predict(x) - fast.predict(x.astype(np.float32))).max() < 1e-3


def test_training_smoke_run_improves_accuracy(tmp_path):
    from aeqprop_circuits.data.datasets import load_dataset
    from aeqprop_circuits.experiments.session import run_training

    try:
        load_dataset("fmnist")
    except Exception:  # noqa: BLE001
        pytest.skip("Fashion-MNIST is not installed")
    out = tmp_path / "run"
    run_training(None, None, True, {"preset": "drn-xs", "max_train": 200, "epochs": 4, "out": str(out)},
                 echo=lambda message: None)
    import csv

    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [row["epoch"] for row in rows] == ["0", "1", "2", "3", "4"]  # epoch 0: the untrained network
    assert float(rows[-1]["train_accuracy"]) > 0.5  # from 0.10 at initialisation (running mean over the epoch)
    assert float(rows[-1]["train_loss"]) < float(rows[1]["train_loss"])
    assert float(rows[-1]["test_accuracy"]) > 0.4 > float(rows[0]["test_accuracy"])


def test_fixed_sweep_fast_path_makes_the_same_updates_as_the_generic_sweeps():
    """One hidden layer, ideal diodes, fixed sweeps: the folded hot loop equals the generic block updates."""
    system = DRNSystem([20, 7, 3], seed=22, iterations=4)
    x, y = _batch([20, 7, 3], seed=23, batch=5)
    base = Phase(x, 0.0, y)
    free, generic_free = system.settle(base), system.settle(base, callback=lambda energy: None)
    nudged = system.settle_nudges(base, [-0.1, 0.2], start=free)
    for state, beta in zip(nudged, (-0.1, 0.2)):
        generic = system.settle(base.nudged(beta), start=generic_free, callback=lambda energy: None)
        assert max(np.abs(a - b).max() for a, b in zip(state.layers, generic.layers)) < 1e-13
    assert max(np.abs(a - b).max() for a, b in zip(free.layers, generic_free.layers)) < 1e-13


def test_the_nudge_contrasts_offer_the_in_place_step_and_the_others_do_not():
    system = DRNSystem([6, 5, 3], seed=1)
    for rule in ("c-ep", "p-ep", "n-ep", "multi-point-ep"):
        assert get_algorithm(rule, beta=0.1).in_place(system, 0.5) is not None
    for rule in ("exact-gradient", "cl", "c-cpl"):
        assert get_algorithm(rule, beta=0.1).in_place(system, 0.5) is None
    assert system.in_place_rates(0.5) == [0.5, 0.5, 0.5]


@pytest.mark.parametrize("rule", ["c-ep", "p-ep", "n-ep", "squares", "free-between", "panels"])
def test_compiled_contrast_step_makes_the_same_update_as_the_generic_phases(rule, monkeypatch):
    """contrast_step (one hidden layer, ideal diodes, fixed sweeps) = settle, settle_nudges, descend, float32."""
    from aeqprop_circuits.learning.algorithms import Contrast
    from aeqprop_circuits.systems import kernels

    if rule == "panels":  # the input block (60 rows) updated seven rows at a time
        monkeypatch.setattr(kernels, "PANEL_BYTES", 7 * 8 * 4)
        rule = "c-ep"

    if rule == "squares":  # weights summing to non-zero: the input block's squares enter the update
        algorithm = Contrast("squares", "nudge", (0.0, 1.0), (-0.5, 1.0), beta=0.1)
    elif rule == "free-between":  # the free phase's term between two nudged ones
        algorithm = Contrast("between", "nudge", (-1.0, 0.0, 1.0), (-1.0, 0.5, 1.0), beta=0.1)
    else:
        algorithm = get_algorithm(rule, beta=0.1)
    options = dict(seed=24, iterations=4, dtype="float32", input_gain=3.0)
    fused, generic = DRNSystem([30, 8, 3], **options), DRNSystem([30, 8, 3], **options)
    rates = [0.003, 0.05, 0.02]
    used = [(m, w) for m, w in zip(algorithm.multipliers, algorithm.weights) if w != 0.0]
    terms = tuple((w / algorithm.beta, algorithm.beta * m) for m, w in used)
    for step in range(3):
        x, y = (a.astype(np.float32) for a in _batch([30, 8, 3], seed=25 + step, batch=5))
        free = fused.contrast_step(x, y, terms, rates)
        base = Phase(x, 0.0, y)
        expected = generic.settle(base)
        nudged = iter(generic.settle_nudges(base, [algorithm.beta * m for m, _ in used if m != 0.0], start=expected))
        generic.descend([(w / algorithm.beta, expected if m == 0.0 else next(nudged)) for m, w in used], rates)
        assert max(np.abs(a - b).max() for a, b in zip(free.layers, expected.layers)) < 1e-6
        assert np.abs(fused.parameters - generic.parameters).max() < 1e-6 * np.abs(generic.parameters).max()
    assert np.array_equal(free.inputs, expected.inputs) and free.phase.beta == 0.0


def test_compiled_contrast_step_declines_what_it_does_not_cover():
    terms = ((-5.0, -0.1), (5.0, 0.1))
    x, y = _batch([6, 5, 4, 3], seed=26)
    assert DRNSystem([6, 5, 4, 3], iterations=4).contrast_step(x, y, terms, 0.01) is None  # two hidden layers
    assert DRNSystem([6, 5, 3]).contrast_step(x, y[:, :3], terms, 0.01) is None  # sweeps to convergence
    assert DRNSystem([6, 5, 3], iterations=4, bias=False).contrast_step(x, y[:, :3], terms, 0.01) is None
    assert DRNSystem([6, 5, 3], iterations=4, diodes="shockley").contrast_step(x, y[:, :3], terms, 0.01) is None


@pytest.mark.parametrize("sizes,panel_bytes", [([30, 8, 3], None), ([30, 8, 3], 7 * 8 * 4), ([30, 6, 5, 3], None)])
def test_in_place_momentum_equals_the_generic_trainers_sgd_momentum(sizes, panel_bytes, monkeypatch):
    """The compiled step (one hidden layer; its input block of 60 rows in panels of seven too), then settle/descend."""
    from dataclasses import replace

    from aeqprop_circuits.systems import kernels

    if panel_bytes:
        monkeypatch.setattr(kernels, "PANEL_BYTES", panel_bytes)

    from aeqprop_circuits.data.datasets import Dataset
    from aeqprop_circuits.experiments.trainer import History, TrainOptions, train

    rng = np.random.default_rng(27)
    x, labels = rng.uniform(0, 1, (20, sizes[0])), rng.integers(0, 3, 20)
    data = Dataset("tiny", x, labels, x[:5], labels[:5], 3)
    options = dict(seed=28, iterations=4, dtype="float32", input_gain=3.0)
    lean, generic, plain = (DRNSystem(sizes, **options) for _ in range(3))
    rule = get_algorithm("c-ep", beta=0.1)
    rates = lean.per_parameter([0.003] + [0.05] * (len(sizes) - 1))
    run = dict(epochs=2, batch_size=5, learning_rate=rates, lr_decay=0.9, progress=False, trace_every=0)
    quiet, momentum = {"log": lambda m: None}, TrainOptions(momentum=0.9, **run)
    train(lean, data, rule, History(), momentum, **quiet)
    train(generic, data, rule, History(), replace(momentum, in_place=False), **quiet)
    train(plain, data, rule, History(), TrainOptions(**run), **quiet)
    scale = np.abs(generic.parameters).max()
    assert np.abs(lean.parameters - generic.parameters).max() < 1e-5 * scale
    assert np.abs(lean.parameters - plain.parameters).max() > 1e-3 * scale  # momentum changed the steps
