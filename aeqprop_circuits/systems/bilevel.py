"""Bilevel systems: physics whose equilibrium is itself learnt (contrastive meta-learning, Zucchet et al.).

The lower level learns each task: its parameters phi (a circuit's log-conductances, say) minimise

    L_in(phi, theta) = f_task(phi) + sum_i lambda_i / 2 (phi_i - omega_i)^2

with f_task the task's support loss and the proximal "complex synapse" term pulling phi to a
prior omega. The upper level is the query loss L_out(phi) = C(readout, y) = 1/2 |readout - y|^2
at the task's query points (or the lower level's own, `QueryLoss`). The meta-parameters theta
are omega, and with `learn_strength` also the per-parameter strengths lambda.

`BilevelSystem` is that problem as a PhysicalSystem, one level up: a batch is a batch of tasks
(`Phase.inputs` the task rows, `Phase.target` the query targets), and settling a phase of
nudge beta runs the lower-level learning on L_in + beta L_out for every task, warm-started from
`start` (else from the prior). dE/dtheta at a state is dL_in/dtheta (L_out does not depend on
theta); for the prior it is -lambda (phi - omega). So the EP rules are the CML estimators: p-ep
gives lambda (phi_0 - phi_beta) / beta (paper Eq. 4), c-ep the symmetric form and
multi-point-ep the forward p-point form (App. D), and the trainer, run directories and
gradcheck carry over unchanged. Implicit differentiation (`loss_gradient`, the exact
meta-gradient with the dense Hessian; `InnerCurvature` for the iterative baselines) is the
reference:

    dL_out/dtheta = -mean over tasks of q^T d2 L_in / dphi dtheta,   q = H^-1 dL_out/dphi,

H the Hessian of L_in in phi at the free solution, taken by central differences of the
support gradient (exact for quadratic f) plus the prior's lambda.

Guards: lower-level parameters at a bound of their range are frozen (the problem is solved on
the others); an estimate is refused when the set of parameters at a bound differs between the
free and a nudged solution, or when L_in curves down between them (not strongly convex there),
and the exact gradient is refused where H is not positive definite.

A lower level is a `TaskModel`: `QuadraticTasks` (the CML paper's App. E), `CircuitTasks`
(few-shot learning of a circuit's conductances, each task in its own copy of the circuit) and
`EnergyTasks` (any energy-based system, its state and parameters together as phi: Aeqprop as a
bilevel problem, the knobs its prior and 1/epsilon its strength).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from scipy.optimize import minimize

from aeqprop_circuits.circuit.circuit import Circuit
from aeqprop_circuits.circuit.replicas import replicate
from aeqprop_circuits.data.tasks import TaskLayout
from aeqprop_circuits.errors import AeqpropError, DivergenceError
from aeqprop_circuits.systems.base import ExactLossGradient, Phase, PhysicalSystem

INNER_METHODS = ("lbfgs", "gd")


class BilevelError(AeqpropError):
    """A lower-level problem outside the assumptions of the estimators (not convex, active set changing)."""


# --- the lower level --------------------------------------------------------------------------------
@runtime_checkable
class TaskModel(Protocol):
    """What a bilevel system learns on each task, and from what."""

    size: int  # P: lower-level parameters phi per task
    n_inputs: int  # values in a task row
    n_outputs: int  # readouts per task (predictions at its query points)

    def bounds(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(low, high) of phi, (P,) each, or None."""

    def support(self, phi: np.ndarray, tasks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """f_task(phi) (T,) and its gradient in phi (T, P), for phi (T, P) and task rows (T, n_inputs)."""

    def query(self, phi: np.ndarray, tasks: np.ndarray, target: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray | None]:
        """Readouts (T, n_outputs) and, given targets, the gradient in phi of 1/2 |readout - target|^2 (T, P)."""


@runtime_checkable
class QueryLoss(Protocol):
    """A lower level with its own query loss (e.g. cross-entropy) in place of 1/2 |readout - target|^2;
    its `query` then returns that loss's gradient in phi."""

    def query_loss(self, readout: np.ndarray, target: np.ndarray) -> np.ndarray:
        """L_out per task (T,) for readouts and targets (T, n_outputs)."""


@runtime_checkable
class InnerCurvature(Protocol):
    """What the implicit-differentiation estimators need: derivatives of the lower level at a solution."""

    @property
    def strength(self) -> np.ndarray:
        """lambda (P,): the prior's curvature."""

    def outer_gradient(self, state, target: np.ndarray) -> np.ndarray:
        """dL_out/dphi (T, P) at the state; zero on parameters at a bound."""

    def inner_hessian_vector(self, state, v: np.ndarray) -> np.ndarray:
        """d2 L_in/dphi2 v per task (T, P), on the parameters free at the state (identity on the others)."""

    def meta_gradient(self, state, adjoint: np.ndarray) -> np.ndarray:
        """-mean over tasks of adjoint^T d2 L_in / dphi dtheta (P_theta,): the gradient for q = adjoint."""

    def prior_part(self, gradient: np.ndarray) -> np.ndarray:
        """A meta-gradient with its strength (lambda) entries set to zero: what moves the prior only."""


# --- the lower level's learning ---------------------------------------------------------------------
@dataclass(frozen=True)
class InnerSolve:
    """How the lower level learns a phase: its optimiser and accuracy.

    method "lbfgs": L-BFGS-B to `tolerance` (largest projected gradient entry), at most `steps`
    iterations (exact minimisation); "gd": exactly `steps` steps of projected gradient descent
    of size `rate` (the paper's proxy for the inner accuracy delta). A nudged phase warm-started
    from the free solution takes `nudged_steps` (default: `steps`).
    """

    method: str = "lbfgs"
    steps: int = 1000
    nudged_steps: int | None = None
    rate: float = 0.1
    tolerance: float = 1e-10

    def __post_init__(self):
        if self.method not in INNER_METHODS:
            raise AeqpropError(f"inner solver '{self.method}': expected one of {', '.join(INNER_METHODS)}")
        if self.steps < 1 or (self.nudged_steps is not None and self.nudged_steps < 1):
            raise AeqpropError(f"inner steps: expected at least 1, got {self.steps} and {self.nudged_steps}")
        if not self.rate > 0 or not self.tolerance > 0:
            raise AeqpropError(f"inner rate and tolerance must be positive, got {self.rate} and {self.tolerance}")

    def minimise(self, objective, phi: np.ndarray, bounds, steps: int, callback=None) -> np.ndarray:
        """phi (T, P) minimising sum over tasks of objective(phi) -> (values (T,), gradients (T, P))."""
        low, high = bounds if bounds is not None else (-np.inf, np.inf)
        if self.method == "gd":
            for _ in range(steps):
                values, gradient = objective(phi)
                phi = np.clip(phi - self.rate * gradient, low, high)
                if callback is not None:
                    callback(values)
            return phi
        shape = phi.shape

        def total(flat):
            values, gradient = objective(flat.reshape(shape))
            return float(values.sum()), gradient.ravel()

        box = None if bounds is None else list(zip(np.broadcast_to(low, shape).ravel(),
                                                    np.broadcast_to(high, shape).ravel()))
        report = None if callback is None else (lambda result: callback(objective(result.x.reshape(shape))[0]))
        result = minimize(total, phi.ravel(), jac=True, method="L-BFGS-B", bounds=box, callback=report,
                          options={"maxiter": steps, "gtol": self.tolerance, "ftol": 0.0, "maxcor": 20})
        return result.x.reshape(shape)


@dataclass(frozen=True, eq=False)
class BilevelState:
    """The lower level's solution of one phase for a batch of tasks.

    phi (T, P); theta: the meta-parameters it was learnt under; inner_gradient: dL_in/dphi at
    phi (T, P); readout (T, n_outputs); energy: L_in + beta L_out per task (T,); active: -1 / +1
    where phi is at its lower / upper bound, else 0 (T, P); residual: the largest projected
    gradient entry of the phase's objective.
    """

    phi: np.ndarray
    phase: Phase
    theta: np.ndarray
    inner_gradient: np.ndarray
    readout: np.ndarray
    energy: np.ndarray
    active: np.ndarray
    residual: float


def _squared_error(readout, target) -> np.ndarray:
    difference = readout - target
    return 0.5 * (difference * difference).sum(axis=1)


class BilevelSystem(PhysicalSystem, ExactLossGradient):
    """A bilevel problem as a PhysicalSystem (see the module docstring).

    model: the lower level (`TaskModel`); prior: omega (P,) or a scalar (default 0);
    strength: lambda (P,) or a scalar, >= 0 (0 leaves a parameter to the data alone: its
    curvature must then come from f); learn_strength: theta = (omega, lambda), with lambda
    kept above `strength_floor`; inner: the lower level's learning (`InnerSolve`); check:
    the guards between free and nudged solutions (module docstring).
    """

    def __init__(self, model: TaskModel, prior=0.0, strength=1.0, *, learn_strength: bool = False,
                 inner: InnerSolve | None = None, strength_floor: float = 1e-6, check: bool = True):
        P = int(model.size)
        self.model = model
        self._omega = np.array(np.broadcast_to(np.asarray(prior, dtype=np.float64), (P,)))
        self._lambda = np.array(np.broadcast_to(np.asarray(strength, dtype=np.float64), (P,)))
        if not np.all(np.isfinite(self._omega)) or not np.all(np.isfinite(self._lambda)) or (self._lambda < 0).any():
            raise AeqpropError("bilevel system: the prior must be finite and the strength finite and >= 0")
        self.learn_strength = bool(learn_strength)
        self.strength_floor = float(strength_floor)
        if self.learn_strength:
            self._lambda = np.maximum(self._lambda, self.strength_floor)
        self.inner = inner or InnerSolve()
        self.check = check
        self._query_loss = model.query_loss if isinstance(model, QueryLoss) else _squared_error
        self.n_inputs, self.n_outputs = int(model.n_inputs), int(model.n_outputs)
        bounds = model.bounds()
        self._bounds = None if bounds is None else tuple(np.asarray(b, dtype=np.float64) for b in bounds)

    # --- meta-parameters ---------------------------------------------------------------------
    @property
    def prior(self) -> np.ndarray:
        return self._omega.copy()

    @property
    def strength(self) -> np.ndarray:
        return self._lambda.copy()

    @property
    def parameters(self) -> np.ndarray:
        return np.concatenate([self._omega, self._lambda]) if self.learn_strength else self._omega.copy()

    @parameters.setter
    def parameters(self, theta: np.ndarray) -> None:
        theta = np.array(theta, dtype=np.float64)
        P = self.model.size
        if theta.shape != ((2 * P,) if self.learn_strength else (P,)):
            raise AeqpropError(f"parameters: expected shape {self.parameters.shape}, got {theta.shape}")
        if not np.all(np.isfinite(theta)):
            raise DivergenceError("non-finite meta-parameters: the meta-learning step diverged")
        self._omega = theta[:P]
        if self.learn_strength:
            self._lambda = theta[P:]

    def parameter_bounds(self):
        if not self.learn_strength:
            return None
        P = self.model.size
        return (np.concatenate([np.full(P, -np.inf), np.full(P, self.strength_floor)]), np.full(2 * P, np.inf))

    def per_parameter(self, values: dict) -> np.ndarray:
        """A (P_theta,) array of per-group values: groups "prior" (omega) and "strength" (lambda, if learnt)."""
        groups = ("prior", "strength") if self.learn_strength else ("prior",)
        unknown = set(values) - set(groups)
        if unknown or set(groups) - set(values):
            raise KeyError(f"expected a value for each of the groups {', '.join(groups)}, got {sorted(values)}")
        return np.concatenate([np.full(self.model.size, float(values[g])) for g in groups])

    # --- the complex synapse: each formula once ----------------------------------------------
    def _split(self, theta: np.ndarray | None = None):
        """(omega, lambda) of theta (default: the current meta-parameters)."""
        if theta is None:
            return self._omega, self._lambda
        P = self.model.size
        return theta[:P], (theta[P:] if self.learn_strength else self._lambda)

    def _meta(self, prior_part: np.ndarray, strength_part: np.ndarray) -> np.ndarray:
        """Per-task derivatives in omega and lambda (T, P) each as (T, P_theta)."""
        return np.concatenate([prior_part, strength_part], axis=-1) if self.learn_strength else prior_part

    def prior_energy(self, phi, theta=None) -> np.ndarray:
        omega, lam = self._split(theta)
        return 0.5 * (lam * (phi - omega) ** 2).sum(axis=-1)

    def prior_force(self, phi, theta=None) -> np.ndarray:
        """d/dphi of the prior term (T, P)."""
        omega, lam = self._split(theta)
        return lam * (phi - omega)

    def prior_parameter_gradient(self, phi, theta=None) -> np.ndarray:
        """d/dtheta of the prior term per task (T, P_theta): -lambda (phi - omega), (phi - omega)^2 / 2."""
        omega, lam = self._split(theta)
        offset = phi - omega
        return self._meta(-lam * offset, 0.5 * offset * offset)

    def prior_mixed(self, phi, adjoint, theta=None) -> np.ndarray:
        """adjoint^T d2/dphi dtheta of the prior term per task (T, P_theta): -lambda q, (phi - omega) q."""
        omega, lam = self._split(theta)
        return self._meta(-lam * adjoint, (phi - omega) * adjoint)

    # --- the experiment ----------------------------------------------------------------------
    def _objective(self, phi, tasks, phase: Phase):
        """(L_in + beta L_out per task (T,), its gradient in phi (T, P)) at phi."""
        value, gradient = self.model.support(phi, tasks)
        value = value + self.prior_energy(phi)
        gradient = gradient + self.prior_force(phi)
        if phase.beta != 0.0:
            target = np.atleast_2d(phase.target)
            readout, pull = self.model.query(phi, tasks, target)
            value = value + phase.beta * self._query_loss(readout, target)
            gradient = gradient + phase.beta * pull
        return value, gradient

    def _active(self, phi) -> np.ndarray:
        """-1 where phi is at its lower bound, +1 at its upper bound, 0 where free (T, P)."""
        if self._bounds is None:
            return np.zeros(phi.shape, dtype=np.int8)
        low, high = self._bounds
        at_low = phi <= low + 1e-9 * (1 + np.abs(low))
        at_high = phi >= high - 1e-9 * (1 + np.abs(high))
        return at_high.astype(np.int8) - at_low.astype(np.int8)

    def settle(self, phase: Phase, start: BilevelState | None = None, callback=None) -> BilevelState:
        """The lower level learnt on L_in + beta L_out for every task of the batch (see `InnerSolve`)."""
        if phase.clamp is not None:
            raise AeqpropError("a bilevel system is nudged, never clamped: the CL and CpL rules do not apply")
        tasks = np.atleast_2d(np.asarray(phase.inputs, dtype=np.float64))
        if tasks.shape[1] != self.n_inputs:
            raise AeqpropError(f"task rows of {tasks.shape[1]} values; this bilevel system takes {self.n_inputs}")
        if phase.beta != 0.0 and phase.target is None:
            raise AeqpropError("a nudged phase needs the query targets")
        warm = start is not None and start.phi.shape[0] == len(tasks)
        if warm:
            phi, steps = start.phi.copy(), self.inner.nudged_steps or self.inner.steps
        else:
            omega = self._omega if self._bounds is None else np.clip(self._omega, *self._bounds)
            phi, steps = np.tile(omega, (len(tasks), 1)), self.inner.steps
        with np.errstate(over="ignore"):
            phi = self.inner.minimise(lambda p: self._objective(p, tasks, phase), phi, self._bounds, steps, callback)
        state = self._state(phi, tasks, phase)
        if warm and self.check and phase.beta != start.phase.beta:
            self._check_branch(start, state)
        return state

    def _state(self, phi, tasks, phase: Phase) -> BilevelState:
        if not np.all(np.isfinite(phi)):
            raise DivergenceError(f"the lower level diverged in the phase at beta={phase.beta:g} (non-finite "
                                  "parameters): lower the inner rate")
        value, gradient = self.model.support(phi, tasks)
        inner = gradient + self.prior_force(phi)
        energy = value + self.prior_energy(phi)
        target = np.atleast_2d(phase.target) if phase.beta != 0.0 else None
        readout, pull = self.model.query(phi, tasks, target)
        full = inner
        if phase.beta != 0.0:
            energy = energy + phase.beta * self._query_loss(readout, target)
            full = inner + phase.beta * pull
        active = self._active(phi)
        if self._bounds is not None:
            full = phi - np.clip(phi - full, *self._bounds)  # projected gradient
        return BilevelState(phi, phase, self.parameters, inner, readout, energy, active,
                            float(np.abs(full).max(initial=0.0)))

    def _check_branch(self, free: BilevelState, nudged: BilevelState) -> None:
        """Refuse a contrast whose two solutions are not on one strongly convex branch (module docstring)."""
        beta = nudged.phase.beta
        changed = free.active != nudged.active
        if changed.any():
            tasks = np.flatnonzero(changed.any(axis=1))
            raise BilevelError(
                f"the lower level's active set changed between the free phase and the phase at beta={beta:g}: "
                f"{int(changed.sum())} parameter(s) of task(s) {', '.join(map(str, tasks[:5]))} reached or left a "
                "bound of their range, so the contrast is not a derivative; use a smaller beta, or a stronger "
                "prior that keeps the parameters inside their range")
        step = np.where(free.active != 0, 0.0, nudged.phi - free.phi)
        curvature = (step * (nudged.inner_gradient - free.inner_gradient)).sum(axis=1)
        moved = np.abs(step).max(axis=1) > 1e-12 * (1 + np.abs(free.phi).max(axis=1))
        bent = moved & (curvature <= 0)
        if bent.any():
            task = int(np.flatnonzero(bent)[0])
            raise BilevelError(
                f"the lower level is not strongly convex between its free and nudged (beta={beta:g}) solutions of "
                f"task {task}: L_in curves down along the step ({curvature[task]:.3g}); use a larger strength "
                "(lambda) or a smaller beta")

    def outputs(self, state: BilevelState) -> np.ndarray:
        return state.readout

    def energy(self, state: BilevelState) -> np.ndarray:
        return state.energy

    def energy_gradient(self, state: BilevelState) -> np.ndarray:
        """Mean over tasks of dL_in/dtheta at the state (the query loss does not depend on theta)."""
        return self.prior_parameter_gradient(state.phi).mean(axis=0)

    def relax_parameters(self, state: BilevelState, knobs: np.ndarray, epsilon) -> np.ndarray:
        """theta minimising mean over tasks of the prior term + |knobs - theta|^2 / 2 epsilon, phi held.

        omega has a closed form for lambda given; lambda (when learnt) is linear in the rest:
        alternate the two exact steps until they agree.
        """
        epsilon = np.broadcast_to(np.asarray(epsilon, dtype=np.float64), knobs.shape)
        P = self.model.size
        phi = state.phi
        mean_phi = phi.mean(axis=0)
        lam = knobs[P:] if self.learn_strength else self._lambda
        for _ in range(100 if self.learn_strength else 1):
            omega = (knobs[:P] / epsilon[:P] + lam * mean_phi) / (1.0 / epsilon[:P] + lam)
            if not self.learn_strength:
                return omega
            previous, lam = lam, np.maximum(knobs[P:] - epsilon[P:] * 0.5 * ((phi - omega) ** 2).mean(axis=0),
                                            self.strength_floor)
            if np.allclose(lam, previous, rtol=1e-13, atol=0.0):
                break
        return np.concatenate([omega, lam])

    # --- implicit differentiation --------------------------------------------------------------
    def outer_gradient(self, state: BilevelState, target: np.ndarray) -> np.ndarray:
        tasks = np.atleast_2d(state.phase.inputs)
        _, pull = self.model.query(state.phi, tasks, np.atleast_2d(target))
        return np.where(state.active != 0, 0.0, pull)

    def _support_gradient(self, phi, tasks) -> np.ndarray:
        return self.model.support(phi, tasks)[1]

    def inner_hessian_vector(self, state: BilevelState, v: np.ndarray) -> np.ndarray:
        """d2 L_in/dphi2 v: central differences of the support gradient along v, plus lambda v (free parameters)."""
        tasks = np.atleast_2d(state.phase.inputs)
        frozen = state.active != 0
        v = np.where(frozen, 0.0, v)
        size = np.abs(v).max(axis=1, keepdims=True)
        direction = v / np.where(size > 0, size, 1.0)
        h = 1e-5 * (1.0 + np.abs(state.phi).max(axis=1, keepdims=True))
        both = self._support_gradient(np.concatenate([state.phi + h * direction, state.phi - h * direction]),
                                      np.concatenate([tasks, tasks]))
        T = len(tasks)
        product = (both[:T] - both[T:]) / (2 * h) * size + self._lambda * v
        return np.where(frozen, v, product)

    def inner_hessian(self, state: BilevelState, chunk: int = 2048) -> np.ndarray:
        """d2 L_in/dphi2 per task (T, P, P) by central differences, the rows and columns of parameters at a
        bound replaced by the identity's (they are frozen)."""
        tasks = np.atleast_2d(state.phase.inputs)
        T, P = state.phi.shape
        h = 1e-5 * (1.0 + np.abs(state.phi).max(axis=1))  # (T,)
        shifts = h[:, None, None] * np.eye(P)[None]  # (T, P, P): task t, direction j
        points = np.concatenate([(state.phi[:, None, :] + shifts).reshape(-1, P),
                                 (state.phi[:, None, :] - shifts).reshape(-1, P)])
        rows = np.concatenate([np.repeat(tasks, P, axis=0)] * 2)
        gradients = np.concatenate([self._support_gradient(points[i:i + chunk], rows[i:i + chunk])
                                    for i in range(0, len(points), chunk)])
        plus, minus = gradients[:T * P].reshape(T, P, P), gradients[T * P:].reshape(T, P, P)
        hessian = (plus - minus) / (2 * h[:, None, None])
        hessian = 0.5 * (hessian + hessian.transpose(0, 2, 1)) + np.diag(self._lambda)[None]
        free = state.active == 0
        keep = free[:, :, None] & free[:, None, :]
        return np.where(keep, hessian, np.eye(P)[None])

    def meta_gradient(self, state: BilevelState, adjoint: np.ndarray) -> np.ndarray:
        return -self.prior_mixed(state.phi, np.where(state.active != 0, 0.0, adjoint)).mean(axis=0)

    def prior_part(self, gradient: np.ndarray) -> np.ndarray:
        gradient = np.array(gradient, dtype=np.float64)
        gradient[self.model.size:] = 0.0
        return gradient

    def loss_gradient(self, state: BilevelState, target: np.ndarray) -> np.ndarray:
        """The exact meta-gradient: dense Hessian, one solve per task (the reference for every estimator)."""
        hessian = self.inner_hessian(state)
        smallest = np.linalg.eigvalsh(hessian)[:, 0]
        if (smallest <= 0).any():
            task = int(np.argmin(smallest))
            raise BilevelError(f"the lower level is not strongly convex at its solution of task {task} (smallest "
                               f"Hessian eigenvalue {smallest[task]:.3g}): no implicit gradient; use a larger "
                               "strength (lambda)")
        adjoint = np.linalg.solve(hessian, self.outer_gradient(state, target)[:, :, None])[:, :, 0]
        return self.meta_gradient(state, adjoint)

    def query_error(self, inputs: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Mean squared query error per task (T,) after the lower level learnt each task (free phase)."""
        readout = self.outputs(self.settle(Phase(np.atleast_2d(inputs))))
        return ((readout - np.atleast_2d(target)) ** 2).mean(axis=1)


# --- lower levels ----------------------------------------------------------------------------------
class QuadraticTasks:
    """The CML paper's App. E: f = 1/2 (phi - phi_t)^T H (phi - phi_t), L_out = 1/2 (phi - phi_v)^T H (phi - phi_v).

    H = diag(curvature). A task row is phi_t (P,); the readout is H^1/2 phi, so a task's query
    target is H^1/2 phi_v (`target`), and C(readout, target) is L_out. `bounds` (low, high) box phi in.
    """

    def __init__(self, curvature, bounds=None):
        self.curvature = np.asarray(curvature, dtype=np.float64)
        self.root = np.sqrt(self.curvature)
        self.size = self.n_inputs = self.n_outputs = len(self.curvature)
        self._bounds = bounds

    def bounds(self):
        return self._bounds

    def target(self, phi_v: np.ndarray) -> np.ndarray:
        return self.root * phi_v

    def support(self, phi, tasks):
        offset = phi - tasks
        return 0.5 * (self.curvature * offset * offset).sum(axis=1), self.curvature * offset

    def query(self, phi, tasks, target=None):
        readout = self.root * phi
        return readout, None if target is None else self.root * (readout - target)


class EnergyTasks:
    """An energy-based system's state s and parameters w learnt together as phi = (s, w).

    f(phi) = E(w, x, s) for the task row x, the readout the output states; with a prior only on
    w (strength 1/epsilon) and the knobs as omega, this is Aeqprop's knob-coupled relaxation as
    the lower level of a bilevel problem. The callables are `EnergySystem`'s (systems/energy.py),
    called with per-task parameters w (T, P).
    """

    def __init__(self, energy, state_gradient, parameter_gradient, *, n_inputs: int, n_states: int,
                 n_parameters: int, outputs=None, features=None):
        self._energy, self._state_gradient, self._parameter_gradient = energy, state_gradient, parameter_gradient
        self.n_inputs, self.n_states = int(n_inputs), int(n_states)
        self.size = self.n_states + int(n_parameters)
        self.output_index = np.arange(self.n_states) if outputs is None else np.atleast_1d(outputs).astype(int)
        self.n_outputs = len(self.output_index)
        self.features = features or (lambda x: x)

    def bounds(self):
        return None

    def support(self, phi, tasks):
        s, w = phi[:, :self.n_states], phi[:, self.n_states:]
        x = self.features(tasks)
        gradient = np.concatenate([self._state_gradient(w, x, s), self._parameter_gradient(w, x, s)], axis=1)
        return self._energy(w, x, s), gradient

    def query(self, phi, tasks, target=None):
        readout = phi[:, self.output_index]
        if target is None:
            return readout, None
        pull = np.zeros_like(phi)
        pull[:, self.output_index] = readout - target
        return readout, pull


Measure = Callable[[PhysicalSystem, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


class CircuitTasks:
    """Few-shot learning of a circuit's trainable conductances: phi = log(g / g0) per task.

    Every task of a batch gets its own copy of the circuit (circuit/replicas.py), so one settle
    serves the batch. f is the support loss sum_k 1/2 |o(x_k) - y_k|^2, the readouts are the
    outputs at the query points. Raw task inputs (z) pass through `features` to the input
    sources (e.g. Fourier features for `regression_fourier.cir`). phi is bounded by the
    netlist's conductance range; being a logarithm it never reaches 0 S.

    measure: how the support and query gradients are obtained on the copies, (system, inputs,
    targets) -> (outputs, batch-mean gradient in theta = g / g0): by default the circuit's own
    implicit differentiation (exact); an EP rule's estimate gives in-situ learning. At most
    `max_copies` tasks settle together (the copies' input map is dense: its size grows as the
    square of the copies).
    """

    def __init__(self, circuit: Circuit, layout: TaskLayout, features=None, solver: str = "auto",
                 measure: Measure | None = None, max_copies: int = 32):
        from aeqprop_circuits.systems.circuit import CircuitSystem

        self.circuit, self.layout, self.solver = circuit, layout, solver
        self.features = features or (lambda z: z)
        base = CircuitSystem(circuit, solver=solver)
        width = np.atleast_2d(self.features(np.zeros((1, layout.width)))).shape[1]
        if width != circuit.n_inputs:
            raise AeqpropError(f"{circuit.title}: {circuit.n_inputs} inputs, but the task features have {width}")
        if layout.outputs != circuit.n_outputs:
            raise AeqpropError(f"{circuit.title}: {circuit.n_outputs} outputs, but the tasks have {layout.outputs} "
                               "target values per point")
        self.g0 = base.g0
        self.initial = np.log(base.parameters)
        low, high = base.parameter_bounds()
        self._bounds = (np.log(low), np.log(high))
        self.size = len(self.initial)
        self.n_inputs = layout.row_size
        self.n_outputs = layout.queries * layout.outputs
        self.measure, self.max_copies = measure, int(max_copies)
        self._copies: dict[int, PhysicalSystem] = {}  # a few sizes of copies, the oldest dropped

    def bounds(self):
        return self._bounds

    def _system(self, copies: int):
        from aeqprop_circuits.systems.circuit import CircuitSystem

        if copies not in self._copies:
            circuit, solver = replicate(self.circuit, copies), self.solver
            if solver == "auto":  # the copies are not one layered network: the generic solvers' choice
                from aeqprop_circuits.circuit.energy import Problem
                from aeqprop_circuits.solvers import choose_method

                solver = choose_method(Problem(circuit, circuit.source_values()))
            if len(self._copies) >= 4:
                self._copies.pop(next(iter(self._copies)))
            self._copies[copies] = CircuitSystem(circuit, solver=solver)
        return self._copies[copies]

    def _run(self, phi, x, y=None):
        """Outputs (T, N, m) at raw inputs x (T, N, w); with targets y (T, N, m) also the loss (T,) and its
        gradient in phi (T, P). Tasks go through copies of the circuit `max_copies` at a time."""
        parts = [self._run_copies(phi[i:i + self.max_copies], x[i:i + self.max_copies],
                                  None if y is None else y[i:i + self.max_copies])
                 for i in range(0, len(phi), self.max_copies)]
        if y is None:
            return np.concatenate([p[0] for p in parts]), None, None
        return tuple(np.concatenate([p[k] for p in parts]) for k in range(3))

    def _run_copies(self, phi, x, y):
        T, N, _ = x.shape
        system = self._system(T)
        theta = np.exp(phi)
        system.parameters = theta.ravel()
        features = np.asarray(self.features(x.reshape(T * N, -1)), dtype=np.float64).reshape(T, N, -1)
        inputs = features.transpose(1, 0, 2).reshape(N, -1)
        if y is None:
            outputs = system.outputs(system.settle(Phase(inputs)))
            return outputs.reshape(N, T, -1).transpose(1, 0, 2), None, None
        target = y.transpose(1, 0, 2).reshape(N, -1)
        if self.measure is None:
            state = system.settle(Phase(inputs))
            outputs, gradient = system.outputs(state), system.loss_gradient(state, target)
        else:
            outputs, gradient = self.measure(system, inputs, target)
        outputs = outputs.reshape(N, T, -1).transpose(1, 0, 2)
        loss = 0.5 * ((outputs - y) ** 2).sum(axis=(1, 2))
        return outputs, loss, N * gradient.reshape(T, -1) * theta  # d/dphi = theta d/dtheta

    def support(self, phi, tasks):
        support_x, support_y, _ = self.layout.unpack(tasks)
        _, loss, gradient = self._run(phi, support_x, support_y)
        return loss, gradient

    def query(self, phi, tasks, target=None):
        _, _, query_x = self.layout.unpack(tasks)
        T, Q = len(tasks), self.layout.queries
        if target is None:
            outputs, _, _ = self._run(phi, query_x)
            return outputs.reshape(T, -1), None
        outputs, _, gradient = self._run(phi, query_x, np.asarray(target).reshape(T, Q, -1))
        return outputs.reshape(T, -1), gradient
