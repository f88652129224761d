"""The per-step cost of training through ngspice: a netlist per sample against one circuit kept loaded.

A c-EP step settles three phases of a batch (free, -beta, +beta), then the conductances change.
`spice()` writes and reads a netlist for every sample of every phase; the spice solver keeps the
circuit loaded and alters what changed (solvers/spice/loaded.py). Both solve the same phases on
the same rows, so the ratio is the cost of re-reading the netlist.
"""

from __future__ import annotations

import time

import numpy as np

from aeqprop_circuits.circuit.energy import Nudge
from aeqprop_circuits.data.datasets import load_dataset
from aeqprop_circuits.errors import SolverError
from aeqprop_circuits.netlist import parse_netlist
from aeqprop_circuits.solvers.spice import spice
from aeqprop_circuits.solvers.spice.loaded import solve_loaded

WAYS = {"netlist per sample": spice, "loaded, altered": solve_loaded}


def bench_spice_step(netlist: str, data: str, batch: int = 10, steps: int = 5, beta: float = 0.2,
                     amplitude: float = 0.5, seed: int = 0) -> list[dict]:
    """Seconds per c-EP step (median over `steps`, the first left out) of each way, and how much slower each is."""
    circuit = parse_netlist(netlist, spice=True)
    dataset = load_dataset(data, seed=seed)
    sources = circuit.source_values(dataset.x_train[:batch])
    target = dataset.targets(dataset.y_train[:batch], circuit.n_outputs, amplitude)
    g0 = circuit.learning.g0 or float(np.median(circuit.resistors.conductance[circuit.learning.trainable]))
    rows = []
    for way, solver in WAYS.items():
        rng = np.random.default_rng(seed)
        conductance, seconds = circuit.resistors.conductance.copy(), []
        for _ in range(steps + 1):
            began = time.perf_counter()
            for nudge in (0.0, -beta, beta):
                result = solver(circuit, sources, conductance, Nudge(nudge * g0, target) if nudge else None)
                if not result.success:
                    raise SolverError(f"{netlist}: {way}: {result.message}")
            seconds.append(time.perf_counter() - began)
            conductance = conductance * rng.uniform(0.99, 1.01, conductance.size)  # the step's update
        rows.append({"netlist": netlist, "way": way, "batch": len(sources), "seconds_per_step":
                     float(np.median(seconds[1:]))})
    fastest = min(row["seconds_per_step"] for row in rows)
    for row in rows:
        row["relative"] = row["seconds_per_step"] / fastest
    return rows


def format_report(rows: list[dict]) -> str:
    lines = ["| netlist | way | batch | ms per c-EP step | relative |", "|---|---|---|---|---|"]
    lines += [f"| {row['netlist']} | {row['way']} | {row['batch']} | {1e3 * row['seconds_per_step']:.0f} | "
              f"{row['relative']:.1f} |" for row in rows]
    return "\n".join(lines)
