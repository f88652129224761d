"""A sweep's summary: one row per point, mean ± std over seeds per combination, a plot.

Written to DIR/summary.csv (per point), DIR/summary_groups.csv (per combination),
DIR/summary.md (per point and per combination) and DIR/summary.png (final test accuracy per
combination, error bars: std over seeds; dots: seeds).
Numbers come from each point's metrics.csv, so a summary rebuilt after a rerun that skipped
every point is the same table.
"""

from __future__ import annotations

import csv
import math
import os

import numpy as np

from aeqprop_circuits.experiments.sweep.runner import points_directory, read_metrics
from aeqprop_circuits.experiments.sweep.spec import SweepSpec, format_value

METRICS = ("final_test_accuracy", "final_test_loss", "best_test_accuracy", "seconds")


def point_rows(spec: SweepSpec, out: str, records: dict) -> list[dict]:
    """One row per point in grid order: grid values, status, action, epochs, metrics, message, run directory."""
    rows = []
    for point in spec.points:
        run_dir = os.path.join(points_directory(out), point.name)
        record = records.get(point.name, {"status": "not run", "action": "", "message": ""})
        metrics = [m for m in read_metrics(run_dir) if m.get("epoch", 1) >= 1]  # epoch 0: the untrained network
        accuracy = [m.get("test_accuracy", math.nan) for m in metrics]
        row = {key: format_value(key, value) for key, value in point.values.items()}
        row.update(status=record["status"], action=record["action"], epochs=len(metrics),
                   final_test_accuracy=accuracy[-1] if accuracy else math.nan,
                   final_test_loss=metrics[-1].get("test_loss", math.nan) if metrics else math.nan,
                   best_test_accuracy=max(accuracy) if accuracy and not np.all(np.isnan(accuracy)) else math.nan,
                   seconds=round(sum(m.get("seconds", 0.0) for m in metrics), 3),
                   message=record["message"], run_dir=os.path.relpath(run_dir, out))
        rows.append(row)
    return rows


def group_rows(spec: SweepSpec, rows: list[dict]) -> list[dict]:
    """Mean and sample std (ddof=1) over seeds of the points that finished, per combination of the other keys."""
    keys = spec.group_keys
    groups: dict[tuple, list] = {}
    for row in rows:
        groups.setdefault(tuple(row[key] for key in keys), []).append(row)
    grouped = []
    for combination, members in groups.items():
        ok = [m for m in members if m["status"] == "ok"]
        entry = dict(zip(keys, combination))
        entry.update(points=len(members), ok=len(ok))
        for metric in METRICS:
            values = np.array([m[metric] for m in ok], dtype=float)
            values = values[np.isfinite(values)]
            entry[f"{metric}_mean"] = float(values.mean()) if len(values) else math.nan
            entry[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
        grouped.append(entry)
    return grouped


def _cell(value, digits=4) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.{digits}g}"
    return str(value).replace("|", "\\|")


def _mean_std(entry: dict, metric: str, digits=3) -> str:
    mean, std = entry[f"{metric}_mean"], entry[f"{metric}_std"]
    if math.isnan(mean):
        return "–"
    return f"{mean:.{digits}f}" + ("" if math.isnan(std) else f" ± {std:.{digits}f}")


def markdown(spec: SweepSpec, rows: list[dict], grouped: list[dict]) -> str:
    keys = list(spec.grid)
    lines = [f"# Sweep {os.path.basename(spec.file)}", ""]
    if spec.base:
        fixed = ", ".join(f"{key}={format_value(key, value)}" for key, value in spec.base.items())
        lines += [f"Fixed: {fixed}.", ""]
    ok = sum(row["status"] == "ok" for row in rows)
    lines += [f"{ok} of {len(rows)} points finished.", ""]
    if spec.group_keys and "seed" in spec.grid:
        seeds = len(spec.grid["seed"])
        lines += [f"## Per combination (mean ± std over {seeds} seeds, finished points only)", ""]
        header = [*spec.group_keys, "ok", "final test acc", "final test loss", "best test acc", "seconds"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for entry in grouped:
            cells = [entry[key] for key in spec.group_keys] + [f"{entry['ok']}/{entry['points']}"]
            cells += [_mean_std(entry, "final_test_accuracy"), _mean_std(entry, "final_test_loss", 4),
                      _mean_std(entry, "best_test_accuracy"), _mean_std(entry, "seconds", 1)]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        lines.append("")
    lines += ["## Per point", ""]
    header = [*keys, "status", "epochs", "final test acc", "final test loss", "best test acc", "seconds", "message"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row[key] for key in keys] + [row["status"], row["epochs"], row["final_test_accuracy"],
                                               row["final_test_loss"], row["best_test_accuracy"], row["seconds"],
                                               row["message"]]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def plot(spec: SweepSpec, grouped: list[dict], rows: list[dict], path: str) -> str | None:
    """Final test accuracy (test loss for regression) per combination, error bars over seeds, one dot per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric, label = "final_test_accuracy", "final test accuracy"
    if all(math.isnan(entry[f"{metric}_mean"]) for entry in grouped):
        metric, label = "final_test_loss", "final test loss"
        if all(math.isnan(entry[f"{metric}_mean"]) for entry in grouped):
            return None
    keys = spec.group_keys
    names = [",".join(f"{key}={entry[key]}" for key in keys) or "all" for entry in grouped]
    x = np.arange(len(grouped))
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(grouped) + 2), 4.2))
    means = np.array([entry[f"{metric}_mean"] for entry in grouped])
    stds = np.nan_to_num(np.array([entry[f"{metric}_std"] for entry in grouped]))
    ax.errorbar(x, means, yerr=stds, fmt="o", capsize=4, color="C0", label="mean ± std over seeds")
    for k, entry in enumerate(grouped):
        seeds = [row[metric] for row in rows
                 if row["status"] == "ok" and all(row[key] == entry[key] for key in keys)]
        ax.plot(np.full(len(seeds), k + 0.12), seeds, ".", color="0.5", label="seeds" if k == 0 else None)
    ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(label)
    ax.set_title(os.path.basename(spec.file))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_summary(spec: SweepSpec, out: str, records: dict) -> dict:
    """Write summary.csv, summary_groups.csv, summary.md and summary.png into `out`.

    Returns {"rows": per point, "groups": per combination, "files": paths written}.
    """
    rows = point_rows(spec, out, records)
    grouped = group_rows(spec, rows)
    files = [os.path.join(out, name) for name in ("summary.csv", "summary_groups.csv", "summary.md")]
    for path, table in zip(files, (rows, grouped)):
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(table[0]))
            writer.writeheader()
            writer.writerows(table)
    with open(files[2], "w") as f:
        f.write(markdown(spec, rows, grouped))
    image = plot(spec, grouped, rows, os.path.join(out, "summary.png"))
    if image:
        files.append(image)
    return {"rows": rows, "groups": grouped, "files": files}
