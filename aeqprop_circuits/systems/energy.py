"""Physics given as a plain energy function written in Python (Scellier et al., Sec. 5.1-5.2).

`EnergySystem` turns three callables, the energy E(theta, x, s) and its partial gradients
dE/ds and dE/dtheta, into a `PhysicalSystem`, so that every operator loop (EP, CpL, CL,
Aeqprop, exact gradient) runs on it unchanged. Conventions of the callables:

    energy(theta, x, s)             -> (B,)     E per sample
    state_gradient(theta, x, s)     -> (B, n)   dE/ds per sample
    parameter_gradient(theta, x, s) -> (B, P)   dE/dtheta per sample

with x the (B, d) mapped inputs (see `features`), s the (B, n) states and theta either (P,)
(one device shared by the batch) or (B, P) (replicas, below). Optional closed forms,
`solve_state(theta, x, beta, target)` (the minimiser of E + beta C over s, unclamped) and
`solve_parameters(x, s, knobs, epsilon)` (the minimiser of E + |knobs - theta|^2 / 2 epsilon
over theta), replace the numerical minimisers when given.

Two relaxations with the knobs clamped (`settle_with_knobs`):
- `knob_dynamics="gradient"` (default): the paper's Sec. 5.1 simulation. Each round is a
  gradient step (14) on s then a gradient step (15) on theta of the global energy
  |u - theta|^2 / 2 epsilon + E + beta C, each with its own adaptive step size: a step that
  lowers the energy is accepted and its size grows by 5 %, a step that raises it is cancelled
  and its size halves, an unchanged energy multiplies or divides the size by 1.05 at random.
  Step sizes start at eta_s = 1 and eta_theta = epsilon when a relaxation starts afresh and
  are carried by the state across the phases of one Aeqprop step. The state exposes
  `parameter_rate` = eta_theta if the last theta step was accepted, else 0, which is what the
  proportional controller (16) needs: u moves by eta_u = eta_theta / 4 epsilon only after
  an accepted theta step. The relaxation never raises on divergence: values simply leave
  every bound, as they would in the paper's simulation, and the caller watches the loss.
- `knob_dynamics="exact"`: the base class's alternation of exact settles (block coordinate
  descent), the idealised physics of Theorems 1-3.

Replicas: with parameters of shape (R, P), the system is R independent devices, sample b of
a batch of R driving device b only (an ensemble of identical machines with their own theta,
knobs, epsilon and step sizes). Then `energy_gradient`, `relax_parameters`, `loss_gradient`
and `parameters` are per device, (R, P), and epsilon may be an (R, 1) array. This is how the
reproduction runs all seeds and step sizes of a figure as one batch. A replica may also
have its own nudge dial (`set_nudge_map(offset, gain)`): device r then feels the nudge
offset_r + gain_r * beta when the operator sets beta, so that one operator loop drives, in
lockstep, devices run with different nudge strengths and different Aeqprop variants
(optimistic: offset 0, pessimistic: offset -beta_r, centered: offset -beta_r/2, with the
operator's phases at 0 and 1).

`linear_regression_system` is the model of Sec. 5.2: a scalar state, E = (s - theta.phi)^2/2
(+ |s|^2 for Fig. 3), C = (s - y)^2 / 2, Fourier features phi.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from aeqprop_circuits.data.datasets import fourier_features
from aeqprop_circuits.errors import AeqpropError, DivergenceError
from aeqprop_circuits.systems.base import ExactLossGradient, Phase, PhysicalSystem

GROW, SHRINK = 1.05, 0.5


@dataclass(frozen=True, eq=False)
class EnergyState:
    """An equilibrium (or a point of a relaxation) of an EnergySystem.

    states: (B, n) the state s; theta: the parameters it was reached with, (P,) or (B, P);
    features: the mapped inputs; state_rate (B,) / theta_rate: the adaptive step sizes of
    the gradient dynamics (None after an exact settle); accepted_rate: eta_theta when the
    last theta step was accepted, else 0 (read as `parameter_rate`, the proportional
    controller's gain source).
    """

    states: np.ndarray
    theta: np.ndarray
    phase: Phase
    features: np.ndarray
    state_rate: np.ndarray | None = None
    theta_rate: np.ndarray | float | None = None
    accepted_rate: np.ndarray | float | None = None

    @property
    def parameter_rate(self):
        """eta_theta of the last accepted theta step (0 after a cancelled one); only after
        gradient dynamics: an exact settle has no such rate (AttributeError, so that a
        KnobHandle falls back to its default)."""
        if self.accepted_rate is None:
            raise AttributeError("parameter_rate: this state comes from an exact settle")
        return self.accepted_rate


def squared_error(outputs: np.ndarray, target: np.ndarray) -> np.ndarray:
    """C = |o - y|^2 / 2 per sample (B,)."""
    return 0.5 * np.sum((outputs - target) ** 2, axis=-1)


def squared_error_gradient(outputs: np.ndarray, target: np.ndarray) -> np.ndarray:
    return outputs - target


class EnergySystem(PhysicalSystem, ExactLossGradient):
    """A PhysicalSystem whose physics is the minimisation of a user-given energy.

    parameters: initial theta, (P,) shared by the batch or (R, P) for R replicas.
    n_inputs: columns of the raw inputs; n_states: size of s; outputs: indices of s read as
    outputs (default: all). features: callable raw inputs (B, n_inputs) -> x (B, d), applied
    once per phase (the input transducers). cost / cost_gradient: C(o, y) per sample and
    dC/do (default squared error). bounds: (low, high) of theta or None. seed: of the coin
    deciding step sizes when the energy is unchanged.
    """

    def __init__(self, energy, state_gradient, parameter_gradient, parameters, *, n_inputs: int,
                 n_states: int, outputs=None, features=None, cost=squared_error,
                 cost_gradient=squared_error_gradient, solve_state=None, solve_parameters=None,
                 bounds=None, knob_dynamics: str = "gradient", state_rate: float = 1.0, seed: int = 0,
                 tolerance: float = 1e-12, max_iterations: int = 1000):
        if knob_dynamics not in ("gradient", "exact"):
            raise AeqpropError(f"knob_dynamics: expected 'gradient' or 'exact', got {knob_dynamics!r}")
        theta = np.array(parameters, dtype=np.float64)
        if theta.ndim not in (1, 2):
            raise AeqpropError(f"parameters: expected shape (P,) or (R, P), got {theta.shape}")
        self._energy, self._state_gradient = energy, state_gradient
        self._parameter_gradient = parameter_gradient
        self._theta = theta
        self.n_inputs, self.n_states = int(n_inputs), int(n_states)
        self.output_index = (np.arange(self.n_states) if outputs is None
                             else np.atleast_1d(outputs).astype(int))
        self.n_outputs = len(self.output_index)
        self._features = features
        self._cost, self._cost_gradient = cost, cost_gradient
        self._solve_state, self._solve_parameters = solve_state, solve_parameters
        self._bounds = None if bounds is None else tuple(np.asarray(b, dtype=np.float64) for b in bounds)
        self.knob_dynamics, self.state_rate = knob_dynamics, float(state_rate)
        self.tolerance, self.max_iterations = tolerance, max_iterations
        self.rng = np.random.default_rng(seed)
        self._feature_cache: tuple | None = None
        self._nudge_map: tuple[np.ndarray, np.ndarray] | None = None

    def set_nudge_map(self, offset, gain) -> None:
        """Replicas only: device r feels the nudge offset_r + gain_r * beta (None, None: identity)."""
        if offset is None and gain is None:
            self._nudge_map = None
            return
        if self.replicas is None:
            raise AeqpropError("set_nudge_map: only a system of replicas has per-device nudge dials")
        shape = (self.replicas,)
        self._nudge_map = (np.broadcast_to(np.asarray(offset, float), shape).copy(),
                           np.broadcast_to(np.asarray(gain, float), shape).copy())

    def nudge(self, phase: Phase):
        """The nudge strength each sample feels: phase.beta, or per replica through the nudge map."""
        if self._nudge_map is None:
            return phase.beta
        offset, gain = self._nudge_map
        return offset + gain * phase.beta

    # --- parameters ------------------------------------------------------------------------
    @property
    def replicas(self) -> int | None:
        """R when the system is R independent devices, else None."""
        return self._theta.shape[0] if self._theta.ndim == 2 else None

    @property
    def parameters(self) -> np.ndarray:
        return self._theta.copy()

    @parameters.setter
    def parameters(self, theta: np.ndarray) -> None:
        theta = np.array(theta, dtype=np.float64)
        if theta.shape != self._theta.shape:
            raise AeqpropError(f"parameters: expected shape {self._theta.shape}, got {theta.shape}")
        self._theta = theta

    def parameter_bounds(self):
        return self._bounds

    def _clip(self, theta):
        return theta if self._bounds is None else np.clip(theta, *self._bounds)

    # --- helpers ---------------------------------------------------------------------------
    def features(self, inputs: np.ndarray) -> np.ndarray:
        """Mapped inputs, cached for the array last seen (a phase reuses its inputs for every round)."""
        if self._features is None:
            return inputs
        cache = self._feature_cache
        if cache is not None and cache[0] is inputs:
            return cache[1]
        mapped = np.asarray(self._features(inputs), dtype=np.float64)
        self._feature_cache = (inputs, mapped)
        return mapped

    def _check_batch(self, phase: Phase) -> None:
        if self.replicas is not None and phase.batch_size != self.replicas:
            raise AeqpropError(f"a system of {self.replicas} replicas takes batches of {self.replicas} "
                               f"samples (one per device), got {phase.batch_size}")

    def _with_clamp(self, s: np.ndarray, phase: Phase) -> np.ndarray:
        if phase.clamp is None:
            return s
        s = s.copy()
        s[:, self.output_index] = phase.clamp
        return s

    def _group_mean(self, values: np.ndarray) -> np.ndarray:
        """Per-sample values to what one theta sees: the batch mean (shared) or itself (replicas)."""
        return values if self.replicas is not None else values.mean(axis=0)

    def phase_energy(self, theta, x, s, phase: Phase) -> np.ndarray:
        """E + beta C per sample (B,); clamped outputs are part of s already."""
        e = self._energy(theta, x, s)
        beta = self.nudge(phase)
        if phase.clamp is None and np.any(beta != 0.0):
            e = e + beta * self._cost(s[:, self.output_index], phase.target)
        return e

    def _phase_state_gradient(self, theta, x, s, phase: Phase) -> np.ndarray:
        g = self._state_gradient(theta, x, s)
        if phase.clamp is not None:
            g = g.copy()
            g[:, self.output_index] = 0.0
        elif np.any(self.nudge(phase) != 0.0):
            beta = np.reshape(self.nudge(phase), (-1, 1))
            g = g.copy()
            g[:, self.output_index] += beta * self._cost_gradient(s[:, self.output_index], phase.target)
        return g

    # --- the experiment --------------------------------------------------------------------
    def settle(self, phase: Phase, start: EnergyState | None = None, callback=None) -> EnergyState:
        """Exact minimiser of E + beta C over s for the current theta (closed form or L-BFGS)."""
        self._check_batch(phase)
        x = self.features(phase.inputs)
        theta = self._theta
        if self._solve_state is not None and phase.clamp is None:
            s = np.asarray(self._solve_state(theta, x, self.nudge(phase), phase.target), dtype=np.float64)
            if not np.all(np.isfinite(s)):
                raise DivergenceError(f"the phase at beta={phase.beta} has no equilibrium (non-finite state)")
            if callback is not None:
                callback(self.phase_energy(theta, x, s, phase))
            return EnergyState(s, theta, phase, x)
        B, n = phase.batch_size, self.n_states
        s0 = np.zeros((B, n)) if start is None else np.array(start.states, dtype=np.float64)
        s0 = self._with_clamp(s0, phase)

        def fun(flat):
            s = flat.reshape(B, n)
            return float(np.sum(self.phase_energy(theta, x, s, phase))), \
                self._phase_state_gradient(theta, x, s, phase).ravel()

        def report(intermediate_result):  # scipy passes an OptimizeResult under this name
            callback(self.phase_energy(theta, x, intermediate_result.x.reshape(B, n), phase))

        result = minimize(fun, s0.ravel(), jac=True, method="L-BFGS-B",
                          callback=None if callback is None else report,
                          options={"maxiter": self.max_iterations, "gtol": self.tolerance,
                                   "ftol": self.tolerance * 1e-3})
        s = result.x.reshape(B, n)
        if not np.all(np.isfinite(s)) or result.fun < -1e12 or np.abs(s).max(initial=0.0) > 1e10:
            raise DivergenceError(f"the phase at beta={phase.beta} has no equilibrium "
                                  f"(energy {result.fun:.3g}, |s| up to {np.abs(s).max(initial=0.0):.3g})")
        return EnergyState(self._with_clamp(s, phase), theta, phase, x)

    def outputs(self, state: EnergyState) -> np.ndarray:
        return state.states[:, self.output_index]

    def output_cost(self, outputs: np.ndarray, target: np.ndarray) -> np.ndarray:
        return self._cost(outputs, np.atleast_2d(target))

    def energy(self, state: EnergyState) -> np.ndarray:
        return self.phase_energy(state.theta, state.features, state.states, state.phase)

    def energy_gradient(self, state: EnergyState) -> np.ndarray:
        """dE/dtheta at the state: batch mean (P,), or per replica (R, P)."""
        return self._group_mean(self._parameter_gradient(state.theta, state.features, state.states))

    def relax_parameters(self, state: EnergyState, knobs: np.ndarray, epsilon) -> np.ndarray:
        x, s = state.features, state.states
        if self._solve_parameters is not None:
            return self._clip(np.asarray(self._solve_parameters(x, s, knobs, epsilon), dtype=np.float64))
        shape = self._theta.shape
        inverse = 1.0 / np.broadcast_to(np.asarray(epsilon, dtype=np.float64), shape) \
            if np.ndim(epsilon) else np.full(shape, 1.0 / float(epsilon))

        def fun(flat):
            theta = flat.reshape(shape)
            e = np.sum(self._group_mean(self._energy(theta, x, s)))
            g = self._group_mean(self._parameter_gradient(theta, x, s))
            coupling = 0.5 * np.sum(inverse * (knobs - theta) ** 2)
            return float(e + coupling), (g + inverse * (theta - knobs)).ravel()

        bounds = None
        if self._bounds is not None:
            low, high = (np.broadcast_to(b, shape).ravel() for b in self._bounds)
            bounds = list(zip(low, high))
        result = minimize(fun, np.asarray(knobs, dtype=np.float64).ravel(), jac=True, method="L-BFGS-B",
                          bounds=bounds, options={"maxiter": self.max_iterations, "gtol": self.tolerance,
                                                  "ftol": self.tolerance * 1e-3})
        return self._clip(result.x.reshape(shape))

    # --- exact gradient (reference) --------------------------------------------------------
    def loss_gradient(self, state: EnergyState, target: np.ndarray) -> np.ndarray:
        """dL/dtheta of L = C(outputs(s*(theta))) by implicit differentiation at the equilibrium.

        ds*/dtheta = -H^-1 d2E/ds dtheta with H = d2E/ds2 per sample, so dL/dtheta =
        -(d2E/dtheta ds) lambda with lambda = H^-1 dC/ds (one adjoint solve per sample). H is
        taken by central differences of dE/ds (n_states columns), the mixed term by a central
        difference of dE/dtheta along lambda; both are exact for energies quadratic in s.
        Batch mean (P,), or per replica (R, P).
        """
        theta, x, s = state.theta, state.features, state.states
        B, n = s.shape
        dC = np.zeros((B, n))
        dC[:, self.output_index] = self._cost_gradient(s[:, self.output_index], np.atleast_2d(target))
        step = 1e-5 * (1.0 + np.abs(s).max(axis=1, keepdims=True))
        hessian = np.empty((B, n, n))
        for j in range(n):
            shift = np.zeros((B, n))
            shift[:, j] = step[:, 0]
            hessian[:, :, j] = (self._state_gradient(theta, x, s + shift)
                                - self._state_gradient(theta, x, s - shift)) / (2 * step)
        adjoint = np.linalg.solve(hessian, dC[:, :, None])[:, :, 0]
        size = np.linalg.norm(adjoint, axis=1, keepdims=True)
        h = np.where(size > 0, step / np.where(size > 0, size, 1.0), 0.0)
        h_safe = np.where(h > 0, h, 1.0)
        mixed = (self._parameter_gradient(theta, x, s + h * adjoint)
                 - self._parameter_gradient(theta, x, s - h * adjoint)) / (2 * h_safe)
        mixed = np.where(h > 0, mixed, 0.0)
        return -self._group_mean(mixed)

    # --- knob-coupled relaxation -----------------------------------------------------------
    def settle_with_knobs(self, phase: Phase, knobs: np.ndarray, epsilon, start: EnergyState | None = None,
                          theta: np.ndarray | None = None, steps: int = 1) -> tuple[EnergyState, np.ndarray]:
        if self.knob_dynamics == "exact":
            return super().settle_with_knobs(phase, knobs, epsilon, start=start, theta=theta, steps=steps)
        self._check_batch(phase)
        theta = self.parameters if theta is None else np.array(theta, dtype=np.float64)
        knobs = np.asarray(knobs, dtype=np.float64)
        return self._gradient_dynamics(phase, knobs, epsilon, start, theta, steps)

    def _coupling(self, theta, knobs, epsilon):
        """|u - theta|^2 / 2 epsilon: a scalar (shared theta) or per replica (R,)."""
        return np.sum((knobs - theta) ** 2 / (2.0 * np.asarray(epsilon)), axis=-1)

    def _gradient_dynamics(self, phase, knobs, epsilon, start, theta, steps):
        """Sec. 5.1: alternate adaptive gradient steps (14) on s and (15) on theta."""
        x = self.features(phase.inputs)
        B = phase.batch_size
        replicated = self.replicas is not None
        initial_theta_rate = np.array(epsilon, dtype=np.float64)  # eta_theta = epsilon
        if replicated and initial_theta_rate.ndim == 0:
            initial_theta_rate = np.full((B, 1), float(initial_theta_rate))
        s = np.zeros((B, self.n_states)) if start is None else np.array(start.states, dtype=np.float64)
        s = self._with_clamp(s, phase)
        fresh = start is None or start.state_rate is None
        rate_s = np.full(B, self.state_rate) if fresh else np.array(start.state_rate)
        rate_theta = initial_theta_rate if fresh else np.array(start.theta_rate)
        accepted_theta = np.zeros((B, 1)) if replicated else 0.0
        rng, group, energy = self.rng, self._group_mean, self._energy
        parameter_gradient = self._parameter_gradient
        beta = self.nudge(phase)
        nudged = phase.clamp is None and bool(np.any(beta != 0.0))
        beta_column = np.reshape(beta, (-1, 1)) if nudged else 0.0
        out, target = self.output_index, phase.target
        inverse_epsilon = 1.0 / np.asarray(epsilon, dtype=np.float64)

        def phase_energy(theta, s):
            e = energy(theta, x, s)
            return e + beta * self._cost(s[:, out], target) if nudged else e

        def state_force(theta, s):
            g = self._state_gradient(theta, x, s)
            if phase.clamp is not None:
                g = g.copy()
                g[:, out] = 0.0
            elif nudged:
                g = g.copy()
                g[:, out] += beta_column * self._cost_gradient(s[:, out], target)
            return g

        def coupling(theta):
            return 0.5 * np.sum((knobs - theta) ** 2 * inverse_epsilon, axis=-1)

        with np.errstate(all="ignore"):
            e = phase_energy(theta, s)
            held = coupling(theta)
            for _ in range(steps):
                # (14): s <- s - eta_s dE/ds (+ beta dC/ds), per sample
                s_new = s - rate_s[:, None] * state_force(theta, s)
                e_new = phase_energy(theta, s_new)
                factor, accept = _adapt(e, e_new, rng)
                if accept.all():
                    s, e = s_new, e_new
                else:
                    s, e = np.where(accept[:, None], s_new, s), np.where(accept, e_new, e)
                rate_s = rate_s * factor
                # (15): theta <- theta + eta_theta (u - theta)/epsilon - eta_theta dE/dtheta
                force = group(parameter_gradient(theta, x, s)) + (theta - knobs) * inverse_epsilon
                theta_new = self._clip(theta - rate_theta * force)
                e_theta = phase_energy(theta_new, s)
                held_new = coupling(theta_new)
                factor, accept = _adapt(group(e) + held, group(e_theta) + held_new, rng)
                if replicated:
                    if accept.all():
                        theta, e, held = theta_new, e_theta, held_new
                    else:
                        theta = np.where(accept[:, None], theta_new, theta)
                        e, held = np.where(accept, e_theta, e), np.where(accept, held_new, held)
                    rate_theta = rate_theta * factor[:, None]
                    accepted_theta = accept[:, None].astype(float)
                else:
                    if accept:
                        theta, e, held = theta_new, e_theta, held_new
                    rate_theta = rate_theta * factor
                    accepted_theta = float(accept)
        state = EnergyState(s, theta, phase, x, rate_s, rate_theta, rate_theta * accepted_theta)
        return state, theta


def _slack(energy):
    return 1e-13 * (1.0 + np.abs(energy))


def _adapt(old, new, rng):
    """(step-size factor, accepted): x1.05 and accept if the energy went down, x0.5 and cancel if
    it went up (or is NaN), x or / 1.05 at random (and accept) if it is unchanged."""
    change = new - old
    slack = _slack(old)
    down = change < -slack
    if down.all():
        return np.full(np.shape(old), GROW), down
    same = np.abs(change) <= slack
    factor = np.where(down, GROW, SHRINK)
    if np.any(same):
        coin = np.where(rng.random(np.shape(old)) < 0.5, GROW, 1.0 / GROW)
        factor = np.where(same, coin, factor)
    return factor, down | same


# --- the linear regression of Sec. 5.2 ------------------------------------------------------
def _predict(theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """theta . phi per sample (B,), theta shared (P,) or per replica (B, P)."""
    return phi @ theta if theta.ndim == 1 else np.einsum("bp,bp->b", phi, theta)


def linear_regression_system(features=fourier_features, parameters=None, *, state_penalty: float = 0.0,
                             replicas: int | None = None, knob_dynamics: str = "gradient",
                             seed: int = 0) -> EnergySystem:
    """The Aeqprop paper's linear regression (Sec. 5.2) as an EnergySystem.

    E(theta, z, s) = (s - theta . phi(z))^2 / 2 + state_penalty s^2, C(s, y) = (s - y)^2 / 2,
    a scalar state s that is also the output. state_penalty=1 is Fig. 3's "adding |s|^2 to
    the energy": it keeps E + beta C bounded below for every beta > -3 at fixed theta, and
    the joint energy over (s, theta) bounded below for beta > -2 however weak the knob
    coupling is (the paper's "as long as beta < 2"). The free state is
    s = theta . phi / (1 + 2 state_penalty), which is the model. `features` maps z (B, 1) to
    phi (B, P) (default: Fourier features up to frequency 10, P = 21); theta starts at zero.
    With replicas=R, state_penalty may be one value per device (R,).
    """
    size = features(np.zeros((1, 1))).shape[1]
    if parameters is None:
        parameters = np.zeros((replicas, size) if replicas else size)
    c = np.asarray(state_penalty, dtype=np.float64)  # a scalar, or per replica (R,)
    if c.ndim and not replicas:
        raise AeqpropError("state_penalty: one value per replica needs replicas=R")
    stiffness = 1.0 + 2.0 * c

    recent: list = []  # (theta, phi, theta . phi) of the last two calls: a relaxation reuses them

    def predict(theta, phi):
        for known_theta, known_phi, value in recent:
            if known_theta is theta and known_phi is phi:
                return value
        value = _predict(theta, phi)
        recent.insert(0, (theta, phi, value))
        del recent[2:]
        return value

    def energy(theta, phi, s):
        return 0.5 * (s[:, 0] - predict(theta, phi)) ** 2 + c * s[:, 0] ** 2

    def state_gradient(theta, phi, s):
        return (stiffness * s[:, 0] - predict(theta, phi))[:, None]

    def parameter_gradient(theta, phi, s):
        return -(s[:, 0] - predict(theta, phi))[:, None] * phi

    def solve_state(theta, phi, beta, target):  # beta: a scalar or per sample (B,)
        if np.any(stiffness + beta <= 0):
            raise DivergenceError(f"E + beta C is unbounded below for beta={np.min(beta):g} "
                                  f"(needs beta > {-np.max(stiffness):g})")
        pull = 0.0 if np.all(beta == 0) else beta * np.asarray(target)[:, 0]
        return ((_predict(theta, phi) + pull) / (stiffness + beta))[:, None]

    def solve_parameters(phi, s, knobs, epsilon):
        epsilon = np.asarray(epsilon, dtype=np.float64)
        if knobs.ndim == 2:  # replicas: Sherman-Morrison on I/epsilon + phi phi^T
            residual = (s[:, 0] - _predict(knobs, phi))[:, None] / (1.0 + epsilon * np.sum(phi * phi, axis=1,
                                                                                            keepdims=True))
            return knobs + epsilon * residual * phi
        B = len(phi)
        inverse = np.broadcast_to(1.0 / epsilon, knobs.shape)
        matrix = phi.T @ phi / B + np.diag(inverse)
        return np.linalg.solve(matrix, phi.T @ s[:, 0] / B + inverse * knobs)

    return EnergySystem(energy, state_gradient, parameter_gradient, parameters, n_inputs=1, n_states=1,
                        features=features, solve_state=solve_state, solve_parameters=solve_parameters,
                        knob_dynamics=knob_dynamics, seed=seed)
