"""Small circuits for tests, built directly from the dataclasses (no parser involved).

`make_circuit([(kind, name, node_a, node_b, value), ...])` with kinds
- "R": resistor, value in ohms;
- "V": DC voltage source, value in volts (V[a] - V[b] = value);
- "I": DC current source, value in amperes (from a through the source to b);
- "D": Shockley diode a -> b, value = (saturation current A, emission N);
- "X": ideal diode a -> b (value ignored).
Node names are strings (or ints, turned into strings); "0" is ground.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from aeqprop_circuits.circuit.circuit import (
    DEFAULT_GMIN,
    Circuit,
    Diodes,
    IdealDiodes,
    Learning,
    Resistors,
    Sources,
)

Element = tuple[str, str, object, object, object]


def make_circuit(elements: Iterable[Element], *, title: str = "test circuit", gmin: float = DEFAULT_GMIN,
                 outputs: Sequence[str | tuple[str, str]] = (), inputs: Sequence[str] = (),
                 nodes: Sequence[str] = ()) -> Circuit:
    """A Circuit from element tuples; `outputs` are node names or (p, n) pairs, `inputs` source names.

    `nodes` fixes the order of (some) node names after ground; other nodes follow in order of
    first appearance.
    """
    elements = [(kind.upper(), name, str(a), str(b), value) for kind, name, a, b, value in elements]
    node_names = ["0"] + [str(n) for n in nodes if str(n) != "0"]
    index = {name: i for i, name in enumerate(node_names)}

    def node(name: str) -> int:
        if name not in index:
            index[name] = len(node_names)
            node_names.append(name)
        return index[name]

    groups: dict[str, list] = {k: [] for k in "RVIDX"}
    for kind, name, a, b, value in elements:
        if kind not in groups:
            raise ValueError(f"unknown element kind {kind!r}")
        groups[kind].append((name, node(a), node(b), value))
    res = groups["R"]
    resistors = Resistors(tuple(e[0] for e in res), [e[1:3] for e in res],
                          [1.0 / float(e[3]) for e in res])
    dio = groups["D"]
    diodes = Diodes(tuple(e[0] for e in dio), [e[1:3] for e in dio],
                    [float(e[3][0]) for e in dio], [float(e[3][1]) for e in dio], gmin=gmin)
    ideal = IdealDiodes(tuple(e[0] for e in groups["X"]), [e[1:3] for e in groups["X"]])
    src = [(e, True) for e in groups["V"]] + [(e, False) for e in groups["I"]]
    sources = Sources(tuple(e[0] for e, _ in src), [e[1:3] for e, _ in src],
                      [float(e[3]) for e, _ in src], [v for _, v in src])
    source_names = list(sources.names)
    input_map = np.zeros((len(source_names), len(inputs)))
    for j, name in enumerate(inputs):
        input_map[source_names.index(name), j] = 1.0
    out_pairs = [(node(o), 0) if isinstance(o, str) else (node(o[0]), node(o[1])) for o in outputs]
    learning = Learning(input_sources=tuple(inputs), input_map=input_map,
                        output_names=tuple(str(o) for o in outputs),
                        outputs=np.array(out_pairs, dtype=np.int64).reshape(-1, 2))
    return Circuit(title, tuple(node_names), resistors, diodes, ideal, sources, learning)


def voltage(result, circuit: Circuit, node: str, sample: int = 0) -> float:
    """Potential of a named node in one sample of a SolveResult, volts."""
    return float(result.potentials[sample, circuit.node_index[node]])


def current(result, circuit: Circuit, name: str, sample: int = 0) -> float:
    """Branch current of a named element (SPICE sign), amperes."""
    groups = {"resistors": circuit.resistors.names, "diodes": circuit.diodes.names,
              "ideal_diodes": circuit.ideal_diodes.names}
    vs = [n for n, v in zip(circuit.sources.names, circuit.sources.is_voltage) if v]
    cs = [n for n, v in zip(circuit.sources.names, circuit.sources.is_voltage) if not v]
    groups["voltage_sources"], groups["current_sources"] = tuple(vs), tuple(cs)
    for group, names in groups.items():
        if name in names:
            return float(result.currents[group][sample, list(names).index(name)])
    raise KeyError(name)


def grid(n: int, resistance: float = 1.0) -> list[Element]:
    """Resistors of an n x n square grid, nodes named 'r_c' (row, column); no sources."""
    out = []
    for r in range(n):
        for c in range(n):
            if c + 1 < n:
                out.append(("R", f"Rh{r}_{c}", f"{r}_{c}", f"{r}_{c + 1}", resistance))
            if r + 1 < n:
                out.append(("R", f"Rv{r}_{c}", f"{r}_{c}", f"{r + 1}_{c}", resistance))
    return out
