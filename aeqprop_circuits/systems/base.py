"""What an experimenter can touch: the PhysicalSystem interface every learning loop is written against.

A `PhysicalSystem` is batched: B samples settle at once and share the parameters theta.
Parameters are one flat float vector in the system's normalised units (for circuits:
conductances in units of g0), so that learning rules, clipping and optimisers are plain
vector arithmetic. Each phase starts from an explicit `Phase` (what the operator sets) and
returns an explicit state; nothing is mutated and rewound between phases.

The Aeqprop operator does not see this interface at all: it receives a `KnobHandle`
(systems/knobs.py), which has no energy or gradient methods.

Optional capabilities are declared below as runtime-checkable protocols: a system that has
them says so by implementing them, and the learning rules and the training loop ask with
`isinstance(system, Capability)`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True, eq=False)
class Phase:
    """The knobs of one settle.

    inputs: (B, n_inputs) data presented to the input sources / input layer.
    beta:   nudge strength (may be negative: the energy gets + beta * C(outputs, target)).
    target: (B, n_outputs) what the nudge pulls the outputs towards.
    clamp:  (B, n_outputs) or None; when given, the outputs are held at these values (CL, CpL).
    """

    inputs: np.ndarray
    beta: float = 0.0
    target: np.ndarray | None = None
    clamp: np.ndarray | None = None

    def nudged(self, beta: float) -> Phase:
        return Phase(self.inputs, float(beta), self.target, self.clamp)  # not dataclasses.replace: hot path

    def clamped(self, values: np.ndarray | None) -> Phase:
        return replace(self, clamp=values)

    @property
    def batch_size(self) -> int:
        return len(self.inputs)


State = Any  # whatever the system needs to describe an equilibrium; read through the system's methods


class PhysicalSystem(ABC):
    """Physics the learning loops drive. Subclasses: CircuitSystem, EnergySystem, Hopfield networks."""

    n_inputs: int
    n_outputs: int

    # --- parameters theta (flat, normalised units) ---------------------------------------
    @property
    @abstractmethod
    def parameters(self) -> np.ndarray:
        """Current theta, a copy (P,)."""

    @parameters.setter
    @abstractmethod
    def parameters(self, theta: np.ndarray) -> None: ...

    def parameter_bounds(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(low, high) arrays of shape (P,) when theta is physically bounded, else None."""
        return None

    # --- the experiment -------------------------------------------------------------------
    @abstractmethod
    def settle(self, phase: Phase, start: State | None = None, callback=None) -> State:
        """Equilibrium of E(theta, x, s) + beta C(s, y) over s (outputs clamped if asked).

        `start` warm-starts from an earlier state of the same batch. `callback(energy)` is
        called with the (B,) energy after each relaxation iteration, when the system iterates.
        Raises DivergenceError when the phase has no minimum (e.g. a too negative beta).
        """

    @abstractmethod
    def outputs(self, state: State) -> np.ndarray:
        """Output readings (B, n_outputs)."""

    def cost(self, state: State, target: np.ndarray) -> np.ndarray:
        """C(outputs, target) per sample (B,)."""
        return self.output_cost(self.outputs(state), target)

    def output_cost(self, outputs: np.ndarray, target: np.ndarray) -> np.ndarray:
        """C of output readings (B,): 1/2 |o - y|^2, what a nudge of strength beta adds beta times of."""
        difference = outputs - target
        return 0.5 * (difference * difference).sum(axis=1)

    # --- local measurements (non-agnostic algorithms and diagnostics only) ----------------
    @abstractmethod
    def energy_gradient(self, state: State) -> np.ndarray:
        """Batch mean of the partial derivative dE/dtheta at the state (P,): a local measurement."""

    @abstractmethod
    def energy(self, state: State) -> np.ndarray:
        """Total energy E + beta C of the phase at the state, per sample (B,)."""

    # --- floating parameters (Aeqprop) ----------------------------------------------------
    @abstractmethod
    def relax_parameters(self, state: State, knobs: np.ndarray, epsilon: float) -> np.ndarray:
        """theta minimising E(theta, s) + |knobs - theta|^2 / 2 epsilon for the state s held fixed.

        The energy is the batch mean (all samples couple to the same theta, and epsilon keeps
        its meaning for any batch size); `epsilon` is a scalar or a (P,) array. Bounded
        parameters are clipped to their range. This is the parameters' own physics, used by
        the knob-coupled relaxation; the operator never calls it.
        """

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """Free-phase outputs for a batch of inputs."""
        return self.outputs(self.settle(Phase(np.atleast_2d(inputs))))

    def settle_with_knobs(self, phase: Phase, knobs: np.ndarray, epsilon, start: State | None = None,
                          theta: np.ndarray | None = None, steps: int = 1) -> tuple[State, np.ndarray]:
        """`steps` rounds of the joint relaxation of (s, theta) with the knobs clamped.

        One round: theta relaxes for s held fixed, then s settles for the new theta (fast
        electrical / neural dynamics, slower parameter dynamics). Each round is an exact
        block-coordinate step on E + beta C + |knobs - theta|^2 / 2 epsilon, so the joint
        energy never increases. `start` is reused as the equilibrium when it was settled for
        this very phase and theta (states exposing `.phase` and `.theta`), so a round costs one
        settle. Returns (state, theta); self.parameters is left unchanged.
        Systems override this when they have a faster joint relaxation.
        """
        saved = self.parameters
        theta = saved if theta is None else theta
        settled = (isinstance(start, SettledState) and start.phase is phase
                   and start.theta is not None and np.array_equal(start.theta, theta))
        try:
            self.parameters = theta
            state = start if settled else self.settle(phase, start=start)
            for _ in range(steps):
                theta = self.relax_parameters(state, knobs, epsilon)
                self.parameters = theta
                state = self.settle(phase, start=state)
        finally:
            self.parameters = saved
        return state, theta


# --- optional capabilities ------------------------------------------------------------------------
@runtime_checkable
class SettledState(Protocol):
    """A state that knows the phase and parameters it was settled for, so a relaxation can start from it as is."""

    phase: Phase
    theta: np.ndarray | None  # None once the system's parameters have changed since


@runtime_checkable
class ParameterDynamics(Protocol):
    """A state of physics whose parameters relax at a finite rate (the proportional controller's eta_theta)."""

    parameter_rate: float


@runtime_checkable
class ConductanceUnits(Protocol):
    """A circuit system in normalised units: theta = g / g0, so g0 (siemens) turns its numbers back into units.

    Its outputs and targets are potentials in volts, its costs and energies (co-content / g0)
    in V², what a settle's callback receives included. A system without it is dimensionless
    (Hopfield networks). A run records g0 in config.json (null without it), which is how the
    plots of a run directory choose their units.
    """

    g0: float


@runtime_checkable
class ExactLossGradient(Protocol):
    """dL/dtheta of the batch-mean cost at a free equilibrium, by implicit differentiation (the reference)."""

    def loss_gradient(self, state: State, target: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class ParameterForce(Protocol):
    """Parameters whose own physics differs from what the local measurement assumes (hardware, systems/hardware.py).

    `energy_gradient` is what an operator measures and turns into dE/dtheta with its model of
    the elements (1/2 dV^2 across a resistor); `parameter_force` is the true partial dE/dtheta of
    the hardware, which moves floating parameters (`relax_parameters`) and which the oracle
    controller, knowing the physics, uses to hold them.
    """

    def parameter_force(self, state: State) -> np.ndarray:
        """Batch mean of the true partial dE/dtheta at the state (P,)."""


@runtime_checkable
class ParameterGroups(Protocol):
    """Parameters in named groups ("w1", "b1", ...), so rates can be given per group."""

    def per_parameter(self, values: dict) -> np.ndarray:
        """A (P,) array holding each group's value on that group's parameters."""


@runtime_checkable
class InPlaceDescent(Protocol):
    """The EP family's update without a (P,) gradient: several nudges settled together, theta changed in place.

    `in_place` is False where an instance cannot (e.g. a precision or layer kind it has no kernel for).
    """

    in_place: bool
    dtype: np.dtype  # the precision of theta and states (inputs are converted to it once per run)

    def settle_nudges(self, base: Phase, betas, start: State) -> list:
        """The phases of `base` nudged at each beta, warm-started from `start` (one batch)."""

    def in_place_rates(self, learning_rate) -> Any:
        """What `descend` takes for a scalar, (P,) or per-group rate, or None where it has no such form."""

    def descend(self, terms, rates) -> None:
        """theta <- project(theta - rates * sum_k c_k dE/dtheta(s_k)) for terms [(c_k, s_k)], in place."""


@runtime_checkable
class FusedContrastStep(Protocol):
    """A whole step of a nudge contrast (free phase, nudged phases, update) in one kernel."""

    def contrast_step(self, x: np.ndarray, target: np.ndarray, terms, rates) -> State | None:
        """terms ((c_k / beta, beta_k), ...); returns the free state, or None where there is no fused form."""


@runtime_checkable
class InPlaceMomentum(Protocol):
    """An in-place descent that keeps its own SGD velocity (PyTorch's form: v <- mu v + g; theta -= lr v)."""

    momentum: float


@runtime_checkable
class EpochEnd(Protocol):
    """Physics that adapts once per epoch (e.g. the relaxation threshold of Aeqprop App. C)."""

    def end_epoch(self) -> Any: ...


@runtime_checkable
class TrainingState(Protocol):
    """State beyond theta that training changes (a velocity, an adaptive threshold): checkpointed with theta."""

    def training_state(self) -> dict[str, np.ndarray]: ...

    def restore_training_state(self, saved: dict[str, np.ndarray]) -> None: ...


class VelocityCheckpoint(TrainingState):
    """The training state of an in-place descent with momentum: its velocity (None until momentum makes one)."""

    _velocity: np.ndarray | None
    dtype: np.dtype

    def training_state(self) -> dict[str, np.ndarray]:
        return {} if self._velocity is None else {"velocity": self._velocity.copy()}

    def restore_training_state(self, saved: dict[str, np.ndarray]) -> None:
        velocity = saved.get("velocity")
        self._velocity = None if velocity is None else np.asarray(velocity, dtype=self.dtype).copy()
