"""Aeqprop-centered (oracle controller) against centered EP on a DRN: how small must epsilon be?

    python scripts/drn_aeqprop_check.py

Prints a Markdown table: for input gains 1 and 10 and several epsilon, the cosine between
the Aeqprop-centered step (theta_before - theta_after) / (epsilon beta) and the c-ep estimate
at the same nudges (+-beta/2), and the ratio of their norms, on a float64 DRN 40-16-10
(Fashion-MNIST images 0..15 averaged down to 40 pixels when installed, else random inputs).
Theorem 1 of the Aeqprop paper gives a step -epsilon beta grad L + O(epsilon^2 beta + epsilon beta^2);
the epsilon^2 term scales with the squared voltages across the trainable resistors, i.e.
with the input gain squared.
"""

from __future__ import annotations

import numpy as np

from aeqprop_circuits.learning.algorithms import get_algorithm
from aeqprop_circuits.systems.drn import DRNSystem


def inputs():
    try:
        from aeqprop_circuits.data.datasets import load_dataset

        data = load_dataset("fmnist")
        x = data.x_train[:16].reshape(16, 40, -1)[:, :, :19].mean(axis=2)
        return x, np.eye(10)[data.y_train[:16]]
    except Exception:  # noqa: BLE001
        rng = np.random.default_rng(0)
        return rng.uniform(0, 1, (16, 40)), np.eye(10)[rng.integers(0, 10, 16)]


def main():
    x, y = inputs()
    beta = 0.2
    print("| input gain | epsilon | cosine(Aeqprop step, c-ep) | norm ratio |")
    print("|---|---|---|---|")
    for gain in (1.0, 10.0):
        for epsilon in (1e-2, 1e-3, 1e-4, 1e-5):
            system = DRNSystem([40, 16, 10], seed=0, input_gain=gain)
            aeq = get_algorithm("aeqprop-centered", beta=beta, epsilon=epsilon, controller="oracle")
            a = aeq.estimate(system, x, y).gradient
            c = get_algorithm("c-ep", beta=beta / 2).estimate(system, x, y).gradient
            cosine = a @ c / np.linalg.norm(a) / np.linalg.norm(c)
            print(f"| {gain:g} | {epsilon:g} | {cosine:.4f} | {np.linalg.norm(a) / np.linalg.norm(c):.3f} |")


if __name__ == "__main__":
    main()
