"""Every fast path computes the physics of the circuit it stands for: held against `Problem` and the element table.

`circuit.energy.Problem` is the reference: the co-content, its gradient (KCL: the net current
leaving each free node) and its derivatives in the parameters, from the element table
(`circuit.elements`). The fast paths keep fused kernels for speed (a block of resistors as
matrix products, the nudge's 2x2 solve, a hidden layer eliminated in closed form); here,
on random circuits of each family, in random states (potentials anywhere, not only at
equilibrium) and random phases (nudges of either sign, targets, clamps), each one's energy,
state gradient and dE/dtheta equal the reference's to 1e-12 relative. The table itself is
held to its definition: each stamp's current is its co-content's derivative, and so on.
"""

from __future__ import annotations

import numpy as np
import pytest
from circuits import make_circuit
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from aeqprop_circuits.circuit.builder import deep_resistive_network
from aeqprop_circuits.circuit.elements import ELEMENTS
from aeqprop_circuits.circuit.energy import Nudge, Problem
from aeqprop_circuits.netlist import parse_netlist, write_netlist
from aeqprop_circuits.solvers import solve
from aeqprop_circuits.solvers.layered import OutputObjective, assemble, block_energy, block_gradient, layered_structure
from aeqprop_circuits.systems.base import Phase
from aeqprop_circuits.systems.drn import DRNSystem
from aeqprop_circuits.systems.drn.signed import SignedDRNState, SignedDRNSystem
from aeqprop_circuits.systems.drn.system import DRNState

RTOL = 1e-12
EXAMPLES = settings(max_examples=25, deadline=None)

hidden_layers = st.lists(st.integers(1, 4), min_size=0, max_size=2)
phases = st.sampled_from(["free", "positive", "negative", "clamped"])


def assert_close(fast, reference, what: str) -> None:
    fast, reference = np.concatenate([np.ravel(a) for a in fast]), np.concatenate([np.ravel(a) for a in reference])
    scale = np.abs(reference).max()
    error = np.abs(fast - reference).max()
    assert error <= RTOL * scale, f"{what}: off by {error:.3g}, relative {error / scale:.3g}"


def free_vector(problem: Problem, layers, nodes) -> np.ndarray:
    """The reference's free potentials z (B, n_free) from potentials of the given node layers."""
    z = np.zeros((len(layers[0]), problem.n_free))
    for layer, node in zip(layers, nodes):
        z[:, problem.topology.free_of_node[node]] = layer
    return z


def by_layer(values: np.ndarray, problem: Problem, nodes) -> list:
    """The reference's per-free-potential values (B, n_free) split as the fast path's layers."""
    return [values[:, problem.topology.free_of_node[node]] for node in nodes]


def nudge_of(kind: str, rng, batch: int, n_outputs: int):
    """(beta, target, clamp) of a random phase of this kind (beta in units of g0)."""
    beta = {"free": 0.0, "clamped": 0.0, "positive": rng.uniform(0.05, 2.0), "negative": -rng.uniform(0.05, 2.0)}[kind]
    target = rng.uniform(-1.0, 1.0, (batch, n_outputs))
    clamp = rng.uniform(-1.0, 1.0, (batch, n_outputs)) if kind == "clamped" else None
    return beta, target, clamp


# --- the element table ----------------------------------------------------------------------------
PARAMETERS = {  # each stamp's parameters, as arrays over 5 elements
    "resistor": lambda rng: (rng.uniform(0.1, 2.0, 5),),
    "junction": lambda rng: (rng.uniform(0.5, 2.0, 5) * 1e-3, rng.uniform(0.2, 0.5, 5), rng.uniform(0.0, 0.5, 5)),
    "current_source": lambda rng: (rng.normal(0.0, 1.0, 5),),
    "cubic": lambda rng: (rng.uniform(0.1, 2.0, 5),),
    "nudge": lambda rng: (rng.uniform(-2.0, 2.0, 5), rng.uniform(-1.0, 1.0, 5)),
}


@pytest.mark.parametrize("kind", sorted(kind for kind, stamp in ELEMENTS.items() if stamp.current is not None))
@given(seed=st.integers(0, 2**32 - 1))
@settings(max_examples=20, deadline=None)
def test_each_stamps_current_conductance_and_change_are_its_co_contents_derivatives(kind, seed):
    stamp, rng = ELEMENTS[kind], np.random.default_rng(seed)
    p = PARAMETERS[kind](rng)
    v, dv, h = rng.uniform(-1.5, 1.5, 5), rng.uniform(-0.5, 0.5, 5), 1e-6
    rest = p[1] if kind == "nudge" else np.zeros(5)  # where the element carries no current
    assert np.all(stamp.content(rest, *p) == 0.0) and np.all(stamp.current(rest, *p) == 0.0) or kind == "current_source"
    numeric = (stamp.content(v + h, *p) - stamp.content(v - h, *p)) / (2 * h)
    np.testing.assert_allclose(stamp.current(v, *p), numeric, rtol=1e-6, atol=1e-9)
    numeric = (stamp.current(v + h, *p) - stamp.current(v - h, *p)) / (2 * h)
    np.testing.assert_allclose(stamp.conductance(v, *p), numeric, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(stamp.change(v, dv, *p), stamp.content(v + dv, *p) - stamp.content(v, *p),
                               rtol=1e-9, atol=1e-12)
    if stamp.parameter_gradient is not None:
        up, down = (p[0] + h,) + p[1:], (p[0] - h,) + p[1:]
        numeric = (stamp.content(v, *up) - stamp.content(v, *down)) / (2 * h)
        np.testing.assert_allclose(stamp.parameter_gradient(v, *p), numeric, rtol=1e-6, atol=1e-9)


def test_the_nudge_is_beta_times_the_squared_error_and_a_current_source_pushes_its_current():
    v, y, beta = np.array([0.3, -1.0]), np.array([1.0, 0.5]), np.array([0.7, -0.2])
    assert np.allclose(ELEMENTS["nudge"].content(v, beta, y), 0.5 * beta * (v - y) ** 2)
    assert np.allclose(ELEMENTS["current_source"].current(v, np.array([2.0, -1.0])), [2.0, -1.0])
    assert np.allclose(ELEMENTS["resistor"].current(v, np.array([2.0, 3.0])), [0.6, -3.0])


def test_the_ideal_diode_forbids_forward_voltages_and_costs_nothing_otherwise():
    stamp = ELEMENTS["ideal_diode"]
    assert np.array_equal(stamp.content(np.array([-1.0, 0.0, 1e-9])), [0.0, 0.0, np.inf])
    assert np.array_equal(stamp.change(np.array([-1.0, -1.0]), np.array([0.5, 2.0])), [0.0, np.inf])


def test_the_junction_stamp_is_shockleys_law():
    isat, nvt, gmin = 1e-14, 0.025865, 1e-12
    v = np.array([-0.3, 0.0, 0.5, 0.7])
    law = isat * (np.exp(v / nvt) - 1.0) + gmin * v
    np.testing.assert_allclose(ELEMENTS["junction"].current(v, isat, nvt, gmin), law, rtol=1e-12, atol=1e-30)


# --- the reference: gradient, Hessian, energy change, measurements and currents are its co-content's ------
def _random_circuit(rng):
    """Resistors, Shockley diodes (nVt ~ 0.5 V: visible next to the resistors), current sources, a driven
    source, a floating source (n3 - n4), and outputs on both sources' nodes; the free nodes n0..n4."""
    nodes = ["0", "in", *(f"n{k}" for k in range(5))]
    elements = [("V", "VIN", "in", "0", 0.0), ("V", "VF", "n3", "n4", rng.uniform(-1, 1))]
    for k in range(2, len(nodes)):  # a spanning tree, then extra branches
        elements.append(("R", f"RT{k}", nodes[k], nodes[rng.integers(0, k)], rng.uniform(0.5, 2.0)))
    for k in range(6):
        a, b = rng.choice(len(nodes), 2, replace=False)
        if rng.random() < 0.5:
            elements.append(("D", f"D{k}", nodes[a], nodes[b], (rng.uniform(1e-3, 1e-2), 20.0)))
        else:
            elements.append(("R", f"R{k}", nodes[a], nodes[b], rng.uniform(0.5, 2.0)))
    elements += [("I", f"I{k}", *rng.choice(nodes, 2, replace=False), rng.normal(0.0, 0.5)) for k in range(2)]
    return make_circuit(elements, gmin=0.1, inputs=["VIN"], outputs=[("n0", "in"), "n3"])


@given(seed=st.integers(0, 2**32 - 1), nudged=st.booleans())
@EXAMPLES
def test_reference_gradient_hessian_change_and_measurements_are_its_co_contents_derivatives(seed, nudged):
    rng = np.random.default_rng(seed)
    circuit = _random_circuit(rng)
    B, h = 2, 1e-6
    sources = circuit.source_values(rng.uniform(-1.0, 1.0, (B, 1)))
    nudge = Nudge(rng.uniform(-0.5, 0.5), rng.uniform(-1.0, 1.0, (B, 2))) if nudged else None
    problem = Problem(circuit, sources, nudge=nudge)
    z, step = rng.uniform(-1.0, 1.0, (B, problem.n_free)), rng.uniform(-0.3, 0.3, (B, problem.n_free))
    scale = np.abs(problem.energy(z)).max() + np.abs(problem.energy(z + step)).max()
    change = problem.energy(z + step) - problem.energy(z)
    assert np.abs(problem.energy_change(z, step) - change).max() <= 1e-12 * scale
    eye = np.eye(problem.n_free)
    numeric = np.stack([(problem.energy(z + h * e) - problem.energy(z - h * e)) / (2 * h) for e in eye], axis=1)
    np.testing.assert_allclose(problem.gradient(z), numeric, rtol=1e-6, atol=1e-8)
    hessian = problem.hessian(z).toarray()
    for b in range(B):
        numeric = np.stack([(problem.gradient(z + h * e)[b] - problem.gradient(z - h * e)[b]) / (2 * h) for e in eye])
        block = hessian[b * problem.n_free:(b + 1) * problem.n_free, b * problem.n_free:(b + 1) * problem.n_free]
        np.testing.assert_allclose(block, numeric, rtol=1e-6, atol=1e-8)
    measured = problem.parameter_gradient(z)
    g = circuit.resistors.conductance
    for k in range(len(g)):  # a small circuit: a loop over its resistors and sources
        up, down = (Problem(circuit, sources, g + h * np.eye(len(g))[k] * sign, nudge) for sign in (1, -1))
        np.testing.assert_allclose(measured["resistors"][:, k], (up.energy(z) - down.energy(z)) / (2 * h),
                                   rtol=1e-6, atol=1e-8)
    for j, k in enumerate(np.flatnonzero(~circuit.sources.is_voltage)):
        up, down = (Problem(circuit, sources + h * np.eye(sources.shape[1])[k] * sign, nudge=nudge) for sign in (1, -1))
        np.testing.assert_allclose(measured["current_sources"][:, j], (up.energy(z) - down.energy(z)) / (2 * h),
                                   rtol=1e-6, atol=1e-8)
    # the branch currents: their net current out of each free supernode is the gradient (KCL), nudge included
    currents = problem.branch_currents(z)
    leaving = currents["resistors"] @ problem.Dr + currents["diodes"] @ problem.Dd \
        + currents["current_sources"] @ problem.Di
    if nudged:
        pulled = ELEMENTS["nudge"].current((problem.Do @ problem.potentials(z).T).T, nudge.conductance, nudge.target)
        leaving = leaving + pulled @ problem.Do
    assert_close([np.asarray(leaving @ problem.topology.P)], [problem.gradient(z)], "KCL of the branch currents")


@given(seed=st.integers(0, 2**32 - 1), beta=st.floats(0.05, 0.5))
@EXAMPLES
def test_reference_branch_currents_balance_every_node_of_a_nudged_equilibrium(seed, beta):
    """Voltage sources carry what KCL leaves for them, the nudge's current included."""
    rng = np.random.default_rng(seed)
    circuit = _random_circuit(rng)
    sources = circuit.source_values(rng.uniform(-1.0, 1.0, (2, 1)))
    nudge = Nudge(beta, rng.uniform(-1.0, 1.0, (2, 2)))
    result = solve(circuit, sources=sources, nudge=nudge, method="newton")
    problem = Problem(circuit, sources, nudge=nudge)
    currents = problem.branch_currents(result.free)
    V = result.potentials
    net = ELEMENTS["nudge"].current((problem.Do @ V.T).T, nudge.conductance, nudge.target) @ problem.Do
    vs = circuit.sources.is_voltage
    groups = ((circuit.resistors.nodes, "resistors"), (circuit.diodes.nodes, "diodes"),
              (circuit.sources.nodes[vs], "voltage_sources"), (circuit.sources.nodes[~vs], "current_sources"))
    for pairs, group in groups:
        np.add.at(net.T, pairs[:, 0], currents[group].T)
        np.subtract.at(net.T, pairs[:, 1], currents[group].T)
    scale = max(np.abs(c).max() for c in currents.values() if c.size)
    assert result.success and np.abs(net).max() <= 1e-9 * scale


# --- builder DRNs: DRNSystem against its circuit() --------------------------------------------------
@given(n_in=st.integers(1, 4), hidden=hidden_layers, n_out=st.integers(1, 3), bias=st.booleans(),
       diodes=st.sampled_from(["ideal", "shockley"]), kind=phases, seed=st.integers(0, 2**32 - 1))
@EXAMPLES
def test_drn_system_energy_gradient_and_measurements_are_its_circuits(n_in, hidden, n_out, bias, diodes, kind, seed):
    rng = np.random.default_rng(seed)
    sizes = [n_in, *hidden, n_out]
    system = DRNSystem(sizes, seed=seed % 1000, bias=bias, diodes=diodes, input_gain=rng.uniform(0.5, 3.0),
                       v_low=rng.uniform(-0.5, 0.0), v_high=rng.uniform(0.2, 1.0))
    system.parameters = rng.uniform(0.0, 2.0, system.n_parameters)
    B = 3
    x = rng.uniform(-1.0, 1.0, (B, n_in))
    beta, target, clamp = nudge_of(kind, rng, B, n_out)
    phase = Phase(x, beta, target, clamp)
    layers = [rng.uniform(system.v_low - 0.2, system.v_high + 0.2, (B, w)) for w in system.widths[1:]]
    if clamp is not None:
        layers[-1][:, :n_out] = layers[-1][:, n_out:] + clamp
    v_in, _ = system._input_current(x)
    state = DRNState(layers, v_in, phase, system._version, 0, True, system)

    circuit = system.circuit()
    nudge = Nudge(beta * system.g0, target) if beta else None
    problem = Problem(circuit, system.source_values(circuit, x), nudge=nudge)
    z = free_vector(problem, layers, circuit.layers)
    assert_close([system.energy(state)], [problem.energy(z) / system.g0], "energy")
    assert_close(system._gradient(layers, phase), by_layer(problem.gradient(z) / system.g0, problem, circuit.layers),
                 "state gradient")
    measured = problem.parameter_gradient(z)["resistors"][:, circuit.learning.trainable].mean(axis=0)
    assert_close([system.energy_gradient(state)], [measured], "dE/dtheta")


# --- signed DRNs: SignedDRNSystem against its circuit() -----------------------------------------------
@given(n_in=st.integers(1, 4), hidden=st.lists(st.integers(1, 4), min_size=1, max_size=2), n_out=st.integers(1, 3),
       kind=phases, seed=st.integers(0, 2**32 - 1))
@EXAMPLES
def test_signed_drn_energy_gradient_and_measurements_are_its_circuits(n_in, hidden, n_out, kind, seed):
    rng = np.random.default_rng(seed)
    system = SignedDRNSystem([n_in, *hidden, n_out], seed=seed % 1000, input_gain=rng.uniform(0.5, 3.0),
                             dtype="float64")
    theta = rng.uniform(0.0, 2.0, system.n_parameters)
    theta[system.n_weights:] = rng.normal(0.0, 0.5, system.n_parameters - system.n_weights)  # signed biases
    system.parameters = theta
    B = 3
    x = rng.uniform(-1.0, 1.0, (B, n_in))
    beta, target, clamp = nudge_of(kind, rng, B, n_out)
    phase = Phase(x, beta, target, clamp)
    layers = [rng.uniform(-1.0, 1.0, (B, w)) for w in system.widths[1:]]
    if clamp is not None:
        layers[-1] = clamp.copy()
    v_in, _ = system._input_drive(x)
    state = SignedDRNState(layers, v_in, phase, system, system._version)

    circuit = system.circuit()
    nudge = Nudge(beta * system.g0, target) if beta else None
    problem = Problem(circuit, system.source_values(circuit, x), nudge=nudge)
    z = free_vector(problem, layers, circuit.layers)
    assert_close([system.energy(state)], [problem.energy(z) / system.g0], "energy")
    assert_close(system._gradient(layers, phase), by_layer(problem.gradient(z) / system.g0, problem, circuit.layers),
                 "state gradient")
    measured = problem.parameter_gradient(z)
    reference = np.concatenate([measured["resistors"].mean(axis=0), measured["current_sources"].mean(axis=0)])
    assert_close([system.energy_gradient(state)], [reference], "dE/dtheta")


# --- the layered solver's dense blocks, on builder circuits and on netlists ---------------------------
def _layered_case(n_in, hidden, n_out, bias, from_netlist, rng, tmp_dir, B=3):
    circuit = deep_resistive_network([n_in, *hidden, n_out], seed=int(rng.integers(1000)), bias=bias,
                                     g_range=(1e-6, 1e-2))
    if from_netlist:  # layers inferred from the netlist, not given by the builder
        path = tmp_dir / f"drn{rng.integers(1 << 30)}.cir"
        path.write_text(write_netlist(circuit))
        circuit = parse_netlist(str(path))
    structure = layered_structure(circuit)
    assume(structure is not None)  # no hidden layer, with biases: one run of bias resistors, not a grid
    sources = circuit.source_values(rng.uniform(-1.0, 1.0, (B, n_in)))
    g = circuit.resistors.conductance * rng.uniform(0.5, 2.0, len(circuit.resistors.conductance))
    return circuit, structure, sources, g, B


@given(n_in=st.integers(1, 4), hidden=hidden_layers, n_out=st.integers(1, 3), bias=st.booleans(),
       from_netlist=st.booleans(), kind=st.sampled_from(["free", "positive", "negative"]),
       batch=st.sampled_from([3, 12]), seed=st.integers(0, 2**32 - 1))
@EXAMPLES
def test_layered_blocks_energy_and_gradient_are_the_circuits(tmp_path_factory, n_in, hidden, n_out, bias,
                                                              from_netlist, kind, batch, seed):
    """Batches of up to 8 and of more take different forms of the input block's energy: both are tested."""
    rng = np.random.default_rng(seed)
    circuit, structure, sources, g, B = _layered_case(n_in, hidden, n_out, bias, from_netlist, rng,
                                                      tmp_path_factory.getbasetemp(), batch)
    beta, target, _ = nudge_of(kind, rng, B, n_out)
    nudge = Nudge(beta * 1e-3, target) if beta else None
    blocks = assemble(structure, g, sources)
    V = [rng.uniform(-1.0, 1.5, (B, len(layer))) for layer in structure.layers]
    problem = Problem(circuit, sources, g, nudge)
    z = free_vector(problem, V, structure.layers)
    assert_close([block_energy(V, blocks, structure, g, nudge, circuit)], [problem.energy(z)], "energy")
    assert_close(block_gradient(V, blocks, structure, nudge, circuit),
                 by_layer(problem.gradient(z), problem, structure.layers), "state gradient")


@given(n_in=st.integers(1, 4), n_hidden=st.integers(1, 4), n_out=st.integers(1, 3), bias=st.booleans(),
       kind=st.sampled_from(["free", "positive", "negative"]), seed=st.integers(0, 2**32 - 1))
@EXAMPLES
def test_layered_newton_objective_is_the_co_content_with_the_hidden_layer_eliminated(n_in, n_hidden, n_out, bias,
                                                                                      kind, seed):
    """F(o) - F(o') = E(h(o), o) - E(h(o'), o'), dF/do is the outputs' KCL residual at (h(o), o), and h(o)
    minimises E over the hidden layer: its KCL holds, except where an ideal diode holds a node at its bound."""
    rng = np.random.default_rng(seed)
    circuit, structure, sources, g, B = _layered_case(n_in, [n_hidden], n_out, bias, False, rng, None)
    beta, target, _ = nudge_of(kind, rng, B, n_out)
    nudge = Nudge(beta * 1e-3, target) if beta else None
    objective = OutputObjective(assemble(structure, g, sources), circuit, structure, nudge)
    problem = Problem(circuit, sources, g, nudge)
    outputs = [rng.uniform(-1.0, 1.5, (B, 2 * n_out)) for _ in range(2)]
    values, energies = [], []
    for o in outputs:
        value, gradient, h = objective(o)
        z = free_vector(problem, objective.layers(h, o), structure.layers)
        values.append(value)
        energies.append(problem.energy(z))
        hidden, reference = by_layer(problem.gradient(z), problem, structure.layers)
        assert_close([gradient], [reference[:, objective.cols]], "output gradient")
        # KCL relative to the currents that meet at a node (the diagonal's Dh*h or a branch's current)
        currents = np.abs(problem.branch_currents(z)["resistors"]).max()
        hidden, scale = hidden[:, objective.rows], max(np.abs(objective.Dh * h).max(), currents)
        at_low, at_high = h <= objective.lo_h, h >= objective.hi_h
        assert np.all(np.abs(hidden[~(at_low | at_high)]) <= RTOL * scale), "hidden KCL"
        assert np.all(hidden[at_high] <= RTOL * scale) and np.all(hidden[at_low] >= -RTOL * scale), "hidden bounds"
    scale = np.abs(energies).max()
    assert np.abs((values[0] - values[1]) - (energies[0] - energies[1])).max() <= RTOL * scale


# --- the replica circuits of the regression study ---------------------------------------------------
@given(replicas=st.integers(1, 3), seed=st.integers(0, 2**32 - 1), nudged=st.booleans())
@EXAMPLES
def test_replica_circuit_energy_settle_and_measurements_are_its_circuits(replicas, seed, nudged):
    from aeqprop_circuits.experiments.reproduce import circuit_regression as cr

    rng = np.random.default_rng(seed)
    base = deep_resistive_network([int(rng.integers(1, 4)), 1], seed=seed % 1000, bias=False, g_range=(1e-6, 1e-2))
    system = cr.ReplicaCircuitSystem(base, replicas, beta_low=rng.uniform(-0.3, 0.0, replicas),
                                     beta_span=rng.uniform(0.0, 1.0, replicas))
    system.parameters = rng.uniform(0.5, 2.0, len(system.parameters))
    B = 2
    inputs = rng.uniform(-1.0, 1.0, (B, system.n_inputs))
    phase = Phase(inputs, rng.uniform(0.0, 1.0), rng.uniform(-0.5, 0.5, (B, replicas))) if nudged else Phase(inputs)
    settled = system.settle(phase)
    problem = Problem(system.circuit, settled.sources, settled.conductance)
    # at the settled state: KCL holds (relative to the branch currents) and the energy is the co-content
    currents = np.abs(problem.branch_currents(settled.free)["resistors"]).max()
    assert np.abs(problem.gradient(settled.free)).max() <= RTOL * currents
    assert_close([system.energy(settled)], [problem.energy(settled.free) / system.g0], "settled energy")
    # in a random state: the replicas' energy and the measured dE/dtheta
    z = rng.uniform(-1.0, 1.0, settled.free.shape)
    settled.result.potentials = problem.potentials(z)
    assert_close([system.replica_energy(settled).sum()], [problem.energy(z).mean() / system.g0], "energy")
    measured = problem.parameter_gradient(z)["resistors"][:, system.circuit.learning.trainable].mean(axis=0)
    assert_close([system.energy_gradient(settled)], [measured], "dE/dtheta")


def test_every_mutant_of_the_mutation_check_applies_to_the_sources():
    """scripts/mutate.py names physics statements by their text: an edited formula must be named anew."""
    import importlib.util
    import pathlib
    import sys

    path = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "mutate.py"
    spec = importlib.util.spec_from_file_location("mutate", path)
    mutate = sys.modules["mutate"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mutate)
    for mutant in mutate.MUTANTS:
        source = (mutate.ROOT / mutant.path).read_text()
        mutated = mutate.mutate(source, mutant)
        assert mutated != source
        compile(mutated, mutant.path, "exec")
