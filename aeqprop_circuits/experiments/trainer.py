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
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from aeqprop_circuits.data.datasets import Dataset, random_hflip
from aeqprop_circuits.errors import DivergenceError
from aeqprop_circuits.learning.algorithms import Rule
from aeqprop_circuits.learning.lyapunov import step_trace
from aeqprop_circuits.learning.optim import Schedule, constant, cosine, exponential, project, sgd
from aeqprop_circuits.systems.base import EpochEnd, InPlaceMomentum, Phase, PhysicalSystem, TrainingState


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
    optimiser = sgd(loop.learning_rate, schedule, loop.momentum, loop.weight_decay)
    plain = not loop.weight_decay and (not loop.momentum or isinstance(system, InPlaceMomentum))
    fused = rule.in_place(system, loop.learning_rate) if plain and loop.in_place else None
    if fused is not None:
        log(f"{rule.name}: {fused.description}")
        system.momentum = loop.momentum
    rule_rate = rule.rate
    theta = system.parameters
    opt_state = optimiser.init(theta)
    bounds = system.parameter_bounds()
    clamped = rule.contrastive  # CL: traced on its contrastive objective
    if resumed is not None:
        opt_state = _restore_state(opt_state, resumed)
        if isinstance(system, TrainingState):
            system.restore_training_state(resumed)
    if fused is not None:
        x_all = np.asarray(x_all, dtype=system.dtype)
    targets_all = data.targets(y_all, system.n_outputs, loop.target_amplitude)
    if fused is not None:
        targets_all = targets_all.astype(system.dtype)
    step = start_epoch * steps_per_epoch
    row: dict = {}
    if start_epoch == 0:
        loss, accuracy = evaluate(system, data, data.x_test, data.y_test, loop)
        row = {"epoch": 0, "train_loss": math.nan, "train_accuracy": math.nan, "test_loss": loss,
               "test_accuracy": accuracy, "test_error": 1 - accuracy if data.n_classes else math.nan,
               "seconds": 0.0, "train_seconds": 0.0, "train_cpu_seconds": 0.0, "lyapunov_increases": 0}
        recorder.epoch(row, _checkpoint(0, system, opt_state))
        log(_describe(row, data))
    for epoch in range(start_epoch + 1, loop.epochs + 1):
        began, cpu_began = time.time(), time.process_time()
        traced, traced_cpu, loss_sum, correct, seen = 0.0, 0.0, 0.0, 0, 0
        rises, largest_rise = 0, 0.0
        augment = augmenter(data, loop, epoch)
        for index in epoch_batches(len(x_all), epoch, loop):
            x, target = augment(x_all[index]), targets_all[index]
            trace = loop.trace_every and (step + 1) % loop.trace_every == 0
            if fused is not None:
                rates = schedule(fused.base_rates, step)
                betas = fused.betas
            else:
                step_rule = rule if rule_rate is None else rule.with_rate(schedule(rule_rate, step))
                betas = step_rule.betas
            trace = trace and betas[1] > betas[0]
            if trace:
                t, c = time.time(), time.process_time()
                before = step_trace(system, x, target, *betas, bounds=False, clamped=clamped)
                traced, traced_cpu = traced + time.time() - t, traced_cpu + time.process_time() - c
            if fused is not None:
                free = fused.step(x, target, rates)
                outputs = system.outputs(free)
                loss_sum += float(system.cost(free, target).sum())
            else:
                estimate = step_rule.estimate(system, x, target)
                if estimate.new_parameters is not None:
                    new = project(estimate.new_parameters, bounds)
                else:
                    delta, opt_state = optimiser.update(estimate.gradient, opt_state, theta, step)
                    new = project(theta + delta, bounds)
                if not np.all(np.isfinite(new)):
                    raise DivergenceError(f"step {step + 1}: parameters became non-finite")
                system.parameters = new
                theta = system.parameters  # as the system holds it (circuits keep siemens: theta g0 / g0)
                outputs = estimate.outputs
                loss_sum += float(system.output_cost(outputs, target).sum())
            step += 1
            seen += len(index)
            correct += correct_count(data, outputs, y_all[index])
            if trace:
                t, c = time.time(), time.process_time()
                after = step_trace(system, x, target, *betas, clamped=clamped)
                recorder.step(step_record(epoch, step, *betas, before, after, clamped))
                rise = lyapunov_rise(before["lyapunov"], after["lyapunov"])
                if rise > 0:
                    rises, largest_rise = rises + 1, max(largest_rise, rise)
                traced, traced_cpu = traced + time.time() - t, traced_cpu + time.process_time() - c
        trained, trained_cpu = time.time() - began - traced, time.process_time() - cpu_began - traced_cpu
        if fused is not None:
            theta = system.parameters
            if not np.isfinite(theta).all():
                raise DivergenceError(f"epoch {epoch}: parameters became non-finite")
        if rises:
            log(f"warning: {rises} traced step(s) of epoch {epoch} raised the Lyapunov function (largest rise "
                f"{largest_rise:.3g}): the step is too large for the curvature; lower the learning rate or epsilon")
        if isinstance(system, EpochEnd):
            system.end_epoch()
        test_loss, test_accuracy = evaluate(system, data, data.x_test, data.y_test, loop)
        row = {"epoch": epoch, "train_loss": loss_sum / seen,
               "train_accuracy": correct / seen if data.n_classes else math.nan,
               "test_loss": test_loss, "test_accuracy": test_accuracy,
               "test_error": 1 - test_accuracy if data.n_classes else math.nan,
               "seconds": round(time.time() - began, 3), "train_seconds": round(trained, 3),
               "train_cpu_seconds": round(trained_cpu, 3), "lyapunov_increases": rises}
        recorder.epoch(row, _checkpoint(epoch, system, opt_state))
        log(_describe(row, data))
    return row


def lyapunov_rise(before: float, after: float, rtol: float = 1e-8, atol: float = 1e-12) -> float:
    """How far a step raised the Lyapunov function beyond the settles' numerical tolerance (0 if it did not)."""
    rise = after - before
    return rise if rise > rtol * max(abs(before), abs(after)) + atol else 0.0


def _checkpoint(epoch: int, system: PhysicalSystem, opt_state) -> dict[str, np.ndarray]:
    saved = {"epoch": np.array(epoch), "parameters": system.parameters, **_state_arrays(opt_state)}
    if isinstance(system, TrainingState):
        saved.update(system.training_state())
    return saved


def _describe(row: dict, data: Dataset) -> str:
    text = f"epoch {row['epoch']}: "
    if row["epoch"]:
        text += f"train loss {row['train_loss']:.4f}, "
    text += f"test loss {row['test_loss']:.4f}"
    if data.n_classes:
        text += f", test accuracy {row['test_accuracy']:.3f}"
    return text + (f" ({row['seconds']:.1f} s)" if row["epoch"] else "")
