"""The learning rules as operator loops, each written once against PhysicalSystem.

A rule is a table entry (which phases, which contrast), not a class per variant:

- EP family: two nudged phases beta_1 < beta_2 and the estimate
  g = [dE/dtheta(s_beta2) - dE/dtheta(s_beta1)] / (beta_2 - beta_1);
  p-ep (0, b), n-ep (-b, 0), c-ep (-b, +b); multi-point-ep uses p + 1 phases 0, b, ..., p b
  and the p-point forward difference (bilevel review, App. C).
- Coupled learning (CpL): the outputs are clamped to (1 - beta) o* + beta y instead of
  nudged, same contrast; contrastive learning (CL) clamps them to y (contrast of free and clamped).
- Aeqprop: theta floats, coupled to knobs. A homeostatic phase at beta_1 holds theta at
  theta_{t-1}; then the knobs are clamped, the nudge moves to beta_2, the physics relaxes
  and the operator reads theta_t. The operator sees only a `KnobHandle`.
- exact-gradient: implicit differentiation through the free equilibrium (the reference).

Every rule has the same face (`Rule`): `estimate(system, inputs, target)` returns an
`Estimate`; applying it (SGD, clipping to the parameter range) is the optimiser's job
(learning/optim.py), except for Aeqprop, whose physics has already moved theta
(`Estimate.new_parameters`) by a step set by the rule's own `rate` (epsilon). `in_place(system,
learning_rate)` offers the fused form of the rule's step where the system has one
(systems/base.py, `InPlaceDescent`): the rule, not the training loop, knows when its step is
an in-place EP step. Rules are immutable: a schedule makes a new rule with `with_rate`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from math import factorial
from typing import Any, Protocol

import numpy as np

from aeqprop_circuits.errors import AeqpropError, DivergenceError
from aeqprop_circuits.learning.backprop import RBP, TBP
from aeqprop_circuits.learning.bilevel import IMPLICIT_TABLE, Implicit
from aeqprop_circuits.learning.estimate import Estimate
from aeqprop_circuits.learning.least_control import LEAST_CONTROL_RULES, least_control_rule
from aeqprop_circuits.systems.base import (
    ExactLossGradient,
    FusedContrastStep,
    InPlaceDescent,
    Phase,
    PhysicalSystem,
)
from aeqprop_circuits.systems.knobs import KnobHandle, OracleController, ProportionalController


class Rule(Protocol):
    """What the training loop needs of a learning rule."""

    name: str
    rate: Any  # the rule's own step size (Aeqprop's epsilon), or None when the optimiser sets the step
    betas: tuple[float, float]  # the nudges of its Lyapunov function L_{beta_1;beta_2}; equal: none is traced
    contrastive: bool  # its step descends the contrastive objective F_clamped - F_0 instead (CL)

    def estimate(self, system: PhysicalSystem, inputs, target) -> Estimate: ...

    def with_rate(self, rate) -> Rule: ...

    def in_place(self, system: PhysicalSystem, learning_rate) -> InPlaceStep | None: ...


@dataclass(frozen=True)
class InPlaceStep:
    """A rule's step as the system's in-place descent: `step(x, target, rates)` -> free state.

    `rates` is the schedule applied to `base_rates` (the system's form of the step size).
    """

    step: Callable[[np.ndarray, np.ndarray, Any], Any]
    base_rates: Any
    betas: tuple[float, float]
    description: str = "the EP step applied in place"


def forward_difference(points: int) -> np.ndarray:
    """Weights w with f'(0) ~ sum_i w_i f(i h) / h, exact for polynomials of degree `points`."""
    order = np.arange(points + 1)
    vandermonde = order[None, :] ** order[:, None].astype(float)  # row k: i^k
    rhs = np.zeros(points + 1)
    rhs[1] = factorial(1)
    return np.linalg.solve(vandermonde, rhs)


class Contrast:
    """EP, CpL, CL and multi-point EP: phases at beta * multipliers, a weighted contrast of dE/dtheta."""

    rate = None

    def __init__(self, name: str, mode: str, multipliers, weights, beta: float):
        if beta <= 0:
            raise AeqpropError(f"{name}: beta must be positive, got {beta}")
        self.name, self.mode, self.beta = name, mode, float(beta)
        self.multipliers = tuple(float(m) for m in multipliers)
        self.weights = np.asarray(weights, dtype=float)
        self.contrastive = mode == "clamp"

    @property
    def betas(self) -> tuple[float, float]:
        """(beta_1, beta_2): the lowest and highest nudge of the contrast (its Lyapunov function's)."""
        return self.beta * min(self.multipliers), self.beta * max(self.multipliers)

    def with_rate(self, rate) -> Contrast:
        return self

    def _phase(self, base: Phase, multiplier: float, free_outputs) -> Phase:
        if multiplier == 0.0:
            return base
        if self.mode == "nudge":
            return base.nudged(self.beta * multiplier)
        strength = 1.0 if self.mode == "clamp" else self.beta * multiplier
        return base.clamped((1.0 - strength) * free_outputs + strength * base.target)

    def estimate(self, system: PhysicalSystem, inputs, target) -> Estimate:
        base = Phase(np.atleast_2d(inputs), 0.0, np.atleast_2d(target))
        free = system.settle(base)
        outputs = system.outputs(free)
        gradient = 0.0
        for multiplier, weight in zip(self.multipliers, self.weights):
            if weight == 0.0:
                continue
            state = free if multiplier == 0.0 else system.settle(self._phase(base, multiplier, outputs), start=free)
            gradient = gradient + weight * system.energy_gradient(state)
        scale = 1.0 if self.mode == "clamp" else self.beta
        return Estimate(np.asarray(gradient) / scale, outputs, free, self.betas)

    def in_place(self, system: PhysicalSystem, learning_rate) -> InPlaceStep | None:
        """SGD on this contrast as the system's in-place descent (nudge contrasts only)."""
        if self.mode != "nudge" or not isinstance(system, InPlaceDescent) or not system.in_place:
            return None
        rates = system.in_place_rates(learning_rate)
        if rates is None:
            return None
        return InPlaceStep(lambda x, target, rates: ep_step(system, self, x, target, rates), rates, self.betas)


def ep_step(system, rule: Contrast, x: np.ndarray, target: np.ndarray, rates):
    """One step of a nudge contrast on an `InPlaceDescent` system: free phase, nudged phases, theta updated in place.

    The same phases and contrast weights as `Contrast.estimate`, and the update SGD with `rates`
    (what the optimiser would do with the estimate). Returns the free phase's state (settled before
    the update). A `FusedContrastStep` system does the whole step in one kernel where it can.
    """
    used = [(m, w) for m, w in zip(rule.multipliers, rule.weights) if w != 0.0]
    if isinstance(system, FusedContrastStep):
        free = system.contrast_step(x, target, tuple((float(w) / rule.beta, rule.beta * m) for m, w in used), rates)
        if free is not None:
            return free
    base = Phase(x, 0.0, target)
    free = system.settle(base)
    nudges = [rule.beta * m for m, _ in used if m != 0.0]
    nudged = iter(system.settle_nudges(base, nudges, start=free) if nudges else [])
    terms = [(w / rule.beta, free if m == 0.0 else next(nudged)) for m, w in used]
    system.descend(terms, rates)
    return free


class Aeqprop:
    """Agnostic EqProp: the operator holds theta, nudges, and reads where theta went."""

    contrastive = False

    def __init__(self, name: str, beta_1: float, beta_2: float, epsilon, controller="proportional",
                 rounds: int = 50, relax_rounds: int = 20, adaptive_gain: bool = True, hold_rtol: float | None = 1e-2,
                 step_rtol: float | None = 0.1):
        if controller not in ("proportional", "oracle"):
            raise AeqpropError(f"unknown controller '{controller}'; expected proportional or oracle")
        self.name, self.beta_1, self.beta_2 = name, float(beta_1), float(beta_2)
        self.epsilon = epsilon
        self.controller_name, self.rounds, self.relax_rounds = controller, rounds, relax_rounds
        self.adaptive_gain, self.hold_rtol = adaptive_gain, hold_rtol  # the proportional controller's
        self.step_rtol = step_rtol  # largest hold residual, as a fraction of the step (operate)

    @property
    def rate(self):
        """epsilon: the step of Aeqprop is the physics' relaxation, epsilon (beta_2 - beta_1) times the gradient."""
        return self.epsilon

    @property
    def betas(self) -> tuple[float, float]:
        return self.beta_1, self.beta_2

    def with_rate(self, rate) -> Aeqprop:
        new = object.__new__(Aeqprop)
        new.__dict__.update(self.__dict__, epsilon=rate)
        return new

    def _controller(self, system):
        if self.controller_name == "proportional":
            return ProportionalController(self.rounds, self.adaptive_gain, self.hold_rtol)
        return OracleController(system)

    def estimate(self, system: PhysicalSystem, inputs, target) -> Estimate:
        controller = self._controller(system)
        theta_before = system.parameters
        new_parameters, outputs = operate(KnobHandle(system, self.epsilon), controller, np.atleast_2d(inputs),
                                          np.atleast_2d(target), self.beta_1, self.beta_2, self.relax_rounds,
                                          self.step_rtol)
        step = self.epsilon * (self.beta_2 - self.beta_1)
        gradient = (theta_before - new_parameters) / step
        return Estimate(gradient, outputs, None, self.betas, new_parameters)

    def nudge_contrast(self) -> tuple[Contrast, float] | None:
        """(the EP contrast whose SGD step this rule's step is, rate per unit epsilon), or None.

        With the oracle controller theta is held exactly at theta_{t-1} through the homeostatic
        phases, and one parallel parameter relaxation at beta_2 (App. C) moves it to
        clip(theta_{t-1} - epsilon [dE/dtheta(s_beta2) - dE/dtheta(s_beta1)]): the EP estimate of
        the phases (beta_1, beta_2) times the rate epsilon (beta_2 - beta_1). The proportional
        controller or more relaxation rounds keep the agnostic operator loop.
        """
        if self.controller_name != "oracle" or self.relax_rounds != 1:
            return None
        spread = self.beta_2 - self.beta_1
        multipliers = (self.beta_1 / spread, self.beta_2 / spread)
        return Contrast(self.name, "nudge", multipliers, (-1.0, 1.0), spread), spread

    def in_place(self, system: PhysicalSystem, learning_rate) -> InPlaceStep | None:
        """With the oracle controller and one parameter relaxation, the equivalent EP step, in place.

        The rate is the rule's own, epsilon (beta_2 - beta_1); `learning_rate` does not apply.
        """
        shortcut = self.nudge_contrast()
        if shortcut is None:
            return None
        contrast, spread = shortcut
        step = contrast.in_place(system, self.epsilon * spread)
        return None if step is None else replace(
            step, description="oracle controller, one parameter relaxation: the equivalent EP step, applied in place")


def operate(handle: KnobHandle, controller, inputs, target, beta_1, beta_2, relax_rounds,
            step_rtol: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The Aeqprop procedure (paper Sec. 2 and App. C), as an operator performs it on the bench.

    Only the handle is touched: set inputs, hold theta by the knobs without nudge, then (for
    the pessimistic and centered variants) keep holding while the nudge moves to beta_1;
    clamp the knobs, move the nudge to beta_2, let the physics relax, read theta. Holding at
    beta = 0 first means the knobs are already right when a negative nudge comes on, so the
    negatively nudged phase never sees the controller's transient.

    The step is theta's move from where the knobs held it, so the holds must be far tighter
    than the step: a hold residual above `step_rtol` times the step (largest entries) is an
    error. The first hold's residual counts too: the slowly decaying part of its error stays
    in the knobs even when theta happens to pass its target at the end of the second hold.
    Near epsilon = 1/|curvature of F| the proportional hold converges slowly; there a hold
    within 1 % of theta can leave the step more than 5 % off the oracle's (docs/how-to/proportional-controller.md).
    Returns theta as read after the step, and the outputs read at the end of the first hold
    (the free phase at theta_{t-1}, on which the step's loss is measured).
    """
    theta_previous = handle.read_parameters()
    handle.set_inputs(inputs)
    residual = 0.0
    for beta in (0.0, beta_1) if beta_1 != 0.0 else (0.0,):
        handle.set_nudge(beta, target)
        controller.hold(handle, theta_previous, Phase(inputs, beta, target))
        residual = max(residual, np.abs(handle.read_parameters() - theta_previous).max())
        if beta == 0.0:
            outputs = handle.read_outputs()
    handle.set_nudge(beta_2, target)  # knobs stay where the controller left them
    handle.relax(relax_rounds)
    theta = handle.read_parameters()
    moved = np.abs(theta - theta_previous).max()
    if step_rtol is not None and not residual <= step_rtol * moved:
        raise DivergenceError(
            f"homeostasis too loose: the knobs held the parameters only to within {residual:.2g}, "
            f"{residual / moved if moved else np.inf:.2g} times the step they measure ({moved:.2g}), so the step "
            f"would be mostly the {controller.name} controller's error. At epsilon={np.max(handle.epsilon):g} "
            "the hold converges slowly (or not at all): use a smaller --epsilon (well below the bound in "
            "docs/how-to/proportional-controller.md) or --controller oracle")
    return theta, outputs


class ExactGradient:
    """Implicit differentiation through the free equilibrium: the reference for every estimator."""

    name, rate, betas, contrastive = "exact-gradient", None, (0.0, 0.0), False

    def with_rate(self, rate) -> ExactGradient:
        return self

    def in_place(self, system: PhysicalSystem, learning_rate) -> None:
        return None

    def estimate(self, system: PhysicalSystem, inputs, target) -> Estimate:
        if not isinstance(system, ExactLossGradient):
            raise AeqpropError(f"exact-gradient is not available for {type(system).__name__}")
        free = system.settle(Phase(np.atleast_2d(inputs)))
        return Estimate(system.loss_gradient(free, np.atleast_2d(target)), system.outputs(free), free)


EP_TABLE = {  # name: (mode, multipliers of beta, contrast weights)
    "p-ep": ("nudge", (0, 1), (-1, 1)),
    "n-ep": ("nudge", (-1, 0), (-1, 1)),
    "c-ep": ("nudge", (-1, 1), (-0.5, 0.5)),
    "p-cpl": ("couple", (0, 1), (-1, 1)),
    "n-cpl": ("couple", (-1, 0), (-1, 1)),
    "c-cpl": ("couple", (-1, 1), (-0.5, 0.5)),
    "cl": ("clamp", (0, 1), (-1, 1)),
}
AEQPROP_TABLE = {  # name: (beta_1, beta_2) as multiples of beta
    "aeqprop-optimistic": (0.0, 1.0),
    "aeqprop-pessimistic": (-1.0, 0.0),
    "aeqprop-centered": (-0.5, 0.5),
}
BACKPROP_TABLE = {"tbp": TBP, "rbp": RBP}  # references through the relaxation (Hopfield networks)


def algorithm_names() -> list[str]:
    return [*EP_TABLE, "multi-point-ep", *AEQPROP_TABLE, "exact-gradient", *BACKPROP_TABLE, *LEAST_CONTROL_RULES]


def get_algorithm(name: str, beta: float = 0.1, epsilon=0.1, controller: str = "oracle",
                  points: int = 2, **options) -> Rule:
    """The rule called `name`, configured. Unknown options are errors, not silently ignored.

    beta applies to the EP, CpL, CL and Aeqprop rules; epsilon, controller and the Aeqprop
    options (relax_rounds, rounds, ...) to Aeqprop; points to multi-point-ep; the backprop
    baselines take their own options (iterations, max_iterations, tolerance).
    """
    if name in AEQPROP_TABLE:
        b1, b2 = AEQPROP_TABLE[name]
        if beta <= 0:
            raise AeqpropError(f"{name}: beta must be positive, got {beta}")
        return Aeqprop(name, b1 * beta, b2 * beta, epsilon, controller, **options)
    if name in BACKPROP_TABLE:
        return BACKPROP_TABLE[name](**options)
    if name in IMPLICIT_TABLE:  # meta-gradient baselines for bilevel systems (learning/bilevel.py)
        return Implicit(name, **options)
    if name in LEAST_CONTROL_RULES:  # least-control learning (learning/least_control.py)
        return least_control_rule(name, beta, controller=controller, **options)
    if options:
        raise AeqpropError(f"{name} takes no options {sorted(options)}")
    if name in EP_TABLE:
        mode, multipliers, weights = EP_TABLE[name]
        return Contrast(name, mode, multipliers, weights, beta)
    if name == "multi-point-ep":
        return Contrast(name, "nudge", range(points + 1), forward_difference(points), beta)
    if name == "exact-gradient":
        return ExactGradient()
    raise AeqpropError(f"unknown algorithm '{name}'; expected one of {', '.join(algorithm_names())}")
