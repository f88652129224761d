"""Tune DRN hyperparameters on a validation split of Fashion-MNIST (never the test set).

    OPENBLAS_NUM_THREADS=1 nice python scripts/drn_tune.py '{"lr": [3e-5, 0.03, 0.03], "gain": 100, "amp": 0.5}'

Trains `DRNSystem` with the in-place c-ep loop (runs/inplace.py) on the first `n` of the first
50 000 training images for `passes` passes and prints the error (%) on training images
50 000-59 999 after each pass, with the wall time. Keys of the JSON configuration: model
(drn spec), lr (scalar or [w1, ..., bias] per block), decay (rates times decay after each pass, as
lr_decay per epoch), gain (input gain), amp (target amplitude), beta, n,
passes, batch, init, seed. The results that chose the drn-* presets are in docs/drn.md.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from aeqprop_circuits.data.datasets import load_dataset
from aeqprop_circuits.experiments.inplace import ep_step
from aeqprop_circuits.learning.algorithms import get_algorithm
from aeqprop_circuits.systems.base import Phase
from aeqprop_circuits.systems.drn import DRNSystem

TRAIN, VALIDATION = slice(0, 50_000), slice(50_000, 60_000)


def validation_errors(model="drn:1568-100-10", lr=0.01, decay=1.0, gain=10.0, amp=1.0, beta=0.1, n=20_000, passes=1,
                      batch=4, init="builder", seed=0):
    data = load_dataset("fmnist")
    x_train, x_val = data.x_train[TRAIN].astype(np.float32), data.x_train[VALIDATION].astype(np.float32)
    y_val = data.y_train[VALIDATION]
    targets = data.targets(data.y_train[TRAIN], 10, amp).astype(np.float32)
    system = DRNSystem.from_spec(model, seed=seed, iterations=4, dtype="float32", input_gain=gain, init=init)
    steps = system.block_steps(system.per_parameter(lr))
    rule = get_algorithm("c-ep", beta=beta)
    errors, began = [], time.time()
    for p in range(passes):
        order = np.random.default_rng([seed, p]).permutation(len(x_train))[:n]
        for start in range(0, n, batch):
            index = order[start:start + batch]
            ep_step(system, rule, x_train[index], targets[index], steps)
        outputs = np.concatenate([system.outputs(system.settle(Phase(x_val[i:i + 1000])))
                                  for i in range(0, len(x_val), 1000)])
        errors.append(round(100.0 * float((outputs.argmax(axis=1) != y_val).mean()), 2))
        steps = [s * decay for s in steps]
    return errors, round(time.time() - began, 1)


if __name__ == "__main__":
    config = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    errors, seconds = validation_errors(**config)
    print(json.dumps({"config": config, "validation_error": errors, "seconds": seconds}), flush=True)
