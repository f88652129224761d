"""A compiled `Circuit` back to SPICE text that ngspice runs unchanged.

The text gives the same operating point in ngspice as the circuit does in our solvers
(ideal diodes become exponential diodes of `IdealDiodes.spice_model`), and parsing it
gives back identical arrays: resistances are written with enough digits that their
reciprocal is exactly the stored conductance, and a `*@ nodes` line fixes the node
numbering when the order of the element lines alone would not reproduce it. A circuit at a
temperature other than 27 degC is written with `.options temp=T tnom=T`: its diodes' IS is
already the value at T, which TNOM = T tells ngspice to take as it is.
"""

from __future__ import annotations

import math

import numpy as np

from aeqprop_circuits.circuit.circuit import DEFAULT_GMIN, NOMINAL_CELSIUS, Circuit
from aeqprop_circuits.errors import CircuitError
from aeqprop_circuits.netlist.values import resistance_text

__all__ = ["write_netlist"]

NAMES_PER_LINE = 16  # annotation lines listing names are split into chunks of this many
_GLOB_SPECIAL = "*?["


def _element_name(name: str, letter: str) -> str:
    """The name as ngspice needs it: starting with the element's kind letter."""
    return name if name[:1].lower() == letter else f"{letter}_{name}"


def _glob_literal(name: str) -> str:
    """A fnmatch pattern that matches exactly `name`."""
    return "".join(f"[{c}]" if c in _GLOB_SPECIAL else c for c in name)


def _chunks(items: list[str], size: int = NAMES_PER_LINE):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _number(value: float) -> str:
    return repr(float(value))


def write_netlist(circuit: Circuit, annotations: bool = True) -> str:
    """SPICE text for `circuit`: title, `*@` annotations, elements, models, options, `.op`, `.end`.

    annotations=False leaves out the `*@` lines (ngspice reads them as comments): the text of a
    circuit whose inputs have gains other than the annotations' +1 and -1 (a hardware's), for ngspice.
    """
    names = circuit.node_names
    title = circuit.title.replace("\n", " ").strip()
    element_lines: list[str] = []
    seen_order: list[int] = []
    seen: set[int] = {0}

    def note(indices) -> None:
        """Record the order in which nodes first appear in the text."""
        for index in indices:
            if index not in seen:
                seen.add(int(index))
                seen_order.append(int(index))

    def nodes(pair) -> str:
        note(pair)
        return f"{names[pair[0]]} {names[pair[1]]}"

    res = circuit.resistors
    for name, pair, g in zip(res.names, res.nodes.tolist(), res.conductance.tolist()):
        if g <= 0:
            raise CircuitError(f"resistor {name}: conductance {g} S has no SPICE resistance; an open resistor "
                               "(trained to 0 S) must be removed or given a small conductance, e.g. 1e-15 S")
        element_lines.append(f"{_element_name(name, 'r')} {nodes(pair)} {resistance_text(g)}")

    model_lines: list[str] = []
    diodes = circuit.diodes
    models: dict[tuple[float, float], str] = {}
    for name, pair, sat, emission in zip(diodes.names, diodes.nodes.tolist(),
                                         diodes.saturation_current.tolist(), diodes.emission.tolist()):
        key = (sat, emission)
        if key not in models:
            models[key] = f"dmod{len(models)}"
            model_lines.append(f".model {models[key]} D (is={_number(sat)} n={_number(emission)} rs=0)")
        element_lines.append(f"{_element_name(name, 'd')} {nodes(pair)} {models[key]}")

    ideal = circuit.ideal_diodes
    if len(ideal.names):
        model_lines.append(f".model dideal D ({ideal.spice_model})")
        for name, pair in zip(ideal.names, ideal.nodes.tolist()):
            element_lines.append(f"{_element_name(name, 'd')} {nodes(pair)} dideal")

    src = circuit.sources
    for name, pair, value, is_voltage in zip(src.names, src.nodes.tolist(), src.value.tolist(),
                                             src.is_voltage.tolist()):
        letter = "v" if is_voltage else "i"
        element_lines.append(f"{_element_name(name, letter)} {nodes(pair)} DC {_number(value)}")

    extra = circuit.spice_only  # elements for ngspice alone, as the netlist wrote them
    for pins, line in zip(extra.nodes, extra.lines):
        note(pins)
        element_lines.append(line)
    model_lines += list(extra.cards)

    notes = _annotations(circuit) if annotations else []
    order = [i for i in range(1, circuit.n_nodes)]
    if annotations and seen_order != order:
        notes = [f"*@ nodes {' '.join(chunk)}" for chunk in _chunks([names[i] for i in order])] + notes
    if annotations and len(ideal.names):
        notes.append("*@ ideal dideal")

    lines = [title]
    lines += notes
    lines += element_lines
    lines += model_lines
    if diodes.gmin != DEFAULT_GMIN:
        lines.append(f".options gmin={_number(diodes.gmin)}")
    if diodes.temperature != NOMINAL_CELSIUS:
        lines.append(f".options temp={_number(diodes.temperature)} tnom={_number(diodes.temperature)}")
    lines += [".op", ".end"]
    return "\n".join(lines) + "\n"


def _annotations(circuit: Circuit) -> list[str]:
    learning = circuit.learning
    src_names = circuit.sources.names
    notes: list[str] = []

    in_map = learning.input_map
    inputs: list[str] = []
    for j in range(in_map.shape[1] if in_map.ndim == 2 else 0):
        column = in_map[:, j]
        driven = np.flatnonzero(column)
        signs = column[driven].tolist()
        if len(driven) == 1 and signs == [1.0]:
            inputs.append(src_names[driven[0]])
        elif len(driven) == 2 and sorted(signs) == [-1.0, 1.0]:
            plus, minus = (driven[0], driven[1]) if signs[0] == 1.0 else (driven[1], driven[0])
            inputs.append(f"pair({src_names[plus]},{src_names[minus]})")
        else:
            raise ValueError(f"input column {j} drives sources with {dict(zip(driven.tolist(), signs))}: "
                             "only a single source (+1) or a pair (+1, -1) can be written as *@ input")
    notes += [f"*@ input {' '.join(chunk)}" for chunk in _chunks(inputs)]

    names = circuit.node_names
    outputs: list[str] = []
    for (p, n), label in zip(learning.outputs.tolist(), learning.output_names):
        outputs.append(f"diff({names[p]},{names[n]})" if n != 0 or label.startswith("diff(") else names[p])
    notes += [f"*@ output {' '.join(chunk)}" for chunk in _chunks(outputs)]

    res_names = [_element_name(name, "r") for name in circuit.resistors.names]
    learnable = {k for k, name in enumerate(res_names) if "#" not in name}
    groups: dict[tuple[float, float], list[int]] = {}
    for k, lo, hi in zip(learning.trainable.tolist(), learning.low.tolist(), learning.high.tolist()):
        groups.setdefault((lo, hi), []).append(k)
    for (lo, hi), members in groups.items():
        rng = "" if (lo, hi) == (0.0, math.inf) else f" range={_bound(lo)}:{_bound(hi)}"
        if len(groups) == 1 and set(members) == learnable:
            notes.append(f"*@ learn *{rng}")
            continue
        patterns = [_glob_literal(res_names[k]) for k in members]
        notes += [f"*@ learn {' '.join(chunk)}{rng}" for chunk in _chunks(patterns)]

    if learning.g0 is not None:
        notes.append(f"*@ g0 {_number(learning.g0)}")
    return notes


def _bound(value: float) -> str:
    return "inf" if value == math.inf else _number(value)
