"""One door to every solver, in the manner of `scipy.optimize.minimize`: `solve(circuit, method=...)`.

`METHODS` maps each name to a function of one shape,
(circuit, sources, conductance, nudge, *, x0, callback, **options) -> SolveResult:

- `layered`: dense blocks for layered networks of resistors and ideal diodes (solvers/layered.py), or
  of resistors and Shockley diodes with one hidden layer (block Newton, solvers/shockley.py);
- `newton`, `coordinate`, `qp`: solvers of the co-content `Problem` (damped Newton for smooth
  circuits, exact block coordinate descent for box-type ideal-diode networks, a convex QP for
  any ideal-diode network);
- `spice`: ngspice's `.op` (solvers/spice/), the circuit kept loaded and altered from call to
  call; the only method for a circuit with elements only ngspice models (`Circuit.spice_only`).

A named method is the one that runs; where it does not apply to the circuit a SolverError says
why. `auto` takes `layered` where it applies and converges, else `choose_method`'s pick, and
`spice` for a circuit with elements only ngspice models.
`SolveResult.solver` names what ran.

A method may also be a callable: a solver of the co-content, as newton, coordinate and qp are,

    method(problem, x0=None, callback=None, **options) -> (free, iterations, success, message)

problem:  the `Problem`: co-content, gradient and Hessian of the free potentials;
x0:       (B, n_free) free potentials to start from, or None;
callback: to call with the (B,) co-content after each iteration; raising StopIteration in it
          ends the loop (the method then returns success=False and says so);
free:     (B, n_free) the free potentials found, iterations an int, success a bool, message why.
`solve` refuses non-finite inputs and non-convex phases before calling it, and reads the energy,
currents and KCL residual at its answer; `SolveResult.solver` is the callable's `__name__`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

import numpy as np

from aeqprop_circuits.circuit.circuit import Circuit
from aeqprop_circuits.circuit.energy import Nudge, Problem
from aeqprop_circuits.errors import SolverError
from aeqprop_circuits.solvers.coordinate import coordinate
from aeqprop_circuits.solvers.layered import layered, layered_structure
from aeqprop_circuits.solvers.newton import newton
from aeqprop_circuits.solvers.qp import qp
from aeqprop_circuits.solvers.result import SolveResult

Method = Callable[..., SolveResult]
LAYERED_OPTIONS = frozenset({"vtol", "maxiter", "lazy"})  # the layered path's options; others make auto go generic


def solve(circuit: Circuit, inputs: np.ndarray | None = None, *, sources: np.ndarray | None = None,
          conductance: np.ndarray | None = None, nudge: Nudge | None = None, method: str | Callable = "auto",
          x0: np.ndarray | None = None, callback=None, **options) -> SolveResult:
    """DC operating point(s) of `circuit`.

    inputs:      (B, n_inputs) data for the `*@ input` sources, or
    sources:     (B, n_sources) values of every source (defaults: the netlist's values);
    conductance: resistor conductances (S) overriding the netlist's, shared by the batch;
    nudge:       an extra conductance from the outputs to a target (may be negative);
    method:      a name of SOLVER_NAMES, or a solver of the co-content (see the module's doc);
    x0:          free potentials of an earlier result (`result.free`) to warm-start from;
    options:     passed on to the method (e.g. vtol, maxiter).
    """
    if circuit.spice_only and method not in ("auto", "spice"):
        raise SolverError(f"{circuit.spice_only.describe()}: modelled by ngspice alone; use the spice solver "
                          "(--solver spice)")
    if circuit.spice_only:
        method = "spice"
    if callable(method):
        run = on_problem(method, getattr(method, "__name__", type(method).__name__))
    elif method == "auto":
        run = auto
    elif method in METHODS:
        run = METHODS[method]
    else:
        raise SolverError(f"unknown solver '{method}'; expected one of {', '.join(SOLVER_NAMES)}")
    if sources is None:
        sources = circuit.source_values(inputs)
    return run(circuit, sources, conductance, nudge, x0=x0, callback=callback, **options)


def choose_method(problem: Problem) -> str:
    """newton for smooth circuits, coordinate for box-type ideal-diode networks, qp otherwise."""
    if problem.has_diodes and problem.has_ideal_diodes:
        raise SolverError("circuits mixing ideal and exponential diodes are not supported: mark all "
                          "diode models *@ ideal, or none")
    if not problem.has_ideal_diodes:
        return "newton"
    counts = np.diff(problem.Mx.tocsr().indptr)
    return "coordinate" if (counts <= 1).all() else "qp"


def auto(circuit: Circuit, sources, conductance=None, nudge: Nudge | None = None, *, x0=None, callback=None,
         **options) -> SolveResult:
    """`layered` where it applies and converges; else newton, coordinate or qp (`choose_method`)."""
    if _layered_applies(circuit, nudge) and set(options) <= LAYERED_OPTIONS and not _non_finite(sources, nudge, x0):
        result = layered(circuit, sources, conductance, nudge, x0=x0, callback=callback, **options)
        if result is not None and result.success:
            return result
    problem = Problem(circuit, sources, conductance, nudge)
    name = choose_method(problem)
    return solve_problem(problem, PROBLEM_SOLVERS[name], name, x0=x0, callback=callback, **options)


def _layered_applies(circuit: Circuit, nudge: Nudge | None) -> bool:
    """Whether `auto` tries the dense layered path: networks of resistors and ideal diodes, or of
    resistors and Shockley diodes.

    Builder networks carry their layers; for netlists they are inferred and checked (once per
    circuit), and circuits that do not fit go the generic way (`layered` returns None).
    """
    diodes, ideal = len(circuit.diodes.names), len(circuit.ideal_diodes.names)
    return not (diodes and ideal) and (circuit.layers is not None or bool(ideal) or bool(diodes))


def run_layered(circuit: Circuit, sources, conductance=None, nudge: Nudge | None = None, *, x0=None, callback=None,
                **options) -> SolveResult:
    """The dense layered path; SolverError where the circuit or the nudge is not one it serves."""
    bad = _non_finite(sources, nudge, x0)
    if bad:
        return failed_result(Problem(circuit, sources, conductance, nudge), bad, "layered")
    result = layered(circuit, sources, conductance, nudge, x0=x0, callback=callback, **options)
    if result is None:
        structure = layered_structure(circuit)
        if structure is None:
            why = ("the circuit is not a layered network (resistors only between consecutive layers, in full "
                   "blocks; ideal or Shockley diodes, not both, only from layer nodes to fixed potentials; no "
                   "current sources)")
        elif structure.junctions is not None:
            why = "with Shockley diodes it serves networks of one hidden layer"
        else:
            why = ("it takes a nudge only on a network of one hidden layer whose outputs are free nodes of "
                   "the output layer")
        raise SolverError(f"method 'layered' does not apply: {why}; use auto, coordinate or qp")
    if not result.success and conductance is not None and not np.isfinite(conductance).all():
        return failed_result(Problem(circuit, sources, conductance, nudge), "non-finite conductances given: "
                             "nothing solved", "layered")
    return result


def on_problem(solver: Callable, name: str) -> Method:
    """A solver of the co-content (newton, coordinate, qp, or a caller's) as a method of `solve`."""

    def method(circuit: Circuit, sources, conductance=None, nudge: Nudge | None = None, *, x0=None, callback=None,
               **options) -> SolveResult:
        problem = Problem(circuit, sources, conductance, nudge)
        return solve_problem(problem, solver, name, x0=x0, callback=callback, **options)

    method.__name__ = name
    return method


def solve_problem(problem: Problem, solver: Callable, name: str, *, x0=None, callback=None,
                  **options) -> SolveResult:
    """Run a solver of the co-content on a checked problem and read its answer out."""
    bad = _non_finite(problem.sources, problem.nudge, x0, problem.g)
    if bad:  # a diverged learning run, say: report it, never iterate on NaN
        return failed_result(problem, bad, name)
    problem.check_convex()
    z, iterations, success, message = solver(problem, x0=x0, callback=callback, **options)
    return result_from(problem, z, iterations, success, message, name)


def run_spice(circuit: Circuit, sources, conductance=None, nudge: Nudge | None = None, *, x0=None, callback=None,
              **options) -> SolveResult:
    """ngspice's `.op` on the circuit kept loaded (solvers/spice/loaded.py, imported when first used);
    x0 and callback do not apply."""
    from aeqprop_circuits.solvers.spice.loaded import solve_loaded

    return solve_loaded(circuit, sources, conductance, nudge, **options)


def _non_finite(sources, nudge: Nudge | None, x0, conductance=None) -> str:
    """What is not finite among the inputs ('' when all are), as a message."""
    bad = [what for what, values in (("source values", sources), ("conductances", conductance),
                                      ("nudge target", None if nudge is None else nudge.target), ("x0", x0))
           if values is not None and not np.isfinite(values).all()]
    return f"non-finite {' and '.join(bad)} given: nothing solved" if bad else ""


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


PROBLEM_SOLVERS: Mapping[str, Callable] = MappingProxyType({"newton": newton, "coordinate": coordinate, "qp": qp})
METHODS: Mapping[str, Method] = MappingProxyType({
    "layered": run_layered, **{name: on_problem(fn, name) for name, fn in PROBLEM_SOLVERS.items()}, "spice": run_spice})
SOLVER_NAMES = ("auto", *METHODS)

__all__ = ["solve", "SolveResult", "Nudge", "METHODS", "SOLVER_NAMES", "choose_method", "result_from"]
