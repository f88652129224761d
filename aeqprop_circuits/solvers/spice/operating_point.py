"""The `spice` solver: ngspice's `.op` through PySpice's shared-library interface.

A reference, not a fast path: each sample of the batch is written as a netlist (the
package's own writer, with that sample's source values, the given conductances and the
nudge as extra elements), loaded into libngspice and solved by ngspice's DC operating-point
analysis. The node voltages and voltage-source branch currents ngspice reports are read
back; energy, KCL residual and the other branch currents are evaluated with our device
equations at ngspice's voltages, so a `SolveResult` from ngspice is comparable field by field
with one from `newton`, `coordinate` or `qp`.

How elements become SPICE:
- a nudge of conductance beta to target y on output diff(p, n) is a resistor 1/beta from p
  to an extra node held at V(n) + y by a voltage source referenced to n (ngspice accepts
  the negative resistor of a negative nudge);
- ideal diodes are written as exponential diodes of `circuit.ideal_diodes.spice_model`
  (tiny IS, small N), so ngspice solves an approximation of the ideal circuit: a conducting
  diode then drops N Vt ln(I / IS) instead of 0 V (tens of mV at mA currents with the
  default model, see docs/benchmarks.md). The result's energy, residual and currents are
  those of that exponential circuit, i.e. of what ngspice actually solved.

Tolerances: ngspice's defaults (reltol 1e-3, vntol 1e-6 V) stop Newton at millivolt-level
updates. `tight=True` adds `.options` TIGHT_OPTIONS, with which ngspice's last Newton update
is below ~1e-12 V, so its operating point agrees with ours to ~1e-12 V on smooth circuits
(tests/test_spice.py checks <= 1e-9 V).

Many rows of one circuit: `spice_rows()` loads the netlist once and solves every row in
one ngspice `dc` sweep (the sources that vary become pwl tables indexed by the sweep
variable, each row warm-started from the previous one) or by `alter` + `op` per row, with
the same result as `spice()`; at DRN-XS size the sweep takes ~2.6 s of ngspice time per
row where `alter` + `op` takes ~18 s and `spice()` ~35 s (docs/drn.md). `NEAR_IDEAL_MODEL`
is a stiffer ideal-diode stand-in (~1 mV forward drop) for `with_spice_model()`.

PySpice is imported only inside the solver functions, never at package import.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass, replace

import numpy as np

from aeqprop_circuits.circuit.circuit import Circuit, Diodes, IdealDiodes
from aeqprop_circuits.circuit.energy import Nudge, Problem
from aeqprop_circuits.errors import SolverError
from aeqprop_circuits.solvers.result import SolveResult

# reltol bounds the relative size of ngspice's last Newton update, vntol / abstol its absolute
# floor (V / A). With 1e-12 relative the last update of a 1 V node is ~1e-12 V and, Newton
# converging quadratically, the error of the returned point is far below that.
TIGHT_OPTIONS = {"reltol": 1e-12, "vntol": 1e-15, "abstol": 1e-18, "itl1": 1000}
# The options the issue asks the benchmark to run with (looser than TIGHT_OPTIONS).
BENCHMARK_OPTIONS = {"reltol": 1e-6, "vntol": 1e-9, "abstol": 1e-15}

# ngspice-39 raises a diode's IS below 1e-28 A to 1e-28 A (measured: `showmod` prints 1e-28
# for is=1e-30 and is=3e-29), so the stand-in for an ideal diode uses at least that.
NGSPICE_MIN_IS = 1e-28

INSTALL_HINT = ("install it with `apt-get install ngspice libngspice0-dev` (Debian/Ubuntu), "
                "`brew install ngspice` (macOS) or `conda install -c conda-forge ngspice`, and "
                "`pip install PySpice`; set NGSPICE_LIBRARY_PATH if libngspice is in an unusual place")


@dataclass(frozen=True)
class SpiceTiming:
    """Wall-clock seconds of the last `spice()` or `spice_rows()` call, summed over the batch."""

    write: float  # our netlist writer
    load: float  # ngspice reading and parsing the netlist (`source`)
    op: float  # ngspice's `.op` itself (`run`), netlist parsing excluded
    read: float  # reading vectors back


last_timing: SpiceTiming | None = None
# A netlist ngspice cannot parse leaves libngspice unusable for the rest of the process.
_unrecoverable = False


@contextlib.contextmanager
def _quiet():
    """Silence PySpice's loggers (version warnings, ngspice stderr echoed as errors)."""
    logger = logging.getLogger("PySpice")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def ngspice_instance():
    """The process-wide NgSpiceShared instance; SolverError when ngspice or PySpice is missing."""
    try:
        with _quiet():
            from PySpice.Spice.NgSpice.Shared import NgSpiceShared

            return NgSpiceShared.new_instance()
    except Exception as error:  # ImportError, OSError from dlopen, ngspice init failures
        raise SolverError(f"ngspice not found ({type(error).__name__}: {error}): {INSTALL_HINT}") from None


def ngspice_available() -> bool:
    """True when the `spice` solver can run here."""
    try:
        ngspice_instance()
    except SolverError:
        return False
    return True


def _spice_model_parameters(model: str) -> tuple[float, float]:
    """(IS, N) from a model string like 'is=1e-20 n=0.05'."""
    values = dict(re.findall(r"(\w+)\s*=\s*([-+0-9.eE]+)", model.lower()))
    return float(values.get("is", 1e-14)), float(values.get("n", 1.0))


def exponential_equivalent(circuit: Circuit) -> Circuit:
    """The circuit ngspice solves: ideal diodes replaced by exponential ones of their spice_model.

    Diodes come first (circuit order), then the former ideal diodes.
    """
    ideal = circuit.ideal_diodes
    if len(ideal.names) == 0:
        return circuit
    isat, n = _spice_model_parameters(ideal.spice_model)
    isat = max(isat, NGSPICE_MIN_IS)
    d = circuit.diodes
    m = len(ideal.names)
    diodes = Diodes(d.names + ideal.names, np.vstack([d.nodes, ideal.nodes]),
                    np.concatenate([d.saturation_current, np.full(m, isat)]),
                    np.concatenate([d.emission, np.full(m, n)]), d.gmin)
    return replace(circuit, diodes=diodes, ideal_diodes=IdealDiodes((), np.zeros((0, 2))))


def _fresh_name(prefix: str, taken: set[str]) -> str:
    name, k = prefix, 0
    while name in taken:
        k += 1
        name = f"{prefix}_{k}"
    taken.add(name)
    return name


def _spice_name(name: str, letter: str) -> str:
    """An element's name as the writer gives it to ngspice (kind letter first), lower case."""
    name = name.lower()
    return name if name[:1] == letter else f"{letter}_{name}"


def _format(value: float) -> str:
    return repr(float(value))


OPEN_CONDUCTANCE = 1e-15  # S: a resistor trained to 0 S, for ngspice (1 POhm passes < 1 fA per volt)


def netlist_text(circuit: Circuit, sources_row: np.ndarray, conductance: np.ndarray | None = None,
                 nudge: Nudge | None = None, target_row: np.ndarray | None = None,
                 options: dict | None = None) -> tuple[str, list[str]]:
    """The netlist ngspice runs for one sample, and the names of the extra nudge sources.

    Our writer's text with this sample's source values and the conductances, then the nudge
    elements, `.options`, `.op` and `.end`.
    """
    from aeqprop_circuits.netlist.writer import write_netlist

    c = circuit if conductance is None else circuit.with_conductance(np.asarray(conductance, float))
    if (c.resistors.conductance == 0).any():  # trained to 0 S: open, which SPICE writes as 1 POhm
        c = c.with_conductance(np.where(c.resistors.conductance == 0, OPEN_CONDUCTANCE, c.resistors.conductance))
    c = replace(c, sources=replace(c.sources, value=np.asarray(sources_row, float)))
    body = [line for line in write_netlist(c).splitlines()
            if not re.match(r"\s*\.(end|op)\b", line, flags=re.IGNORECASE)]
    extra: list[str] = []
    extra_sources: list[str] = []
    if nudge is not None and float(nudge.conductance) != 0.0:
        taken_nodes = set(circuit.node_names)
        taken = {name.lower() for name in (*circuit.resistors.names, *circuit.diodes.names,
                                           *circuit.ideal_diodes.names, *circuit.sources.names)}
        resistance = 1.0 / float(nudge.conductance)
        extra.append("* nudge: conductance to a source at the target, per output")
        for o, (p, n) in enumerate(circuit.learning.outputs):
            node = _fresh_name(f"nudge_target{o}", taken_nodes)
            vname = _fresh_name(f"vnudge{o}", taken)
            rname = _fresh_name(f"rnudge{o}", taken)
            extra.append(f"{vname} {node} {circuit.node_names[n]} dc {_format(target_row[o])}")
            extra.append(f"{rname} {circuit.node_names[p]} {node} {_format(resistance)}")
            extra_sources.append(vname)
    if options:
        extra.append(".options " + " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                            for k, v in options.items()))
    extra += [".op", ".end"]
    return "\n".join(body + extra) + "\n", extra_sources


def _vectors(ng) -> dict[str, float]:
    plot = ng.plot(None, ng.last_plot)
    return {name.lower(): float(np.real(vector._data[0])) for name, vector in plot.items()}


def _run_one(ng, text: str) -> tuple[dict[str, float] | None, str, float, float, float]:
    """Load and run one netlist; (vectors or None, ngspice message, load s, op s, read s).

    PySpice raises on any stderr line that is not a "Warning:" (ngspice's "Note: ..." lines
    too), so success is judged by what ngspice produced, not by those exceptions.
    """
    refused, load_seconds = _source(ng, text)
    if refused:
        return None, refused, 0.0, 0.0, 0.0
    t1 = time.perf_counter()
    with contextlib.suppress(NameError):
        ng.exec_command("run")
    t2 = time.perf_counter()
    output = ng.stdout + "\n" + ng.stderr
    message = _ngspice_message(output)
    names = ng.plot_names
    if re.search(r"source stepping failed", output, re.IGNORECASE):
        message = ("gmin and source stepping failed; ngspice's transient-op fallback is not "
                   "accepted as an operating point: " + message)
        names = []
    if not names or not names[0].startswith("op"):
        with contextlib.suppress(NameError):
            ng.destroy("all")
        with contextlib.suppress(NameError):
            ng.remove_circuit()
        return None, "ngspice .op failed: " + (message or "no operating point"), load_seconds, t2 - t1, 0.0
    vectors = _vectors(ng)
    t3 = time.perf_counter()
    with contextlib.suppress(NameError):
        ng.destroy(names[0])
    with contextlib.suppress(NameError):
        ng.remove_circuit()
    return vectors, message, load_seconds, t2 - t1, t3 - t2


def _ngspice_message(output: str, limit: int = 6) -> str:
    """ngspice's distinct errors and warnings (not its notes) on one line."""
    lines = [re.sub(r"^(Trying gmin|Supplies reduced)[^A-Z]*[^ ]*\s*", "", line.strip())
             for line in output.splitlines()]
    keep = [line for line in lines if re.search(r"error|warning|singular|converge|abort|fail|limit",
                                                  line, re.IGNORECASE)]
    distinct = list(dict.fromkeys(keep))
    return "; ".join(distinct[:limit]) + ("; ..." if len(distinct) > limit else "")


def _prepare(circuit: Circuit, sources, conductance, nudge, tight: bool, options):
    """What both spice entry points need first: the ngspice instance, the rows, the circuit with
    exponential stand-ins, its Problem (checked convex: the other solvers' diagnosis, before
    ngspice's gmin stepping), the nudge targets per row and the merged `.options`."""
    ng = ngspice_instance()
    if _unrecoverable:
        raise SolverError("libngspice stopped after a netlist it could not parse and cannot be "
                          "reloaded in this process; restart Python to use the spice solver again")
    sources = np.atleast_2d(np.asarray(sources, dtype=np.float64))
    solved = exponential_equivalent(circuit)
    problem = Problem(solved, sources, conductance, nudge)
    problem.check_convex()
    target = None
    if nudge is not None:
        target = np.broadcast_to(np.asarray(nudge.target, float), (len(sources), circuit.n_outputs))
    merged = {**(TIGHT_OPTIONS if tight else {}), **(options or {})}
    return ng, sources, solved, problem, target, merged


def spice(circuit: Circuit, sources: np.ndarray, conductance: np.ndarray | None = None,
          nudge: Nudge | None = None, tight: bool = False, options: dict | None = None,
          **ignored) -> SolveResult:
    """Operating points by ngspice `.op`, one sample at a time.

    sources:     (B, n_sources) values of every source;
    conductance: resistor conductances (S), shared by the batch;
    nudge:       conductance (S, may be negative) from the outputs to target sources;
    tight:       add TIGHT_OPTIONS (reference-grade agreement); `options` adds or overrides
                 any `.options` entry, e.g. BENCHMARK_OPTIONS.
    `x0` and `callback` of the other solvers are accepted and ignored (ngspice has neither).
    Raises SolverError when ngspice is not installed; an ngspice failure (no convergence,
    singular matrix) gives `success=False` with ngspice's message.
    """
    global last_timing
    ng, sources, solved, problem, target, merged = _prepare(circuit, sources, conductance, nudge, tight, options)
    B = len(sources)

    names = [name.lower() for name in circuit.node_names]
    vnames = [_spice_name(circuit.sources.names[k], "v") for k in problem.topology.voltage_sources]
    V = np.zeros((B, circuit.n_nodes))
    i_source = np.zeros((B, len(vnames)))
    fixed = np.asarray((problem.topology.Q @ sources.T).T)  # potentials the sources fix alone
    ok = np.ones(B, dtype=bool)
    messages = []
    times = np.zeros(4)
    with _quiet():
        for b in range(B):
            t0 = time.perf_counter()
            text, _ = netlist_text(circuit, sources[b], conductance, nudge,
                                   None if target is None else target[b], merged)
            times[0] += time.perf_counter() - t0
            vectors, message, t_load, t_op, t_read = _run_one(ng, text)
            times[1:] += (t_load, t_op, t_read)
            if vectors is None:
                ok[b] = False
                messages.append(f"sample {b}: {message}")
                V[b] = np.nan
                continue
            missing = [name for name, internal in zip(names[1:], circuit.internal[1:])
                       if name not in vectors and not internal]
            if missing:
                ok[b] = False
                shown = ", ".join(missing[:5])
                messages.append(f"sample {b}: ngspice reported no voltage for node(s) {shown}")
            V[b, 1:] = [vectors.get(name, np.nan) for name in names[1:]]
            i_source[b] = [vectors.get(f"{name}#branch", np.nan) for name in vnames]
    last_timing = SpiceTiming(*times)
    return _solve_result(circuit, problem, V, i_source, fixed, ok, messages, merged)


def _solve_result(circuit: Circuit, problem: Problem, V: np.ndarray, i_source: np.ndarray, fixed: np.ndarray,
                  ok: np.ndarray, messages: list[str], merged: dict, analysis: str = ".op",
                  node_voltage_check: bool | np.ndarray = False) -> SolveResult:
    """A SolveResult from ngspice's node voltages V and source currents (NaN rows where it failed).

    Energy, currents and KCL residual come from our equations at ngspice's voltages; a row
    that violates KCL beyond ngspice's own tolerances is marked failed. node_voltage_check
    (per row, or for all) also accepts a row whose residual corresponds to node-voltage
    corrections within 10x ngspice's reltol |V| + vntol (see `spice_rows`).
    """
    B = len(V)
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
    # ngspice may "succeed" through its transient-op fallback with a point that is no
    # operating point (e.g. a singular matrix): accept only what satisfies KCL to ngspice's
    # own tolerances.
    kcl = np.abs(problem.gradient(z)).max(axis=1) if problem.n_free else np.zeros(B)
    scale = np.max([np.abs(np.nan_to_num(a)).max(axis=1, initial=0.0) for a in currents.values()], axis=0)
    allowed = 10.0 * float(merged.get("reltol", 1e-3)) * scale + 10.0 * float(merged.get("abstol", 1e-12))
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
        tolerance = 10.0 * (float(merged.get("reltol", 1e-3)) * v_scale + float(merged.get("vntol", 1e-6)))
        accepted |= node_voltage_check & (correction.max(axis=1) <= tolerance)
    for b in np.flatnonzero(ok & ~accepted):
        ok[b] = False
        messages.append(f"sample {b}: ngspice's point violates KCL by {kcl[b]:.3g} A (allowed "
                        f"{allowed[b]:.3g} A): not an operating point")
    V[~ok] = np.nan  # never hand on a point that is not an operating point
    success = bool(ok.all())
    residual = float(kcl[ok].max(initial=0.0)) if success else float("nan")
    message = f"ngspice {analysis} converged" if success else "ngspice failed: " + " | ".join(messages)
    return SolveResult(potentials=np.where(ok[:, None], problem.potentials(z), V), currents=currents,
                       energy=energy, free=z, iterations=0, residual=residual, success=success,
                       message=message, solver="spice")


# An exponential stand-in for ideal diodes close to ideal: a conducting one drops
# N Vt ln(I / IS) ~ 1 mV at mA currents (26 uV per e-fold of current), against ~40-50 mV for
# the circuits' default `IdealDiodes.spice_model` (IS = 1e-20 A, N = 0.05); ngspice still
# converges with it (its junction limiting works in units of N Vt). docs/drn.md measures it.
NEAR_IDEAL_MODEL = "is=1e-20 n=0.001"

ROW_METHODS = ("sweep", "alter")


def with_spice_model(circuit: Circuit, model: str) -> Circuit:
    """The circuit with its ideal diodes written to SPICE as exponential diodes `.model ... D (model)`."""
    return replace(circuit, ideal_diodes=replace(circuit.ideal_diodes, spice_model=model))


def spice_rows(circuit: Circuit, sources: np.ndarray, conductance: np.ndarray | None = None,
               nudge: Nudge | None = None, tight: bool = False, options: dict | None = None,
               method: str = "sweep") -> SolveResult:
    """Operating points of one circuit for many source rows, its netlist loaded into ngspice once.

    `spice()` writes and loads the whole netlist for every row, and each of its `.op` starts
    from scratch: Newton from the junction initial guess with two Markowitz reorderings of
    the sparse matrix, which dominate at DRN-XS size (159 040 resistors: ~6 CPU s per row).
    Here the netlist is written and parsed once, then:

    method="sweep" (default): every source whose value differs between rows is written as a
        behavioural source `b... n+ n- v = pwl(v(rowidx), 0, s_0, 1, s_1, ...)` (`i = ...` for
        a current source) of an extra node `rowidx` held by one voltage source, and one `dc`
        sweep of that source over 0, 1, ..., B-1 solves all rows. Each row's Newton iteration
        starts from the previous row's operating point and keeps the matrix ordering; where it
        fails ngspice runs a full `.op` (gmin, then source stepping) at that row. The pwl
        tables are evaluated at their breakpoints, so each row sees exactly its values.
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
    `last_timing` gets write, load (once), analysis (all rows) and read seconds. The pwl
    tables make the netlist grow with B: split very many rows into chunks of some hundreds.
    """
    global last_timing
    if method not in ROW_METHODS:
        raise SolverError(f"method='{method}': expected one of {', '.join(ROW_METHODS)}")
    ng, sources, solved, problem, target, merged = _prepare(circuit, sources, conductance, nudge, tight, options)
    B = len(sources)

    times = np.zeros(4)
    t0 = time.perf_counter()
    text, nudge_sources = netlist_text(circuit, sources[0], conductance, nudge,
                                       None if target is None else target[0], merged)
    # every source ngspice sees (ours, then the nudge's targets) and its value per row
    letters = ["v" if v else "i" for v in circuit.sources.is_voltage]
    element = [_spice_name(n, letter) for n, letter in zip(circuit.sources.names, letters)]
    element += [name.lower() for name in nudge_sources]
    values = np.hstack([sources, target]) if nudge_sources else sources
    varying = np.flatnonzero((values != values[0]).any(axis=0))
    lines = [line for line in text.splitlines() if not re.match(r"\s*\.op\b", line, re.IGNORECASE)]
    branch = {name: name for name in element}  # the element whose `#branch` is each source's current
    sweep = method == "sweep" and B > 1 and len(varying) > 0
    row_node = row_source = ""
    if sweep:
        taken = {word.lower() for line in lines[1:] for word in line.split()[:3]}
        row_node, row_source = _fresh_name("rowidx", taken), _fresh_name("vrowidx", taken)
        index = {name: k for k, name in enumerate(element)}
        varies = set(varying.tolist())
        for i in range(1, len(lines)):
            words = lines[i].split()
            k = index.get(words[0].lower()) if words else None
            if k is None or k not in varies:
                continue
            name = _fresh_name(f"b_{element[k]}", taken)
            table = ", ".join(f"{r}, {_format(values[r, k])}" for r in range(B))
            lines[i] = f"{name} {words[1]} {words[2]} {element[k][0]} = pwl(v({row_node}), {table})"
            branch[element[k]] = name
        lines.insert(len(lines) - 1, f"{row_source} {row_node} 0 dc 0")  # before .end
    text = "\n".join(lines) + "\n"
    times[0] = time.perf_counter() - t0

    names = [name.lower() for name in circuit.node_names]
    vnames = [_spice_name(circuit.sources.names[k], "v") for k in problem.topology.voltage_sources]
    V = np.full((B, circuit.n_nodes), np.nan)
    V[:, 0] = 0.0
    i_source = np.full((B, len(vnames)), np.nan)
    fixed = np.asarray((problem.topology.Q @ sources.T).T)
    ok = np.zeros(B, dtype=bool)
    messages: list[str] = []

    def store(vectors: dict[str, np.ndarray], rows: np.ndarray, at: np.ndarray) -> None:
        t = time.perf_counter()
        for j, name in enumerate(names[1:], start=1):
            if name in vectors:
                V[rows, j] = vectors[name][at]
        for j, name in enumerate(vnames):
            current = vectors.get(f"{branch[name]}#branch")
            if current is not None:
                i_source[rows, j] = current[at]
        ok[rows] = True
        missing = [name for j, (name, internal) in enumerate(zip(names, circuit.internal))
                   if j and not internal and name not in vectors]
        if missing:
            ok[rows] = False
            messages.append(f"sample(s) {_rows_text(rows)}: ngspice reported no voltage for node(s) "
                            f"{', '.join(missing[:5])}")
        times[3] += time.perf_counter() - t

    def op_row(b: int) -> None:
        """`op` at row b: the sweep source set to b, or the changed sources altered."""
        if sweep:
            _command(ng, f"alter {row_source} = {b}")
        else:
            changed = np.flatnonzero(values[b] != current_values)
            for k in changed:
                _command(ng, f"alter {element[k]} = {_format(values[b, k])}")
            current_values[changed] = values[b, changed]
        vectors, message, seconds = _analyse(ng, "op", "op")
        times[2] += seconds
        from_sweep[b] = False
        if vectors is None:
            messages.append(f"sample {b}: ngspice .op failed: {message or 'no operating point'}")
        else:
            store(vectors, np.array([b]), np.array([0]))

    current_values = values[0].copy()
    from_sweep = np.zeros(B, dtype=bool)  # rows whose point comes from a warm-started sweep
    redone: list[int] = []  # sweep rows solved again by `op`
    with _quiet():
        error, times[1] = _source(ng, text)
        if error is not None:
            messages.append(error)
        else:
            try:
                start = 0
                while sweep and start < B - 1:
                    vectors, message, seconds = _analyse(ng, f"dc {row_source} {start} {B - 1} 1", "dc",
                                                         reject_fallback=False)
                    times[2] += seconds
                    done = np.zeros(0, dtype=int)
                    if vectors is not None and message.startswith("source stepping failed"):
                        for b in range(start, B):  # a transient-op point somewhere in the sweep
                            op_row(b)
                        start = B
                        break
                    if vectors is not None and row_node in vectors:
                        done = np.rint(vectors[row_node]).astype(int)
                        store(vectors, done, np.arange(len(done)))
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
                    first = _solve_result(circuit, problem, V.copy(), i_source, fixed, ok.copy(), [], merged)
                    for b in np.flatnonzero(from_sweep & ~np.isfinite(first.potentials).all(axis=1)):
                        V[b, 1:], i_source[b], ok[b] = np.nan, np.nan, False
                        op_row(b)
                        redone.append(int(b))
            finally:
                with contextlib.suppress(Exception):
                    ng.destroy("all")
                with contextlib.suppress(Exception):
                    ng.remove_circuit()
    for b in np.flatnonzero(~ok):
        if not any(m.startswith(f"sample {b}:") for m in messages):
            messages.append(f"sample {b}: not solved")
    last_timing = SpiceTiming(*times)
    analysis = ".op"
    if sweep:
        analysis = f"dc sweep ({len(redone)} of {B} rows again by .op)" if redone else "dc sweep"
    return _solve_result(circuit, problem, V, i_source, fixed, ok, messages, merged, analysis=analysis,
                         node_voltage_check=~from_sweep)


def _rows_text(rows: np.ndarray) -> str:
    rows = np.asarray(rows)
    return str(int(rows[0])) if len(rows) == 1 else f"{int(rows.min())}-{int(rows.max())}"


def _command(ng, command: str) -> str:
    """Run one ngspice command; its stdout and stderr (PySpice's exceptions on stderr lines ignored)."""
    from PySpice.Spice.NgSpice.Shared import NgSpiceCommandError

    with contextlib.suppress(NgSpiceCommandError, NameError):
        ng.exec_command(command)
    return ng.stdout + "\n" + ng.stderr


def _source(ng, text: str) -> tuple[str | None, float]:
    """Load a netlist into ngspice (`source` of a temporary file): (error or None, seconds)."""
    global _unrecoverable
    from PySpice.Spice.NgSpice.Shared import NgSpiceCommandError

    handle = tempfile.NamedTemporaryFile("w", suffix=".cir", delete=False)
    try:
        with handle:
            handle.write(text)
        t0 = time.perf_counter()
        refused = False
        try:
            ng.exec_command(f"source {handle.name}")
        except NgSpiceCommandError:
            pass
        except NameError:
            refused = True
        seconds = time.perf_counter() - t0
        output = ng.stdout + "\n" + ng.stderr
        if "cannot recover" in output:
            _unrecoverable = True
        if refused or _unrecoverable or re.search(r"^\s*(error|please check your input)", output,
                                                   re.IGNORECASE | re.MULTILINE):
            return "ngspice refused the netlist: " + _ngspice_message(output), seconds
        return None, seconds
    finally:
        os.unlink(handle.name)


def _analyse(ng, command: str, kind: str, reject_fallback: bool = True
             ) -> tuple[dict[str, np.ndarray] | None, str, float]:
    """Run an analysis of the loaded circuit: (its vectors or None, ngspice's message, seconds).

    The vectors are arrays (one value per point); the plot is destroyed after reading. A
    result reached by ngspice's transient-op fallback (after gmin and source stepping
    failed) is no operating point: None with reject_fallback, else the message says
    "source stepping failed".
    """
    t0 = time.perf_counter()
    output = _command(ng, command)
    seconds = time.perf_counter() - t0
    message = _ngspice_message(output)
    plot_names = ng.plot_names
    fallback = re.search(r"source stepping failed", output, re.IGNORECASE) is not None
    if fallback and not reject_fallback:
        message = "source stepping failed; " + message
    if fallback and reject_fallback:
        message = ("gmin and source stepping failed; ngspice's transient-op fallback is not "
                   "accepted as an operating point: " + message)
        plot_names = [name for name in plot_names if not name.startswith(kind)]
    if not plot_names or not plot_names[0].startswith(kind):
        with contextlib.suppress(Exception):
            if ng.plot_names and ng.plot_names[0] != "const":
                ng.destroy(ng.plot_names[0])
        return None, message or "no result", seconds
    plot = ng.plot(None, plot_names[0])
    vectors = {name.lower(): np.atleast_1d(np.real(np.asarray(vector._data))).astype(float)
               for name, vector in plot.items()}
    with contextlib.suppress(Exception):
        ng.destroy(plot_names[0])
    return vectors, message, seconds


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
