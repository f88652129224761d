"""Test error of a DRN checkpoint with more block sweeps at evaluation than it was trained with.

    OPENBLAS_NUM_THREADS=1 python scripts/drn_converged_eval.py runs/drn/1h-universal-seed0 [--epoch 100]

A training run settles every phase with a fixed number of sweeps (4 in the presets) and is
evaluated the same way. This asks whether that number is the network's, i.e. whether the
classification changes when the evaluation settles further: 4, 8 and 16 sweeps in the run's
dtype, then to convergence in float64. One line per setting.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from aeqprop_circuits.data.datasets import load_dataset
from aeqprop_circuits.experiments.trainer import TrainOptions, evaluate
from aeqprop_circuits.systems.models import load_system


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("--epoch", type=int, help="checkpoint epoch [default: the latest]")
    args = p.parse_args()
    config = json.load(open(os.path.join(args.run_dir, "config.json")))
    name = f"epoch{args.epoch:04d}.npz" if args.epoch else "latest.npz"
    with np.load(os.path.join(args.run_dir, "checkpoints", name)) as saved:
        theta, epoch = saved["parameters"], int(saved["epoch"])
    data = load_dataset(config["data"])
    options = dict(config.get("model_options", {}))
    trained_dtype = options.get("dtype", "float64")
    for iterations, dtype in ((4, trained_dtype), (8, trained_dtype), (16, trained_dtype), (None, "float64")):
        system = load_system(config["model"], seed=config["seed"], **{**options, "iterations": iterations,
                                                                       "dtype": dtype})
        system.parameters = theta
        error = 100.0 * (1.0 - evaluate(system, data, data.x_test, data.y_test, TrainOptions(eval_batch=1000))[1])
        print(json.dumps({"run": args.run_dir, "epoch": epoch, "iterations": iterations or "converged",
                          "dtype": dtype, "test_error": round(error, 2)}), flush=True)


if __name__ == "__main__":
    main()
