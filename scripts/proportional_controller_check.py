"""The agnostic (proportional) controller against the oracle on a shipped netlist.

    OPENBLAS_NUM_THREADS=1 python scripts/proportional_controller_check.py [--model netlists/iris.cir] \
        [--data iris] [--epsilon 0.1 0.5 1 2 10 | --fraction 0.5 0.7 0.8 0.9] [--beta 0.2] [--samples 10]

Prints the largest |eigenvalue| of the Hessian of F(theta) = min_s E on the first training
samples (by differences of dE/dtheta), the bound 1/|h| on epsilon below which a proportional
hold can converge (docs/training.md, "The proportional controller"), then, for each epsilon,
the relative difference between the centered-Aeqprop estimates of the proportional controller
(with and without its adaptive gain) and of the oracle, or the error the hold stops with, and
the parameter where the adaptive controller's step differs most from the oracle's (and the
relative difference of all the others). `--fraction` gives epsilon as fractions of the bound.

`step_check` says whether the adaptive controller's step passes Aeqprop's default check (the
holds' residual at most 0.1 of the step, learning.algorithms.operate) or the error it stops
with. The difference is measured without the check, so it shows what a step that passes or
fails it would have been.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from aeqprop_circuits.data.datasets import load_dataset
from aeqprop_circuits.errors import DivergenceError
from aeqprop_circuits.learning.algorithms import operate
from aeqprop_circuits.learning.lyapunov import free_energy_curvature
from aeqprop_circuits.systems.knobs import KnobHandle, OracleController, ProportionalController
from aeqprop_circuits.systems.models import load_system


def step(system, controller, x, y, beta, epsilon, step_rtol=None):
    return operate(KnobHandle(system, epsilon), controller, x, y, -beta / 2, beta / 2, 1, step_rtol)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="netlists/iris.cir")
    p.add_argument("--data", default="iris")
    p.add_argument("--epsilon", type=float, nargs="+", default=[0.1, 0.5, 1.0, 2.0, 10.0])
    p.add_argument("--fraction", type=float, nargs="+", help="epsilon as fractions of the bound 1/|h|")
    p.add_argument("--beta", type=float, default=0.2)
    p.add_argument("--samples", type=int, default=10)
    p.add_argument("--target-amplitude", type=float, default=0.5)
    args = p.parse_args()
    system = load_system(args.model)
    data = load_dataset(args.data)
    x = data.x_train[:args.samples]
    y = data.targets(data.y_train[:args.samples], system.n_outputs, args.target_amplitude)
    h = free_energy_curvature(system, x, y)
    print(json.dumps({"model": args.model, "curvature": round(h, 4), "epsilon_bound": round(1 / h, 4)}))
    theta = system.parameters
    for epsilon in [f / h for f in args.fraction] if args.fraction else args.epsilon:
        oracle = step(system, OracleController(system), x, y, args.beta, epsilon) - theta
        row = {"epsilon": float(f"{epsilon:.4g}"), "a": round(epsilon * h, 3)}
        for name, adaptive in (("adaptive", True), ("fixed_gain", False)):
            try:
                if adaptive:  # the default check only raises: a step it passes is the unchecked step
                    try:
                        proportional = step(system, ProportionalController(), x, y, args.beta, epsilon, 0.1) - theta
                        row["step_check"] = "passes"
                    except DivergenceError as err:
                        row["step_check"] = str(err).split(":")[0]
                        proportional = step(system, ProportionalController(), x, y, args.beta, epsilon) - theta
                else:
                    proportional = step(system, ProportionalController(adaptive=False), x, y, args.beta,
                                        epsilon) - theta
            except DivergenceError as err:
                row[name] = str(err).split(":")[0]
                continue
            row[name] = float(f"{np.linalg.norm(proportional - oracle) / np.linalg.norm(oracle):.2g}")
            if adaptive:  # where the two steps differ most
                k = int(np.argmax(np.abs(proportional - oracle)))
                rest = np.linalg.norm(np.delete(proportional - oracle, k)) / np.linalg.norm(oracle)
                row["worst"] = {"index": k, "theta": float(f"{theta[k]:.4g}"), "oracle_step": float(f"{oracle[k]:.3g}"),
                                "proportional_step": float(f"{proportional[k]:.3g}"), "others": float(f"{rest:.2g}")}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
