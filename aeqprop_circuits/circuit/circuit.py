"""The compiled circuit: nodes plus element groups held as arrays.

A `Circuit` is the one representation every solver, learning loop and writer works on. It
comes from a netlist (`aeqprop_circuits.netlist`) or from a builder (`circuit.builder`).
Element groups are arrays over elements (node-index pairs, conductances, diode parameters),
so energy, currents and gradients are numpy expressions over a group.

Conventions (SPICE's):
- node 0 is ground, named "0"; node names are lower-case;
- an element's `nodes` row is (first, second); its branch voltage is V[first] - V[second]
  and its branch current is positive from the first node through the element to the second;
- a current source `I n+ n- I0` drives I0 from n+ through the source to n-, i.e. it draws I0
  out of n+ and injects it into n-;
- a voltage source `V n+ n- V0` imposes V[n+] - V[n-] = V0; its current is positive when it
  flows into n+, through the source, out of n-.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

BOLTZMANN = 1.38064852e-23  # J/K, the constant ngspice uses (src/include/ngspice/const.h)
CHARGE = 1.6021766208e-19  # C, idem
CELSIUS_TO_KELVIN = 273.15  # ngspice's CONSTCtoK
NOMINAL_CELSIUS = 27.0  # degC: SPICE's default TNOM = TEMP
NOMINAL_TEMPERATURE = NOMINAL_CELSIUS + CELSIUS_TO_KELVIN  # K
THERMAL_VOLTAGE = BOLTZMANN * NOMINAL_TEMPERATURE / CHARGE  # V at 27 degC, as ngspice computes it
DEFAULT_GMIN = 1e-12  # S: the conductance SPICE puts in parallel with every diode junction


def _ints(values) -> np.ndarray:
    return np.asarray(values, dtype=np.int64).reshape(-1, 2)


def _floats(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(-1)


@dataclass(frozen=True, eq=False)
class Resistors:
    """Linear resistors. `conductance` in siemens; co-content g v^2 / 2."""

    names: tuple[str, ...]
    nodes: np.ndarray  # (n, 2) int
    conductance: np.ndarray  # (n,) S

    def __post_init__(self):
        object.__setattr__(self, "nodes", _ints(self.nodes))
        object.__setattr__(self, "conductance", _floats(self.conductance))


@dataclass(frozen=True, eq=False)
class Diodes:
    """Shockley junctions i = Is (exp(v / n Vt) - 1) + gmin v, as SPICE's diode without series RS.

    A diode with series resistance RS is compiled into a junction plus a resistor through an
    internal node, which is exactly SPICE's own model. `saturation_current` is IS at the
    circuit's `temperature` (the netlist parser applies SPICE's temperature law to the model's
    IS); the temperature sets the thermal voltage kT/q. It is kept in degC, as SPICE writes it,
    so that a written netlist reads back to the same number.
    """

    names: tuple[str, ...]
    nodes: np.ndarray  # (n, 2): anode, cathode
    saturation_current: np.ndarray  # (n,) A
    emission: np.ndarray  # (n,) ideality factor N
    gmin: float = DEFAULT_GMIN
    temperature: float = NOMINAL_CELSIUS  # degC

    def __post_init__(self):
        object.__setattr__(self, "nodes", _ints(self.nodes))
        object.__setattr__(self, "saturation_current", _floats(self.saturation_current))
        object.__setattr__(self, "emission", _floats(self.emission))

    @property
    def thermal_voltage(self) -> np.ndarray:
        """n Vt per diode, volts, Vt = kT/q at the circuit's temperature."""
        if self.temperature == NOMINAL_CELSIUS:
            return self.emission * THERMAL_VOLTAGE
        return self.emission * (BOLTZMANN * (self.temperature + CELSIUS_TO_KELVIN) / CHARGE)


@dataclass(frozen=True, eq=False)
class IdealDiodes:
    """Ideal diodes: the branch voltage v = V[anode] - V[cathode] must stay <= 0; co-content 0."""

    names: tuple[str, ...]
    nodes: np.ndarray  # (n, 2): anode, cathode
    # When written back as SPICE, an ideal diode becomes an exponential diode of this model.
    spice_model: str = "is=1e-20 n=0.05"

    def __post_init__(self):
        object.__setattr__(self, "nodes", _ints(self.nodes))


@dataclass(frozen=True, eq=False)
class Sources:
    """Independent DC sources, voltage (`is_voltage`) and current, in netlist order."""

    names: tuple[str, ...]
    nodes: np.ndarray  # (n, 2): n+, n-
    value: np.ndarray  # (n,) volts or amperes (the netlist's DC value)
    is_voltage: np.ndarray  # (n,) bool

    def __post_init__(self):
        object.__setattr__(self, "nodes", _ints(self.nodes))
        object.__setattr__(self, "value", _floats(self.value))
        object.__setattr__(self, "is_voltage", np.asarray(self.is_voltage, dtype=bool).reshape(-1))


@dataclass(frozen=True, eq=False)
class Learning:
    """The `*@` annotations: which sources the operator sets, what is read, what is trained.

    - `input_map` (n_sources, n_inputs): data column j drives source k with value
      input_map[k, j] * x_j (+1 for a plain input, +1/-1 for the halves of a `pair(...)`);
      sources not driven keep their netlist value;
    - `outputs` (n_outputs, 2): output o reads V[p] - V[n] (n = 0 for a single node);
    - `trainable` indices into the resistor group, with conductance bounds `low`, `high` (S);
    - `g0`: the reference conductance (S) of the normalised learning units.
    """

    input_sources: tuple[str, ...] = ()
    input_map: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    output_names: tuple[str, ...] = ()
    outputs: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))
    trainable: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    low: np.ndarray = field(default_factory=lambda: np.zeros(0))
    high: np.ndarray = field(default_factory=lambda: np.zeros(0))
    g0: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "outputs", _ints(self.outputs))
        object.__setattr__(self, "trainable", np.asarray(self.trainable, dtype=np.int64).reshape(-1))
        object.__setattr__(self, "low", _floats(self.low))
        object.__setattr__(self, "high", _floats(self.high))
        object.__setattr__(self, "input_map", np.asarray(self.input_map, dtype=np.float64))


@dataclass(frozen=True, eq=False)
class SpiceOnly:
    """Elements the built-in solvers do not model, kept as SPICE text for ngspice (`--solver spice`).

    names: the elements' flattened names; kinds: what each is ("MOSFET", "diode with breakdown", ...);
    nodes: the node indices each one touches; lines: the element lines as ngspice reads them
    (subcircuit instances flattened to ngspice's names); cards: the `.model` and `.param` cards
    those lines use, as written.
    """

    names: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    nodes: tuple[tuple[int, ...], ...] = ()
    lines: tuple[str, ...] = ()
    cards: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.names)

    def describe(self, limit: int = 3) -> str:
        """'m1 (MOSFET), d2 (diode with breakdown), ...' for messages."""
        shown = [f"{name} ({kind})" for name, kind in zip(self.names[:limit], self.kinds)]
        return ", ".join(shown) + (f" and {len(self.names) - limit} more" if len(self.names) > limit else "")


@dataclass(frozen=True, eq=False)
class Origin:
    """Where a netlist wrote each node, source and output, so that faults found only in the compiled
    circuit (floating nodes, loops of voltage sources, pinned outputs) name the file and line.

    Each array holds (file index into `files`, line) per item, -1 for no place (ground, say).
    """

    files: tuple[str, ...]
    nodes: np.ndarray  # (n_nodes, 2): where each node is first used
    sources: np.ndarray  # (n_sources, 2)
    outputs: np.ndarray  # (n_outputs, 2): the *@ output annotation

    def __post_init__(self):
        for name in ("nodes", "sources", "outputs"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.int64).reshape(-1, 2))

    def where(self, group: str, index: int) -> str | None:
        """'file:line' of item `index` of `group` ("nodes", "sources", "outputs"), or None."""
        file, line = getattr(self, group)[index]
        return f"{self.files[file]}:{line}" if file >= 0 else None


@dataclass(frozen=True, eq=False)
class Circuit:
    """A compiled nonlinear resistive network.

    `layers` is optional structure from a builder: a tuple of node-index arrays, each an
    independent set of free nodes (no element between two nodes of a layer), in order; the
    coordinate solver updates each layer in one closed-form step. Without it, the solver
    finds such blocks itself by colouring the node graph. `origin` (netlists only) says
    where the text wrote each node, source and output, for error messages. `spice_only` holds
    the elements only ngspice models (a netlist parsed for the spice solver).
    """

    title: str
    node_names: tuple[str, ...]  # index -> name, node_names[0] == "0"
    resistors: Resistors
    diodes: Diodes
    ideal_diodes: IdealDiodes
    sources: Sources
    learning: Learning = field(default_factory=Learning)
    internal: np.ndarray | None = None  # (n_nodes,) bool: nodes the netlist did not name
    layers: tuple[np.ndarray, ...] | None = None
    origin: Origin | None = None
    spice_only: SpiceOnly = field(default_factory=SpiceOnly)

    def __post_init__(self):
        internal = np.zeros(self.n_nodes, dtype=bool) if self.internal is None else self.internal
        object.__setattr__(self, "internal", np.asarray(internal, dtype=bool))
        if self.node_names[0] != "0":
            raise ValueError("node 0 must be ground, named '0'")

    @property
    def n_nodes(self) -> int:
        return len(self.node_names)

    @cached_property
    def node_index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.node_names)}

    def where(self, group: str, index: int) -> str:
        """'file:line: ' of a node, source or output of a netlist (see `Origin`), '' if not known."""
        place = self.origin.where(group, index) if self.origin is not None else None
        return f"{place}: " if place else ""

    @property
    def n_inputs(self) -> int:
        return self.learning.input_map.shape[1] if self.learning.input_map.size else 0

    @property
    def n_outputs(self) -> int:
        return len(self.learning.outputs)

    def with_conductance(self, conductance: np.ndarray) -> Circuit:
        """The same circuit with new resistor conductances (S)."""
        return replace(self, resistors=replace(self.resistors, conductance=conductance))

    def source_values(self, inputs: np.ndarray | None = None) -> np.ndarray:
        """Source values (B, n_sources) for a batch of data inputs (B, n_inputs), or (1, n) defaults."""
        default = self.sources.value[None, :]
        if inputs is None:
            return default
        inputs = np.atleast_2d(np.asarray(inputs, dtype=np.float64))
        in_map = self.learning.input_map
        driven = np.any(in_map != 0, axis=1)
        return np.where(driven, inputs @ in_map.T, default)

    def summary(self) -> dict:
        """Counts a user checks first: nodes, elements by kind, parameters, inputs, outputs; temperature (degC)."""
        src = self.sources
        return {
            "title": self.title,
            "nodes": int(self.n_nodes - 1 - self.internal.sum()),
            "resistors": len(self.resistors.names),
            "diodes": len(self.diodes.names),
            "ideal_diodes": len(self.ideal_diodes.names),
            "voltage_sources": int(src.is_voltage.sum()),
            "current_sources": int((~src.is_voltage).sum()),
            "trainable": len(self.learning.trainable),
            "inputs": list(self.learning.input_sources),
            "outputs": list(self.learning.output_names),
            "temperature": self.diodes.temperature,
            "spice_only": [f"{name} ({kind})" for name, kind in zip(self.spice_only.names, self.spice_only.kinds)],
        }
