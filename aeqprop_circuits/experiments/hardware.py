"""Training with a hardware and a model: which of the two each method acts on, and what the run records.

A run with `--hardware` has two systems (systems/hardware.py): the *hardware* (the netlist as
realised, with device errors or another device law) and the *model* (the netlist as written).
`training` says which one the rule acts on:

- in-situ: the rule on the hardware (c-EP measures 1/2 dV^2 on it, Aeqprop floats its
  parameters through the knob handle);
- transfer: the rule on the model; the trained theta is programmed into the hardware;
- physics-aware: the hardware's forward pass, the model's backward pass (`PhysicsAware`);
- fine-tune: the model trained by exact-gradient for `transfer_epochs` epochs at the run's
  rate (the transfer), programmed into the hardware, then the rule in situ for `epochs`.

Every such run adds hardware_test_loss, hardware_test_accuracy and hardware_test_error to each
metrics row: the free phase of the test split on the hardware programmed with the epoch's
theta (the test columns themselves where the rule already acts on the hardware).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from aeqprop_circuits.data.datasets import Dataset
from aeqprop_circuits.errors import AeqpropError
from aeqprop_circuits.experiments.trainer import History, Recorder, TrainOptions, evaluate
from aeqprop_circuits.experiments.trainer import train as train_loop
from aeqprop_circuits.learning.algorithms import get_algorithm
from aeqprop_circuits.systems.base import PhysicalSystem
from aeqprop_circuits.systems.circuit import CircuitSystem
from aeqprop_circuits.systems.hardware import HardwareSpec, PhysicsAware, build_hardware

HARDWARE_COLUMNS = ("hardware_test_loss", "hardware_test_accuracy", "hardware_test_error")


@dataclass
class Bench:
    """The hardware, the model and the training method of a run (see the module docstring)."""

    hardware: PhysicalSystem
    model: CircuitSystem
    training: str
    transfer_epochs: int
    spec: HardwareSpec

    def __post_init__(self):
        """`trained`: the system the rule acts on."""
        self.trained = (self.model if self.training == "transfer" else PhysicsAware(self.hardware, self.model)
                        if self.training == "physics-aware" else self.hardware)

    def facts(self) -> dict:
        """config.json's record of both systems."""
        model = {"netlist": self.model.circuit.title, "solver": self.model.solver, "g0": self.model.g0}
        return {"systems": {"hardware": self.spec.facts(), "model": model, "training": self.training,
                            "rule_acts_on": {"transfer": "model", "physics-aware": "hardware forward, model "
                                             "backward"}.get(self.training, "hardware")}}

    def recorder(self, recorder: Recorder, data: Dataset, options: TrainOptions) -> Recorder:
        return _HardwareMetrics(recorder, self, data, options)

    def pretrain(self, data: Dataset, options: TrainOptions, log) -> None:
        """fine-tune: the transfer before the in-situ epochs (exact-gradient on the model, then programmed)."""
        if self.training != "fine-tune":
            return
        log(f"fine-tune: {self.transfer_epochs} epochs of exact-gradient on the model, then programmed into the "
            "hardware")
        loop = replace(options, epochs=self.transfer_epochs, trace_every=0, progress=False)
        train_loop(self.model, data, get_algorithm("exact-gradient"), History(), loop, log=lambda line: None)
        self.hardware.parameters = self.model.parameters


class _HardwareMetrics:
    """A recorder that adds the hardware's test metrics to every metrics row."""

    def __init__(self, recorder: Recorder, bench: Bench, data: Dataset, options: TrainOptions):
        self.recorder, self.bench, self.data, self.options = recorder, bench, data, options

    def epoch(self, row: dict, checkpoint) -> None:
        if self.bench.training == "transfer":
            self.bench.hardware.parameters = checkpoint["parameters"]
            loss, accuracy = evaluate(self.bench.hardware, self.data, self.data.x_test, self.data.y_test,
                                      self.options)
        else:
            loss, accuracy = row["test_loss"], row["test_accuracy"]
        error = 1 - accuracy if self.data.n_classes else math.nan
        self.recorder.epoch({**row, **dict(zip(HARDWARE_COLUMNS, (loss, accuracy, error)))}, checkpoint)

    def step(self, record: dict) -> None:
        self.recorder.step(record)


def hardware_bench(system: PhysicalSystem, hardware: str, mismatch: float, seed: int, nonlinearity: float,
                   training: str, transfer_epochs: int) -> Bench | None:
    """The bench of a run's settings, None without a hardware; the model is `system`, as loaded."""
    if hardware == "none":
        return None
    if not isinstance(system, CircuitSystem):
        raise AeqpropError(f"--hardware {hardware}: a hardware is built from a netlist circuit, not a "
                           f"{type(system).__name__}")
    spec = HardwareSpec(hardware, mismatch, seed, nonlinearity)
    return Bench(build_hardware(system, spec), system, training, transfer_epochs, spec)
