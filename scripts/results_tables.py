"""Tables of docs/results.md from the point directories of algorithm sweeps.

    python scripts/results_tables.py runs/sweeps/iris-algorithms runs/sweeps/iris-aeqprop

Reads each point's metrics.csv (finished or not), so it can report while a sweep still runs:
final test accuracy (mean ± std over the seeds that finished every epoch), the number of
seeds, and the mean seconds per epoch.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections import defaultdict

import numpy as np


def rows(sweep_dir: str):
    with open(os.path.join(sweep_dir, "sweep_spec.json")) as f:
        epochs = json.load(f).get("base", {}).get("epochs")
    points = os.path.join(sweep_dir, "points")
    for name in sorted(os.listdir(points)):
        path = os.path.join(points, name, "metrics.csv")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            metrics = list(csv.DictReader(f))
        values = dict(part.split("=", 1) for part in name.split(","))
        yield values, metrics, epochs


def table(sweep_dirs: list[str]) -> str:
    groups = defaultdict(lambda: {"acc": [], "sec": [], "running": 0})
    for sweep in sweep_dirs:
        for values, metrics, epochs in rows(sweep):
            group = groups[values["algorithm"]]
            group["sec"] += [float(m["seconds"]) for m in metrics]
            if metrics and epochs and int(metrics[-1]["epoch"]) >= epochs:
                group["acc"].append(float(metrics[-1]["test_accuracy"]))
            else:
                group["running"] += 1
    lines = ["| algorithm | test accuracy (%) | seeds finished | s / epoch |", "|---|---|---|---|"]
    for name, g in groups.items():
        acc = np.array(g["acc"]) * 100
        shown = f"{acc.mean():.1f} ± {acc.std():.1f}" if len(acc) else "–"
        seconds = f"{np.mean(g['sec']):.1f}" if g["sec"] else "–"
        lines.append(f"| {name} | {shown} | {len(acc)}" + (f" (+{g['running']} unfinished)" if g["running"] else "")
                     + f" | {seconds} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(sys.argv[1:]))
