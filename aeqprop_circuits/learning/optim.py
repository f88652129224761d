"""Small composable pieces that turn a gradient estimate into a parameter update (optax-style).

An optimiser is (init, update): `update(gradient, state) -> (delta, state)`. Keeping the
parameters in their physical range is a separate piece, `project`, applied after the step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SGD:
    """theta <- theta - lr * g (lr a scalar or a (P,) array of per-parameter rates), optional momentum."""

    learning_rate: float | np.ndarray
    momentum: float = 0.0

    def init(self, theta: np.ndarray):
        return np.zeros_like(theta)

    def update(self, gradient: np.ndarray, velocity: np.ndarray):
        velocity = self.momentum * velocity + gradient
        return -self.learning_rate * velocity, velocity


def project(theta: np.ndarray, bounds) -> np.ndarray:
    """Clip parameters to their physical range (e.g. conductances >= 0)."""
    if bounds is None:
        return theta
    return np.clip(theta, bounds[0], bounds[1])
