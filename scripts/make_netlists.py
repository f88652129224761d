"""Regenerate the shipped classifier netlists from the DRN builder: python scripts/make_netlists.py"""

from aeqprop_circuits.circuit.builder import deep_resistive_network
from aeqprop_circuits.netlist import write_netlist

SHIPPED = {  # file: (sizes [data inputs, hidden, classes], seed)
    "netlists/iris.cir": ([4, 16, 3], 0),
    "netlists/wine.cir": ([13, 16, 3], 0),
    "netlists/linear_regression.cir": ([1, 1], 0),  # output = affine map of the input (no hidden layer)
}

if __name__ == "__main__":
    for path, (sizes, seed) in SHIPPED.items():
        circuit = deep_resistive_network(sizes, seed=seed, g0=1e-3, g_range=(1e-6, 1e-2))
        with open(path, "w") as f:
            f.write(write_netlist(circuit))
        print(path, circuit.summary())
