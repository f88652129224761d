"""The linear-regression study of the Aeqprop paper (Scellier et al., Sec. 5.2, Figs. 2 and 3).

Every run of both figures (methods x epsilon x beta x seed) is one replica of a single
`EnergySystem` of replicas, so one operator loop drives all of them in lockstep:

- the three Aeqprop variants run through the agnostic operator loop `operate` with the
  proportional controller (Sec. 5.1: 50 homeostatic rounds of the adaptive gradient
  dynamics, then 50 nudged rounds with the knobs clamped). The operator turns its nudge
  dial to 0 for the homeostatic phase and 1 for the nudged phase; each device's nudge map
  turns that into its own (beta_1, beta_2): (0, beta) optimistic, (-beta, 0) pessimistic,
  (-beta/2, beta/2) centered (paper Sec. 4; `AEQPROP_TABLE`);
- SGD with learning rate epsilon beta on the exact gradient (implicit differentiation) of
  the same model, as the reference (Theorem 1);
- Figure 3's devices have |s|^2 added to their energy (state_penalty = 1).

Per step and run it records the loss (mean squared error of the free model on a fixed grid
of [-1, 1]) and the Lyapunov function L_{beta_1;beta_2} of the current sample before and after
the step (exact settles, Theorem 3). A run whose loss leaves [0, divergence_threshold] (or
becomes NaN) is marked diverged at that step and parked at theta = 0 so that it cannot
poison the batch; its later trace entries are NaN.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass

import numpy as np

from aeqprop_circuits.data.datasets import regression_task
from aeqprop_circuits.learning.algorithms import AEQPROP_TABLE, get_algorithm
from aeqprop_circuits.systems.base import Phase
from aeqprop_circuits.systems.energy import fourier_features, linear_regression_system

METHODS = ("sgd", "aeqprop-optimistic", "aeqprop-pessimistic", "aeqprop-centered")
AEQPROP_METHODS = METHODS[1:]


@dataclass(frozen=True)
class FigureSpec:
    number: int
    samples: int
    epsilons: tuple
    betas: tuple
    state_penalty: float  # coefficient of s^2 added to E (Fig. 3: "adding |s|^2")


FIGURES = {
    2: FigureSpec(2, 1000, (0.5, 0.1, 0.01), (0.5, 0.1, 0.01), 0.0),
    3: FigureSpec(3, 5000, (0.5, 0.1, 0.01), (1.5,), 1.0),
}


@dataclass(frozen=True)
class Run:
    figure: int
    method: str
    epsilon: float
    beta: float
    seed: int
    samples: int
    state_penalty: float

    @property
    def nudges(self) -> tuple[float, float]:
        """(beta_1, beta_2) of the Aeqprop variant; SGD has none."""
        low, high = AEQPROP_TABLE.get(self.method, (np.nan, np.nan))
        return low * self.beta, high * self.beta


def plan(figures, seeds: int, samples: int | None = None) -> list[Run]:
    """Every run of the requested figures: methods x epsilon x beta x seed."""
    runs = []
    for number in figures:
        spec = FIGURES[number]
        for method in METHODS:
            for epsilon in spec.epsilons:
                for beta in spec.betas:
                    for seed in range(seeds):
                        runs.append(Run(number, method, epsilon, beta, seed, samples or spec.samples,
                                        spec.state_penalty))
    return runs


@dataclass
class Traces:
    """Per-step records of a group of runs (rows follow `runs`)."""

    runs: list
    loss: np.ndarray  # (R, T + 1) grid MSE before the first and after every step
    lyapunov_before: np.ndarray  # (R, T) L_{b1;b2}(theta_{t-1}) on sample t (NaN for SGD)
    lyapunov_after: np.ndarray  # (R, T) L_{b1;b2}(theta_t) on sample t
    diverged_at: np.ndarray  # (R,) step of divergence, -1 if none


def _model_outputs(theta: np.ndarray, grid_features: np.ndarray, state_penalty: np.ndarray) -> np.ndarray:
    """Free state s(theta, z) = theta . phi(z) / (1 + 2c) on the grid, per run (R, G)."""
    return (theta @ grid_features.T) / (1.0 + 2.0 * state_penalty)[:, None]


def _lyapunov(system, inputs, target, span: np.ndarray) -> np.ndarray:
    """L_{b1;b2} per device: [F(b2) - F(b1)] / (b2 - b1), the operator's dial at 0 and 1."""
    low = system.energy(system.settle(Phase(inputs, 0.0, target)))
    high = system.energy(system.settle(Phase(inputs, 1.0, target)))
    return (high - low) / span


def simulate(runs: list[Run], grid_points: int = 501, controller: str = "proportional", rounds: int = 50,
             relax_rounds: int = 50, divergence_threshold: float = 1e6, progress: bool = True,
             knob_dynamics: str = "gradient") -> Traces:
    """Run every run of the list as one batch of replicas (Aeqprop variants) plus one of SGD."""
    try:  # tiny matrices: a multithreaded BLAS only spins on them
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        threadpool_limits = None
    if threadpool_limits is None:
        return _simulate(runs, grid_points, controller, rounds, relax_rounds, divergence_threshold, progress,
                         knob_dynamics)
    with threadpool_limits(1):
        return _simulate(runs, grid_points, controller, rounds, relax_rounds, divergence_threshold, progress,
                         knob_dynamics)


def _simulate(runs, grid_points, controller, rounds, relax_rounds, divergence_threshold, progress,
              knob_dynamics) -> Traces:
    from tqdm import tqdm

    steps = max(run.samples for run in runs)
    seeds = sorted({run.seed for run in runs})
    tasks = {seed: regression_task(seed, n_train=steps, n_test=grid_points) for seed in seeds}
    grid = tasks[seeds[0]].x_test
    grid_features = fourier_features(grid)
    R = len(runs)
    index = {"sgd": [i for i, r in enumerate(runs) if r.method == "sgd"],
             "aeqprop": [i for i, r in enumerate(runs) if r.method != "sgd"]}
    truth = np.stack([tasks[r.seed].y_test[:, 0] for r in runs])  # (R, G)
    z = np.stack([tasks[r.seed].x_train[:steps, 0] for r in runs])  # (R, T)
    y = np.stack([tasks[r.seed].y_train[:steps, 0] for r in runs])
    penalty = np.array([r.state_penalty for r in runs])
    epsilon = np.array([r.epsilon for r in runs])
    beta = np.array([r.beta for r in runs])

    loss = np.full((R, steps + 1), np.nan)
    before = np.full((R, steps), np.nan)
    after = np.full((R, steps), np.nan)
    diverged_at = np.full(R, -1)
    groups = {}
    for name, rows in index.items():
        if not rows:
            continue
        rows = np.array(rows)
        system = linear_regression_system(replicas=len(rows), state_penalty=penalty[rows],
                                          knob_dynamics=knob_dynamics, seed=12345)
        if name == "aeqprop":
            nudges = np.array([runs[i].nudges for i in rows])
            system.set_nudge_map(nudges[:, 0], nudges[:, 1] - nudges[:, 0])
            # one operator loop for all variants: dial at 0 (homeostasis) then 1 (nudged). The paper's
            # plain gain (its own adaptive steps live in the gradient dynamics), and no hold check: the
            # replicas share one system and diverge one by one, which the loss threshold below records
            algorithm = get_algorithm("aeqprop-optimistic", beta=1.0, epsilon=epsilon[rows, None],
                                      controller=controller, rounds=rounds, relax_rounds=relax_rounds,
                                      adaptive_gain=False, hold_rtol=None, step_rtol=None)
            groups[name] = (rows, system, algorithm, nudges[:, 1] - nudges[:, 0])
        else:
            groups[name] = (rows, system, None, (epsilon * beta)[rows, None])
        loss[rows, 0] = np.mean((_model_outputs(system.parameters, grid_features, penalty[rows])
                                 - truth[rows]) ** 2, axis=1)

    alive = np.ones(R, dtype=bool)
    with np.errstate(all="ignore"), tqdm(total=steps, desc="regression", unit="sample", file=sys.stderr,
                                          disable=not progress) as bar:
        for t in range(steps):
            for name, (rows, system, algorithm, scale) in groups.items():
                inputs, target = z[rows, t, None], y[rows, t, None]
                if name == "sgd":
                    free = system.settle(Phase(inputs))
                    system.parameters = system.parameters - scale * system.loss_gradient(free, target)
                else:
                    before[rows, t] = _lyapunov(system, inputs, target, scale)
                    system.parameters = algorithm.estimate(system, inputs, target).new_parameters
                theta = system.parameters
                error = _model_outputs(theta, grid_features, penalty[rows]) - truth[rows]
                current = np.mean(error ** 2, axis=1)
                bad = ~np.isfinite(current) | (current > divergence_threshold)
                bad |= ~np.all(np.isfinite(theta), axis=1)
                newly = bad & alive[rows]
                if np.any(newly):
                    diverged_at[rows[newly]] = t + 1
                alive[rows[bad]] = False
                current[bad] = np.nan
                if np.any(bad):  # park diverged devices at theta = 0, out of harm's way
                    theta[bad] = 0.0
                    system.parameters = theta
                if name != "sgd":
                    after[rows, t] = _lyapunov(system, inputs, target, scale)
                dead = ~alive[rows]
                current[dead] = np.nan
                before[rows[dead], t] = np.nan
                after[rows[dead], t] = np.nan
                loss[rows, t + 1] = current
            bar.update(1)
    for i, run in enumerate(runs):  # a run stops at its own sample count
        loss[i, run.samples + 1:] = np.nan
        before[i, run.samples:] = np.nan
        after[i, run.samples:] = np.nan
        if diverged_at[i] > run.samples:
            diverged_at[i] = -1
    return Traces(runs, loss, before, after, diverged_at)


def lyapunov_increases(traces: Traces, tolerance: float = 1e-9) -> tuple[np.ndarray, np.ndarray]:
    """(count, largest relative increase) per run of L(theta_t) > L(theta_{t-1}) on sample t."""
    scale = 1.0 + np.abs(traces.lyapunov_before)
    rise = (traces.lyapunov_after - traces.lyapunov_before) / scale
    count = np.sum(np.nan_to_num(rise, nan=-np.inf) > tolerance, axis=1)
    largest = np.nanmax(np.where(np.isnan(rise), -np.inf, rise), axis=1)
    return count, largest


def summary_records(traces: Traces) -> list[dict]:
    """The records of summary.json, one per run."""
    increases, largest = lyapunov_increases(traces)
    records = []
    for i, run in enumerate(traces.runs):
        diverged = bool(traces.diverged_at[i] >= 0)
        final = traces.loss[i, run.samples]
        sgd = run.method == "sgd"
        records.append({
            "figure": run.figure, "method": run.method, "epsilon": run.epsilon, "beta": run.beta,
            "seed": run.seed, "samples": run.samples,
            "initial_loss": float(traces.loss[i, 0]),
            "final_loss": None if diverged or not np.isfinite(final) else float(final),
            "diverged": diverged,
            "diverged_at": int(traces.diverged_at[i]) if diverged else None,
            "lyapunov_increases": None if sgd else int(increases[i]),
            "largest_lyapunov_increase": None if sgd or not np.isfinite(largest[i]) else float(largest[i]),
        })
    return records


def save_traces(traces: Traces, directory: str) -> list[str]:
    """figure{n}_traces.npz: arrays indexed [method, epsilon, beta, seed, step] per figure."""
    paths = []
    for number in sorted({r.figure for r in traces.runs}):
        rows = [i for i, r in enumerate(traces.runs) if r.figure == number]
        runs = [traces.runs[i] for i in rows]
        methods = [m for m in METHODS if any(r.method == m for r in runs)]
        epsilons = sorted({r.epsilon for r in runs}, reverse=True)
        betas = sorted({r.beta for r in runs}, reverse=True)
        seeds = sorted({r.seed for r in runs})
        T = runs[0].samples
        shape = (len(methods), len(epsilons), len(betas), len(seeds))
        loss = np.full((*shape, T + 1), np.nan)
        before = np.full((*shape, T), np.nan)
        after = np.full((*shape, T), np.nan)
        diverged_at = np.full(shape, -1)
        for i, run in zip(rows, runs):
            key = (methods.index(run.method), epsilons.index(run.epsilon), betas.index(run.beta),
                   seeds.index(run.seed))
            loss[key] = traces.loss[i, :T + 1]
            before[key] = traces.lyapunov_before[i, :T]
            after[key] = traces.lyapunov_after[i, :T]
            diverged_at[key] = traces.diverged_at[i]
        path = os.path.join(directory, f"figure{number}_traces.npz")
        np.savez_compressed(path, methods=np.array(methods), epsilons=np.array(epsilons),
                            betas=np.array(betas), seeds=np.array(seeds), loss=loss,
                            lyapunov_before=before, lyapunov_after=after, diverged_at=diverged_at)
        paths.append(path)
    return paths


COLORS = {"sgd": "black", "aeqprop-optimistic": "tab:blue", "aeqprop-pessimistic": "tab:red",
          "aeqprop-centered": "tab:green"}
LABELS = {"sgd": "SGD (lr εβ)", "aeqprop-optimistic": "Aeqprop (optimistic)",
          "aeqprop-pessimistic": "Pessimistic Aeqprop", "aeqprop-centered": "Centered Aeqprop"}
LINESTYLES = {"sgd": "-", "aeqprop-optimistic": "--", "aeqprop-pessimistic": "-.", "aeqprop-centered": ":"}


def plot_figure(traces: Traces, number: int, path: str) -> str:
    """Loss vs samples, log scale, one panel per (epsilon, beta): rows beta, columns epsilon
    (as the paper's Figs. 2 and 3); median over seeds with a min-max band; a diverged run's
    curve stops at its divergence (marked x). Each variant has its own colour, line style and
    offset markers, and every band lies under every median, so coinciding variants stay visible."""
    from aeqprop_circuits.experiments.plots import _pyplot, median_band

    plt = _pyplot()
    runs = [(i, r) for i, r in enumerate(traces.runs) if r.figure == number]
    epsilons = sorted({r.epsilon for _, r in runs}, reverse=True)
    betas = sorted({r.beta for _, r in runs}, reverse=True)
    fig, axes = plt.subplots(len(betas), len(epsilons), figsize=(4.2 * len(epsilons), 3.2 * len(betas)),
                             squeeze=False, sharex=True)
    for row, beta in enumerate(betas):
        for col, epsilon in enumerate(epsilons):
            ax = axes[row, col]
            for index, method in enumerate(METHODS):
                rows = [i for i, r in runs if r.method == method and r.epsilon == epsilon and r.beta == beta]
                if not rows:
                    continue
                T = traces.runs[rows[0]].samples
                curves = traces.loss[rows, :T + 1].copy()
                for k, i in enumerate(rows):  # nothing is drawn after a divergence
                    if traces.diverged_at[i] >= 0:
                        curves[k, traces.diverged_at[i]:] = np.nan
                n_div = int(np.sum(traces.diverged_at[rows] >= 0))
                label = LABELS[method] + (f" ({n_div}/{len(rows)} diverged, ×)" if n_div else "")
                median_band(ax, np.arange(T + 1), curves, color=COLORS[method], label=label, index=index,
                            of=len(METHODS), linestyle=LINESTYLES[method])
                for i in rows:
                    if traces.diverged_at[i] >= 0:
                        at = traces.diverged_at[i]
                        ax.plot([at - 1], [traces.loss[i, at - 1]], "x", color=COLORS[method], ms=6, zorder=10)
            ax.set_yscale("log")
            ax.set_title(f"ε = {epsilon}, β = {beta}", fontsize=10)
            if row == len(betas) - 1:
                ax.set_xlabel("samples")
            if col == 0:
                ax.set_ylabel("MSE on grid (dimensionless)")
            ax.legend(fontsize=7, loc="upper right", framealpha=0.85)
    extra = ", |s|² added to E" if FIGURES.get(number) and FIGURES[number].state_penalty else ""
    seeds = len({r.seed for _, r in runs})
    fig.suptitle(f"Figure {number}: linear regression, median and min-max over {seeds} seeds{extra}",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def reproduce(out: str, figures=(2, 3), seeds: int = 5, samples: int | None = None, grid_points: int = 501,
              controller: str = "proportional", progress: bool = True, knob_dynamics: str = "gradient") -> dict:
    """Run the study and write summary.json, figure{n}.png, figure{n}_traces.npz, config.json in `out`."""
    runs = plan(figures, seeds, samples)
    traces = simulate(runs, grid_points=grid_points, controller=controller, progress=progress,
                      knob_dynamics=knob_dynamics)
    records = summary_records(traces)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(records, f, indent=1)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump({"study": "aeqprop linear regression (Scellier et al. Sec. 5.2)", "figures": list(figures),
                   "seeds": seeds, "samples": samples, "grid_points": grid_points, "controller": controller,
                   "knob_dynamics": knob_dynamics, "rounds": 50, "relax_rounds": 50, "initial_parameters": "zeros",
                   "divergence_threshold": 1e6}, f, indent=2)
    with open(os.path.join(out, "claims.md"), "w") as f:
        f.write(claims_table(records))
    files = save_traces(traces, out)
    files.append(os.path.join(out, "claims.md"))
    for number in figures:
        files.append(plot_figure(traces, number, os.path.join(out, f"figure{number}.png")))
    return {"records": records, "files": files}


# --- the claims of Sec. 5.2, measured ------------------------------------------------------------
SHORT = {"sgd": "SGD", "aeqprop-optimistic": "opt", "aeqprop-pessimistic": "pess", "aeqprop-centered": "cent"}


def _panel(records, figure, epsilon, beta):
    return {m: [r for r in records if r["figure"] == figure and r["method"] == m and r["epsilon"] == epsilon
                and r["beta"] == beta] for m in METHODS}


def _ratio(panel, method) -> str:
    """Median over seeds (and range) of final loss / SGD's final loss on the same seed."""
    pairs = [(r["final_loss"], s["final_loss"]) for r, s in zip(panel[method], panel["sgd"])
             if r["final_loss"] is not None and s["final_loss"] is not None]
    if not pairs:
        return "n/a (SGD or the method diverged)"
    ratios = np.array([a / b for a, b in pairs])
    return f"{np.median(ratios):.3f} [{ratios.min():.3f}, {ratios.max():.3f}]"


def _verdict(panel, method) -> str:
    runs = panel[method]
    diverged = sum(r["diverged"] for r in runs)
    finals = [r["final_loss"] for r in runs if r["final_loss"] is not None]
    initial = np.median([r["initial_loss"] for r in runs])
    text = f"{diverged}/{len(runs)} diverged"
    if finals:
        text += f", median loss {initial:.3g} → {np.median(finals):.3g}"
    return text


def claims_table(records: list[dict]) -> str:
    """Markdown: each claim of Sec. 5.2 next to the measurement (ratios are final loss over SGD's,
    paired by seed: median [min, max])."""
    lines = ["| claim (paper Sec. 5.2) | measured |", "|---|---|"]
    figures = {r["figure"] for r in records}
    if 2 in figures:
        eps = sorted({r["epsilon"] for r in records if r["figure"] == 2}, reverse=True)
        for beta, claim in [(0.01, "β = 0.01: the four curves are virtually indistinguishable"),
                            (0.1, "β = 0.1: centered ≈ SGD; pessimistic slightly lower error, optimistic "
                                  "slightly higher"),
                            (0.5, "β = 0.5, small ε: pessimistic best, optimistic worst, centered ≈ SGD")]:
            cells = []
            for e in eps:
                if beta == 0.5 and e == 0.5:
                    continue
                panel = _panel(records, 2, e, beta)
                if not panel["sgd"]:
                    continue
                cells.append(f"ε={e}: opt {_ratio(panel, 'aeqprop-optimistic')}, pess "
                             f"{_ratio(panel, 'aeqprop-pessimistic')}, cent {_ratio(panel, 'aeqprop-centered')}; "
                             f"divergences " + ", ".join(f"{SHORT[m]} {sum(r['diverged'] for r in panel[m])}"
                                                         for m in METHODS))
            lines.append(f"| {claim} | " + "<br>".join(cells) + " |")
        panel = _panel(records, 2, 0.5, 0.5)
        if panel["sgd"]:
            lines.append("| β = ε = 0.5: SGD diverges (lr 0.25, ‖φ‖² = 11), pessimistic and centered diverge, "
                         "optimistic still optimises | " + "<br>".join(f"{SHORT[m]}: {_verdict(panel, m)}"
                                                                         for m in METHODS) + " |")
    if 3 in figures:
        cells = []
        for e in sorted({r["epsilon"] for r in records if r["figure"] == 3}, reverse=True):
            panel = _panel(records, 3, e, 1.5)
            cells.append(f"ε={e}: " + "; ".join(f"{SHORT[m]} {_verdict(panel, m)}" for m in METHODS)
                         + f"; pess/SGD {_ratio(panel, 'aeqprop-pessimistic')}")
        lines.append("| Fig. 3 (β = 1.5, ‖s‖² added): pessimistic and centered stable again; all variants train "
                     "where SGD is unstable; pessimistic tends to the smallest error | " + "<br>".join(cells) + " |")
    aeq = [r for r in records if r["method"] != "sgd"]
    rising = [r for r in aeq if r["lyapunov_increases"]]
    clean = [r for r in rising if not r["diverged"]]
    detail = ", ".join(sorted({f"{SHORT[r['method']]} fig{r['figure']} ε={r['epsilon']} β={r['beta']}"
                               for r in rising})) or "none"
    lines.append(f"| the Lyapunov function never increases, in every run | {sum(r['lyapunov_increases'] for r in aeq)} "
                 f"increases (relative > 1e-9) in {len(rising)}/{len(aeq)} Aeqprop runs, {len(clean)} of them in "
                 f"runs that did not diverge; runs with increases: {detail} |")
    return "\n".join(lines) + "\n"


def load_traces(directory: str) -> Traces:
    """The Traces of a finished study, read back from its figure{n}_traces.npz (to replot)."""
    runs, loss, before, after, diverged = [], [], [], [], []
    for name in sorted(os.listdir(directory)):
        if not (name.startswith("figure") and name.endswith("_traces.npz")):
            continue
        number = int(name[len("figure"):-len("_traces.npz")])
        with np.load(os.path.join(directory, name)) as data:
            for index in np.ndindex(*data["diverged_at"].shape):
                m, e, b, s = index
                T = data["loss"].shape[-1] - 1
                runs.append(Run(number, str(data["methods"][m]), float(data["epsilons"][e]), float(data["betas"][b]),
                                int(data["seeds"][s]), T, FIGURES[number].state_penalty))
                loss.append(data["loss"][index])
                before.append(data["lyapunov_before"][index])
                after.append(data["lyapunov_after"][index])
                diverged.append(int(data["diverged_at"][index]))
    width = max(len(row) for row in loss)
    pad = lambda rows, n: np.array([np.pad(r, (0, n - len(r)), constant_values=np.nan) for r in rows])  # noqa: E731
    return Traces(runs, pad(loss, width), pad(before, width - 1), pad(after, width - 1), np.array(diverged))
