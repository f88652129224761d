"""The dense layered fast path agrees with the generic exact solvers on builder networks."""

import numpy as np
import pytest

from aeqprop_circuits.circuit.builder import deep_resistive_network
from aeqprop_circuits.circuit.energy import Nudge
from aeqprop_circuits.errors import CircuitError
from aeqprop_circuits.solvers import solve
from aeqprop_circuits.solvers.layered import layered


@pytest.mark.parametrize("sizes", [[6, 5, 3], [8, 6, 4, 2]])
@pytest.mark.parametrize("nudged", [False, True])
def test_layered_path_equals_coordinate_and_qp(sizes, nudged):
    circuit = deep_resistive_network(sizes, seed=2)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (5, sizes[0]))
    nudge = Nudge(0.3e-3, rng.uniform(-0.3, 0.3, (5, sizes[-1]))) if nudged else None
    sources = circuit.source_values(x)
    fast = layered(circuit, sources, nudge=nudge)
    if fast is None:  # deeper networks with a nudge are not block-separable: generic path
        assert nudged and len(sizes) > 3
        return
    for method in ("coordinate", "qp"):
        reference = solve(circuit, x, nudge=nudge, method=method)
        assert np.abs(fast.potentials - reference.potentials).max() < 1e-9
    assert fast.success and fast.residual < 1e-12


def test_auto_takes_the_layered_path_for_builder_networks():
    circuit = deep_resistive_network([6, 5, 3], seed=1)
    x = np.random.default_rng(1).uniform(-1, 1, (2, 6))
    assert solve(circuit, x).solver == "layered"
    negative = Nudge(-0.01e-3, np.zeros((2, 3)))
    fast = solve(circuit, x, nudge=negative)
    assert fast.solver == "layered"  # one hidden layer: the Newton path serves negative nudges too
    reference = solve(circuit, x, nudge=negative, method="qp")
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
        assert np.abs(fast.potentials - reference.potentials).max() < 1e-9
        assert np.abs(fast.energy - reference.energy).max() < 1e-12
