"""One circuit kept loaded in ngspice across solves: values changed by `alter`, the netlist read once.

A learning loop settles the same circuit again and again, each time with other conductances,
inputs and nudge. `spice()` writes and parses a whole netlist per sample; for small circuits
that is most of the time of an `op`. `LoadedCircuit` writes and loads the netlist once, and
each solve then alters what changed since the last one and runs `op` per row:

- the resistances that changed (a learning step changes the trainable ones);
- per output, a nudge resistor from the output to a target node held at V(n) + y by a source
  referenced to the output's negative node (`deck`'s form of the nudge), added to the netlist
  the first time a nudge is asked for; it is altered to 1/beta (negative for a negative nudge)
  and, in phases without nudge, to OPEN_RESISTANCE, 1e30 ohm (1e-30 S, below the rounding of
  any conductance next to it);
- the sources whose value differs from the row before.

`solve_loaded` keeps one `LoadedCircuit` per circuit object (weakly), so `solve(method="spice")`
on the circuit of a `CircuitSystem` reuses it from phase to phase and step to step; another
netlist loaded in between (any other spice solve) makes it load its netlist again, once.

The result is read as `spice()` reads it (`readout.operating_points`: our device equations at
ngspice's voltages, KCL checked), except for a circuit with elements only ngspice models
(`Circuit.spice_only`): there the co-content, the KCL residual and the currents of those
elements are unknown (NaN) and ngspice's convergence is the test of an operating point.
"""

from __future__ import annotations

import time
import weakref

import numpy as np

from aeqprop_circuits.circuit.circuit import Circuit
from aeqprop_circuits.circuit.elements import RESISTOR
from aeqprop_circuits.circuit.energy import Nudge, Problem, incidence
from aeqprop_circuits.solvers.spice.deck import (
    OPEN_CONDUCTANCE,
    exponential_equivalent,
    fresh_name,
    netlist_text,
    number,
    spice_name,
)
from aeqprop_circuits.solvers.spice.operating_point import TIGHT_OPTIONS
from aeqprop_circuits.solvers.spice.readout import SpiceResult, SpiceTiming, operating_points
from aeqprop_circuits.solvers.spice.session import quiet, session

OPEN_RESISTANCE = 1e30  # ohm: a nudge resistor in a phase without nudge


class LoadedCircuit:
    """A circuit in ngspice, solved for many rows and settings by `alter` + `op` (see the module docstring)."""

    def __init__(self, circuit: Circuit, options: dict):
        self.circuit, self.options = circuit, dict(options)
        self.nudged = False  # whether the netlist has the nudge elements
        self.values: dict[str, float] = {}  # what each element is set to in ngspice now
        self.resistors = [spice_name(name, "r") for name in circuit.resistors.names]
        self.sources = [spice_name(name, "v" if voltage else "i")
                        for name, voltage in zip(circuit.sources.names, circuit.sources.is_voltage)]
        self.voltage_sources = np.flatnonzero(circuit.sources.is_voltage)
        self.equivalent = None if circuit.spice_only else exponential_equivalent(circuit)
        self.loads = 0  # how often the netlist was read (once, unless another one came in between)

    def _text(self, sources_row, conductance) -> str:
        text, _ = netlist_text(self.circuit, sources_row, conductance, None, None, self.options)
        lines = [line for line in text.splitlines() if line.strip().lower() not in (".op", ".end")]
        self.nudge_resistors, self.nudge_sources = [], []
        if self.nudged:
            taken_nodes = set(self.circuit.node_names)
            taken = {line.split()[0].lower() for line in lines[1:] if line.split() and line[0] not in "*."}
            names = self.circuit.node_names
            for o, (p, n) in enumerate(self.circuit.learning.outputs):
                node = fresh_name(f"nudge_target{o}", taken_nodes)
                source, resistor = fresh_name(f"vnudge{o}", taken), fresh_name(f"rnudge{o}", taken)
                lines += [f"{source} {node} {names[n]} dc 0", f"{resistor} {names[p]} {node} {OPEN_RESISTANCE!r}"]
                self.nudge_sources.append(source)
                self.nudge_resistors.append(resistor)
        return "\n".join(lines + [".end"]) + "\n"

    def _load(self, ngspice, sources_row, conductance) -> str | None:
        conductance = self.circuit.resistors.conductance if conductance is None else conductance
        refused, seconds = ngspice.load(self._text(sources_row, conductance))
        self.loads += 1
        self.load_seconds = seconds
        if refused:
            return refused
        ngspice.owner = self
        g = np.where(conductance == 0, OPEN_CONDUCTANCE, conductance)
        self.values = dict(zip(self.resistors, (1.0 / g).tolist()))
        self.values.update(zip(self.sources, np.asarray(sources_row, float).tolist()))
        self.values.update(dict.fromkeys(self.nudge_sources, 0.0))
        self.values.update(dict.fromkeys(self.nudge_resistors, OPEN_RESISTANCE))
        return None

    def _set(self, ngspice, names, values) -> None:
        """alter each element whose value differs from what ngspice holds."""
        for name, value in zip(names, values):
            if self.values.get(name) != value:
                ngspice.command(f"alter {name} = {number(value)}")
                self.values[name] = value

    def solve(self, sources: np.ndarray, conductance: np.ndarray | None = None, nudge: Nudge | None = None
              ) -> SpiceResult:
        sources = np.atleast_2d(np.asarray(sources, dtype=np.float64))
        B, circuit = len(sources), self.circuit
        problem = None
        if self.equivalent is not None:  # the other solvers' diagnosis first, before ngspice's gmin stepping
            problem = Problem(self.equivalent, sources, conductance, nudge)
            problem.check_convex()
        ngspice = session()
        times = np.zeros(4)  # write + alter, load, analyses, read
        target = None
        if nudge is not None and float(nudge.conductance) != 0.0:
            target = np.broadcast_to(np.asarray(nudge.target, float), (B, circuit.n_outputs))
        V = np.full((B, circuit.n_nodes), np.nan)
        V[:, 0] = 0.0
        i_source = np.full((B, len(self.voltage_sources)), np.nan)
        ok = np.zeros(B, dtype=bool)
        messages: list[str] = []
        names = [name.lower() for name in circuit.node_names]
        with quiet():
            if target is not None and not self.nudged:
                self.nudged = True
                ngspice.owner = None
            if ngspice.owner is not self:
                refused = self._load(ngspice, sources[0], conductance)
                times[1] = self.load_seconds
                if refused:
                    return self._result(problem, sources, conductance, V, i_source, ok, [refused], times)
            t0 = time.perf_counter()
            if conductance is not None:
                g = np.where(conductance == 0, OPEN_CONDUCTANCE, conductance)
                self._set(ngspice, self.resistors, (1.0 / g).tolist())
            if self.nudged:
                resistance = 1.0 / float(nudge.conductance) if target is not None else OPEN_RESISTANCE
                self._set(ngspice, self.nudge_resistors, [resistance] * len(self.nudge_resistors))
            times[0] += time.perf_counter() - t0
            for b in range(B):
                t0 = time.perf_counter()
                self._set(ngspice, self.sources, sources[b].tolist())
                if target is not None:
                    self._set(ngspice, self.nudge_sources, target[b].tolist())
                times[0] += time.perf_counter() - t0
                vectors, message, seconds = ngspice.analyse("op", "op")
                times[2] += seconds
                if vectors is None:
                    messages.append(f"sample {b}: ngspice .op failed: {message}")
                    continue
                t0 = time.perf_counter()
                for j, name in enumerate(names[1:], start=1):
                    if name in vectors:
                        V[b, j] = vectors[name][0]
                for j, k in enumerate(self.voltage_sources):
                    current = vectors.get(f"{self.sources[k]}#branch")
                    if current is not None:
                        i_source[b, j] = current[0]
                ok[b] = True
                times[3] += time.perf_counter() - t0
        return self._result(problem, sources, conductance, V, i_source, ok, messages, times)

    def _result(self, problem, sources, conductance, V, i_source, ok, messages, times) -> SpiceResult:
        timing = SpiceTiming(*times)
        if problem is None:
            return passthrough_points(self.circuit, conductance, V, i_source, ok, messages, timing)
        fixed = np.asarray((problem.topology.Q @ sources.T).T)
        return operating_points(self.circuit, problem, V, i_source, fixed, ok, messages, self.options, timing)


def passthrough_points(circuit: Circuit, conductance, V, i_source, ok, messages, timing) -> SpiceResult:
    """The result of a circuit with elements only ngspice models: its node voltages and what we can tell from them.

    Resistor currents from the voltages, voltage-source currents from ngspice; the co-content, the
    KCL residual and every other current are unknown (NaN), and a row is an operating point when
    ngspice converged on it.
    """
    B = len(V)
    missing = np.isnan(V) & ~circuit.internal[None, :]
    for b in np.flatnonzero(ok & missing.any(axis=1)):
        ok[b] = False
        unread = [circuit.node_names[j] for j in np.flatnonzero(missing[b])[:5]]
        messages.append(f"sample {b}: ngspice reported no voltage for node(s) {', '.join(unread)}")
    g = circuit.resistors.conductance if conductance is None else np.asarray(conductance, float)
    branch = (incidence(circuit.resistors.nodes, circuit.n_nodes) @ np.nan_to_num(V).T).T
    nan = np.full
    currents = {"resistors": np.where(ok[:, None], RESISTOR.current(np.asarray(branch), g), np.nan),
                "diodes": nan((B, len(circuit.diodes.names)), np.nan),
                "ideal_diodes": nan((B, len(circuit.ideal_diodes.names)), np.nan),
                "voltage_sources": i_source,
                "current_sources": np.broadcast_to(np.nan, (B, int((~circuit.sources.is_voltage).sum()))).copy()}
    success = bool(ok.all())
    message = "ngspice .op converged" if success else "ngspice failed: " + " | ".join(messages)
    potentials = np.where(ok[:, None], V, np.nan)
    return SpiceResult(potentials=potentials, currents=currents, energy=np.full(B, np.nan), free=potentials[:, 1:],
                       iterations=0, residual=float("nan"), success=success, message=message, solver="spice",
                       timing=timing)


_LOADED: weakref.WeakKeyDictionary[Circuit, LoadedCircuit] = weakref.WeakKeyDictionary()


def solve_loaded(circuit: Circuit, sources, conductance=None, nudge: Nudge | None = None, tight: bool = False,
                 options: dict | None = None, **ignored) -> SpiceResult:
    """Operating points by ngspice, the circuit kept loaded from call to call (see the module docstring).

    Arguments and result as `spice()`; `result.timing.write` is the time spent writing and altering.
    """
    merged = {**(TIGHT_OPTIONS if tight else {}), **(options or {})}
    loaded = _LOADED.get(circuit)
    if loaded is None or loaded.options != merged:
        loaded = _LOADED[circuit] = LoadedCircuit(circuit, merged)
    return loaded.solve(sources, conductance, nudge)
