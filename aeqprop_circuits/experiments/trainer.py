"""The training loop: minibatches through a learning rule, metrics and checkpoints to a recorder.

One loop for every system and rule. Each step either asks the rule for an estimate and
applies the optimiser (learning/optim.py: weight decay, momentum, the scheduled rate, then
the projection to the parameters' range), or, where the rule offers it
(`Rule.in_place`), runs the rule's fused in-place step on the system, with the same rates.
The fused form is the fast path of DRNs and dense Hopfield nets; tests hold one step of each
against the other.

Metrics per epoch: the training loss and accuracy are running means over the epoch's free
phases (measured by each step before its update, as the papers' code reports them); the
test metrics are a free-phase pass over the test split. `train_seconds` and
`train_cpu_seconds` are wall and process time of the training steps alone (trace excluded).
Epoch 0 is the untrained network (test metrics only).

Everything a resumed run needs to continue exactly as an uninterrupted one goes into each
checkpoint: theta, the optimiser's state and the system's training state
(systems/base.py, `TrainingState`). Data order and augmentation are seeded per epoch.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from aeqprop_circuits.data.datasets import Dataset, random_hflip
from aeqprop_circuits.errors import DivergenceError
from aeqprop_circuits.learning.algorithms import InPlaceStep, Rule
from aeqprop_circuits.learning.lyapunov import step_trace
from aeqprop_circuits.learning.optim import Schedule, constant, cosine, exponential, project, sgd
from aeqprop_circuits.systems.base import (
    ConductanceUnits,
    EpochEnd,
    InPlaceMomentum,
    Phase,
    PhysicalSystem,
    TrainingState,
)


class Recorder(Protocol):
    """Where a run's results go: a run directory (experiments/rundir.py) or memory (`History`)."""

    def epoch(self, row: dict, checkpoint: dict[str, np.ndarray]) -> None:
        """One metrics row, and the checkpoint to resume from after it."""

    def step(self, record: dict) -> None:
        """One traced step (loss and Lyapunov function before and after)."""


@dataclass
class History:
    """A recorder in memory: the rows and step records of a run, the last checkpoint."""

    rows: list
    steps: list
    checkpoint: dict | None = None

    def __init__(self):
        self.rows, self.steps, self.checkpoint = [], [], None

    def epoch(self, row: dict, checkpoint: dict[str, np.ndarray]) -> None:
        self.rows.append(row)
        self.checkpoint = checkpoint

    def step(self, record: dict) -> None:
        self.steps.append(record)


@dataclass(frozen=True)
class TrainOptions:
    """How the loop runs: epochs and batches, the optimiser and its schedule, tracing, evaluation."""

    epochs: int = 10
    batch_size: int = 10
    learning_rate: Any = 0.1  # a scalar or (P,) array (per-group rates resolved by the system)
    schedule: str = "exponential"  # exponential: x lr_decay per epoch; cosine: per step down to lr_floor
    lr_decay: float = 1.0
    lr_floor: float = 0.0
    momentum: float = 0.0
    weight_decay: float = 0.0
    seed: int = 0
    target_amplitude: float = 1.0
    trace_every: int = 1  # Lyapunov/loss trace every N steps (0: never)
    augment: str = "none"  # "hflip": random horizontal flips of the training images
    max_train: int | None = None
    max_test: int | None = None  # evaluate on the first N test samples only
    eval_batch: int = 512
    progress: bool = True
    in_place: bool = True  # take a rule's in-place step where it offers one (False: always estimate)

    def schedule_for(self, steps_per_epoch: int) -> Schedule:
        if self.schedule == "cosine":
            return cosine(self.epochs * steps_per_epoch, self.lr_floor)
        return exponential(self.lr_decay, steps_per_epoch) if self.lr_decay != 1.0 else constant()


def evaluate(system: PhysicalSystem, data: Dataset, inputs, labels, loop: TrainOptions) -> tuple[float, float]:
    """Mean cost and accuracy (nan for regression) of the free phase, in batches of loop.eval_batch."""
    losses, correct = [], 0
    for start in range(0, len(inputs), loop.eval_batch):
        x, y = inputs[start:start + loop.eval_batch], labels[start:start + loop.eval_batch]
        state = system.settle(Phase(x))
        losses.append(system.cost(state, data.targets(y, system.n_outputs, loop.target_amplitude)))
        correct += correct_count(data, system.outputs(state), y)
    loss = float(np.concatenate(losses).mean())
    return loss, (correct / len(inputs) if data.n_classes else math.nan)


def correct_count(data: Dataset, outputs: np.ndarray, labels: np.ndarray) -> int:
    """How many outputs name their label's class (0 for regression)."""
    if not data.n_classes:
        return 0
    return int((data.predict(outputs) == labels).sum())


def test_split(data: Dataset, loop: TrainOptions):
    """The test inputs and labels a run evaluates on (the first max_test with that option)."""
    return data.x_test[:loop.max_test], data.y_test[:loop.max_test]


def training_split(data: Dataset, loop: TrainOptions):
    """The training inputs and labels a run uses (subsampled with max_train)."""
    if loop.max_train:
        return data.x_train[:loop.max_train], data.y_train[:loop.max_train]
    return data.x_train, data.y_train


def epoch_batches(n_samples: int, epoch: int, loop: TrainOptions):
    """Index arrays of the minibatches of one epoch, in a seeded order, behind a progress bar on terminals."""
    order = np.random.default_rng([loop.seed, epoch]).permutation(n_samples)
    batches = range(math.ceil(n_samples / loop.batch_size))
    if loop.progress and sys.stderr.isatty():
        from tqdm import tqdm

        batches = tqdm(batches, desc=f"epoch {epoch}/{loop.epochs}", file=sys.stderr, leave=False, mininterval=1.0)
    for b in batches:
        yield order[b * loop.batch_size:(b + 1) * loop.batch_size]


def augmenter(data: Dataset, loop: TrainOptions, epoch: int):
    """The epoch's transform of training batches: seeded random flips with augment="hflip", else none."""
    if loop.augment != "hflip":
        return lambda x: x
    rng = np.random.default_rng([loop.seed, epoch, 1])
    return lambda x: random_hflip(x, data.image_shape, rng)


def step_record(epoch: int, step: int, beta_1: float, beta_2: float, before: dict, after: dict,
                clamped: bool = False) -> dict:
    """One line of steps.jsonl from the Lyapunov traces before and after a step.

    `function` names what lyapunov_* hold: L_{beta1;beta2}, or CL's contrastive objective.
    """
    return {"epoch": epoch, "step": step, "beta1": beta_1, "beta2": beta_2,
            "function": "F_clamped - F_0" if clamped else "L_beta1;beta2",
            "loss_before": before["loss"], "loss_after": after["loss"],
            "lyapunov_before": before["lyapunov"], "lyapunov_after": after["lyapunov"],
            "lyapunov_lower": after["lyapunov_lower"], "lyapunov_upper": after["lyapunov_upper"]}


def _state_arrays(state) -> dict[str, np.ndarray]:
    """The optimiser's state (a nest of tuples of arrays and None) as named arrays for a checkpoint."""
    flat = {}

    def walk(node, name):
        if isinstance(node, tuple):
            for i, child in enumerate(node):
                walk(child, f"{name}_{i}")
        elif node is not None:
            flat[name] = np.asarray(node)
    walk(state, "optimizer")
    return flat


def _restore_state(state, saved: dict[str, np.ndarray]):
    def walk(node, name):
        if isinstance(node, tuple):
            return tuple(walk(child, f"{name}_{i}") for i, child in enumerate(node))
        return saved[name].copy() if name in saved else node
    return walk(state, "optimizer")


class _InPlaceSteps:
    """Steps as the rule's fused in-place update: the system holds theta (and, with momentum, its velocity)."""

    def __init__(self, system: PhysicalSystem, fused: InPlaceStep, schedule: Schedule):
        self.system, self.fused, self.schedule = system, fused, schedule

    def betas(self, step: int) -> tuple[float, float]:
        return self.fused.betas

    def __call__(self, x, target, step: int):
        """One step; returns the free phase's outputs and costs (B,), measured before the update."""
        free = self.fused.step(x, target, self.schedule(self.fused.base_rates, step))
        return self.system.outputs(free), self.system.cost(free, target)

    def check(self, epoch: int) -> None:
        if not np.isfinite(self.system.parameters).all():
            raise DivergenceError(f"epoch {epoch}: parameters became non-finite")

    def state(self) -> dict[str, np.ndarray]:
        return {}

    def restore(self, saved: dict[str, np.ndarray]) -> None:
        pass


class _EstimatedSteps:
    """Steps as an estimate of the rule's, then the optimiser (or, for Aeqprop, theta as the physics left it)."""

    def __init__(self, system: PhysicalSystem, rule: Rule, loop: TrainOptions, schedule: Schedule):
        self.system, self.rule, self.schedule = system, rule, schedule
        self.optimiser = sgd(loop.learning_rate, schedule, loop.momentum, loop.weight_decay)
        self.theta = system.parameters
        self.optimiser_state = self.optimiser.init(self.theta)
        self.bounds = system.parameter_bounds()

    def rule_at(self, step: int) -> Rule:
        """The rule with its own rate (Aeqprop's epsilon) scheduled; rules without one as they are."""
        return self.rule if self.rule.rate is None else self.rule.with_rate(self.schedule(self.rule.rate, step))

    def betas(self, step: int) -> tuple[float, float]:
        return self.rule_at(step).betas

    def __call__(self, x, target, step: int):
        estimate = self.rule_at(step).estimate(self.system, x, target)
        if estimate.new_parameters is not None:
            new = project(estimate.new_parameters, self.bounds)
        else:
            delta, self.optimiser_state = self.optimiser.update(estimate.gradient, self.optimiser_state, self.theta,
                                                                step)
            new = project(self.theta + delta, self.bounds)
        if not np.all(np.isfinite(new)):
            raise DivergenceError(f"step {step + 1}: parameters became non-finite")
        self.system.parameters = new
        self.theta = self.system.parameters  # as the system holds it (circuits keep siemens: theta g0 / g0)
        return estimate.outputs, self.system.output_cost(estimate.outputs, target)

    def check(self, epoch: int) -> None:
        pass

    def state(self) -> dict[str, np.ndarray]:
        return _state_arrays(self.optimiser_state)

    def restore(self, saved: dict[str, np.ndarray]) -> None:
        self.optimiser_state = _restore_state(self.optimiser_state, saved)


@dataclass
class _Tally:
    """One epoch's running training metrics, the trace's share of its time, and the Lyapunov rises."""

    began: float = field(default_factory=time.time)
    cpu_began: float = field(default_factory=time.process_time)
    loss: float = 0.0
    correct: int = 0
    seen: int = 0
    traced: float = 0.0
    traced_cpu: float = 0.0
    rises: int = 0
    largest_rise: float = 0.0
    trained: tuple[float, float] = (0.0, 0.0)  # wall and CPU seconds of the steps alone, set by `stop`

    def stop(self) -> None:
        """The end of the epoch's training steps: what follows (evaluation) is not training time."""
        self.trained = (time.time() - self.began - self.traced, time.process_time() - self.cpu_began - self.traced_cpu)

    def trace(self, measure, *args, **kwargs):
        """measure(*args, **kwargs), timed as trace time (excluded from train_seconds)."""
        wall, cpu = time.time(), time.process_time()
        result = measure(*args, **kwargs)
        self.traced += time.time() - wall
        self.traced_cpu += time.process_time() - cpu
        return result

    def row(self, epoch: int, data: Dataset, test: tuple[float, float]) -> dict:
        test_loss, test_accuracy = test
        return {"epoch": epoch, "train_loss": self.loss / self.seen,
                "train_accuracy": self.correct / self.seen if data.n_classes else math.nan,
                "test_loss": test_loss, "test_accuracy": test_accuracy,
                "test_error": 1 - test_accuracy if data.n_classes else math.nan,
                "seconds": round(time.time() - self.began, 3), "train_seconds": round(self.trained[0], 3),
                "train_cpu_seconds": round(self.trained[1], 3),
                "lyapunov_increases": self.rises}


def train(system: PhysicalSystem, data: Dataset, rule: Rule, recorder: Recorder, loop: TrainOptions,
          start_epoch: int = 0, resumed: dict | None = None, log=print) -> dict:
    """Train for loop.epochs epochs, after `start_epoch` (whose checkpoint is `resumed`); returns the last row.

    The schedule gives each step's rate: the optimiser's learning rate, or the rule's own
    (Aeqprop's epsilon) where it has one. The rule's fused in-place step runs where it offers
    one and the optimiser is plain SGD (momentum only where the system keeps a velocity:
    `InPlaceMomentum`); otherwise the rule estimates and the optimiser steps.
    Raises DivergenceError when a phase has no equilibrium or theta becomes non-finite.
    """
    x_all, y_all = training_split(data, loop)
    steps_per_epoch = math.ceil(len(x_all) / loop.batch_size)
    schedule = loop.schedule_for(steps_per_epoch)
    plain = not loop.weight_decay and (not loop.momentum or isinstance(system, InPlaceMomentum))
    fused = rule.in_place(system, loop.learning_rate) if plain and loop.in_place else None
    targets_all = data.targets(y_all, system.n_outputs, loop.target_amplitude)
    if fused is not None:
        log(f"{rule.name}: {fused.description}")
        system.momentum = loop.momentum
        x_all, targets_all = np.asarray(x_all, dtype=system.dtype), targets_all.astype(system.dtype)
        steps = _InPlaceSteps(system, fused, schedule)
    else:
        steps = _EstimatedSteps(system, rule, loop, schedule)
    if resumed is not None:
        steps.restore(resumed)
        if isinstance(system, TrainingState):
            system.restore_training_state(resumed)
    step, row = start_epoch * steps_per_epoch, {}
    if start_epoch == 0:
        loss, accuracy = evaluate(system, data, *test_split(data, loop), loop)
        row = {"epoch": 0, "train_loss": math.nan, "train_accuracy": math.nan, "test_loss": loss,
               "test_accuracy": accuracy, "test_error": 1 - accuracy if data.n_classes else math.nan,
               "seconds": 0.0, "train_seconds": 0.0, "train_cpu_seconds": 0.0, "lyapunov_increases": 0}
        recorder.epoch(row, _checkpoint(0, system, steps))
        log(_describe(row, data, system))
    for epoch in range(start_epoch + 1, loop.epochs + 1):
        tally, augment = _Tally(), augmenter(data, loop, epoch)
        for index in epoch_batches(len(x_all), epoch, loop):
            x, target = augment(x_all[index]), targets_all[index]
            betas = steps.betas(step)
            traced = loop.trace_every and (step + 1) % loop.trace_every == 0 and betas[1] > betas[0]
            if traced:
                before = tally.trace(step_trace, system, x, target, *betas, bounds=False, clamped=rule.contrastive)
            outputs, costs = steps(x, target, step)
            step += 1
            tally.loss += float(costs.sum())
            tally.correct += correct_count(data, outputs, y_all[index])
            tally.seen += len(index)
            if traced:
                after = tally.trace(step_trace, system, x, target, *betas, clamped=rule.contrastive)
                recorder.step(step_record(epoch, step, *betas, before, after, rule.contrastive))
                rise = lyapunov_rise(before["lyapunov"], after["lyapunov"])
                if rise > 0:
                    tally.rises, tally.largest_rise = tally.rises + 1, max(tally.largest_rise, rise)
        tally.stop()
        steps.check(epoch)
        if tally.rises:
            log(f"warning: {tally.rises} traced step(s) of epoch {epoch} raised the Lyapunov function (largest "
                f"rise {tally.largest_rise:.3g}): the step is too large for the curvature; lower the learning rate "
                "or epsilon")
        if isinstance(system, EpochEnd):
            system.end_epoch()
        row = tally.row(epoch, data, evaluate(system, data, *test_split(data, loop), loop))
        recorder.epoch(row, _checkpoint(epoch, system, steps))
        log(_describe(row, data, system))
    return row


def lyapunov_rise(before: float, after: float, rtol: float = 1e-8, atol: float = 1e-12) -> float:
    """How far a step raised the Lyapunov function beyond the settles' numerical tolerance (0 if it did not)."""
    rise = after - before
    return rise if rise > rtol * max(abs(before), abs(after)) + atol else 0.0


def _checkpoint(epoch: int, system: PhysicalSystem, steps) -> dict[str, np.ndarray]:
    saved = {"epoch": np.array(epoch), "parameters": system.parameters, **steps.state()}
    if isinstance(system, TrainingState):
        saved.update(system.training_state())
    return saved


def _describe(row: dict, data: Dataset, system: PhysicalSystem) -> str:
    unit = " V²" if isinstance(system, ConductanceUnits) else ""  # a circuit's cost is in V², a network's has none
    text = f"epoch {row['epoch']}: "
    if row["epoch"]:
        text += f"train loss {row['train_loss']:.4f}{unit}, "
    text += f"test loss {row['test_loss']:.4f}{unit}"
    if data.n_classes:
        text += f", test accuracy {row['test_accuracy']:.3f}"
    return text + (f" ({row['seconds']:.1f} s)" if row["epoch"] else "")
