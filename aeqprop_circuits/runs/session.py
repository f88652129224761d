"""A training session as the CLI runs it: resolve the config, make the run directory, train.

The config written to config.json holds every value the run used (defaults included), so
`aeqprop train --resume DIR` or a rerun with the same values reproduces it.
"""

from __future__ import annotations

import numpy as np

from ..data.datasets import load_dataset
from ..errors import AeqpropError
from ..learning.algorithms import algorithm_from_config
from ..models import load_system
from .rundir import RunDir, default_name, fresh_directory
from .trainer import TrainOptions, train

# Defaults that train the shipped circuit netlists well (docs/training.md has the runs behind them).
CIRCUIT_DEFAULTS = {"beta": 0.2, "epsilon": 10.0, "lr": 2.0, "epochs": 30, "batch_size": 10, "trace_every": 1,
                    "target_amplitude": 0.5}
PRESETS: dict[str, dict] = {}


def _presets() -> dict:
    presets = dict(PRESETS)
    try:
        from ..hopfield import PRESETS as hopfield_presets

        presets.update(hopfield_presets)
    except ImportError:
        pass
    return presets


def resolve_config(model: str | None, given: dict) -> dict:
    if not model:
        raise AeqpropError("no model: give a netlist file or --model SPEC")
    config = dict(CIRCUIT_DEFAULTS)
    preset = given.get("preset")
    if preset:
        presets = _presets()
        if preset not in presets:
            raise AeqpropError(f"unknown preset '{preset}'; expected one of {', '.join(presets) or '(none)'}")
        config.update(presets[preset])
    config.update({k: v for k, v in given.items() if v is not None})
    config["model"] = model
    if config["algorithm"].startswith("aeqprop"):
        config["learning_rate_effective"] = config["epsilon"] * config["beta"]
    return config


def run_training(model, resume, quiet, given, echo=print) -> str:
    if resume:
        run = RunDir(resume)
        config = run.read_config()
        config.update({k: v for k, v in given.items() if v is not None and k == "epochs"})
        checkpoint = run.latest_checkpoint()
        start_epoch = int(checkpoint["epoch"]) if checkpoint else 0
    else:
        config = resolve_config(model, given)
        run = RunDir(fresh_directory(config.get("out") or default_name(config["model"], config["algorithm"])))
        config["out"] = run.path
        checkpoint, start_epoch = None, 0
    system = load_system(config["model"], solver=config["solver"], seed=config["seed"])
    if checkpoint is not None:
        system.parameters = checkpoint["parameters"]
    config["g0"] = getattr(system, "g0", None)
    config["n_parameters"] = int(system.parameters.size)
    run.write_config(config)
    dataset = load_dataset(config["data"], seed=config["seed"])
    if dataset.n_features != system.n_inputs:
        raise AeqpropError(f"{config['data']} has {dataset.n_features} features but {config['model']} has "
                           f"{system.n_inputs} inputs")
    algorithm = algorithm_from_config(config)
    options = TrainOptions(epochs=config["epochs"], batch_size=config["batch_size"], learning_rate=config["lr"],
                           seed=config["seed"], target_amplitude=config["target_amplitude"],
                           trace_every=config["trace_every"], progress=not quiet,
                           max_train=config.get("max_train"))
    echo(f"run directory: {run.path}")
    np.seterr(over="ignore")
    try:
        train(system, dataset, algorithm, run, options, start_epoch=start_epoch, log=echo)
    finally:
        echo(f"results in {run.path} (plots: aeqprop plot {run.path})")
    return run.path
