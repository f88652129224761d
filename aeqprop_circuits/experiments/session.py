"""A training run from a TrainConfig: everything is checked first, then the run directory is made and trained.

`prepare` loads the data set and builds the system and the rule, and refuses any
inconsistency between them, before a file is written; `start` and `resume` then run the
trainer into a run directory (the CLI's `aeqprop train`), and `run` into any recorder (the
Python API). A run refused during validation leaves no directory behind.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace

import numpy as np

from aeqprop_circuits.data.datasets import Dataset, load_dataset
from aeqprop_circuits.errors import AeqpropError
from aeqprop_circuits.experiments.config import ConfigError, TrainConfig, option_name, parse_settings, resolve
from aeqprop_circuits.experiments.hardware import Bench, hardware_bench
from aeqprop_circuits.experiments.rundir import (
    RunDir,
    RunDirError,
    atomic_write,
    default_name,
    file_hash,
    fresh_directory,
    read_metrics,
)
from aeqprop_circuits.experiments.trainer import History, Recorder, TrainOptions, test_split, training_split
from aeqprop_circuits.experiments.trainer import train as train_loop
from aeqprop_circuits.learning.algorithms import Rule, get_algorithm
from aeqprop_circuits.systems.base import ConductanceUnits, ParameterGroups, PhysicalSystem
from aeqprop_circuits.systems.models import load_system, model_kind

# Settings that may differ when a run is resumed: how long it trains, and where it is.
RESUMABLE = ("epochs", "out")


__all__ = ["RunInterrupted", "Setup", "TrainResult", "parse_settings", "prepare", "resume", "run", "run_training",
           "start", "train"]


class RunInterrupted(AeqpropError):
    """Training stopped by the user (Ctrl-C); `path` is the run directory to resume."""

    def __init__(self, path: str):
        self.path = path
        super().__init__(f"interrupted: continue with aeqprop train --resume {path}")


@dataclass
class Setup:
    """What a run trains: the config, the data, the system and the rule, all checked against each other."""

    config: TrainConfig
    data: Dataset
    system: PhysicalSystem
    rule: Rule
    options: TrainOptions
    bench: Bench | None = None  # with --hardware: the hardware, the model and which one `system` is


def per_parameter(system: PhysicalSystem, value, key: str):
    """A rate given per parameter group ({"w1": ..., "b1": ...}) as a (P,) array; a number as it is."""
    if not isinstance(value, dict):
        return value
    if not isinstance(system, ParameterGroups):
        raise ConfigError(f"{key}: {type(system).__name__} has no parameter groups for per-group rates {value}")
    try:
        return system.per_parameter(value)
    except (KeyError, ValueError) as err:
        raise ConfigError(f"{key}: {err}") from None


def prepare(config: TrainConfig, model_path: str | None = None, progress: bool = True, echo=print) -> Setup:
    """Load and check everything a run needs; nothing is written. `model_path` overrides the config's (a run's copy)."""
    data = load_dataset(config.data, seed=config.seed, task=config.task, test_fraction=config.test_fraction,
                        log=echo)
    if config.normalize is not None:
        mean, std = config.normalize
        data = replace(data, x_train=(data.x_train - mean) / std, x_test=(data.x_test - mean) / std)
    system = load_system(model_path or config.model, solver=config.solver, seed=config.seed,
                         **config.model_options)
    bench = hardware_bench(system, config.hardware, config.mismatch, config.hardware_seed, config.nonlinearity,
                           config.training, config.transfer_epochs)
    if bench is not None:
        system = bench.trained
    if data.n_features != system.n_inputs:
        raise AeqpropError(f"{config.data} has {data.n_features} features but {config.model} has "
                           f"{system.n_inputs} inputs")
    data.check_outputs(system.n_outputs)
    if config.augment == "hflip" and data.image_shape is None:
        raise ConfigError(f"augment hflip flips images, but {config.data} is not an image data set (fmnist, mnist)")
    lr = per_parameter(system, config.lr, "lr")
    options = {}
    if config.is_aeqprop:
        options = {"epsilon": per_parameter(system, config.epsilon, "epsilon"), "controller": config.controller,
                   "relax_rounds": config.relax_rounds}
    elif config.algorithm.startswith("lcp"):
        options = {"controller": config.controller}
    elif config.algorithm == "multi-point-ep":
        options = {"points": config.points}
    rule = get_algorithm(config.algorithm, beta=config.beta, **options, **config.algorithm_options)
    loop = TrainOptions(epochs=config.epochs, batch_size=config.batch_size, learning_rate=lr,
                        schedule=config.schedule, lr_decay=config.lr_decay, lr_floor=config.lr_floor,
                        momentum=config.momentum, weight_decay=config.weight_decay, seed=config.seed,
                        target_amplitude=config.target_amplitude, trace_every=config.trace_every,
                        augment=config.augment, max_train=config.max_train, max_test=config.max_test,
                        progress=progress)
    return Setup(config, data, system, rule, loop, bench)


def run(setup: Setup, recorder: Recorder, start_epoch: int = 0, resumed: dict | None = None, log=print) -> dict:
    """Train a prepared setup into a recorder; returns the last metrics row."""
    if resumed is not None:
        setup.system.parameters = resumed["parameters"]
    if setup.bench is not None:
        recorder = setup.bench.recorder(recorder, setup.data, setup.options)
        if resumed is None:
            setup.bench.pretrain(setup.data, setup.options, log)
    with np.errstate(over="ignore"):  # junction exponentials overflow to inf, which the solvers handle
        return train_loop(setup.system, setup.data, setup.rule, recorder, setup.options, start_epoch=start_epoch,
                     resumed=resumed, log=log)


BASELINE_SIZE = 2_000_000  # training values (samples x features) up to which the digital baseline is fitted


def digital_baseline(setup: Setup) -> dict | None:
    """A standard digital classifier on the run's own split, so a reader can tell the circuit from the split.

    scikit-learn's logistic regression (lbfgs, C = 1) on the same training samples and test
    split as the run; None for regression data, and for training sets above BASELINE_SIZE
    values (Fashion-MNIST's full set takes minutes of lbfgs; its published logistic-regression
    accuracy is a better reference there). Written to baseline.json and printed after training.
    """
    data = setup.data
    if not data.n_classes or training_split(data, setup.options)[0].size > BASELINE_SIZE:
        return None
    from sklearn.linear_model import LogisticRegression

    x_train, y_train = training_split(data, setup.options)
    if len(np.unique(y_train)) < 2:
        return None
    model = LogisticRegression(max_iter=2000).fit(x_train.reshape(len(x_train), -1), y_train)
    x_test, y_test = test_split(data, setup.options)
    accuracy = float(model.score(x_test.reshape(len(x_test), -1), y_test))
    return {"model": "logistic regression (scikit-learn, lbfgs, C=1)", "train_samples": int(len(x_train)),
            "test_samples": int(len(x_test)), "test_accuracy": accuracy}


def _report(setup: Setup, path: str, row: dict, echo) -> None:
    """The end of a run: where its results are, and the digital baseline on the same split."""
    baseline = digital_baseline(setup)
    if baseline is not None:
        atomic_write(os.path.join(path, "baseline.json"), json.dumps(baseline, indent=2) + "\n")
        echo(f"test accuracy {row['test_accuracy']:.3f}; {baseline['model']} on the same split: "
             f"{baseline['test_accuracy']:.3f}")
    echo(f"results in {path} (plots: aeqprop plot {path})")


def run_facts(setup: Setup) -> dict:
    """What config.json records next to the config: facts of the run that turn its numbers back into units."""
    g0 = setup.system.g0 if isinstance(setup.system, ConductanceUnits) else None
    facts = {"g0": g0, "n_parameters": int(setup.system.parameters.size), "class_map": setup.data.class_map}
    return facts if setup.bench is None else {**facts, **setup.bench.facts()}


def start(config: TrainConfig, progress: bool = True, echo=print) -> str:
    """A new run: check everything, then make a fresh run directory and train. Returns its path."""
    setup = prepare(config, progress=progress, echo=echo)
    path = _new_run_directory(setup)
    echo(f"run directory: {path}")
    if setup.data.class_map:
        echo("classes: " + ", ".join(f"{label} -> {index}" for label, index in setup.data.class_map.items()))
    try:
        row = run(setup, RunDir(path), log=echo)
    except KeyboardInterrupt:
        raise RunInterrupted(path) from None
    _report(setup, path, row, echo)
    return path


def _new_run_directory(setup: Setup) -> str:
    """A fresh run directory holding the config, the facts of the run and the netlist's copy; its path."""
    config = setup.config
    path = fresh_directory(config.out or default_name(config.model, config.algorithm))
    run_dir = RunDir(path)
    data = os.path.abspath(config.data) if os.path.isfile(config.data) else config.data  # resumable from anywhere
    setup.config = config = replace(config, out=path, data=data)
    facts = run_facts(setup)
    if model_kind(config.model) == "netlist":
        copy, digest = run_dir.keep_netlist(netlist_files(config.model))
        facts.update(netlist_copy=copy, netlist_sha256=digest)
    run_dir.write_config({**config.to_dict(), **facts})
    return path


def netlist_files(path: str) -> list[str]:
    """The netlist and the files it includes, at any depth (the netlist first)."""
    found, pending = [], [os.path.abspath(path)]
    while pending:
        current = pending.pop(0)
        if current in found or not os.path.isfile(current):
            continue
        found.append(current)
        with open(current, errors="replace") as f:
            for line in f:
                words = line.split()
                if len(words) >= 2 and words[0].lower() in (".include", ".inc"):
                    name = line.split(None, 1)[1].strip().strip("'\"")
                    pending.append(os.path.join(os.path.dirname(current), name))
    return found


def resume(path: str, given: dict, progress: bool = True, echo=print) -> str:
    """Continue a run where its newest readable checkpoint left it, on the run's own copy of its netlist.

    Settings given now must equal the run's, except `epochs`, which may extend it.
    """
    run_dir = RunDir(path, create=False)
    stored = run_dir.read_config()
    config = TrainConfig.from_dict(stored, where=run_dir.file("config.json"))
    checkpoint = run_dir.latest_checkpoint(warn=echo)
    done = int(checkpoint["epoch"]) if checkpoint is not None else 0
    changes = {}
    for key, value in given.items():
        if value is None or key == "out":
            continue
        if key == "epochs":
            if value < done:
                raise ConfigError(f"--epochs {value}: the run in {path} has done {done} epochs already")
            changes["epochs"] = value
        elif key == "model_options":
            if value and {**config.model_options, **value} != config.model_options:
                raise ConfigError(f"--set {value}: the run in {path} has model options {config.model_options}; "
                                  "start a new run to change them")
        elif getattr(config, key, value) != value:
            raise ConfigError(f"{option_name(key)} {value}: the run in {path} has {key} = "
                              f"{getattr(config, key)!r}; only --epochs may change on --resume")
    config = replace(config, **changes)
    model_path = None
    if stored.get("netlist_copy"):
        model_path = run_dir.file(stored["netlist_copy"])
        if not os.path.exists(model_path):
            raise RunDirError(f"{model_path}: the run's copy of its netlist is missing")
        original = config.model
        if os.path.exists(original):
            if file_hash(netlist_files(original)) != stored.get("netlist_sha256"):
                echo(f"warning: {original} changed since the run started; resuming on the run's copy {model_path}")
    setup = prepare(config, model_path=model_path, progress=progress, echo=echo)
    if checkpoint is not None and checkpoint["parameters"].shape != setup.system.parameters.shape:
        raise RunDirError(f"{path}: the checkpoint holds {checkpoint['parameters'].size} parameters, the model "
                          f"{setup.system.parameters.size}")
    run_dir.cut_back(done if checkpoint is not None else -1)
    run_dir.write_config({**stored, **config.to_dict()})
    echo(f"run directory: {path} (resuming after epoch {done})" if checkpoint is not None
         else f"run directory: {path} (no checkpoint: starting over)")
    try:
        row = run(setup, run_dir, start_epoch=done if checkpoint is not None else 0, resumed=checkpoint, log=echo)
    except KeyboardInterrupt:
        raise RunInterrupted(path) from None
    _report(setup, path, row or _last_row(run_dir), echo)
    return path


def _last_row(run_dir: RunDir) -> dict:
    rows = read_metrics(run_dir.path)
    return rows[-1] if rows else {"test_accuracy": float("nan")}


def run_training(model, resume_dir, quiet, given, echo=print) -> str:
    """What `aeqprop train` does with its arguments: resume `resume_dir`, or resolve a config and start."""
    given = dict(given)
    if resume_dir:
        preset = given.pop("preset", None)
        if model or preset:
            raise ConfigError("--resume continues a run with its own model: give no model, --model or --preset")
        return resume(resume_dir, given, progress=not quiet, echo=echo)
    return start(resolve(model, **given), progress=not quiet, echo=echo)


@dataclass
class TrainResult:
    """What `train` returns: the config it ran, the trained system, its metrics rows and traced steps."""

    config: TrainConfig
    system: PhysicalSystem
    metrics: list
    steps: list
    run_dir: str | None = None

    @property
    def final(self) -> dict:
        """The last epoch's metrics row."""
        return self.metrics[-1]


class _Both:
    """Records into a run directory and into memory at once."""

    def __init__(self, *recorders):
        self.recorders = recorders

    def epoch(self, row, checkpoint):
        for recorder in self.recorders:
            recorder.epoch(row, checkpoint)

    def step(self, record):
        for recorder in self.recorders:
            recorder.step(record)


def train(model: str | None = None, *, preset: str | None = None, out: str | None = None, progress: bool = False,
          log=None, recorder: Recorder | None = None, **settings) -> TrainResult:
    """Train a netlist or model spec from Python, with the CLI's defaults; returns a `TrainResult`.

    Settings are those of `TrainConfig` (data, algorithm, beta, lr, epochs, ...), checked before
    any work. With `out` the run is also written to a fresh run directory, exactly as `aeqprop
    train --out` writes it; `recorder` receives every metrics row and traced step as they come.
    """
    config = resolve(model, preset, **settings)
    echo = log or (lambda message: None)
    history = History()
    recorders = [history] + ([recorder] if recorder is not None else [])
    if out is None:
        setup = prepare(config, progress=progress, echo=echo)
        run(setup, _Both(*recorders), log=echo)
        return TrainResult(config, setup.system, history.rows, history.steps)
    setup = prepare(replace(config, out=out), progress=progress, echo=echo)
    path = _new_run_directory(setup)
    run(setup, _Both(RunDir(path), *recorders), log=echo)
    return TrainResult(setup.config, setup.system, history.rows, history.steps, path)
