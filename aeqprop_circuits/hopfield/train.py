"""Training loop for dense Hopfield networks with the EP family's update applied in place.

The generic trainer (runs/trainer.py) asks the rule for a (P,) float64 gradient estimate
(one dE/dtheta per phase, their weighted sum) and then copies, updates and re-casts theta:
for 784-1024-10 at batch 16 those passes over 814 000 parameters cost several times the
physics of the step. Here a step of a nudge-contrast rule (p-ep, n-ep, c-ep, multi-point-ep;
its phases and contrast weights are read from the rule object in learning/algorithms.py, as
drn/train.py does) settles the free phase, settles the nudged phases from it together
(`HopfieldNetwork.settle_nudges`, one stacked batch sharing the input drive, which is
computed once per batch), and hands the contrast to `HopfieldNetwork.descend`, which updates
each weight block by one in-place GEMM: SGD without momentum, lr * EP estimate, what the
generic trainer computes (tests/test_hopfield_train.py checks both on one step).

Rates may be per parameter group (a preset's {"w1": .., "b1": ..}); the learning rate decays
per epoch by options.lr_decay and the adaptive threshold is updated at the end of each epoch,
as in the generic trainer. Metrics rows, checkpoints, resume and the Lyapunov trace
(--trace-every) are the generic trainer's, except that the training loss and accuracy are
running means over the epoch's free phases (read off the training steps, as drn/train.py
does) instead of a second pass over the training split. Rows also carry `train_seconds` and
`train_cpu_seconds`, the wall and process time of the training steps alone (the reference
timings count training; on the shared machine CPU time is the steadier of the two).
"""

from __future__ import annotations

import math
import time

import numpy as np

from ..data.datasets import Dataset
from ..errors import DivergenceError
from ..learning.algorithms import Contrast
from ..learning.lyapunov import step_trace
from ..physics.system import Phase
from ..runs.rundir import RunDir
from ..runs.trainer import TrainOptions, epoch_batches, finish_epoch, log_untrained, training_split


def fused_trainer(system, algorithm):
    """The in-place training loop when the net is dense (float32/64) and the rule a nudge contrast, else None."""
    if getattr(system, "in_place", False) and isinstance(algorithm, Contrast) and algorithm.mode == "nudge":
        return train_in_place
    return None


def ep_step(system, algorithm: Contrast, x: np.ndarray, target: np.ndarray, rates) -> np.ndarray:
    """One step of a nudge-contrast rule: the free phase, the nudged phases from it, theta updated in place.

    `rates`: a scalar or per-layer (weight, bias) rates (HopfieldNetwork.group_rates).
    Returns the free-phase outputs (B, n_outputs).
    """
    base = Phase(x, 0.0, target)
    free = system.settle(base)
    used = [(m, w) for m, w in zip(algorithm.multipliers, algorithm.weights) if w != 0.0]
    nudges = [algorithm.beta * m for m, _ in used if m != 0.0]
    nudged = iter(system.settle_nudges(base, nudges, start=free) if nudges else [])
    terms = [(w / algorithm.beta, free if m == 0.0 else next(nudged)) for m, w in used]
    outputs = system.outputs(free)
    system.descend(terms, rates)
    return outputs


def train_in_place(system, data: Dataset, algorithm: Contrast, run: RunDir, options: TrainOptions,
                   start_epoch: int = 0, log=print) -> dict:
    """Same contract as runs.trainer.train (epochs, metrics, checkpoints, resume, Lyapunov trace)."""
    decay = float(options.lr_decay) ** start_epoch
    rates = [(w * decay, b * decay) for w, b in system.group_rates(options.learning_rate)]
    x_all, y_all = training_split(data, options)
    x_all = np.asarray(x_all, dtype=system.dtype)
    targets_all = data.targets(y_all, system.n_outputs, options.target_amplitude)
    lo, hi = min(algorithm.multipliers), max(algorithm.multipliers)
    beta_1, beta_2 = algorithm.beta * lo, algorithm.beta * hi
    step = start_epoch * math.ceil(len(x_all) / options.batch_size)
    row = {}
    if start_epoch == 0:
        log_untrained(system, data, options, log)
    classes = data.n_classes
    for epoch in range(start_epoch + 1, options.epochs + 1):
        began, cpu_began = time.time(), time.process_time()
        traced, traced_cpu, loss_sum, correct = 0.0, 0.0, 0.0, 0
        for index in epoch_batches(len(x_all), epoch, options):
            x, target = x_all[index], targets_all[index]
            step += 1
            trace = options.trace_every and step % options.trace_every == 0 and beta_2 > beta_1
            if trace:
                t, c = time.time(), time.process_time()
                before = step_trace(system, x, target, beta_1, beta_2, bounds=False)
                traced, traced_cpu = traced + time.time() - t, traced_cpu + time.process_time() - c
            outputs = ep_step(system, algorithm, x, target, rates)
            loss_sum += float(np.sum((outputs - target) ** 2)) * system.cost_scale
            if classes:
                correct += int((outputs[:, :classes].argmax(axis=1) == y_all[index]).sum())
            if trace:
                t, c = time.time(), time.process_time()
                after = step_trace(system, x, target, beta_1, beta_2)
                run.append_step({
                    "epoch": epoch, "step": step, "beta1": beta_1, "beta2": beta_2,
                    "loss_before": before["loss"], "loss_after": after["loss"],
                    "lyapunov_before": before["lyapunov"], "lyapunov_after": after["lyapunov"],
                    "lyapunov_lower": after["lyapunov_lower"], "lyapunov_upper": after["lyapunov_upper"],
                })
                traced, traced_cpu = traced + time.time() - t, traced_cpu + time.process_time() - c
        trained, trained_cpu = time.time() - began - traced, time.process_time() - cpu_began - traced_cpu
        if not all(np.isfinite(w).all() for w in system.weights):
            raise DivergenceError(f"epoch {epoch}: parameters became non-finite")
        system.end_epoch()
        rates = [(w * options.lr_decay, b * options.lr_decay) for w, b in rates]
        running = (loss_sum / len(x_all), correct / len(x_all) if classes else float("nan"))
        row = finish_epoch(system, data, run, options, epoch, began, x_all, y_all, log, train_metrics=running,
                           train_seconds=round(trained, 3), train_cpu_seconds=round(trained_cpu, 3))
    return row
