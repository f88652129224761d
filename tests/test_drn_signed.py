"""SignedDRNSystem: the universal-DRN code's circuit (aeqprop_circuits/drn/signed.py)."""

import csv

import numpy as np
import pytest
from paper_circuits import PaperDRN
from scipy.optimize import minimize

from aeqprop_circuits.circuit.energy import Nudge
from aeqprop_circuits.data.datasets import load_dataset
from aeqprop_circuits.errors import AeqpropError, DivergenceError
from aeqprop_circuits.experiments.trainer import TrainOptions, evaluate
from aeqprop_circuits.learning.algorithms import ep_step, get_algorithm
from aeqprop_circuits.solvers import solve
from aeqprop_circuits.systems.base import Phase
from aeqprop_circuits.systems.drn.signed import SignedDRNSystem
from aeqprop_circuits.systems.models import load_system

SIZES = ([3, 4, 2], [3, 4, 4, 2])


def _system(sizes, seed=1, **options):
    """Every node connected and biases of both signs: a strictly convex energy with active diodes."""
    system = SignedDRNSystem(sizes, seed=seed, input_gain=2.0, iterations=None, dtype="float64", **options)
    rng = np.random.default_rng(seed)
    theta = system.parameters
    theta[:system.n_weights] += rng.uniform(0.1, 0.5, system.n_weights)
    theta[system.n_weights:] = rng.normal(0.0, 0.5, system.n_parameters - system.n_weights)
    system.parameters = theta
    x = rng.uniform(0.0, 1.0, (3, sizes[0]))
    y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], 3)]
    return system, x, y


@pytest.mark.parametrize("sizes", SIZES)
@pytest.mark.parametrize("beta", [0.0, 0.3, -0.2])
def test_settle_is_the_bounded_minimiser_of_the_energy(sizes, beta):
    system, x, y = _system(sizes)
    state = system.settle(Phase(x, beta, y))
    hidden = system.widths[1:-1]
    bounds = [b for w in hidden for b in [(0, None)] * (w // 2) + [(None, 0)] * (w - w // 2)]
    bounds += [(None, None)] * sizes[-1]
    edges = np.cumsum([0, *system.widths[1:]])
    for b in range(len(x)):
        def energy(s, b=b):
            layers = [s[None, i:j] for i, j in zip(edges[:-1], edges[1:])]
            return system._energy(layers, state.inputs[b:b + 1], Phase(x[b:b + 1], beta, y[b:b + 1]))[0]

        best = minimize(energy, np.zeros(edges[-1]), method="L-BFGS-B", bounds=bounds,
                        options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 10_000})
        found = np.concatenate([layer[b] for layer in state.layers])
        assert system.energy(state)[b] <= best.fun + 1e-9
        np.testing.assert_allclose(found, best.x, atol=1e-5)
    assert (np.concatenate(state.layers[:-1], axis=1) == 0).any()  # some diodes conduct


@pytest.mark.parametrize("beta", [0.0, 0.3])
def test_settle_equals_the_qp_solver_on_its_circuit(beta):
    system, x, y = _system([3, 4, 2])
    state = system.settle(Phase(x, beta, y))
    circuit = system.circuit()
    reference = solve(circuit, sources=system.source_values(circuit, x), method="qp",
                      nudge=Nudge(beta * system.g0, y) if beta else None)
    layers = np.concatenate([reference.potentials[:, layer] for layer in circuit.layers], axis=1)
    assert np.abs(np.concatenate(state.layers, axis=1) - layers).max() < 1e-9
    assert np.allclose(system.energy(state), reference.energy / system.g0, atol=1e-10)


def test_energy_gradient_is_the_derivative_of_the_energy_at_a_fixed_state():
    system, x, y = _system([3, 4, 2])
    state = system.settle(Phase(x, 0.2, y))
    theta, gradient, h = system.parameters, system.energy_gradient(state), 1e-6
    numeric = np.empty_like(theta)
    for i in range(len(theta)):  # a tiny net: the loop is over 30 parameters
        energies = []
        for shift in (h, -h):
            shifted = theta.copy()
            shifted[i] += shift
            system.parameters = shifted
            energies.append(system.energy(state).mean())
        numeric[i] = (energies[0] - energies[1]) / (2 * h)
    np.testing.assert_allclose(gradient, numeric, atol=1e-6)


def test_descend_with_momentum_equals_sgd_on_the_estimates():
    """PyTorch's momentum form on the EP estimates: v <- 0.9 v + g, theta <- clip(theta - 0.05 v)."""
    rule = get_algorithm("c-ep", beta=0.3)
    lean = SignedDRNSystem([5, 32, 3], seed=2, input_gain=2.0, dtype="float64", warm_start=False)
    lean.momentum = 0.9
    generic = SignedDRNSystem([5, 32, 3], seed=2, input_gain=2.0, dtype="float64")
    velocity, rng = np.zeros(generic.n_parameters), np.random.default_rng(3)
    low, high = generic.parameter_bounds()
    for _ in range(4):
        x, y = rng.uniform(0, 1, (6, 5)), np.eye(3)[rng.integers(0, 3, 6)]
        ep_step(lean, rule, x, y, lean.in_place_rates(0.05))
        velocity = 0.9 * velocity + rule.estimate(generic, x, y).gradient
        generic.parameters = np.clip(generic.parameters - 0.05 * velocity, low, high)
    assert np.abs(lean.parameters - generic.parameters).max() < 1e-12
    assert np.abs(lean.parameters - SignedDRNSystem([5, 32, 3], seed=2, input_gain=2.0).parameters).max() > 1e-2


def test_training_step_equals_the_paper_circuit():
    """The paper's circuit written independently (tests/paper_circuits.py), warm start and momentum included."""
    n_in, hidden, n_out, gain, beta, lr = 20, 64, 4, 3.0, 0.5, 0.05
    net = PaperDRN(n_in, hidden, n_out, gain, seed=0, dtype=np.float64)
    system = SignedDRNSystem([n_in, hidden, n_out], seed=0, input_gain=gain, dtype="float64")
    system.momentum = 0.9
    assert np.array_equal(np.r_[net.g1.ravel(), net.g2.ravel()], system.parameters[:system.n_weights])
    rule, rng = get_algorithm("c-ep", beta=beta), np.random.default_rng(5)
    h, o = np.zeros((8, hidden)), np.zeros((8, n_out))
    for _ in range(4):
        x, y = rng.uniform(0, 1, (8, n_in)), np.eye(n_out)[rng.integers(0, n_out, 8)]
        v = net.sources(x)
        h, o = net.relax(net.clamp(v), h, o, 4)
        hp, op = net.relax(net.clamp(v), h, o, 4, beta, y, backward=True)
        hm, om = net.relax(net.clamp(v), h, o, 4, -beta, y, backward=True)
        net.step(v, hp, op, hm, om, beta, lr, momentum=0.9)
        free = ep_step(system, rule, x, y, system.in_place_rates(lr))
        np.testing.assert_allclose(free.layers[-1], o, atol=1e-12)
    np.testing.assert_allclose(system.parameters, np.r_[net.g1.ravel(), net.g2.ravel(), net.b1, net.b2], atol=1e-12)


def test_too_negative_a_nudge_is_refused_by_name():
    system, x, y = _system([3, 4, 2])
    beta = -1.01 * system._conductance_sums()[-1].min()
    with pytest.raises(DivergenceError, match="non-convex"):
        system.settle(Phase(x, beta, y))
    base = Phase(x, 0.0, y)
    with pytest.raises(DivergenceError, match="non-convex"):  # as one of the phases settled together
        system.settle_nudges(base, [0.1, beta], start=system.settle(base))


@pytest.mark.parametrize("iterations", [4, None])
@pytest.mark.parametrize("schedule", ["forward-backward", "alternating"])
def test_nudged_phases_settled_together_are_each_settled_alone(iterations, schedule):
    """settle_nudges stacks its phases into one batch; each phase's layers are those it settles to alone."""
    system = SignedDRNSystem([6, 9, 7, 3], seed=3, input_gain=2.0, iterations=iterations, dtype="float64",
                             schedule=schedule)
    rng = np.random.default_rng(8)
    base = Phase(rng.random((5, 6)), 0.0, np.eye(3)[rng.integers(0, 3, 5)])
    free = system.settle(base)
    betas = (-0.05, 0.4, 0.7)
    for state, beta in zip(system.settle_nudges(base, betas, start=free), betas):
        alone = system.settle(base.nudged(beta), start=free)
        assert state.phase.beta == beta and state.inputs is alone.inputs
        for a, b in zip(state.layers, alone.layers):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-14 if iterations else 1e-10)


def test_model_option_circuit_selects_the_system():
    assert isinstance(load_system("drn:6-4-2", circuit="signed"), SignedDRNSystem)
    with pytest.raises(AeqpropError, match="circuit 'bogus'"):
        load_system("drn:6-4-2", circuit="bogus")
    with pytest.raises(AeqpropError, match="solver 'spice'"):
        load_system("drn:6-4-2", solver="spice", circuit="signed")


def test_cli_training_improves_accuracy(tmp_path):
    from click.testing import CliRunner

    from aeqprop_circuits.cli.main import main

    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "--model", "drn:8-32-3", "--set", "circuit=signed",
                                       "--set", "input_gain=2.0", "--data", "iris", "--beta", "0.5", "--lr", "0.05",
                                       "--momentum", "0.9", "--batch-size", "10", "--epochs", "30", "--out", str(out),
                                       "--quiet"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    data = load_dataset("iris", seed=0)
    untrained = SignedDRNSystem([4, 32, 3], seed=0, input_gain=2.0)  # the run's initial network
    loss, accuracy = evaluate(untrained, data, data.x_test, data.y_test, TrainOptions())
    assert accuracy < 0.5 and float(rows[-1]["test_accuracy"]) >= 0.8
    assert float(rows[-1]["test_loss"]) < 0.3 * loss


def _loss(system, x, y):
    return system.cost(system.settle(Phase(x)), y).mean()


@pytest.mark.parametrize("sizes", SIZES)
def test_loss_gradient_is_the_derivative_of_the_equilibrium_loss(sizes):
    system, x, y = _system(sizes)
    exact = system.loss_gradient(system.settle(Phase(x)), y)
    theta, h, numeric = system.parameters, 1e-6, np.empty(system.n_parameters)
    for i in range(len(theta)):  # a tiny net: a loop over its few dozen parameters
        losses = []
        for shift in (h, -h):
            shifted = theta.copy()
            shifted[i] += shift
            system.parameters = shifted
            losses.append(_loss(system, x, y))
        numeric[i] = (losses[0] - losses[1]) / (2 * h)
    np.testing.assert_allclose(exact, numeric, atol=1e-7)
    assert np.abs(exact).max() > 1e-3


def test_ep_bias_shrinks_with_slope_one_one_sided_and_two_centered():
    system, x, y = _system([3, 4, 2])
    exact = system.loss_gradient(system.settle(Phase(x)), y)
    betas = np.array([0.02, 0.01, 0.005])
    for name, slope in (("p-ep", 1.0), ("c-ep", 2.0)):
        rule = get_algorithm(name, beta=1.0)
        errors = []
        for beta in betas:
            rule.beta = float(beta)
            errors.append(np.linalg.norm(rule.estimate(system, x, y).gradient - exact))
        fitted = np.polyfit(np.log(betas), np.log(errors), 1)[0]
        assert abs(fitted - slope) < 0.15, (name, fitted)


def test_gradcheck_takes_model_options():
    import json

    from click.testing import CliRunner

    from aeqprop_circuits.cli.main import main

    result = CliRunner().invoke(main, ["gradcheck", "drn:8-64-3", "--set", "circuit=signed", "--set", "iterations=null",
                                       "--set", "dtype=float64", "--set", "input_gain=2", "--beta", "0.01", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["cosine"] > 0.9999 and report["relative_error"] < 1e-3


@pytest.mark.spice
def test_settle_agrees_with_ngspice_within_the_diode_drop():
    """ngspice runs the written circuit with near-ideal exponential diodes; each conducting one
    drops N Vt ln(I / IS) instead of 0 V, which bounds the difference (test_spice.py's argument)."""
    from dataclasses import replace

    from aeqprop_circuits.circuit.circuit import THERMAL_VOLTAGE
    from aeqprop_circuits.solvers.spice import NEAR_IDEAL_MODEL, _spice_model_parameters, ngspice_available

    if not ngspice_available():
        pytest.skip("ngspice shared library (libngspice) or PySpice not installed: "
                    "apt-get install ngspice libngspice0-dev")
    system, x, _ = _system([6, 8, 3], seed=2)
    state = system.settle(Phase(x))
    circuit = system.circuit()
    circuit = replace(circuit, ideal_diodes=replace(circuit.ideal_diodes, spice_model=NEAR_IDEAL_MODEL))
    sources = system.source_values(circuit, x)
    theirs = solve(circuit, sources=sources, method="spice", tight=True)
    ours = solve(circuit, sources=sources, method="qp")
    assert theirs.success, theirs.message
    layers = np.concatenate([theirs.potentials[:, layer] for layer in circuit.layers], axis=1)
    isat, n = _spice_model_parameters(NEAR_IDEAL_MODEL)
    drop = n * THERMAL_VOLTAGE * np.log(np.abs(ours.currents["ideal_diodes"]).max() / isat)
    assert np.abs(np.concatenate(state.layers, axis=1) - layers).max() <= drop
    assert (np.concatenate(state.layers[:-1], axis=1) == 0).any()  # some diodes conduct


@pytest.mark.parametrize("preset", ["drn-xs", "drn-1h-universal"])
def test_bench_train_times_either_circuit(preset):
    import json

    from click.testing import CliRunner

    from aeqprop_circuits.cli.main import main

    result = CliRunner().invoke(main, ["bench", "train", "--preset", preset, "--model", "drn:16-64-3", "--steps", "5",
                                       "--eval-samples", "512", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["data"] == "random" and report["matmul_share"] > 0 and report["ms_per_step_cpu"] > 0
    bad = CliRunner().invoke(main, ["bench", "train", "--preset", "drn-9h"])
    assert bad.exit_code != 0 and "drn-9h" in bad.output


def test_a_state_knows_when_theta_moved_on():
    """descend changes theta in place, so a state's `theta` must not alias it (settle_with_knobs reuses states)."""
    system, x, y = _system([3, 4, 2])
    state = system.settle(Phase(x))
    assert state.theta is not None and np.array_equal(state.theta, system.parameters)
    system.descend([(1.0, state)], 0.01)
    assert state.theta is None and system.settle(Phase(x)).theta is not None


@pytest.mark.parametrize("sizes", SIZES)
@pytest.mark.parametrize("shared", [False, True])
def test_descend_on_states_of_different_inputs_is_the_contrast_of_their_gradients(sizes, shared):
    """Phases of different inputs, and phases sharing theirs (one input block's rows, a squares row as sum c != 0)."""
    system, x, y = _system(sizes)
    first, second = system.settle(Phase(x)), system.settle(Phase(x if shared else x[::-1].copy(), 0.3, y))
    expected = system.parameters - 0.01 * (0.7 * system.energy_gradient(first) - 0.2 * system.energy_gradient(second))
    low, high = system.parameter_bounds()
    system.descend([(0.7, first), (-0.2, second)], 0.01)
    np.testing.assert_allclose(system.parameters, np.clip(expected, low, high), atol=1e-13)


@pytest.mark.parametrize("schedule, free_order, nudged_order", [
    ("forward-backward", [0, 1, 2], [2, 1, 0]),  # the universal-DRN script: forward, then output first
    ("alternating", [0, 2, 1], [0, 2, 1]),  # the fast-DRN script's 'asynchronous': even layers, then odd ones
])
def test_a_sweep_updates_the_layers_in_its_schedules_order(monkeypatch, schedule, free_order, nudged_order):
    system, x, y = _system([3, 4, 4, 2], schedule=schedule)
    system.iterations = 1
    visited = []
    behind = system._behind  # every layer update takes the current from behind once
    monkeypatch.setattr(system, "_behind", lambda k, V, drive: visited.append(k) or behind(k, V, drive))
    system.settle(Phase(x))
    assert visited == free_order
    visited.clear()
    system.settle(Phase(x, 0.5, y))
    assert visited == nudged_order


@pytest.mark.parametrize("schedule", ["forward-backward", "alternating"])
def test_every_schedule_settles_at_the_same_minimum(schedule):
    reference, x, y = _system([3, 4, 4, 2])
    system, _, _ = _system([3, 4, 4, 2], schedule=schedule)
    for phase in (Phase(x), Phase(x, 0.3, y)):
        np.testing.assert_allclose(system.outputs(system.settle(phase)), reference.outputs(reference.settle(phase)),
                                   atol=1e-10)


@pytest.mark.parametrize("warm_start, resting", [("free", 0), ("last", -1), (True, 0)])
def test_the_next_free_phase_starts_where_the_warm_start_says(monkeypatch, warm_start, resting):
    """"last": where the step's last phase (+beta of c-ep) ended, as in the papers' code; "free": the free state."""
    system = SignedDRNSystem([5, 8, 3], seed=0, input_gain=2.0, warm_start=warm_start)
    calls = []
    settle, settle_nudges = system.settle, system.settle_nudges
    monkeypatch.setattr(system, "settle", lambda phase, start=None: calls.append([settle(phase, start=start)])
                        or calls[-1][0])
    monkeypatch.setattr(system, "settle_nudges", lambda base, betas, start: calls.append(
        settle_nudges(base, betas, start)) or calls[-1])
    x, y = np.random.default_rng(0).random((4, 5)), np.eye(3)[[0, 1, 2, 0]]
    ep_step(system, get_algorithm("c-ep", beta=0.5), x, y, system.in_place_rates(0.01))
    settled = [state for group in calls for state in group]
    assert [s.phase.beta for s in settled] == [0.0, -0.5, 0.5]
    assert system._resting is settled[resting].layers


@pytest.mark.parametrize("options, message", [({"warm_start": "previous"}, "warm_start 'previous'"),
                                              ({"schedule": "backward"}, "schedule 'backward'")])
def test_unknown_warm_starts_and_schedules_are_refused(options, message):
    with pytest.raises(AeqpropError, match=message):
        SignedDRNSystem([5, 8, 3], **options)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("excitatory", [0, 3, 7, 11])
def test_the_hidden_update_is_numpys_add_divide_and_clips(dtype, excitatory):
    """hidden.update = (ahead + behind) / D clipped to the sign windows, to the last bit; a NaN stays a NaN."""
    from aeqprop_circuits.systems.drn import hidden

    rng = np.random.default_rng(excitatory)
    ahead, behind = rng.normal(size=(5, 11)).astype(dtype), rng.normal(size=(5, 11)).astype(dtype)
    D = rng.uniform(0.5, 2.0, 11).astype(dtype)
    ahead[1, 2] = np.nan
    expected = (ahead + behind) / D
    expected[:, :excitatory] = np.clip(expected[:, :excitatory], 0, np.inf)
    expected[:, excitatory:] = np.clip(expected[:, excitatory:], -np.inf, 0)
    result = hidden.update(ahead, behind, D, excitatory)
    assert result is ahead and result.dtype == dtype
    np.testing.assert_array_equal(result, expected)


def test_stacked_phases_share_the_current_from_behind():
    """Row b of a stack of phases takes row b mod B' of a B'-row current from behind (their shared drive)."""
    from aeqprop_circuits.systems.drn import hidden

    rng = np.random.default_rng(3)
    ahead, behind = rng.normal(size=(6, 9)), rng.normal(size=(2, 9))
    D = rng.uniform(0.5, 2.0, 9)
    expected = hidden.update(ahead.copy(), np.concatenate([behind] * 3), D, 4)
    np.testing.assert_array_equal(hidden.update(ahead, behind, D, 4), expected)
    with pytest.raises(ValueError, match="4 rows of current from behind do not divide the layer's 6"):
        hidden.update(ahead, rng.normal(size=(4, 9)), D, 4)


@pytest.mark.parametrize("groups", [2, 6])
def test_a_layers_weighted_moments_in_one_pass(groups):
    """moments.weighted = the weighted sums, half the weighted squares and the negated weighted rows summed
    over row groups, as numpy computes them (a width over two tiles)."""
    from aeqprop_circuits.systems.drn import moments

    rng = np.random.default_rng(groups)
    V, weights = rng.normal(size=(6, 1500)).astype(np.float32), rng.normal(size=6).astype(np.float32)
    negative = np.full((groups, 1500), np.nan, np.float32)
    sums, squares = moments.weighted(V, weights, negative)
    np.testing.assert_allclose(sums, weights @ V, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(squares, 0.5 * weights @ (V * V), rtol=1e-5, atol=1e-6)
    expected = -(weights[:, None] * V).reshape(6 // groups, groups, -1).sum(axis=0)
    np.testing.assert_allclose(negative, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="4 rows of pulled currents do not divide the layer's 6"):
        moments.weighted(V, weights, negative[:1].repeat(4, axis=0))


def test_layer_passes_refuse_arrays_of_the_wrong_shape():
    """Their loops run without bounds checks: a caller's wrong shape is refused before them."""
    from aeqprop_circuits.systems.drn import hidden, moments

    V = np.ones((4, 8), np.float32)
    with pytest.raises(ValueError, match="3 weights and 8 columns"):
        moments.weighted(V, np.ones(3), np.zeros((2, 8), np.float32))
    with pytest.raises(ValueError, match="4 weights and 7 columns"):
        moments.weighted(V, np.ones(4), np.zeros((2, 7), np.float32))
    with pytest.raises(ValueError, match="currents of widths 8 and 8 over 5 conductance sums"):
        hidden.update(V, V, np.ones(5, np.float32), 2)
