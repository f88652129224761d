"""The training loop for systems that apply the EP family's update in place (DRNs, dense Hopfield nets).

The generic trainer (runs/trainer.py) asks the rule for a (P,) gradient estimate and then
makes about a dozen passes over theta (copy, contrast, optimiser, projection, finiteness
check, write-back); at DRN-1H or Hopfield 784-2048-10 size those passes cost more than the
physics. A system that can settle several nudges of one batch together (`settle_nudges`) and
apply a contrast of its local measurements to theta in place (`descend(terms, rates)`) gets
this loop instead, for the nudge-contrast rules (p-ep, n-ep, c-ep, multi-point-ep). The phases
and contrast weights come from the rule object in learning/algorithms.py, not restated: a
step settles the same phases as `Contrast.estimate` and the update is SGD, lr * EP estimate
(with momentum where the system keeps a velocity: DRNs), what the generic trainer computes
(tests check steps of each against it).

Rates: `system.in_place_rates(learning_rate)` turns a scalar or per-group rates into what its
`descend` takes (nested lists/tuples of floats), or None when they vary inside a group (then
the generic trainer runs). They decay per epoch by options.lr_decay.

Metrics rows, checkpoints, resume and the Lyapunov trace (--trace-every) are the generic
trainer's, except that the training loss and accuracy are running means over the epoch's free
phases (read off the training steps, as PyTorch-style loops and the papers' code report them)
instead of a second pass over the training split. Rows also carry `train_seconds` and
`train_cpu_seconds`: wall and process time of the training steps alone, trace excluded (the
reference timings count training; on a shared machine CPU time is the steadier of the two).
"""

from __future__ import annotations

import math
import time

import numpy as np

from aeqprop_circuits.data.datasets import Dataset
from aeqprop_circuits.errors import DivergenceError
from aeqprop_circuits.experiments.rundir import RunDir
from aeqprop_circuits.experiments.trainer import (
    TrainOptions,
    augmenter,
    epoch_batches,
    finish_epoch,
    log_untrained,
    step_record,
    train,
    training_split,
)
from aeqprop_circuits.learning.algorithms import Contrast
from aeqprop_circuits.learning.lyapunov import step_trace
from aeqprop_circuits.systems.base import Phase


def in_place_trainer(system, algorithm):
    """This loop when `system` updates in place and `algorithm` is a nudge contrast, else None."""
    able = getattr(system, "in_place", True) and hasattr(system, "descend") and hasattr(system, "settle_nudges")
    if able and isinstance(algorithm, Contrast) and algorithm.mode == "nudge":
        return train_in_place
    return None


def ep_step(system, algorithm: Contrast, x: np.ndarray, target: np.ndarray, rates):
    """One step of a nudge-contrast rule: the free phase, the nudged phases from it, theta updated in place.

    Returns the free phase's state (settled before the update). A system may do the whole step
    at once (`contrast_step(x, target, ((c_k, beta_k), ...), rates)`, c_k the contrast weight / beta
    of the phase nudged at beta_k) and return None where it cannot.
    """
    used = [(m, w) for m, w in zip(algorithm.multipliers, algorithm.weights) if w != 0.0]
    fused = getattr(system, "contrast_step", None)
    if fused is not None:
        free = fused(x, target, tuple((float(w) / algorithm.beta, algorithm.beta * m) for m, w in used), rates)
        if free is not None:
            return free
    base = Phase(x, 0.0, target)
    free = system.settle(base)
    nudges = [algorithm.beta * m for m, _ in used if m != 0.0]
    nudged = iter(system.settle_nudges(base, nudges, start=free) if nudges else [])
    terms = [(w / algorithm.beta, free if m == 0.0 else next(nudged)) for m, w in used]
    system.descend(terms, rates)
    return free


def _scaled(rates, factor: float):
    if isinstance(rates, (list, tuple)):
        return type(rates)(_scaled(r, factor) for r in rates)
    return rates * factor


def train_in_place(system, data: Dataset, algorithm: Contrast, run: RunDir, options: TrainOptions,
                   start_epoch: int = 0, log=print) -> dict:
    """Same contract as runs.trainer.train (epochs, metrics, checkpoints, resume, Lyapunov trace)."""
    rates = system.in_place_rates(options.learning_rate)
    if rates is None or (options.momentum and not hasattr(system, "momentum")):
        return train(system, data, algorithm, run, options, start_epoch=start_epoch, log=log)
    if options.momentum:
        system.momentum = options.momentum
    rates = _scaled(rates, float(options.lr_decay) ** start_epoch)
    x_all, y_all = training_split(data, options)
    x_all = np.asarray(x_all, dtype=system.dtype)
    targets_all = data.targets(y_all, system.n_outputs, options.target_amplitude).astype(system.dtype)
    beta_1, beta_2 = algorithm.beta * min(algorithm.multipliers), algorithm.beta * max(algorithm.multipliers)
    step = start_epoch * math.ceil(len(x_all) / options.batch_size)
    classes = data.n_classes
    row = {}
    if start_epoch == 0:
        log_untrained(system, data, options, log)
    for epoch in range(start_epoch + 1, options.epochs + 1):
        began, cpu_began = time.time(), time.process_time()
        traced, traced_cpu, loss_sum, correct = 0.0, 0.0, 0.0, 0
        augment = augmenter(data, options, epoch)
        for index in epoch_batches(len(x_all), epoch, options):
            x, target = augment(x_all[index]), targets_all[index]
            step += 1
            trace = options.trace_every and step % options.trace_every == 0 and beta_2 > beta_1
            if trace:
                t, c = time.time(), time.process_time()
                before = step_trace(system, x, target, beta_1, beta_2, bounds=False)
                traced, traced_cpu = traced + time.time() - t, traced_cpu + time.process_time() - c
            free = ep_step(system, algorithm, x, target, rates)
            loss_sum += float(system.cost(free, target).sum())
            if classes:
                correct += int((system.outputs(free)[:, :classes].argmax(axis=1) == y_all[index]).sum())
            if trace:
                t, c = time.time(), time.process_time()
                after = step_trace(system, x, target, beta_1, beta_2)
                run.append_step(step_record(epoch, step, beta_1, beta_2, before, after))
                traced, traced_cpu = traced + time.time() - t, traced_cpu + time.process_time() - c
        trained, trained_cpu = time.time() - began - traced, time.process_time() - cpu_began - traced_cpu
        if not np.isfinite(system.parameters).all():
            raise DivergenceError(f"epoch {epoch}: parameters became non-finite")
        if hasattr(system, "end_epoch"):
            system.end_epoch()
        rates = _scaled(rates, float(options.lr_decay))
        running = (loss_sum / len(x_all), correct / len(x_all) if classes else float("nan"))
        row = finish_epoch(system, data, run, options, epoch, began, x_all, y_all, log, train_metrics=running,
                           train_seconds=round(trained, 3), train_cpu_seconds=round(trained_cpu, 3))
    return row
