"""Control knobs and homeostasis: the only face of a system the Aeqprop operator sees.

Aeqprop (Scellier et al., Sec. 2) makes theta a floating variable of the physics, coupled to
control knobs u by |u - theta|^2 / 2 epsilon. The operator sets inputs, knobs and the nudge,
lets the physics relax, and reads theta and the outputs. `KnobHandle` is exactly that and
nothing more: it has no energy or gradient method, so an operator loop written against it is
agnostic by construction.

Controllers keep theta at its previous value during the homeostatic phase:
- `ProportionalController` (agnostic, Sec. 5.1): relax one round, read theta,
  u <- u + eta_u (theta_target - theta) with eta_u = eta_theta / 4 epsilon (critical damping);
- `OracleController` (Sec. 5.3, the fast algebraic shortcut): u = theta + epsilon dE/dtheta
  at the equilibrium with theta fixed. It needs the system itself, so it is not agnostic; on
  hardware whose parameters' law the local measurement does not know (`ParameterForce`) it
  uses the true force.
"""

from __future__ import annotations

import numpy as np

from aeqprop_circuits.errors import DivergenceError
from aeqprop_circuits.systems.base import ParameterDynamics, ParameterForce, Phase, PhysicalSystem


class KnobHandle:
    """An experimenter's bench: set inputs / knobs / nudge, relax, read. Nothing else."""

    def __init__(self, system: PhysicalSystem, epsilon):
        self.__system = system  # name-mangled: the operator has no business with it
        self.__epsilon = epsilon
        self.__phase: Phase | None = None
        self.__knobs = system.parameters  # knobs start where theta is
        self.__theta = system.parameters
        self.__state = None

    @property
    def epsilon(self):
        """Coupling constant of the knobs (a property of the hardware the operator knows)."""
        return self.__epsilon

    @property
    def parameter_rate(self):
        """eta_theta: how far theta moves per relaxation round relative to its force.

        The parameters here relax exactly within a round, which is a gradient step of size
        epsilon on |u - theta|^2 / 2 epsilon + E; systems with slower parameter dynamics say so.
        """
        return self.__state.parameter_rate if isinstance(self.__state, ParameterDynamics) else self.__epsilon

    def set_inputs(self, inputs: np.ndarray) -> None:
        self.__phase = Phase(np.atleast_2d(inputs)) if self.__phase is None else \
            Phase(np.atleast_2d(inputs), self.__phase.beta, self.__phase.target)

    def set_nudge(self, beta: float, target: np.ndarray | None = None) -> None:
        target = self.__phase.target if target is None else target
        self.__phase = Phase(self.__phase.inputs, float(beta), target)

    @property
    def knobs(self) -> np.ndarray:
        return self.__knobs.copy()

    def set_knobs(self, knobs: np.ndarray) -> None:
        self.__knobs = np.asarray(knobs, dtype=np.float64).copy()

    def relax(self, rounds: int = 1) -> None:
        """Let the physics (state and floating parameters) evolve with the knobs held."""
        self.__state, self.__theta = self.__system.settle_with_knobs(
            self.__phase, self.__knobs, self.__epsilon, start=self.__state, theta=self.__theta, steps=rounds)

    def read_parameters(self) -> np.ndarray:
        return self.__theta.copy()

    def read_outputs(self) -> np.ndarray:
        return self.__system.outputs(self.__state)


class ProportionalController:
    """Homeostasis by feedback on the observed theta only (agnostic).

    After each relaxation round, u <- u + k (theta_target - theta), k = eta_theta / 4 epsilon
    (Sec. 5.1, critical damping). The step adapts (Sec. 5.1 adapts its step sizes too): a
    parameter pinned at a bound of its range does not move when its knob does, so its error
    stays put and the fixed gain would free it only after (u - theta) / (k error) rounds; the
    gain of a knob whose parameter did not move doubles, and falls back to k once it moves.

    A hold that ends farther than `fail_rtol` (relative to the largest |theta|; None: unchecked)
    from its target is an error, not a wrong gradient. Linearised, a round maps the deviation
    by [[a, 1], [-k a, 1 - k]], a = epsilon |curvature of F in theta| (F is concave in
    conductances), whose determinant is a for every gain: when a > 1 no proportional
    controller holds theta (docs/how-to/proportional-controller.md).
    """

    name = "proportional"

    def __init__(self, rounds: int = 50, adaptive: bool = True, fail_rtol: float | None = 1e-2):
        self.rounds, self.adaptive, self.fail_rtol = rounds, adaptive, fail_rtol

    def hold(self, handle: KnobHandle, theta_target: np.ndarray, phase: Phase) -> None:
        base_gain = gain = handle.parameter_rate / (4.0 * handle.epsilon)
        scale = np.abs(theta_target).max() or 1.0
        previous = None
        for _ in range(self.rounds):
            handle.relax(1)
            theta = handle.read_parameters()
            error = theta_target - theta
            if self.adaptive and previous is not None:
                pinned = (theta == previous) & (error != 0)
                gain = np.where(pinned, 2.0 * gain, base_gain)
            handle.set_knobs(handle.knobs + gain * error)
            previous = theta
        handle.relax(1)
        if self.fail_rtol is None:
            return
        deviation = np.abs(theta_target - handle.read_parameters()).max() / scale
        if not deviation <= self.fail_rtol:
            raise DivergenceError(
                f"homeostasis failed at beta={phase.beta:g}: after {self.rounds} rounds the parameters are "
                f"{deviation:.2g} (relative) away from where the controller holds them. At epsilon="
                f"{np.max(handle.epsilon):g} the knob-coupled energy is probably not convex in theta, and then no "
                "proportional controller can hold it: use a smaller --epsilon (below 1 / |curvature of the "
                "equilibrium energy in theta|) or --controller oracle")


class OracleController:
    """u = theta + epsilon dE/dtheta: exact homeostasis in one step, using the energy gradient."""

    name = "oracle"

    def __init__(self, system: PhysicalSystem):
        self._system = system

    def hold(self, handle: KnobHandle, theta_target: np.ndarray, phase: Phase) -> None:
        system = self._system
        saved = system.parameters
        system.parameters = theta_target
        try:
            state = system.settle(phase)
            force = system.parameter_force(state) if isinstance(system, ParameterForce) \
                else system.energy_gradient(state)
            knobs = theta_target + handle.epsilon * force
        finally:
            system.parameters = saved
        handle.set_knobs(knobs)
        handle.relax(1)
