"""The top level of a netlist flattened with its runs of plain resistor lines taken in batches.

`lexer.Run` holds consecutive lines `Rname n+ n- value`; here a run's names, nodes and
conductances go into the `Flattener`'s lists in one pass each (nodes numbered in the order the
full path numbers them, conductances the full path's to the last bit), and the other elements
go through `Flattener.expand` in their place. Whatever a run holds that the batch does not take
on (a duplicate name, a value that is not a positive number, a suffix or unit that is not one)
sends the whole run through the full path, which then reports it: one parser, one set of errors.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np

from aeqprop_circuits.netlist.cards import Scope
from aeqprop_circuits.netlist.expansion import Flattener
from aeqprop_circuits.netlist.lexer import Pos, Run, Token, number, tokenize
from aeqprop_circuits.netlist.values import _EXACT, _ONE, ExpressionError, parse_literal, reciprocal

_BIG = 2 ** 63
_MAX_SCALE = 22  # 10**22 is the largest power of ten a double holds exactly


class Elements(dict):
    """`Flattener.elements` (element name -> its name token) where a run's names map to the run."""

    def __getitem__(self, name):
        value = super().__getitem__(name)
        return value.head_of(name) if isinstance(value, Run) else value


class Heads(list):
    """`Flattener.r_head` where a run's resistors are the run itself, resolved when read."""

    def __getitem__(self, k):
        value = super().__getitem__(k)
        if isinstance(value, Run):
            return value.head(k - value.r_start)
        return value


class Pairs(list):
    """`Flattener.r_nodes`: tuples appended one at a time, blocks of a run as arrays; `array()` joins them."""

    def __init__(self):
        super().__init__()
        self.parts: list[np.ndarray] = []

    def add_block(self, block: np.ndarray) -> None:
        self._flush()
        self.parts.append(block)

    def _flush(self) -> None:
        if len(self):
            self.parts.append(np.array(self, dtype=np.int64).reshape(-1, 2))
            self.clear()

    def array(self) -> np.ndarray:
        self._flush()
        return np.concatenate(self.parts) if self.parts else np.zeros((0, 2), dtype=np.int64)


def node_pairs(pairs) -> np.ndarray:
    """(n, 2) int64 node pairs from `Flattener.r_nodes`."""
    return pairs.array() if isinstance(pairs, Pairs) else np.array(pairs, dtype=np.int64).reshape(-1, 2)


_LETTERS: dict[str, tuple[int | None, Decimal | None]] = {}


def _letters(letters: str) -> tuple[int | None, Decimal | None]:
    """(power of ten, scale) of a suffix and unit such as 'kohm' as `parse_literal` reads them; the
    power is None for a scale that is not a power of ten (mil), the scale None if they are not a
    suffix and unit."""
    known = _LETTERS.get(letters)
    if known is None:
        scale = parse_literal("1" + letters)
        power = None
        if scale is not None:
            _, digits, exponent = scale.as_tuple()
            if digits == (1,):
                power = exponent
        known = _LETTERS[letters] = (power, scale)
    return known


def conductances(fields: list[tuple[str, ...]]) -> list[float] | None:
    """1 / resistance for each line, exactly as `reciprocal(parse_literal(text))`; None if one is not a
    positive resistance with a finite positive conductance (the full path then says which).

    R = M 10^-k with M < 2^63 and k <= 22 goes by Python's correctly rounded integer division
    (10^k / M or 1 / (M 10^-k)): its quotient is never within 10^-40 (relative) of a midpoint
    between two doubles, so rounding it once gives what the 40-digit quotient rounds to. Other
    values take the full path's Decimal reciprocal.
    """
    out = []
    append = out.append
    powers = [10 ** k for k in range(_MAX_SCALE + 1)]
    for _, _, _, sign, whole, fraction, exponent, letters in fields:
        if not (sign or exponent or letters) and len(whole) + len(fraction) <= 18 and len(fraction) <= _MAX_SCALE:
            mantissa = int(whole + fraction) if whole or fraction else 0
            if mantissa:  # the common case: digits and a point only (below 10^18 < 2^63)
                append(powers[len(fraction)] / mantissa)
                continue
        if sign == "-" or not (whole or fraction):
            return None
        if not letters and sign != "-":  # parse_literal's value is then Decimal(text) itself
            try:
                g = float(_EXACT.divide(_ONE, Decimal(f"{sign}{whole}.{fraction}{'e' + exponent if exponent else ''}")))
            except (ArithmeticError, ValueError):
                return None
            if not (0 < g < float("inf")):
                return None
            append(g)
            continue
        power, scale = _letters(letters) if letters else (0, 1)
        if scale is None:
            return None
        digits = whole + fraction
        if power is not None and len(digits) <= 19 and len(exponent) <= 4:
            mantissa = int(digits)
            k = len(fraction) - (int(exponent) if exponent else 0) - power
        else:
            mantissa = k = 0
        if 0 < mantissa < _BIG and -_MAX_SCALE <= k <= _MAX_SCALE:
            if k >= 0:
                append(powers[k] / mantissa)
                continue
            scaled = mantissa * powers[-k]
            if scaled < _BIG:
                append(1 / scaled)
                continue
        text = f"{sign}{whole}.{fraction}{'e' + exponent if exponent else ''}{letters}"
        value = parse_literal(text)
        if value is None or value <= 0:
            return None
        try:
            g = reciprocal(value)
        except ExpressionError:
            return None
        if not (0 < g < float("inf")):
            return None
        append(g)
    return out


def flatten_top(flat: Flattener, top: Scope, max_elements: int) -> None:
    """`flat.check_size(top, ...)` and `flat.expand(top, ...)` for a top level holding `Run`s."""
    flat.check_size(top, max_elements)
    if not any(isinstance(e, Run) for e in top.elements):
        flat.expand(top, "", {}, {}, (top,))
        return
    flat.elements, flat.r_head = Elements(flat.elements), Heads(flat.r_head)
    flat.r_nodes, pairs = Pairs(), flat.r_nodes
    flat.r_nodes.extend(pairs)
    env: dict[str, float] = {}
    for card in top.params:  # as `expand` evaluates them, before any element
        for tok in card[1:]:
            env[tok.key.low] = number(tok, env, "a parameter value", f".param {tok.key.text}")
    segment: list[list[Token]] = []

    def expand(elements: list[list[Token]]) -> None:
        view = Scope("", None, elements=elements, models=top.models, spice_models=top.spice_models,
                     subckts=top.subckts)
        flat.expand(view, "", env, {}, (top,))

    for element in top.elements:
        if not isinstance(element, Run):
            segment.append(element)
            continue
        if segment:
            expand(segment)
            segment = []
        if not _add_run(flat, element):
            expand([tokenize(line) for line in element.lines()])
    if segment:
        expand(segment)


def _add_run(flat: Flattener, run: Run) -> bool:
    """The run's resistors appended to `flat` as `expand` would append them; False (nothing changed)
    where the full path must read it."""
    names = run.names
    if len(set(names)) != len(names) or not flat.elements.keys().isdisjoint(names):
        return False
    g = conductances(run.fields)
    if g is None:
        return False
    n = len(names)
    both = [""] * (2 * n)
    both[0::2] = [f[1] for f in run.fields]
    both[1::2] = [f[2] for f in run.fields]
    index = flat.node_index
    first_use: list[int] = []  # nodes whose position is the line that first uses them here
    for name in dict.fromkeys(both):
        if name in ("0", "gnd"):
            continue
        k = index.get(name)
        if k is None:
            first_use.append(flat.new_node(name, None))
        elif flat.unplaced and k in flat.unplaced:
            flat.unplaced.discard(k)
            first_use.append(k)
    codes = np.array([index.get(name, 0) for name in both], dtype=np.int64)
    if first_use:
        unique, where = np.unique(codes, return_index=True)
        at = dict(zip(unique.tolist(), (where // 2).tolist()))
        for k in first_use:
            flat.node_pos[k] = Pos(run.file, run.first + at[k], 1)
    run.r_start = len(flat.r_names)
    flat.elements.update(dict.fromkeys(names, run))
    flat.r_names.extend(names)
    flat.r_nodes.add_block(codes.reshape(n, 2))
    flat.r_g.extend(g)
    flat.r_head.extend([run] * n)
    return True
