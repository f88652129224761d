"""The entry points: `spice()`, one netlist per sample, and `spice_rows()`, one netlist for many rows."""

from __future__ import annotations

import time
from types import MappingProxyType

import numpy as np

from aeqprop_circuits.circuit.circuit import Circuit
from aeqprop_circuits.circuit.energy import Nudge, Problem
from aeqprop_circuits.errors import SolverError
from aeqprop_circuits.solvers.spice.deck import exponential_equivalent, netlist_text, number, rows_deck, spice_name
from aeqprop_circuits.solvers.spice.readout import SpiceResult, SpiceTiming, operating_points
from aeqprop_circuits.solvers.spice.session import Session, quiet, session

# reltol bounds the relative size of ngspice's last Newton update, vntol / abstol its absolute
# floor (V / A). With 1e-12 relative the last update of a 1 V node is ~1e-12 V and, Newton
# converging quadratically, the error of the returned point is far below that.
TIGHT_OPTIONS = MappingProxyType({"reltol": 1e-12, "vntol": 1e-15, "abstol": 1e-18, "itl1": 1000})
# The options the solve benchmark runs ngspice with (looser than TIGHT_OPTIONS).
BENCHMARK_OPTIONS = MappingProxyType({"reltol": 1e-6, "vntol": 1e-9, "abstol": 1e-15})

ROW_METHODS = ("sweep", "alter")


class _Points:
    """What ngspice reported, row by row: node voltages, voltage-source currents, the rows it solved
    and why the others failed, and the seconds spent reading (`times`: write, load, analyses, read)."""

    def __init__(self, circuit: Circuit, rows: int, branch: dict[str, str] | None = None):
        self.circuit = circuit
        self.names = [name.lower() for name in circuit.node_names]
        self.vnames = [spice_name(circuit.sources.names[k], "v") for k in np.flatnonzero(circuit.sources.is_voltage)]
        self.branch = branch or {}  # a source's element name -> the element whose `#branch` is its current
        self.V = np.full((rows, circuit.n_nodes), np.nan)
        self.V[:, 0] = 0.0
        self.i_source = np.full((rows, len(self.vnames)), np.nan)
        self.ok = np.zeros(rows, dtype=bool)
        self.messages: list[str] = []
        self.times = np.zeros(4)

    def store(self, vectors: dict[str, np.ndarray], rows: np.ndarray, at: np.ndarray) -> None:
        """Rows `rows` of the result are the points `at` of ngspice's vectors."""
        t = time.perf_counter()
        for j, name in enumerate(self.names[1:], start=1):
            if name in vectors:
                self.V[rows, j] = vectors[name][at]
        for j, name in enumerate(self.vnames):
            current = vectors.get(f"{self.branch.get(name, name)}#branch")
            if current is not None:
                self.i_source[rows, j] = current[at]
        self.ok[rows] = True
        missing = [name for j, (name, internal) in enumerate(zip(self.names, self.circuit.internal))
                   if j and not internal and name not in vectors]
        if missing:
            self.ok[rows] = False
            self.messages.append(f"{_samples(rows)}: ngspice reported no voltage for node(s) {', '.join(missing[:5])}")
        self.times[3] += time.perf_counter() - t

    def forget(self, rows) -> None:
        self.V[rows, 1:], self.i_source[rows], self.ok[rows] = np.nan, np.nan, False

    def explain_failures(self) -> None:
        for b in np.flatnonzero(~self.ok):
            if not any(m.startswith(f"sample {b}:") for m in self.messages):
                self.messages.append(f"sample {b}: not solved")


def _prepare(circuit: Circuit, sources, conductance, nudge, tight: bool, options
             ) -> tuple[Session, np.ndarray, Problem | None, np.ndarray | None, dict]:
    """What both entry points need first: the ngspice session, the rows, the Problem of the circuit
    with exponential stand-ins (checked convex: the other solvers' diagnosis, before ngspice's gmin
    stepping; None for a circuit with elements only ngspice models), the nudge targets per row and
    the merged `.options`."""
    ngspice = session()
    sources = np.atleast_2d(np.asarray(sources, dtype=np.float64))
    problem = None
    if not circuit.spice_only:
        problem = Problem(exponential_equivalent(circuit), sources, conductance, nudge)
        problem.check_convex()
    target = None
    if nudge is not None:
        target = np.broadcast_to(np.asarray(nudge.target, float), (len(sources), circuit.n_outputs))
    merged = {**(TIGHT_OPTIONS if tight else {}), **(options or {})}
    return ngspice, sources, problem, target, merged


def spice(circuit: Circuit, sources: np.ndarray, conductance: np.ndarray | None = None,
          nudge: Nudge | None = None, tight: bool = False, options: dict | None = None,
          **ignored) -> SpiceResult:
    """Operating points by ngspice `.op`, one netlist per sample.

    sources:     (B, n_sources) values of every source;
    conductance: resistor conductances (S), shared by the batch;
    nudge:       conductance (S, may be negative) from the outputs to target sources;
    tight:       add TIGHT_OPTIONS (reference-grade agreement); `options` adds or overrides
                 any `.options` entry, e.g. BENCHMARK_OPTIONS.
    `x0` and `callback` of the other solvers are accepted and ignored (ngspice has neither).
    Raises SolverError when ngspice is not installed; an ngspice failure (no convergence,
    singular matrix) gives `success=False` with ngspice's message. `result.timing` says where
    the time went.
    """
    ngspice, sources, problem, target, merged = _prepare(circuit, sources, conductance, nudge, tight, options)
    points = _Points(circuit, len(sources))
    times = points.times
    with quiet():
        for b in range(len(sources)):
            t0 = time.perf_counter()
            text, _ = netlist_text(circuit, sources[b], conductance, nudge,
                                   None if target is None else target[b], merged)
            times[0] += time.perf_counter() - t0
            refused, seconds = ngspice.load(text)
            times[1] += seconds
            if refused:
                points.messages.append(f"sample {b}: {refused}")
            else:
                vectors, message, seconds = ngspice.analyse("op", "op")
                times[2] += seconds
                if vectors is None:
                    points.messages.append(f"sample {b}: ngspice .op failed: {message}")
                else:
                    points.store(vectors, np.array([b]), np.array([0]))
            ngspice.clear()
    if problem is None:  # nothing of ours to check its points against: ngspice's convergence is the test
        from aeqprop_circuits.solvers.spice.loaded import passthrough_points

        return passthrough_points(circuit, conductance, points.V, points.i_source, points.ok, points.messages,
                                  SpiceTiming(*times))
    fixed = np.asarray((problem.topology.Q @ sources.T).T)  # potentials the sources fix alone
    return operating_points(circuit, problem, points.V, points.i_source, fixed, points.ok, points.messages,
                            merged, SpiceTiming(*times))


def spice_rows(circuit: Circuit, sources: np.ndarray, conductance: np.ndarray | None = None,
               nudge: Nudge | None = None, tight: bool = False, options: dict | None = None,
               method: str = "sweep") -> SpiceResult:
    """Operating points of one circuit for many source rows, its netlist loaded into ngspice once.

    `spice()` writes and loads the whole netlist for every row, and each of its `.op` starts
    from scratch: Newton from the junction initial guess with two Markowitz reorderings of
    the sparse matrix, which dominate at DRN-XS size (159 040 resistors: ~6 CPU s per row).
    Here the netlist is written and parsed once, then:

    method="sweep" (default): every source whose value differs between rows is written as a
        pwl table of a sweep index (`rows_deck`), and one `dc` sweep of that index over 0, 1,
        ..., B-1 solves all rows. Each row's Newton iteration starts from the previous row's
        operating point and keeps the matrix ordering; where it fails ngspice runs a full
        `.op` (gmin, then source stepping) at that row. The pwl tables are evaluated at their
        breakpoints, so each row sees exactly its values.
    method="alter": sources as written; per row, `alter` of each source whose value changed
        and a full `op` (no re-parsing, but both reorderings every row).

    A row where the sweep stops is solved by `op` (the sweep source altered to that row) and
    the sweep resumes after it; a sweep whose output reports that source stepping failed
    (ngspice's transient fallback) is discarded and its rows are solved by `op` one by one,
    as `spice()` accepts no transient-op point. Arguments and result are those of `spice()`
    (the same device equations and per-row failures in `success` / `message`).

    What counts as an operating point: a sweep row must pass `spice()`'s KCL bound (10 reltol
    times the largest branch current); one that does not is solved again by a full `op`
    (warm-started sweep points were seen to pass ngspice's convergence test 0.5 V away from
    the operating point with stiff stand-ins; `message` counts these rows). A row solved by
    `op` is also accepted when the voltage corrections its KCL residual asks for (residual
    over each node's conductance, diodes' differential conductance included) are within
    10 (reltol |V| + vntol), i.e. ngspice's own convergence criterion: with stiff stand-ins
    such as NEAR_IDEAL_MODEL (~1e3 S per conducting diode) a converged point ~20 uV off is
    a KCL error of tens of mA, which `spice()` rejects at default tolerances.
    `result.timing` has write, load (once), analysis (all rows) and read seconds. The pwl
    tables make the netlist grow with B: split very many rows into chunks of some hundreds.
    """
    if method not in ROW_METHODS:
        raise SolverError(f"method='{method}': expected one of {', '.join(ROW_METHODS)}")
    if circuit.spice_only:
        raise SolverError(f"{circuit.spice_only.describe()}: spice_rows checks each row against our device "
                          "equations, which these elements are not; use spice() or solve(method='spice')")
    ngspice, sources, problem, target, merged = _prepare(circuit, sources, conductance, nudge, tight, options)
    B = len(sources)
    t0 = time.perf_counter()
    deck = rows_deck(circuit, sources, conductance, nudge, target, merged, sweep=method == "sweep")
    points = _Points(circuit, B, deck.branch)
    times = points.times
    times[0] = time.perf_counter() - t0
    fixed = np.asarray((problem.topology.Q @ sources.T).T)
    values = deck.values
    current_values = values[0].copy()
    from_sweep = np.zeros(B, dtype=bool)  # rows whose point comes from a warm-started sweep
    redone: list[int] = []  # sweep rows solved again by `op`

    def op_row(b: int) -> None:
        """`op` at row b: the sweep source set to b, or the changed sources altered."""
        if deck.sweep:
            ngspice.command(f"alter {deck.row_source} = {b}")
        else:
            changed = np.flatnonzero(values[b] != current_values)
            for k in changed:
                ngspice.command(f"alter {deck.elements[k]} = {number(values[b, k])}")
            current_values[changed] = values[b, changed]
        vectors, message, seconds = ngspice.analyse("op", "op")
        times[2] += seconds
        from_sweep[b] = False
        if vectors is None:
            points.messages.append(f"sample {b}: ngspice .op failed: {message}")
        else:
            points.store(vectors, np.array([b]), np.array([0]))

    with quiet():
        error, times[1] = ngspice.load(deck.text)
        if error is not None:
            points.messages.append(error)
        else:
            try:
                start = 0
                while deck.sweep and start < B - 1:
                    vectors, message, seconds = ngspice.analyse(f"dc {deck.row_source} {start} {B - 1} 1", "dc",
                                                                reject_fallback=False)
                    times[2] += seconds
                    done = np.zeros(0, dtype=int)
                    if vectors is not None and message.startswith("source stepping failed"):
                        for b in range(start, B):  # a transient-op point somewhere in the sweep
                            op_row(b)
                        start = B
                        break
                    if vectors is not None and deck.row_node in vectors:
                        done = np.rint(vectors[deck.row_node]).astype(int)
                        points.store(vectors, done, np.arange(len(done)))
                        from_sweep[done] = True
                    start = int(done.max()) + 1 if len(done) else start
                    if start < B:  # the sweep stopped at this row (or it is the last one)
                        op_row(start)
                        start += 1
                for b in range(start, B):
                    op_row(b)
                if from_sweep.any():
                    # A warm-started sweep point can pass ngspice's convergence test far from
                    # the operating point (seen with stiff stand-ins): a sweep row must pass
                    # spice()'s KCL bound, else it is solved again by a full `op`.
                    first = operating_points(circuit, problem, points.V, points.i_source, fixed, points.ok, [],
                                             merged, SpiceTiming(*times))
                    for b in np.flatnonzero(from_sweep & ~np.isfinite(first.potentials).all(axis=1)):
                        points.forget(b)
                        op_row(b)
                        redone.append(int(b))
            finally:
                ngspice.clear()
    points.explain_failures()
    analysis = ".op"
    if deck.sweep:
        analysis = f"dc sweep ({len(redone)} of {B} rows again by .op)" if redone else "dc sweep"
    return operating_points(circuit, problem, points.V, points.i_source, fixed, points.ok, points.messages,
                            merged, SpiceTiming(*times), analysis=analysis, node_voltage_check=~from_sweep)


def _samples(rows: np.ndarray) -> str:
    """'sample 3' or 'samples 3-5', for messages."""
    rows = np.asarray(rows)
    return f"sample {int(rows[0])}" if len(rows) == 1 else f"samples {int(rows.min())}-{int(rows.max())}"
