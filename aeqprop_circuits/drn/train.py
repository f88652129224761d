"""Training loop for DRNSystem with the EP family's update applied in place.

The generic trainer (runs/trainer.py) asks the rule for a (P,) gradient estimate and then
makes about a dozen passes over theta (copy, contrast, optimiser, projection, finiteness
check, write-back). At DRN-1H size (1.6 10^6 conductances) those passes cost more than the
physics. Here a step of a nudge-contrast rule (p-ep, n-ep, c-ep, multi-point-ep, as
configured in learning/algorithms.py: its phases and contrast weights are read from the rule
object, not restated) settles the same phases as `Contrast.estimate` and hands the contrast to
`DRNSystem.descend`, which updates each weight block by one in-place GEMM and clips it at zero
conductance: SGD without momentum, lr * EP estimate, exactly what the generic trainer computes.

Metrics rows, checkpoints and the epoch-0 evaluation are those of the generic trainer (so
`aeqprop plot` and `aeqprop train --resume` work unchanged), except that the training loss and
accuracy are running means over the epoch's free phases (read off the training steps, as
PyTorch-style loops and the paper's code report them) instead of a second pass over the 60 000
training images; the test metrics are a full evaluation after the epoch. Rows also carry
`train_seconds`, the time of the training steps alone.
"""

from __future__ import annotations

import time

import numpy as np

from ..data.datasets import Dataset
from ..errors import DivergenceError
from ..learning.algorithms import Contrast
from ..physics.system import Phase
from ..runs.rundir import RunDir
from ..runs.trainer import TrainOptions, epoch_batches, finish_epoch, log_untrained, training_split


def fused_trainer(system, algorithm):
    """The in-place training loop when `algorithm` is a nudge contrast, else None."""
    if isinstance(algorithm, Contrast) and algorithm.mode == "nudge":
        return train_in_place
    return None


def ep_step(system, algorithm: Contrast, x: np.ndarray, target: np.ndarray, learning_rate) -> np.ndarray:
    """One step of a nudge-contrast rule: the free phase, the nudged phases from it, theta updated in place.

    `learning_rate`: a scalar or per-block sizes [w1, w2, ..., bias] (DRNSystem.block_steps).

    Returns the free-phase outputs (B, n_outputs).
    """
    base = Phase(x, 0.0, target)
    free = system.settle(base)
    used = [(m, w) for m, w in zip(algorithm.multipliers, algorithm.weights) if w != 0.0]
    nudges = [algorithm.beta * m for m, _ in used if m != 0.0]
    nudged = iter(system.settle_nudges(base, nudges, start=free) if nudges else [])
    terms = [(w / algorithm.beta, free if m == 0.0 else next(nudged)) for m, w in used]
    outputs = system.outputs(free)
    system.descend(terms, learning_rate)
    return outputs


def train_in_place(system, data: Dataset, algorithm: Contrast, run: RunDir, options: TrainOptions,
                   start_epoch: int = 0, log=print) -> dict:
    """Same contract as runs.trainer.train (epochs, metrics, checkpoints, resume); no Lyapunov trace."""
    steps = system.block_steps(options.learning_rate)
    if steps is None:  # rates that vary inside a block: the generic trainer handles any (P,) rates
        from ..runs.trainer import train

        return train(system, data, algorithm, run, options, start_epoch=start_epoch, log=log)
    decay = float(getattr(options, "lr_decay", 1.0))
    lr = [s * decay ** start_epoch for s in steps]
    x_all, y_all = training_split(data, options)
    x_all = np.asarray(x_all, dtype=system.dtype)
    targets_all = data.targets(y_all, system.n_outputs, options.target_amplitude).astype(system.dtype)
    row = {}
    if start_epoch == 0:
        log_untrained(system, data, options, log)
    classes = data.n_classes
    for epoch in range(start_epoch + 1, options.epochs + 1):
        began = time.time()
        loss_sum, correct = 0.0, 0
        for index in epoch_batches(len(x_all), epoch, options):
            target = targets_all[index]
            outputs = ep_step(system, algorithm, x_all[index], target, lr)
            loss_sum += 0.5 * float(np.square(outputs - target).sum())
            if classes:
                correct += int((outputs[:, :classes].argmax(axis=1) == y_all[index]).sum())
        trained = time.time() - began
        lr = [s * decay for s in lr]
        if not np.isfinite(system._theta).all():
            raise DivergenceError(f"epoch {epoch}: parameters became non-finite")
        running = (loss_sum / len(x_all), correct / len(x_all) if classes else float("nan"))
        row = finish_epoch(system, data, run, options, epoch, began, x_all, y_all, log, train_metrics=running,
                           train_seconds=round(trained, 3))
    return row
