"""The EBL study's DCHN training (preset ebl-dchn-cpu) through the one training loop.

The study trains with PyTorch's SGD (momentum, weight decay) under a cosine schedule stepped
per batch, on normalised, randomly flipped images. The loop's steps are held against that
loop written out here, step for step, on a small DCHN of the preset's kind.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from aeqprop_circuits.data.datasets import Dataset, random_hflip
from aeqprop_circuits.errors import DatasetError
from aeqprop_circuits.experiments.config import resolve
from aeqprop_circuits.experiments.presets import PRESETS
from aeqprop_circuits.experiments.sweep import load_spec
from aeqprop_circuits.experiments.trainer import History, TrainOptions, train
from aeqprop_circuits.learning.algorithms import get_algorithm
from aeqprop_circuits.systems.models import load_system

SWEEPS = os.path.join(os.path.dirname(__file__), os.pardir, "netlists", "sweeps")
PRESET = PRESETS["ebl-dchn-cpu"]
SMALL = "conv:1x8x8-3c3p1max-4c3p1max-3"
RATES = {"w1": 0.0625, "b1": 0.0625, "w2": 0.0375, "b2": 0.0375, "w3": 0.0125, "b3": 0.0125}


def small_dchn():
    """A DCHN with the preset's model options (state space, init, schedule, cost), fewer iterations."""
    return load_system(SMALL, seed=0, **{**PRESET["model_options"], "max_iterations": (12, 5)})


def images(n=40, classes=3, seed=1) -> Dataset:
    rng = np.random.default_rng(seed)
    x = rng.random((n, 64)).astype(np.float32)
    y = rng.integers(0, classes, n)
    return Dataset("images", x, y, x[:8], y[:8], classes, image_shape=(8, 8))


def study_loop(system, rule, data, rates, *, epochs, batch, momentum, weight_decay, floor, seed=0):
    """The study's loop: g + wd theta, v <- m v + g, theta <- theta - lr_t v, lr_t cosine-annealed per step
    from the rate to `floor` over the run; batches and flips seeded per epoch."""
    theta, velocity = system.parameters, np.zeros(system.n_parameters)
    steps_per_epoch = math.ceil(len(data.x_train) / batch)
    total, step = epochs * steps_per_epoch, 0
    for epoch in range(1, epochs + 1):
        order = np.random.default_rng([seed, epoch]).permutation(len(data.x_train))
        flips = np.random.default_rng([seed, epoch, 1])
        for b in range(steps_per_epoch):
            index = order[b * batch:(b + 1) * batch]
            x = random_hflip(data.x_train[index], data.image_shape, flips)
            gradient = rule.estimate(system, x, np.eye(system.n_outputs)[data.y_train[index]]).gradient
            gradient = gradient + weight_decay * theta
            rate = floor + 0.5 * (rates - floor) * (1 + math.cos(math.pi * step / total))
            velocity = momentum * velocity + gradient
            theta = theta - rate * velocity
            system.parameters = theta
            step += 1
    return theta


@pytest.mark.parametrize("algorithm", ["c-ep", "p-cpl", "tbp"])
def test_loop_takes_the_study_sgd_with_momentum_weight_decay_and_cosine_schedule(algorithm):
    data = images()
    ours, theirs = small_dchn(), small_dchn()
    rule = get_algorithm(algorithm, beta=PRESET["beta"])
    options = TrainOptions(epochs=3, batch_size=16, learning_rate=ours.per_parameter(RATES), schedule="cosine",
                           lr_floor=PRESET["lr_floor"], momentum=PRESET["momentum"],
                           weight_decay=PRESET["weight_decay"], augment="hflip", trace_every=0, progress=False)
    train(ours, data, rule, History(), options, log=lambda message: None)
    expected = study_loop(theirs, rule, data, theirs.per_parameter(RATES), epochs=3, batch=16,
                          momentum=PRESET["momentum"], weight_decay=PRESET["weight_decay"],
                          floor=PRESET["lr_floor"])
    assert np.array_equal(ours.parameters, expected)
    assert np.abs(expected - small_dchn().parameters).max() > 1e-3  # the steps moved theta


def test_ebl_dchn_cpu_preset_sets_the_study_optimiser_on_the_cpu_sized_network():
    config = resolve(preset="ebl-dchn-cpu")
    assert (config.schedule, config.lr_floor, config.momentum, config.weight_decay) == ("cosine", 2e-6, 0.9, 3e-4)
    assert (config.max_train, config.batch_size, config.epochs, config.beta) == (3000, 32, 10, 0.25)
    assert (config.augment, tuple(config.normalize), config.trace_every) == ("hflip", (0.2860, 0.3530), 0)
    system = load_system(config.model, **config.model_options)
    assert system.layer_shapes == [(14, 14, 16), (7, 7, 32), (10,)] and system.n_parameters == 20490
    assert system.max_iterations == (60, 15) and system.cost_scale == 0.5
    assert get_algorithm("tbp").iterations == system.max_iterations[1]  # tbp's K is the nudged budget


def test_ebl_dchn_cpu_sweeps_train_the_nine_rules_on_the_preset():
    rules = {}
    for name in ("ebl-dchn-cpu.json", "ebl-dchn-cpu-rbp.json"):
        spec = load_spec(os.path.join(SWEEPS, name))
        for point in spec.points:
            assert point.options["preset"] == "ebl-dchn-cpu"
            rules[point.options["algorithm"]] = point.options["algorithm_options"] or {}
    assert sorted(rules) == sorted(PRESET["algorithms"])
    assert rules["rbp"] == {"max_iterations": 40, "tolerance": 1e-4}


def test_preset_normalises_the_images_it_trains_on():
    from aeqprop_circuits.data.datasets import load_dataset
    from aeqprop_circuits.experiments.session import prepare

    try:
        raw = load_dataset("fmnist")
    except DatasetError as err:
        pytest.skip(str(err))
    setup = prepare(resolve(preset="ebl-dchn-cpu"), progress=False, echo=lambda message: None)
    mean, std = PRESET["normalize"]
    assert np.array_equal(setup.data.x_train[:100], (raw.x_train[:100] - mean) / std)
    assert setup.data.x_train.dtype == np.float32
    assert np.array_equal(setup.options.learning_rate, setup.system.per_parameter(RATES))
