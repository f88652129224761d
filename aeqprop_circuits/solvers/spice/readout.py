"""ngspice's node voltages as a `SolveResult`, comparable field by field with our solvers'.

Energy, KCL residual and the branch currents other than the voltage sources' are evaluated
with our device equations at ngspice's voltages. A point is accepted only where it satisfies
KCL to ngspice's own tolerances: ngspice may "succeed" through its transient-op fallback with
a point that is no operating point (e.g. a singular matrix).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aeqprop_circuits.circuit.circuit import Circuit
from aeqprop_circuits.circuit.energy import Problem
from aeqprop_circuits.solvers.result import SolveResult


@dataclass(frozen=True)
class SpiceTiming:
    """Wall-clock seconds of one `spice()` or `spice_rows()` call, summed over the batch."""

    write: float  # our netlist writer
    load: float  # ngspice reading and parsing the netlist (`source`)
    op: float  # ngspice's analyses themselves, netlist parsing excluded
    read: float  # reading vectors back


@dataclass(frozen=True, eq=False)
class SpiceResult(SolveResult):
    """A `SolveResult` from ngspice, with the time its stages took."""

    timing: SpiceTiming


def operating_points(circuit: Circuit, problem: Problem, V: np.ndarray, i_source: np.ndarray, fixed: np.ndarray,
                     ok: np.ndarray, messages: list[str], options: dict, timing: SpiceTiming, analysis: str = ".op",
                     node_voltage_check: bool | np.ndarray = False) -> SpiceResult:
    """The result from ngspice's node voltages V (B, n_nodes) and voltage-source currents (NaN rows
    where it failed); `fixed` the potentials the sources fix alone, `ok` the rows ngspice solved.

    A row that violates KCL beyond ngspice's own tolerances (`options`: reltol, abstol) is marked
    failed. node_voltage_check (per row, or for all) also accepts a row whose residual corresponds
    to node-voltage corrections within 10x ngspice's reltol |V| + vntol (see `spice_rows`).
    """
    B = len(V)
    ok, messages = ok.copy(), list(messages)
    P = problem.topology.P
    reported = ~np.isnan(V)
    shifted = np.where(reported, V - fixed, 0.0)
    z = np.asarray(shifted @ P) / np.maximum(np.asarray(reported.astype(float) @ P), 1)
    if np.isnan(V[ok]).any():
        # Internal nodes ngspice keeps to itself (a diode's RS node): from our equations.
        z = _fill_internal(problem, z, np.isnan(V) & ok[:, None])
    energy = problem.energy(z)
    currents = problem.branch_currents(z)
    currents["voltage_sources"] = i_source  # ngspice's own branch currents (SPICE sign)
    n_d = len(circuit.diodes.names)
    currents["ideal_diodes"] = currents["diodes"][:, n_d:]
    currents["diodes"] = currents["diodes"][:, :n_d]
    kcl = np.abs(problem.gradient(z)).max(axis=1) if problem.n_free else np.zeros(B)
    scale = np.max([np.abs(np.nan_to_num(a)).max(axis=1, initial=0.0) for a in currents.values()], axis=0)
    allowed = 10.0 * float(options.get("reltol", 1e-3)) * scale + 10.0 * float(options.get("abstol", 1e-12))
    # ... and no less than what rounding ngspice's voltages to doubles costs in KCL
    v_scale = np.abs(np.nan_to_num(V)).max(axis=1, initial=1.0)
    g_scale = max(np.abs(problem.g).max(initial=0.0), 1e-300)
    if problem.has_diodes:
        g_scale = max(g_scale, float(np.nan_to_num(problem._diode(problem._branch(
            problem.Md, problem.offset_d, z))[2]).max(initial=0.0)))
    allowed = allowed + 256 * np.finfo(float).eps * v_scale * g_scale
    accepted = kcl <= allowed
    node_voltage_check = np.broadcast_to(node_voltage_check, (B,))
    if node_voltage_check.any() and problem.n_free:
        # The Newton correction the residual asks for at each node (residual over the node's
        # own conductance, diodes' differential conductance included) within 10x ngspice's
        # node-voltage tolerance: what ngspice itself converged on.
        diagonal = np.asarray(problem.linear_hessian.diagonal())[None, :]
        if problem.has_diodes:
            gd = problem._diode(problem._branch(problem.Md, problem.offset_d, z))[2] - problem.gmin
            diagonal = diagonal + np.asarray(gd @ problem.Md.multiply(problem.Md))
        correction = np.abs(problem.gradient(z)) / np.maximum(diagonal, 1e-300)
        tolerance = 10.0 * (float(options.get("reltol", 1e-3)) * v_scale + float(options.get("vntol", 1e-6)))
        accepted |= node_voltage_check & (correction.max(axis=1) <= tolerance)
    for b in np.flatnonzero(ok & ~accepted):
        ok[b] = False
        messages.append(f"sample {b}: ngspice's point violates KCL by {kcl[b]:.3g} A (allowed "
                        f"{allowed[b]:.3g} A): not an operating point")
    success = bool(ok.all())
    residual = float(kcl[ok].max(initial=0.0)) if success else float("nan")
    message = f"ngspice {analysis} converged" if success else "ngspice failed: " + " | ".join(messages)
    # never hand on a point that is not an operating point
    potentials = np.where(ok[:, None], problem.potentials(z), np.nan)
    return SpiceResult(potentials=potentials, currents=currents, energy=energy, free=z, iterations=0,
                       residual=residual, success=success, message=message, solver="spice", timing=timing)


def _fill_internal(problem: Problem, z: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """Free potentials of nodes ngspice did not report, by our newton with the others fixed."""
    from aeqprop_circuits.solvers.newton import newton

    free_missing = np.unique(problem.topology.free_of_node[np.flatnonzero(missing.any(axis=0))])
    free_missing = free_missing[free_missing >= 0]
    if not len(free_missing):
        return z
    # Newton on the full problem warm-started at ngspice's point converges in a step or two
    # and moves the reported nodes only by ngspice's own residual error.
    z0 = z.copy()
    z0[:, free_missing] = 0.0
    z_full, *_ = newton(problem, x0=z0)
    z = z.copy()
    z[:, free_missing] = z_full[:, free_missing]
    return z
