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
        return self.final("test_accuracy")

    def final(self, metric: str) -> float:
        """A metrics.csv column's value after the last epoch (nan when absent)."""
        return self.metrics[-1].get(metric, math.nan) if self.metrics else math.nan


def percent(metric: str) -> bool:
    """Whether a metric is a share, shown in %: accuracies and errors."""
    return metric.endswith(("accuracy", "error"))


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


# Settings only the Aeqprop rules read: another rule's run shows "–" for them, not the default it never used.
AEQPROP_ONLY = ("controller", "epsilon", "relax_rounds")


def _key(record: RunRecord, by) -> tuple:
    aeqprop = str(record.config.get("algorithm", "")).startswith("aeqprop")
    return tuple("–" if key in AEQPROP_ONLY and not aeqprop else str(record.config.get(key, "–")) for key in by)


def summary(records: list[RunRecord], by=("algorithm",), metric: str = "test_accuracy") -> list[dict]:
    """One row per value of the `by` keys: the final `metric` over the finished runs (mean and population
    std, in % for accuracies and errors), runs finished and unfinished, seconds per epoch, and the
    Lyapunov counts over all runs."""
    groups: dict[tuple, list] = {}
    for record in records:
        groups.setdefault(_key(record, by), []).append(record)
    rows = []
    scale = 100.0 if percent(metric) else 1.0
    for key, members in groups.items():
        accuracy = scale * np.array([r.final(metric) for r in members if r.finished])
        seconds = [m["seconds"] for r in members for m in r.metrics if "seconds" in m and m.get("epoch", 1) >= 1]
        counts = [r.lyapunov for r in members]
        traced = sum(c.traced for c in counts)
        rows.append({**dict(zip(by, key)),
                     f"{metric}_mean": float(accuracy.mean()) if len(accuracy) else math.nan,
                     f"{metric}_std": float(accuracy.std()) if len(accuracy) else math.nan,
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


def _label(metric: str) -> str:
    return metric.replace("_", " ") + (" (%)" if percent(metric) else "")


def _mean_std(mean: float, std: float, metric: str) -> str:
    """'96.0 ± 4.9' for a share in %, '0.00043 ± 2.5e-06' otherwise; a spread below rounding is 0."""
    if math.isnan(mean):
        return "–"
    std = 0.0 if std <= 1e-9 * abs(mean) else std
    return f"{mean:.1f} ± {std:.1f}" if percent(metric) else f"{mean:.3g} ± {std:.2g}"


def summary_markdown(rows: list[dict], by=("algorithm",), metric: str = "test_accuracy") -> str:
    lines = ["| " + " | ".join([*by, f"{_label(metric)}, mean ± std over seeds", "seeds finished", "s / epoch",
                                  "traced steps", "Lyapunov increases", "largest increase",
                                  "largest relative change"]) + " |",
             "|" + "---|" * (len(by) + 7)]
    for row in rows:
        cells = [row[key] for key in by]
        cells.append(_mean_std(row[f"{metric}_mean"], row[f"{metric}_std"], metric))
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


def wide_markdown(rows: list[dict], by, metric: str) -> str:
    """The final `metric` (mean ± std over seeds) as a grid: a row per value of the last `by` key, a column per
    combination of the others (keys that do not apply, –, left out of the column names)."""
    x_key, column_keys = by[-1], by[:-1]
    columns = list(dict.fromkeys(tuple(row[key] for key in column_keys) for row in rows))
    xs = sorted({row[x_key] for row in rows}, key=_number)
    cell = {(tuple(row[key] for key in column_keys), row[x_key]): row for row in rows}
    names = [", ".join(part for part in column if part != "–") for column in columns]
    lines = [f"{_label(metric)}, mean ± std over seeds (finished runs)", "",
             "| " + " | ".join([x_key, *names]) + " |", "|" + "---|" * (len(columns) + 1)]
    for x in xs:
        cells = []
        for column in columns:
            row = cell.get((column, x))
            if row is None:
                cells.append("–")
                continue
            shown = _mean_std(row[f"{metric}_mean"], row[f"{metric}_std"], metric)
            cells.append(shown + (f" ({row['finished']} of {row['finished'] + row['unfinished']})"
                                  if row["unfinished"] else ""))
        lines.append("| " + " | ".join([x, *cells]) + " |")
    return "\n".join(lines)


def plot_summary(rows: list[dict], by, metric: str, path: str) -> str:
    """The final `metric` (mean ± std over seeds) against the last `by` key, one line per value of the others.

    A loss is drawn on a log scale. Returns the path of the PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x_key, line_keys = by[-1], by[:-1]
    lines: dict[tuple, list] = {}
    for row in rows:
        if not math.isnan(row[f"{metric}_mean"]):
            lines.setdefault(tuple(row[key] for key in line_keys), []).append(row)
    figure, axes = plt.subplots(figsize=(6.4, 4.2))
    for key, members in lines.items():
        members.sort(key=lambda row: _number(row[x_key]))
        x = [_number(row[x_key]) for row in members]
        axes.errorbar(x, [row[f"{metric}_mean"] for row in members], yerr=[row[f"{metric}_std"] for row in members],
                      marker="o", capsize=3, label=", ".join(str(part) for part in key if part != "–") or metric)
    axes.set_xlabel(x_key.replace("_", " "))
    axes.set_ylabel(_label(metric))
    if "loss" in metric and all(row[f"{metric}_mean"] > 0 for members in lines.values() for row in members):
        axes.set_yscale("log")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def _number(value):
    try:
        return float(value)
    except ValueError:
        return value
