"""The netlists ngspice runs: the package's writer's text with one sample's source values, the
given conductances and the nudge as extra elements; for many rows, the sources that vary
become pwl tables of a sweep index.

How elements become SPICE:
- a nudge of conductance beta to target y on output diff(p, n) is a resistor 1/beta from p
  to an extra node held at V(n) + y by a voltage source referenced to n (ngspice accepts
  the negative resistor of a negative nudge);
- ideal diodes are written as exponential diodes of `circuit.ideal_diodes.spice_model`
  (tiny IS, small N), so ngspice solves an approximation of the ideal circuit: a conducting
  diode then drops N Vt ln(I / IS) instead of 0 V (tens of mV at mA currents with the
  default model, see docs/results/speed.md);
- a resistor trained to 0 S is open: OPEN_CONDUCTANCE.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np

from aeqprop_circuits.circuit.circuit import Circuit, Diodes, IdealDiodes
from aeqprop_circuits.circuit.energy import Nudge

# ngspice-39 raises a diode's IS below 1e-28 A to 1e-28 A (measured: `showmod` prints 1e-28
# for is=1e-30 and is=3e-29), so the stand-in for an ideal diode uses at least that.
NGSPICE_MIN_IS = 1e-28

# An exponential stand-in for ideal diodes close to ideal: a conducting one drops
# N Vt ln(I / IS) ~ 1 mV at mA currents (26 uV per e-fold of current), against ~40-50 mV for
# the circuits' default `IdealDiodes.spice_model` (IS = 1e-20 A, N = 0.05); ngspice still
# converges with it (its junction limiting works in units of N Vt). docs/results/drn.md measures it.
NEAR_IDEAL_MODEL = "is=1e-20 n=0.001"

OPEN_CONDUCTANCE = 1e-15  # S: a resistor trained to 0 S, for ngspice (1 POhm passes < 1 fA per volt)


def _spice_model_parameters(model: str) -> tuple[float, float]:
    """(IS, N) from a model string like 'is=1e-20 n=0.05'."""
    values = dict(re.findall(r"(\w+)\s*=\s*([-+0-9.eE]+)", model.lower()))
    return float(values.get("is", 1e-14)), float(values.get("n", 1.0))


def exponential_equivalent(circuit: Circuit) -> Circuit:
    """The circuit ngspice solves: ideal diodes replaced by exponential ones of their spice_model.

    Diodes come first (circuit order), then the former ideal diodes.
    """
    ideal = circuit.ideal_diodes
    if len(ideal.names) == 0:
        return circuit
    isat, n = _spice_model_parameters(ideal.spice_model)
    isat = max(isat, NGSPICE_MIN_IS)
    d = circuit.diodes
    m = len(ideal.names)
    diodes = Diodes(d.names + ideal.names, np.vstack([d.nodes, ideal.nodes]),
                    np.concatenate([d.saturation_current, np.full(m, isat)]),
                    np.concatenate([d.emission, np.full(m, n)]), d.gmin)
    return replace(circuit, diodes=diodes, ideal_diodes=IdealDiodes((), np.zeros((0, 2))))


def with_spice_model(circuit: Circuit, model: str) -> Circuit:
    """The circuit with its ideal diodes written to SPICE as exponential diodes `.model ... D (model)`."""
    return replace(circuit, ideal_diodes=replace(circuit.ideal_diodes, spice_model=model))


def fresh_name(prefix: str, taken: set[str]) -> str:
    """`prefix`, or `prefix_k` for the first k that is not taken; the name is then taken."""
    name, k = prefix, 0
    while name in taken:
        k += 1
        name = f"{prefix}_{k}"
    taken.add(name)
    return name


def spice_name(name: str, letter: str) -> str:
    """An element's name as the writer gives it to ngspice (kind letter first), lower case."""
    name = name.lower()
    return name if name[:1] == letter else f"{letter}_{name}"


def number(value: float) -> str:
    """A value as ngspice reads it back exactly."""
    return repr(float(value))


def netlist_text(circuit: Circuit, sources_row: np.ndarray, conductance: np.ndarray | None = None,
                 nudge: Nudge | None = None, target_row: np.ndarray | None = None,
                 options: dict | None = None) -> tuple[str, list[str]]:
    """The netlist ngspice runs for one sample, and the names of the extra nudge sources.

    Our writer's text with this sample's source values and the conductances, then the nudge
    elements, `.options`, `.op` and `.end`.
    """
    from aeqprop_circuits.netlist.writer import write_netlist

    c = circuit if conductance is None else circuit.with_conductance(np.asarray(conductance, float))
    if (c.resistors.conductance == 0).any():  # trained to 0 S: open, which SPICE writes as 1 POhm
        c = c.with_conductance(np.where(c.resistors.conductance == 0, OPEN_CONDUCTANCE, c.resistors.conductance))
    c = replace(c, sources=replace(c.sources, value=np.asarray(sources_row, float)))
    body = [line for line in write_netlist(c, annotations=False).splitlines()
            if not re.match(r"\s*\.(end|op)\b", line, flags=re.IGNORECASE)]
    extra: list[str] = []
    extra_sources: list[str] = []
    if nudge is not None and float(nudge.conductance) != 0.0:
        taken_nodes = set(circuit.node_names)
        taken = {name.lower() for name in (*circuit.resistors.names, *circuit.diodes.names,
                                           *circuit.ideal_diodes.names, *circuit.sources.names)}
        resistance = 1.0 / float(nudge.conductance)
        extra.append("* nudge: conductance to a source at the target, per output")
        for o, (p, n) in enumerate(circuit.learning.outputs):
            node = fresh_name(f"nudge_target{o}", taken_nodes)
            vname = fresh_name(f"vnudge{o}", taken)
            rname = fresh_name(f"rnudge{o}", taken)
            extra.append(f"{vname} {node} {circuit.node_names[n]} dc {number(target_row[o])}")
            extra.append(f"{rname} {circuit.node_names[p]} {node} {number(resistance)}")
            extra_sources.append(vname)
    if options:
        extra.append(".options " + " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                            for k, v in options.items()))
    extra += [".op", ".end"]
    return "\n".join(body + extra) + "\n", extra_sources


@dataclass(frozen=True)
class RowsDeck:
    """One netlist for many source rows (`spice_rows`).

    elements: ngspice's name of every source (ours, then the nudge's targets); values (B, n) their
    value per row; branch: the element whose `#branch` vector is each source's current; with a
    sweep, row_source is the voltage source whose value (0, 1, ..., B-1) selects the row.
    """

    text: str
    elements: list[str]
    values: np.ndarray
    branch: dict[str, str]
    row_source: str = ""
    row_node: str = ""

    @property
    def sweep(self) -> bool:
        return bool(self.row_source)


def rows_deck(circuit: Circuit, sources: np.ndarray, conductance: np.ndarray | None, nudge: Nudge | None,
              target: np.ndarray | None, options: dict, sweep: bool) -> RowsDeck:
    """The netlist of the first row, without `.op`; with `sweep` (and rows that differ), every source
    whose value differs between rows is a behavioural source `b... n+ n- v = pwl(v(rowidx), 0, s_0,
    1, s_1, ...)` (`i = ...` for a current source) of an extra node held by `row_source`."""
    text, nudge_sources = netlist_text(circuit, sources[0], conductance, nudge,
                                       None if target is None else target[0], options)
    letters = ["v" if v else "i" for v in circuit.sources.is_voltage]
    elements = [spice_name(n, letter) for n, letter in zip(circuit.sources.names, letters)]
    elements += [name.lower() for name in nudge_sources]
    values = np.hstack([sources, target]) if nudge_sources else sources
    varying = np.flatnonzero((values != values[0]).any(axis=0))
    lines = [line for line in text.splitlines() if not re.match(r"\s*\.op\b", line, re.IGNORECASE)]
    branch = {name: name for name in elements}
    if not (sweep and len(values) > 1 and len(varying) > 0):
        return RowsDeck("\n".join(lines) + "\n", elements, values, branch)
    taken = {word.lower() for line in lines[1:] for word in line.split()[:3]}
    row_node, row_source = fresh_name("rowidx", taken), fresh_name("vrowidx", taken)
    index = {name: k for k, name in enumerate(elements)}
    varies = set(varying.tolist())
    for i in range(1, len(lines)):
        words = lines[i].split()
        k = index.get(words[0].lower()) if words else None
        if k is None or k not in varies:
            continue
        name = fresh_name(f"b_{elements[k]}", taken)
        table = ", ".join(f"{r}, {number(values[r, k])}" for r in range(len(values)))
        lines[i] = f"{name} {words[1]} {words[2]} {elements[k][0]} = pwl(v({row_node}), {table})"
        branch[elements[k]] = name
    lines.insert(len(lines) - 1, f"{row_source} {row_node} 0 dc 0")  # before .end
    return RowsDeck("\n".join(lines) + "\n", elements, values, branch, row_source, row_node)
