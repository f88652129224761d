"""Where the Aeqprop authors' code relaxes or scores differently from ours, measured on the dense preset.

    OPENBLAS_NUM_THREADS=1 python scripts/hopfield_reference_checks.py [--checkpoint RUN/checkpoints/latest.npz]

1. Threshold unit. Our convergence test is the batch mean of the L1 change summed over layers;
   the authors' code (bscellier/agnostic-equilibrium-propagation) stops when every layer's L1
   change summed over the batch is below the threshold, about batch-size times stricter. This
   settles one batch of 32 training images at initialisation at the preset's threshold, at
   1/32 of it and at 1e-7, and prints the iterations of the free, -beta/2 and +beta/2 phases
   and the L1 size of the centered EP signal s(+beta/2) - s(-beta/2) per layer.
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
from aeqprop_circuits.hopfield import PRESETS, build_model
from aeqprop_circuits.physics.system import Phase


def threshold_unit(data, half):
    x = data.x_train[:32].astype(np.float32)
    y = np.eye(10, dtype=np.float32)[data.y_train[:32]]
    print("threshold  iterations (free, -beta/2, +beta/2)  L1 of s(+beta/2) - s(-beta/2): hidden, output")
    for threshold in (1e-3, 1e-3 / 32, 1e-7):
        net = build_model("aeqprop-dense", seed=0)
        net.threshold = threshold
        free = net.settle(Phase(x))
        minus = net.settle(Phase(x, -half, y), start=free)
        plus = net.settle(Phase(x, half, y), start=free)
        signal = [float(np.abs(p - m).sum()) for p, m in zip(plus.layers, minus.layers)]
        print(f"{threshold:9.3g}  {free.iterations:4d} {minus.iterations:4d} {plus.iterations:4d}"
              f"                          {signal[0]:.6f}, {signal[1]:.6f}")


def warm_start(data, half, checkpoint):
    net = build_model("aeqprop-dense", seed=0)
    net.parameters = np.load(checkpoint)["parameters"]
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
    net = build_model("aeqprop-dense", seed=0)
    net.parameters = np.load(checkpoint)["parameters"]
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
    parser.add_argument("--checkpoint", help="a trained aeqprop-dense checkpoint (.npz) for checks 2 and 3")
    args = parser.parse_args()
    data = load_dataset("fmnist")
    half = PRESETS["aeqprop-dense"]["beta"] / 2
    threshold_unit(data, half)
    if args.checkpoint:
        warm_start(data, half, args.checkpoint)
        unclipped_prediction(data, args.checkpoint)


if __name__ == "__main__":
    main()
