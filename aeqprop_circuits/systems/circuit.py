"""A netlist circuit as a PhysicalSystem.

Normalised units (DESIGN.md, Physics): theta = trainable conductance / g0, potentials in
volts, cost in V^2. The energy the learning loops see is co-content / g0 (V^2), so a nudge
of strength beta on a squared-error cost is a conductance beta * g0 from each output to a
source at its target, and dE/dtheta_k = (1/2) dV_k^2 is the squared voltage across the
trainable resistor k: a local measurement.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from aeqprop_circuits.circuit.circuit import Circuit, Sources
from aeqprop_circuits.circuit.energy import Nudge, Problem, structure
from aeqprop_circuits.circuit.topology import check_outputs
from aeqprop_circuits.errors import AeqpropError, CircuitError, DivergenceError
from aeqprop_circuits.solvers import SolveResult, solve
from aeqprop_circuits.systems.base import ExactLossGradient, Phase, PhysicalSystem


class CircuitSystem(PhysicalSystem, ExactLossGradient):
    def __init__(self, circuit: Circuit, solver: str = "auto", **solver_options):
        learning = circuit.learning
        if circuit.n_outputs == 0:
            raise AeqpropError(f"{circuit.title}: no outputs; annotate them with '*@ output NODE'")
        if len(learning.trainable) == 0:
            raise AeqpropError(f"{circuit.title}: nothing to train; annotate with '*@ learn PATTERN'")
        if circuit.spice_only and solver != "spice":
            raise AeqpropError(f"{circuit.title}: {circuit.spice_only.describe()} are modelled by ngspice alone; "
                               "use --solver spice")
        if not circuit.spice_only:  # (ngspice judges a circuit with devices of its own)
            check_outputs(circuit, structure(circuit)[0])  # a pinned output would train at a constant loss
        self.circuit = circuit
        self.solver = solver
        self.solver_options = solver_options
        self.n_inputs, self.n_outputs = circuit.n_inputs, circuit.n_outputs
        conductance = circuit.resistors.conductance
        self.g0 = float(learning.g0 or np.median(conductance[learning.trainable]))
        self._conductance = conductance.copy()
        self._clamped: Circuit | None = None

    # --- parameters -------------------------------------------------------------------------
    @property
    def parameters(self) -> np.ndarray:
        return self._conductance[self.circuit.learning.trainable] / self.g0

    @parameters.setter
    def parameters(self, theta: np.ndarray) -> None:
        theta = np.asarray(theta, dtype=np.float64)
        if not np.all(np.isfinite(theta)):
            raise DivergenceError("non-finite conductances: the learning step diverged")
        self._conductance = self._conductance.copy()
        self._conductance[self.circuit.learning.trainable] = theta * self.g0

    @property
    def conductance(self) -> np.ndarray:
        """All resistor conductances (S), trainable ones at their current value."""
        return self._conductance.copy()

    def parameter_bounds(self):
        learning = self.circuit.learning
        return learning.low / self.g0, learning.high / self.g0

    # --- the experiment ---------------------------------------------------------------------
    def _clamped_circuit(self) -> Circuit:
        """The circuit with a voltage source across every output (CL / CpL clamping)."""
        if self._clamped is None:
            c = self.circuit
            outs = c.learning.outputs
            src = c.sources
            sources = Sources(src.names + tuple(f"vclamp{k}" for k in range(len(outs))),
                              np.vstack([src.nodes, outs]), np.concatenate([src.value, np.zeros(len(outs))]),
                              np.concatenate([src.is_voltage, np.ones(len(outs), dtype=bool)]))
            in_map = np.vstack([c.learning.input_map, np.zeros((len(outs), c.learning.input_map.shape[1]))])
            self._clamped = replace(c, sources=sources, learning=replace(c.learning, input_map=in_map))
        return self._clamped

    def _setting(self, phase: Phase):
        """(circuit, source values, nudge) realising a phase."""
        circuit = self.circuit
        sources = circuit.source_values(phase.inputs)
        if phase.clamp is not None:
            circuit = self._clamped_circuit()
            sources = np.hstack([sources, np.broadcast_to(phase.clamp, (len(sources), self.n_outputs))])
        nudge = None
        if phase.beta != 0.0:
            if phase.target is None:
                raise AeqpropError("a nudged phase needs a target")
            nudge = Nudge(phase.beta * self.g0, phase.target)
        return circuit, sources, nudge

    def settle(self, phase: Phase, start: SolveResult | None = None, callback=None) -> SolveResult:
        circuit, sources, nudge = self._setting(phase)
        warm = start is not None and start.circuit is circuit and len(start.free) == len(sources)
        x0 = start.free if warm else None
        if callback is not None:  # the solvers report the co-content (W); the system's energy is co-content / g0
            callback = _scaled(callback, 1.0 / self.g0)
        try:
            result = self._solve(circuit, sources, nudge, x0, callback)
        except CircuitError as err:
            raise DivergenceError(f"phase with beta={phase.beta:g}: {err}") from None
        if not result.success:
            raise DivergenceError(f"phase with beta={phase.beta:g} did not settle: {result.message}")
        return _Equilibrium(result, phase, circuit, sources, nudge, self.parameters)

    def _solve(self, circuit: Circuit, sources, nudge, x0, callback) -> SolveResult:
        """The operating point of one phase: the solver's, for the current conductances."""
        return solve(circuit, sources=sources, conductance=self._conductance, nudge=nudge, method=self.solver,
                     x0=x0, callback=callback, **self.solver_options)

    def _problem(self, circuit: Circuit, sources, nudge) -> Problem:
        """The co-content of one phase (what the exact gradient differentiates)."""
        return Problem(circuit, sources, self._conductance, nudge)

    def outputs(self, state) -> np.ndarray:
        V = state.potentials
        outs = self.circuit.learning.outputs
        return V[:, outs[:, 0]] - V[:, outs[:, 1]]

    # --- local measurements -----------------------------------------------------------------
    def resistor_voltages(self, state) -> np.ndarray:
        """Voltage across each trainable resistor (B, P)."""
        pairs = self.circuit.resistors.nodes[self.circuit.learning.trainable]
        V = state.potentials
        return V[:, pairs[:, 0]] - V[:, pairs[:, 1]]

    def energy_gradient(self, state) -> np.ndarray:
        dv = self.resistor_voltages(state)
        return 0.5 * (dv * dv).mean(axis=0)

    def energy(self, state) -> np.ndarray:
        return state.energy / self.g0

    def relax_parameters(self, state, knobs, epsilon) -> np.ndarray:
        theta = knobs - epsilon * self.energy_gradient(state)
        low, high = self.parameter_bounds()
        return np.clip(theta, low, high)

    # --- exact gradient (reference) -------------------------------------------------------
    def loss_gradient(self, state, target) -> np.ndarray:
        """dL/dtheta by implicit differentiation at the free equilibrium: one adjoint solve.

        L = C(outputs(z*(theta))). With H the Hessian of the co-content in the free
        potentials z, dz*/dtheta = -H^-1 d2E/dz dtheta, so dL/dtheta = -lambda^T d2E/dz dtheta
        with lambda = H^-1 dC/dz. Free potentials held by a conducting ideal diode are
        frozen (they sit on an active constraint), so they drop out of the solve.
        """
        if self.circuit.spice_only:
            raise AeqpropError(f"{self.circuit.title}: no exact gradient: {self.circuit.spice_only.describe()} are "
                               "modelled by ngspice alone, so the co-content is not known here")
        problem = self._problem(state.circuit, state.sources, state.nudge)
        z = state.result.free
        B, n = z.shape
        if problem.has_ideal_diodes:
            from aeqprop_circuits.solvers.coordinate import box_bounds

            lo, hi = box_bounds(problem)
            scale = 1.0 + np.abs(z).max()
            free = ~((z <= lo + 1e-9 * scale) | (z >= hi - 1e-9 * scale))
        else:
            free = np.ones_like(z, dtype=bool)
        H = problem.hessian(z) / self.g0  # normalised energy
        dC_dz = np.asarray((self.outputs(state) - target) @ problem.Mo).ravel() * free.ravel()
        keep = sp.diags(free.ravel().astype(float))
        system = keep @ H @ keep + sp.diags((~free).ravel().astype(float))
        lam = spla.spsolve(sp.csc_matrix(system), dC_dz).reshape(B, n)
        Mr = problem.Mr[self.circuit.learning.trainable]
        # d2E/dz dtheta_k = di_k/dtheta_k * Mr[k, :]  ->  dL/dtheta_k = -di_k/dtheta_k (Mr lambda)_k
        return -(self.current_sensitivity(state) * np.asarray((Mr @ lam.T).T)).mean(axis=0)

    def current_sensitivity(self, state) -> np.ndarray:
        """d(current of trainable element k)/d theta_k in normalised units (B, P): the voltage across a resistor."""
        return self.resistor_voltages(state)


class _Equilibrium:
    """A settled phase: the solver's result plus what is needed to differentiate through it."""

    def __init__(self, result: SolveResult, phase: Phase, circuit: Circuit, sources, nudge, theta):
        self.result, self.phase, self.circuit, self.sources, self.nudge = result, phase, circuit, sources, nudge
        self.theta = theta  # the parameters this equilibrium was settled for

    @property
    def potentials(self):
        return self.result.potentials

    @property
    def energy(self):
        return self.result.energy

    @property
    def free(self):
        return self.result.free


def _scaled(callback, factor: float):
    """A settle's callback that receives the solver's energy times `factor` (and returns what it returns)."""
    return lambda energy: callback(energy * factor)
