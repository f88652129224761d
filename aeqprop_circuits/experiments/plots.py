"""PNG plots of a run directory: what users would rather look at than read."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
from matplotlib.ticker import MaxNLocator

from aeqprop_circuits.errors import AeqpropError
from aeqprop_circuits.experiments.rundir import read_metrics

# Each run is drawn with its own line style and marker, so that runs whose curves coincide stay visible.
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


@dataclass(frozen=True)
class Units:
    """The units of a run's numbers, as its config records them.

    A system with `ConductanceUnits` (circuits) records its g0 in config.json: its outputs and
    targets are potentials in volts, its costs and energies (co-content / g0) in V². A system
    without it records g0 = null: its numbers are dimensionless. A config that records neither
    (written before g0 was recorded) leaves the units unknown, and no unit is shown.
    """

    output: str = ""
    loss: str = ""
    known: bool = False

    def label(self, name: str, unit: str) -> str:
        """'name (unit)', 'name (dimensionless)' where the run has no unit, 'name' where its units are unknown."""
        if unit:
            return f"{name} ({unit})"
        return f"{name} (dimensionless)" if self.known else name

    def output_label(self, name: str) -> str:
        return self.label(name, self.output)

    def loss_label(self, name: str) -> str:
        return self.label(name, self.loss)


def run_units(config: dict) -> Units:
    """The units a run's config.json declares (see `Units`)."""
    if "g0" not in config:
        return Units()
    return Units("V", "V²", True) if config["g0"] is not None else Units(known=True)


def _run_config(run_dir: str) -> dict:
    try:
        with open(os.path.join(run_dir, "config.json")) as f:
            config = json.load(f)
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: str) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def median_band(ax, x, curves: np.ndarray, *, color, label: str, index: int = 0, of: int = 1, linestyle: str = "-",
                marker: str | None = None, band: bool = True, markers: int = 8):
    """The median over the rows of `curves` (runs x points) with its min-max band, legible where several overlap.

    Bands are light (alpha 0.1) with an outline in their colour and drawn under every median;
    the median of variant `index` (of `of` in the panel) has its own line style and markers set
    at an offset of its own, so that variants with the same curve still show each other's
    markers. NaN (a diverged run's later points) is left out of the statistics.
    """
    import warnings

    with warnings.catch_warnings():  # a point where every run has diverged
        warnings.simplefilter("ignore", RuntimeWarning)
        median = np.nanmedian(curves, axis=0)
        low, high = np.nanmin(curves, axis=0), np.nanmax(curves, axis=0)
    if band:
        ax.fill_between(x, low, high, color=color, alpha=0.1, lw=0, zorder=1)
        for edge in (low, high):
            ax.plot(x, edge, color=color, lw=0.5, alpha=0.5, zorder=2)
    step = max(1, len(x) // markers)
    ax.plot(x, median, color=color, lw=1.3, linestyle=linestyle, marker=marker or MARKERS[index % len(MARKERS)],
            ms=4, markevery=(index * step // max(of, 1), step), label=label, zorder=3 + index)


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
    config = _run_config(run_dir)
    if not config:
        return name
    return f"{name}: {config.get('algorithm', '?')} on {config.get('data', '?')}"


def plot_metrics(run_dir: str) -> str:
    """metrics.png: loss per epoch, and for classification the error per epoch; epoch 0 is the untrained system."""
    plt = _pyplot()
    m = _read_metrics(run_dir)
    units = run_units(_run_config(run_dir))
    classify = not np.all(np.isnan(m["test_accuracy"]))
    fig, axes = plt.subplots(1, 2 if classify else 1, figsize=(10 if classify else 6, 4), squeeze=False)
    axes = axes[0]
    axes[0].plot(m["epoch"], m["train_loss"], "o-", label="train")
    axes[0].plot(m["epoch"], m["test_loss"], "s-", label="test")
    axes[0].set(xlabel="epoch", ylabel=units.loss_label("loss"), yscale="log", title="loss")
    if classify:
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
    ax.set(xlabel="step", ylabel=run_units(_run_config(run_dir)).loss_label("loss, Lyapunov function"),
           yscale="log", title="loss and Lyapunov function per step")
    ax.legend(fontsize=8)
    change = get("lyapunov_after") - get("lyapunov_before")
    axes[1].plot(step, change, ".", ms=3)
    axes[1].axhline(0, color="k", lw=0.8)
    increases = int(np.sum(change > 1e-12 * np.maximum(1, np.abs(get("lyapunov_before")))))
    axes[1].set(xlabel="step", ylabel=run_units(_run_config(run_dir)).loss_label("L(after) − L(before)"),
                title=f"change of the Lyapunov function ({increases} increases)")
    for a in axes:
        a.grid(alpha=0.3)
    out = os.path.join(run_dir, "lyapunov.png")
    _save(plt, fig, out)
    return out


def _trained(run_dir: str):
    """The run's setup (data, system) rebuilt from its config, the system at its latest checkpoint."""
    from aeqprop_circuits.experiments.config import TrainConfig
    from aeqprop_circuits.experiments.rundir import RunDir
    from aeqprop_circuits.experiments.session import prepare

    run = RunDir(run_dir, create=False)
    stored = run.read_config()
    copy = stored.get("netlist_copy") and run.file(stored["netlist_copy"])
    setup = prepare(TrainConfig.from_dict(stored, where=run.file("config.json")),
                    model_path=copy if copy and os.path.exists(copy) else None, progress=False,
                    echo=lambda message: None)
    checkpoint = run.latest_checkpoint()
    if checkpoint is not None:
        setup.system.parameters = checkpoint["parameters"]
    return setup


def relaxation_trace(system, inputs: np.ndarray) -> np.ndarray:
    """Batch-mean energy after each relaxation iteration of the free phase (empty where the settle reports none)."""
    from aeqprop_circuits.systems.base import Phase

    trace = []
    system.settle(Phase(inputs), callback=lambda energy: trace.append(float(np.mean(energy))))
    return np.array(trace)


def plot_relaxation(run_dir: str, setup=None) -> str | None:
    """relaxation.png: energy per relaxation iteration of the trained system on a few test inputs.

    None where the settle takes a single iteration (a closed-form or one-shot solve) or reports
    none (ngspice): there is no relaxation to show.
    """
    setup = setup or _trained(run_dir)
    trace = relaxation_trace(setup.system, setup.data.x_test[:8])
    if len(trace) < 2:
        return None
    plt = _pyplot()
    units = run_units(_run_config(run_dir))
    fig, ax = plt.subplots(figsize=(6, 4))
    gap = trace - trace.min()
    ax.semilogy(np.arange(1, len(trace) + 1), np.where(gap > 0, gap, np.nan), "o-")
    ax.set(xlabel="iteration", ylabel=units.loss_label("E − E_final"), xlim=(0.5, len(trace) + 0.5),
           title=f"relaxation of the free phase (8 test inputs, {len(trace)} iterations)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if np.any(gap[:-1] == 0):  # iterations at E_final to rounding have no point on a log scale
        ax.text(0.98, 0.95, f"at E_final from iteration {int(np.argmax(gap == 0)) + 1}", ha="right", va="top",
                transform=ax.transAxes, fontsize=8)
    ax.grid(alpha=0.3)
    out = os.path.join(run_dir, "relaxation.png")
    _save(plt, fig, out)
    return out


def _predict(system, inputs: np.ndarray, batch: int = 256) -> np.ndarray:
    return np.vstack([system.predict(inputs[k:k + batch]) for k in range(0, len(inputs), batch)])


def plot_regression(run_dir: str, setup=None) -> str | None:
    """regression.png for a regression run: the trained system's prediction against the target on the test split.

    Left: prediction vs target, one point per test sample and output, with the identity line.
    Right, for 1-D inputs: target and prediction over the input. None for classification runs.
    """
    from aeqprop_circuits.experiments.trainer import test_split

    setup = setup or _trained(run_dir)
    data = setup.data
    if data.n_classes:
        return None
    x, y = test_split(data, setup.options)
    target = data.targets(y, setup.system.n_outputs, setup.options.target_amplitude)
    prediction = _predict(setup.system, x)
    units = run_units(_run_config(run_dir))
    one_d = x.ndim == 2 and x.shape[1] == 1
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2 if one_d else 1, figsize=(11 if one_d else 5.5, 4.5), squeeze=False)
    axes = axes[0]
    ax = axes[0]
    for k in range(target.shape[1]):
        ax.plot(target[:, k], prediction[:, k], ".", ms=4, alpha=0.7,
                label=f"output {k}" if target.shape[1] > 1 else "test samples")
    low, high = float(min(target.min(), prediction.min())), float(max(target.max(), prediction.max()))
    ax.plot([low, high], [low, high], "k--", lw=0.8, label="prediction = target")
    mse = float(np.mean((prediction - target) ** 2))
    ax.set(xlabel=units.output_label("target"), ylabel=units.output_label("prediction"),
           title=f"test split, {len(x)} samples: mean squared error {mse:.3g}" + (f" {units.loss}" if units.loss
                                                                                   else ""))
    if one_d:
        order = np.argsort(x[:, 0])
        axes[1].plot(x[order, 0], target[order], "k-", lw=1.5, label="target")
        axes[1].plot(x[order, 0], prediction[order], "--", color="tab:red", lw=1.5, label="prediction")
        axes[1].set(xlabel="input", ylabel=units.output_label("output"), title="fitted function on the test split")
    for a in axes:
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    fig.suptitle(_run_title(run_dir))
    out = os.path.join(run_dir, "regression.png")
    _save(plt, fig, out)
    return out


def plot_run(run_dir: str) -> list[str]:
    """The PNGs of a run: metrics.png, lyapunov.png (traced steps), relaxation.png, regression.png (regression)."""
    from aeqprop_circuits.experiments.rundir import RunDir

    if RunDir(run_dir, create=False).read_config().get("kind") == "meta":  # an `aeqprop meta train` run
        from aeqprop_circuits.experiments.meta import plot_meta_run

        return [*plot_meta_run(run_dir), *filter(None, [plot_lyapunov(run_dir)])]
    paths = [plot_metrics(run_dir), plot_lyapunov(run_dir)]
    setup = _trained(run_dir)
    paths += [plot_relaxation(run_dir, setup), plot_regression(run_dir, setup)]
    return [p for p in paths if p]


def _summary_table(labels, series, metrics, last: int, name: str, upto: int | None = None) -> str:
    head = [f"| run | epochs | {name}, mean ± std of the last {last} | best (epoch) "
            "| mean train error (%), same epochs |",
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


def identical_to(series: list[dict]) -> list[int | None]:
    """For each run, the index of the first earlier run with the same curve (same epochs, same values), or None."""
    found: list[int | None] = []
    for k, s in enumerate(series):
        found.append(next((j for j in range(k) if found[j] is None and s.keys() == series[j].keys()
                           and np.allclose([s[e] for e in s], [series[j][e] for e in s], rtol=1e-9, atol=1e-12,
                                           equal_nan=True)), None))
    return found


def compare_metric(run_dirs: list[str], metrics: list[dict]) -> tuple[str, str, list[str]]:
    """(name, unit, unit of each run) of what `compare_runs` compares: test error in %, or test loss in the runs' units.

    The unit is empty where the runs' loss units differ or are unknown; then each run's own unit is in the legend.
    """
    if all(not np.all(np.isnan(m["test_accuracy"])) for m in metrics):
        return "test error", "%", ["%"] * len(run_dirs)
    units = [run_units(_run_config(d)) for d in run_dirs]
    each = [u.loss if u.loss else ("dimensionless" if u.known else "") for u in units]
    unit = each[0] if len(set(each)) == 1 else ""
    return "test loss", unit, each


def compare_runs(run_dirs: list[str], labels: list[str] | None = None, out: str | None = None,
                 last: int = 0, upto: int | None = None) -> tuple[str, str]:
    """Test error (or test loss, for regression) per epoch of several runs: a Markdown table and a PNG.

    The table opens with a line naming the metric and its unit (test error in %; test loss in
    V² for circuits, dimensionless for Hopfield networks), and the plot's axis says the same.
    Runs of different lengths are compared epoch by epoch; a run that has not reached an epoch
    leaves its cell empty. Each run has its own line style and marker, and a run whose curve
    equals an earlier run's is marked "(identical to X)" in the legend, so no run hides another.
    With `last` > 0 a second table gives each run's mean ± std over its last `last` epochs, the
    statistic of the Aeqprop paper's Table 1 (the last 50 of 200), with its best epoch; `upto`
    ends that window (and the search for the best epoch) at an earlier epoch, so that runs of
    different lengths are compared at the same stage. Returns (table, path of the PNG).
    """
    labels = list(labels or [os.path.basename(os.path.normpath(d)) for d in run_dirs])
    if len(labels) != len(run_dirs):
        raise AeqpropError(f"{len(labels)} labels for {len(run_dirs)} runs")
    metrics = [_read_metrics(d) for d in run_dirs]
    name, unit, units = compare_metric(run_dirs, metrics)
    classify = unit == "%"
    series = [dict(zip(m["epoch"].astype(int), 100 * (1 - m["test_accuracy"]) if classify else m["test_loss"]))
              for m in metrics]
    title = f"{name} ({unit})" if unit else name
    final = max(max(s) for s in series)
    rows = [f"{title[0].upper()}{title[1:]} per epoch:", "", f"| epoch | {' | '.join(labels)} |",
            "|---" * (len(labels) + 1) + "|"]
    for epoch in range(min(min(s) for s in series), final + 1):
        rows.append(f"| {epoch} | " + " | ".join(f"{s[epoch]:.2f}" if epoch in s else "" for s in series) + " |")
    if last > 0:
        rows += ["", _summary_table(labels, series, metrics, last, title, upto)]
    same = identical_to(series)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for k, (label, s) in enumerate(zip(labels, series)):
        epochs = sorted(s)
        legend = label + (f" [{units[k]}]" if not unit and units[k] else "")
        if same[k] is not None:
            legend += f" (identical to {labels[same[k]]})"
        ax.plot(epochs, [s[e] for e in epochs], linestyle=LINESTYLES[k % len(LINESTYLES)],
                marker=MARKERS[k % len(MARKERS)], markersize=3 + 1.5 * (same[k] is not None),
                markerfacecolor="none" if same[k] is not None else None, label=legend, zorder=3 + k)
    ylabel = title if unit or not any(units) else f"{name} (each run's unit, in the legend)"
    ax.set(xlabel="epoch", ylabel=ylabel, title=f"{name} per epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path = out or "comparison.png"
    _save(plt, fig, path)
    return "\n".join(rows), path
