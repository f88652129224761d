"""Where the Aeqprop authors' code relaxes or scores differently from ours, measured on the dense preset.

    OPENBLAS_NUM_THREADS=1 python scripts/hopfield_reference_checks.py [--checkpoint RUN/checkpoints/latest.npz]

1. Threshold unit. Our convergence test is the batch mean of the L1 change summed over layers;
   the authors' code (bscellier/agnostic-equilibrium-propagation) stops when every layer's L1
   change summed over the batch is below the threshold, about batch-size times stricter. This
   settles 10 batches of 32 training images at the preset's threshold, at 1/32 of it and at
   1e-7, at initialisation or (with --checkpoint) on a trained network, and prints the
   iterations of the free, -beta/2 and +beta/2 phases, the L1 size of the centered EP signal
   s(+beta/2) - s(-beta/2) per layer and its relative difference from the signal at 1e-7.
   With --checkpoint it also scores the test set at each threshold.
2. Warm start (with --checkpoint, a trained network). The authors' free phase starts where the
   previous batch's last phase ended; ours starts from zero. If the energy had several minima
   (it is not convex once the output weights' spectral norm exceeds 1) the two could differ.
   This settles 19 batches both ways and prints the largest state difference per batch and how
   many predictions differ.
3. Unclipped prediction (with --checkpoint). The authors' code logs two test errors: the argmax
   of the output layer's state (clipped to its box [-1, 2]) and the argmax of its unclipped
   minimiser W s_hidden + b ("no_clipping"); the paper does not say which Table 1 reports.
   This scores the 10 000 test images both ways.
"""

from __future__ import annotations

import argparse

import numpy as np

from aeqprop_circuits.data.datasets import load_dataset
from aeqprop_circuits.systems.base import Phase
from aeqprop_circuits.systems.hopfield import PRESETS, build_model

THRESHOLDS = (1e-3, 1e-3 / 32, 1e-7)


def load_network(checkpoint=None):
    net = build_model("aeqprop-dense", seed=0)
    if checkpoint:
        net.parameters = np.load(checkpoint)["parameters"]
    return net


def threshold_unit(data, half, checkpoint=None):
    """Check 1 (at initialisation, or on a checkpoint): the relaxation at three thresholds."""
    rng = np.random.default_rng(0)
    batches = [rng.choice(len(data.x_train), 32, replace=False) for _ in range(10)]
    signals, iterations = {}, {}
    for threshold in THRESHOLDS:
        net = load_network(checkpoint)
        net.threshold = threshold
        signals[threshold], iterations[threshold] = [], []
        for index in batches:
            x = data.x_train[index].astype(np.float32)
            y = np.eye(10, dtype=np.float32)[data.y_train[index]]
            free = net.settle(Phase(x))
            minus = net.settle(Phase(x, -half, y), start=free)
            plus = net.settle(Phase(x, half, y), start=free)
            signals[threshold].append([p - m for p, m in zip(plus.layers, minus.layers)])
            iterations[threshold].append((free.iterations, minus.iterations, plus.iterations))
    reference = signals[THRESHOLDS[-1]]
    print("threshold  mean (max) iterations: free, -beta/2, +beta/2   "
          "L1 of s(+beta/2) - s(-beta/2) [relative L1 difference from 1e-7]: hidden, output")
    for threshold in THRESHOLDS:
        counts = np.array(iterations[threshold])
        spans = "  ".join(f"{m:5.1f} ({k:3d})" for m, k in zip(counts.mean(0), counts.max(0)))
        sizes = []
        for layer in range(2):
            size = sum(float(np.abs(batch[layer]).sum()) for batch in signals[threshold])
            gap = sum(float(np.abs(batch[layer] - ref[layer]).sum())
                      for batch, ref in zip(signals[threshold], reference))
            sizes.append(f"{size / len(batches):.4f} [{gap / max(size, 1e-30):.1e}]")
        print(f"{threshold:9.3g}  {spans}   {', '.join(sizes)}")
    if checkpoint:
        for threshold in THRESHOLDS:
            net = load_network(checkpoint)
            net.threshold = threshold
            wrong = sum(int((net.settle(Phase(data.x_test[i:i + 32].astype(np.float32))).layers[-1].argmax(1)
                             != data.y_test[i:i + 32]).sum()) for i in range(0, len(data.x_test), 32))
            print(f"threshold {threshold:.3g}: test error {100 * wrong / len(data.x_test):.2f} % (batches of 32)")


def warm_start(data, half, checkpoint):
    net = load_network(checkpoint)
    print(f"{checkpoint}: spectral norm of the output weights {np.linalg.norm(net.weights[1], 2):.3f}")
    rng = np.random.default_rng(0)
    differences, changed, previous = [], 0, None
    for _ in range(20):
        index = rng.choice(len(data.x_train), 32, replace=False)
        x = data.x_train[index].astype(np.float32)
        y = np.eye(10, dtype=np.float32)[data.y_train[index]]
        cold = net.settle(Phase(x))
        if previous is not None:
            warm = net.settle(Phase(x), start=previous)
            differences.append(max(float(np.abs(a - b).max()) for a, b in zip(cold.layers, warm.layers)))
            changed += int((cold.layers[-1].argmax(1) != warm.layers[-1].argmax(1)).sum())
        previous = net.settle(Phase(x, half, y), start=cold)  # a step's last phase
    print("largest |cold - warm| state difference per batch:", " ".join(f"{d:.4f}" for d in differences))
    print(f"predictions that differ: {changed} of {32 * len(differences)}")


def unclipped_prediction(data, checkpoint):
    net = load_network(checkpoint)
    wrong_clipped = wrong_unclipped = differ = 0
    for start in range(0, len(data.x_test), 1000):
        x, y = data.x_test[start:start + 1000].astype(np.float32), data.y_test[start:start + 1000]
        state = net.settle(Phase(x))
        clipped = state.layers[-1].argmax(1)
        unclipped = (net.interactions[-1].forward(state.layers[-2], net.weights[-1]) + net.biases[-1]).argmax(1)
        wrong_clipped += int((clipped != y).sum())
        wrong_unclipped += int((unclipped != y).sum())
        differ += int((clipped != unclipped).sum())
    n = len(data.x_test)
    print(f"test error, clipped output {100 * wrong_clipped / n:.2f} %, unclipped {100 * wrong_unclipped / n:.2f} %; "
          f"predictions that differ: {differ} of {n}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="a trained aeqprop-dense checkpoint (.npz): checks 1-3 run on it")
    args = parser.parse_args()
    data = load_dataset("fmnist")
    half = PRESETS["aeqprop-dense"]["beta"] / 2
    threshold_unit(data, half, args.checkpoint)
    if args.checkpoint:
        warm_start(data, half, args.checkpoint)
        unclipped_prediction(data, args.checkpoint)


if __name__ == "__main__":
    main()
