"""Hopfield networks: exact block updates, monotone relaxation, conv = dense, EP -> rbp, tbp = rbp, fp16."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from aeqprop_circuits.errors import AeqpropError, DivergenceError
from aeqprop_circuits.experiments.presets import HOPFIELD_PRESETS, preset_rates, preset_system
from aeqprop_circuits.systems.base import Phase, PhysicalSystem
from aeqprop_circuits.systems.hopfield import (
    Conv,
    Dense,
    HopfieldNetwork,
    HopfieldState,
    build_model,
    rbp_gradient,
    tbp_gradient,
)


def tiny_dense(precision="float64", **options):
    options = {"threshold": 1e-13, "max_iterations": (3000, 3000), **options}
    net = build_model("hopfield:12-9-7-4", precision=precision, seed=3, gains=[1.5, 1.5, 1.5], **options)
    return net


def tiny_conv(pool="avg", precision="float64", **options):
    options = {"threshold": 1e-13, "max_iterations": (3000, 3000), **options}
    return build_model(f"conv:1x8x8-3c3{pool}-4c2p1none-3", precision=precision, seed=5,
                       gains=[1.5, 1.5, 1.5], **options)


def batch(net, size=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((size, net.n_inputs))
    y = np.eye(net.n_outputs)[rng.integers(0, net.n_outputs, size)]
    return x, y


def random_state(net, phase, seed=1):
    rng = np.random.default_rng(seed)
    layers = tuple(rng.uniform(max(p, -1), min(q, 2), (len(phase.inputs),) + shape)
                   for shape, (p, q) in zip(net.layer_shapes, net.bounds))
    return HopfieldState(layers, phase)


def update_one_layer(net, state, k):
    drive, _ = net._input_drive(state.phase.inputs)
    return net._sweep(state.layers, [k], state.phase, net.weights, net.biases, net._flipped, drive, {},
                      net._nudge_terms(state.phase))


@pytest.mark.parametrize("make", [tiny_dense, tiny_conv])
@pytest.mark.parametrize("beta", [0.0, 0.3, -0.7])
def test_block_update_is_the_exact_minimiser_of_the_energy_over_the_layer(make, beta):
    net = make()
    x, y = batch(net, size=2)
    phase = Phase(x, beta, y)
    state = random_state(net, phase)
    for k in range(net.n_layers):
        updated = update_one_layer(net, state, k)
        shape = state.layers[k].shape

        def energy(flat, k=k, shape=shape):
            layers = list(state.layers)
            layers[k] = flat.reshape(shape)
            return net.energy(HopfieldState(tuple(layers), phase)).sum()

        def gradient(flat, k, h=1e-6):  # central differences: the energy is quadratic in the layer
            eye = np.eye(flat.size) * h
            return np.array([(energy(flat + e) - energy(flat - e)) / (2 * h) for e in eye])

        p, q = net.bounds[k]
        best = None
        # beta = -0.7 makes the output energy concave (1 + 2 beta < 0): try both corners as starts
        concave = k == net.n_layers - 1 and 1 + 2 * beta <= 0
        starts = (np.full(shape, p), np.full(shape, q), state.layers[k]) if concave else (state.layers[k],)
        for start in starts:
            res = minimize(energy, start.ravel(), jac=lambda flat, k=k: gradient(flat, k), method="L-BFGS-B",
                           bounds=[(p, q)] * start.size, options={"ftol": 1e-15, "gtol": 1e-12})
            best = res if best is None or res.fun < best.fun else best
        assert energy(updated[k].ravel()) <= best.fun + 1e-9
        if not concave:  # strictly convex: the minimiser is unique
            assert np.allclose(updated[k].ravel(), best.x, atol=1e-5)


@pytest.mark.parametrize("make", [tiny_dense, tiny_conv])
@pytest.mark.parametrize("schedule", ["alternating", "sequential"])
@pytest.mark.parametrize("beta", [0.0, 0.5, -0.3])
def test_energy_never_increases_during_a_relaxation(make, schedule, beta):
    net = make(schedule=schedule, threshold=0.0, max_iterations=(60, 60))
    x, y = batch(net, size=5)
    trace = []
    net.settle(Phase(x, beta, y), start=net.settle(Phase(x)), callback=lambda e: trace.append(e))
    trace = np.array(trace)
    assert len(trace) == 60
    assert np.all(np.diff(trace, axis=0) <= 1e-10 * (1 + np.abs(trace[:-1])))


def test_callback_can_stop_the_relaxation():
    net = tiny_dense(threshold=0.0, max_iterations=(50, 50))
    x, _ = batch(net)
    seen = []

    def stop_after_three(energy):
        seen.append(energy)
        if len(seen) == 3:
            raise StopIteration

    state = net.settle(Phase(x), callback=stop_after_three)
    assert state.iterations == 3 and not state.converged


@pytest.mark.parametrize("pool", ["avg", "none"])
def test_conv_interaction_equals_its_dense_matrix_equivalent(pool):
    rng = np.random.default_rng(0)
    conv = Conv((6, 6, 2), channels=3, kernel=3, padding=1, pool=pool)
    weight = rng.normal(size=conv.weight_shape)
    pre = rng.normal(size=(4, 6, 6, 2))
    post = rng.normal(size=(4,) + conv.post_shape)
    # dense equivalent built independently: explicit sum over kernel taps
    k, pad = 3, 1
    padded = np.pad(pre, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    w4 = weight.reshape(k, k, 2, 3)
    z = sum(np.einsum("bhwc,cd->bhwd", padded[:, i:i + 6, j:j + 6, :], w4[i, j])
            for i in range(k) for j in range(k))
    if pool == "avg":
        z = z.reshape(4, 3, 2, 3, 2, 3).mean(axis=(2, 4))
    assert np.allclose(conv.forward(pre, weight), z)
    matrix = conv.dense_matrix(weight)
    assert np.allclose(pre.reshape(4, -1) @ matrix, z.reshape(4, -1))
    assert np.allclose(conv.backward(post, weight).reshape(4, -1), post.reshape(4, -1) @ matrix.T)
    grad = np.einsum("bi,bj->ij", pre.reshape(4, -1), post.reshape(4, -1))  # d/dM of post . (pre M)
    # weight_grad is the chain rule of the dense gradient through M(W) (linear in W)
    direction = rng.normal(size=weight.shape)
    assert np.isclose(np.sum(conv.weight_grad(pre, post) * direction),
                      np.sum(grad * conv.dense_matrix(direction)))


def test_max_pooling_backward_is_the_transpose_for_fixed_routing():
    rng = np.random.default_rng(1)
    conv = Conv((6, 6, 2), channels=3, kernel=3, padding=1, pool="max")
    weight = rng.normal(size=conv.weight_shape)
    pre = rng.normal(size=(3, 6, 6, 2))
    post = rng.normal(size=(3,) + conv.post_shape)
    route = conv.routing(pre, weight)
    forward = conv.forward(pre, weight)
    z = np.pad(pre, ((0, 0), (1, 1), (1, 1), (0, 0)))
    assert forward.shape == (3, 3, 3, 3)
    assert np.isclose(np.sum(post * forward), np.sum(conv.backward(post, weight, routing=route) * pre))
    # the pooled value is the window maximum
    from aeqprop_circuits.systems.hopfield.interactions import im2col
    full = (im2col(z, 3, 0) @ weight).reshape(3, 3, 2, 3, 2, 3).max(axis=(2, 4))
    assert np.allclose(forward, full)


def finite_difference_loss_gradient(net, x, y, indices, start, h=1e-6):
    theta = net.parameters
    grad = np.zeros(len(indices))
    for n, i in enumerate(indices):
        for sign in (1, -1):
            shifted = theta.copy()
            shifted[i] += sign * h
            net.parameters = shifted
            grad[n] += sign * net.cost(net.settle(Phase(x), start=start), y).mean() / (2 * h)
    net.parameters = theta
    return grad


@pytest.mark.parametrize("make", [tiny_dense, lambda: tiny_conv("max", threshold=1e-12)])
def test_rbp_equals_the_finite_difference_gradient_of_the_free_phase_cost(make):
    net = make()
    x, y = batch(net, size=3)
    free = net.settle(Phase(x, 0.0, y))
    grad, info = rbp_gradient(net, free, y, tolerance=1e-13)
    assert info["residual"] < 1e-12
    indices = np.random.default_rng(0).choice(net.n_parameters, 30, replace=False)
    indices = np.union1d(indices, np.argsort(-np.abs(grad))[:10])  # include the largest components
    grad = grad[indices]
    reference = finite_difference_loss_gradient(net, x, y, indices, free)
    assert np.abs(reference).max() > 1e-2  # the test would be vacuous with every unit saturated
    assert np.allclose(grad, reference, atol=1e-6 * np.abs(reference).max() + 1e-8)


@pytest.mark.parametrize("make", [tiny_dense, tiny_conv, lambda: tiny_conv("max")])
def test_tbp_equals_rbp_when_the_relaxation_has_converged(make):
    net = make()
    x, y = batch(net)
    free = net.settle(Phase(x, 0.0, y))
    assert free.converged
    rbp, _ = rbp_gradient(net, free, y, tolerance=1e-13)
    tbp = tbp_gradient(net, free, y, iterations=400)
    assert np.allclose(tbp, rbp, atol=1e-9 * np.abs(rbp).max())
    short = tbp_gradient(net, free, y, iterations=1)  # truncation matters when K is small
    assert not np.allclose(short, rbp, atol=1e-3 * np.abs(rbp).max())


def test_ep_estimate_approaches_rbp_first_order_one_sided_second_order_centered():
    net = tiny_dense()
    x, y = batch(net, size=6)
    free = net.settle(Phase(x, 0.0, y))
    exact, _ = rbp_gradient(net, free, y, tolerance=1e-13)
    betas = np.array([0.02, 0.01, 0.005, 0.0025])
    one_sided, centered = [], []
    g0 = net.energy_gradient(free)
    for beta in betas:
        plus = net.energy_gradient(net.settle(Phase(x, beta, y), start=free))
        minus = net.energy_gradient(net.settle(Phase(x, -beta, y), start=free))
        one_sided.append(np.linalg.norm((plus - g0) / beta - exact))
        centered.append(np.linalg.norm((plus - minus) / (2 * beta) - exact))
    slope_one = np.polyfit(np.log(betas), np.log(one_sided), 1)[0]
    slope_two = np.polyfit(np.log(betas), np.log(centered), 1)[0]
    assert 0.85 < slope_one < 1.15, slope_one
    assert 1.8 < slope_two < 2.2, slope_two


def test_float16_relaxation_lands_within_tolerance_of_float32():
    """Stated tolerance: outputs within 1e-2 (max abs), hidden states within 2e-2 of float32."""
    nets = {p: build_model("hopfield:64-48-10", precision=p, seed=2, threshold=0.0, max_iterations=(40, 40))
            for p in ("float32", "float16")}
    x, y = batch(nets["float32"], size=16)
    states = {p: net.settle(Phase(x, 0.0, y)) for p, net in nets.items()}
    nudged = {p: net.settle(Phase(x, 0.5, y), start=states[p]) for p, net in nets.items()}
    for s in (states, nudged):
        assert np.abs(s["float16"].layers[-1] - s["float32"].layers[-1]).max() < 1e-2
        assert np.abs(s["float16"].layers[0] - s["float32"].layers[0]).max() < 2e-2
    assert states["float16"].layers[0].dtype == np.float32  # emulated: float16 values, float32 arithmetic
    values = states["float16"].layers[0]
    assert np.array_equal(values, values.astype(np.float16).astype(np.float32))


def test_nudge_strong_negative_beta_with_unbounded_output_raises():
    net = build_model("hopfield:5-4-3", output_bounds=(-np.inf, np.inf))
    x, y = batch(net)
    with pytest.raises(DivergenceError):
        net.settle(Phase(x, -0.6, y))


def test_clamped_phase_holds_the_outputs():
    net = tiny_dense()
    x, y = batch(net)
    state = net.settle(Phase(x, 0.0, y, clamp=y))
    assert np.array_equal(net.outputs(state), y)


def test_joint_relaxation_with_knobs_decreases_the_joint_energy_and_agrees_with_the_default():
    net = tiny_dense(threshold=1e-12)
    x, y = batch(net, size=5)
    epsilon = net.per_parameter({n: (0.02 if n.startswith("w") else 0.01) for n, _ in net.groups})
    theta = net.parameters
    knobs = theta + 0.5 * epsilon * net.energy_gradient(net.settle(Phase(x)))
    phase = Phase(x, 0.2, y)

    def joint(state, th):
        saved = net.parameters
        net.parameters = th
        value = net.energy(state).mean() + np.sum((knobs - th) ** 2 / (2 * epsilon))
        net.parameters = saved
        return value

    start = net.settle(phase)
    values = [joint(start, theta)]
    for steps in (1, 2, 5):
        state, moved = net.settle_with_knobs(phase, knobs, epsilon, theta=theta, steps=steps)
        values.append(joint(state, moved))
        reference_state, reference = PhysicalSystem.settle_with_knobs(net, phase, knobs, epsilon, theta=theta,
                                                                      steps=steps)
        assert np.allclose(moved, reference, atol=1e-9)
        assert np.allclose(state.layers[-1], reference_state.layers[-1], atol=1e-9)
    assert np.array_equal(net.parameters, theta)  # the system's own theta is untouched
    assert np.all(np.diff(values) <= 1e-12)


def test_every_learning_rule_runs_unchanged_on_hopfield_networks():
    algorithms = pytest.importorskip("aeqprop_circuits.learning.algorithms")
    for net in (tiny_dense(threshold=1e-10), tiny_conv("max", threshold=1e-8, max_iterations=(300, 300))):
        x, y = batch(net, size=4)
        exact = algorithms.get_algorithm("rbp").estimate(net, x, y).gradient
        for name in algorithms.algorithm_names():
            if name in ("lcp", "lcp-current"):  # the least control is solved on circuit netlists only
                continue
            options = {"epsilon": 0.001, "controller": "oracle"} if name.startswith("aeqprop") else {}
            estimate = algorithms.get_algorithm(name, beta=0.001, **options).estimate(net, x, y)
            assert estimate.gradient.shape == (net.n_parameters,)
            assert np.all(np.isfinite(estimate.gradient))
            if name in ("p-ep", "n-ep", "c-ep", "multi-point-ep", "tbp", "exact-gradient"):
                cosine = estimate.gradient @ exact / np.linalg.norm(estimate.gradient) / np.linalg.norm(exact)
                assert cosine > 0.99, (name, cosine)


def test_input_drive_is_computed_once_per_phase_and_invalidated_by_new_parameters():
    net = tiny_dense()
    x, _ = batch(net)
    drive, _ = net._input_drive(x)
    assert net._input_drive(x)[0] is drive
    net.parameters = net.parameters * 1.1
    assert net._input_drive(x)[0] is not drive


def test_adaptive_threshold_follows_the_phase_gap():
    net = tiny_dense(adaptive_threshold=True, gamma=0.01, threshold=1e-3)
    x, y = batch(net)
    free = net.settle(Phase(x))
    nudged = net.settle(Phase(x, 0.5, y), start=free)
    gap = net._l1(nudged.layers, free.layers)
    assert net.end_epoch() == pytest.approx(min(1e-3, 0.01 * gap))


def test_specs_and_presets_build_the_papers_networks():
    dense = preset_system("aeqprop-dense")
    assert dense.layer_shapes == [(2048,), (10,)] and dense.bounds == [(0, 1), (-1, 2)]
    conv = preset_system("aeqprop-conv")
    assert conv.layer_shapes == [(12, 12, 32), (4, 4, 64), (10,)]
    assert [i.pool for i in conv.interactions[:2]] == ["avg", "avg"]
    dchn = preset_system("ebl-dchn", width=1.0)
    assert dchn.layer_shapes == [(16, 16, 128), (8, 8, 256), (4, 4, 512), (2, 2, 512), (10,)]
    assert dchn.interactions[0].pool == "max" and dchn.n_inputs == 784
    for name in HOPFIELD_PRESETS:
        system = preset_system(name)
        assert preset_rates(system, name).shape == (system.n_parameters,)
    with pytest.raises(AeqpropError, match="neither"):
        build_model("hopfield:784-abc-10")
    with pytest.raises(AeqpropError, match="last layer must be dense"):
        build_model("conv:1x8x8-3c3")


def test_fan_in_biases_start_inside_the_weights_range():
    """The EBL study's code draws biases U(-c, c) with its weights' c = gain / sqrt(fan_in)."""
    spec = "conv:1x6x6-3c3p1max-5"
    zero = build_model(spec, init="ebl", gains=[0.5, 0.5], seed=1)
    drawn = build_model(spec, init="ebl", gains=[0.5, 0.5], seed=1, bias_init="fan-in")
    for k, inter in enumerate(drawn.interactions):
        c = 0.5 / np.sqrt(inter.fan_in)
        bias = drawn.groups[2 * k + 1][1]
        assert np.all(zero.parameters[bias] == 0.0)
        assert 0.0 < np.abs(drawn.parameters[bias]).max() <= c
    first_weights = drawn.groups[0][1]  # drawn before any bias
    np.testing.assert_array_equal(drawn.parameters[first_weights], zero.parameters[first_weights])
    with pytest.raises(AeqpropError, match="bias_init"):
        build_model(spec, bias_init="normal")


def test_dense_layers_are_a_network_of_dense_interactions():
    net = HopfieldNetwork((4,), [Dense((4,), 3), Dense((3,), 2)], [(0, 1), (-1, 2)], precision="float64")
    assert net.n_parameters == 4 * 3 + 3 + 3 * 2 + 2
    assert [name for name, _ in net.groups] == ["w1", "b1", "w2", "b2"]


def test_proportional_controller_holds_a_small_hopfield_net_as_the_oracle_does():
    """The agnostic controller needs no Hopfield-specific code: feedback on theta alone gives the
    oracle's step on a small dense net (its eps is far below 1 / |curvature of F in theta|)."""
    algorithms = pytest.importorskip("aeqprop_circuits.learning.algorithms")
    net = tiny_dense(threshold=1e-12)
    x, y = batch(net, size=4)
    theta = net.parameters
    steps = {}
    for controller in ("oracle", "proportional"):
        rule = algorithms.get_algorithm("aeqprop-centered", beta=0.1, epsilon=0.05, controller=controller,
                                        rounds=80, relax_rounds=1)
        steps[controller] = rule.estimate(net, x, y).new_parameters - theta
        assert np.array_equal(net.parameters, theta)
    assert np.linalg.norm(steps["proportional"] - steps["oracle"]) < 1e-8 * np.linalg.norm(steps["oracle"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_layers_add_and_clip_in_one_pass_are_numpys(dtype):
    """fused.add_clip = np.clip(s + term, low, high) to the last bit, a term of fewer rows repeated over the
    layer's, a NaN kept a NaN, an infinite bound an open side."""
    from aeqprop_circuits.systems.hopfield import fused

    rng = np.random.default_rng(7)
    s, term = rng.normal(size=(6, 40)).astype(dtype), rng.normal(size=(2, 40)).astype(dtype)
    s[1, 3] = np.nan
    for low, high in ((-0.5, 0.7), (0.0, np.inf), (-np.inf, 0.0)):
        expected = np.clip(s + np.concatenate([term] * 3), low, high)
        result = s.copy()
        fused.add_clip(result, term, dtype(low), dtype(high))
        np.testing.assert_array_equal(result, expected)
    assert np.isnan(expected[1, 3])
