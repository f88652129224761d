"""Invariants of the solvers on random networks (hypothesis).

Random connected networks of resistors, exponential or ideal diodes, voltage and current
sources; each property is a physical law or an agreement between independent methods:
KCL at every node, energy never rising during the iterations, reciprocity of linear
networks, newton = coordinate = qp = a brute-force active-set enumeration, layered = coordinate
= qp on deep resistive networks, batched = per-sample, warm starts converging to the same point
in fewer iterations. Every named method is the one that runs (`result.solver`).
"""

from __future__ import annotations

import itertools

import numpy as np
from circuits import make_circuit
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aeqprop_circuits.solvers import solve

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
seeds = st.integers(0, 2 ** 32 - 1)


def random_network(seed: int, *, n_free: int = 6, diodes: bool = True, current_sources: bool = True,
                   floating_sources: bool = True, ideal: str | None = None, rails: bool = False):
    """A random connected network; returns (elements, names of the free nodes).

    A random spanning tree of resistors (and diodes) joins ground, the source nodes and the
    free nodes, plus as many random extra branches. Voltage sources form a forest (never a
    loop): grounded ones drive input nodes, `floating_sources` adds sources between nodes.
    `ideal`: None, "box" (ideal diodes from free nodes to fixed rails, upper rails >= 0 >=
    lower ones, so constraints never conflict) or "general" (also between free nodes).
    """
    rng = np.random.default_rng(seed)
    elements = []
    n_inputs = int(rng.integers(1, 3))
    fixed = [f"in{k}" for k in range(n_inputs)]
    for k, node in enumerate(fixed):
        elements.append(("V", f"VIN{k}", node, "0", rng.uniform(-2, 2)))
    free = [f"n{k}" for k in range(n_free)]
    tied = set()
    if floating_sources and n_free >= 3:  # a source between two free nodes: a supernode
        a, b = rng.choice(n_free, 2, replace=False)
        elements.append(("V", "VF", free[a], free[b], rng.uniform(-1, 1)))
        tied.update({free[a], free[b]})
    nodes = ["0"] + fixed + free

    def resistance():
        return float(np.exp(rng.uniform(np.log(100.0), np.log(1e5))))

    def branch(a, b, label):
        if diodes and rng.random() < 0.3:
            isat, emission = float(np.exp(rng.uniform(np.log(1e-15), np.log(1e-12)))), rng.uniform(1.0, 2.0)
            pair = (a, b) if rng.random() < 0.5 else (b, a)
            elements.append(("D", f"D{label}", *pair, (isat, emission)))
        else:
            elements.append(("R", f"R{label}", a, b, resistance()))

    order = rng.permutation(len(nodes) - 1) + 1
    for i, k in enumerate(order):  # spanning tree: each node joins one placed before it
        parent = nodes[0] if i == 0 else nodes[order[rng.integers(0, i)]] if rng.random() < 0.8 else "0"
        branch(nodes[k], parent, f"t{i}")
    for i in range(len(nodes)):
        a, b = rng.choice(len(nodes), 2, replace=False)
        if nodes[a] in fixed and nodes[b] in fixed:
            continue
        branch(nodes[a], nodes[b], f"x{i}")
    if current_sources:
        for i in range(int(rng.integers(0, 3))):
            a, b = rng.choice(len(nodes), 2, replace=False)
            elements.append(("I", f"I{i}", nodes[a], nodes[b], rng.uniform(-2e-3, 2e-3)))
    if ideal is not None:
        for k, node in enumerate(free):
            # none, below an upper rail, above a lower rail, both; never on a supernode (its
            # source could push one end past the other's rail: a conflict, not an operating point)
            last_untied = node == [f for f in free if f not in tied][-1]
            kind = 0 if node in tied else 1 if last_untied and not any(e[0] == "X" for e in elements) \
                else rng.integers(0, 4)
            if kind in (1, 3):
                elements += [("V", f"VH{k}", f"hi{k}", "0", rng.uniform(0.0, 1.0)),
                             ("X", f"XH{k}", node, f"hi{k}", None)]
            if kind in (2, 3):
                elements += [("V", f"VL{k}", f"lo{k}", "0", rng.uniform(-1.0, 0.0)),
                             ("X", f"XL{k}", f"lo{k}", node, None)]
        if ideal == "general" and n_free >= 2:
            for i in range(int(rng.integers(1, 4))):
                a, b = rng.choice(n_free, 2, replace=False)
                if free[a] in tied or free[b] in tied:
                    continue
                elements.append(("X", f"XF{i}", free[a], free[b], None))
    return elements, free


def kcl_imbalance(circuit, result):
    """Net current leaving every node through every element (SPICE signs), (B, n_nodes)."""
    net = np.zeros_like(result.potentials)
    vs = circuit.sources.is_voltage
    groups = [(circuit.resistors.nodes, "resistors"), (circuit.diodes.nodes, "diodes"),
              (circuit.ideal_diodes.nodes, "ideal_diodes"), (circuit.sources.nodes[vs], "voltage_sources"),
              (circuit.sources.nodes[~vs], "current_sources")]
    for pairs, group in groups:
        if len(pairs) == 0:
            continue
        i = result.currents[group]
        np.add.at(net.T, pairs[:, 0], i.T)
        np.subtract.at(net.T, pairs[:, 1], i.T)
    return net


def current_scale(result):
    return max(np.abs(v).max() for v in result.currents.values() if v.size)


def close_volts(a, b, tol=1e-9):
    a, b = np.asarray(a), np.asarray(b)
    return np.abs(a - b).max() <= tol * (1.0 + np.abs(b).max())


# --- KCL ------------------------------------------------------------------------------------

@settings(max_examples=30, **SETTINGS)
@given(seed=seeds, n_free=st.integers(1, 10))
def test_kcl_residual_is_tiny_on_random_networks(seed, n_free):
    elements, _ = random_network(seed, n_free=n_free)
    c = make_circuit(elements)
    r = solve(c)
    assert r.success, r.message
    scale = current_scale(r)
    assert r.residual <= 1e-12 * scale + 1e-18
    # Every node balances, ground and source nodes included: checks the reported currents too.
    assert np.abs(kcl_imbalance(c, r)).max() <= 1e-11 * scale + 1e-18


@settings(max_examples=30, **SETTINGS)
@given(seed=seeds, n_free=st.integers(1, 8), general=st.booleans())
def test_kcl_balances_every_node_of_random_ideal_diode_networks(seed, n_free, general):
    elements, _ = random_network(seed, n_free=n_free, diodes=False, ideal="general" if general else "box")
    c = make_circuit(elements)
    r = solve(c)
    assert r.success, r.message
    scale = current_scale(r)
    assert r.residual <= 1e-11 * scale + 1e-18
    assert np.abs(kcl_imbalance(c, r)).max() <= 1e-10 * scale + 1e-18
    assert (r.currents["ideal_diodes"] >= -1e-10 * scale).all()  # ideal diodes conduct forward only


# --- energy decreases -----------------------------------------------------------------------

def assert_monotone(trace, final):
    trace = np.array(trace)  # (iterations, B)
    assert len(trace) >= 1
    slack = 1e-14 * np.abs(trace).max() + 1e-30
    assert (np.diff(trace, axis=0) <= slack).all(), np.diff(trace, axis=0).max()
    assert (final <= trace[-1] + slack).all()


@settings(max_examples=25, **SETTINGS)
@given(seed=seeds, n_free=st.integers(1, 8))
@example(seed=1083, n_free=7)  # a gmin-held node leaves a 8e-11 V step the energy cannot resolve
def test_newton_energy_never_increases_over_iterations(seed, n_free):
    elements, _ = random_network(seed, n_free=n_free)
    c = make_circuit(elements, inputs=["VIN0"])
    trace = []
    r = solve(c, np.random.default_rng(seed).uniform(-3, 3, (3, 1)), method="newton", callback=trace.append)
    assert r.success, r.message
    assert_monotone(trace, r.energy)


@settings(max_examples=30, **SETTINGS)
@given(seed=seeds, n_free=st.integers(1, 8))
def test_coordinate_energy_never_increases_over_sweeps(seed, n_free):
    elements, _ = random_network(seed, n_free=n_free, diodes=False, ideal="box")
    c = make_circuit(elements, inputs=["VIN0"])
    trace = []
    r = solve(c, np.random.default_rng(seed).uniform(-3, 3, (3, 1)), method="coordinate",
              callback=trace.append)
    assert r.success and r.solver == "coordinate", r.message
    assert_monotone(trace, r.energy)


# --- reciprocity ----------------------------------------------------------------------------

@settings(max_examples=30, **SETTINGS)
@given(seed=seeds, n_free=st.integers(2, 10), data=st.data())
def test_transfer_resistance_of_linear_networks_is_symmetric(seed, n_free, data):
    elements, free = random_network(seed, n_free=n_free, diodes=False, current_sources=False)
    i, j = data.draw(st.lists(st.sampled_from(free), min_size=2, max_size=2, unique=True))
    c = make_circuit(elements + [("I", "INJ_I", "0", i, 0.0), ("I", "INJ_J", "0", j, 0.0)])
    n_src = len(c.sources.names)
    sources = np.zeros((2, n_src))  # every other source killed
    sources[0, n_src - 2] = 1e-3  # 1 mA into i
    sources[1, n_src - 1] = 1e-3  # 1 mA into j
    for method in ("newton", "coordinate", "qp"):
        r = solve(c, sources=sources, method=method)
        assert r.success, r.message
        v_j_from_i = r.potentials[0, c.node_index[j]]
        v_i_from_j = r.potentials[1, c.node_index[i]]
        assert abs(v_j_from_i - v_i_from_j) <= 1e-9 * max(abs(v_i_from_j), 0.1)  # 1 mA x 100 ohm floor


# --- agreement of independent methods -------------------------------------------------------

@settings(max_examples=30, **SETTINGS)
@given(seed=seeds, n_free=st.integers(1, 10))
def test_newton_coordinate_and_qp_agree_on_linear_networks(seed, n_free):
    elements, _ = random_network(seed, n_free=n_free, diodes=False)
    c = make_circuit(elements, inputs=["VIN0"])
    x = np.random.default_rng(seed).uniform(-3, 3, (4, 1))
    results = {m: solve(c, x, method=m) for m in ("newton", "coordinate", "qp")}
    assert all(r.success and r.solver == m for m, r in results.items()), {m: r.message for m, r in results.items()}
    ref = results["newton"].potentials
    for m in ("coordinate", "qp"):
        assert close_volts(results[m].potentials, ref), (m, np.abs(results[m].potentials - ref).max())


@settings(max_examples=30, **SETTINGS)
@given(seed=seeds, n_free=st.integers(1, 10))
@example(seed=100000, n_free=2)  # a layered network: the automatic choice is the layered solver
def test_coordinate_and_qp_agree_on_box_type_ideal_diode_networks(seed, n_free):
    elements, _ = random_network(seed, n_free=n_free, diodes=False, ideal="box")
    c = make_circuit(elements, inputs=["VIN0"])
    x = np.random.default_rng(seed).uniform(-3, 3, (4, 1))
    coordinate, qp = solve(c, x, method="coordinate"), solve(c, x, method="qp")
    assert coordinate.success and qp.success, (coordinate.message, qp.message)
    assert (coordinate.solver, qp.solver) == ("coordinate", "qp")
    assert close_volts(coordinate.potentials, qp.potentials), np.abs(coordinate.potentials - qp.potentials).max()
    automatic = solve(c, x)  # the coordinate solver, or the layered one where the network happens to be layered
    assert automatic.solver in ("coordinate", "layered")
    assert close_volts(automatic.potentials, qp.potentials), np.abs(automatic.potentials - qp.potentials).max()


def active_set_reference(circuit):
    """Exact operating point of an ideal-diode network by enumerating which diodes conduct.

    Independent of the package's topology and energy code: dense nodal analysis with every
    voltage source grounded (as in `random_network` with floating_sources=False), the
    conducting diodes as equalities; the one candidate that is feasible with non-negative
    diode currents is the optimum (the co-content is strictly convex).
    """
    n = circuit.n_nodes
    src = circuit.sources
    fixed = np.zeros(n, dtype=bool)
    fixed[0] = True
    v_fixed = np.zeros(n)
    for (a, b), value, is_v in zip(src.nodes, src.value, src.is_voltage):
        if is_v:
            assert b == 0
            fixed[a], v_fixed[a] = True, value
    G = np.zeros((n, n))
    for (a, b), g in zip(circuit.resistors.nodes, circuit.resistors.conductance):
        G[a, a] += g
        G[b, b] += g
        G[a, b] -= g
        G[b, a] -= g
    injected = np.zeros(n)
    for (a, b), value, is_v in zip(src.nodes, src.value, src.is_voltage):
        if not is_v:
            injected[a] -= value
            injected[b] += value
    free = np.flatnonzero(~fixed)
    K = G[np.ix_(free, free)]
    rhs = injected[free] - G[np.ix_(free, np.flatnonzero(fixed))] @ v_fixed[fixed]
    D = np.zeros((len(circuit.ideal_diodes.names), n))
    for k, (a, b) in enumerate(circuit.ideal_diodes.nodes):
        D[k, a] += 1.0
        D[k, b] -= 1.0
    A, offset = D[:, free], D[:, fixed] @ v_fixed[fixed]  # diode voltage A v + offset <= 0
    m = len(A)
    best = []
    for on in itertools.product([False, True], repeat=m):
        on = np.array(on, dtype=bool)
        k = int(on.sum())
        kkt = np.block([[K, A[on].T], [A[on], np.zeros((k, k))]])
        b = np.concatenate([rhs, -offset[on]])
        try:
            x = np.linalg.solve(kkt, b)
        except np.linalg.LinAlgError:
            continue
        v, current = x[:len(free)], x[len(free):]
        scale = 1.0 + np.abs(v).max()
        if (A @ v + offset <= 1e-10 * scale).all() and (current >= -1e-12).all():
            full = v_fixed.copy()
            full[free] = v
            best.append(full)
    assert best, "no KKT point: the reference found no operating point"
    return best[0]


@settings(max_examples=30, **SETTINGS)
@given(seed=seeds, n_free=st.integers(1, 6))
def test_qp_and_auto_match_active_set_enumeration_on_ideal_diodes_between_free_nodes(seed, n_free):
    elements, _ = random_network(seed, n_free=n_free, diodes=False, floating_sources=False, ideal="general")
    c = make_circuit(elements)
    reference = active_set_reference(c)
    for method in ("qp", "auto"):
        r = solve(c, method=method)
        assert r.success, r.message
        assert close_volts(r.potentials[0], reference), (method, np.abs(r.potentials[0] - reference).max())


@settings(max_examples=30, **SETTINGS)
@given(seed=seeds, n_free=st.integers(1, 6))
def test_coordinate_matches_active_set_enumeration_on_box_type_networks(seed, n_free):
    elements, _ = random_network(seed, n_free=n_free, diodes=False, floating_sources=False, ideal="box")
    c = make_circuit(elements)
    r = solve(c, method="coordinate")
    assert r.success, r.message
    reference = active_set_reference(c)
    assert close_volts(r.potentials[0], reference), np.abs(r.potentials[0] - reference).max()


# --- batches and warm starts ----------------------------------------------------------------

@settings(max_examples=15, **SETTINGS)
@given(seed=seeds, n_free=st.integers(1, 8), ideal=st.booleans())
def test_batched_solve_equals_per_sample_solves(seed, n_free, ideal):
    elements, _ = random_network(seed, n_free=n_free, diodes=not ideal, ideal="box" if ideal else None)
    c = make_circuit(elements, inputs=["VIN0"])
    x = np.random.default_rng(seed).uniform(-3, 3, (3, 1))
    methods = ("coordinate", "qp") if ideal else ("newton",)
    for method in methods:
        batch = solve(c, x, method=method)
        assert batch.success, batch.message
        for b in range(len(x)):
            single = solve(c, x[b:b + 1], method=method)
            assert single.success, single.message
            assert close_volts(batch.potentials[b], single.potentials[0], tol=1e-10)
            assert abs(batch.energy[b] - single.energy[0]) <= 1e-9 * abs(single.energy[0]) + 1e-18


@settings(max_examples=15, **SETTINGS)
@given(seed=seeds, n_free=st.integers(2, 8))
@example(seed=138856, n_free=7)  # a stall test on KCL alone would stop 0.38 V from the operating point
@example(seed=14953, n_free=5)  # a node held by reverse junctions only: its last Newton step is 2.5 nV of rounding
def test_newton_warm_start_reaches_the_same_point_in_fewer_iterations(seed, n_free):
    elements, _ = random_network(seed, n_free=n_free)
    c = make_circuit(elements, inputs=["VIN0"])
    x = np.random.default_rng(seed).uniform(-3, 3, (3, 1))
    cold = solve(c, x, method="newton")
    assert cold.success, cold.message
    warm = solve(c, x, method="newton", x0=cold.free)
    assert warm.success and close_volts(warm.potentials, cold.potentials, tol=1e-12)
    assert warm.iterations <= cold.iterations and (warm.iterations < cold.iterations or cold.iterations == 1)
    # Nearby inputs: from the old point, the same new point.
    moved = x + 1e-3
    cold_moved = solve(c, moved, method="newton")
    warm_moved = solve(c, moved, method="newton", x0=cold.free)
    assert warm_moved.success and close_volts(warm_moved.potentials, cold_moved.potentials)


@settings(max_examples=20, **SETTINGS)
@given(seed=seeds, n_free=st.integers(2, 8))
def test_coordinate_warm_start_reaches_the_same_point_in_fewer_sweeps(seed, n_free):
    elements, _ = random_network(seed, n_free=n_free, diodes=False, ideal="box")
    c = make_circuit(elements, inputs=["VIN0"])
    x = np.random.default_rng(seed).uniform(-3, 3, (3, 1))
    cold = solve(c, x, method="coordinate")
    assert cold.success, cold.message
    warm = solve(c, x, method="coordinate", x0=cold.free)
    assert warm.success and close_volts(warm.potentials, cold.potentials, tol=1e-12)
    assert warm.iterations <= cold.iterations and (warm.iterations < cold.iterations or cold.iterations == 1)


# --- deep resistive networks from the builder ------------------------------------------------

@settings(max_examples=10, **SETTINGS)
@given(seed=seeds, hidden=st.lists(st.integers(1, 6), min_size=1, max_size=3))
def test_layered_coordinate_descent_and_qp_agree_on_deep_resistive_networks(seed, hidden):
    from aeqprop_circuits.circuit.builder import deep_resistive_network

    c = deep_resistive_network([3, *hidden, 2], seed=seed % 2 ** 31, ideal=True)
    x = np.random.default_rng(seed).uniform(-1, 1, (3, 3))
    results = {m: solve(c, x, method=m) for m in ("layered", "coordinate", "qp")}
    assert all(r.success and r.solver == m for m, r in results.items()), {m: r.message for m, r in results.items()}
    qp = results["qp"]
    scale = current_scale(qp)
    for m in ("layered", "coordinate"):
        assert close_volts(results[m].potentials, qp.potentials), (m, np.abs(results[m].potentials - qp.potentials))
        assert np.abs(results[m].energy - qp.energy).max() <= 1e-9 * np.abs(qp.energy).max()
        assert results[m].residual <= 1e-11 * scale
        assert np.abs(kcl_imbalance(c, results[m])).max() <= 1e-10 * scale
    assert qp.residual <= 1e-11 * scale
    assert solve(c, x).solver == "layered"
    exponential = solve(deep_resistive_network([3, *hidden, 2], seed=seed % 2 ** 31, ideal=False), x)
    assert exponential.success and exponential.residual <= 1e-12 * current_scale(exponential)
