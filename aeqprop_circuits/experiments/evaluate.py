"""A trained checkpoint under other evaluation physics: its test error, and how far its outputs move.

A run is evaluated with the physics it was trained with: its solver, the block sweeps per
phase, the float precision, the diode model. Whether the classification belongs to the
network or to that way of settling it is asked by evaluating the same parameters under a
variant of the physics (more sweeps, settled to convergence, float64, Shockley diodes,
ngspice) and comparing the outputs, image by image, with those of the run's own physics.

    from aeqprop_circuits.experiments.evaluate import Variant, evaluate_checkpoint

    epoch, rows = evaluate_checkpoint("runs/drn/xs-cep", [Variant({"iterations": None, "dtype": "float64"})],
                                      images=1000)
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from aeqprop_circuits.data.datasets import Dataset
from aeqprop_circuits.errors import AeqpropError
from aeqprop_circuits.experiments.config import TrainConfig
from aeqprop_circuits.experiments.rundir import RunDir
from aeqprop_circuits.experiments.session import prepare
from aeqprop_circuits.systems.base import PhysicalSystem, TrainingState
from aeqprop_circuits.systems.circuit import CircuitSystem
from aeqprop_circuits.systems.models import check_model_options, load_system


@runtime_checkable
class WritesCircuit(Protocol):
    """A system that can give its trained circuit (a netlist away from SPICE) and the sources of a batch."""

    def circuit(self): ...

    def source_values(self, circuit, inputs: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Variant:
    """Evaluation physics: model options over the run's, and optionally ngspice in place of the solver.

    options:     model options of drn: and Hopfield models, e.g. {"iterations": None} (settle to
                 convergence), {"dtype": "float64"}, {"diodes": "shockley", "saturation_current": 1e-14,
                 "emission": 1.0}, {"threshold": 3.125e-5}.
    spice:       ngspice solves the trained circuit;
    spice_model: the exponential diode `.model ... D (spice_model)` written for each ideal diode
                 [default: solvers.spice.NEAR_IDEAL_MODEL, "is=1e-20 n=0.001", ~1 mV forward drop at mA].
    """

    options: dict = field(default_factory=dict)
    spice: bool = False
    spice_model: str | None = None

    @property
    def label(self) -> str:
        parts = [f"{key}={'converged' if key == 'iterations' and value is None else value}"
                 for key, value in self.options.items()]
        if self.spice:
            parts.append(f"ngspice ({self.spice_model})" if self.spice_model else "ngspice")
        return ", ".join(parts) or "as trained"


@dataclass(frozen=True)
class Evaluation:
    """One physics' classification of the test images, against the run's own physics."""

    label: str
    images: int
    test_error: float  # % of the images (an image ngspice did not solve counts as an error)
    test_cost: float  # mean squared-error cost 1/2 |outputs - target|^2 (V^2 for circuits), whatever the model's
    same_class: int  # images classified as under the run's own physics
    max_output_change: float  # largest |output - output under the run's own physics| (V for circuits)
    unsolved: int  # images whose outputs are not finite (ngspice failed on them)
    seconds: float  # wall time of the settles

    def as_dict(self) -> dict:
        return {"physics": self.label, "images": self.images, "test_error": round(self.test_error, 4),
                "test_cost": float(f"{self.test_cost:.6g}"), "same_class": self.same_class,
                "max_output_change": float(f"{self.max_output_change:.4g}"), "unsolved": self.unsolved,
                "seconds": round(self.seconds, 2)}


def read_run(run_dir: str, epoch: int | None = None) -> tuple[TrainConfig, str | None, dict]:
    """(config, the run's copy of its netlist or None, checkpoint `epoch` or the newest) of a run directory."""
    run = RunDir(run_dir, create=False)
    stored = run.read_config()
    config = TrainConfig.from_dict(stored, where=run.file("config.json"))
    model_path = run.file(stored["netlist_copy"]) if stored.get("netlist_copy") else None
    if epoch is None:
        checkpoint = run.latest_checkpoint()
    elif epoch in run.checkpoint_epochs():
        checkpoint = run.load_checkpoint(epoch)
    else:
        saved = run.checkpoint_epochs()
        raise AeqpropError(f"{run_dir}: no checkpoint of epoch {epoch} (saved: "
                           f"{', '.join(map(str, saved[-10:])) if saved else 'none'})")
    if checkpoint is None:
        raise AeqpropError(f"{run_dir}: no checkpoint to evaluate")
    return config, model_path, checkpoint


def load_checkpoint(system: PhysicalSystem, checkpoint: dict, options: dict) -> PhysicalSystem:
    """The checkpoint's parameters and training state (e.g. an adapted threshold) into `system`,
    except the state that `options` sets anew."""
    system.parameters = checkpoint["parameters"]
    if isinstance(system, TrainingState):
        system.restore_training_state({key: value for key, value in checkpoint.items() if key not in options})
    return system


def free_outputs(system: PhysicalSystem, inputs: np.ndarray, batch: int) -> np.ndarray:
    """Outputs of the free phase, `batch` images per settle."""
    return np.concatenate([system.predict(inputs[k:k + batch]) for k in range(0, len(inputs), batch)]
                          ).astype(np.float64)


def spice_outputs(system: PhysicalSystem, inputs: np.ndarray, batch: int, spice_model: str | None = None
                  ) -> np.ndarray:
    """Outputs of the free phase solved by ngspice, the trained netlist loaded once per `batch` images."""
    from aeqprop_circuits.solvers.spice import NEAR_IDEAL_MODEL, spice_rows, with_spice_model

    spice_model = spice_model or NEAR_IDEAL_MODEL
    if isinstance(system, CircuitSystem):
        circuit, conductance = with_spice_model(system.circuit, spice_model), system.conductance
        sources = circuit.source_values
    elif isinstance(system, WritesCircuit):
        circuit, conductance = with_spice_model(system.circuit(), spice_model), None
        sources = functools.partial(system.source_values, circuit)
    else:
        raise AeqpropError(f"ngspice solves circuits; {type(system).__name__} is not one")
    pairs = circuit.learning.outputs
    outputs = []
    for k in range(0, len(inputs), batch):
        potentials = spice_rows(circuit, sources(inputs[k:k + batch]), conductance).potentials
        outputs.append(potentials[:, pairs[:, 0]] - potentials[:, pairs[:, 1]])
    return np.concatenate(outputs)


def score(data: Dataset, outputs: np.ndarray, labels: np.ndarray, amplitude: float) -> tuple[float, float]:
    """(test error in %, mean 1/2 |outputs - target|^2) of outputs; non-finite outputs are errors."""
    target = data.targets(labels, outputs.shape[1], amplitude)
    finite = np.isfinite(outputs).all(axis=1)
    cost = float(np.mean(0.5 * ((outputs[finite] - target[finite]) ** 2).sum(axis=1))) if finite.any() else np.nan
    if not data.n_classes:
        return np.nan, cost
    wrong = ~finite | (data.predict(np.where(finite[:, None], outputs, 0.0)) != labels)
    return 100.0 * float(np.mean(wrong)), cost


def evaluate_checkpoint(run_dir: str, variants: list[Variant], epoch: int | None = None, images: int | None = None,
                        batch: int | None = None, log=None, echo=print) -> tuple[int, list[Evaluation]]:
    """(epoch, evaluations): the checkpoint under the run's own physics, then under each variant.

    Every evaluation classifies the first `images` test images (default: all) and is compared,
    image by image, with the run's own physics. `batch` images are settled together (default: as
    the training loop evaluates) or loaded into ngspice at once (default 100). `log` gets each
    Evaluation as it is made.
    """
    config, model_path, checkpoint = read_run(run_dir, epoch)
    for variant in variants:  # every option checked before anything is settled
        check_model_options(model_path or config.model, {**config.model_options, **variant.options})
    setup = prepare(config, model_path=model_path, progress=False, echo=echo)
    data = setup.data
    inputs, labels = data.x_test[:images], data.y_test[:images]
    reference, rows = None, []
    for variant in [Variant(), *variants]:
        began = time.perf_counter()
        system = setup.system if not variant.options else load_system(
            model_path or config.model, solver=config.solver, seed=config.seed,
            **{**config.model_options, **variant.options})
        load_checkpoint(system, checkpoint, variant.options)
        if variant.spice:
            outputs = spice_outputs(system, inputs, batch or 100, variant.spice_model)
        else:
            outputs = free_outputs(system, inputs, batch or setup.options.eval_batch)
        seconds = time.perf_counter() - began
        reference = outputs if reference is None else reference
        error, cost = score(data, outputs, labels, config.target_amplitude)
        finite = np.isfinite(outputs).all(axis=1)
        change = np.abs(outputs[finite] - reference[finite])
        same = finite & (data.predict(outputs) == data.predict(reference)) if data.n_classes else finite
        rows.append(Evaluation(variant.label, len(inputs), error, cost, int(same.sum()),
                               float(change.max()) if change.size else np.nan, int(np.sum(~finite)), seconds))
        if log is not None:
            log(rows[-1])
    return int(checkpoint["epoch"]), rows
