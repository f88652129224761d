"""Hardware and model as separate objects: what the operator loop acts on, and what a model-based method computes with.

A lab trains a physical circuit whose element values and device laws it knows only roughly.
Here the *model* is the netlist as written (a `CircuitSystem`), and the *hardware* is a
`HardwareCircuit` built from it, which differs from the model in what a bench differs from
its schematic:

- `mismatch`: every element value off by a per-device factor e^(sigma n), n ~ N(0, 1) drawn
  from the hardware seed: fixed resistors, the junctions' IS and N (and RS, a resistor), the
  input gains (each `*@ input` source drives (1 + error) x), and the trainable conductances,
  which are *programmed*: setting theta realises g = gain theta g0 with a per-device gain;
- `nonlinear`: as `mismatch`, and each trainable element obeys I = g (V + gamma V^3) instead
  of Ohm's law (a resistor in parallel with a cubic conductor of the element table);
- `diode`: as `mismatch`, and the ideal diodes of the model are Shockley junctions with a
  series resistance (`HARDWARE_DIODE`);
- `spice`: as `mismatch`, solved by ngspice (its own device models: the ideal diodes become
  its exponential stand-ins).

The operator's view of the hardware is the same as of any system: set inputs, knobs and
the nudge, settle, read outputs and parameters. What an EP operator *measures* at a trainable
element is the voltage across it, which it turns into dE/dtheta with its model of the element:
1/2 dV^2 (`energy_gradient`). The hardware's own dE/dtheta is gain (1/2 V^2 + gamma V^4 / 4)
(`parameter_force`): it moves floating parameters (Aeqprop), and the oracle controller, which
knows the physics, holds them with it. The exact gradient of the hardware (`loss_gradient`)
differentiates its true co-content. With sigma = 0 and gamma = 0 the hardware is the model,
number for number.

`PhysicsAware` is the system physics-aware training acts on (Wright et al. 2022): the
forward pass on the hardware, the backward pass through the model, fed with the hardware's
output error.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp

from aeqprop_circuits.circuit.circuit import Circuit, Diodes, IdealDiodes, Resistors
from aeqprop_circuits.circuit.elements import CUBIC, RESISTOR
from aeqprop_circuits.circuit.energy import Nudge, Problem, structure
from aeqprop_circuits.errors import AeqpropError
from aeqprop_circuits.solvers import SolveResult, solve_problem
from aeqprop_circuits.solvers.newton import newton
from aeqprop_circuits.systems.base import (
    ConductanceUnits,
    ExactLossGradient,
    ParameterForce,
    Phase,
    PhysicalSystem,
)
from aeqprop_circuits.systems.circuit import CircuitSystem

HARDWARE_KINDS = ("none", "mismatch", "nonlinear", "diode", "spice")
# The Shockley junction an ideal diode of the model is on the `diode` hardware: a small-signal
# silicon diode (about 0.5 V at 1 mA) with its contact resistance.
HARDWARE_DIODE = {"is": 1e-12, "n": 1.0, "rs": 20.0}  # A, -, ohm


@dataclass(frozen=True)
class HardwareSpec:
    """Which hardware a netlist model is realised as (see the module docstring).

    mismatch: sigma, the relative spread of element values (0.1 = 10 %); seed: the hardware's
    draw of device errors; nonlinearity: gamma (1/V^2) of the trainable elements' law (`nonlinear`).
    """

    kind: str = "none"
    mismatch: float = 0.0
    seed: int = 0
    nonlinearity: float = 0.0

    def __post_init__(self):
        if self.kind not in HARDWARE_KINDS:
            raise AeqpropError(f"hardware '{self.kind}': expected one of {', '.join(HARDWARE_KINDS)}")
        if not self.mismatch >= 0 or not self.nonlinearity >= 0:
            raise AeqpropError(f"hardware: mismatch and nonlinearity must be >= 0, got {self.mismatch}, "
                               f"{self.nonlinearity}")
        if self.nonlinearity and self.kind != "nonlinear":
            raise AeqpropError(f"a nonlinearity ({self.nonlinearity}) applies to the nonlinear hardware, not "
                               f"'{self.kind}'")

    def facts(self) -> dict:
        """What config.json records of the hardware."""
        facts = {"kind": self.kind, "mismatch": self.mismatch, "seed": self.seed}
        if self.kind == "nonlinear":
            facts["law"] = "I = g (V + nonlinearity V^3) for trainable elements"
            facts["nonlinearity"] = self.nonlinearity
        if self.kind == "diode":
            facts["diode"] = dict(HARDWARE_DIODE)
        if self.kind == "spice":
            facts["solver"] = "spice"
        return facts


# --- the hardware circuit ---------------------------------------------------------------------------
def with_junctions(circuit: Circuit, isat: float, emission: float, rs: float) -> Circuit:
    """The circuit with every ideal diode a Shockley junction (IS, N) behind a series resistance RS (ohm).

    As the netlist parser compiles a diode with RS: a resistor `rs#NAME` from the anode to an internal
    node `NAME#rs`, the junction from there to the cathode.
    """
    ideal = circuit.ideal_diodes
    m = len(ideal.names)
    if m == 0:
        return circuit
    nodes = np.arange(circuit.n_nodes, circuit.n_nodes + m)
    r, d = circuit.resistors, circuit.diodes
    resistors = Resistors(r.names + tuple(f"rs#{name}" for name in ideal.names),
                          np.vstack([r.nodes, np.column_stack([ideal.nodes[:, 0], nodes])]),
                          np.concatenate([r.conductance, np.full(m, 1.0 / rs)]))
    diodes = Diodes(d.names + ideal.names, np.vstack([d.nodes, np.column_stack([nodes, ideal.nodes[:, 1]])]),
                    np.concatenate([d.saturation_current, np.full(m, isat)]),
                    np.concatenate([d.emission, np.full(m, emission)]), d.gmin, d.temperature)
    return replace(circuit, node_names=circuit.node_names + tuple(f"{name}#rs" for name in ideal.names),
                   resistors=resistors, diodes=diodes, ideal_diodes=IdealDiodes((), np.zeros((0, 2))),
                   internal=np.concatenate([circuit.internal, np.ones(m, dtype=bool)]), layers=None, origin=None)


def device_factors(circuit: Circuit, sigma: float, seed: int) -> dict[str, np.ndarray]:
    """Per-device factors e^(sigma n), n ~ N(0, 1), drawn in a fixed order from the seed.

    "resistors" (n_resistors,) multiplies every conductance (a trainable one's is its gain),
    "saturation_current" and "emission" (n_diodes,) the junctions', "inputs" the input map.
    """
    rng = np.random.default_rng([seed, 0x48575])
    shapes = {"resistors": len(circuit.resistors.names), "saturation_current": len(circuit.diodes.names),
              "emission": len(circuit.diodes.names), "inputs": circuit.learning.input_map.shape}
    return {name: np.exp(sigma * rng.standard_normal(shape)) for name, shape in shapes.items()}


def perturbed(circuit: Circuit, sigma: float, seed: int) -> tuple[Circuit, np.ndarray]:
    """(the circuit with its element values off by `device_factors`, the gains of its trainable elements)."""
    factor = device_factors(circuit, sigma, seed)
    d, learning = circuit.diodes, circuit.learning
    circuit = replace(circuit.with_conductance(circuit.resistors.conductance * factor["resistors"]),
                      diodes=replace(d, saturation_current=d.saturation_current * factor["saturation_current"],
                                     emission=d.emission * factor["emission"]),
                      learning=replace(learning, input_map=learning.input_map * factor["inputs"]))
    return circuit, factor["resistors"][learning.trainable]


class CubicProblem(Problem):
    """The co-content of a phase whose trainable resistors have a cubic conductor c = gamma g in parallel.

    Each element's physics comes from the table (RESISTOR for the linear part, CUBIC for the rest).
    Newton iterates on it as on junctions (`has_diodes`: the co-content is not quadratic).
    """

    def __init__(self, circuit: Circuit, source_values, conductance, nudge: Nudge | None, gamma: float):
        super().__init__(circuit, source_values, conductance, nudge)
        trainable = circuit.learning.trainable
        self.Mc, self.Dc = self.Mr[trainable], self.Dr[trainable]
        self.offset_c = self.offset_r[:, trainable]
        self.cubic = gamma * self.g[trainable]  # S / V^2

    @property
    def has_diodes(self) -> bool:
        return True

    def _cubic_voltage(self, z):
        return self._branch(self.Mc, self.offset_c, z)

    def energy(self, z):
        return super().energy(z) + CUBIC.content(self._cubic_voltage(z), self.cubic).sum(axis=1)

    def energy_change(self, z, step):
        change = CUBIC.change(self._cubic_voltage(z), self._branch(self.Mc, 0.0, step), self.cubic).sum(axis=1)
        return super().energy_change(z, step) + change

    def gradient(self, z):
        return super().gradient(z) + np.asarray(CUBIC.current(self._cubic_voltage(z), self.cubic) @ self.Mc)

    def hessian(self, z):
        conductance = CUBIC.conductance(self._cubic_voltage(z), self.cubic)
        blocks = sp.kron(sp.identity(self.batch, format="csr"), self.Mc)
        return sp.csc_matrix(super().hessian(z) + blocks.T @ sp.diags(conductance.ravel()) @ blocks)

    def branch_currents(self, z):
        currents = super().branch_currents(z)
        extra = CUBIC.current(np.asarray((self.Dc @ self.potentials(z).T).T), self.cubic)
        trainable = self.circuit.learning.trainable
        currents["resistors"] = currents["resistors"].copy()
        currents["resistors"][:, trainable] += extra
        leaving = np.asarray(extra @ self.Dc)
        currents["voltage_sources"] = currents["voltage_sources"] + np.asarray(
            (self.topology.source_current @ leaving.T).T)
        return currents


class HardwareCircuit(CircuitSystem, ParameterForce):
    """A circuit as the bench holds it: programmed conductances with per-device gains, optionally a cubic law.

    theta is what the operator programs and reads (the model's units: g / g0 of the nominal
    element); trainable element k conducts gain_k theta_k g0, and with `nonlinearity` gamma its
    current is g (V + gamma V^3).
    """

    def __init__(self, circuit: Circuit, gain: np.ndarray | None = None, nonlinearity: float = 0.0,
                 solver: str = "auto", spec: HardwareSpec | None = None, **solver_options):
        super().__init__(circuit, solver, **solver_options)
        self.gain = np.ones(len(circuit.learning.trainable)) if gain is None else np.asarray(gain, dtype=float)
        self.nonlinearity = float(nonlinearity)
        self.spec = spec or HardwareSpec()
        if self.nonlinearity and len(circuit.ideal_diodes.names):
            raise AeqpropError(f"{circuit.title}: the nonlinear hardware is settled by Newton, which takes no ideal "
                               "diodes; use it on a circuit without them (or --hardware diode for a diode model)")

    @property
    def parameters(self) -> np.ndarray:
        return self._conductance[self.circuit.learning.trainable] / (self.g0 * self.gain)

    @parameters.setter
    def parameters(self, theta: np.ndarray) -> None:
        CircuitSystem.parameters.fset(self, np.asarray(theta, dtype=np.float64) * self.gain)

    def _problem(self, circuit: Circuit, sources, nudge) -> Problem:
        if not self.nonlinearity:
            return super()._problem(circuit, sources, nudge)
        return CubicProblem(circuit, sources, self._conductance, nudge, self.nonlinearity)

    def _solve(self, circuit: Circuit, sources, nudge, x0, callback) -> SolveResult:
        if not self.nonlinearity:
            return super()._solve(circuit, sources, nudge, x0, callback)
        return solve_problem(self._problem(circuit, sources, nudge), newton, "newton", x0=x0, callback=callback)

    def parameter_force(self, state) -> np.ndarray:
        """The hardware's dE/dtheta: gain (1/2 V^2 + gamma V^4 / 4), batch mean (V^2)."""
        v = self.resistor_voltages(state)
        force = RESISTOR.parameter_gradient(v, 1.0) + self.nonlinearity * CUBIC.parameter_gradient(v, 1.0)
        return self.gain * force.mean(axis=0)

    def relax_parameters(self, state, knobs, epsilon) -> np.ndarray:
        return np.clip(knobs - epsilon * self.parameter_force(state), *self.parameter_bounds())

    def current_sensitivity(self, state) -> np.ndarray:
        v = self.resistor_voltages(state)
        return self.gain * (RESISTOR.current(v, 1.0) + CUBIC.current(v, self.nonlinearity))


def build_hardware(model: CircuitSystem, spec: HardwareSpec) -> HardwareCircuit:
    """The hardware of a netlist model: its circuit realised as `spec` says, programmed with the model's theta."""
    circuit = model.circuit
    if spec.kind == "none":
        raise AeqpropError("no hardware asked for (kind 'none')")
    if spec.kind == "diode":
        circuit = with_junctions(circuit, HARDWARE_DIODE["is"], HARDWARE_DIODE["n"], HARDWARE_DIODE["rs"])
    circuit = replace(circuit, learning=replace(circuit.learning, g0=model.g0))
    circuit, gain = perturbed(circuit, spec.mismatch, spec.seed)
    solver = "spice" if spec.kind == "spice" else ("auto" if spec.kind == "diode" else model.solver)
    hardware = HardwareCircuit(circuit, gain, spec.nonlinearity, solver=solver, spec=spec)
    hardware.parameters = model.parameters
    structure(hardware.circuit)  # refuse a hardware without an equilibrium now, not in the first phase
    return hardware


# --- physics-aware training ------------------------------------------------------------------------
class _Paired:
    """A free phase settled on both: the hardware's state (what is read) and the model's (what is differentiated)."""

    def __init__(self, hardware, model, outputs: np.ndarray, error: np.ndarray):
        self.hardware, self.model = hardware, model
        self.outputs = outputs  # the hardware's
        self.error = error  # hardware outputs - model outputs


class PhysicsAware(PhysicalSystem, ExactLossGradient):
    """Hardware forward, model backward (physics-aware training, Wright et al. 2022).

    The parameters are programmed into both. A free phase settles the hardware (its outputs are
    what the loss and the accuracy see) and the model; a nudged phase settles the model towards
    the target shifted by the model's output error, y - (o_hw - o_model), so the model's nudge
    pulls with the hardware's error o_hw - y; the local measurements are the model's. For the
    exact gradient: the model's adjoint at its free state, fed with the hardware's output error.
    Rules that clamp outputs or float parameters (CL, CpL, Aeqprop) have no such form.
    """

    def __init__(self, hardware: PhysicalSystem, model: PhysicalSystem):
        self.hardware, self.model = hardware, model
        self.n_inputs, self.n_outputs = model.n_inputs, model.n_outputs
        if isinstance(model, ConductanceUnits):
            self.g0 = model.g0

    @property
    def parameters(self) -> np.ndarray:
        return self.model.parameters

    @parameters.setter
    def parameters(self, theta: np.ndarray) -> None:
        self.model.parameters = theta
        self.hardware.parameters = theta

    def parameter_bounds(self):
        return self.model.parameter_bounds()

    def settle(self, phase: Phase, start=None, callback=None):
        if phase.clamp is not None:
            raise AeqpropError("physics-aware training takes nudged phases only (EP rules, exact-gradient)")
        if phase.beta == 0.0:
            hardware = self.hardware.settle(phase, start=start.hardware if isinstance(start, _Paired) else None)
            model = self.model.settle(phase, start=start.model if isinstance(start, _Paired) else None,
                                      callback=callback)
            outputs = self.hardware.outputs(hardware)
            return _Paired(hardware, model, outputs, outputs - self.model.outputs(model))
        if not isinstance(start, _Paired):
            start = self.settle(Phase(phase.inputs))
        shifted = Phase(phase.inputs, phase.beta, phase.target - start.error)
        return self.model.settle(shifted, start=start.model, callback=callback)

    def outputs(self, state) -> np.ndarray:
        return state.outputs if isinstance(state, _Paired) else self.model.outputs(state)

    def energy_gradient(self, state) -> np.ndarray:
        return self.model.energy_gradient(state.model if isinstance(state, _Paired) else state)

    def energy(self, state) -> np.ndarray:
        return self.model.energy(state.model if isinstance(state, _Paired) else state)

    def relax_parameters(self, state, knobs, epsilon) -> np.ndarray:
        raise AeqpropError("physics-aware training computes the update with the model; Aeqprop floats the "
                           "hardware's own parameters (train it in situ)")

    def loss_gradient(self, state, target) -> np.ndarray:
        return self.model.loss_gradient(state.model, np.atleast_2d(target) - state.error)
