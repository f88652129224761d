"""The netlists shipped in netlists/ that builders write, and how to write them again.

Each shipped file is exactly what its builder writes (tests/test_shipped_builders.py holds
them equal), so a change to a builder or to the netlist writer shows up as a changed file.

The classifiers start from conductances twice the builder's default (each node's total input
conductance about 2 g0): from the default, the first lr = 2 step of the default training
settings overshoots (its batch's Lyapunov function doubles, L_{-0.2;0.2} 0.156 -> 0.33 at
seed 0), from twice it descends (0.143 -> 0.085); docs/results/circuits.md.
"""

from __future__ import annotations

import os

from aeqprop_circuits.circuit.builder import deep_resistive_network
from aeqprop_circuits.experiments.reproduce.circuit_regression import fourier_regression_circuit
from aeqprop_circuits.netlist import write_netlist


def _classifier(sizes: list[int], init_scale: float):
    return deep_resistive_network(sizes, seed=0, g0=1e-3, g_range=(1e-6, 1e-2), init_scale=init_scale)


BUILT = {  # file name in netlists/: its builder
    "iris.cir": lambda: _classifier([4, 16, 3], 2.0),
    "wine.cir": lambda: _classifier([13, 16, 3], 2.0),
    "linear_regression.cir": lambda: _classifier([1, 1], 1.0),  # output = affine map of the input
    "regression_fourier.cir": fourier_regression_circuit,  # the Aeqprop regression study on a circuit
}


def built_netlists() -> dict[str, str]:
    """File name -> the netlist text its builder writes."""
    return {name: write_netlist(build()) for name, build in BUILT.items()}


def write_built_netlists(directory: str) -> list[str]:
    """Write every built netlist into `directory`; the paths written."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    for name, text in built_netlists().items():
        paths.append(os.path.join(directory, name))
        with open(paths[-1], "w") as f:
            f.write(text)
    return paths
