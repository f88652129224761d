"""One door to every solver: `solve(circuit, method="auto" | "newton" | "coordinate" | "qp" | "spice")`.

Each method is a function of the same shape, (problem, x0, callback, **options) ->
(free potentials, iterations, success, message); `solve` wraps it into a `SolveResult`.
"""

from __future__ import annotations

import numpy as np

from aeqprop_circuits.circuit.circuit import Circuit
from aeqprop_circuits.circuit.energy import Nudge, Problem
from aeqprop_circuits.errors import SolverError
from aeqprop_circuits.solvers.coordinate import coordinate
from aeqprop_circuits.solvers.newton import newton
from aeqprop_circuits.solvers.qp import qp
from aeqprop_circuits.solvers.result import SolveResult

METHODS = {"newton": newton, "coordinate": coordinate, "qp": qp}
SOLVER_NAMES = ("auto", "newton", "coordinate", "qp", "spice")
LAYERED_OPTIONS = {"vtol", "maxiter", "lazy"}  # options the layered path takes; others mean a generic solver


def choose_method(problem: Problem) -> str:
    """newton for smooth circuits, coordinate for box-type ideal-diode networks, qp otherwise."""
    if problem.has_diodes and problem.has_ideal_diodes:
        raise SolverError("circuits mixing ideal and exponential diodes are not supported: mark all "
                          "diode models *@ ideal, or none")
    if not problem.has_ideal_diodes:
        return "newton"
    counts = np.diff(problem.Mx.tocsr().indptr)
    return "coordinate" if (counts <= 1).all() else "qp"


def solve(circuit: Circuit, inputs: np.ndarray | None = None, *, sources: np.ndarray | None = None,
          conductance: np.ndarray | None = None, nudge: Nudge | None = None, method: str = "auto",
          x0: np.ndarray | None = None, callback=None, **options) -> SolveResult:
    """DC operating point(s) of `circuit`.

    inputs:      (B, n_inputs) data for the `*@ input` sources, or
    sources:     (B, n_sources) values of every source (defaults: the netlist's values);
    conductance: resistor conductances (S) overriding the netlist's, shared by the batch;
    nudge:       an extra conductance from the outputs to a target (may be negative);
    x0:          free potentials of an earlier result (`result.free`) to warm-start from.
    """
    if method not in SOLVER_NAMES:
        raise SolverError(f"unknown solver '{method}'; expected one of {', '.join(SOLVER_NAMES)}")
    if sources is None:
        sources = circuit.source_values(inputs)
    if method == "spice":
        from aeqprop_circuits.solvers.spice import spice

        return spice(circuit, sources=sources, conductance=conductance, nudge=nudge, **options)
    if method in ("auto", "coordinate") and _layered_applies(circuit, nudge) and set(options) <= LAYERED_OPTIONS:
        from aeqprop_circuits.solvers.layered import layered

        result = layered(circuit, sources, conductance, nudge, x0=x0, callback=callback, **options)
        if result is not None and result.success:
            return result
    problem = Problem(circuit, sources, conductance, nudge)
    name = choose_method(problem) if method == "auto" else method
    bad = [what for what, values in (("source values", problem.sources), ("conductances", problem.g),
                                      ("nudge target", problem.offset_o), ("x0", x0))
           if values is not None and not np.all(np.isfinite(values))]
    if bad:  # a diverged learning run, say: report it, never iterate on NaN
        return failed_result(problem, f"non-finite {' and '.join(bad)} given: nothing solved", name)
    problem.check_convex()
    z, iterations, success, message = METHODS[name](problem, x0=x0, callback=callback, **options)
    return result_from(problem, z, iterations, success, message, name)


def _layered_applies(circuit: Circuit, nudge: Nudge | None) -> bool:
    """The dense layered path (solvers/layered.py) serves layered networks of ideal diodes.

    Builder networks carry their layers; for netlists they are inferred and checked (once per
    circuit), and circuits that do not fit go the generic way. Nudges of either sign are
    served where the layered path handles them (one hidden layer: its Newton path tests
    convexity and refuses an unbounded negatively nudged phase, as the generic test does);
    elsewhere `layered` returns None and the generic solvers run.
    """
    return len(circuit.diodes.names) == 0 and (circuit.layers is not None or bool(len(circuit.ideal_diodes.names)))


def failed_result(problem: Problem, message: str, name: str) -> SolveResult:
    """A result with success=False and NaN everywhere, for inputs no solver should touch."""
    B, c = problem.batch, problem.circuit
    nan = np.full
    vsrc = int(c.sources.is_voltage.sum())
    currents = {"resistors": nan((B, len(c.resistors.names)), np.nan),
                "diodes": nan((B, len(c.diodes.names)), np.nan),
                "voltage_sources": nan((B, vsrc), np.nan),
                "current_sources": nan((B, len(c.sources.names) - vsrc), np.nan)}
    if problem.has_ideal_diodes:
        currents["ideal_diodes"] = nan((B, len(c.ideal_diodes.names)), np.nan)
    return SolveResult(potentials=nan((B, c.n_nodes), np.nan), currents=currents, energy=nan(B, np.nan),
                       free=nan((B, problem.n_free), np.nan), iterations=0, residual=float("nan"),
                       success=False, message=message, solver=name)


def result_from(problem: Problem, z, iterations, success, message, name) -> SolveResult:
    energy = problem.energy(z)
    currents = problem.branch_currents(z)
    residual = problem.residual(z, currents)
    if not np.all(np.isfinite(z)) or not np.all(np.isfinite(energy)):
        success, message = False, f"{message}; non-finite potentials or energy"
    return SolveResult(potentials=problem.potentials(z), currents=currents, energy=energy,
                       free=z, iterations=int(iterations), residual=residual, success=bool(success),
                       message=message, solver=name)


__all__ = ["solve", "SolveResult", "Nudge", "SOLVER_NAMES", "choose_method", "result_from"]
