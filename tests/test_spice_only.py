"""ngspice as hardware for devices the built-in solvers do not model.

Parsed for the spice solver, a netlist keeps MOSFETs, BJTs, capacitors, controlled sources,
diodes with breakdown, ... as SPICE text (`Circuit.spice_only`) and the writer gives them back;
the built-in solvers refuse such a circuit, `auto` and `spice` hand it to ngspice. The circuit
stays loaded in ngspice from solve to solve (values changed by `alter`), with the results of a
fresh netlist per sample. The shipped netlist trains through ngspice alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from aeqprop_circuits.circuit.energy import Nudge
from aeqprop_circuits.cli.main import main
from aeqprop_circuits.errors import AeqpropError, NetlistError, SolverError
from aeqprop_circuits.experiments.session import train
from aeqprop_circuits.learning.algorithms import get_algorithm
from aeqprop_circuits.netlist import parse_text, write_netlist
from aeqprop_circuits.solvers import solve
from aeqprop_circuits.solvers.spice import ngspice_available, spice
from aeqprop_circuits.solvers.spice.loaded import LoadedCircuit, solve_loaded
from aeqprop_circuits.systems.base import Phase
from aeqprop_circuits.systems.models import load_system

pytestmark = pytest.mark.skipif(not ngspice_available(), reason="ngspice not installed")

ZENER_XOR = "netlists/spice-only/xor-zener.cir"
DECK = """devices only ngspice models
*@ input vin
*@ output o
*@ learn r*
vin a 0 dc 0.5
r1 a o 1k
r2 o 0 2k
dz o 0 dzen
.model dzen D (IS=1e-14 BV=0.3 IBV=1m)
m1 o g 0 0 nch w=1u l=1u
vg g 0 1
.model nch NMOS (level=1 vto=0.7 kp=1e-4)
q1 o b 0 qn
rb g b 100k
.model qn NPN (bf=50)
.subckt load p n
c1 p n 1p
.ends
x1 o 0 load
bsense s 0 v=v(o)*2
rs s 0 1k
.end
"""


def test_elements_only_ngspice_models_are_kept_as_spice_text_and_written_back():
    circuit = parse_text(DECK, spice=True)
    extra = circuit.spice_only
    assert extra.names == ("dz", "m1", "q1", "c.x1.c1", "bsense")
    assert extra.kinds == ("diode with BV, IBV", "MOSFET", "bipolar transistor", "capacitor", "behavioural source")
    names = circuit.node_names
    assert [tuple(names[k] for k in pins) for pins in extra.nodes] == [
        ("o", "0"), ("o", "g", "0", "0"), ("o", "b", "0"), ("o", "0"), ("s", "0")]
    assert extra.lines[3] == "c.x1.c1 o 0 1p"  # renamed as ngspice names the element of an instance
    assert ".model nch NMOS (level=1 vto=0.7 kp=1e-4)" in extra.cards
    again = parse_text(write_netlist(circuit), spice=True)
    assert again.spice_only.lines == extra.lines and again.node_names == circuit.node_names
    assert sorted(again.spice_only.cards) == sorted(extra.cards)


@pytest.mark.parametrize("text, message", [
    ("m1 o g 0 0 nch\n.model nch NMOS (level=1)\n", "unsupported element 'm1' (MOSFET)"),
    ("d1 o 0 dz\n.model dz D (BV=5)\n", "BV: breakdown (BV/IBV) is not modelled"),
])
def test_without_the_spice_solver_such_elements_are_refused_with_the_way_out(text, message):
    with pytest.raises(NetlistError) as caught:
        parse_text("t\nv1 o 0 1\nr1 o 0 1k\nvg g 0 1\n" + text)
    assert message in str(caught.value) and "--solver spice" in str(caught.value)


def test_a_pass_through_element_inside_a_subcircuit_needs_plain_nodes():
    text = "t\n.subckt s a\nb1 a 0 v=v(a)*2\n.ends\nx1 n s\nr1 n 0 1k\nv1 n 0 1\n"
    with pytest.raises(NetlistError, match="top level"):
        parse_text(text, spice=True)


def test_the_built_in_solvers_refuse_and_auto_hands_the_circuit_to_ngspice():
    circuit = parse_text(DECK, spice=True)
    with pytest.raises(SolverError, match="ngspice alone"):
        solve(circuit, method="newton")
    result = solve(circuit)
    assert result.success and result.solver == "spice"
    assert np.isnan(result.energy).all() and np.isnan(result.residual)
    v = dict(zip(circuit.node_names, result.potentials[0]))
    assert 0.0 < v["o"] < 0.5 and v["s"] == pytest.approx(2 * v["o"], rel=1e-6)  # the behavioural source


def test_a_loaded_circuit_reads_its_netlist_once_and_agrees_with_a_fresh_netlist_per_sample():
    circuit = load_system("netlists/regression_fourier.cir").circuit
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (3, 21))
    sources = circuit.source_values(x)
    g = circuit.resistors.conductance * rng.uniform(0.5, 2.0, len(circuit.resistors.names))
    loaded = LoadedCircuit(circuit, {"reltol": 1e-12, "vntol": 1e-15, "abstol": 1e-18})
    phases = [(None, g), (Nudge(2e-4, rng.uniform(-0.3, 0.3, (3, 1))), g), (Nudge(-1e-4, np.zeros((3, 1))), g * 1.1),
              (None, g * 1.1)]
    results = [loaded.solve(sources, conductance, nudge) for nudge, conductance in phases]
    assert loaded.loads == 2  # the netlist, then once more with the nudge elements; everything else by alter
    for result, (nudge, conductance) in zip(results, phases):
        fresh = spice(circuit, sources, conductance, nudge, tight=True)
        assert result.success and fresh.success
        np.testing.assert_allclose(result.potentials, fresh.potentials, atol=1e-9)
    loaded.solve(sources, g, None)  # after other netlists: loaded again, once
    loaded.solve(sources, g * 1.2, None)
    assert loaded.loads == 3


def test_the_spice_solver_keeps_one_loaded_circuit_per_circuit_object():
    circuit = parse_text(DECK, spice=True)
    sources = np.vstack([circuit.source_values(), 0.5 * circuit.source_values()])
    first = solve_loaded(circuit, sources[:1])
    second = solve_loaded(circuit, sources)
    assert first.timing.load > 0 and second.timing.load == 0
    np.testing.assert_allclose(second.potentials, spice(circuit, sources).potentials, atol=1e-9)


def test_the_shipped_zener_xor_trains_through_ngspice_alone():
    with pytest.raises(AeqpropError, match="spice"):
        load_system(ZENER_XOR)
    run = train(ZENER_XOR, data="xor", solver="spice", batch_size=1, lr=1.0, lr_decay=1.0, epochs=25, trace_every=0)
    assert run.metrics[0]["test_accuracy"] == 0.5
    assert run.final["test_accuracy"] == 1.0


def test_the_agnostic_loop_trains_the_zener_xor_without_its_energy():
    system = load_system(ZENER_XOR, solver="spice")
    assert np.isnan(system.energy(system.settle(Phase(np.ones((1, 2)))))).all()  # its co-content is not known
    with pytest.raises(AeqpropError, match="no exact gradient"):
        get_algorithm("exact-gradient").estimate(system, np.ones((1, 2)), np.ones((1, 1)))
    x, y = np.array([[1.0, -1.0], [1.0, 1.0]]), np.array([[0.5], [-0.5]])
    before = system.parameters
    rule = get_algorithm("aeqprop-centered", beta=0.2, epsilon=0.05, controller="proportional", rounds=10,
                         relax_rounds=2, hold_rtol=None, step_rtol=None)
    estimate = rule.estimate(system, x, y)
    assert np.isfinite(estimate.new_parameters).all() and not np.array_equal(estimate.new_parameters, before)


@pytest.mark.parametrize("netlist", sorted(str(path) for path in Path("netlists/spice-only").glob("*.cir")))
def test_the_shipped_netlists_only_ngspice_runs_pass_check(netlist):
    result = CliRunner().invoke(main, ["check", netlist])
    assert result.exit_code == 0, result.output
    assert "(diode with BV, IBV, NBV)" in result.output and "spice only" in result.output


def test_check_says_which_solvers_can_run_a_netlist(tmp_path):
    result = CliRunner().invoke(main, ["check", "netlists/xor.cir"])
    assert result.exit_code == 0 and "built-in (auto runs" in result.output and "and spice" in result.output
    result = CliRunner().invoke(main, ["train", ZENER_XOR, "--data", "xor", "--epochs", "1",
                                       "--out", str(tmp_path / "run")])
    assert result.exit_code != 0 and "--solver spice" in result.output and "Traceback" not in result.output


def test_the_step_benchmark_times_both_ways_on_the_same_phases():
    from aeqprop_circuits.bench.spice_step import bench_spice_step

    rows = bench_spice_step(ZENER_XOR, "xor", steps=1)
    assert [row["way"] for row in rows] == ["netlist per sample", "loaded, altered"]
    assert min(row["relative"] for row in rows) == 1.0 and all(row["seconds_per_step"] > 0 for row in rows)
