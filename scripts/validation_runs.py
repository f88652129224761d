"""Hyperparameter runs on a validation split (the test split is never read): how the circuit
defaults were chosen (docs/results.md, Iris and Wine).

    python scripts/validation_runs.py '{"tag": "cep", "algorithm": "c-ep", "epochs": 60, "lr_decay": 0.97}' ...

Each JSON argument is one configuration: `aeqprop train` settings (config names, defaults from
runs/session.py), plus "tag" and optionally "model" (default netlists/iris.cir) and "data"
(default iris:validation, the training part of iris split again, stratified, into 96 train /
24 validation samples). Seeds 0-4 run one after the other into runs/validation/TAG-sSEED;
one line per configuration: validation accuracy (mean ± std over seeds, each seed) and the
Lyapunov trace (traced steps, increases beyond the tolerance of scripts/results_tables.py).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from results_tables import lyapunov_counts  # noqa: E402

from aeqprop_circuits.experiments.session import run_training  # noqa: E402

OUT = "runs/validation"


def run(tag: str, seeds=(0, 1, 2, 3, 4), **given) -> str:
    accuracies, traced, increases, worst, began = [], 0, 0, 0.0, time.time()
    for seed in seeds:
        out = os.path.join(OUT, f"{tag}-s{seed}")
        if os.path.exists(out):
            shutil.rmtree(out)
        options = {"data": "iris:validation", "seed": seed, "out": out, **given}
        model = options.pop("model", "netlists/iris.cir")
        run_training(model, None, True, options, echo=lambda *a: None)
        with open(os.path.join(out, "metrics.csv")) as f:
            metrics = list(csv.DictReader(f))
        accuracies.append(float(metrics[-1]["test_accuracy"]))
        n, k, w, _ = lyapunov_counts(os.path.join(out, "steps.jsonl"))
        traced, increases, worst = traced + n, increases + k, max(worst, w)
    a = np.array(accuracies) * 100
    return (f"{tag}: validation accuracy {a.mean():.1f} ± {a.std():.1f} % {np.round(a, 1).tolist()}, "
            f"traced steps {traced}, Lyapunov increases {increases}"
            + (f" (largest {worst:.2g})" if increases else "") + f", {time.time() - began:.0f} s")


if __name__ == "__main__":
    for spec in sys.argv[1:]:
        given = json.loads(spec)
        print(run(given.pop("tag"), **given), flush=True)
