"""SPICE netlist text in, compiled `Circuit` out.

The accepted language is the subset of ngspice's that describes a DC resistive network,
read as ngspice reads it (see docs/netlist-format.md): title line, R, D, V, I and X
elements, `.model NAME D (...)`, `.subckt`/`.ends`, `.param` with `{expr}` values,
`.include`, `.options`, `.temp`, `.op`, `.title`, `.end`, `*` / `;` / `$` comments and `+`
continuations; analyses other than `.op` and `.control` blocks are accepted with a warning
that only the DC operating point is computed. Learning annotations are comments starting `*@`.

Reading happens in passes, each reporting errors as `NetlistError(file, line, column)`:
1. text -> logical lines and tokens (`lexer`);
2. logical lines -> a tree of scopes, annotations and options (`cards`);
3. scopes -> flat element arrays, subcircuits expanded, parameters evaluated (`expansion`),
   then the annotations resolved against the flat names (`annotations`); here, the arrays
   become a `Circuit`.
Warnings (a `NetlistWarning` per fault, with the file and line of the card) are issued only
for a netlist that is accepted.

Names: everything is lower-cased as SPICE does; node `gnd` is node `0`. Subcircuit
instances are flattened with ngspice's own naming: element `R1` of instance `X1` becomes
`r.x1.r1` (kind letter first, so the name is still a valid element name when written
back) and its local node `n3` becomes `x1.n3`; nested instances give `r.x1.x2.r1`,
`x1.x2.n3`. A diode with RS > 0 becomes a junction from an internal node `<diode>#rs`
to the cathode plus a resistor `rs#<diode>` from the anode to that node. Names containing
`#` are device-internal: such nodes are flagged in `Circuit.internal` and such resistors
are never matched by `*@ learn` patterns.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from aeqprop_circuits.circuit.circuit import (
    DEFAULT_GMIN,
    NOMINAL_CELSIUS,
    Circuit,
    Diodes,
    IdealDiodes,
    Origin,
    Resistors,
    Sources,
    SpiceOnly,
)
from aeqprop_circuits.errors import NetlistError
from aeqprop_circuits.netlist.annotations import learning
from aeqprop_circuits.netlist.batch import flatten_top, node_pairs
from aeqprop_circuits.netlist.cards import Structure
from aeqprop_circuits.netlist.expansion import Flattener
from aeqprop_circuits.netlist.lexer import Line, Notes, Pos, Reader, Token, decode, error, number

__all__ = ["parse_netlist", "parse_text", "parse_value", "NetlistWarning", "DEFAULT_MAX_ELEMENTS"]

DEFAULT_MAX_ELEMENTS = 3_000_000  # elements after subcircuit expansion: about 2 GB of memory while parsing


class NetlistWarning(UserWarning):
    """A netlist accepted with a caveat (an analysis that is not run, an annotation on the title line...).

    Issued with the netlist's file and line as the warning's location.
    """


def _origin(flat: Flattener, output_pos: list[Pos]) -> Origin:
    files: dict[str, int] = {}

    def places(positions) -> np.ndarray:
        rows = [(files.setdefault(p.file, len(files)), p.line) if p is not None else (-1, 0) for p in positions]
        return np.array(rows, dtype=np.int64).reshape(-1, 2)

    nodes, sources, outputs = places(flat.node_pos), places(flat.s_pos), places(output_pos)
    return Origin(tuple(files), nodes, sources, outputs)


def _compile(structure: Structure, max_elements: int) -> Circuit:
    ideal: set[str] = set()
    ideal_pos: dict[str, Token] = {}
    order: list[Token] = []
    for note in structure.annotations:
        if note.keyword == "ideal":
            if not note.items:
                raise error("ideal: expected a diode model name", note.pos)
            for tok in note.items:
                ideal.add(tok.low)
                ideal_pos.setdefault(tok.low, tok)
        elif note.keyword == "nodes":
            order.extend(note.items)
    all_models: set[str] = set()
    pending = [structure.top]
    while pending:
        scope = pending.pop()
        all_models.update(scope.models)
        pending.extend(scope.subckts.values())
    for name, tok in ideal_pos.items():
        if name not in all_models:
            raise error(f"ideal: unknown diode model '{tok.text}'", tok.pos)

    temperature = structure.temperature[0] if structure.temperature else NOMINAL_CELSIUS
    nominal = structure.nominal[0] if structure.nominal else NOMINAL_CELSIUS
    flat = Flattener(structure, ideal, order, temperature, nominal)
    flatten_top(flat, structure.top, max_elements)
    if not (flat.r_names or flat.d_names or flat.i_names or flat.s_names):
        title = structure.title
        hint = ""
        if title[:1].lower() in "rdvix" and len(title.split()) >= 3:
            hint = f": the first line, '{title}', is the title, as in SPICE; put a title line before it"
        raise error(f"no elements: expected R, D, V, I or X lines after the title{hint}",
                    Pos(structure.file, 1, 1))
    top_env: dict[str, float] = {}
    for card in structure.top.params:
        for tok in card[1:]:
            top_env[tok.key.low] = number(tok, top_env, "a parameter value", f".param {tok.key.text}")
    for name, tokens in structure.top.models.items():
        if id(tokens) not in flat.used_models and name not in flat.x_models:
            flat.model(tokens, top_env)  # validate unused top-level models too

    circuit_learning, output_pos = learning(structure.annotations, flat)
    gmin = number(structure.gmin, {}, "a conductance", ".options gmin") if structure.gmin else DEFAULT_GMIN
    resistors = Resistors(tuple(flat.r_names), node_pairs(flat.r_nodes),
                          np.array(flat.r_g, dtype=np.float64))
    diodes = Diodes(tuple(flat.d_names), np.array(flat.d_nodes, dtype=np.int64).reshape(-1, 2),
                    np.array(flat.d_is, dtype=np.float64), np.array(flat.d_n, dtype=np.float64),
                    gmin=gmin, temperature=temperature)
    ideal_diodes = IdealDiodes(tuple(flat.i_names), np.array(flat.i_nodes, dtype=np.int64).reshape(-1, 2))
    params = [card[0].line.text for card in structure.top.params] if flat.x_names else []
    spice_only = SpiceOnly(tuple(flat.x_names), tuple(flat.x_kinds), tuple(flat.x_nodes), tuple(flat.x_lines),
                           tuple(params) + tuple(flat.x_models.values()))
    sources = Sources(tuple(flat.s_names), np.array(flat.s_nodes, dtype=np.int64).reshape(-1, 2),
                      np.array(flat.s_value, dtype=np.float64), np.array(flat.s_voltage, dtype=bool))
    return Circuit(structure.title, tuple(flat.node_names), resistors, diodes, ideal_diodes, sources,
                   circuit_learning, internal=np.array(flat.internal, dtype=bool),
                   origin=_origin(flat, output_pos), spice_only=spice_only)


def _parse(text: str, file: str, directory: Path, stack: tuple[str, ...], max_elements: int,
           spice: bool = False) -> Circuit:
    notes = Notes()
    try:
        reader = Reader(notes)
        reader.read(text, file, directory, stack, top=True)
        circuit = _compile(Structure(reader.title, reader.lines, file, notes, spice), max_elements)
    except NetlistError:
        raise
    except RecursionError:
        raise NetlistError("netlist nested too deeply", file) from None
    except Exception as exc:  # the contract: nothing but NetlistError ever leaves the parser
        raise NetlistError(f"internal error while parsing ({type(exc).__name__}: {exc}); "
                           "please report this netlist", file) from exc
    for pos, message in notes:
        warnings.warn_explicit(NetlistWarning(message), NetlistWarning, pos.file, pos.line)
    return circuit


def parse_text(text: str, file: str = "<string>", *, max_elements: int = DEFAULT_MAX_ELEMENTS,
               spice: bool = False) -> Circuit:
    """Compile netlist `text`; `file` names it in error messages and anchors relative `.include`s.

    The first line is the title, as in SPICE. Raises `NetlistError` (and nothing else) on
    any text it cannot accept, with file, line and column of the fault, among them a netlist
    that would expand to more than `max_elements` elements. Caveats are `NetlistWarning`s.
    With `spice`, the elements the built-in solvers do not model (MOSFETs, BJTs, JFETs,
    controlled and behavioural sources, capacitors, inductors, switches, diodes whose model
    has breakdown or other parameters not modelled here) and `.model` cards of other types
    are kept as SPICE text in `Circuit.spice_only`, for the spice solver to pass to ngspice.
    """
    if not isinstance(text, str):
        raise NetlistError(f"expected netlist text (str), got {type(text).__name__}", file)
    if not text.strip():
        raise NetlistError("empty netlist: expected a title line, then R, D, V, I or X lines", file)
    if not (isinstance(max_elements, int) and max_elements > 0):
        raise NetlistError(f"max_elements must be a positive integer, got {max_elements!r}", file)
    directory = Path.cwd() if file.startswith("<") else Path(file).parent
    stack: tuple[str, ...] = ()
    if not file.startswith("<"):
        try:
            stack = (str(Path(file).resolve()),)
        except (OSError, RuntimeError, ValueError):
            stack = ()
    return _parse(text, file, directory, stack, max_elements, spice)


def parse_netlist(path: str | os.PathLike, *, max_elements: int = DEFAULT_MAX_ELEMENTS, spice: bool = False) -> Circuit:
    """Compile the netlist file at `path` (see `parse_text`)."""
    file = os.fspath(path)
    try:
        data = Path(file).read_bytes()
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise NetlistError(f"cannot read netlist: {reason}", file) from None
    return parse_text(decode(data), file, max_elements=max_elements, spice=spice)


def parse_value(text: str, what: str = "value") -> float:
    """A SPICE number ('1.5k', '10uA', '-3V') or `{expression}` as a float, e.g. for `--set V1=0.3`.

    Raises `NetlistError` (file "<value>") if `text` is neither.
    """
    text = str(text).strip()
    line = Line(text, [(0, Pos("<value>", 1, 1))])
    if text.startswith("'") and text.endswith("'") and len(text) >= 2:
        text = "{" + text[1:-1] + "}"
    tok = Token(text, line, 0)
    try:
        return float(number(tok, {}, "a number (with an optional suffix, e.g. 1.5k) or {expr}", what))
    except NetlistError:
        raise
    except Exception as exc:  # same contract as the netlist parser
        raise NetlistError(f"{what}: cannot read '{text}' ({exc})", "<value>") from exc
