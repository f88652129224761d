"""Least-control learning as operator loops (Meulemans et al., the least-control principle).

lcp-output: a leaky integral controller on the outputs. It injects a current u into each
output and integrates du/dt = gain (y - o) - leak u; at its steady state u = (gain / leak)(y - o),
which is exactly the nudged phase of strength beta = gain / leak. With no leak (strong control)
it drives the outputs to the target: the clamped phase of CL. The update contrasts the
controlled and the free state,

    g = (1 + 1 / beta) [dE/dtheta(s_controlled) - dE/dtheta(s_free)],

p-ep's estimate at beta times (1 + beta) for weak control (beta -> 0: EP) and CL's contrast for
beta -> infinity. Controllers: "oracle" settles the steady state directly (the nudged or clamped
phase); "integral" runs the controller as an operator would, seeing only the outputs: it injects
its current through a source behind a fixed conductance (a nudge whose target it sets) and
integrates until the loop settles (the step halves when the error grows).

lcp-current: the least-control rule proper. The least current psi* injected into the free nodes
that holds the outputs at the target (systems/least_control.py, solved with the circuit's model:
an oracle controller), and the local update dH/dg_k = dV_k (psi*_a - psi*_b), the gradient of
H = 1/2 |psi*|^2. On a network whose every resistor learns, H also falls by weakening the
couplings (a weakly coupled output is held by a small current however wrong it is), and it does
on the shipped Iris netlist: H goes to near zero while the loss stalls (docs/results/bilevel.md).

lcp: the same with the control measured in volts, each node's current over its total conductance
(psi_i / G_i: how far the controller pulls the node from the average of its neighbours, the
circuit's analogue of the unit leak of the paper's neurons). H is then invariant to the scale of
the conductances and the update stays local: dV_k (d_a / G_a - d_b / G_b) - d_a^2 / G_a - d_b^2 / G_b
with d = psi / G.

Controllers of lcp / lcp-current: "oracle" solves for psi* with the circuit's model
(systems/least_control.py); "integral" only observes the outputs and injects currents into the
free nodes (`InjectionHandle`), as the least-control principle's feedback controller does:
psi = Q u, with u integrating the output error. Its fixed point (outputs at the target, psi in
the span of Q) is the least control when the columns of Q span D^-1 S^T, S the outputs'
sensitivity to the injected currents and D the measure's metric (1, or 1/G_i^2 for volts): the
condition of a minimum of 1/2 psi^T D psi under outputs(psi) = y. The controller measures S
itself: it injects a small probe current into each node in turn and watches the outputs
(central differences); it then sets Q = D^-1 S^T and steps u by the loop's observed gain
(S Q)^-1 times the error, relaxing the physics each round until the outputs sit at the
target, and measures S again at the new state until psi stops moving. On a linear network one
calibration gives the least control; on a nonlinear one the repeated calibrations converge to
it (a stationary point of the same problem). It never reads the co-content or its derivatives.
"""

from __future__ import annotations

import numpy as np

from aeqprop_circuits.errors import AeqpropError, DivergenceError
from aeqprop_circuits.learning.estimate import Estimate
from aeqprop_circuits.systems.base import Phase, PhysicalSystem
from aeqprop_circuits.systems.least_control import (
    MEASURES,
    Controlled,
    InjectionHandle,
    control_gradient,
    least_control,
)

OUTPUT_CONTROLLERS = ("oracle", "integral")
CONTROLLERS = ("oracle", "integral")  # of lcp and lcp-current


class OutputFeedback:
    """lcp-output (module docstring): beta = gain / leak; leak = 0 is the strong-control (clamped) limit."""

    name, rate, contrastive = "lcp-output", None, False

    def __init__(self, beta: float, leak: float = 1.0, controller: str = "oracle", rounds: int = 500,
                 tolerance: float = 1e-10, conductance: float = 1.0, step: float = 1.0):
        if controller not in OUTPUT_CONTROLLERS:
            raise AeqpropError(f"lcp-output: controller '{controller}': expected one of "
                               f"{', '.join(OUTPUT_CONTROLLERS)}")
        if not beta > 0 or not leak >= 0 or not conductance > 0 or not step > 0:
            raise AeqpropError(f"lcp-output: beta, conductance and step must be positive and leak >= 0, got "
                               f"beta={beta}, leak={leak}, conductance={conductance}, step={step}")
        self.beta, self.leak, self.controller = float(beta), float(leak), controller
        self.gain = self.beta * self.leak if self.leak else 1.0
        self.rounds, self.tolerance, self.conductance, self.step = rounds, tolerance, conductance, step

    @property
    def strong(self) -> bool:
        return self.leak == 0.0

    @property
    def betas(self) -> tuple[float, float]:
        return (0.0, 0.0) if self.strong else (0.0, self.beta)

    def with_rate(self, rate) -> OutputFeedback:
        return self

    def in_place(self, system: PhysicalSystem, learning_rate) -> None:
        return None

    def estimate(self, system: PhysicalSystem, inputs, target) -> Estimate:
        base = Phase(np.atleast_2d(inputs), 0.0, np.atleast_2d(target))
        free = system.settle(base)
        if self.controller == "oracle":
            phase = base.clamped(base.target) if self.strong else base.nudged(self.beta)
            controlled = system.settle(phase, start=free)
        else:
            controlled = self.integrate(system, base, free)
        scale = 1.0 if self.strong else 1.0 + 1.0 / self.beta
        gradient = scale * (system.energy_gradient(controlled) - system.energy_gradient(free))
        return Estimate(gradient, system.outputs(free), free, self.betas)

    def integrate(self, system: PhysicalSystem, base: Phase, free):
        """The leaky integral controller, run until du/dt = gain (y - o) - leak u vanishes.

        The current u flows through a source at t behind the conductance c (a nudge of strength c
        towards t): u = c (t - o). Each round the controller steps u and sets t = o + u / c.
        """
        c, y = self.conductance, base.target
        state, outputs = free, system.outputs(free)
        current = np.zeros_like(outputs)
        error = self.gain * (y - outputs)
        size, step = np.abs(error).max(), self.step / (self.gain + self.leak + c)
        scale = size or 1.0
        for _ in range(self.rounds):
            if size <= self.tolerance * scale:
                return state
            source = outputs + (current + step * error) / c
            state = system.settle(Phase(base.inputs, c, source), start=state)
            outputs = system.outputs(state)
            current = c * (source - outputs)
            error = self.gain * (y - outputs) - self.leak * current
            previous, size = size, np.abs(error).max()
            if size > previous:
                step *= 0.5
        raise DivergenceError(f"lcp-output: the integral controller did not settle in {self.rounds} rounds "
                              f"(error {size:.3g}); use the oracle controller, more rounds or a smaller step "
                              "(algorithm options controller, rounds, step)")


class LeastControl:
    """lcp / lcp-current: the least control psi* holding the outputs at the target, and the update dH/dtheta."""

    rate, betas, contrastive = None, (0.0, 0.0), False

    def __init__(self, measure: str = "voltage", max_iterations: int = 60, controller: str = "oracle",
                 rounds: int = 50, probe: float = 1e-3, tolerance: float = 1e-9, calibrations: int = 8):
        if measure not in MEASURES:
            raise AeqpropError(f"lcp: measure '{measure}': expected one of {', '.join(MEASURES)}")
        if controller not in CONTROLLERS:
            raise AeqpropError(f"lcp: controller '{controller}': expected one of {', '.join(CONTROLLERS)}")
        if not probe > 0 or not tolerance > 0 or not rounds >= 1 or not calibrations >= 1:
            raise AeqpropError(f"lcp: probe and tolerance must be positive, rounds and calibrations at least 1, "
                               f"got probe={probe}, tolerance={tolerance}, rounds={rounds}, "
                               f"calibrations={calibrations}")
        self.measure, self.max_iterations, self.controller = measure, max_iterations, controller
        self.rounds, self.probe, self.tolerance = int(rounds), float(probe), float(tolerance)
        self.calibrations = int(calibrations)
        self.name = "lcp" if measure == "voltage" else "lcp-current"

    def with_rate(self, rate) -> LeastControl:
        return self

    def in_place(self, system: PhysicalSystem, learning_rate) -> None:
        return None

    def estimate(self, system: PhysicalSystem, inputs, target) -> Estimate:
        from aeqprop_circuits.systems.circuit import CircuitSystem

        if not isinstance(system, CircuitSystem):
            raise AeqpropError(f"lcp solves for the least control currents of a circuit netlist; "
                               f"{type(system).__name__} is not one (use lcp-output)")
        inputs, target = np.atleast_2d(inputs), np.atleast_2d(target)
        free = system.settle(Phase(inputs))
        if self.controller == "oracle":
            controlled = least_control(system, inputs, target, start=free.result.free,
                                       max_iterations=self.max_iterations, measure=self.measure)
        else:
            controlled = observe_and_inject(InjectionHandle(system, inputs), target, self.measure, self.rounds,
                                            self.probe, self.tolerance, self.calibrations)
        extras = {"control_cost": float(controlled.cost.mean())}
        if self.controller == "integral":
            extras["unsettled"] = controlled.unsettled
        return Estimate(control_gradient(system, controlled), system.outputs(free), free, extras=extras)


def observe_and_inject(handle: InjectionHandle, target: np.ndarray, measure: str = "voltage", rounds: int = 50,
                       probe: float = 1e-3, tolerance: float = 1e-9, calibrations: int = 8) -> Controlled:
    """The integral feedback controller of the least control (module docstring), through `handle` alone.

    It injects, relaxes and reads the outputs (and each node its own conductance, for the measure
    in volts). probe: the calibration current (normalised, g0 V); rounds: integral steps per
    calibration; tolerance: on the output error and on psi's change between calibrations,
    relative to the target's and psi's size. Where ideal diodes switch between calibrations, a
    sample's control can alternate between two that both hold its outputs: the controller keeps
    the cheaper (it knows the currents it injects). Returns the controlled state, `iterations`
    the calibrations run, `unsettled` the samples whose control still moved at the last one.
    """
    target = np.atleast_2d(target)
    n = handle.channels
    metric = np.ones(n) if measure == "current" else handle.node_conductance() ** -2.0  # D, diagonal
    psi = np.zeros((handle.batch, n))
    best, best_cost = psi.copy(), np.full(handle.batch, np.inf)
    probes = probe * np.eye(n)[:, None, :]  # (n, 1, n): one probe per node
    scale = 1.0 + np.abs(target).max()
    for calibration in range(1, calibrations + 1):
        handle.relax(psi)  # the state the calibration linearises around
        sensitivity = (handle.relax(psi + probes) - handle.relax(psi - probes)) / (2.0 * probe)  # (n, B, m)
        S = sensitivity.transpose(1, 2, 0)  # (B, m, n): d outputs / d psi
        Q = S.transpose(0, 2, 1) / metric[:, None]  # (B, n, m): the feedback wiring D^-1 S^T
        gain = np.linalg.pinv(S @ Q, rcond=1e-10)  # the loop's inverse gain (B, m, m)
        u = (gain @ (S @ psi[:, :, None]))[..., 0]  # psi's component in the span of Q
        control = _integrate(handle, target, Q, gain, u, rounds, tolerance * scale)
        cost = 0.5 * (control * control * metric).sum(axis=1)
        better = cost < best_cost
        best[better], best_cost[better] = control[better], cost[better]
        moving = np.abs(control - psi).max(axis=1) > tolerance * (1.0 + np.abs(control).max(axis=1))
        psi = control
        if calibration > 1 and not moving.any():
            break
    handle.relax(best)
    return handle.controlled(best, target, measure, calibration, int(moving.sum()))


def _integrate(handle: InjectionHandle, target, Q, gain, u, rounds: int, tolerance: float) -> np.ndarray:
    """u += step (S Q)^-1 (y - outputs), psi = Q u, the physics relaxed each round, until the error vanishes."""
    step, size = 1.0, np.inf
    for _ in range(rounds):
        control = (Q @ u[:, :, None])[..., 0]
        error = target - handle.relax(control)
        previous, size = size, np.abs(error).max()
        if size <= tolerance:
            return control
        if size > previous:
            step *= 0.5
        u = u + step * (gain @ error[:, :, None])[..., 0]
    raise DivergenceError(f"lcp: the integral controller did not bring the outputs to the target in {rounds} "
                          f"rounds (error {size:.3g} V); the target may be out of the circuit's reach (algorithm "
                          "options rounds, probe)")


LEAST_CONTROL_RULES = ("lcp-output", "lcp", "lcp-current")


def least_control_rule(name: str, beta: float, **options):
    """lcp-output (beta = gain / leak), lcp (control measured in volts) or lcp-current (in amperes)."""
    if name == "lcp-output":
        return OutputFeedback(beta, **options)
    if name == "lcp-current":
        return LeastControl("current", **options)
    return LeastControl(**options)
