"""`spice_rows`: many source rows of one circuit solved by ngspice with one netlist load.

The one-load paths (a `dc` sweep over pwl-tabled sources, or `alter` + `op` per row) must
give what `spice()` gives row by row (tight options: <= 1e-9 V), and with the near-ideal
diode stand-in (`NEAR_IDEAL_MODEL`) a DRN's outputs must sit within a few mV of the
ideal-diode DRNSystem solution.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from aeqprop_circuits.circuit.circuit import THERMAL_VOLTAGE, Circuit, Diodes, IdealDiodes, Resistors, Sources
from aeqprop_circuits.circuit.energy import Nudge
from aeqprop_circuits.errors import SolverError
from aeqprop_circuits.solvers.spice import (
    NEAR_IDEAL_MODEL,
    _spice_model_parameters,
    ngspice_available,
    spice,
    spice_rows,
    with_spice_model,
)
from aeqprop_circuits.solvers.spice.session import Session
from aeqprop_circuits.systems.drn import DRNSystem

needs_ngspice = pytest.mark.skipif(
    not ngspice_available(), reason="ngspice shared library (libngspice) or PySpice not installed: "
    "apt-get install ngspice libngspice0-dev")
pytestmark = pytest.mark.spice
VTOL = 1e-9  # volts: one-load paths against spice() per row, both at TIGHT_OPTIONS
NEAR_IDEAL_VTOL = 3e-3  # volts: ngspice's DRN outputs with NEAR_IDEAL_MODEL against the ideal DRN


def _drn(rows: int = 4):
    """A small DRN (6 inputs, 5 hidden, 3 outputs) with inputs that drive hidden nodes onto the rails."""
    drn = DRNSystem([6, 5, 3], seed=1, input_gain=3.0)
    circuit = with_spice_model(drn.circuit(), NEAR_IDEAL_MODEL)
    x = np.random.default_rng(0).uniform(0.0, 1.0, (rows, 6))
    return drn, circuit, x, drn.source_values(circuit, x)


def _outputs(circuit, result) -> np.ndarray:
    o = circuit.learning.outputs
    return result.potentials[:, o[:, 0]] - result.potentials[:, o[:, 1]]


def _two_sources_and_a_current_source() -> Circuit:
    """Resistors, a Shockley diode, two voltage sources and a current source: every kind of source varies."""
    names = ("0", "a", "b", "c", "d")
    resistors = Resistors(("r1", "r2", "r3", "r4", "r5"), [(1, 3), (3, 0), (2, 3), (3, 4), (4, 0)],
                          [1e-3, 2e-3, 5e-4, 1e-3, 3e-3])
    diodes = Diodes(("d1",), [(4, 0)], [1e-14], [1.2])
    sources = Sources(("v1", "v2", "i1"), [(1, 0), (2, 0), (0, 4)], [1.0, 0.5, 1e-4], [True, True, False])
    return Circuit("three sources", names, resistors, diodes, IdealDiodes((), np.zeros((0, 2))), sources)


@pytest.mark.parametrize("method", ["sweep", "alter"])
@needs_ngspice
def test_one_load_rows_equal_spice_per_row_on_a_drn(method):
    _, circuit, _, sources = _drn()
    ours = spice_rows(circuit, sources, tight=True, method=method)
    per_row = spice(circuit, sources, tight=True)
    assert ours.success and per_row.success, ours.message
    assert ours.message == ("ngspice dc sweep converged" if method == "sweep" else "ngspice .op converged")
    assert np.abs(ours.potentials - per_row.potentials).max() <= VTOL
    assert np.allclose(ours.currents["voltage_sources"], per_row.currents["voltage_sources"], rtol=1e-7, atol=1e-15)
    assert ours.timing.load > 0 and ours.timing.op > 0 and per_row.timing.op > 0


@pytest.mark.parametrize("method", ["sweep", "alter"])
@needs_ngspice
def test_every_kind_of_source_varies_per_row(method):
    """Voltage and current sources become pwl behavioural sources in the sweep: same points as spice()."""
    circuit = _two_sources_and_a_current_source()
    rng = np.random.default_rng(4)
    sources = np.column_stack([rng.uniform(-2, 3, 5), rng.uniform(-1, 1, 5), rng.uniform(-1e-3, 1e-3, 5)])
    sources[2] = sources[1]  # a repeated row: nothing to alter
    ours = spice_rows(circuit, sources, tight=True, method=method)
    per_row = spice(circuit, sources, tight=True)
    assert ours.success, ours.message
    assert np.abs(ours.potentials - per_row.potentials).max() <= VTOL
    assert np.allclose(ours.currents["voltage_sources"], per_row.currents["voltage_sources"], rtol=1e-7, atol=1e-15)


@needs_ngspice
def test_nudged_rows_equal_spice_per_row():
    """The nudge's target sources vary per row too."""
    _, circuit, _, sources = _drn(3)
    nudge = Nudge(1e-3, np.random.default_rng(1).uniform(-0.3, 0.3, (3, 3)))
    ours = spice_rows(circuit, sources, nudge=nudge, tight=True)
    per_row = spice(circuit, sources, nudge=nudge, tight=True)
    assert ours.success, ours.message
    assert np.abs(ours.potentials - per_row.potentials).max() <= VTOL
    assert np.abs(ours.potentials - spice_rows(circuit, sources, tight=True).potentials).max() > 1e-6


@needs_ngspice
def test_near_ideal_stand_in_is_within_a_few_millivolts_of_the_ideal_drn():
    """Each conducting stand-in drops N Vt ln(I / IS) (~0.8 mV at these currents) where the ideal diode
    drops 0 V; a differential output moves by at most two such drops. The default stand-in
    (N = 0.05) is ~50 times further off."""
    drn, circuit, x, sources = _drn(6)
    ideal = drn.predict(x)
    ours = spice_rows(circuit, sources)  # ngspice's default tolerances, as the DRN-XS check runs
    assert ours.success, ours.message
    difference = np.abs(_outputs(circuit, ours) - ideal).max()
    isat, n = _spice_model_parameters(NEAR_IDEAL_MODEL)
    current = np.abs(ours.currents["ideal_diodes"]).max()
    assert current > 1e-4  # some diodes conduct: the test can tell stand-ins apart
    assert difference <= min(2 * n * THERMAL_VOLTAGE * np.log(current / isat), NEAR_IDEAL_VTOL)
    assert (_outputs(circuit, ours).argmax(axis=1) == ideal.argmax(axis=1)).all()
    default = with_spice_model(circuit, "is=1e-20 n=0.05")
    assert np.abs(_outputs(default, spice_rows(default, sources)) - ideal).max() > 10 * difference


def _edit_analyses(monkeypatch, edit) -> list:
    """Route ngspice's analyses through `edit(command, vectors, message) -> (vectors, message)`.

    Returns the list the analysed commands are appended to, in order.
    """
    real, commands = Session.analyse, []

    def analyse(self, command, kind, reject_fallback=True):
        commands.append(command)
        vectors, message, seconds = real(self, command, kind, reject_fallback)
        return (*edit(command, vectors, message), seconds)

    monkeypatch.setattr(Session, "analyse", analyse)
    return commands


@needs_ngspice
def test_a_stopped_sweep_resumes_after_an_op_at_the_failing_row(monkeypatch):
    """ngspice's dc sweep stopping at a row: that row by `op`, the rest by a new sweep from the next row."""
    _, circuit, _, sources = _drn(5)

    def sweep_stops_at_row_2(command, vectors, message):
        if command.startswith("dc") and len([c for c in commands if c.startswith("dc")]) == 1:
            return {k: v[:2] for k, v in vectors.items()}, message  # rows 0 and 1 only
        return vectors, message

    commands = _edit_analyses(monkeypatch, sweep_stops_at_row_2)
    ours = spice_rows(circuit, sources, tight=True)
    assert ours.success, ours.message
    assert [c.split()[0] for c in commands] == ["dc", "op", "dc"] and commands[2].split()[2] == "3"
    assert np.abs(ours.potentials - spice(circuit, sources, tight=True).potentials).max() <= VTOL


@needs_ngspice
def test_a_sweep_through_the_transient_fallback_is_redone_row_by_row(monkeypatch):
    commands = _edit_analyses(monkeypatch, lambda command, vectors, message: (
        vectors, "source stepping failed; " + message if command.startswith("dc") else message))
    _, circuit, _, sources = _drn(3)
    ours = spice_rows(circuit, sources, tight=True)
    assert ours.success and [c.split()[0] for c in commands] == ["dc", "op", "op", "op"]


@needs_ngspice
def test_a_row_ngspice_cannot_solve_is_reported_not_raised(monkeypatch):
    real = Session.analyse

    def op_fails(self, command, kind, reject_fallback=True):
        if command == "op":
            return None, "Warning: singular matrix:  check node h0", 0.0
        return real(self, command, kind, reject_fallback)

    monkeypatch.setattr(Session, "analyse", op_fails)
    _, circuit, _, sources = _drn(3)
    ours = spice_rows(circuit, sources, method="alter")
    assert not ours.success and "sample 0" in ours.message and "singular matrix" in ours.message
    assert np.isnan(ours.potentials).all()


@needs_ngspice
def test_one_row_and_unknown_method():
    _, circuit, _, sources = _drn(1)
    ours = spice_rows(circuit, sources, tight=True)
    assert ours.success and ours.message == "ngspice .op converged"
    assert np.abs(ours.potentials - spice(circuit, sources, tight=True).potentials).max() <= VTOL
    with pytest.raises(SolverError, match="expected one of sweep, alter"):
        spice_rows(circuit, sources, method="tran")


def test_missing_ngspice_is_a_clear_solver_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "PySpice.Spice.NgSpice.Shared", None)
    _, circuit, _, sources = _drn(2)
    with pytest.raises(SolverError, match="ngspice not found"):
        spice_rows(circuit, sources)


@needs_ngspice
def test_points_within_ngspices_node_voltage_tolerance_are_accepted(monkeypatch):
    """A stiff stand-in diode (tens of S when conducting) turns ngspice's tolerated node-voltage
    error into KCL errors far above 10 reltol I: spice_rows judges them as voltage corrections
    (within 10 (reltol |V| + vntol)), so 50 uV at a clamped node passes and 0.1 V does not."""
    _, circuit, _, sources = _drn(1)
    clean = spice_rows(circuit, sources, method="alter")
    diode = int(np.abs(clean.currents["ideal_diodes"][0]).argmax())
    clamped = circuit.node_names[next(int(n) for n in circuit.ideal_diodes.nodes[diode]
                                      if not circuit.node_names[int(n)].startswith("rail"))]
    output = circuit.node_names[int(circuit.learning.outputs[0, 0])]

    def shifted(node, by):
        def edit(command, vectors, message):
            vectors[node.lower()] = vectors[node.lower()] + by
            return vectors, message
        return edit

    _edit_analyses(monkeypatch, shifted(clamped, 5e-5))
    nearby = spice_rows(circuit, sources, method="alter")
    assert nearby.success and nearby.residual > 10 * 1e-3 * np.abs(clean.currents["ideal_diodes"]).max()
    assert "violates KCL" in spice(circuit, sources).message  # spice() alone, with its KCL bound, rejects it
    _edit_analyses(monkeypatch, shifted(output, 0.1))
    far = spice_rows(circuit, sources, method="alter")
    assert not far.success and "violates KCL" in far.message


@needs_ngspice
def test_a_sweep_row_off_the_operating_point_is_solved_again_by_op(monkeypatch):
    """A warm-started sweep point that passes ngspice's test but not spice()'s KCL bound gets a full `op`."""
    _, circuit, _, sources = _drn(3)
    output = circuit.node_names[int(circuit.learning.outputs[0, 0])].lower()

    def row_1_off(command, vectors, message):
        if command.startswith("dc"):
            vectors[output] = vectors[output] + np.array([0.0, 0.05, 0.0])
        return vectors, message

    commands = _edit_analyses(monkeypatch, row_1_off)
    ours = spice_rows(circuit, sources, tight=True)
    assert ours.success and ours.message == "ngspice dc sweep (1 of 3 rows again by .op) converged"
    assert commands == [commands[0], "op"] and commands[0].startswith("dc")
    assert np.abs(ours.potentials - spice(circuit, sources, tight=True).potentials).max() <= VTOL
