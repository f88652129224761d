"""Benchmarks: our DC operating point against ngspice's `.op` on deep resistive networks.

`bench_solve` builds DRNs with 784 doubled inputs (1568 input sources), H hidden nodes and 10
differential outputs, random conductances and ideal diodes, and in one run times
- our solvers, each by name through `solve`: `layered` (dense blocks, exact) and `coordinate`
  (exact block coordinate descent on the sparse `Problem`), and which one `auto` runs;
- ngspice `.op` (through the `spice` solver, PySpice shared library) on the very netlist our
  writer produces, with `.options reltol=1e-6 vntol=1e-9 abstol=1e-15`, split into loading
  (netlist parsing) and the `.op` itself; ideal diodes are written as exponential diodes of
  the circuit's `spice_model`, so this pair is compared only to the stand-in's accuracy;
- the same DRN with exponential diodes (IS = 1e-14 A, N = 1), our `layered` (block Newton,
  solvers/shockley.py) and `newton` against ngspice, where all solve the same equations, for the
  1e-9 V agreement;
- the time per iteration against a matrix-vector floor (the same conductance blocks times a
  vector), and a batch of 64 samples per sample.

Timings are wall-clock minima over `repeats` runs (ngspice: `spice_repeats`). Each column is
named after the method that ran it (`SolveResult.solver`).
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable

import numpy as np

from aeqprop_circuits.circuit.builder import deep_resistive_network
from aeqprop_circuits.errors import SolverError

N_INPUTS, N_OUTPUTS = 784, 10

NOTES = """Notes.
- *layered* is `solve(..., method="layered")` (dense blocks; the hidden layer in closed form, exact
  semi-smooth Newton on the outputs); *coordinate* is `solve(..., method="coordinate")` (exact block
  coordinate descent on the sparse `Problem`, polished exactly once the active set is found). Both
  are exact to rounding: *max abs dV layered / coordinate* is their difference. *auto runs* is the
  method `solve`'s default chose.
- ngspice times come from the `spice` solver (PySpice shared library): *load* is `source` of the
  netlist file our writer produced (parsing), *.op* is the `run` command alone.
- With ideal diodes ngspice solves exponential stand-ins (`IdealDiodes.spice_model`, IS = 1e-20 A,
  N = 0.05): a conducting one drops N Vt ln(I/IS) ~ 40-50 mV at these currents, hence the
  ~5e-2 V difference; the exponential-diode table is the like-for-like accuracy comparison.
- Tight options: reltol=1e-12 vntol=1e-15 abstol=1e-18 (`spice.TIGHT_OPTIONS`), run up to H=100.
- Times are minima over repeats; the BLAS threads are what the environment sets
  (OPENBLAS_NUM_THREADS)."""


def _best(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """(min wall-clock seconds, last result) over `repeats` calls."""
    best, result = np.inf, None
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def _max_dv(a, b) -> float:
    return float(np.nanmax(np.abs(np.asarray(a.potentials) - np.asarray(b.potentials))))


def _spice_run(circuit, sources, options, repeats):
    """(load s, .op s, result) minimised over repeats; raises SolverError without ngspice."""
    from aeqprop_circuits.solvers.spice import spice

    load = op = np.inf
    result = None
    for _ in range(max(1, repeats)):
        result = spice(circuit, sources=sources, options=options)
        if result.timing.load + result.timing.op < load + op:
            load, op = result.timing.load, result.timing.op
    return load, op, result


def _timed(circuit, sources, method: str, repeats: int) -> tuple[float, object]:
    """(min seconds, result) of `solve` by `method` after one warm-up call (structures cached per circuit)."""
    from aeqprop_circuits.solvers import solve

    solve(circuit, sources=sources, method=method)
    seconds, result = _best(lambda: solve(circuit, sources=sources, method=method), repeats)
    if method != "auto" and result.solver != method:
        raise RuntimeError(f"solve(method='{method}') ran '{result.solver}'")
    return seconds, result


def bench_one(hidden: int, *, seed: int = 0, batch: int = 64, repeats: int = 5, spice_repeats: int = 1,
              ngspice: bool = True, generic: bool = True, tight_max_hidden: int = 100,
              log: Callable[[str], None] | None = None) -> dict:
    """All measurements for one hidden width; a flat dict (seconds, volts, counts)."""
    from aeqprop_circuits.solvers.spice import BENCHMARK_OPTIONS, TIGHT_OPTIONS

    say = log or (lambda message: None)
    rng = np.random.default_rng(seed)
    circuit = deep_resistive_network([N_INPUTS, hidden, N_OUTPUTS], seed=seed)
    x = rng.uniform(-1.0, 1.0, (batch, N_INPUTS))
    sources = circuit.source_values(x)
    one = sources[:1]
    row: dict = {"hidden": hidden, "resistors": len(circuit.resistors.names),
                 "nodes": circuit.n_nodes - 1}

    # Ours, one sample: the dense layered path, the generic coordinate descent, and auto's choice.
    say(f"H={hidden}: layered")
    row["layered_s"], fast = _timed(circuit, one, "layered", repeats)
    row["layered_iterations"] = fast.iterations
    row["layered_success"] = fast.success
    row["auto_s"], chosen = _timed(circuit, one, "auto", repeats)
    row["auto_solver"] = chosen.solver
    if generic:
        say(f"H={hidden}: coordinate")
        row["coordinate_s"], slow = _timed(circuit, one, "coordinate", max(1, repeats // 2))
        row["coordinate_iterations"] = slow.iterations
        row["layered_vs_coordinate_dv"] = _max_dv(fast, slow)

    # The matrix-vector floor: every conductance block times a vector, once.
    blocks = [b.weights(circuit.resistors.conductance) for b in _structure(circuit).blocks]
    vectors = [np.ones((1, len(W))) for W in blocks]
    row["matvec_floor_s"], _ = _best(lambda: [v @ W for v, W in zip(vectors, blocks)], repeats * 4)
    row["layered_per_iteration_s"] = row["layered_s"] / max(fast.iterations, 1)
    if generic:
        row["coordinate_per_iteration_s"] = row["coordinate_s"] / max(row["coordinate_iterations"], 1)

    # Batch: per-sample time.
    say(f"H={hidden}: batch {batch}")
    row["batch"] = batch
    row["layered_batch_per_sample_s"] = _timed(circuit, sources, "layered", repeats)[0] / batch
    vectors = [np.ones((batch, len(W))) for W in blocks]
    row["matvec_floor_batch_per_sample_s"] = _best(lambda: [v @ W for v, W in zip(vectors, blocks)],
                                                   repeats)[0] / batch

    # Exponential diodes: newton vs ngspice on identical equations.
    smooth = deep_resistive_network([N_INPUTS, hidden, N_OUTPUTS], seed=seed, ideal=False)
    say(f"H={hidden}: newton (exponential diodes)")
    row["newton_s"], ours_smooth = _timed(smooth, one, "newton", max(1, repeats // 2))
    say(f"H={hidden}: layered block Newton (exponential diodes)")
    row["shockley_layered_s"], layered_smooth = _timed(smooth, one, "layered", repeats)
    row["shockley_auto_solver"] = solve_name(smooth, one)
    row["shockley_layered_vs_newton_dv"] = _max_dv(layered_smooth, ours_smooth)
    if ngspice:
        try:
            say(f"H={hidden}: ngspice .op, ideal diodes as exponential stand-ins")
            load, op, theirs = _spice_run(circuit, one, BENCHMARK_OPTIONS, spice_repeats)
            row.update(spice_load_s=load, spice_op_s=op, spice_success=theirs.success,
                       ideal_vs_standin_dv=_max_dv(fast, theirs))
            say(f"H={hidden}: ngspice .op, exponential diodes")
            load, op, theirs = _spice_run(smooth, one, BENCHMARK_OPTIONS, spice_repeats)
            row.update(spice_exp_load_s=load, spice_exp_op_s=op, spice_exp_success=theirs.success,
                       exp_dv=_max_dv(ours_smooth, theirs), exp_layered_dv=_max_dv(layered_smooth, theirs))
            if hidden <= tight_max_hidden:
                say(f"H={hidden}: ngspice .op, exponential diodes, tight options")
                _, _, tight = _spice_run(smooth, one, {**TIGHT_OPTIONS}, 1)
                row.update(exp_tight_dv=_max_dv(ours_smooth, tight), spice_exp_tight_success=tight.success)
        except SolverError as error:
            row["spice_error"] = str(error)
    return row


def solve_name(circuit, sources) -> str:
    """The method `solve`'s default runs on `circuit`."""
    from aeqprop_circuits.solvers import solve

    return solve(circuit, sources=sources).solver


def _structure(circuit):
    from aeqprop_circuits.solvers.layered import layered_structure

    return layered_structure(circuit)


def bench_solve(hidden: tuple[int, ...] = (10, 100, 1024), *, seed: int = 0, batch: int = 64,
                repeats: int = 5, spice_repeats: int = 1, ngspice: bool = True, generic: bool = True,
                log: Callable[[str], None] | None = None) -> tuple[list[dict], str]:
    """Rows (one dict per hidden width) and the markdown report of `aeqprop bench solve`."""
    rows = [bench_one(h, seed=seed, batch=batch, repeats=repeats, spice_repeats=spice_repeats,
                      ngspice=ngspice, generic=generic, log=log) for h in hidden]
    return rows, markdown(rows)


def _ms(seconds) -> str:
    if seconds is None or not np.isfinite(seconds):
        return "–"
    return f"{seconds * 1e3:.3g}"


def _s(seconds) -> str:
    return "–" if seconds is None else f"{seconds:.3g}"


def _x(ratio) -> str:
    return "–" if ratio is None or not np.isfinite(ratio) else f"{ratio:,.0f}×"


def _v(volts) -> str:
    return "–" if volts is None else f"{volts:.1e}"


def markdown(rows: list[dict]) -> str:
    """The solver tables of docs/results/speed.md."""
    lines = ["### Operating point, one sample: ours vs ngspice `.op` (ideal diodes)", "",
             "| H | resistors | ngspice load + .op (s) | ngspice .op only (s) | ours: layered (ms) "
             "| ours: coordinate (ms) | auto runs | speed-up load+op / layered | speed-up .op / layered "
             "| speed-up load+op / coordinate | max abs dV layered / coordinate (V) "
             "| max abs dV vs ngspice stand-in (V) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        total = r.get("spice_load_s", np.nan) + r.get("spice_op_s", np.nan)
        lines.append(
            f"| {r['hidden']} | {r['resistors']:,} | {_s(total if np.isfinite(total) else None)} "
            f"| {_s(r.get('spice_op_s'))} | {_ms(r['layered_s'])} | {_ms(r.get('coordinate_s'))} "
            f"| {r['auto_solver']} ({_ms(r['auto_s'])} ms) "
            f"| {_x(total / r['layered_s'])} | {_x(r.get('spice_op_s', np.nan) / r['layered_s'])} "
            f"| {_x(total / r.get('coordinate_s', np.nan))} | {_v(r.get('layered_vs_coordinate_dv'))} "
            f"| {_v(r.get('ideal_vs_standin_dv'))} |")
    lines += ["", "### Exponential diodes (IS = 1e-14 A, N = 1): ours vs ngspice, same equations",
              "", "| H | ngspice load + .op (s) | ours: layered block Newton (ms) | ours: newton (ms) "
              "| auto runs | speed-up / layered | speed-up / newton "
              "| max abs dV layered / newton (V) | max abs dV layered, ngspice reltol=1e-6 vntol=1e-9 "
              "abstol=1e-15 (V) | max abs dV newton, ngspice tight options (V) |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        total = r.get("spice_exp_load_s", np.nan) + r.get("spice_exp_op_s", np.nan)
        lines.append(f"| {r['hidden']} | {_s(total if np.isfinite(total) else None)} "
                     f"| {_ms(r['shockley_layered_s'])} | {_ms(r['newton_s'])} | {r['shockley_auto_solver']} "
                     f"| {_x(total / r['shockley_layered_s'])} | {_x(total / r['newton_s'])} "
                     f"| {_v(r['shockley_layered_vs_newton_dv'])} | {_v(r.get('exp_layered_dv'))} "
                     f"| {_v(r.get('exp_tight_dv'))} |")
    lines += ["", "### Iterations against the matrix-vector floor, and batches", "",
              "| H | layered: iterations | layered per iteration (ms) | coordinate: sweeps "
              "| coordinate per sweep (ms) | floor: blocks x vector (ms) | batch | layered per sample (ms) "
              "| floor per sample (ms) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['hidden']} | {r['layered_iterations']} | {_ms(r['layered_per_iteration_s'])} "
                     f"| {r.get('coordinate_iterations', '–')} | {_ms(r.get('coordinate_per_iteration_s'))} "
                     f"| {_ms(r['matvec_floor_s'])} | {r['batch']} | {_ms(r['layered_batch_per_sample_s'])} "
                     f"| {_ms(r['matvec_floor_batch_per_sample_s'])} |")
    lines += ["", NOTES]
    machine = platform.processor() or platform.machine()
    lines += ["", f"Machine: {machine}, Python {platform.python_version()}, numpy {np.__version__}."]
    return "\n".join(lines) + "\n"


def bench_shockley(hidden: tuple[int, ...] = (100, 1024), *, seed: int = 0, repeats: int = 5,
                   log: Callable[[str], None] | None = None) -> tuple[list[dict], str]:
    """The exponential-diode DRN alone: our layered block Newton and newton against ngspice `.op`
    (load + op, BENCHMARK_OPTIONS), one sample; rows and a markdown table."""
    from aeqprop_circuits.solvers.spice import BENCHMARK_OPTIONS

    say = log or (lambda message: None)
    rows = []
    for h in hidden:
        smooth = deep_resistive_network([N_INPUTS, h, N_OUTPUTS], seed=seed, ideal=False)
        one = smooth.source_values(np.random.default_rng(seed).uniform(-1.0, 1.0, (1, N_INPUTS)))
        say(f"H={h}: layered, newton")
        layered_s, fast = _timed(smooth, one, "layered", repeats)
        newton_s, slow = _timed(smooth, one, "newton", max(1, repeats // 2))
        say(f"H={h}: ngspice")
        load, op, theirs = _spice_run(smooth, one, BENCHMARK_OPTIONS, 1)
        rows.append({"hidden": h, "layered_s": layered_s, "layered_iterations": fast.iterations,
                     "newton_s": newton_s, "newton_iterations": slow.iterations, "spice_s": load + op,
                     "auto": solve_name(smooth, one), "layered_newton_dv": _max_dv(fast, slow),
                     "layered_spice_dv": _max_dv(fast, theirs), "spice_success": theirs.success})
    lines = ["| H | ngspice load + .op (s) | ours: layered (ms) | ours: newton (ms) | auto runs "
             "| speed-up / layered | speed-up / newton | max abs dV layered / ngspice (V) "
             "| max abs dV layered / newton (V) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['hidden']} | {_s(r['spice_s'])} | {_ms(r['layered_s'])} ({r['layered_iterations']} it.) "
                     f"| {_ms(r['newton_s'])} ({r['newton_iterations']} it.) | {r['auto']} "
                     f"| {_x(r['spice_s'] / r['layered_s'])} | {_x(r['spice_s'] / r['newton_s'])} "
                     f"| {_v(r['layered_spice_dv'])} | {_v(r['layered_newton_dv'])} |")
    return rows, "\n".join(lines) + "\n"


def bench_netlist_file(path: str, *, repeats: int = 2, ngspice: bool = True) -> dict:
    """`aeqprop solve PATH` and `ngspice -b PATH` end to end as processes, interleaved (ours, ngspice,
    ours, ...): the best wall-clock seconds of each and their ratio."""
    import subprocess
    import sys

    def run(command) -> float:
        start = time.perf_counter()
        done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()[-500:]}")
        return time.perf_counter() - start

    ours, theirs = [], []
    for k in range(max(1, repeats)):
        ours.append(run([sys.executable, "-m", "aeqprop_circuits", "solve", path]))
        if ngspice and k == 0:
            theirs.append(run(["ngspice", "-b", path]))
    row = {"file": path, "ours_s": min(ours)}
    if theirs:
        row.update(ngspice_s=min(theirs), speedup=min(theirs) / min(ours))
    return row
