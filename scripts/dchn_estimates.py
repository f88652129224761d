"""Issue 6: how p-ep, n-ep and c-ep estimates compare with the converged rbp gradient on the DCHN.

On the first 32 Fashion-MNIST training images, at the initial parameters of
`scripts/dchn_compare.py` (same network, seed and β), prints for each relaxation budget
(T free, K nudged iterations) each rule's cosine with the rbp gradient at a converged fixed
point (400 iterations) and the ratio of their norms. A rule whose estimate is longer takes a
longer step at the same learning rate.

    OPENBLAS_NUM_THREADS=1 python scripts/dchn_estimates.py
    OPENBLAS_NUM_THREADS=1 python scripts/dchn_estimates.py --cost-scale 1 --bias-init zero  # sessions 5-6

It takes dchn_compare.py's options (network, β, cost scale, initialisation); the budgets are fixed.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import dchn_compare  # noqa: E402
import numpy as np  # noqa: E402

from aeqprop_circuits.data.datasets import load_dataset  # noqa: E402
from aeqprop_circuits.learning.algorithms import get_algorithm  # noqa: E402

BUDGETS = [(20, 8), (60, 15), (400, 400)]  # the comparison's, the study's, converged


def main():
    args = dchn_compare.parse_args()
    data = load_dataset("fmnist", seed=0)
    x = ((data.x_train[:32] - dchn_compare.MEAN) / dchn_compare.STD).astype(np.float32)
    target = np.eye(10)[data.y_train[:32]]
    args.free_iterations = args.nudged_iterations = 400
    reference = get_algorithm("rbp", max_iterations=400, tolerance=1e-7).estimate(
        dchn_compare.make_net(args), x, target).gradient
    print(f"beta {args.beta}, |rbp gradient| {np.linalg.norm(reference):.4g}")
    for free, nudged in BUDGETS:
        args.free_iterations, args.nudged_iterations = free, nudged
        cells = [f"T={free} K={nudged}"]
        for name in ("p-ep", "n-ep", "c-ep"):
            g = get_algorithm(name, beta=args.beta).estimate(dchn_compare.make_net(args), x, target).gradient
            cosine = g @ reference / (np.linalg.norm(g) * np.linalg.norm(reference))
            cells.append(f"{name}: cosine {cosine:.4f}, norm {np.linalg.norm(g) / np.linalg.norm(reference):.2f}x")
        print(" | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
