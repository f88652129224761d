"""The Lyapunov function of an Aeqprop step (Scellier et al., Theorems 2 and 3).

L_{b1;b2}(theta) = [F(b2, theta) - F(b1, theta)] / (b2 - b1), F(b, theta) = min_s E + b C:
two settles, no quadrature. It never increases across an Aeqprop step with nudges (b1, b2),
for any epsilon and beta; and L_{0;b} <= C(s_0) <= L_{-b;0} bounds the loss. An EP step is
an SGD step on the same function (dF/dtheta = dE/dtheta at the equilibrium), so it descends
it when the rate is small for its curvature.

Contrastive learning's step is SGD on its own function, the contrastive objective
J(theta) = F_clamped(theta) - F(0, theta) >= 0 (outputs clamped to the target; Movellan 1991):
its estimate dE/dtheta(s_clamped) - dE/dtheta(s_0) is exactly dJ/dtheta, so J is the function
its trace follows (`clamped=True`). Coupled learning has none: its clamp value moves with the
free outputs, so its contrast is not the gradient of a function of theta (EBL study, App. B).
"""

from __future__ import annotations

import numpy as np

from aeqprop_circuits.errors import DivergenceError
from aeqprop_circuits.systems.base import Phase, PhysicalSystem


def free_energy(system: PhysicalSystem, inputs, target, beta: float, start=None):
    """F(beta, theta) averaged over the batch, and the equilibrium it was measured at."""
    state = system.settle(Phase(inputs, beta, target), start=start)
    return float(np.mean(system.energy(state))), state


def free_energy_curvature(system: PhysicalSystem, inputs, target, beta: float = 0.0, step: float = 1e-6) -> float:
    """Largest |eigenvalue| of the Hessian of F(beta, theta) in theta, by differences of dE/dtheta.

    One settle per parameter, so for small systems. F is concave in theta where E is linear in it
    (conductances, Hopfield weights), and epsilon |h| < 1 is where the knob-coupled energy
    E + |u - theta|^2 / 2 epsilon stays convex in theta: the largest epsilon a proportional
    controller can hold (physics/knobs.py).
    """
    theta = system.parameters
    phase = Phase(inputs, beta, target)

    def gradient(t):
        system.parameters = t
        return system.energy_gradient(system.settle(phase))

    try:
        g0 = gradient(theta)
        steps = step * np.maximum(np.abs(theta), 1e-6)
        hessian = np.array([(gradient(theta + h * e) - g0) / h for h, e in zip(steps, np.eye(theta.size))])
    finally:
        system.parameters = theta
    return float(np.abs(np.linalg.eigvalsh(0.5 * (hessian + hessian.T))).max())


def lyapunov(system: PhysicalSystem, inputs, target, beta_1: float, beta_2: float, start=None,
             known: dict | None = None) -> float:
    """L_{beta_1;beta_2} of the current parameters; `known` caches F values by beta."""
    known = {} if known is None else known
    for beta in (beta_1, beta_2):
        if beta not in known:
            known[beta] = free_energy(system, inputs, target, beta, start)[0]
    return (known[beta_2] - known[beta_1]) / (beta_2 - beta_1)


def step_trace(system: PhysicalSystem, inputs, target, beta_1: float, beta_2: float, bounds: bool = True,
               clamped: bool = False) -> dict:
    """Loss, Lyapunov value and (optionally) its bounds, for the current parameters on one batch.

    `clamped`: the value is contrastive learning's J = F_clamped - F(0) instead (no bounds).
    """
    f0, free = free_energy(system, inputs, target, 0.0)
    known = {0.0: f0}
    record = {"loss": float(np.mean(system.cost(free, target)))}
    if clamped:
        state = system.settle(Phase(inputs, 0.0, target, clamp=target), start=free)
        record["lyapunov"] = float(np.mean(system.energy(state))) - f0
        record["lyapunov_lower"] = record["lyapunov_upper"] = None
        bounds = False
    else:
        record["lyapunov"] = lyapunov(system, inputs, target, beta_1, beta_2, free, known)
    if bounds:
        span = beta_2 - beta_1
        record["lyapunov_lower"] = lyapunov(system, inputs, target, 0.0, span, free, known)
        try:
            record["lyapunov_upper"] = lyapunov(system, inputs, target, -span, 0.0, free, known)
        except DivergenceError:  # the negatively nudged phase has no minimum: no upper bound
            record["lyapunov_upper"] = None
    record["outputs"] = system.outputs(free)
    return record
