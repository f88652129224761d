"""Cross-checks against ngspice: our solvers and ngspice's `.op` find the same operating point.

Smooth circuits (resistors, Shockley diodes with IS, N, RS, current sources) must agree with
ngspice run at tight tolerances to <= 1e-9 V. Ideal-diode circuits are compared with
ngspice's near-ideal exponential stand-in (`circuit.ideal_diodes.spice_model`), which drops
N Vt ln(I / IS) across a conducting diode instead of 0 V: that bound is the tolerance.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from aeqprop_circuits.circuit.builder import deep_resistive_network
from aeqprop_circuits.circuit.circuit import (
    THERMAL_VOLTAGE,
    Circuit,
    Diodes,
    IdealDiodes,
    Resistors,
    Sources,
)
from aeqprop_circuits.circuit.energy import Nudge
from aeqprop_circuits.errors import CircuitError, SolverError
from aeqprop_circuits.solvers import solve
from aeqprop_circuits.solvers.spice import _spice_model_parameters, ngspice_available
from aeqprop_circuits.solvers.spice.session import Session

HAVE_NGSPICE = ngspice_available()
skip_without_ngspice = pytest.mark.skipif(
    not HAVE_NGSPICE, reason="ngspice shared library (libngspice) or PySpice not installed: "
    "apt-get install ngspice libngspice0-dev")


def needs_ngspice(test):
    """Mark a test `spice` and skip it, with the reason, where ngspice is absent."""
    return pytest.mark.spice(skip_without_ngspice(test))
VTOL = 1e-9  # volts: agreement required of smooth circuits


def _no_elements(kind):
    if kind is Diodes:
        return Diodes((), np.zeros((0, 2)), [], [])
    return IdealDiodes((), np.zeros((0, 2)))


def divider() -> Circuit:
    return Circuit("divider", ("0", "in", "mid"),
                   Resistors(("r1", "r2"), [(1, 2), (2, 0)], [1e-3, 1.0 / 2200.0]),
                   _no_elements(Diodes), _no_elements(IdealDiodes),
                   Sources(("vin",), [(1, 0)], [1.0], [True]))


def diode_with_series_resistance(isat=2.5e-14, emission=1.7, rs=12.0) -> Circuit:
    """vin -- r1 -- a -- D(IS, N, RS) -- ground; RS compiled through an internal node, as SPICE does."""
    return Circuit("diode", ("0", "in", "a", "d1#rs"),
                   Resistors(("r1", "rs#d1"), [(1, 2), (2, 3)], [1e-3, 1.0 / rs]),
                   Diodes(("d1",), [(3, 0)], [isat], [emission]), _no_elements(IdealDiodes),
                   Sources(("vin",), [(1, 0)], [1.0], [True]), internal=[False, False, False, True])


def random_network(seed: int, n_nodes: int = 8) -> Circuit:
    """Resistor tree plus chords, diodes both ways, a current source, a grounded and a floating V source."""
    rng = np.random.default_rng(seed)
    names = ("0",) + tuple(f"n{i}" for i in range(1, n_nodes + 1))
    tree = [(i, int(rng.integers(0, i))) for i in range(1, n_nodes + 1)]
    chords = [tuple(int(v) for v in rng.choice(n_nodes + 1, 2, replace=False)) for _ in range(n_nodes)]
    pairs = tree + chords
    resistors = Resistors(tuple(f"r{k}" for k in range(len(pairs))), pairs,
                          10.0 ** rng.uniform(-5, -2, len(pairs)))
    d_pairs = [tuple(int(v) for v in rng.choice(n_nodes + 1, 2, replace=False)) for _ in range(4)]
    diodes = Diodes(tuple(f"d{k}" for k in range(4)), d_pairs, 10.0 ** rng.uniform(-15, -12, 4),
                    rng.uniform(1.0, 2.0, 4))
    sources = Sources(("v1", "v2", "i1"), [(1, 0), (2, 3), (4, 5)],
                      [rng.uniform(1.0, 3.0), rng.uniform(-0.5, 0.5), rng.uniform(-1e-3, 1e-3)],
                      [True, True, False])
    return Circuit(f"random {seed}", names, resistors, diodes, _no_elements(IdealDiodes), sources)


def _max_dv(a, b) -> float:
    return float(np.abs(a.potentials - b.potentials).max())


# --- smooth circuits: newton vs ngspice to 1e-9 V -----------------------------------------------
@needs_ngspice
def test_divider_agrees_with_ngspice():
    circuit = divider()
    sources = np.array([[1.0], [-3.3], [12.0]])
    ours = solve(circuit, sources=sources, method="newton")
    theirs = solve(circuit, sources=sources, method="spice", tight=True)
    assert theirs.success, theirs.message
    assert _max_dv(ours, theirs) <= VTOL
    assert np.allclose(theirs.potentials[:, 2], sources[:, 0] * 2200.0 / 3200.0, rtol=1e-12)
    # ngspice's own source current (SPICE sign: into n+, so negative when supplying) matches ours
    assert np.allclose(theirs.currents["voltage_sources"], ours.currents["voltage_sources"], rtol=1e-9)
    assert theirs.timing.load > 0 and theirs.timing.op > 0  # the result carries where ngspice's time went


@pytest.mark.parametrize("vin", [-2.0, 0.3, 0.7, 1.0, 5.0], ids=lambda v: f"vin={v}")
@needs_ngspice
def test_shockley_diode_with_series_resistance_agrees_with_ngspice(vin):
    """Forward and reverse bias: IS, N, RS, the thermal voltage at 27 degC and GMIN as ngspice has them."""
    circuit = diode_with_series_resistance()
    ours = solve(circuit, sources=[[vin]], method="newton")
    theirs = solve(circuit, sources=[[vin]], method="spice", tight=True)
    assert ours.success and theirs.success, theirs.message
    assert _max_dv(ours, theirs) <= VTOL
    assert np.allclose(theirs.currents["diodes"], ours.currents["diodes"], rtol=1e-8, atol=1e-18)


@needs_ngspice
def test_thermal_voltage_is_ngspices():
    """A junction at ~10 mA with N = 1 sits at v = Vt ln(I / IS) ~ 0.83 V, so a relative error d
    in Vt = k T / q moves it by ~0.83 d V. The 1985 SPICE3 constants (k = 1.3806226e-23,
    q = 1.6021918e-19) differ from ngspice-39's by d ~ 2.8e-5, i.e. ~2.3e-5 V: agreement to 1e-12 V
    pins the constants circuit.py uses (k = 1.38064852e-23, q = 1.6021766208e-19, T = 300.15 K)."""
    circuit = diode_with_series_resistance(isat=1e-16, emission=1.0, rs=1e-3)
    theirs = solve(circuit, sources=[[10.0]], method="spice", tight=True)
    ours = solve(circuit, sources=[[10.0]], method="newton")
    junction = ours.potentials[0, 3]
    spice3 = 1.3806226e-23 * 300.15 / 1.6021918e-19
    assert junction * abs(spice3 / THERMAL_VOLTAGE - 1.0) > 1e-6  # the test could tell them apart
    assert abs(theirs.potentials[0, 3] - junction) <= 1e-12


@pytest.mark.parametrize("seed", range(5))
@needs_ngspice
def test_random_network_with_diodes_and_current_source_agrees_with_ngspice(seed):
    circuit = random_network(seed)
    ours = solve(circuit, method="newton")
    theirs = solve(circuit, method="spice", tight=True)
    assert ours.success and theirs.success, theirs.message
    assert _max_dv(ours, theirs) <= VTOL
    assert theirs.residual <= 1e-12  # our KCL on ngspice's voltages
    assert np.allclose(theirs.currents["voltage_sources"], ours.currents["voltage_sources"],
                       rtol=1e-7, atol=1e-15)


@pytest.mark.parametrize("beta", [2e-4, -2e-4], ids=["positive", "negative"])
@needs_ngspice
def test_nudged_differential_outputs_agree_with_ngspice(beta):
    """The nudge as SPICE elements: a resistor 1/beta from o+ to a node held at V(o-) + target."""
    circuit = deep_resistive_network([3, 5, 2], seed=3, ideal=False)
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (2, 3))
    nudge = Nudge(beta, rng.uniform(-0.3, 0.3, (2, 2)))
    ours = solve(circuit, x, method="newton", nudge=nudge)
    theirs = solve(circuit, x, method="spice", nudge=nudge, tight=True)
    assert theirs.success, theirs.message
    assert _max_dv(ours, theirs) <= VTOL
    assert np.allclose(theirs.energy, ours.energy, rtol=1e-9)
    free = solve(circuit, x, method="newton")
    assert _max_dv(free, theirs) > 1e-6  # the nudge did something


# --- ideal diodes: layered / coordinate / qp vs ngspice's exponential stand-in -------------------
@pytest.mark.parametrize("method", ["layered", "coordinate", "qp"])
@needs_ngspice
def test_ideal_diode_network_agrees_with_ngspice_within_the_diode_drop(method):
    """ngspice solves exponential diodes (IS, N of spice_model): each conducting one drops
    N Vt ln(I / IS) where the ideal one drops 0 V, and a node sits at most that far from the
    ideal answer (the network only attenuates the shift)."""
    circuit = deep_resistive_network([6, 8, 3], seed=2)
    x = np.random.default_rng(2).uniform(-1.5, 1.5, (3, 6))
    ours = solve(circuit, x, method=method)
    theirs = solve(circuit, x, method="spice", tight=True)
    assert ours.success and theirs.success, theirs.message
    assert (ours.solver, theirs.solver) == (method, "spice")
    isat, n = _spice_model_parameters(circuit.ideal_diodes.spice_model)
    current = max(np.abs(ours.currents["ideal_diodes"]).max(), np.abs(theirs.currents["ideal_diodes"]).max())
    drop = n * THERMAL_VOLTAGE * np.log(current / isat)
    assert 1e-6 < _max_dv(ours, theirs) <= drop
    # and the stand-in gets closer to the ideal answer as it gets stiffer
    stiffer = replace(circuit, ideal_diodes=replace(circuit.ideal_diodes, spice_model="is=1e-20 n=0.01"))
    closer = solve(stiffer, x, method="spice", tight=True)
    assert closer.success and _max_dv(ours, closer) < 0.5 * _max_dv(ours, theirs)


# --- the written netlist runs in ngspice unchanged -------------------------------------------------
def _ngspice_cli_potentials(text: str, tmp_path) -> dict[str, float]:
    """Run `ngspice -b` on the text with `.op` added only if absent; node voltages from the raw file."""
    if not re.search(r"^\s*\.op\b", text, re.IGNORECASE | re.MULTILINE):
        lines = text.rstrip().splitlines()
        end = [i for i, line in enumerate(lines) if line.strip().lower() == ".end"]
        at = end[-1] if end else len(lines)
        text = "\n".join(lines[:at] + [".op"] + lines[at:] + ([] if end else [".end"])) + "\n"
    path, raw = tmp_path / "written.cir", tmp_path / "written.raw"
    path.write_text(text)
    done = subprocess.run(["ngspice", "-b", "-r", str(raw), str(path)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not re.search(r"^\s*error", done.stdout + done.stderr, re.IGNORECASE | re.MULTILINE)
    return _read_raw(raw.read_bytes())


def _read_raw(data: bytes) -> dict[str, float]:
    """One-point real binary rawfile: header, then n_variables doubles."""
    head, _, body = data.partition(b"Binary:\n")
    header = head.decode()
    n_vars = int(re.search(r"No\. Variables:\s*(\d+)", header).group(1))
    names = re.findall(r"^\s*\d+\s+(\S+)\s+\S+\s*$", header.split("Variables:")[-1], re.MULTILINE)
    values = np.frombuffer(body[: 8 * n_vars], dtype=np.float64)
    return {re.sub(r"^v\((.*)\)$", r"\1", name.lower()): float(v) for name, v in zip(names, values)}


@pytest.mark.spice
@pytest.mark.skipif(shutil.which("ngspice") is None, reason="ngspice command not installed")
def test_written_netlist_runs_in_ngspice_unchanged(tmp_path):
    from aeqprop_circuits.netlist.writer import write_netlist

    circuit = random_network(11)
    text = write_netlist(circuit)
    voltages = _ngspice_cli_potentials(text, tmp_path)
    ours = solve(circuit, method="newton")
    for i, name in enumerate(circuit.node_names[1:], start=1):
        if not circuit.internal[i]:
            # ngspice's default tolerances (reltol 1e-3 on its last Newton update)
            assert voltages[name] == pytest.approx(ours.potentials[0, i], rel=1e-5, abs=1e-6), name


# --- without ngspice ---------------------------------------------------------------------------------
def test_missing_ngspice_is_a_clear_solver_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "PySpice.Spice.NgSpice.Shared", None)  # import now fails
    with pytest.raises(SolverError, match=r"ngspice not found.*apt-get install ngspice libngspice0-dev"):
        solve(divider(), method="spice")


@needs_ngspice
def test_an_open_resistor_is_refused_by_the_writer_by_name():
    from aeqprop_circuits.netlist.writer import write_netlist

    with pytest.raises(CircuitError, match="resistor r2: conductance 0.0 S"):
        write_netlist(divider().with_conductance(np.array([1e-3, 0.0])))


@needs_ngspice
def test_a_resistor_trained_to_zero_is_open_in_ngspice():
    circuit = random_network(3)
    conductance = circuit.resistors.conductance.copy()
    conductance[len(conductance) - 3:] = 0.0  # three chords trained away; the tree keeps every node connected
    ours = solve(circuit, method="newton", conductance=conductance)
    theirs = solve(circuit, method="spice", conductance=conductance, tight=True)
    assert ours.success and theirs.success, theirs.message
    assert _max_dv(ours, theirs) <= VTOL


def test_negative_conductance_is_refused_before_ngspice_runs():
    """The same diagnosis as the other solvers, not ngspice's gmin stepping on a singular matrix."""
    with pytest.raises(CircuitError, match="non-convex"):
        solve(divider(), method="spice", conductance=[1e-3, -1e-3])


@needs_ngspice
def test_ngspice_failure_is_reported_not_raised(monkeypatch):
    """A sample ngspice does not solve gives success=False, NaN potentials and ngspice's words."""
    real = Session.analyse
    calls = []

    def second_fails(self, command, kind, reject_fallback=True):
        calls.append(command)
        if len(calls) == 2:
            return None, "Warning: singular matrix:  check node mid", 0.0
        return real(self, command, kind, reject_fallback)

    monkeypatch.setattr(Session, "analyse", second_fails)
    theirs = solve(divider(), sources=[[1.0], [2.0], [3.0]], method="spice")
    assert not theirs.success and "sample 1" in theirs.message and "singular matrix" in theirs.message
    assert np.isnan(theirs.potentials[1]).all() and np.isfinite(theirs.potentials[[0, 2]]).all()


@needs_ngspice
def test_a_point_violating_kcl_is_not_accepted(monkeypatch):
    """ngspice's transient-op fallback can return a point that is no operating point: KCL decides."""
    real = Session.analyse

    def mid_off(self, command, kind, reject_fallback=True):
        vectors, message, seconds = real(self, command, kind, reject_fallback)
        return {k: v + (0.1 if k == "mid" else 0.0) for k, v in vectors.items()}, message, seconds

    monkeypatch.setattr(Session, "analyse", mid_off)
    theirs = solve(divider(), method="spice")
    assert not theirs.success and "violates KCL" in theirs.message
