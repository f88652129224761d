"""`aeqprop reproduce cml`: contrastive meta-learning and least-control studies, each a list of records.

Studies (each writes its records to `summary.json` as it goes, and its figures):

- quadratic: the CML paper's App. E model (N = 50, H = diag(1, ..., 1/N), omega ~ N(0, 2),
  phi_t, phi_v drawn with std 0.2 around a task centre of std 1, lambda = 1). The lower level
  learns by gradient descent of a fixed number of steps in every phase (the paper's proxy for
  its accuracy delta); the p-point forward estimators (p = 2, 3, 4) against the closed-form
  meta-gradient over a grid of beta: records of the normalised error per (p, steps, beta), and
  the best beta and error per (p, steps) (Figs. S3 to S5).
- fewshot: 5-shot sinusoid regression on `netlists/regression_fourier.cir`, the conductance prior
  meta-learnt with each estimator for each seed (`aeqprop meta train` runs, one run directory
  each, skipped when its summary.json exists so an interrupted study resumes); records of the
  held-out query MSE before and after, and the mean and spread per estimator.
- least-control: the Iris and Wine netlists trained with c-ep, lcp and lcp-output for each seed
  (final test accuracy); the control cost H and the loss per epoch of Iris under lcp-current and
  lcp, and of XOR (a separable task) under lcp.
- table1: the CML paper's Table 1 setting on Fashion-MNIST (experiments/regularisation.py): per-synapse
  L2 strengths of a softmax classifier learnt from few training images on a validation set, with cml,
  t1t2 and implicit-cg for each seed; validation and test accuracy and loss, mean and spread.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from aeqprop_circuits.data.tasks import quadratic_tasks
from aeqprop_circuits.experiments.rundir import atomic_write
from aeqprop_circuits.learning.algorithms import get_algorithm
from aeqprop_circuits.systems.base import Phase
from aeqprop_circuits.systems.bilevel import BilevelSystem, InnerSolve, QuadraticTasks

STUDIES = ("quadratic", "fewshot", "least-control", "table1")
# least-control traces: (netlist, data, rule, what H measures, training settings)
TRACES = (("iris.cir", "iris", "lcp-current", "current", {"lr": 0.1}), ("iris.cir", "iris", "lcp", "voltage", {}),
          ("xor.cir", "xor", "lcp", "voltage", {"epochs": 200, "target_amplitude": 0.2, "lr_decay": 1.0}))
FEWSHOT_ESTIMATORS = ("exact", "cml", "cml-symmetric", "implicit-cg", "t1t2", "fomaml", "reptile")
FOURIER = os.path.join(os.path.dirname(__file__), "..", "..", "..", "netlists", "regression_fourier.cir")


class Records:
    """summary.json of a study directory, rewritten after every record (a kill loses at most one)."""

    def __init__(self, directory: str):
        self.path = os.path.join(directory, "summary.json")
        self.rows: list[dict] = []
        if os.path.exists(self.path):
            with open(self.path) as f:
                self.rows = json.load(f)

    def add(self, *rows: dict) -> None:
        self.rows.extend(rows)
        atomic_write(self.path, json.dumps(self.rows, indent=1) + "\n")


# --- App. E -------------------------------------------------------------------------------------------
def quadratic_study(directory: str, records: Records, size: int = 50, strength: float = 1.0,
                    steps=(5, 10, 20, 50, 100, 200), betas=None, points=(2, 3, 4), seed: int = 0, log=print) -> list:
    """Normalised error of the p-point CML estimators against beta, for lower levels of each accuracy."""
    betas = np.logspace(-4, 0.5, 28) if betas is None else np.asarray(betas)
    curvature = 1.0 / np.arange(1, size + 1)
    model = QuadraticTasks(curvature)
    phi_t, phi_v = quadratic_tasks(1, size, seed=seed)
    omega = np.random.default_rng(seed + 1).normal(0.0, 2.0, size)
    psi = (phi_v - phi_t)[0] + strength / curvature * (phi_v[0] - omega)
    exact = -strength * psi / (1.0 + strength / curvature) ** 2
    target = model.target(phi_v)
    rate = 1.0 / ((1 + (max(points) - 1) * betas.max()) * curvature.max() + strength)  # stable in every phase
    best = []
    for p in points:
        for n in steps:
            system = BilevelSystem(model, prior=omega, strength=strength, inner=InnerSolve("gd", n, rate=rate))
            delta = float(np.linalg.norm(system.settle(Phase(phi_t)).phi[0] - _solution(phi_t[0], omega, curvature,
                                                                                          strength)))
            errors = []
            for beta in betas:
                estimate = get_algorithm("multi-point-ep", beta=float(beta), points=p - 1).estimate(
                    system, phi_t, target).gradient
                errors.append(float(np.linalg.norm(estimate - exact) / np.linalg.norm(exact)))
            k = int(np.argmin(errors))
            best.append({"study": "quadratic-best", "points": p, "steps": n, "delta": delta,
                         "beta_best": float(betas[k]), "error_best": errors[k]})
            records.add(*({"study": "quadratic", "points": p, "steps": n, "beta": float(beta), "error": error,
                           "delta": delta} for beta, error in zip(betas, errors)), best[-1])
            log(f"quadratic p={p} steps={n}: delta {delta:.2e}, best beta {betas[k]:.3g}, error {errors[k]:.3g}")
    return [_plot_quadratic(directory, records.rows, points, steps)]


def _solution(phi_t, omega, curvature, strength):
    return (curvature * phi_t + strength * omega) / (curvature + strength)


def _plot_quadratic(directory, rows, points, steps) -> str:
    from aeqprop_circuits.experiments.plots import _pyplot, _save

    plt = _pyplot()
    fig, axes = plt.subplots(1, len(points) + 1, figsize=(4 * (len(points) + 1), 3.6))
    for ax, p in zip(axes, points):
        for n in steps:
            cut = [r for r in rows if r["study"] == "quadratic" and r["points"] == p and r["steps"] == n]
            ax.loglog([r["beta"] for r in cut], [r["error"] for r in cut], label=f"{n} steps")
        ax.set(xlabel="β", ylabel="|∇̂ − ∇| / |∇|", title=f"{p}-point estimator")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    ax = axes[-1]
    for p in points:
        cut = [r for r in rows if r["study"] == "quadratic-best" and r["points"] == p]
        ax.loglog([r["steps"] for r in cut], [r["beta_best"] for r in cut], "o-", label=f"best β, p={p}")
        ax.loglog([r["steps"] for r in cut], [r["error_best"] for r in cut], "s--", label=f"best error, p={p}")
    ax.set(xlabel="gradient-descent steps per phase", title="best β and its error")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    path = os.path.join(directory, "cml-quadratic.png")
    _save(plt, fig, path)
    return path


# --- few-shot sinusoid regression on a circuit ----------------------------------------------------------
def fewshot_study(directory: str, records: Records, seeds: int = 5, estimators=FEWSHOT_ESTIMATORS,
                  netlist: str = FOURIER, log=print, **settings) -> list:
    """One `aeqprop meta train` run per (estimator, seed); records of their summaries, then the spread."""
    from aeqprop_circuits.experiments.meta import MetaConfig, meta_train

    done = {(r["estimator"], r["seed"]) for r in records.rows if r.get("study") == "fewshot"}
    for seed in range(seeds):
        for estimator in estimators:
            if (estimator, seed) in done:
                continue
            out = os.path.join(directory, "fewshot", f"{estimator}-seed{seed}")
            summary_path = os.path.join(out, "summary.json")
            if not os.path.exists(summary_path):
                if os.path.isdir(out):  # a run cut short: start it again
                    import shutil

                    shutil.rmtree(out)
                meta_train(MetaConfig(model=os.path.normpath(netlist), estimator=estimator, seed=seed, out=out,
                                      **settings), echo=lambda message: None)
            with open(summary_path) as f:
                summary = json.load(f)
            records.add({"study": "fewshot", **summary})
            log(f"fewshot {estimator} seed {seed}: query MSE {summary['query_mse_before']:.5f} -> "
                f"{summary['query_mse_after']:.5f} ({summary['seconds']:.0f} s)")
    table = fewshot_table(records.rows)
    atomic_write(os.path.join(directory, "fewshot.md"), table + "\n")
    log(table)
    return [os.path.join(directory, "fewshot.md")]


def fewshot_table(rows) -> str:
    """Markdown: held-out query MSE after meta-training per estimator, mean ± std over seeds, and seconds."""
    runs = [r for r in rows if r.get("study") == "fewshot"]
    lines = ["| estimator | seeds | query MSE before | query MSE after (mean ± std) | seconds per run |",
             "|---|---|---|---|---|"]
    for estimator in dict.fromkeys(r["estimator"] for r in runs):
        cut = [r for r in runs if r["estimator"] == estimator]
        after = np.array([r["query_mse_after"] for r in cut])
        lines.append(f"| {estimator} | {len(cut)} | {np.mean([r['query_mse_before'] for r in cut]):.5f} | "
                     f"{after.mean():.5f} ± {after.std():.5f} | {np.mean([r['seconds'] for r in cut]):.0f} |")
    return "\n".join(lines)


# --- least control ---------------------------------------------------------------------------------------
def least_control_study(directory: str, records: Records, seeds: int = 5, epochs: int = 30, log=print) -> list:
    """Iris and Wine with c-ep, lcp and lcp-output per seed; XOR's control cost per epoch under lcp."""
    from aeqprop_circuits.experiments.session import train

    netlists = os.path.join(os.path.dirname(FOURIER))
    done = {(r["data"], r["algorithm"], r["seed"]) for r in records.rows if r.get("study") == "least-control"}
    for data in ("iris", "wine"):
        for seed in range(seeds):
            for algorithm in ("c-ep", "lcp", "lcp-output"):
                if (data, algorithm, seed) in done:
                    continue
                began = time.time()
                result = train(os.path.join(netlists, f"{data}.cir"), data=data, algorithm=algorithm, seed=seed,
                               epochs=epochs)
                records.add({"study": "least-control", "data": data, "algorithm": algorithm, "seed": seed,
                             "epochs": epochs, "test_accuracy": result.final["test_accuracy"],
                             "seconds": round(time.time() - began, 1)})
                log(f"least-control {data} {algorithm} seed {seed}: test accuracy {result.final['test_accuracy']:.3f}")
    traced = {(r["netlist"], r["algorithm"]) for r in records.rows if r.get("study") == "least-control-trace"}
    for name, data, algorithm, measure, settings in TRACES:
        if (name, algorithm) not in traced:
            records.add(*control_trace(os.path.join(netlists, name), data, algorithm, measure,
                                       os.path.join(directory, "traces", f"{name[:-4]}-{algorithm}"), **settings))
    table = least_control_table(records.rows)
    atomic_write(os.path.join(directory, "least-control.md"), table + "\n")
    log(table)
    return [os.path.join(directory, "least-control.md")]


def control_trace(netlist: str, data: str, algorithm: str, measure: str, directory: str, epochs: int = 30,
                  seed: int = 0, **settings) -> list[dict]:
    """A training run (`aeqprop train`'s loop into `directory`) and, at each epoch's checkpoint, the mean
    control cost H (measured in `measure`) and the loss over the training set."""
    from aeqprop_circuits.data.datasets import load_dataset
    from aeqprop_circuits.experiments.rundir import RunDir
    from aeqprop_circuits.experiments.session import train
    from aeqprop_circuits.systems.least_control import least_control

    result = train(netlist, data=data, algorithm=algorithm, seed=seed, epochs=epochs, out=directory, **settings)
    system, config = result.system, result.config
    task = load_dataset(data, seed=seed)
    x, y = task.x_train, task.targets(task.y_train, system.n_outputs, config.target_amplitude)
    run, rows = RunDir(result.run_dir, create=False), []
    for epoch in run.checkpoint_epochs():
        system.parameters = run.load_checkpoint(epoch)["parameters"]
        free = system.settle(Phase(x))
        cost = least_control(system, x, y, start=free.result.free, measure=measure).cost.mean()
        rows.append({"study": "least-control-trace", "netlist": os.path.basename(netlist), "algorithm": algorithm,
                     "measure": measure, "epoch": epoch, "control_cost": float(cost),
                     "loss": float(system.cost(free, y).mean())})
    return rows


def least_control_table(rows) -> str:
    runs = [r for r in rows if r.get("study") == "least-control"]
    lines = ["| data | rule | seeds | test accuracy (mean ± std) |", "|---|---|---|---|"]
    for data in dict.fromkeys(r["data"] for r in runs):
        for algorithm in dict.fromkeys(r["algorithm"] for r in runs if r["data"] == data):
            accuracy = np.array([r["test_accuracy"] for r in runs if r["data"] == data and r["algorithm"] == algorithm])
            lines.append(f"| {data} | {algorithm} | {len(accuracy)} | {accuracy.mean():.3f} ± {accuracy.std():.3f} |")
    traces = [r for r in rows if r.get("study") == "least-control-trace"]
    for key in dict.fromkeys((r["netlist"], r["algorithm"], r["measure"]) for r in traces):
        cut = [r for r in traces if (r["netlist"], r["algorithm"], r["measure"]) == key]
        unit = "V²" if key[2] == "voltage" else "(g0 V)²"
        lines += ["", f"| {key[0]}, {key[1]}: epoch | control cost H ({unit}) | training loss (V²) |",
                  "|---|---|---|"]
        lines += [f"| {r['epoch']} | {r['control_cost']:.3g} | {r['loss']:.3g} |" for r in cut
                  if r["epoch"] % max(1, cut[-1]["epoch"] // 10) == 0]
    return "\n".join(lines)


def reproduce(directory: str, studies=STUDIES, seeds: int = 5, estimators=FEWSHOT_ESTIMATORS, log=print,
              **settings) -> dict:
    """Run the studies into `directory`; returns {"records": [...], "files": [...]}."""
    records = Records(directory)
    files = []
    if "quadratic" in studies and not any(r.get("study") == "quadratic" for r in records.rows):
        files += quadratic_study(directory, records, log=log)
    if "fewshot" in studies:
        files += fewshot_study(directory, records, seeds=seeds, estimators=estimators, log=log, **settings)
    if "least-control" in studies:
        files += least_control_study(directory, records, seeds=seeds, log=log)
    if "table1" in studies:
        from aeqprop_circuits.experiments.regularisation import table1_study

        files += table1_study(directory, records, seeds=seeds, log=log)
    return {"records": records.rows, "files": [records.path, *files]}
