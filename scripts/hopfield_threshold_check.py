"""Does the relaxation threshold's unit matter? (Aeqprop dense preset, centered phases at initialisation.)

    OPENBLAS_NUM_THREADS=1 python scripts/hopfield_threshold_check.py

Our convergence test is the batch mean of the L1 change summed over layers; the authors' code
stops when every layer's L1 change summed over the batch is below the threshold, about
batch-size times stricter. This settles one batch of 32 training images at the preset's
threshold, at 1/32 of it and at 1e-7, and prints the iterations of the free, -beta/2 and
+beta/2 phases and the L1 size of the centered EP signal (s(+beta/2) - s(-beta/2)) per layer.
"""

from __future__ import annotations

import numpy as np

from aeqprop_circuits.data.datasets import load_dataset
from aeqprop_circuits.hopfield import PRESETS, build_model
from aeqprop_circuits.physics.system import Phase


def main():
    data = load_dataset("fmnist")
    x = data.x_train[:32].astype(np.float32)
    y = np.eye(10, dtype=np.float32)[data.y_train[:32]]
    half = PRESETS["aeqprop-dense"]["beta"] / 2
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


if __name__ == "__main__":
    main()
