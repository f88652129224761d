"""Meta-learning runs (`aeqprop meta train`): a circuit's conductance prior learnt over a family of tasks.

`MetaConfig` is the one schema of a meta-learning run, checked before any work. `prepare`
builds the task family (data/tasks.py), the bilevel system (systems/bilevel.py: every task
learnt in its own copy of the circuit, phi = log(g / g0) pulled to the prior omega with
strength lambda) and the estimator (learning/bilevel.py `ESTIMATORS`: CML is the EP rules one
level up). Training is the package's one training loop over tasks instead of samples, into a
run directory like `aeqprop train`'s (config.json, metrics.csv, checkpoints/); its
`train_loss` is the query loss after adaptation on the training tasks (the meta-loss), its
`test_loss` the same on held-out tasks (both 1/2 sum over query points of the squared error).

At the end `summary.json` holds the query MSE on the held-out tasks after adaptation, before
meta-training and after it (mean over tasks and query points of the squared error, V^2), and
`meta.png` / `adaptation.png` show the meta-loss per epoch and a few held-out tasks.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

from aeqprop_circuits.data.datasets import Dataset
from aeqprop_circuits.data.tasks import TaskLayout, sinusoid_tasks
from aeqprop_circuits.errors import AeqpropError
from aeqprop_circuits.experiments.rundir import RunDir, atomic_write, default_name, fresh_directory, read_metrics
from aeqprop_circuits.experiments.trainer import TrainOptions
from aeqprop_circuits.experiments.trainer import train as train_loop
from aeqprop_circuits.learning.algorithms import Rule, get_algorithm
from aeqprop_circuits.learning.bilevel import ESTIMATORS
from aeqprop_circuits.systems.bilevel import INNER_METHODS, BilevelSystem, CircuitTasks, InnerSolve

TASK_FAMILIES = ("sinusoid", "mismatched-copies")  # the second: experiments/mismatch_meta.py
# how the circuit copies measure their support gradients: exactly, or in situ by an EP or Aeqprop rule
INNER_RULES = ("exact-gradient", "p-ep", "n-ep", "c-ep", "aeqprop-optimistic", "aeqprop-pessimistic",
               "aeqprop-centered")
SUMMARY_KEYS = ("estimator", "seed", "query_mse_before", "query_mse_after", "seconds")
RUN_FACTS = ("kind", "g0", "n_parameters")  # written to config.json next to the MetaConfig


class MetaConfigError(AeqpropError):
    """A meta-learning setting out of range or unknown."""


@dataclass(frozen=True)
class MetaConfig:
    """Everything a meta-learning run needs; config.json holds it.

    Units: the circuit's normalised ones (theta = g / g0, volts, V^2). The prior omega is on
    phi = log(g / g0) and starts at the netlist's conductances; lambda is the strength of the
    pull of each log-conductance to it (per unit of the support loss, a sum over shots).
    """

    model: str
    tasks: str = "sinusoid"
    estimator: str = "cml"
    seed: int = 0
    beta: float = 0.01  # CML nudge of the query loss
    strength: float = 0.1  # lambda: strong enough for a convex lower level on regression_fourier.cir
    learn_strength: bool = False
    strength_floor: float = 1e-6  # learnt strengths stay above it (a floor on lambda keeps the lower level convex)
    inner: str = "lbfgs"  # the lower level's optimiser (systems/bilevel.py InnerSolve)
    inner_steps: int = 1000
    nudged_steps: int | None = None
    inner_rate: float = 0.1
    inner_tolerance: float = 1e-8
    inner_rule: str = "exact-gradient"  # exact support gradients, or an EP rule measuring them in situ
    inner_beta: float = 0.01
    inner_epsilon: float = 1e-4  # Aeqprop lower level: its knob coupling (oracle controller)
    shots: int = 5
    queries: int = 10
    train_tasks: int = 200
    test_tasks: int = 100
    epochs: int = 10
    meta_batch: int = 10
    lr: float = 1.0
    momentum: float = 0.9
    points: int = 2  # cml-multipoint
    iterations: int | None = None  # implicit-cg, implicit-neumann
    alpha: float | None = None  # implicit-neumann, t1t2 (default 1 / largest curvature)
    solver: str = "auto"
    mismatch: float = 0.05  # mismatched-copies: sigma of the copies' element values
    data: str = "regression:fourier"  # mismatched-copies: the data set the copies learn
    model_epochs: int = 20  # mismatched-copies: exact-gradient epochs of the model first (0: the netlist as is)
    trace_every: int = 0
    out: str | None = None

    def __post_init__(self):
        choices = {"tasks": TASK_FAMILIES, "estimator": tuple(ESTIMATORS), "inner": INNER_METHODS,
                   "inner_rule": INNER_RULES}
        for key, options in choices.items():
            if getattr(self, key) not in options:
                raise MetaConfigError(f"{key}: '{getattr(self, key)}' is not one of {', '.join(options)}")
        positive = ("beta", "inner_rate", "inner_tolerance", "inner_beta", "inner_epsilon", "lr")
        at_least_one = ("inner_steps", "shots", "queries", "train_tasks", "test_tasks", "epochs", "meta_batch",
                        "points")
        for key in positive:
            value = getattr(self, key)
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
                raise MetaConfigError(f"{key}: expected a positive number, got {value!r}")
        for key in at_least_one + ("nudged_steps", "iterations"):
            value = getattr(self, key)
            if value is not None and not (isinstance(value, int) and value >= 1):
                raise MetaConfigError(f"{key}: expected an integer >= 1, got {value!r}")
        if not (isinstance(self.strength, (int, float)) and np.isfinite(self.strength) and self.strength >= 0):
            raise MetaConfigError(f"strength: expected a number >= 0, got {self.strength!r}")
        floor = self.strength_floor
        if not (isinstance(floor, (int, float)) and floor > 0 and (floor <= self.strength or not self.learn_strength)):
            raise MetaConfigError(f"strength_floor: expected a number in (0, strength], got {floor!r}")
        if not 0 <= self.momentum < 1:
            raise MetaConfigError(f"momentum: expected a number in [0, 1), got {self.momentum!r}")
        if not (isinstance(self.mismatch, (int, float)) and 0 < self.mismatch <= 1):
            raise MetaConfigError(f"mismatch: expected a relative spread in (0, 1], got {self.mismatch!r}")
        if not (isinstance(self.model_epochs, int) and self.model_epochs >= 0):
            raise MetaConfigError(f"model_epochs: expected an integer >= 0, got {self.model_epochs!r}")
        if self.alpha is not None and not self.alpha > 0:
            raise MetaConfigError(f"alpha: expected a positive number, got {self.alpha!r}")
        if not (isinstance(self.seed, int) and self.seed >= 0) or self.trace_every < 0:
            raise MetaConfigError(f"seed and trace_every: expected integers >= 0, got {self.seed!r}, "
                                  f"{self.trace_every!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> MetaConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise MetaConfigError(f"unknown meta-learning settings {sorted(unknown)}; valid: {', '.join(known)}")
        return cls(**values)


@dataclass
class MetaSetup:
    config: MetaConfig
    data: Dataset
    layout: TaskLayout
    system: BilevelSystem
    rule: Rule
    options: TrainOptions
    facts: dict = field(default_factory=dict)  # written to summary.json


def task_features(n_inputs: int):
    """The input sources' values for raw task inputs z: z itself for one input, else 2F + 1 Fourier features."""
    if n_inputs == 1:
        return None
    if n_inputs % 2 == 0:
        raise MetaConfigError(f"sinusoid tasks drive one input (z) or 2F + 1 Fourier features of z; the netlist has "
                              f"{n_inputs} inputs")
    from aeqprop_circuits.systems.energy import fourier_features

    return lambda z: fourier_features(z, (n_inputs - 1) // 2)


def estimator_rule(config: MetaConfig) -> Rule:
    name = ESTIMATORS[config.estimator]
    options = {}
    if name == "multi-point-ep":
        options["points"] = config.points
    if name in ("implicit-cg", "implicit-neumann"):
        options.update(iterations=config.iterations, alpha=config.alpha if name != "implicit-cg" else None)
        options = {k: v for k, v in options.items() if v is not None}
    if name == "t1t2" and config.alpha is not None:
        options["alpha"] = config.alpha
    return get_algorithm(name, beta=config.beta, **options)


def prepare(config: MetaConfig) -> MetaSetup:
    """Tasks, the bilevel system and the estimator, all checked; nothing is written."""
    from aeqprop_circuits.systems.models import load_circuit

    if not os.path.isfile(config.model):
        raise MetaConfigError(f"{config.model}: no such netlist file")
    if config.tasks == "mismatched-copies":
        from aeqprop_circuits.experiments.mismatch_meta import prepare_copies

        return prepare_copies(config)
    circuit = load_circuit(config.model)
    data, layout = sinusoid_tasks(config.train_tasks, config.test_tasks, config.shots, config.queries, config.seed)
    measure = None
    if config.inner_rule != "exact-gradient":
        options = {"epsilon": config.inner_epsilon} if config.inner_rule.startswith("aeqprop") else {}
        inner_rule = get_algorithm(config.inner_rule, beta=config.inner_beta, **options)

        def measure(system, inputs, target):
            estimate = inner_rule.estimate(system, inputs, target)
            return estimate.outputs, estimate.gradient

    model = CircuitTasks(circuit, layout, features=task_features(circuit.n_inputs), solver=config.solver,
                         measure=measure)
    inner = InnerSolve(config.inner, config.inner_steps, config.nudged_steps, config.inner_rate,
                       config.inner_tolerance)
    system = BilevelSystem(model, prior=model.initial, strength=config.strength,
                           learn_strength=config.learn_strength, inner=inner, strength_floor=config.strength_floor)
    options = TrainOptions(epochs=config.epochs, batch_size=config.meta_batch, learning_rate=config.lr,
                           momentum=config.momentum, seed=config.seed, trace_every=config.trace_every,
                           eval_batch=config.test_tasks, progress=False)
    return MetaSetup(config, data, layout, system, estimator_rule(config), options)


def query_mse(system: BilevelSystem, data: Dataset) -> np.ndarray:
    """Query MSE per held-out task after adaptation (T,)."""
    return system.query_error(data.x_test, data.y_test)


def meta_train(config: MetaConfig | None = None, echo=print, resume: str | None = None) -> str:
    """A meta-learning run into a fresh run directory, or the run in `resume` continued from its newest
    checkpoint (with its own config); returns the run directory.

    summary.json's seconds: the epochs' wall time (metrics.csv, over every session of the run) plus
    the held-out evaluations before and after meta-training.
    """
    checkpoint, done = None, 0
    if resume is not None:
        run = RunDir(resume, create=False)
        stored = run.read_config()
        if stored.get("kind") != "meta":
            raise MetaConfigError(f"{resume}: not a meta-learning run (aeqprop train --resume continues training "
                                  "runs)")
        config = MetaConfig.from_dict({k: v for k, v in stored.items() if k not in RUN_FACTS})
        checkpoint = run.latest_checkpoint(warn=echo)
        done = int(checkpoint["epoch"]) if checkpoint is not None else 0
        setup, path = prepare(config), resume
        run.cut_back(done if checkpoint is not None else -1)
        echo(f"run directory: {path} (resuming after epoch {done})")
    else:
        setup = prepare(config)
        path = fresh_directory(config.out or default_name(config.model, f"meta-{config.estimator}"))
        config = replace(config, out=path)
        run = RunDir(path)
        run.write_config({**config.to_dict(), "kind": "meta", "g0": setup.system.model.g0,
                          "n_parameters": int(setup.system.parameters.size)})  # the keys of RUN_FACTS
        echo(f"run directory: {path}")
    system = setup.system
    began = time.time()
    before = query_mse(system, setup.data)  # at the initial prior
    echo(f"held-out query MSE after adaptation, before meta-training: {before.mean():.5f}")
    evaluations = time.time() - began
    if checkpoint is not None:
        system.parameters = checkpoint["parameters"]
    with np.errstate(over="ignore"):
        train_loop(system, setup.data, setup.rule, run, setup.options, start_epoch=done, resumed=checkpoint,
                   log=echo)
    began = time.time()
    after = query_mse(system, setup.data)
    seconds = sum(row["seconds"] for row in read_metrics(path)) + evaluations + time.time() - began
    summary = {"estimator": config.estimator, "seed": config.seed, "query_mse_before": float(before.mean()),
               "query_mse_after": float(after.mean()), "seconds": round(seconds, 2),
               "query_mse_after_std": float(after.std()), "query_mse_zero": float((setup.data.y_test ** 2).mean()),
               **setup.facts, "test_tasks": config.test_tasks, "meta_steps": config.epochs * -(-config.train_tasks //
                                                                                 config.meta_batch)}
    atomic_write(run.file("summary.json"), json.dumps(summary, indent=2) + "\n")
    echo(f"held-out query MSE after adaptation, after meta-training: {after.mean():.5f} ({seconds:.0f} s)")
    for plot in plot_meta_run(path, setup):
        echo(f"plot: {plot}")
    return path


def plot_meta_run(path: str, setup: MetaSetup | None = None) -> list[str]:
    """meta.png (meta-loss and held-out query loss per epoch) and adaptation.png (a few held-out tasks).

    Without a setup, the run's config rebuilds it and its latest checkpoint gives the prior.
    """
    from aeqprop_circuits.experiments.plots import _pyplot, _read_metrics, _save

    plt = _pyplot()
    metrics = _read_metrics(path)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(metrics["epoch"], metrics["train_loss"], "o-", label="meta-loss (training tasks)")
    ax.plot(metrics["epoch"], metrics["test_loss"], "s-", label="held-out tasks")
    ax.set(xlabel="epoch", ylabel="query loss after adaptation (V²)", yscale="log",
           title="query loss after the lower level learnt each task")
    ax.grid(alpha=0.3)
    ax.legend()
    files = [os.path.join(path, "meta.png")]
    _save(plt, fig, files[0])
    if setup is None:
        run = RunDir(path, create=False)
        stored = run.read_config()
        setup = prepare(MetaConfig.from_dict({k: v for k, v in stored.items() if k not in RUN_FACTS}))
        checkpoint = run.latest_checkpoint()
        if checkpoint is not None:
            setup.system.parameters = checkpoint["parameters"]
    if setup.layout is None:  # tasks that are not sinusoids (mismatched copies): no curves to draw
        return files
    from aeqprop_circuits.systems.base import Phase

    count = min(4, len(setup.data.x_test))
    tasks, targets = setup.data.x_test[:count], setup.data.y_test[:count]
    support_x, support_y, query_x = setup.layout.unpack(tasks)
    grid = np.linspace(-1, 1, 101)
    dense = setup.layout.pack(support_x, support_y, np.broadcast_to(grid[None, :, None], (count, 101, 1)))
    dense_layout = TaskLayout(setup.layout.shots, 101)
    model = CircuitTasks(setup.system.model.circuit, dense_layout, setup.system.model.features,
                         setup.system.model.solver, setup.system.model.measure)
    wide = BilevelSystem(model, prior=setup.system.prior, strength=setup.system.strength, inner=setup.system.inner)
    curves = wide.outputs(wide.settle(Phase(dense)))
    fig, axes = plt.subplots(1, count, figsize=(3.2 * count, 3), squeeze=False)
    for k, ax in enumerate(axes[0]):
        ax.plot(grid, curves[k], "-", label="adapted")
        ax.plot(query_x[k, :, 0], targets[k], "s", ms=4, label="query")
        ax.plot(support_x[k, :, 0], support_y[k, :, 0], "o", ms=5, label="support")
        ax.set(xlabel="z", title=f"held-out task {k}")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    files.append(os.path.join(path, "adaptation.png"))
    _save(plt, fig, files[1])
    return files
