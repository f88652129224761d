"""Aeqprop-centered against c-ep on the drn-xs circuit (input gain 100): which input-block epsilon keeps the EP step?

    OPENBLAS_NUM_THREADS=1 python scripts/drn_aeqprop_epsilon.py [SWEEPS]     # block sweeps per phase, default 4

Float64 DRN 1568-100-10 with the preset's input gain and 4 block sweeps, 16 Fashion-MNIST
training images, beta = 0.1, oracle controller. For 1 and 20 parameter-relaxation rounds and
the input block's epsilon at 3e-4 (= lr / beta of the preset), 3e-6 and 3e-8 (other blocks at
lr / beta = 0.3), prints the cosine between the Aeqprop step / (epsilon beta) and the c-ep
estimate at +-beta/2, for the input block and the rest, and their norm ratios; and the cosine of
the input block's Aeqprop step with the in-place c-ep step it is equivalent to with one relaxation
(`Aeqprop.nudge_contrast`: the same phases, the same rates, the same clip at zero conductance),
with the fraction of input conductances that step clips at 0.
"""

from __future__ import annotations

import sys

import numpy as np

from aeqprop_circuits.data.datasets import load_dataset
from aeqprop_circuits.experiments.inplace import ep_step
from aeqprop_circuits.learning.algorithms import get_algorithm
from aeqprop_circuits.systems.drn import DRNSystem


def cosine(u, v):
    return float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))


def main(sweeps: int = 4):
    data = load_dataset("fmnist")
    x, y = data.x_train[:16], 0.5 * np.eye(10)[data.y_train[:16]]
    beta = 0.1
    print("| relax rounds | epsilon (input block) | cosine input block | cosine rest | norm ratio input "
          "| norm ratio rest | cosine input block, in-place c-ep step | input conductances clipped |")
    print("|---|---|---|---|---|---|---|---|")
    for rounds in (1, 20):
        for epsilon_in in (3e-4, 3e-6, 3e-8):
            system = DRNSystem([784, 100, 10], seed=0, input_gain=100.0, iterations=sweeps)
            epsilon = system.per_parameter({"w1": epsilon_in, "w2": 0.3, "b": 0.3})
            rule = get_algorithm("aeqprop-centered", beta=beta, epsilon=epsilon, controller="oracle",
                                 relax_rounds=rounds)
            a = rule.estimate(system, x, y).gradient
            c = get_algorithm("c-ep", beta=beta / 2).estimate(system, x, y).gradient
            w1 = system._slices[0]
            rest = slice(w1.stop, None)
            contrast, spread = get_algorithm("aeqprop-centered", beta=beta, epsilon=epsilon, controller="oracle",
                                             relax_rounds=1).nudge_contrast()
            before = system.parameters.copy()
            ep_step(system, contrast, x.astype(system.dtype), y, system.in_place_rates(epsilon * spread))
            in_place = (before - system.parameters) / (epsilon * spread)
            clipped = float(np.mean(system.parameters[w1] == 0.0))
            print(f"| {rounds} | {epsilon_in:g} | {cosine(a[w1], c[w1]):.4f} | {cosine(a[rest], c[rest]):.4f} | "
                  f"{np.linalg.norm(a[w1]) / np.linalg.norm(c[w1]):.3f} | "
                  f"{np.linalg.norm(a[rest]) / np.linalg.norm(c[rest]):.3f} | "
                  f"{cosine(a[w1], in_place[w1]):.4f} | {clipped:.3f} |")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
