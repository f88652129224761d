"""The least control that holds a circuit's outputs at their targets (Meulemans et al., the least-control principle).

A controller may inject a current psi_i into every free node i. With psi injected, the
equilibrium satisfies Kirchhoff's law with the injection, grad_z E(z) = psi (E the co-content,
grad_z E the net current leaving each free node through the network). The least control is

    psi* = argmin 1/2 |psi|^2  over (z, psi)  with  grad_z E(z) = psi  and  outputs(z) = y,

i.e. z* = argmin_z 1/2 |grad_z E(z)|^2 subject to the outputs at y, and psi* = grad_z E(z*).
Learning reduces the control needed: H(theta) = 1/2 |psi*|^2, and by the envelope theorem
(z* optimal, the constraint free of theta) its gradient is local,

    dH/dg_k = psi*^T d(grad_z E)/dg_k = dV_k (psi*_a - psi*_b)

for a resistor k from node a to node b (psi* = 0 on nodes held by sources). In the normalised
units of `CircuitSystem` (theta = g / g0, currents / g0, i.e. psi in volts times g0 units) the
formula holds unchanged.

`least_control` solves it for a batch with Gauss-Newton steps under the output constraint
(exact for linear networks in one step; a fixed point is a stationary point of 1/2 |grad E|^2
since its Jacobian, the Hessian of E, is symmetric). Ideal diodes that clip a node to a rail
(box-type networks) hold it at its bound: the diode, not the controller, carries its imbalance
as long as it conducts forwards; where it would have to conduct backwards the controller
supplies the rest, and the node stays held. Nodes start held as in the free equilibrium and
nodes that leave their range join them (never the reverse, so the active set settles): the
least control for that active set, a local solution of a combinatorial problem.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from aeqprop_circuits.circuit.circuit import Circuit, Sources
from aeqprop_circuits.circuit.energy import Nudge, Problem, structure
from aeqprop_circuits.errors import AeqpropError, CircuitError, DivergenceError
from aeqprop_circuits.solvers.coordinate import box_bounds

MEASURES = ("current", "voltage")


@dataclass(frozen=True, eq=False)
class Controlled:
    """The least-controlled equilibrium of a batch.

    potentials (B, n_nodes) volts; control psi* per free (super)node (B, n_free), in units of g0 V
    (a current / g0); held: nodes an ideal diode holds at a bound (B, n_free); cost: H = 1/2 |psi*|^2
    per sample (B,); iterations of the solver.
    """

    potentials: np.ndarray
    control: np.ndarray
    held: np.ndarray
    cost: np.ndarray
    iterations: int
    problem: Problem
    free: np.ndarray
    measure: str = "current"
    weight: np.ndarray | None = None  # per free node: 1, or g0 / G_i (normalised units)
    unsettled: int = 0  # an observing controller's samples whose control still moved at its last calibration


def least_control(system, inputs: np.ndarray, target: np.ndarray, start: np.ndarray | None = None,
                  max_iterations: int = 60, tolerance: float = 1e-12, measure: str = "current") -> Controlled:
    """psi* and z* for a batch of inputs and output targets on a `CircuitSystem` (module docstring).

    start: free potentials to begin from (e.g. the free phase's `result.free`); measure: what
    the controller's cost counts, "current" (|psi|) or "voltage" (|psi_i / G_i|, module docstring).
    """
    if measure not in MEASURES:
        raise AeqpropError(f"least control: measure '{measure}': expected one of {', '.join(MEASURES)}")
    circuit = system.circuit
    inputs, target = np.atleast_2d(inputs), np.atleast_2d(target)
    # A nudge of zero conductance adds no energy; its target makes the output offset V_out - y.
    problem = system._problem(circuit, circuit.source_values(inputs), Nudge(0.0, target))  # its device laws
    B, n = problem.batch, problem.n_free
    low, high = box_bounds(problem)
    z = np.zeros((B, n)) if start is None else np.array(start, dtype=np.float64)
    z = np.clip(z, low, high)
    scale = 1.0 + np.abs(z).max(initial=0.0)
    held = (z <= low + 1e-12 * scale) | (z >= high - 1e-12 * scale)
    A = sp.kron(sp.identity(B), problem.Mo, format="csr")
    offset = problem.offset_o.ravel()
    weight = _weights(problem, measure)  # (n,): 1, or 1 / G_i (S^-1)
    rescale = sp.diags(np.tile(weight, B))
    for iteration in range(1, max_iterations + 1):
        gradient = problem.gradient(z)
        rows, cols = _controlled(z, gradient, held, low, high).ravel(), ~held.ravel()
        J = (rescale @ problem.hessian(z))[rows][:, cols]
        gradient = gradient * weight
        Af = A[:, cols]
        kkt = sp.bmat([[J.T @ J, Af.T], [Af, None]], format="csc")
        rhs = np.concatenate([-(J.T @ gradient.ravel()[rows]), -(A @ z.ravel() + offset)])
        step = np.zeros(B * n)
        step[cols] = spla.spsolve(kkt, rhs)[:cols.sum()]
        step = step.reshape(B, n)
        before = _cost(gradient, z, held, low, high)
        for _ in range(30):  # backtrack on 1/2 |psi|^2 once the outputs are held (a step keeps them there)
            if iteration == 1 or _cost(weight * problem.gradient(np.clip(z + step, low, high)), z + step, held, low,
                                       high) <= before * (1 + 1e-12):
                break
            step = 0.5 * step
        out_of_range = ~held & ((z + step < low) | (z + step > high))
        z = np.clip(z + step, low, high)
        held = held | out_of_range
        moved = np.abs(step).max(initial=0.0)
        if not out_of_range.any() and moved <= tolerance * scale and iteration > 1:
            break
    else:
        raise DivergenceError(f"least control did not settle in {max_iterations} iterations (last step "
                              f"{moved:.3g} V): the outputs may be out of the circuit's reach")
    if np.abs(A @ z.ravel() + offset).max() > 1e-8 * scale:
        raise DivergenceError("least control cannot hold the outputs at their targets: they are out of the "
                              "circuit's reach with its nodes held by the diodes")
    gradient = problem.gradient(z)
    control = np.where(_controlled(z, gradient, held, low, high), gradient, 0.0)
    scaled = control * weight / (system.g0 if measure == "current" else 1.0)
    return Controlled(problem.potentials(z), control / system.g0, held, 0.5 * (scaled * scaled).sum(axis=1),
                      iteration, problem, z, measure, weight * system.g0)


def _weights(problem: Problem, measure: str) -> np.ndarray:
    """Per free node: 1 ("current"), or 1 / G_i with G_i the node's total resistor conductance ("voltage")."""
    if measure == "current":
        return np.ones(problem.n_free)
    total = np.asarray(problem.network_hessian.diagonal()).ravel()
    return 1.0 / total


def _controlled(z, gradient, held, low, high) -> np.ndarray:
    """Nodes that take control: the free ones, and held ones whose diode would have to conduct backwards."""
    backwards = ((z >= high) & (gradient > 0)) | ((z <= low) & (gradient < 0))
    return ~held | backwards


def _cost(gradient, z, held, low, high) -> float:
    taking = np.where(_controlled(z, gradient, held, low, high), gradient, 0.0)
    return float(0.5 * (taking * taking).sum())


def control_gradient(system, controlled: Controlled) -> np.ndarray:
    """dH/dtheta (P,), batch mean, for each trainable resistor k from a to b (module docstring):

    current: dV_k (psi_a - psi_b); voltage, with d_i = psi_i / G_i:
    dV_k (d_a / G_a - d_b / G_b) - d_a^2 / G_a - d_b^2 / G_b (G in g0, the sums over free nodes).
    """
    trainable = system.circuit.learning.trainable
    pairs = system.circuit.resistors.nodes[trainable]
    V = controlled.potentials
    dv = V[:, pairs[:, 0]] - V[:, pairs[:, 1]]
    Mr = controlled.problem.Mr[trainable]
    if controlled.measure == "current":
        return (dv * np.asarray((Mr @ controlled.control.T).T)).mean(axis=0)  # psi_a - psi_b
    displacement = controlled.control * controlled.weight  # d_i = psi_i / G_i, volts
    pull = np.asarray((Mr @ (displacement * controlled.weight).T).T)  # d_a / G_a - d_b / G_b
    load = np.asarray((abs(Mr) @ (displacement ** 2 * controlled.weight).T).T)  # d_a^2 / G_a + d_b^2 / G_b
    return (dv * pull - load).mean(axis=0)


_INSTRUMENTED: weakref.WeakKeyDictionary[Circuit, tuple[Circuit, np.ndarray]] = weakref.WeakKeyDictionary()


def instrumented(circuit: Circuit) -> tuple[Circuit, np.ndarray]:
    """The circuit with a current source from ground into every free (super)node, and those nodes.

    The sources are the actuators of an observe-and-inject controller; they come last, after the
    netlist's, driven by no data column. Built once per circuit object.
    """
    cached = _INSTRUMENTED.get(circuit)
    if cached is not None:
        return cached
    topology, _ = structure(circuit)
    free_of_node = topology.free_of_node
    first = np.unique(free_of_node, return_index=True)[1]  # the first node of each value, -1 (fixed) first
    nodes = first[1:] if free_of_node.min() < 0 else first  # one node per free (super)node, in free order
    src, n = circuit.sources, len(nodes)
    sources = Sources(src.names + tuple(f"iinject{k}" for k in range(n)),
                      np.vstack([src.nodes, np.column_stack([np.zeros(n, dtype=np.int64), nodes])]),
                      np.concatenate([src.value, np.zeros(n)]), np.concatenate([src.is_voltage, np.zeros(n, bool)]))
    learning = circuit.learning
    in_map = np.vstack([learning.input_map, np.zeros((n, learning.input_map.shape[1]))])
    built = replace(circuit, sources=sources, learning=replace(learning, input_map=in_map), layers=None), nodes
    _INSTRUMENTED[circuit] = built
    return built


class InjectionHandle:
    """All an observe-and-inject controller may do with a circuit and one batch of inputs.

    It injects currents psi (normalised: amperes / g0) into the free nodes through current
    sources, lets the physics relax, and reads the outputs; each node also knows its own total
    conductance (a local quantity, for the control measured in volts). Nothing here reads the
    co-content, its gradient or its Hessian: the physics' own relaxation is the only solver.
    `controlled` reads the last relaxed state for the local update.
    """

    def __init__(self, system, inputs: np.ndarray):
        self._system = system
        self._circuit, self.nodes = instrumented(system.circuit)
        self._inputs = np.atleast_2d(inputs)
        self._base = system.circuit.source_values(self._inputs)
        self._last = None  # the last relaxed state of the batch itself (no leading axes)
        self.relaxations = 0

    @property
    def channels(self) -> int:
        return len(self.nodes)

    @property
    def batch(self) -> int:
        return len(self._inputs)

    def node_conductance(self) -> np.ndarray:
        """Each free node's total resistor conductance, in g0 (n,)."""
        problem = Problem(self._system.circuit, self._base[:1], self._system.conductance)
        total = problem.Mr.multiply(problem.Mr).T @ problem.g
        if problem.has_diodes:  # their gmin, as in the oracle's measure
            total = total + problem.Md.multiply(problem.Md).T @ np.broadcast_to(problem.gmin, problem.Md.shape[0])
        return np.asarray(total).ravel() / self._system.g0

    def relax(self, psi: np.ndarray) -> np.ndarray:
        """Inject psi (..., B, n) and let the circuit settle; its outputs (..., B, n_outputs)."""
        psi = np.asarray(psi, dtype=np.float64)
        lead, B = psi.shape[:-2], self.batch
        copies = int(np.prod(lead, dtype=np.int64))
        sources = np.hstack([np.tile(self._base, (copies, 1)), psi.reshape(-1, self.channels) * self._system.g0])
        x0 = None if self._last is None else np.tile(self._last.free, (copies, 1))
        system = self._system
        try:  # the system's own physics (a hardware's device laws included) on the instrumented circuit
            result = system._solve(self._circuit, sources, None, x0, None)
        except CircuitError as err:
            raise DivergenceError(f"the circuit did not settle under the controller's currents: {err}") from None
        if not result.success:
            raise DivergenceError(f"the circuit did not settle under the controller's currents: {result.message}")
        self.relaxations += copies
        if not lead:
            self._last = result
        outs = system.circuit.learning.outputs
        V = result.potentials
        return (V[:, outs[:, 0]] - V[:, outs[:, 1]]).reshape(*lead, B, -1)

    def controlled(self, psi: np.ndarray, target: np.ndarray, measure: str, iterations: int,
                   unsettled: int = 0) -> Controlled:
        """The last relaxed state, under the control psi (B, n), as a `Controlled` for `control_gradient`."""
        system = self._system
        problem = Problem(system.circuit, self._base, system.conductance, Nudge(0.0, np.atleast_2d(target)))
        weight = _weights(problem, measure) * system.g0  # 1 (x g0) or g0 / G_i
        scaled = psi * (weight if measure == "voltage" else 1.0)
        low, high = box_bounds(problem)
        z = self._last.free
        held = (z <= low) | (z >= high)
        return Controlled(self._last.potentials, psi, held, 0.5 * (scaled * scaled).sum(axis=1), iterations,
                          problem, z, measure, weight, unsettled)
