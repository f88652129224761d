"""A prior over device-mismatched copies of one netlist, meta-learnt so that K in-situ steps adapt a new copy.

The study, per seed: the netlist as designed (the model) is trained with the exact gradient on
the data; its parameters are the *model-trained* start. Copies of the netlist with element values
off by a relative spread sigma (systems/hardware.py `mismatch`, one hardware seed per copy) are
the tasks of a bilevel system (systems/mismatch_tasks.py): the lower level is K full-batch
steps of in-situ EP (c-ep measured on the copy) on a support set, from the prior; the upper
level is the copy's squared error on query points. The prior starts at the model-trained
parameters and is meta-learnt over training copies by first-order MAML (the query loss's
gradient at the adapted parameters, also measured in situ by c-ep). Held-out copies then start
from either the model-trained parameters or the meta-learnt prior and take the same K steps;
the table reports their test MSE before and after the steps, next to the model's own (nominal)
test MSE.

`python -m aeqprop_circuits.experiments.mismatch_meta --out DIR` runs it; records go to
DIR/summary.json after every seed (a rerun skips the seeds done) and the table to DIR/table.md.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from aeqprop_circuits.data.datasets import load_dataset
from aeqprop_circuits.experiments.rundir import atomic_write
from aeqprop_circuits.learning.algorithms import get_algorithm
from aeqprop_circuits.systems.base import Phase
from aeqprop_circuits.systems.bilevel import BilevelSystem, InnerSolve
from aeqprop_circuits.systems.mismatch_tasks import MismatchedCopies

NETLIST = os.path.join(os.path.dirname(__file__), "..", "..", "netlists", "regression_fourier.cir")


def in_situ(beta: float):
    """The copies' gradient measurement: c-ep's estimate on the copy itself."""
    rule = get_algorithm("c-ep", beta=beta)

    def measure(system, inputs, target):
        estimate = rule.estimate(system, inputs, target)
        return estimate.outputs, estimate.gradient

    return measure


def test_mse(copies: MismatchedCopies, phi: np.ndarray, rows: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mean squared test error of each copy (T,) programmed with phi (T, P)."""
    return np.array([((copies.run(p, row, x)[0] - y) ** 2).mean() for p, row in zip(phi, rows)])


def adapted(system: BilevelSystem, prior: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """phi after the lower level's K steps from `prior` on each copy (T, P)."""
    system.parameters = prior
    return system.settle(Phase(rows)).phi


def run_seed(seed: int, netlist: str = NETLIST, data: str = "regression:fourier", mismatch: float = 0.05,
             steps: int = 5, rate: float = 2.0, beta: float = 0.01, strength: float = 1e-3, support: int = 50,
             queries: int = 50, train_copies: int = 20, test_copies: int = 10, meta_steps: int = 30,
             meta_batch: int = 4, lr: float = 0.2, momentum: float = 0.5, model_epochs: int = 20,
             log=print) -> dict:
    """One seed of the study (module docstring); a record of its numbers."""
    from aeqprop_circuits.experiments.session import train

    began = time.time()
    model = train(netlist, data=data, algorithm="exact-gradient", epochs=model_epochs, seed=seed).system
    task = load_dataset(data, seed=seed)
    y_train = task.targets(task.y_train, model.n_outputs, 0.5)
    y_test = task.targets(task.y_test, model.n_outputs, 0.5)
    xs, ys = task.x_train[:support], y_train[:support]
    xq, yq = task.x_train[support:support + queries], y_train[support:support + queries]
    nominal = float(((model.predict(task.x_test) - y_test) ** 2).mean())
    copies = MismatchedCopies(model, mismatch, (xs, ys), xq, measure=in_situ(beta))
    system = BilevelSystem(copies, prior=copies.initial, strength=strength, inner=InnerSolve("gd", steps, rate=rate),
                           check=False)
    train_rows = (1000 * seed + 1 + np.arange(train_copies, dtype=float))[:, None]
    test_rows = (1000 * seed + 501 + np.arange(test_copies, dtype=float))[:, None]
    start = copies.initial.copy()
    record = {"seed": seed, "mismatch": mismatch, "steps": steps, "nominal_test_mse": nominal}
    before = test_mse(copies, np.tile(start, (test_copies, 1)), test_rows, task.x_test, y_test)
    after = test_mse(copies, adapted(system, start, test_rows), test_rows, task.x_test, y_test)
    record.update(model_start_mse=float(before.mean()), model_adapted_mse=float(after.mean()))
    rule, rng = get_algorithm("fomaml"), np.random.default_rng(seed)
    low, high = copies.bounds()
    prior, velocity = start.copy(), np.zeros_like(start)
    targets = np.tile(yq.ravel(), (meta_batch, 1))
    for _ in range(meta_steps):
        rows = train_rows[rng.choice(train_copies, meta_batch, replace=False)]
        system.parameters = prior
        gradient = rule.estimate(system, rows, targets).gradient
        velocity = momentum * velocity + gradient
        prior = np.clip(prior - lr * velocity, low, high)
    before = test_mse(copies, np.tile(prior, (test_copies, 1)), test_rows, task.x_test, y_test)
    after = test_mse(copies, adapted(system, prior, test_rows), test_rows, task.x_test, y_test)
    record.update(meta_start_mse=float(before.mean()), meta_adapted_mse=float(after.mean()),
                  meta_adapted_std=float(after.std()), seconds=round(time.time() - began, 1))
    log(json.dumps(record))
    return record


TABLE_KEYS = (("nominal_test_mse", "model on the model (nominal)"), ("model_start_mse", "model-trained, step 0"),
              ("model_adapted_mse", "model-trained, after K steps"), ("meta_start_mse", "meta-learnt prior, step 0"),
              ("meta_adapted_mse", "meta-learnt prior, after K steps"))


def table(records: list[dict]) -> str:
    lines = ["| parameters on held-out copies | test MSE (V²), mean ± std over seeds |", "|---|---|"]
    for key, label in TABLE_KEYS:
        values = np.array([r[key] for r in records])
        lines.append(f"| {label} | {values.mean():.5f} ± {values.std():.5f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Meta-learn a prior over device-mismatched copies of a netlist.")
    parser.add_argument("--out", required=True, help="study directory (summary.json, table.md)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--mismatch", type=float, default=0.05)
    parser.add_argument("--steps", type=int, default=5, help="K: in-situ steps on a copy")
    parser.add_argument("--meta-steps", type=int, default=30)
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "summary.json")
    records = json.load(open(path)) if os.path.exists(path) else []
    done = {r["seed"] for r in records}
    for seed in range(args.seeds):
        if seed not in done:
            records.append(run_seed(seed, mismatch=args.mismatch, steps=args.steps, meta_steps=args.meta_steps))
            atomic_write(path, json.dumps(records, indent=2) + "\n")
    text = table(records)
    atomic_write(os.path.join(args.out, "table.md"), text + "\n")
    print(text)


if __name__ == "__main__":
    main()
