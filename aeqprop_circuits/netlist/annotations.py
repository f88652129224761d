"""The learning annotations (`*@ input`, `output`, `learn`, `g0`) resolved against the flat circuit.

Annotations name sources, nodes and resistors by their flattened names (`r.x1.r1`,
`x1.mid`). Outputs that can never move are refused here: an output on ground, or a
differential output whose two nodes are one.
"""

from __future__ import annotations

import fnmatch
import math
import os
import re
from decimal import Decimal

import numpy as np

from aeqprop_circuits.circuit.circuit import Learning
from aeqprop_circuits.netlist.cards import Annotation
from aeqprop_circuits.netlist.expansion import Flattener
from aeqprop_circuits.netlist.lexer import Pos, Token, error
from aeqprop_circuits.netlist.values import ExpressionError, decimal_to_float, parse_literal


def node_ref(tok_text: str, tok: Token, flat: Flattener, what: str) -> int:
    name = tok_text.strip().lower()
    name = "0" if name == "gnd" else name
    if name not in flat.node_index:
        raise error(f"{what}: unknown node '{tok_text.strip()}'", tok.pos)
    return flat.node_index[name]


def pair_of(tok: Token, function: str) -> tuple[str, str] | None:
    match = re.fullmatch(rf"{function}\((.*)\)", tok.text, flags=re.IGNORECASE)
    if match is None:
        return None
    parts = match.group(1).split(",")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        keyword = "input" if function == "pair" else "output"
        raise error(f"{keyword}: expected {function}(A,B), got '{tok.text}'", tok.pos)
    return parts[0].strip(), parts[1].strip()


def bound(text: str, tok: Token) -> float:
    text = text.strip().lower()
    if text in ("inf", "+inf"):
        return math.inf
    literal = parse_literal(text)
    if literal is None:
        raise error(f"learn: expected range=LO:HI in siemens, got '{tok.text}'", tok.pos)
    try:
        return decimal_to_float(literal)
    except ExpressionError:
        raise error(f"learn: range bound '{text}' out of range", tok.pos) from None


def learning(annotations: list[Annotation], flat: Flattener) -> tuple[Learning, list[Pos]]:
    """The Learning of the flat circuit, and where each output was annotated."""
    n_sources = len(flat.s_names)
    source_index = {name: k for k, name in enumerate(flat.s_names)}
    columns: list[dict[int, float]] = []
    input_names: list[str] = []
    driven: dict[int, Pos] = {}
    outputs: list[tuple[int, int]] = []
    output_names: list[str] = []
    output_pos: list[Pos] = []
    ranges: dict[int, tuple[float, float, Pos]] = {}
    g0: float | None = None
    g0_pos: Pos | None = None
    learnable = [k for k, name in enumerate(flat.r_names) if "#" not in name]

    def source(name: str, tok: Token) -> int:
        key = name.strip().lower()
        if key not in source_index:
            raise error(f"input: unknown source '{name.strip()}'", tok.pos)
        k = source_index[key]
        if k in driven:
            first = driven[k]
            raise error(f"input: source '{key}' already driven by the input at line {first.line}", tok.pos)
        driven[k] = tok.pos
        return k

    for note in annotations:
        if note.keyword in ("ideal", "nodes"):
            continue  # applied before flattening
        if note.keyword != "g0" and not note.items:
            raise error(f"'*@ {note.keyword}' needs at least one item", note.pos)
        if note.keyword == "input":
            for tok in note.items:
                pair = pair_of(tok, "pair")
                if pair is not None:
                    plus, minus = source(pair[0], tok), source(pair[1], tok)
                    columns.append({plus: 1.0, minus: -1.0})
                    input_names.append(f"pair({flat.s_names[plus]},{flat.s_names[minus]})")
                else:
                    k = source(tok.text, tok)
                    columns.append({k: 1.0})
                    input_names.append(flat.s_names[k])
        elif note.keyword == "output":
            for tok in note.items:
                pair = pair_of(tok, "diff")
                if pair is not None:
                    p, n = node_ref(pair[0], tok, flat, "output"), node_ref(pair[1], tok, flat, "output")
                    if p == n:
                        raise error(f"output: {tok.text} reads node '{flat.node_names[p]}' against itself, "
                                    "always 0 V: expected two different nodes", tok.pos)
                    outputs.append((p, n))
                    output_names.append(f"diff({flat.node_names[p]},{flat.node_names[n]})")
                else:
                    p = node_ref(tok.text, tok, flat, "output")
                    if p == 0:
                        raise error(f"output: '{tok.text}' is ground, always 0 V: expected a node that moves",
                                    tok.pos)
                    outputs.append((p, 0))
                    output_names.append(flat.node_names[p])
                output_pos.append(tok.pos)
        elif note.keyword == "learn":
            low, high = 0.0, math.inf
            patterns = []
            for tok in note.items:
                if tok.low.startswith("range="):
                    bounds = tok.text[len("range="):].split(":")
                    if len(bounds) != 2:
                        raise error(f"learn: expected range=LO:HI in siemens, got '{tok.text}'", tok.pos)
                    low, high = bound(bounds[0], tok), bound(bounds[1], tok)
                    if not 0 <= low <= high:
                        raise error(f"learn: range needs 0 <= LO <= HI, got '{tok.text}'", tok.pos)
                else:
                    patterns.append(tok)
            if not patterns:
                raise error("learn: expected a resistor name pattern", note.pos)
            for tok in patterns:
                regex = re.compile(fnmatch.translate(tok.low))
                matched = [k for k in learnable if regex.match(flat.r_names[k])]
                if not matched:
                    raise error(f"learn: pattern '{tok.text}' matches no resistor", tok.pos)
                ranges.update(dict.fromkeys(matched, (low, high, tok.pos)))
        elif note.keyword == "g0":
            if len(note.items) != 1:
                raise error("g0: expected one conductance value in siemens", note.pos)
            tok = note.items[0]
            literal = parse_literal(tok.text)
            finite = literal is not None and abs(literal) < Decimal("1e300")
            value = decimal_to_float(literal) if finite else None
            if value is None or not value > 0:
                raise error(f"g0: expected a positive conductance in siemens, got '{tok.text}'", tok.pos)
            g0, g0_pos = value, tok.pos
    del g0_pos
    trainable = np.array(sorted(ranges), dtype=np.int64)
    low = np.array([ranges[k][0] for k in trainable], dtype=np.float64)
    high = np.array([ranges[k][1] for k in trainable], dtype=np.float64)
    conductance = np.asarray(flat.r_g, dtype=np.float64)
    for k in trainable:
        lo, hi, pos = ranges[int(k)]
        g = float(conductance[k])
        if not lo <= g <= hi:
            where = flat.r_head[k].pos
            raise error(f"learn: resistor {flat.r_names[k]} (line {where.line} of "
                         f"{os.path.basename(where.file)}) has conductance {g!r} S, "
                         f"outside range={lo!r}:{hi!r}", pos)
    if g0 is None:
        pool = conductance[trainable] if len(trainable) else conductance[learnable]
        g0 = float(np.median(pool)) if len(pool) else None
    input_map = np.zeros((n_sources, len(columns)))
    for j, column in enumerate(columns):
        for k, sign in column.items():
            input_map[k, j] = sign
    return Learning(
        input_sources=tuple(input_names), input_map=input_map, output_names=tuple(output_names),
        outputs=np.array(outputs, dtype=np.int64).reshape(-1, 2), trainable=trainable, low=low, high=high,
        g0=g0), output_pos
