"""PNG plots of a run directory: what users would rather look at than read."""

from __future__ import annotations

import json
import os

import numpy as np
from matplotlib.ticker import MaxNLocator

from aeqprop_circuits.errors import AeqpropError
from aeqprop_circuits.experiments.rundir import read_metrics


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: str) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _read_metrics(run_dir: str) -> dict[str, np.ndarray]:
    path = os.path.join(run_dir, "metrics.csv")
    if not os.path.exists(path):
        raise AeqpropError(f"{run_dir}: no metrics.csv (is this a run directory?)")
    rows = read_metrics(run_dir)
    if not rows:
        raise AeqpropError(f"{path}: no epoch finished yet")
    return {key: np.array([row[key] for row in rows]) for key in rows[0]}


def _run_title(run_dir: str) -> str:
    """'NAME: RULE on DATA' from the run's config (the directory name alone where it has none)."""
    name = os.path.basename(os.path.normpath(run_dir))
    try:
        with open(os.path.join(run_dir, "config.json")) as f:
            config = json.load(f)
    except (OSError, ValueError):
        return name
    return f"{name}: {config.get('algorithm', '?')} on {config.get('data', '?')}"


def plot_metrics(run_dir: str) -> str:
    plt = _pyplot()
    m = _read_metrics(run_dir)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].plot(m["epoch"], m["train_loss"], "o-", label="train")
    axes[0].plot(m["epoch"], m["test_loss"], "s-", label="test")
    axes[0].set(xlabel="epoch", ylabel="loss (V²)", yscale="log", title="loss")
    if not np.all(np.isnan(m["test_accuracy"])):
        axes[1].plot(m["epoch"], 100 * (1 - m["train_accuracy"]), "o-", label="train")
        axes[1].plot(m["epoch"], 100 * (1 - m["test_accuracy"]), "s-", label="test")
        axes[1].set(xlabel="epoch", ylabel="error (%)", title="classification error")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    fig.suptitle(_run_title(run_dir))
    path = os.path.join(run_dir, "metrics.png")
    _save(plt, fig, path)
    return path


def plot_lyapunov(run_dir: str) -> str | None:
    path = os.path.join(run_dir, "steps.jsonl")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        steps = [json.loads(line) for line in f if line.strip()]
    if not steps:
        return None
    plt = _pyplot()
    get = lambda key: np.array([s[key] if s.get(key) is not None else np.nan for s in steps], float)  # noqa: E731
    step = get("step")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    ax.fill_between(step, get("lyapunov_lower"), get("lyapunov_upper"), alpha=0.2, label="bounds L₀;β ≤ C ≤ L₋β;₀")
    ax.plot(step, get("loss_after"), lw=0.8, label="loss after step")
    ax.plot(step, get("lyapunov_after"), lw=0.8, label="Lyapunov after step")
    ax.set(xlabel="step", ylabel="V²", yscale="log", title="loss and Lyapunov function per step")
    ax.legend(fontsize=8)
    change = get("lyapunov_after") - get("lyapunov_before")
    axes[1].plot(step, change, ".", ms=3)
    axes[1].axhline(0, color="k", lw=0.8)
    increases = int(np.sum(change > 1e-12 * np.maximum(1, np.abs(get("lyapunov_before")))))
    axes[1].set(xlabel="step", ylabel="L(after) − L(before)",
                title=f"change of the Lyapunov function ({increases} increases)")
    for a in axes:
        a.grid(alpha=0.3)
    out = os.path.join(run_dir, "lyapunov.png")
    _save(plt, fig, out)
    return out


def plot_relaxation(run_dir: str) -> str | None:
    """Energy per relaxation iteration of the trained system on a few test inputs."""
    from aeqprop_circuits.data.datasets import load_dataset
    from aeqprop_circuits.experiments.rundir import RunDir
    from aeqprop_circuits.systems.base import Phase
    from aeqprop_circuits.systems.models import load_system

    run = RunDir(run_dir)
    config = run.read_config()
    checkpoint = run.latest_checkpoint()
    system = load_system(config["model"], solver=config.get("solver") or "auto", seed=config.get("seed", 0),
                         **config.get("model_options", {}))
    if checkpoint is not None:
        system.parameters = checkpoint["parameters"]
    data = load_dataset(config["data"], seed=config.get("seed", 0))
    trace = []
    try:
        system.settle(Phase(data.x_test[:8]), callback=lambda energy: trace.append(np.mean(energy)))
    except TypeError:
        return None
    if len(trace) < 2:
        return None
    plt = _pyplot()
    trace = np.array(trace)
    fig, ax = plt.subplots(figsize=(6, 4))
    gap = trace - trace.min()
    ax.semilogy(np.arange(1, len(trace) + 1), np.where(gap > 0, gap, np.nan), "o-")
    ax.set(xlabel="iteration", ylabel="E − E_final", title="relaxation of the free phase (8 test inputs)")
    ax.grid(alpha=0.3)
    out = os.path.join(run_dir, "relaxation.png")
    _save(plt, fig, out)
    return out


def plot_run(run_dir: str) -> list[str]:
    from aeqprop_circuits.experiments.rundir import RunDir

    if RunDir(run_dir, create=False).read_config().get("kind") == "meta":  # an `aeqprop meta train` run
        from aeqprop_circuits.experiments.meta import plot_meta_run

        return [*plot_meta_run(run_dir), *filter(None, [plot_lyapunov(run_dir)])]
    paths = [plot_metrics(run_dir), plot_lyapunov(run_dir), plot_relaxation(run_dir)]
    return [p for p in paths if p]


def _summary_table(labels, series, metrics, last: int, name: str, upto: int | None = None) -> str:
    head = [f"| run | epochs | {name}, mean ± std of the last {last} | best (epoch) | mean train error, same epochs |",
            "|---|---|---|---|---|"]
    for label, s, m in zip(labels, series, metrics):
        epochs = [e for e in sorted(s) if e >= 1 and (upto is None or e <= upto)]  # epoch 0: untrained
        if not epochs:
            raise AeqpropError(f"{label} has no epoch up to {upto}")
        window = np.array([s[e] for e in epochs[-last:]])
        best = min(epochs, key=s.get)
        rows = np.isin(m["epoch"].astype(int), epochs[-len(window):])
        train = 100 * (1 - np.mean(m["train_accuracy"][rows]))  # NaN for regression runs
        head.append(f"| {label} | {epochs[-len(window)]}–{epochs[-1]} | {window.mean():.2f} ± {window.std():.2f} "
                    f"| {s[best]:.2f} ({best}) | {'—' if np.isnan(train) else f'{train:.2f}'} |")
    return "\n".join(head)


def compare_runs(run_dirs: list[str], labels: list[str] | None = None, out: str | None = None,
                 last: int = 0, upto: int | None = None) -> tuple[str, str]:
    """Test error (or test loss, for regression) per epoch of several runs: a Markdown table and a PNG.

    Runs of different lengths are compared epoch by epoch; a run that has not reached an epoch
    leaves its cell empty. With `last` > 0 a second table gives each run's mean ± std over its
    last `last` epochs, the statistic of the Aeqprop paper's Table 1 (the last 50 of 200), with
    its best epoch; `upto` ends that window (and the search for the best epoch) at an earlier
    epoch, so that runs of different lengths are compared at the same stage. Returns (table,
    path of the PNG).
    """
    labels = list(labels or [os.path.basename(os.path.normpath(d)) for d in run_dirs])
    if len(labels) != len(run_dirs):
        raise AeqpropError(f"{len(labels)} labels for {len(run_dirs)} runs")
    metrics = [_read_metrics(d) for d in run_dirs]
    classify = all(not np.all(np.isnan(m["test_accuracy"])) for m in metrics)
    name, unit = ("test error", "%") if classify else ("test loss", "")
    series = [dict(zip(m["epoch"].astype(int), 100 * (1 - m["test_accuracy"]) if classify else m["test_loss"]))
              for m in metrics]
    final = max(max(s) for s in series)
    rows = [f"| epoch | {' | '.join(labels)} |", "|---" * (len(labels) + 1) + "|"]
    for epoch in range(min(min(s) for s in series), final + 1):
        rows.append(f"| {epoch} | " + " | ".join(f"{s[epoch]:.2f}" if epoch in s else "" for s in series) + " |")
    if last > 0:
        rows += ["", _summary_table(labels, series, metrics, last, name, upto)]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, s in zip(labels, series):
        epochs = sorted(s)
        ax.plot(epochs, [s[e] for e in epochs], "o-", markersize=3, label=label)
    ax.set(xlabel="epoch", ylabel=f"{name} ({unit})" if unit else name, title=f"{name} per epoch")
    ax.grid(alpha=0.3)
    ax.legend()
    path = out or "comparison.png"
    _save(plt, fig, path)
    return "\n".join(rows), path
