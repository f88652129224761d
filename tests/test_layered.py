"""The dense layered path (`method="layered"`) agrees with the generic exact solvers, which are
other algorithms on other data structures: `coordinate` (sparse block coordinate descent through
`Problem`) and `qp` (an interior-point QP)."""

import re

import numpy as np
import pytest
from circuits import make_circuit

from aeqprop_circuits.circuit.builder import deep_resistive_network
from aeqprop_circuits.circuit.energy import Nudge
from aeqprop_circuits.errors import CircuitError, SolverError
from aeqprop_circuits.netlist import parse_text, write_netlist
from aeqprop_circuits.solvers import solve
from aeqprop_circuits.solvers.layered import layered_structure


@pytest.mark.parametrize("sizes", [[6, 5, 3], [8, 6, 4, 2]])
@pytest.mark.parametrize("nudged", [False, True])
def test_layered_path_equals_coordinate_and_qp(sizes, nudged):
    circuit = deep_resistive_network(sizes, seed=2)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (5, sizes[0]))
    nudge = Nudge(0.3e-3, rng.uniform(-0.3, 0.3, (5, sizes[-1]))) if nudged else None
    if nudged and len(sizes) > 3:  # a nudge couples o+ and o- inside the output layer: not a block update
        with pytest.raises(SolverError, match="method 'layered' does not apply: .*nudge"):
            solve(circuit, x, nudge=nudge, method="layered")
        assert solve(circuit, x, nudge=nudge).solver == "coordinate"  # auto goes the generic way
        return
    fast = solve(circuit, x, nudge=nudge, method="layered")
    assert fast.solver == "layered" and fast.success and fast.residual < 1e-12
    for method in ("coordinate", "qp"):
        reference = solve(circuit, x, nudge=nudge, method=method)
        assert reference.solver == method and reference.success
        assert np.abs(fast.potentials - reference.potentials).max() < 1e-9
        assert np.abs(fast.energy - reference.energy).max() <= 1e-12 * np.abs(reference.energy).max()


@pytest.mark.parametrize("sizes", [[6, 5, 3], [6, 5, 4, 3]])
def test_layered_energy_never_increases_over_iterations(sizes):
    """Both of its algorithms: semi-smooth Newton on the outputs (one hidden layer), block sweeps (deeper)."""
    circuit = deep_resistive_network(sizes, seed=4)
    trace = []
    result = solve(circuit, np.random.default_rng(4).uniform(-1, 1, (3, 6)), method="layered", callback=trace.append)
    assert result.success and len(trace) == result.iterations
    steps = np.diff(np.array(trace), axis=0)
    assert (steps <= 1e-14 * np.abs(trace).max()).all(), steps.max()


def test_auto_takes_the_layered_path_for_builder_networks():
    circuit = deep_resistive_network([6, 5, 3], seed=1)
    x = np.random.default_rng(1).uniform(-1, 1, (2, 6))
    assert solve(circuit, x).solver == "layered"
    negative = Nudge(-0.01e-3, np.zeros((2, 3)))
    fast = solve(circuit, x, nudge=negative)
    assert fast.solver == "layered"  # one hidden layer: the Newton path serves negative nudges too
    reference = solve(circuit, x, nudge=negative, method="qp")
    assert reference.solver == "qp"
    assert np.abs(fast.potentials - reference.potentials).max() < 1e-9
    with pytest.raises(CircuitError, match="non-convex"):  # unbounded phases refused, as by the generic test
        solve(circuit, x, nudge=Nudge(-1.0, np.zeros((2, 3))))


def test_netlist_networks_take_the_layered_path_with_inferred_layers(tmp_path):
    """A DRN written to a netlist and read back has no builder layers: they are inferred and checked."""
    from aeqprop_circuits.netlist import parse_netlist, write_netlist

    built = deep_resistive_network([4, 6, 3], seed=3, g_range=(1e-6, 1e-2))
    path = tmp_path / "drn.cir"
    with open(path, "w") as f:
        f.write(write_netlist(built))
    circuit = parse_netlist(str(path))
    assert circuit.layers is None
    x = np.random.default_rng(2).uniform(-1, 1, (4, 4))
    for beta in (0.0, 0.2e-3, -0.2e-3):
        nudge = Nudge(beta, np.full((4, 3), 0.3)) if beta else None
        fast = solve(circuit, x, nudge=nudge)
        assert fast.solver == "layered"
        reference = solve(circuit, x, nudge=nudge, method="coordinate")
        assert reference.solver == "coordinate"
        assert np.abs(fast.potentials - reference.potentials).max() < 1e-9
        assert np.abs(fast.energy - reference.energy).max() < 1e-12


def test_layered_refuses_circuits_it_does_not_serve_and_says_why():
    chain = make_circuit([("V", "V1", "in", "0", 1.0), ("R", "R1", "in", "a", 1e3), ("R", "R2", "a", "b", 1e3),
                          ("R", "R3", "b", "0", 1e3), ("R", "R4", "a", "0", 1e3), ("X", "X1", "b", "hi", None),
                          ("V", "VH", "hi", "0", 0.2)], outputs=["b"])
    assert solve(chain, method="layered").solver == "layered"  # layers {a}, {b}
    triangle = make_circuit([("V", "V1", "in", "0", 1.0), ("R", "R1", "in", "a", 1e3), ("R", "R2", "a", "b", 1e3),
                             ("R", "R3", "b", "0", 1e3), ("R", "R4", "a", "0", 1e3), ("R", "R5", "in", "b", 1e3),
                             ("R", "R6", "a", "c", 1e3), ("R", "R7", "c", "b", 1e3), ("X", "X1", "b", "hi", None),
                             ("V", "VH", "hi", "0", 0.2)], outputs=["b"])
    with pytest.raises(SolverError, match="method 'layered' does not apply: the circuit is not a layered network"):
        solve(triangle, method="layered")  # c and a both join b: no consecutive layers
    assert solve(triangle).solver == "coordinate"
    deep_shockley = deep_resistive_network([4, 3, 3, 2], seed=0, ideal=False)
    with pytest.raises(SolverError, match="with Shockley diodes it serves networks of one hidden layer"):
        solve(deep_shockley, np.zeros((1, 4)), method="layered")
    assert solve(deep_shockley, np.zeros((1, 4))).solver == "newton"


def test_layered_reports_non_finite_inputs_without_solving():
    circuit = deep_resistive_network([6, 5, 3], seed=1)
    x = np.random.default_rng(1).uniform(-1, 1, (2, 6))
    x[1, 2] = np.nan
    for method in ("layered", "auto"):
        result = solve(circuit, x, method=method)
        assert not result.success and "non-finite source values" in result.message
        assert np.isnan(result.potentials).all()


def test_copies_of_a_layered_circuit_are_solved_by_the_generic_path_under_auto():
    """Several hidden-output blocks (copies of one network in one circuit) are not the one-hidden-layer Newton
    path's: auto goes to the generic solvers and gets the operating point of each copy alone."""
    from aeqprop_circuits.circuit.replicas import replicate
    from aeqprop_circuits.netlist import parse_netlist

    single = parse_netlist("netlists/iris.cir")
    copies = replicate(single, 3)
    copies = copies[0] if isinstance(copies, tuple) else copies
    result = solve(copies)
    assert result.success and result.solver != "layered"
    alone = solve(single)
    assert np.allclose(result.energy.sum(), 3 * alone.energy.sum(), rtol=1e-9)


def _shuffled(text: str, rng) -> tuple[str, dict]:
    """The netlist with its element lines in random order, some resistors turned round, the node order
    annotation dropped and every node renamed: as a hand-written or exported netlist may come."""
    lines = text.splitlines()
    nodes = sorted({w for line in lines if line[:1] in "rdv" for w in line.split()[1:3]} - {"0"})
    names = dict(zip(nodes, (f"n{k}_{rng.integers(1000)}" for k in rng.permutation(len(nodes)))))
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, sorted(nodes, key=len, reverse=True))) + r")\b")

    def rename(line: str) -> str:
        head, _, rest = line.partition(" ")
        if line.startswith("*@"):
            return pattern.sub(lambda m: names[m.group()], line)
        words = rest.split()
        if head[:1] == "r" and rng.random() < 0.5:
            words[0], words[1] = words[1], words[0]
        return " ".join([head, *(names.get(w, w) for w in words)])

    header = [lines[0]] + [rename(x) for x in lines[1:] if x.startswith("*@") and not x.startswith("*@ nodes")]
    elements = [rename(x) for x in lines[1:] if x[:1] in "rdv"]
    tail = [x for x in lines[1:] if x.startswith(".")]
    order = rng.permutation(len(elements))
    return "\n".join(header + [elements[k] for k in order] + tail) + "\n", names


@pytest.mark.parametrize("sizes, seed", [([5, 4, 3], 0), ([4, 6, 2], 1), ([4, 3, 3, 2], 2)])
def test_shuffled_renamed_netlists_get_the_layered_path_and_the_same_answer(sizes, seed):
    circuit = deep_resistive_network(sizes, seed=seed)
    rng = np.random.default_rng(seed)
    text, names = _shuffled(write_netlist(circuit), rng)
    other = parse_text(text)
    assert layered_structure(other) is not None
    x = rng.uniform(-1, 1, (3, sizes[0]))
    ours, theirs = solve(circuit, x), solve(other, x)
    assert ours.solver == theirs.solver == "layered" and theirs.success
    where = [other.node_names.index(names.get(name, name)) for name in circuit.node_names]
    np.testing.assert_allclose(theirs.potentials[:, where], ours.potentials, atol=1e-12)
    reference = solve(other, x, method="qp")
    np.testing.assert_allclose(theirs.potentials, reference.potentials, atol=1e-9)
