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

import importlib
from importlib.metadata import PackageNotFoundError, version

_EXPORTS = {  # name: the module that defines it (imported on first use, so `aeqprop --help` stays fast)
    "Circuit": "aeqprop_circuits.circuit.circuit",
    "Dataset": "aeqprop_circuits.data.datasets",
    "load_dataset": "aeqprop_circuits.data.datasets",
    "AeqpropError": "aeqprop_circuits.errors",
    "CircuitError": "aeqprop_circuits.errors",
    "DatasetError": "aeqprop_circuits.errors",
    "DivergenceError": "aeqprop_circuits.errors",
    "NetlistError": "aeqprop_circuits.errors",
    "SolverError": "aeqprop_circuits.errors",
    "TrainConfig": "aeqprop_circuits.experiments.config",
    "resolve": "aeqprop_circuits.experiments.config",
    "PRESETS": "aeqprop_circuits.experiments.presets",
    "TrainResult": "aeqprop_circuits.experiments.session",
    "train": "aeqprop_circuits.experiments.session",
    "algorithm_names": "aeqprop_circuits.learning.algorithms",
    "get_algorithm": "aeqprop_circuits.learning.algorithms",
    "lyapunov": "aeqprop_circuits.learning.lyapunov",
    "parse_netlist": "aeqprop_circuits.netlist",
    "parse_text": "aeqprop_circuits.netlist",
    "write_netlist": "aeqprop_circuits.netlist",
    "Nudge": "aeqprop_circuits.solvers",
    "SOLVER_NAMES": "aeqprop_circuits.solvers",
    "SolveResult": "aeqprop_circuits.solvers",
    "solve": "aeqprop_circuits.solvers",
    "Phase": "aeqprop_circuits.systems.base",
    "PhysicalSystem": "aeqprop_circuits.systems.base",
    "CircuitSystem": "aeqprop_circuits.systems.circuit",
    "HardwareCircuit": "aeqprop_circuits.systems.hardware",
    "HardwareSpec": "aeqprop_circuits.systems.hardware",
    "build_hardware": "aeqprop_circuits.systems.hardware",
    "DRNSystem": "aeqprop_circuits.systems.drn",
    "SignedDRNSystem": "aeqprop_circuits.systems.drn.signed",
    "HopfieldNetwork": "aeqprop_circuits.systems.hopfield",
    "build_model": "aeqprop_circuits.systems.hopfield",
    "load_system": "aeqprop_circuits.systems.models",
}

try:
    __version__ = version("aeqprop-circuits")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'aeqprop_circuits' has no attribute '{name}'")


def __dir__():
    return __all__
