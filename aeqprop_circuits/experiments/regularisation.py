"""Regularisation learning in a low-data setting (the CML paper's Table 1), on Fashion-MNIST.

One run: `samples` images drawn from the Fashion-MNIST training set (seeded), the first
`split` fraction of them the lower level's training set and the rest its validation set; the
lower level is a linear softmax classifier with a per-synapse L2 penalty of strength
lambda = exp(theta) (systems/regularisation.py); the meta-parameters theta are learnt for
`meta_steps` steps of Adam on the validation cross-entropy, each step's meta-gradient given by
the estimator (learning/bilevel.py `ESTIMATORS`: cml is p-ep one level up, t1t2 the one-term
Neumann series). Pixels are standardised by the mean and standard deviation of the whole
training set's pixels. At the end the lower level is learnt once more under the final
strengths and judged on the validation set and on the full test set (10 000 images):
`RegularisationConfig` is the run's schema, `regularisation_run` returns its record.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from aeqprop_circuits.errors import AeqpropError
from aeqprop_circuits.learning.algorithms import get_algorithm
from aeqprop_circuits.learning.bilevel import ESTIMATORS
from aeqprop_circuits.systems.base import Phase
from aeqprop_circuits.systems.bilevel import InnerSolve
from aeqprop_circuits.systems.regularisation import RegularisationSystem, SoftmaxTask

REGULARISATION_ESTIMATORS = ("cml", "cml-symmetric", "t1t2", "implicit-cg", "implicit-neumann", "exact")


@dataclass(frozen=True)
class RegularisationConfig:
    """Everything one regularisation-learning run needs (units: standardised pixels, nats)."""

    estimator: str = "cml"
    seed: int = 0
    samples: int = 1000  # images drawn from the training set: the lower level's training and validation sets
    split: float = 0.01  # fraction of them in the training set (the paper's "split" column)
    strength: float = 1e-2  # initial lambda of every synapse
    strength_floor: float = 1e-3  # lambda is kept above it (the lower level's conditioning, hence its cost)
    beta: float = 1e-4  # CML nudge of the validation loss (its bias grows as beta x validation curvature / lambda)
    meta_steps: int = 100
    meta_lr: float = 0.1  # Adam's step on theta = log lambda
    inner_steps: int = 2000  # L-BFGS iterations of a free phase, at most
    nudged_steps: int | None = None
    inner_tolerance: float = 1e-7  # largest gradient entry at convergence
    iterations: int | None = None  # implicit-cg / implicit-neumann
    data: str = "fmnist"

    def __post_init__(self):
        if self.estimator not in REGULARISATION_ESTIMATORS:
            raise AeqpropError(f"estimator: '{self.estimator}' is not one of {', '.join(REGULARISATION_ESTIMATORS)}")
        n_train = self.n_train
        if not (isinstance(self.samples, int) and 2 <= self.samples <= 60000 and 1 <= n_train < self.samples):
            raise AeqpropError(f"samples {self.samples!r} and split {self.split!r}: expected at least one training "
                               "and one validation image among at most 60000")
        for key in ("strength", "strength_floor", "beta", "meta_lr", "inner_tolerance"):
            if not getattr(self, key) > 0:
                raise AeqpropError(f"{key}: expected a positive number, got {getattr(self, key)!r}")
        for key in ("meta_steps", "inner_steps", "nudged_steps", "iterations"):
            value = getattr(self, key)
            if value is not None and not (isinstance(value, int) and value >= 1):
                raise AeqpropError(f"{key}: expected an integer >= 1, got {value!r}")

    @property
    def n_train(self) -> int:
        return max(1, int(round(self.split * self.samples)))

    def to_dict(self) -> dict:
        return asdict(self)


def standardised(name: str = "fmnist"):
    """The data set with pixels shifted and scaled by the mean and std of all training pixels."""
    from aeqprop_circuits.data.datasets import load_dataset

    data = load_dataset(name)
    mean, std = float(data.x_train.mean()), float(data.x_train.std())
    return (data.x_train - mean) / std, data.y_train, (data.x_test - mean) / std, data.y_test, data.n_classes


def low_data_split(x, y, samples: int, n_train: int, seed: int):
    """(x_train, y_train, x_val, y_val): `samples` rows drawn without replacement, the first n_train for training."""
    order = np.random.default_rng(seed).permutation(len(x))[:samples]
    return x[order[:n_train]], y[order[:n_train]], x[order[n_train:]], y[order[n_train:]]


def adam_step(theta, gradient, state: dict, rate: float, beta1: float = 0.9, beta2: float = 0.999,
              eps: float = 1e-8):
    """One Adam step (Kingma & Ba, PyTorch's defaults): returns the new theta; `state` is updated in place."""
    state["step"] = state.get("step", 0) + 1
    state["m"] = beta1 * state.get("m", 0.0) + (1 - beta1) * gradient
    state["v"] = beta2 * state.get("v", 0.0) + (1 - beta2) * gradient * gradient
    m_hat = state["m"] / (1 - beta1 ** state["step"])
    v_hat = state["v"] / (1 - beta2 ** state["step"])
    return theta - rate * m_hat / (np.sqrt(v_hat) + eps)


def estimator_rule(config: RegularisationConfig):
    name = ESTIMATORS[config.estimator]
    options = {} if config.iterations is None or name not in ("implicit-cg", "implicit-neumann") else {
        "iterations": config.iterations}
    return get_algorithm(name, beta=config.beta, **options)


def regularisation_run(config: RegularisationConfig, arrays=None, log=None) -> dict:
    """One run (module docstring); `arrays`: `standardised(config.data)`, loaded once for many runs."""
    began = time.time()
    x_pool, y_pool, x_test, y_test, n_classes = arrays if arrays is not None else standardised(config.data)
    x_train, y_train, x_val, y_val = low_data_split(x_pool, y_pool, config.samples, config.n_train, config.seed)
    model = SoftmaxTask(x_train, y_train, x_val, y_val, n_classes)
    inner = InnerSolve("lbfgs", config.inner_steps, config.nudged_steps, tolerance=config.inner_tolerance)
    system = RegularisationSystem(model, strength=config.strength, inner=inner)
    rule = estimator_rule(config)
    task, target = np.zeros((1, 1)), model.target()

    def judged(prefix: str) -> dict:
        weights = system.weights(system.settle(Phase(task)))
        val_loss, val_accuracy = model.evaluate(weights, x_val, y_val)
        test_loss, test_accuracy = model.evaluate(weights, x_test, y_test)
        return {f"{prefix}val_loss": val_loss, f"{prefix}val_accuracy": val_accuracy,
                f"{prefix}test_loss": test_loss, f"{prefix}test_accuracy": test_accuracy}

    before = judged("before_")
    theta, state, trace = system.parameters, {}, []
    for step in range(config.meta_steps):
        estimate = rule.estimate(system, task, target)
        trace.append(float(model.query_loss(estimate.outputs, target)[0]))  # validation loss before the step
        theta = np.maximum(adam_step(theta, estimate.gradient, state, config.meta_lr), np.log(config.strength_floor))
        system.parameters = theta
        if log is not None and (step + 1) % 10 == 0:
            log(f"  step {step + 1}: validation loss {trace[-1]:.4f}")
    after = judged("")
    strengths = system.strength
    return {**config.to_dict(), "n_train": config.n_train, "n_val": config.samples - config.n_train, **before,
            **after, "strength_median": float(np.median(strengths)), "strength_min": float(strengths.min()),
            "strength_max": float(strengths.max()), "val_loss_trace": trace,
            "seconds": round(time.time() - began, 2)}


# --- the Table 1 study: settings x estimators x seeds -----------------------------------------------------
# (samples, split): the paper's low-data rows (10 000 images, 1 and 10 of them for training), validation 10x smaller
TABLE1_SETTINGS = ((1000, 0.001), (1000, 0.01))
TABLE1_ESTIMATORS = ("cml", "t1t2", "implicit-cg")
# Adam's step on log lambda, one value for every estimator (not tuned per estimator)
TABLE1_RATES = {"cml": 0.1, "t1t2": 0.1, "implicit-cg": 0.1}
TABLE1_BETA = 1e-4  # CML's estimate is within 6 % of the implicit gradient at the initial strengths


def table1_study(directory: str, records, seeds: int = 5, estimators=TABLE1_ESTIMATORS, settings=TABLE1_SETTINGS,
                 log=print, **options) -> list[str]:
    """One run per (setting, estimator, seed) not yet in `records`; then the table (`table1.md`)."""
    import os

    from aeqprop_circuits.experiments.rundir import atomic_write

    configs = [RegularisationConfig(**{"estimator": estimator, "seed": seed, "samples": samples, "split": split,
                                       "beta": TABLE1_BETA, "meta_lr": TABLE1_RATES.get(estimator, 0.1),
                                       "iterations": 100 if estimator.startswith("implicit") else None, **options})
               for samples, split in settings for seed in range(seeds) for estimator in estimators]
    configs.sort(key=lambda c: (c.estimator not in ("cml", "t1t2"), c.seed))  # the compared pair first, seed by seed
    key = lambda r: (r["samples"], r["split"], r["estimator"], r["seed"])  # noqa: E731
    done = {key(r) for r in records.rows if r.get("study") == "table1"}
    arrays = None
    for config in configs:
        if key(config.to_dict()) in done:
            continue
        arrays = arrays if arrays is not None else standardised(config.data)
        record = regularisation_run(config, arrays)
        records.add({"study": "table1", **record})
        log(f"table1 {config.samples} samples, split {config.split}, {config.estimator} seed {config.seed}: "
            f"validation accuracy {record['val_accuracy']:.4f}, test accuracy {record['test_accuracy']:.4f} "
            f"({record['seconds']:.0f} s)")
    table = table1_table(records.rows)
    path = os.path.join(directory, "table1.md")
    atomic_write(path, table + "\n")
    log(table)
    return [path, plot_table1(records.rows, os.path.join(directory, "cml-table1.png"))]


def plot_table1(rows, path: str) -> str:
    """The validation loss against the meta-step per setting and estimator: mean over seeds, and the spread."""
    from aeqprop_circuits.experiments.plots import _pyplot, _save

    plt = _pyplot()
    runs = [r for r in rows if r.get("study") == "table1"]
    settings = list(dict.fromkeys((r["samples"], r["split"]) for r in runs))
    fig, axes = plt.subplots(1, len(settings), figsize=(4.5 * len(settings), 3.6), squeeze=False)
    for ax, setting in zip(axes[0], settings):
        cut = [r for r in runs if (r["samples"], r["split"]) == setting]
        for estimator in dict.fromkeys(r["estimator"] for r in cut):
            traces = np.array([r["val_loss_trace"] for r in cut if r["estimator"] == estimator])
            steps = np.arange(1, traces.shape[1] + 1)
            line, = ax.plot(steps, traces.mean(axis=0), label=f"{estimator} ({len(traces)} seeds)")
            ax.fill_between(steps, traces.min(axis=0), traces.max(axis=0), color=line.get_color(), alpha=0.2)
        ax.set(xlabel="meta-step (Adam on log λ)", ylabel="validation cross-entropy", yscale="log",
               title=f"{cut[0]['n_train']} training, {cut[0]['n_val']} validation images")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Regularisation learning on Fashion-MNIST (softmax classifier, per-synapse λ)", fontsize=10)
    _save(plt, fig, path)
    return path


def table1_table(rows) -> str:
    """Markdown: validation and test accuracy and loss per (setting, estimator), mean ± std over seeds, seconds."""
    runs = [r for r in rows if r.get("study") == "table1"]
    lines = ["| samples | split | train / validation | estimator | seeds | validation accuracy | test accuracy | "
             "validation loss | test loss | seconds per run |", "|---|---|---|---|---|---|---|---|---|---|"]

    def cell(cut, field, scale=1.0, digits=2):
        values = scale * np.array([r[field] for r in cut])
        return f"{values.mean():.{digits}f} ± {values.std():.{digits}f}"

    for setting in dict.fromkeys((r["samples"], r["split"]) for r in runs):
        cut = [r for r in runs if (r["samples"], r["split"]) == setting]
        first = cut[0]
        size = f"{first['n_train']} / {first['n_val']}"
        seeds = {r["seed"]: r for r in cut}.values()  # the initial strengths do not depend on the estimator
        lines.append(f"| {setting[0]} | {setting[1]} | {size} | initial λ | {len(seeds)} | "
                     f"{cell(seeds, 'before_val_accuracy', 100)} | {cell(seeds, 'before_test_accuracy', 100)} | "
                     f"{cell(seeds, 'before_val_loss', digits=3)} | {cell(seeds, 'before_test_loss', digits=3)} | |")
        for estimator in dict.fromkeys(r["estimator"] for r in cut):
            runs_of = [r for r in cut if r["estimator"] == estimator]
            lines.append(f"| {setting[0]} | {setting[1]} | {size} | {estimator} | {len(runs_of)} | "
                         f"{cell(runs_of, 'val_accuracy', 100)} | {cell(runs_of, 'test_accuracy', 100)} | "
                         f"{cell(runs_of, 'val_loss', digits=3)} | {cell(runs_of, 'test_loss', digits=3)} | "
                         f"{np.mean([r['seconds'] for r in runs_of]):.0f} |")
    return "\n".join(lines)


def cosines(config: RegularisationConfig, betas=(1.0, 1e-2, 1e-3, 1e-4), arrays=None) -> dict:
    """Cosine of each estimate with the implicit meta-gradient (200 CG iterations) at the initial strengths of a
    run's split: CML at each beta, T1-T2, and the symmetric CML at the smallest beta."""
    x_pool, y_pool, _, _, n_classes = arrays if arrays is not None else standardised(config.data)
    model = SoftmaxTask(*low_data_split(x_pool, y_pool, config.samples, config.n_train, config.seed), n_classes)
    inner = InnerSolve("lbfgs", 5000, tolerance=1e-9)
    system = RegularisationSystem(model, strength=config.strength, inner=inner)
    task, target = np.zeros((1, 1)), model.target()

    def gradient(name, **options):
        return get_algorithm(name, **options).estimate(system, task, target).gradient

    reference = gradient("implicit-cg", iterations=200)
    cosine = lambda g: float(g @ reference / np.linalg.norm(g) / np.linalg.norm(reference))  # noqa: E731
    result = {f"cml beta={beta:g}": cosine(gradient("p-ep", beta=beta)) for beta in betas}
    result[f"cml-symmetric beta={min(betas):g}"] = cosine(gradient("c-ep", beta=min(betas)))
    result["t1t2"] = cosine(gradient("t1t2"))
    return {key: round(value, 4) for key, value in result.items()}
