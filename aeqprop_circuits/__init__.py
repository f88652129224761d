"""aeqprop-circuits: physical learning machines as SPICE netlists, trained by operator loops around the physics.

The Python face of everything the `aeqprop` command does (docs/python-api.md)::

    import aeqprop_circuits as aq

    circuit = aq.parse_netlist("netlists/iris.cir")
    print(aq.solve(circuit, inputs=[[0.1, -0.2, 0.3, 0.0]]).potentials)
    result = aq.train("netlists/iris.cir", data="iris", epochs=5)
    print(result.final["test_accuracy"])

Stages, lowest first (each imports only those before it): circuit (the compiled Circuit and its
element table), netlist (parse / write SPICE), solvers (`solve`), systems (PhysicalSystem:
circuits, deep resistive networks, Hopfield networks), learning (rules, optimiser pieces,
Lyapunov function), experiments (TrainConfig, the training loop, run directories, presets).
"""

from importlib.metadata import PackageNotFoundError, version

from aeqprop_circuits.circuit.circuit import Circuit
from aeqprop_circuits.data.datasets import Dataset, load_dataset
from aeqprop_circuits.errors import AeqpropError, CircuitError, DatasetError, DivergenceError, NetlistError, SolverError
from aeqprop_circuits.experiments.config import TrainConfig, resolve
from aeqprop_circuits.experiments.presets import PRESETS
from aeqprop_circuits.experiments.session import TrainResult, train
from aeqprop_circuits.learning.algorithms import algorithm_names, get_algorithm
from aeqprop_circuits.learning.lyapunov import lyapunov
from aeqprop_circuits.netlist import parse_netlist, parse_text, write_netlist
from aeqprop_circuits.solvers import SOLVER_NAMES, Nudge, SolveResult, solve
from aeqprop_circuits.systems.base import Phase, PhysicalSystem
from aeqprop_circuits.systems.circuit import CircuitSystem
from aeqprop_circuits.systems.drn import DRNSystem
from aeqprop_circuits.systems.drn.signed import SignedDRNSystem
from aeqprop_circuits.systems.hopfield import HopfieldNetwork, build_model
from aeqprop_circuits.systems.models import load_system

try:
    __version__ = version("aeqprop-circuits")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

__all__ = [
    "AeqpropError", "Circuit", "CircuitError", "CircuitSystem", "DRNSystem", "Dataset", "DatasetError",
    "DivergenceError", "HopfieldNetwork", "NetlistError", "Nudge", "PRESETS", "Phase", "PhysicalSystem",
    "SOLVER_NAMES", "SignedDRNSystem", "SolveResult", "SolverError", "TrainConfig", "TrainResult", "__version__",
    "algorithm_names", "build_model", "get_algorithm", "load_dataset", "load_system", "lyapunov", "parse_netlist",
    "parse_text", "resolve", "solve", "train", "write_netlist",
]
