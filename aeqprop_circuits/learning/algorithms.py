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

`estimate(system, inputs, target)` returns an `Estimate`; applying it (SGD, clipping to the
parameter range) is the optimiser's job (learning/optim.py), except for Aeqprop whose
physics has already moved theta (`Estimate.new_parameters`).
"""

from __future__ import annotations

from math import factorial

import numpy as np

from aeqprop_circuits.errors import AeqpropError, DivergenceError
from aeqprop_circuits.learning.backprop import RBP, TBP
from aeqprop_circuits.learning.estimate import Estimate
from aeqprop_circuits.systems.base import Phase, PhysicalSystem
from aeqprop_circuits.systems.knobs import KnobHandle, OracleController, ProportionalController


def forward_difference(points: int) -> np.ndarray:
    """Weights w with f'(0) ~ sum_i w_i f(i h) / h, exact for polynomials of degree `points`."""
    order = np.arange(points + 1)
    vandermonde = order[None, :] ** order[:, None].astype(float)  # row k: i^k
    rhs = np.zeros(points + 1)
    rhs[1] = factorial(1)
    return np.linalg.solve(vandermonde, rhs)


class Contrast:
    """EP, CpL, CL and multi-point EP: phases at beta * multipliers, a weighted contrast of dE/dtheta."""

    def __init__(self, name: str, mode: str, multipliers, weights, beta: float):
        if beta <= 0:
            raise AeqpropError(f"{name}: beta must be positive, got {beta}")
        self.name, self.mode, self.beta = name, mode, float(beta)
        self.multipliers = tuple(float(m) for m in multipliers)
        self.weights = np.asarray(weights, dtype=float)

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
        lo, hi = min(self.multipliers), max(self.multipliers)
        return Estimate(np.asarray(gradient) / scale, outputs, free, (self.beta * lo, self.beta * hi))


class Aeqprop:
    """Agnostic EqProp: the operator holds theta, nudges, and reads where theta went."""

    def __init__(self, name: str, beta_1: float, beta_2: float, epsilon, controller="proportional",
                 rounds: int = 50, relax_rounds: int = 20, adaptive_gain: bool = True, hold_rtol: float | None = 1e-2,
                 step_rtol: float | None = 0.1):
        self.name, self.beta_1, self.beta_2 = name, float(beta_1), float(beta_2)
        self.epsilon = epsilon
        self.controller_name, self.rounds, self.relax_rounds = controller, rounds, relax_rounds
        self.adaptive_gain, self.hold_rtol = adaptive_gain, hold_rtol  # the proportional controller's
        self.step_rtol = step_rtol  # largest hold residual, as a fraction of the step (operate)

    def _controller(self, system):
        if self.controller_name == "proportional":
            return ProportionalController(self.rounds, self.adaptive_gain, self.hold_rtol)
        if self.controller_name == "oracle":
            return OracleController(system)
        raise AeqpropError(f"unknown controller '{self.controller_name}'; expected proportional or oracle")

    def estimate(self, system: PhysicalSystem, inputs, target) -> Estimate:
        controller = self._controller(system)
        theta_before = system.parameters
        new_parameters = operate(KnobHandle(system, self.epsilon), controller, np.atleast_2d(inputs),
                                 np.atleast_2d(target), self.beta_1, self.beta_2, self.relax_rounds, self.step_rtol)
        step = self.epsilon * (self.beta_2 - self.beta_1)
        gradient = (theta_before - new_parameters) / step
        return Estimate(gradient, None, None, (self.beta_1, self.beta_2), new_parameters)


    def nudge_contrast(self) -> tuple[Contrast, float] | None:
        """(the EP contrast whose SGD step this rule's step is, rate per unit epsilon), or None.

        With the oracle controller theta is held exactly at theta_{t-1} through the homeostatic
        phases, and one parallel parameter relaxation at beta_2 (App. C) moves it to
        clip(theta_{t-1} - epsilon [dE/dtheta(s_beta2) - dE/dtheta(s_beta1)]): the EP estimate of
        the phases (beta_1, beta_2) times the rate epsilon (beta_2 - beta_1). Trainers use this to
        run the step in place (runs/inplace.py); the proportional controller or more relaxation
        rounds keep the agnostic operator loop.
        """
        if self.controller_name != "oracle" or self.relax_rounds != 1:
            return None
        spread = self.beta_2 - self.beta_1
        multipliers = (self.beta_1 / spread, self.beta_2 / spread)
        return Contrast(self.name, "nudge", multipliers, (-1.0, 1.0), spread), spread


def operate(handle: KnobHandle, controller, inputs, target, beta_1, beta_2, relax_rounds,
            step_rtol: float | None = None) -> np.ndarray:
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
    within 1 % of theta can leave the step more than 5 % off the oracle's (docs/training.md).
    """
    theta_previous = handle.read_parameters()
    handle.set_inputs(inputs)
    residual = 0.0
    for beta in (0.0, beta_1) if beta_1 != 0.0 else (0.0,):
        handle.set_nudge(beta, target)
        controller.hold(handle, theta_previous, Phase(inputs, beta, target))
        residual = max(residual, np.abs(handle.read_parameters() - theta_previous).max())
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
            "docs/training.md, 'The proportional controller') or --controller oracle")
    return theta


class ExactGradient:
    """Implicit differentiation through the free equilibrium: the reference for every estimator."""

    name = "exact-gradient"

    def estimate(self, system: PhysicalSystem, inputs, target) -> Estimate:
        if not hasattr(system, "loss_gradient"):
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
    return [*EP_TABLE, "multi-point-ep", *AEQPROP_TABLE, "exact-gradient", *BACKPROP_TABLE]


def get_algorithm(name: str, beta: float = 0.1, epsilon=0.1, controller: str = "proportional",
                  points: int = 2, **options):
    """The rule called `name`, configured. Unknown options are errors, not silently ignored."""
    if name in EP_TABLE:
        mode, multipliers, weights = EP_TABLE[name]
        return Contrast(name, mode, multipliers, weights, beta)
    if name == "multi-point-ep":
        return Contrast(name, "nudge", range(points + 1), forward_difference(points), beta)
    if name in AEQPROP_TABLE:
        b1, b2 = AEQPROP_TABLE[name]
        if beta <= 0:
            raise AeqpropError(f"{name}: beta must be positive, got {beta}")
        return Aeqprop(name, b1 * beta, b2 * beta, epsilon, controller, **options)
    if name == "exact-gradient":
        return ExactGradient()
    if name in BACKPROP_TABLE:
        return BACKPROP_TABLE[name](**options)
    raise AeqpropError(f"unknown algorithm '{name}'; expected one of {', '.join(algorithm_names())}")


def algorithm_from_config(config: dict):
    """The rule a run config names, with the options that rule takes."""
    options = {}
    if config["algorithm"].startswith("aeqprop"):
        options = {"epsilon": config["epsilon"], "controller": config.get("controller", "proportional")}
        if config.get("relax_rounds"):
            options["relax_rounds"] = config["relax_rounds"]
    return get_algorithm(config["algorithm"], beta=config["beta"], **options)
