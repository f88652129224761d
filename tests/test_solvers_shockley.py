"""The block Newton of layered Shockley-diode networks (solvers/shockley.py, `method="layered"`):
the same operating point as the generic `newton` on the sparse `Problem`, and as ngspice's `.op`."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_layered import _shuffled
from test_netlist_ngspice import assert_agrees_with_ngspice, needs_ngspice

from aeqprop_circuits.circuit.builder import deep_resistive_network
from aeqprop_circuits.circuit.energy import Nudge
from aeqprop_circuits.netlist import parse_text, write_netlist
from aeqprop_circuits.solvers import solve


@settings(max_examples=25, deadline=None)
@given(n_in=st.integers(1, 6), hidden=st.integers(1, 8), n_out=st.integers(1, 3), seed=st.integers(0, 2**31),
       isat=st.sampled_from([1e-14, 1e-9, 1e-3]), emission=st.sampled_from([0.5, 1.0, 2.0]),
       beta=st.sampled_from([0.0, 0.5e-3, 5e-3]), batch=st.sampled_from([1, 4]))
def test_layered_shockley_equals_newton_on_random_networks(n_in, hidden, n_out, seed, isat, emission, beta, batch):
    circuit = deep_resistive_network([n_in, hidden, n_out], seed=seed % 1000, ideal=False, saturation_current=isat,
                                     emission=emission, g_range=(1e-6, 1e-2))
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, (batch, n_in))
    nudge = Nudge(beta, rng.uniform(-0.5, 0.5, (batch, n_out))) if beta else None
    g = circuit.resistors.conductance * rng.uniform(0.5, 2.0, len(circuit.resistors.conductance))
    fast = solve(circuit, x, conductance=g, nudge=nudge)
    reference = solve(circuit, x, conductance=g, nudge=nudge, method="newton")
    assert fast.solver == "layered" and fast.success, fast.message
    assert reference.success
    assert np.abs(fast.potentials - reference.potentials).max() < 1e-11
    assert np.abs(fast.energy - reference.energy).max() <= 1e-12 * max(1.0, np.abs(reference.energy).max())
    assert fast.residual < 1e-15


def test_shuffled_renamed_shockley_netlist_gets_the_layered_path():
    circuit = deep_resistive_network([5, 4, 3], seed=5, ideal=False)
    text, names = _shuffled(write_netlist(circuit), np.random.default_rng(5))
    other = parse_text(text)
    x = np.random.default_rng(6).uniform(-1, 1, (2, 5))
    ours, theirs = solve(circuit, x), solve(other, x)
    assert ours.solver == theirs.solver == "layered"
    where = [other.node_names.index(names.get(name, name)) for name in circuit.node_names]
    np.testing.assert_allclose(theirs.potentials[:, where], ours.potentials, atol=1e-12)


def test_layered_shockley_reads_energy_currents_and_residual_as_the_problem_does():
    circuit = deep_resistive_network([6, 5, 2], seed=2, ideal=False)
    x = np.random.default_rng(2).uniform(-1, 1, (3, 6))
    fast, eager = solve(circuit, x, method="layered"), solve(circuit, x, method="layered", lazy=False)
    np.testing.assert_allclose(fast.energy, eager.energy, rtol=1e-12)
    assert fast.residual < 1e-15 and eager.residual < 1e-15
    np.testing.assert_allclose(fast.currents["diodes"], eager.currents["diodes"], rtol=1e-9, atol=1e-18)


@needs_ngspice
def test_layered_shockley_agrees_with_ngspice(tmp_path):
    circuit = deep_resistive_network([4, 6, 2], seed=7, ideal=False)
    x = np.random.default_rng(7).uniform(-1, 1, (1, 4))
    values = circuit.source_values(x)[0]
    deck = write_netlist(circuit, annotations=False)
    for name, value in zip(circuit.sources.names, values):  # the inputs written into the deck
        deck = re.sub(rf"^({re.escape(name)} \S+ \S+ DC )\S+$", rf"\g<1>{float(value)!r}", deck, flags=re.M)
    parsed = parse_text(deck)
    assert solve(parsed, sources=parsed.source_values(), method="layered").solver == "layered"
    assert_agrees_with_ngspice(deck, tmp_path)
    layered = solve(parsed, sources=parsed.source_values(), method="layered")
    newton = solve(parsed, sources=parsed.source_values(), method="newton", vtol=1e-14)
    assert np.abs(layered.potentials - newton.potentials).max() < 1e-12


def test_layered_shockley_warm_start_and_callback():
    circuit = deep_resistive_network([4, 3, 2], seed=1, ideal=False)
    x = np.random.default_rng(1).uniform(-1, 1, (2, 4))
    trace = []
    first = solve(circuit, x, method="layered", callback=trace.append)
    assert first.success and len(trace) == first.iterations
    again = solve(circuit, x, method="layered", x0=first.free)
    np.testing.assert_allclose(again.potentials, first.potentials, atol=1e-14)
    with pytest.raises(Exception, match="with Shockley diodes"):
        solve(deep_resistive_network([4, 3, 3, 2], seed=1, ideal=False), np.zeros((1, 4)), method="layered")
