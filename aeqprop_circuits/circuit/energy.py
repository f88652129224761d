"""The co-content of a circuit as a vectorised function of the free potentials.

`Problem` fixes everything but the free potentials z (B, n_free): the circuit, a batch of
source values, the conductances and an optional nudge on the outputs. It then gives the
total co-content, its gradient (the KCL residual: net current leaving each free supernode,
in amperes), its Hessian and its derivatives in the parameters, as numpy / scipy.sparse
expressions over element groups, each element's physics taken from the table in
`circuit.elements`. It is the reference every fast path is held against.

All quantities are in SI units: volts, amperes, siemens, watts (co-content).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.optimize
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from aeqprop_circuits.circuit.circuit import Circuit
from aeqprop_circuits.circuit.elements import CURRENT_SOURCE, JUNCTION, RESISTOR
from aeqprop_circuits.circuit.topology import Topology, build_topology, check_floating
from aeqprop_circuits.errors import CircuitError

# Per circuit object, for as long as it lives: its topology and reduced incidence matrices.
_STRUCTURES: weakref.WeakKeyDictionary[Circuit, tuple[Topology, dict]] = weakref.WeakKeyDictionary()


def incidence(pairs: np.ndarray, n_nodes: int) -> sp.csr_matrix:
    """(n_elements, n_nodes) matrix D with V @ D.T = branch voltages V[first] - V[second]."""
    m = len(pairs)
    rows = np.repeat(np.arange(m), 2)
    vals = np.tile([1.0, -1.0], m)
    D = sp.csr_matrix((vals, (rows, pairs.ravel())), shape=(m, n_nodes))
    D.sum_duplicates()  # an element with both ends on one node has a zero row
    return D


def structure(circuit: Circuit) -> tuple[Topology, dict]:
    """Topology and reduced incidence matrices of a circuit, computed once per circuit object."""
    cached = _STRUCTURES.get(circuit)
    if cached is not None:
        return cached
    topo = build_topology(circuit)
    n = circuit.n_nodes
    mats = {}
    groups = {"r": circuit.resistors.nodes, "d": circuit.diodes.nodes, "x": circuit.ideal_diodes.nodes,
              "i": circuit.sources.nodes[~circuit.sources.is_voltage],
              "o": circuit.learning.outputs}
    for name, pairs in groups.items():
        D = incidence(pairs, n)
        mats[name] = (D, (D @ topo.P).tocsr(), (D @ topo.Q).tocsr())
    _STRUCTURES[circuit] = topo, mats
    return topo, mats


@dataclass(frozen=True, eq=False)
class Nudge:
    """Energy (conductance / 2) * |outputs - target|^2: a conductance to a source at the target.

    `conductance` is in siemens and may be negative (negatively nudged phases).
    """

    conductance: float
    target: np.ndarray  # (B, n_outputs) volts


class Problem:
    """The co-content of one batch, as a function of the free potentials z (B, n_free)."""

    def __init__(self, circuit: Circuit, source_values: np.ndarray, conductance: np.ndarray | None = None,
                 nudge: Nudge | None = None):
        self.circuit = circuit
        self.topology, mats = structure(circuit)
        self.sources = np.atleast_2d(np.asarray(source_values, dtype=np.float64))
        self.batch = len(self.sources)
        self.g = circuit.resistors.conductance if conductance is None else np.asarray(conductance, float)
        self.nudge = nudge
        d = circuit.diodes
        self.isat, self.nvt, self.gmin = d.saturation_current, d.thermal_voltage, d.gmin
        self.junction = (self.isat, self.nvt, self.gmin)  # the JUNCTION stamp's parameters
        s = self.sources
        # Branch voltage of each group = z @ M.T + offset, offset from the sources.
        self.Dr, self.Mr, Nr = mats["r"]
        self.Dd, self.Md, Nd = mats["d"]
        self.Dx, self.Mx, Nx = mats["x"]
        self.Di, self.Mi, _ = mats["i"]
        self.Do, self.Mo, No = mats["o"]
        self.offset_r = (Nr @ s.T).T
        self.offset_d = (Nd @ s.T).T
        self.offset_x = (Nx @ s.T).T
        self.i_value = s[:, ~circuit.sources.is_voltage]  # (B, n_isources)
        # (B, n_free): the current sources' constant gradient
        self.linear_i = CURRENT_SOURCE.current(0.0, self.i_value) @ self.Mi
        # The nudge is a conductance beta_g from each output to a source at its target (DESIGN.md): a
        # resistor whose branch voltage is V_out - y, so its offset includes -y.
        if nudge is not None:
            target = np.broadcast_to(np.asarray(nudge.target, float), (self.batch, circuit.n_outputs))
            self.offset_o = (No @ s.T).T - target
            self.beta_g = float(nudge.conductance)
        else:
            self.offset_o = np.zeros((self.batch, circuit.n_outputs))
            self.beta_g = 0.0

    @property
    def n_free(self) -> int:
        return self.topology.n_free

    @property
    def has_diodes(self) -> bool:
        return len(self.isat) > 0

    @property
    def has_ideal_diodes(self) -> bool:
        return self.Mx.shape[0] > 0

    # --- potentials and branch voltages ---------------------------------------------------
    def potentials(self, z: np.ndarray) -> np.ndarray:
        """All node potentials (B, n_nodes)."""
        return (self.topology.P @ z.T).T + (self.topology.Q @ self.sources.T).T

    def _branch(self, M, offset, z):
        return (M @ z.T).T + offset

    # --- co-content, gradient, Hessian ----------------------------------------------------
    def _diode(self, v):
        """(co-content, current, conductance) of each junction at branch voltages v (gmin included)."""
        return JUNCTION.content(v, *self.junction), JUNCTION.current(v, *self.junction), \
            JUNCTION.conductance(v, *self.junction)

    def energy(self, z: np.ndarray) -> np.ndarray:
        """Total co-content per sample (B,), watts. +inf where a junction overflows."""
        e = RESISTOR.content(self._branch(self.Mr, self.offset_r, z), self.g).sum(axis=1)
        if self.has_diodes:
            e = e + JUNCTION.content(self._branch(self.Md, self.offset_d, z), *self.junction).sum(axis=1)
        if self.i_value.size:
            vi = (self.Di @ self.potentials(z).T).T
            e = e + CURRENT_SOURCE.content(vi, self.i_value).sum(axis=1)
        if self.beta_g:
            e = e + RESISTOR.content(self._branch(self.Mo, self.offset_o, z), self.beta_g).sum(axis=1)
        return np.where(np.isnan(e), np.inf, e)

    def energy_change(self, z: np.ndarray, step: np.ndarray) -> np.ndarray:
        """E(z + step) - E(z) per sample (B,), watts, summed term by term.

        Near the minimum the change is far below the rounding error of E itself (~1e-16 |E|
        once steps are under ~1e-8 V), so a line search comparing two energies stalls there.
        Each term here is a difference computed without cancellation (the stamps' `change`), so
        the sign of the change is right down to steps of ~1e-14 V. +inf where a junction overflows.
        """
        def term(stamp, M, offset, *parameters):
            return stamp.change(self._branch(M, offset, z), self._branch(M, 0.0, step), *parameters).sum(axis=1)

        change = term(RESISTOR, self.Mr, self.offset_r, self.g)
        if self.has_diodes:
            change = change + term(JUNCTION, self.Md, self.offset_d, *self.junction)
        if self.i_value.size:
            change = change + term(CURRENT_SOURCE, self.Mi, 0.0, self.i_value)
        if self.beta_g:
            change = change + term(RESISTOR, self.Mo, self.offset_o, self.beta_g)
        return np.where(np.isnan(change), np.inf, change)

    def gradient(self, z: np.ndarray) -> np.ndarray:
        """d(co-content)/dz (B, n_free): net current leaving each free supernode (KCL residual), A."""
        grad = self.linear_gradient(z)
        if self.has_diodes:
            grad = grad + JUNCTION.current(self._branch(self.Md, self.offset_d, z), *self.junction) @ self.Md
        return np.asarray(grad)

    def linear_gradient(self, z: np.ndarray) -> np.ndarray:
        """The gradient without the junction currents (resistors, current sources, nudge)."""
        grad = RESISTOR.current(self._branch(self.Mr, self.offset_r, z), self.g) @ self.Mr + self.linear_i
        if self.beta_g:
            grad = grad + RESISTOR.current(self._branch(self.Mo, self.offset_o, z), self.beta_g) @ self.Mo
        return np.asarray(grad)

    def parameter_gradient(self, z: np.ndarray) -> dict[str, np.ndarray]:
        """d(co-content)/d(parameter) per element (B, n_elements): the local measurements.

        "resistors": dE/dg = v^2 / 2 (V^2) for every resistor, "current_sources": dE/dI = v (V)
        for every current source.
        """
        vr = self._branch(self.Mr, self.offset_r, z)
        vi = (self.Di @ self.potentials(z).T).T
        return {"resistors": RESISTOR.parameter_gradient(vr, self.g),
                "current_sources": CURRENT_SOURCE.parameter_gradient(np.asarray(vi), self.i_value)}

    @cached_property
    def network_hessian(self) -> sp.csc_matrix:
        """Hessian of the network's quadratic part (resistors, junctions' gmin), (n_free, n_free)."""
        H = self.Mr.T @ sp.diags(RESISTOR.conductance(0.0, self.g)) @ self.Mr
        if self.has_diodes:
            H = H + RESISTOR.conductance(0.0, self.gmin) * (self.Md.T @ self.Md)
        return sp.csc_matrix(H)

    @cached_property
    def linear_hessian(self) -> sp.csc_matrix:
        """Hessian of the quadratic part (the network's and the nudge's), shared by the batch (n_free, n_free)."""
        if not self.beta_g:
            return self.network_hessian
        return sp.csc_matrix(self.network_hessian + RESISTOR.conductance(0.0, self.beta_g) * (self.Mo.T @ self.Mo))

    def hessian(self, z: np.ndarray) -> sp.csc_matrix:
        """Block-diagonal Hessian of the whole batch (B n_free, B n_free), sample-major."""
        eye = sp.identity(self.batch, format="csr")
        H = sp.kron(eye, self.linear_hessian)
        if self.has_diodes:
            vd = self._branch(self.Md, self.offset_d, z)
            gd = JUNCTION.conductance(vd, *self.junction) - self.gmin  # gmin is in the linear part
            Mb = sp.kron(eye, self.Md)
            H = H + Mb.T @ sp.diags(gd.ravel()) @ Mb
        return sp.csc_matrix(H)

    def check_convex(self) -> None:
        """Refuse a phase without a unique equilibrium: CircuitError, before any solver runs.

        - A resistor set to 0 S is no DC path: the nodes it alone held are floating.
        - A negative nudge (or a negative conductance) stronger than the network makes the
          co-content unbounded below. With K the Hessian of the network's quadratic part,
          K + beta_g Mo^T Mo is positive definite iff I + beta_g Mo K^-1 Mo^T is, a small
          (n_outputs, n_outputs) test; junctions only add curvature, so this is sufficient.
          Negative conductances are tested by the signs of a symmetric LDL^T of the whole
          quadratic part.
        """
        if self.n_free == 0:
            return
        g = self.g
        if (g == 0).any():
            check_floating(self.circuit, self.topology, conducting=g != 0)
        if self.beta_g >= 0 and (g >= 0).all():
            return
        K = self.network_hessian
        if (g >= 0).all():
            cause, advice = f"the negative nudge (conductance {self.beta_g:.3g} S)", "; use a smaller |beta|"
        else:
            k = int(np.argmin(g))
            cause, advice = f"negative conductance {g[k]:.3g} S of {self.circuit.resistors.names[k]}", ""
        try:
            if (g >= 0).all():
                lu = spla.splu(K)
                S = self.Mo @ lu.solve(self.Mo.T.toarray())
                smallest = np.linalg.eigvalsh(np.eye(len(S)) + self.beta_g * 0.5 * (S + S.T)).min()
                positive = smallest > 1e-12
            else:
                # Diagonal pivots only: U = D L^T, and by Sylvester's law of inertia the
                # quadratic part is positive definite iff every pivot is positive.
                total = self.linear_hessian
                lu = spla.splu(total, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                               options={"SymmetricMode": True})
                pivots = lu.U.diagonal()
                diagonal_pivots = np.array_equal(lu.perm_r, lu.perm_c)  # else a zero pivot: not definite
                positive = diagonal_pivots and bool(np.all(pivots > 1e-12 * np.abs(total.diagonal()).max()))
        except RuntimeError:  # singular: a direction of zero curvature, which the nudge bends down
            positive = False
        if not positive:
            raise CircuitError(f"non-convex phase: {cause} makes the co-content unbounded below, so "
                               f"there is no equilibrium{advice}")

    # --- read-outs ------------------------------------------------------------------------
    def residual(self, z: np.ndarray, currents: dict[str, np.ndarray] | None = None) -> float:
        """Largest KCL violation over free supernodes and samples, amperes.

        Conducting ideal diodes carry the current the rest of the circuit leaves for them (their
        KKT multipliers), so it enters the balance: `currents` from `branch_currents(z)`, computed
        here when not given. Without them a clipped node would show its diode current as residual.
        """
        if not self.n_free:
            return 0.0
        grad = self.gradient(z)
        if self.has_ideal_diodes:
            ideal = (self.branch_currents(z) if currents is None else currents)["ideal_diodes"]
            grad = grad + np.asarray(ideal @ self.Mx)
        return float(np.abs(grad).max())

    def branch_currents(self, z: np.ndarray) -> dict[str, np.ndarray]:
        """Per-group branch currents (B, n_elements), SPICE sign: from first node to second."""
        V = self.potentials(z)
        out = {"resistors": RESISTOR.current((self.Dr @ V.T).T, self.g)}
        out["diodes"] = JUNCTION.current((self.Dd @ V.T).T, *self.junction) if self.has_diodes \
            else np.zeros((self.batch, 0))
        # Ideal diodes and voltage sources carry whatever current KCL leaves for them.
        leaving = out["resistors"] @ self.Dr + out["diodes"] @ self.Dd + self.i_value @ self.Di
        if self.beta_g:
            leaving = leaving + RESISTOR.current(self._branch(self.Mo, self.offset_o, z), self.beta_g) @ self.Do
        leaving = np.asarray(leaving)
        if self.has_ideal_diodes:
            out["ideal_diodes"] = self._ideal_diode_currents(z, leaving)
            leaving = leaving + out["ideal_diodes"] @ self.Dx
        out["voltage_sources"] = np.asarray((self.topology.source_current @ np.asarray(leaving).T).T)
        out["current_sources"] = self.i_value
        return out

    def _ideal_diode_currents(self, z, leaving):
        """Currents of conducting ideal diodes: the multipliers of KKT, by least squares on KCL."""
        vx = self._branch(self.Mx, self.offset_x, z)
        Mx = self.Mx.toarray()
        rhs = -np.asarray(leaving @ self.topology.P)  # (B, n_free)
        out = np.zeros_like(vx)
        scale = np.abs(vx).max() + 1.0
        for b in range(self.batch):  # a read-out, not a solver loop
            on = vx[b] > -1e-9 * scale
            if on.any():
                current = np.linalg.lstsq(Mx[on].T, rhs[b], rcond=None)[0]
                if current.min() < -1e-9 * (np.abs(current).max() + 1e-300):
                    # Non-unique split (anti-parallel or parallel ideal diodes): the minimum-norm
                    # one circulates current backwards through some diode; take a forward one.
                    current = scipy.optimize.nnls(Mx[on].T, rhs[b])[0]
                out[b, on] = current
        return out
