"""The in-place dense relaxation and the rules' in-place steps on Hopfield nets, against the estimate-and-step path."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import numpy as np
import pytest

from aeqprop_circuits.data.datasets import Dataset
from aeqprop_circuits.experiments.rundir import RunDir
from aeqprop_circuits.experiments.trainer import TrainOptions, train
from aeqprop_circuits.learning.algorithms import ep_step, get_algorithm
from aeqprop_circuits.systems.base import Phase
from aeqprop_circuits.systems.hopfield import build_model

GENERIC = {"callback": lambda energy: None}  # a callback sends settle() down the generic tuple-per-sweep path


def fused(system, rule) -> bool:
    """Whether the training loop takes the rule's in-place step on this system."""
    return rule.in_place(system, 0.1) is not None


def train_in_place(system, data, rule, run, options, **kwargs):
    return train(system, data, rule, run, options, **kwargs)


def train_generic(system, data, rule, run, options, **kwargs):
    return train(system, data, rule, run, replace(options, in_place=False), **kwargs)


def dense_net(spec="hopfield:30-20-12-5", **options):
    return build_model(spec, seed=3, gains=[1.5, 1.5, 1.5][:spec.count("-")], **options)


def batch(net, size=7, seed=4):
    rng = np.random.default_rng(seed)
    x = rng.random((size, net.n_inputs)).astype(np.float32)
    return x, np.eye(net.n_outputs)[rng.integers(0, net.n_outputs, size)]


def max_diff(a, b):
    return max(float(np.abs(np.asarray(u, np.float64) - np.asarray(v, np.float64)).max()) for u, v in zip(a, b))


@pytest.mark.parametrize("spec", ["hopfield:30-20-12-5", "hopfield:30-16-5", "hopfield:30-5"])
@pytest.mark.parametrize("schedule", ["alternating", "sequential"])
@pytest.mark.parametrize("threshold", [0.0, 1e-4])
def test_in_place_relaxation_makes_the_same_block_updates_as_the_generic_sweeps(spec, schedule, threshold):
    net = dense_net(spec, schedule=schedule, threshold=threshold, max_iterations=(12, 9))
    x, y = batch(net)
    free, generic_free = net.settle(Phase(x)), net.settle(Phase(x), **GENERIC)
    assert max_diff(free.layers, generic_free.layers) < 1e-6
    assert free.iterations == generic_free.iterations
    assert free.change == pytest.approx(generic_free.change, rel=1e-4, abs=1e-6)
    for phase in (Phase(x, 0.4, y), Phase(x, -0.3, y), Phase(x, 0.0, y, clamp=0.5 * y)):
        fast, generic = net.settle(phase, start=free), net.settle(phase, start=generic_free, **GENERIC)
        assert max_diff(fast.layers, generic.layers) < 1e-6
        assert fast.iterations == generic.iterations
    assert all(a is not b for a, b in zip(free.layers, net.settle(Phase(x, 0.4, y), start=free).layers))


@pytest.mark.parametrize("threshold", [0.0, 1e-4])
def test_stacked_nudged_phases_equal_their_own_settles(threshold):
    net = dense_net(schedule="sequential", threshold=threshold, max_iterations=(15, 15))
    x, y = batch(net)
    base = Phase(x, 0.0, y)
    free = net.settle(base)
    stacked = net.settle_nudges(base, [-0.2, 0.2, 0.4], start=free)
    for state, beta in zip(stacked, (-0.2, 0.2, 0.4)):
        alone = net.settle(base.nudged(beta), start=free, **GENERIC)
        assert state.phase.beta == beta
        assert max_diff(state.layers, alone.layers) < 1e-6
        assert state.iterations == alone.iterations


def one_batch_dataset(net, size=12, seed=5):
    rng = np.random.default_rng(seed)
    x = rng.random((size, net.n_inputs))
    labels = rng.integers(0, net.n_outputs, size)
    return Dataset("tiny", x, labels, x[:5], labels[:5], net.n_outputs)


@pytest.mark.parametrize("rule", ["c-ep", "p-ep", "n-ep", "multi-point-ep"])
@pytest.mark.parametrize("threshold", [0.0, 1e-4])
def test_in_place_trainer_step_equals_the_generic_trainer_step(tmp_path, rule, threshold):
    """One SGD step in place = one estimate-and-step, to float32 rounding, per-group rates."""
    options = {"schedule": "sequential", "threshold": threshold, "max_iterations": (15, 15)}
    generic_net, lean_net = dense_net(**options), dense_net(**options)
    data = one_batch_dataset(generic_net)
    algorithm = get_algorithm(rule, beta=0.2)
    assert fused(lean_net, algorithm)
    rates = generic_net.per_parameter({"w1": 0.3, "b1": 0.1, "w2": 0.2, "b2": 0.05, "w3": 0.1, "b3": 0.02})
    train_options = TrainOptions(epochs=1, batch_size=12, learning_rate=rates, progress=False, trace_every=0)
    before = generic_net.parameters
    train_generic(generic_net, data, algorithm, RunDir(str(tmp_path / "generic")), train_options, log=lambda m: None)
    train_in_place(lean_net, data, algorithm, RunDir(str(tmp_path / "lean")), train_options, log=lambda m: None)
    step = generic_net.parameters - before
    assert np.abs(step).max() > 1e-3  # a real step
    assert np.abs(lean_net.parameters - generic_net.parameters).max() < 1e-6 * max(1.0, np.abs(step).max())
    rows = [list(csv.DictReader(open(tmp_path / run / "metrics.csv")))[-1] for run in ("generic", "lean")]
    for key in ("test_loss", "test_accuracy", "train_loss"):
        assert float(rows[0][key]) == pytest.approx(float(rows[1][key]), rel=1e-4)


def test_in_place_trainer_writes_the_same_lyapunov_trace(tmp_path):
    generic_net, lean_net = dense_net(threshold=0.0), dense_net(threshold=0.0)
    data = one_batch_dataset(generic_net)
    algorithm = get_algorithm("c-ep", beta=0.2)
    train_options = TrainOptions(epochs=1, batch_size=6, learning_rate=0.2, progress=False, trace_every=1)
    train_generic(generic_net, data, algorithm, RunDir(str(tmp_path / "generic")), train_options, log=lambda m: None)
    train_in_place(lean_net, data, algorithm, RunDir(str(tmp_path / "lean")), train_options, log=lambda m: None)
    traces = [[json.loads(line) for line in open(tmp_path / run / "steps.jsonl")] for run in ("generic", "lean")]
    assert len(traces[0]) == len(traces[1]) == 2
    for a, b in zip(*traces):
        for key in ("loss_before", "loss_after", "lyapunov_before", "lyapunov_after"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6)


def test_descend_updates_in_place_and_parameters_follow():
    net = dense_net(threshold=0.0)
    x, y = batch(net)
    weights_before = [w for w in net.weights]
    theta_before = net.parameters
    rule = get_algorithm("c-ep", beta=0.1)
    generic = theta_before - 0.5 * rule.estimate(net, x, y).gradient
    ep_step(net, rule, x, y, 0.5)
    assert all(w is w0 for w, w0 in zip(net.weights, weights_before))  # no new weight arrays
    assert np.abs(net.parameters - generic).max() < 1e-6
    fresh = net.settle(Phase(x))  # the cached input drive and W^T were invalidated by the update
    rebuilt = dense_net(threshold=0.0)
    rebuilt.parameters = net.parameters
    assert max_diff(fresh.layers, rebuilt.settle(Phase(x)).layers) < 1e-6


def test_descend_refuses_states_of_different_batches():
    net = dense_net(threshold=0.0)
    x, y = batch(net)
    a, b = net.settle(Phase(x)), net.settle(Phase(x.copy(), 0.1, y))
    with pytest.raises(ValueError, match="one batch"):
        net.descend([(1.0, a), (-1.0, b)], 0.1)


def test_only_dense_nets_with_nudge_contrasts_take_the_lean_loop():
    dense = dense_net()
    assert fused(dense, get_algorithm("c-ep", beta=0.1))
    assert fused(dense, get_algorithm("multi-point-ep", beta=0.1))
    for rule in ("cl", "c-cpl", "exact-gradient", "tbp"):
        assert not fused(dense, get_algorithm(rule, beta=0.1))
    assert not fused(dense, get_algorithm("aeqprop-centered", beta=0.1, controller="proportional"))
    assert not fused(dense_net(precision="float16"), get_algorithm("c-ep", beta=0.1))
    conv = build_model("conv:1x8x8-2c3-4", seed=0)
    assert not fused(conv, get_algorithm("c-ep", beta=0.1))


def test_lean_loop_trains_through_the_cli_session(tmp_path):
    from aeqprop_circuits.experiments.session import run_training

    out = tmp_path / "run"
    run_training("hopfield:64-40-10", None, True,
                 {"data": "digits", "algorithm": "c-ep", "beta": 0.2, "lr": 0.1, "batch_size": 16, "epochs": 3,
                  "trace_every": 0, "model_options": {"threshold": 0.0, "max_iterations": (15, 15)},
                  "out": str(out)}, echo=lambda message: None)
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [int(row["epoch"]) for row in rows] == [0, 1, 2, 3]
    assert float(rows[-1]["test_accuracy"]) > 0.8  # 0.1 at initialisation


def test_bench_times_each_phase_against_its_own_gemms():
    from aeqprop_circuits.bench.hopfield import bench_one, format_report

    row = bench_one(32, steps=2, generic_steps=1, repeats=2, warmup=1)
    for phase in ("free", "nudged"):
        for clock in ("", "_cpu"):
            assert 0 < row[f"products_{phase}{clock}_ms"] < row[f"iteration_{phase}{clock}_ms"]
        assert row[f"marginal_iteration_{phase}_cpu_ms"] > 0
    assert "784-32-10" in format_report([row])


def test_both_trainers_flip_the_same_training_images(tmp_path):
    """--augment hflip: the lean and generic loops see the same seeded flips; flipping changes the step."""
    nets = {name: dense_net(threshold=0.0) for name in ("generic", "lean", "unflipped")}
    data = one_batch_dataset(nets["generic"])
    data = Dataset("tiny-images", data.x_train, data.y_train, data.x_test, data.y_test, data.n_classes, (5, 6))
    algorithm = get_algorithm("c-ep", beta=0.2)
    flips = TrainOptions(epochs=2, batch_size=6, learning_rate=0.3, progress=False, trace_every=0, augment="hflip")
    plain = TrainOptions(epochs=2, batch_size=6, learning_rate=0.3, progress=False, trace_every=0)
    quiet = {"log": lambda m: None}
    train_generic(nets["generic"], data, algorithm, RunDir(str(tmp_path / "generic")), flips, **quiet)
    train_in_place(nets["lean"], data, algorithm, RunDir(str(tmp_path / "lean")), flips, **quiet)
    train_in_place(nets["unflipped"], data, algorithm, RunDir(str(tmp_path / "unflipped")), plain, **quiet)
    assert np.abs(nets["lean"].parameters - nets["generic"].parameters).max() < 1e-5  # float32 rounding, 4 steps
    assert np.abs(nets["lean"].parameters - nets["unflipped"].parameters).max() > 1e-3



def test_a_start_of_another_batch_is_refused():
    """The in-place relaxation reads the input drive row by row of the layers: a start of another batch size is an
    error, not a drive repeated over its rows."""
    net = dense_net(threshold=0.0)
    x, _ = batch(net)
    free = net.settle(Phase(x))
    with pytest.raises(ValueError, match="an input drive of 3 rows for layers of 7"):
        net.settle(Phase(x[:3]), start=free)
