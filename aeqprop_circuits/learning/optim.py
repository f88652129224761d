"""Small composable pieces that turn a gradient estimate into a parameter update (optax's style).

A `Transform` is a pair of pure functions: `init(theta) -> state` and
`update(gradient, state, theta, step) -> (update, state)`; `chain` composes them in order.
`sgd` is the chain the trainer uses: weight decay, momentum, then the scheduled rate.
Keeping the parameters in their physical range is a separate piece, `project`, applied after
the step.

A `Schedule` maps a base rate (a scalar, a (P,) array, or the nested per-group floats an
in-place system takes) and the global step index (0 at the first step) to the rate of that
step. The same schedule drives the optimiser's learning rate and, for Aeqprop, whose step
is the physics' own, the knobs' coupling epsilon.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

Schedule = Callable[[Any, int], Any]


def map_rates(function, rates):
    """`function` applied to every float of a rate: a scalar, an array, or nested lists/tuples of floats."""
    if isinstance(rates, (list, tuple)):
        return type(rates)(map_rates(function, r) for r in rates)
    return function(rates)


def constant() -> Schedule:
    return lambda rate, step: rate


def exponential(decay: float, steps_per_epoch: int) -> Schedule:
    """The rate multiplied by `decay` after every epoch (PyTorch's ExponentialLR).

    The multiplications are repeated, epoch after epoch, as an optimiser that decays its rate in
    place does, so a run (and a resumed one) takes exactly the rates of such a loop; the rate of
    the latest epoch is kept, so a step costs one multiplication per new epoch.
    """
    latest = [None, 0, None]  # base rate, epoch, rate of that epoch

    def schedule(rate, step):
        epoch = step // steps_per_epoch
        if latest[0] is not rate or latest[1] > epoch:
            latest[:] = [rate, 0, rate]
        for _ in range(epoch - latest[1]):
            latest[2] = map_rates(lambda r: r * decay, latest[2])
        latest[1] = epoch
        return latest[2]
    return schedule


def cosine(total_steps: int, floor: float = 0.0) -> Schedule:
    """Cosine annealing per step from the rate to `floor` over `total_steps` (PyTorch's CosineAnnealingLR, eta_min)."""
    def schedule(rate, step):
        weight = 0.5 * (1.0 + math.cos(math.pi * step / total_steps))
        return map_rates(lambda r: floor + (r - floor) * weight, rate)
    return schedule


@dataclass(frozen=True)
class Transform:
    init: Callable[[np.ndarray], Any]
    update: Callable[[np.ndarray, Any, np.ndarray, int], tuple[np.ndarray, Any]]


def add_decayed_weights(weight_decay: float) -> Transform:
    """g <- g + weight_decay * theta (L2 regularisation, as SGD's weight_decay)."""
    return Transform(lambda theta: None,
                     lambda gradient, state, theta, step: (gradient + weight_decay * theta, state))


def trace(momentum: float) -> Transform:
    """v <- momentum * v + g, and v is the update (PyTorch's SGD momentum, dampening 0)."""
    def update(gradient, velocity, theta, step):
        velocity = momentum * velocity + gradient
        return velocity, velocity
    return Transform(np.zeros_like, update)


def scale_by_schedule(rate, schedule: Schedule) -> Transform:
    """g <- -schedule(rate, step) * g: a descent step of the scheduled size."""
    return Transform(lambda theta: None, lambda gradient, state, theta, step: (-schedule(rate, step) * gradient, state))


def chain(*transforms: Transform) -> Transform:
    """The transforms applied one after the other; the state is the tuple of their states."""
    def init(theta):
        return tuple(t.init(theta) for t in transforms)

    def update(gradient, states, theta, step):
        new_states = []
        for transform, state in zip(transforms, states):
            gradient, state = transform.update(gradient, state, theta, step)
            new_states.append(state)
        return gradient, tuple(new_states)
    return Transform(init, update)


def sgd(learning_rate, schedule: Schedule, momentum: float = 0.0, weight_decay: float = 0.0) -> Transform:
    """SGD as the trainer runs it: weight decay, then momentum, then the scheduled rate."""
    pieces = [add_decayed_weights(weight_decay)] if weight_decay else []
    pieces += [trace(momentum)] if momentum else []
    return chain(*pieces, scale_by_schedule(learning_rate, schedule))


def project(theta: np.ndarray, bounds) -> np.ndarray:
    """Clip parameters to their physical range (e.g. conductances >= 0)."""
    if bounds is None:
        return theta
    return np.clip(theta, bounds[0], bounds[1])
