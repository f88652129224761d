"""The EBL study's backprop baselines as rules (Sec. 4.1): rbp and tbp, for Hopfield networks only.

They take the same `.estimate(system, inputs, target)` face as the operator loops, but compute
the gradient through the relaxation (systems/hopfield/adjoint.py); they are references, not
physical learning rules.
"""

from __future__ import annotations

import numpy as np

from aeqprop_circuits.errors import AeqpropError
from aeqprop_circuits.learning.estimate import Estimate
from aeqprop_circuits.systems.base import Phase
from aeqprop_circuits.systems.hopfield.adjoint import rbp_gradient, tbp_gradient
from aeqprop_circuits.systems.hopfield.network import HopfieldNetwork


class _Reference:
    """What the backprop baselines share: no rate of their own, no in-place form."""

    rate, betas, contrastive = None, (0.0, 0.0), False

    def with_rate(self, rate):
        return self

    def in_place(self, system, learning_rate) -> None:
        return None


def _check(system):
    if not isinstance(system, HopfieldNetwork):
        raise AeqpropError(f"tbp / rbp are defined for Hopfield networks, not {type(system).__name__}")


class RBP(_Reference):
    """Recurrent backpropagation at the free equilibrium (EBL study baseline)."""

    name = "rbp"

    def __init__(self, max_iterations: int = 500, tolerance: float = 1e-7):
        self.max_iterations, self.tolerance = int(max_iterations), float(tolerance)

    def estimate(self, system, inputs, target) -> Estimate:
        _check(system)
        target = np.atleast_2d(target)
        free = system.settle(Phase(np.atleast_2d(inputs), 0.0, target))
        grad, info = rbp_gradient(system, free, target, self.max_iterations, self.tolerance)
        return Estimate(grad, system.outputs(free), free, extras={"adjoint": info})


class TBP(_Reference):
    """Truncated backpropagation through K iterations from the free state (EBL study baseline)."""

    name = "tbp"

    def __init__(self, iterations: int = 15):
        self.iterations = int(iterations)

    def estimate(self, system, inputs, target) -> Estimate:
        _check(system)
        target = np.atleast_2d(target)
        free = system.settle(Phase(np.atleast_2d(inputs), 0.0, target))
        grad = tbp_gradient(system, free, target, self.iterations)
        return Estimate(grad, system.outputs(free), free)
