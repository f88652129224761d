"""Where the Aeqprop authors' code relaxes or reads out differently from ours, the difference does not matter.

On the aeqprop-dense preset's network (784-2048-10) and Fashion-MNIST images:
- their convergence test sums each layer's L1 change over the batch, about batch-size times
  stricter than ours (the batch mean summed over layers): the centered EP signal does not change;
- their free phase starts where the previous batch's last phase ended, ours from zero: the same state;
- they read the class from the output state (clipped to its box) or from its unclipped minimiser
  W s + b: the same class wherever the clipped state has one largest output.
"""

from __future__ import annotations

import numpy as np
import pytest

from aeqprop_circuits.data.datasets import load_dataset
from aeqprop_circuits.errors import DatasetError
from aeqprop_circuits.experiments.presets import PRESETS
from aeqprop_circuits.systems.base import Phase
from aeqprop_circuits.systems.models import load_system

PRESET = PRESETS["aeqprop-dense"]
HALF = PRESET["beta"] / 2
BATCH = 32


def network(output_scale: float = 1.0, **options):
    """The preset's initial network; `output_scale` multiplies the output weights and biases (at 1.3 their
    spectral norm is 1.16, above 1 as on a trained network, so the energy is not convex in the states)."""
    net = load_system(PRESET["model"], seed=0, **{**PRESET["model_options"], **options})
    scale = {"w1": 1.0, "b1": 1.0, "w2": output_scale, "b2": output_scale}
    net.parameters = net.parameters * net.per_parameter(scale)
    return net


@pytest.fixture(scope="module")
def images():
    try:
        data = load_dataset("fmnist")
    except DatasetError as err:
        pytest.skip(str(err))
    x = data.x_train[:2 * BATCH].astype(np.float32)
    return x[:BATCH], np.eye(10, dtype=np.float32)[data.y_train[:BATCH]], x[BATCH:]


def centered_signal(net, x, y) -> list:
    free = net.settle(Phase(x))
    minus, plus = net.settle(Phase(x, -HALF, y), start=free), net.settle(Phase(x, HALF, y), start=free)
    return [p - m for p, m in zip(plus.layers, minus.layers)]


def test_a_batch_summed_threshold_leaves_the_centered_ep_signal(images):
    x, y, _ = images
    threshold = PRESET["model_options"]["threshold"]
    ours, theirs = (centered_signal(network(threshold=t), x, y) for t in (threshold, threshold / BATCH))
    for a, b in zip(ours, theirs):
        assert np.abs(a - b).sum() < 1e-3 * np.abs(b).sum()


@pytest.mark.parametrize("output_scale", [1.0, 1.3])
def test_a_free_phase_warm_started_from_the_last_phase_reaches_the_cold_one(images, output_scale):
    x, y, next_x = images
    net = network(output_scale)
    last = net.settle(Phase(x, HALF, y), start=net.settle(Phase(x)))
    cold, warm = net.settle(Phase(next_x)), net.settle(Phase(next_x), start=last)
    assert max(float(np.abs(a - b).max()) for a, b in zip(cold.layers, warm.layers)) < 1e-3
    assert (net.outputs(cold).argmax(1) == net.outputs(warm).argmax(1)).all()


def test_the_clipped_output_names_the_class_of_its_unclipped_minimiser(images):
    x, _, _ = images
    net = network(output_scale=1.5)  # some outputs reach their box
    state = net.settle(Phase(x))
    clipped = state.layers[-1]
    unclipped = net.interactions[-1].forward(state.layers[-2], net.weights[-1]) + net.biases[-1]
    low, high = PRESET["model_options"]["bounds"][-1]
    assert ((clipped <= low) | (clipped >= high)).any()
    one_largest = (clipped == clipped.max(axis=1, keepdims=True)).sum(axis=1) == 1
    assert one_largest.sum() > BATCH // 2
    assert (clipped.argmax(1) == unclipped.argmax(1))[one_largest].all()
