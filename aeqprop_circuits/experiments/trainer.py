"""The training loop: minibatches through an operator loop, metrics and checkpoints into a RunDir."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass

import numpy as np

from aeqprop_circuits.data.datasets import Dataset, random_hflip
from aeqprop_circuits.errors import DivergenceError
from aeqprop_circuits.experiments.rundir import RunDir
from aeqprop_circuits.learning.lyapunov import step_trace
from aeqprop_circuits.learning.optim import SGD, project
from aeqprop_circuits.systems.base import PhysicalSystem


@dataclass
class TrainOptions:
    epochs: int = 10
    batch_size: int = 10
    learning_rate: float | np.ndarray = 0.1
    lr_decay: float = 1.0  # learning rate (and Aeqprop's epsilon) multiplied by this after each epoch
    momentum: float = 0.0  # SGD momentum (velocity = momentum * velocity + gradient); not checkpointed
    seed: int = 0
    target_amplitude: float = 1.0
    trace_every: int = 1  # Lyapunov/loss trace every N steps (0: never)
    eval_batch: int = 512
    progress: bool = True
    max_train: int | None = None  # subsample the training set (quick runs)
    augment: str | None = None  # "hflip": random horizontal flips of the training images


def evaluate(system: PhysicalSystem, data: Dataset, inputs, labels, options: TrainOptions) -> tuple[float, float]:
    """Mean cost and accuracy (nan for regression) of the free phase."""
    from aeqprop_circuits.systems.base import Phase

    losses, correct = [], 0
    for start in range(0, len(inputs), options.eval_batch):
        x = inputs[start:start + options.eval_batch]
        y = labels[start:start + options.eval_batch]
        target = data.targets(y, system.n_outputs, options.target_amplitude)
        state = system.settle(Phase(x))
        losses.append(system.cost(state, target))
        if data.n_classes:
            correct += int((system.outputs(state)[:, :data.n_classes].argmax(axis=1) == y).sum())
    loss = float(np.concatenate(losses).mean())
    return loss, (correct / len(inputs) if data.n_classes else math.nan)


def training_split(data: Dataset, options: TrainOptions):
    """The training inputs and labels a run uses (subsampled with --max-train)."""
    if options.max_train:
        return data.x_train[:options.max_train], data.y_train[:options.max_train]
    return data.x_train, data.y_train


def log_untrained(system, data: Dataset, options: TrainOptions, log) -> None:
    loss, acc = evaluate(system, data, data.x_test, data.y_test, options)
    log(f"epoch 0: test loss {loss:.4f}" + (f", test accuracy {acc:.3f}" if data.n_classes else ""))


def epoch_batches(n_samples: int, epoch: int, options: TrainOptions):
    """Index arrays of the minibatches of one epoch, in a seeded order, behind a progress bar."""
    order = np.random.default_rng([options.seed, epoch]).permutation(n_samples)
    batches = range(math.ceil(n_samples / options.batch_size))
    if options.progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc=f"epoch {epoch}/{options.epochs}", file=sys.stderr, leave=False,
                       mininterval=1.0)
    for b in batches:
        yield order[b * options.batch_size:(b + 1) * options.batch_size]


def augmenter(data: Dataset, options: TrainOptions, epoch: int):
    """The epoch's transform of training batches: seeded random flips with augment="hflip", else none."""
    if not options.augment:
        return lambda x: x
    rng = np.random.default_rng([options.seed, epoch, 1])
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


def finish_epoch(system, data: Dataset, run: RunDir, options: TrainOptions, epoch: int, began: float,
                 x_train, y_train, log, train_metrics: tuple | None = None, **extra) -> dict:
    """Evaluate, append the metrics row, checkpoint, log; returns the row.

    `train_metrics` (loss, accuracy), when the loop measured them during the epoch, replaces the
    pass over the training split.
    """
    train_loss, train_acc = train_metrics or evaluate(system, data, x_train, y_train, options)
    test_loss, test_acc = evaluate(system, data, data.x_test, data.y_test, options)
    row = {"epoch": epoch, "train_loss": train_loss, "train_accuracy": train_acc, "test_loss": test_loss,
           "test_accuracy": test_acc, "test_error": 1 - test_acc if data.n_classes else math.nan,
           "seconds": round(time.time() - began, 3), **extra}
    run.append_metrics(row)
    run.save_checkpoint(epoch, system.parameters)
    log(f"epoch {epoch}: train loss {train_loss:.4f}, test loss {test_loss:.4f}"
        + (f", test accuracy {test_acc:.3f}" if data.n_classes else "") + f" ({row['seconds']:.1f} s)")
    return row


def train(system: PhysicalSystem, data: Dataset, algorithm, run: RunDir, options: TrainOptions,
          start_epoch: int = 0, log=print) -> dict:
    """Train for options.epochs epochs (resuming after `start_epoch`); returns the last metrics row.

    Raises DivergenceError (after saving what was written) when a phase has no equilibrium
    or the parameters become non-finite.
    """
    decay = options.lr_decay ** start_epoch
    optimiser = SGD(options.learning_rate * decay, options.momentum)
    if hasattr(algorithm, "epsilon"):
        algorithm.epsilon = algorithm.epsilon * decay
    velocity = optimiser.init(system.parameters)
    bounds = system.parameter_bounds()
    clamped = getattr(algorithm, "mode", None) == "clamp"  # CL: traced on its contrastive objective
    x_all, y_all = training_split(data, options)
    step = start_epoch * math.ceil(len(x_all) / options.batch_size)
    row = {}
    if start_epoch == 0:
        log_untrained(system, data, options, log)
    for epoch in range(start_epoch + 1, options.epochs + 1):
        began, augment = time.time(), augmenter(data, options, epoch)
        for index in epoch_batches(len(x_all), epoch, options):
            x, labels = augment(x_all[index]), y_all[index]
            target = data.targets(labels, system.n_outputs, options.target_amplitude)
            step += 1
            trace = options.trace_every and step % options.trace_every == 0
            theta = system.parameters
            estimate = algorithm.estimate(system, x, target)
            beta_1, beta_2 = estimate.betas
            before = step_trace(system, x, target, beta_1, beta_2, bounds=False, clamped=clamped) \
                if trace and beta_2 > beta_1 else None
            if estimate.new_parameters is not None:
                new = project(estimate.new_parameters, bounds)
            else:
                delta, velocity = optimiser.update(estimate.gradient, velocity)
                new = project(theta + delta, bounds)
            if not np.all(np.isfinite(new)):
                raise DivergenceError(f"step {step}: parameters became non-finite")
            system.parameters = new
            if before is not None:
                after = step_trace(system, x, target, beta_1, beta_2, clamped=clamped)
                run.append_step(step_record(epoch, step, beta_1, beta_2, before, after, clamped))
        if hasattr(system, "end_epoch"):  # e.g. the adaptive relaxation threshold of Hopfield nets
            system.end_epoch()
        if options.lr_decay != 1.0:
            optimiser = SGD(optimiser.learning_rate * options.lr_decay, options.momentum)
            if hasattr(algorithm, "epsilon"):
                algorithm.epsilon = algorithm.epsilon * options.lr_decay
        row = finish_epoch(system, data, run, options, epoch, began, x_all, y_all, log)
    return row
