"""Results over run directories, finished or still running: accuracy over seeds, and Lyapunov counts.

A path is a run directory (it holds config.json), a sweep directory (`aeqprop sweep`'s
points/) or a directory of run directories. Each run's config.json says what it is (rule,
seed, epochs asked), its metrics.csv how far it got, its steps.jsonl the Lyapunov function
L_{beta1;beta2} of each traced step's batch, measured before and after the step.

A traced step is an increase when it raised L beyond the settles' numerical tolerance, as the
training loop counts it in metrics.csv (`experiments.trainer.lyapunov_rise`).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from aeqprop_circuits.errors import AeqpropError
from aeqprop_circuits.experiments.sweep.runner import read_metrics
from aeqprop_circuits.experiments.trainer import lyapunov_rise


class LyapunovCounts(NamedTuple):
    traced: int  # steps with L measured before and after
    increases: int  # of those, steps that raised L beyond the settles' tolerance
    largest_increase: float  # largest L_after - L_before among the increases (0 if none)
    largest_relative_change: float  # max (L_after - L_before) / |L_before|; negative: every step lowered L


def lyapunov_counts(steps_path: str) -> LyapunovCounts:
    """The Lyapunov trace of a steps.jsonl (no file: nothing traced)."""
    traced, increases, largest, closest = 0, 0, 0.0, -math.inf
    if os.path.exists(steps_path):
        with open(steps_path) as f:
            for line in f:
                record = json.loads(line)
                before, after = record.get("lyapunov_before"), record.get("lyapunov_after")
                if before is None or after is None:
                    continue
                traced += 1
                if before:
                    closest = max(closest, (after - before) / abs(before))
                rise = lyapunov_rise(before, after)
                if rise > 0:
                    increases += 1
                    largest = max(largest, rise)
    return LyapunovCounts(traced, increases, largest, closest)


@dataclass(frozen=True)
class RunRecord:
    path: str
    config: dict
    metrics: list  # metrics.csv rows as floats
    lyapunov: LyapunovCounts

    @property
    def finished(self) -> bool:
        epochs = self.config.get("epochs")
        return bool(self.metrics) and epochs is not None and self.metrics[-1].get("epoch", 0) >= epochs

    @property
    def final_test_accuracy(self) -> float:
        return self.metrics[-1].get("test_accuracy", math.nan) if self.metrics else math.nan


def run_directories(path: str) -> list[str]:
    """The run directories a path names: itself, a sweep's points, or the run directories inside it."""
    if os.path.isfile(os.path.join(path, "config.json")):
        return [path]
    if not os.path.isdir(path):
        raise AeqpropError(f"{path}: no such directory")
    folder = os.path.join(path, "points") if os.path.isdir(os.path.join(path, "points")) else path
    runs = [os.path.join(folder, name) for name in sorted(os.listdir(folder))
            if os.path.isfile(os.path.join(folder, name, "config.json"))]
    if not runs:
        raise AeqpropError(f"{path}: neither a run directory (config.json) nor a directory of run directories")
    return runs


def read_runs(paths) -> list[RunRecord]:
    records = []
    for path in paths:
        for run in run_directories(path):
            with open(os.path.join(run, "config.json")) as f:
                config = json.load(f)
            records.append(RunRecord(run, config, read_metrics(run), lyapunov_counts(os.path.join(run, "steps.jsonl"))))
    return records


def _key(record: RunRecord, by) -> tuple:
    return tuple(str(record.config.get(key, "–")) for key in by)


def summary(records: list[RunRecord], by=("algorithm",)) -> list[dict]:
    """One row per value of the `by` keys: final test accuracy over the finished runs (mean and population
    std, in %), runs finished and unfinished, seconds per epoch, and the Lyapunov counts over all runs."""
    groups: dict[tuple, list] = {}
    for record in records:
        groups.setdefault(_key(record, by), []).append(record)
    rows = []
    for key, members in groups.items():
        accuracy = 100 * np.array([r.final_test_accuracy for r in members if r.finished])
        seconds = [m["seconds"] for r in members for m in r.metrics if "seconds" in m and m.get("epoch", 1) >= 1]
        counts = [r.lyapunov for r in members]
        traced = sum(c.traced for c in counts)
        rows.append({**dict(zip(by, key)),
                     "test_accuracy_mean": float(accuracy.mean()) if len(accuracy) else math.nan,
                     "test_accuracy_std": float(accuracy.std()) if len(accuracy) else math.nan,
                     "finished": len(accuracy), "unfinished": len(members) - len(accuracy),
                     "seconds_per_epoch": float(np.mean(seconds)) if seconds else math.nan,
                     "traced_steps": traced, "lyapunov_increases": sum(c.increases for c in counts),
                     "largest_increase": max(c.largest_increase for c in counts),
                     "largest_relative_change": max(c.largest_relative_change for c in counts) if traced
                     else math.nan})
    return rows


def per_seed(records: list[RunRecord], by=("algorithm",)) -> tuple[list, dict]:
    """(seeds, {row key: {seed: final test accuracy in %}}) of the finished runs."""
    found: dict[tuple, dict] = {}
    for record in records:
        if record.finished:
            found.setdefault(_key(record, by), {})[int(record.config.get("seed", 0))] = \
                100 * record.final_test_accuracy
    seeds = sorted({seed for by_seed in found.values() for seed in by_seed})
    return seeds, found


def summary_markdown(rows: list[dict], by=("algorithm",)) -> str:
    lines = ["| " + " | ".join([*by, "test accuracy (%), mean ± std over seeds", "seeds finished", "s / epoch",
                                  "traced steps", "Lyapunov increases", "largest increase",
                                  "largest relative change"]) + " |",
             "|" + "---|" * (len(by) + 7)]
    for row in rows:
        mean, std = row["test_accuracy_mean"], row["test_accuracy_std"]
        cells = [row[key] for key in by]
        cells.append("–" if math.isnan(mean) else f"{mean:.1f} ± {std:.1f}")
        cells.append(f"{row['finished']}" + (f" (+{row['unfinished']} unfinished)" if row["unfinished"] else ""))
        cells.append("–" if math.isnan(row["seconds_per_epoch"]) else f"{row['seconds_per_epoch']:.1f}")
        cells += [row["traced_steps"], row["lyapunov_increases"],
                  f"{row['largest_increase']:.2g}" if row["lyapunov_increases"] else "–",
                  "–" if math.isnan(row["largest_relative_change"]) else f"{row['largest_relative_change']:+.1e}"]
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    return "\n".join(lines)


def per_seed_markdown(seeds: list, found: dict, by=("algorithm",)) -> str:
    lines = ["| " + " | ".join([*by, *(f"seed {s}" for s in seeds)]) + " |", "|" + "---|" * (len(by) + len(seeds))]
    for key, by_seed in found.items():
        cells = [*key, *(f"{by_seed[s]:.1f}" if s in by_seed else "–" for s in seeds)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
