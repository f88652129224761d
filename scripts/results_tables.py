"""Tables of docs/results.md from the point directories of algorithm sweeps.

    python scripts/results_tables.py runs/sweeps/v2-iris-algorithms runs/sweeps/v2-iris-aeqprop
    python scripts/results_tables.py --seeds runs/sweeps/v2-iris-algorithms runs/sweeps/v2-iris-aeqprop
    python scripts/results_tables.py runs/sweeps/iris-proportional    # a directory of run directories

Reads each point's metrics.csv (finished or not), so it can report while a sweep still runs:
final test accuracy (mean ± std over the seeds that finished every epoch), the number of
seeds, the mean seconds per epoch, and from steps.jsonl the number of traced steps and of
Lyapunov increases beyond tolerance (summed over the seeds, finished or not), the largest
increase, and the largest relative change (after - before) / |before| (negative: every step
lowered L, by at least that fraction).

A traced step is an increase when

    lyapunov_after - lyapunov_before > REL_TOL * |lyapunov_before| + ABS_TOL

(L_{beta1;beta2} of the step's batch, measured before and after the step, steps.jsonl). The
tolerance is the one of tests/test_learning.py's Theorem-2 test, far above what the solvers
leave: every settle is exact to rounding (ideal-diode DRNs: block updates or the Newton step
below 1e-13 V relative, exact once the set of clipped nodes is fixed), so F(beta) carries
~1e-15 relative rounding over a few hundred terms, and L = [F(b2) - F(b1)] / (b2 - b1) with
b2 - b1 >= 0.2 and |F| / |L| ~ 10^2 amplifies that to ~1e-12 relative at most.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections import defaultdict

import numpy as np

REL_TOL, ABS_TOL = 1e-9, 1e-12


def rows(sweep_dir: str):
    """(point values, metrics rows, epochs asked, steps.jsonl path) of each point of an `aeqprop sweep`
    directory, or of each run directory (one holding config.json) inside a plain directory."""
    spec = os.path.join(sweep_dir, "sweep_spec.json")
    if os.path.exists(spec):
        with open(spec) as f:
            epochs = json.load(f).get("base", {}).get("epochs")
        points = os.path.join(sweep_dir, "points")
        runs = [(os.path.join(points, name), dict(part.split("=", 1) for part in name.split(",")), epochs)
                for name in sorted(os.listdir(points))]
    else:
        runs = []
        for name in sorted(os.listdir(sweep_dir)):
            config = os.path.join(sweep_dir, name, "config.json")
            if os.path.exists(config):
                with open(config) as f:
                    values = json.load(f)
                runs.append((os.path.join(sweep_dir, name), values, values.get("epochs")))
    for run, values, epochs in runs:
        path = os.path.join(run, "metrics.csv")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            metrics = list(csv.DictReader(f))
        yield values, metrics, epochs, os.path.join(run, "steps.jsonl")


def lyapunov_counts(steps_path: str) -> tuple[int, int, float, float]:
    """(traced steps, increases beyond tolerance, largest increase, largest relative change) of a steps.jsonl.

    The largest relative change, max (after - before) / |before| over the steps, is negative when
    every step lowered L: how close the run came to an increase.
    """
    traced, increases, worst, closest = 0, 0, 0.0, -np.inf
    if not os.path.exists(steps_path):
        return traced, increases, worst, closest
    with open(steps_path) as f:
        for line in f:
            record = json.loads(line)
            before, after = record.get("lyapunov_before"), record.get("lyapunov_after")
            if before is None or after is None:
                continue
            traced += 1
            change = after - before
            if before:
                closest = max(closest, change / abs(before))
            if change > REL_TOL * abs(before) + ABS_TOL:
                increases += 1
                worst = max(worst, change)
    return traced, increases, worst, closest


def table(sweep_dirs: list[str]) -> str:
    groups = defaultdict(lambda: {"acc": [], "sec": [], "running": 0, "traced": 0, "increases": 0, "worst": 0.0,
                                  "closest": -np.inf})
    for sweep in sweep_dirs:
        for values, metrics, epochs, steps in rows(sweep):
            group = groups[values["algorithm"]]
            group["sec"] += [float(m["seconds"]) for m in metrics]
            if metrics and epochs and int(metrics[-1]["epoch"]) >= epochs:
                group["acc"].append(float(metrics[-1]["test_accuracy"]))
            else:
                group["running"] += 1
            traced, increases, worst, closest = lyapunov_counts(steps)
            group["traced"] += traced
            group["increases"] += increases
            group["worst"] = max(group["worst"], worst)
            group["closest"] = max(group["closest"], closest)
    lines = ["| algorithm | test accuracy (%) | seeds finished | s / epoch | traced steps | Lyapunov increases "
             "| largest increase | largest relative change |", "|---|---|---|---|---|---|---|---|"]
    for name, g in groups.items():
        acc = np.array(g["acc"]) * 100
        shown = f"{acc.mean():.1f} ± {acc.std():.1f}" if len(acc) else "–"
        seconds = f"{np.mean(g['sec']):.1f}" if g["sec"] else "–"
        worst = f"{g['worst']:.2g}" if g["increases"] else "–"
        closest = f"{g['closest']:+.1e}" if g["traced"] else "–"
        lines.append(f"| {name} | {shown} | {len(acc)}" + (f" (+{g['running']} unfinished)" if g["running"] else "")
                     + f" | {seconds} | {g['traced']} | {g['increases']} | {worst} | {closest} |")
    return "\n".join(lines)


def per_seed(sweep_dirs: list[str]) -> str:
    """Final test accuracy (%) of every finished point, per algorithm, by seed."""
    found = defaultdict(dict)
    for sweep in sweep_dirs:
        for values, metrics, epochs, _ in rows(sweep):
            if metrics and epochs and int(metrics[-1]["epoch"]) >= epochs:
                found[values["algorithm"]][int(values["seed"])] = 100 * float(metrics[-1]["test_accuracy"])
    seeds = sorted({seed for by_seed in found.values() for seed in by_seed})
    lines = ["| algorithm | " + " | ".join(f"seed {s}" for s in seeds) + " |", "|---" * (len(seeds) + 1) + "|"]
    for name, by_seed in found.items():
        lines.append(f"| {name} | " + " | ".join(f"{by_seed[s]:.1f}" if s in by_seed else "–" for s in seeds) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--seeds"]:  # per-seed final test accuracies instead of the summary
        print(per_seed(sys.argv[2:]))
    else:
        print(table(sys.argv[1:]))
