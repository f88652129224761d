"""SPICE netlist text in, compiled `Circuit` out.

The accepted language is the subset of ngspice's that describes a DC resistive network,
so that every netlist we accept runs unchanged in `ngspice -b` (see docs/netlist-format.md):
title line, R, D, V, I and X elements, `.model NAME D (...)`, `.subckt`/`.ends`, `.param`
with `{expr}` values, `.include`, `.options`, `.op`, `.title`, `.end`, `*` / `;` / `$`
comments and `+` continuations. Learning annotations are comments starting `*@`.

Reading happens in three passes, each reporting errors as `NetlistError(file, line, column)`:
1. text -> logical lines (comments stripped, continuations joined, includes spliced in);
2. logical lines -> a tree of scopes (top level and `.subckt` definitions);
3. scopes -> flat element arrays (subcircuits expanded, parameters evaluated), then the
   annotations are resolved against the flat names.

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

import fnmatch
import math
import os
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import numpy as np

from aeqprop_circuits.circuit.circuit import DEFAULT_GMIN, Circuit, Diodes, IdealDiodes, Learning, Resistors, Sources
from aeqprop_circuits.errors import NetlistError
from aeqprop_circuits.netlist.values import ExpressionError, decimal_to_float, evaluate, parse_literal, reciprocal

__all__ = ["parse_netlist", "parse_text", "parse_value"]

MAX_INCLUDE_DEPTH = 32
MAX_SUBCIRCUIT_DEPTH = 64
ELEMENT_KINDS = {"r": "resistor", "d": "diode", "v": "voltage source", "i": "current source",
                 "x": "subcircuit instance"}
UNSUPPORTED_ELEMENTS = {
    "c": "capacitor", "l": "inductor", "k": "coupled inductor", "e": "voltage-controlled voltage source",
    "f": "current-controlled current source", "g": "voltage-controlled current source",
    "h": "current-controlled voltage source", "b": "behavioural source", "q": "bipolar transistor",
    "j": "JFET", "m": "MOSFET", "z": "MESFET", "s": "voltage-controlled switch",
    "w": "current-controlled switch", "t": "transmission line", "o": "lossy transmission line",
    "u": "uniform RC line", "y": "transmission line", "a": "XSPICE code model", "n": "OSDI device",
    "p": "coupled transmission line",
}
TRANSIENT_FUNCTIONS = {"pulse", "sin", "exp", "pwl", "sffm", "am", "trnoise", "trrandom",
                       "distof1", "distof2"}
# Diode model parameters: the ones we use, the ones with no effect on the DC operating point
# at the nominal 27 degC (capacitances, transit time, noise, temperature coefficients), and
# the ones we refuse because they change the DC current and we do not model them.
DIODE_USED = {"is", "n", "rs"}
DIODE_IGNORED = {
    "cjo", "cj0", "cj", "vj", "pb", "m", "mj", "cjp", "cjsw", "php", "mjsw", "fc", "fcs", "tt",
    "kf", "af", "eg", "xti", "trs", "trs1", "trs2", "tm1", "tm2", "ttt1", "ttt2", "cta", "ctp",
    "tpb", "tphp", "tlev", "tlevc", "tcv", "fv_max", "bv_max", "id_max", "te_max", "pd_max",
}
DIODE_REFUSED = {
    "bv": "breakdown (BV/IBV) is not modelled", "ibv": "breakdown (BV/IBV) is not modelled",
    "nbv": "breakdown is not modelled", "ibvl": "breakdown is not modelled",
    "nbvl": "breakdown is not modelled", "ikf": "high-injection knee (IKF) is not modelled",
    "ik": "high-injection knee (IK) is not modelled", "ikr": "reverse knee (IKR) is not modelled",
    "isr": "recombination current (ISR/NR) is not modelled", "nr": "recombination current is not modelled",
    "jsw": "sidewall current (JSW) is not modelled", "isw": "sidewall current is not modelled",
    "ns": "sidewall current is not modelled", "pj": "sidewall current is not modelled",
    "jtun": "tunnelling current is not modelled", "jtunsw": "tunnelling current is not modelled",
    "ntun": "tunnelling current is not modelled", "xtitun": "tunnelling current is not modelled",
    "keg": "tunnelling current is not modelled",
    "area": "model AREA is not supported (give it on the instance)",
    "rth0": "self-heating is not modelled", "cth0": "self-heating is not modelled",
    "lm": "geometry scaling is not modelled", "lp": "geometry scaling is not modelled",
    "wm": "geometry scaling is not modelled", "wp": "geometry scaling is not modelled",
    "xom": "geometry scaling is not modelled", "xoi": "geometry scaling is not modelled",
    "xm": "geometry scaling is not modelled", "xp": "geometry scaling is not modelled",
}
DIODE_DEFAULTS = {"is": 1e-14, "n": 1.0, "rs": 0.0}
ANNOTATIONS = ("input", "output", "learn", "ideal", "g0", "nodes")


# ----------------------------------------------------------------------------- pass 1: text


@dataclass(frozen=True)
class _Pos:
    file: str
    line: int
    column: int


def _error(message: str, pos: _Pos | None, file: str = "<string>") -> NetlistError:
    if pos is None:
        return NetlistError(message, file)
    return NetlistError(message, pos.file, pos.line, pos.column)


class _Token:
    """A word of a logical line; its position is computed only when an error needs it."""

    __slots__ = ("text", "line", "offset", "key")

    def __init__(self, text: str, line: _Line, offset: int, key: _Token | None = None):
        self.text = text  # as written
        self.line, self.offset = line, offset
        self.key = key  # for `key=value` tokens: the key; `text` is then the value

    @property
    def pos(self) -> _Pos:
        return self.line.at(self.offset)

    @property
    def low(self) -> str:
        return self.text.lower()

    @property
    def shown(self) -> str:
        return f"{self.key.text}={self.text}" if self.key else self.text


@dataclass
class _Line:
    """A logical line: continuations joined, comments stripped, positions kept per segment."""

    text: str
    segments: list[tuple[int, _Pos]]  # (offset in text, position of that character)
    annotation: bool = False

    @property
    def pos(self) -> _Pos:
        return self.segments[0][1]

    def at(self, offset: int) -> _Pos:
        start, pos = self.segments[0]
        if len(self.segments) == 1:
            return _Pos(pos.file, pos.line, pos.column + offset)
        for seg_start, seg_pos in self.segments:
            if seg_start <= offset:
                start, pos = seg_start, seg_pos
        return _Pos(pos.file, pos.line, pos.column + offset - start)

    def extend(self, text: str, pos: _Pos) -> None:
        self.text += " "
        self.segments.append((len(self.text), pos))
        self.text += text


def _strip_comment(text: str) -> str:
    """Cut `;` comments anywhere and `$` comments that start a word (ngspice's rules)."""
    cut = text.find(";")
    if cut >= 0:
        text = text[:cut]
    if "$" in text:
        for match in re.finditer(r"(^|\s)\$", text):
            return text[: match.start()]
    return text


def _read_lines(text: str, file: str, top: bool) -> tuple[str | None, list[_Line]]:
    """Title (top-level file only) and logical lines of one file (no include splicing yet)."""
    physical = text.split("\n")
    title = None
    start = 0
    if top:
        title = physical[0].strip() if physical else ""
        start = 1
    lines: list[_Line] = []
    current: _Line | None = None
    for index in range(start, len(physical)):
        raw = physical[index].rstrip("\r")
        stripped = raw.lstrip()
        if not stripped:
            continue
        indent = len(raw) - len(stripped)
        number = index + 1
        if stripped.startswith("*"):
            if stripped.startswith("*@"):
                lines.append(_Line(stripped[2:], [(0, _Pos(file, number, indent + 3))], annotation=True))
            continue
        body = _strip_comment(raw)
        if not body.strip():
            continue
        if stripped.startswith("+"):
            if current is None:
                raise _error("continuation line '+' with no line before it to continue",
                             _Pos(file, number, indent + 1))
            current.extend(body[indent + 1:], _Pos(file, number, indent + 2))
            continue
        if stripped.lower().startswith(".end") and stripped.lower().split()[0] == ".end":
            break
        current = _Line(body, [(0, _Pos(file, number, 1))])
        lines.append(current)
    return title, lines


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


class _Reader:
    """Pass 1: files -> logical lines, `.include` spliced in place."""

    def __init__(self):
        self.title = ""
        self.lines: list[_Line] = []

    def read(self, text: str, file: str, directory: Path, stack: tuple[str, ...], top: bool) -> None:
        title, lines = _read_lines(text, file, top)
        if top:
            self.title = title or ""
        for line in lines:
            words = line.text.split()
            if not line.annotation and words and words[0].lower() in (".include", ".inc"):
                self.include(line, words[0], directory, stack)
            else:
                self.lines.append(line)

    def include(self, line: _Line, keyword: str, directory: Path, stack: tuple[str, ...]) -> None:
        rest = line.text.split(None, 1)[1].strip() if len(line.text.split(None, 1)) > 1 else ""
        if len(rest) >= 2 and rest[0] in "\"'" and rest[-1] == rest[0]:
            rest = rest[1:-1]
        if not rest:
            raise _error(f"{keyword.lower()}: expected a file name", line.pos)
        path = Path(rest).expanduser()
        if not path.is_absolute():
            path = directory / path
        try:
            key = str(path.resolve())
        except (OSError, RuntimeError, ValueError) as exc:
            raise _error(f"cannot include '{rest}': {exc}", line.pos) from exc
        if key in stack:
            chain = " -> ".join(os.path.basename(p) for p in (*stack[stack.index(key):], key))
            raise _error(f"include cycle: {chain}", line.pos)
        if len(stack) >= MAX_INCLUDE_DEPTH:
            raise _error(f"includes nested deeper than {MAX_INCLUDE_DEPTH}", line.pos)
        try:
            data = path.read_bytes()
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise _error(f"cannot include '{rest}': {reason}", line.pos) from exc
        self.read(_decode(data), str(path), path.parent, (*stack, key), top=False)


# ------------------------------------------------------------------------ tokens and values


_SIMPLE_WORDS = re.compile(r"=|[^\s(),=]+")
_PARAM_WORDS = re.compile(r"=|[^\s=]+")


def _tokenize(line: _Line, separators: str = "(),") -> list[_Token]:
    """Words, `{expr}` / `'expr'` groups (as `{...}`), quoted strings; `key = value` merged."""
    text = line.text
    raw: list[_Token] = []
    i, n = 0, len(text)
    stops = separators + "="
    if not any(c in text for c in "{'\""):  # fast path: words and '=' only
        pattern = _SIMPLE_WORDS if separators else _PARAM_WORDS
        raw = [_Token(m.group(), line, m.start()) for m in pattern.finditer(text)]
        n = 0
    while i < n:
        c = text[i]
        if c.isspace() or c in separators:
            i += 1
            continue
        start = i
        if c == "=":
            raw.append(_Token("=", line, start))
            i += 1
            continue
        if c in "{'":
            close = "}" if c == "{" else "'"
            depth, j = 0, i
            while j < n:
                if text[j] == "{" and c == "{":
                    depth += 1
                elif text[j] == close and (c == "{" or j > i):
                    depth -= 1
                    if depth <= 0 or c == "'":
                        break
                j += 1
            if j >= n:
                raise _error(f"unterminated '{c}'", line.at(start))
            raw.append(_Token("{" + text[i + 1:j] + "}", line, start))
            i = j + 1
            continue
        if c == '"':
            j = text.find('"', i + 1)
            if j < 0:
                raise _error("unterminated '\"'", line.at(start))
            raw.append(_Token(text[i + 1:j], line, start))
            i = j + 1
            continue
        while i < n and not (text[i].isspace() or text[i] in stops):
            i += 1
        raw.append(_Token(text[start:i], line, start))
    tokens: list[_Token] = []
    k = 0
    while k < len(raw):
        tok = raw[k]
        if tok.text == "=":
            raise _error("unexpected '=' (expected NAME=VALUE)", tok.pos)
        if k + 1 < len(raw) and raw[k + 1].text == "=":
            if k + 2 >= len(raw) or raw[k + 2].text == "=":
                raise _error(f"expected a value after '{tok.text}='", raw[k + 1].pos)
            value = raw[k + 2]
            tokens.append(_Token(value.text, value.line, value.offset, key=tok))
            k += 3
            continue
        tokens.append(tok)
        k += 1
    return tokens


def _number(tok: _Token, env: dict[str, float], what: str, owner: str) -> float:
    """A float from a literal (with suffix) or a `{expr}` token; NetlistError naming `owner`."""
    return _exact(tok, env, what, owner, exact=False)


def _exact(tok: _Token, env: dict[str, float], what: str, owner: str, exact: bool = True):
    text = tok.text
    if text.startswith("{") and text.endswith("}") and len(text) >= 2:
        try:
            return evaluate(text[1:-1], env)
        except ExpressionError as exc:
            pos = _Pos(tok.pos.file, tok.pos.line, tok.pos.column + 1 + exc.offset)
            raise _error(f"{owner}: {exc} in '{text}'", pos) from None
    literal = parse_literal(text)
    if literal is None:
        hint = ""
        if text.lower() in env:
            hint = f" (write {{{text}}} to use the parameter)"
        elif re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)[a-zA-Z]+\d+", text):
            hint = " (digits after a suffix are ambiguous; write e.g. 1.5k, not 1k5)"
        raise _error(f"{owner}: expected {what}, got '{tok.shown}'{hint}", tok.pos)
    if exact:
        return literal
    try:
        return decimal_to_float(literal)
    except ExpressionError as exc:
        raise _error(f"{owner}: {exc}: '{text}'", tok.pos) from None


# ---------------------------------------------------------------------- pass 2: scope tree


@dataclass(eq=False)
class _Scope:
    """The top level or one `.subckt` definition."""

    name: str
    parent: _Scope | None
    line: _Line | None = None
    ports: list[_Token] = field(default_factory=list)
    defaults: list[_Token] = field(default_factory=list)  # key=value tokens of `params:`
    params: list[list[_Token]] = field(default_factory=list)  # each a .param card's tokens
    elements: list[list[_Token]] = field(default_factory=list)
    models: dict[str, list[_Token]] = field(default_factory=dict)
    subckts: dict[str, _Scope] = field(default_factory=dict)

    def find_subckt(self, name: str) -> _Scope | None:
        scope: _Scope | None = self
        while scope is not None:
            if name in scope.subckts:
                return scope.subckts[name]
            scope = scope.parent
        return None

    def find_model(self, name: str) -> list[_Token] | None:
        scope: _Scope | None = self
        while scope is not None:
            if name in scope.models:
                return scope.models[name]
            scope = scope.parent
        return None


@dataclass
class _Annotation:
    keyword: str
    items: list[_Token]
    pos: _Pos


def _scan_annotation(line: _Line) -> _Annotation:
    """`*@ keyword item item ...`; items are words or `word(...)` groups, spaces inside removed."""
    text = line.text
    items: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        start, parts, depth = i, [], 0
        while i < n:
            c = text[i]
            if c.isspace():
                # keep going across spaces inside (...), before "(", around "=", and around
                # the ":" of a `key=LO:HI` value
                j = i
                while j < n and text[j].isspace():
                    j += 1
                joined = "".join(parts)
                nxt = text[j] if j < n else ""
                keyed = "=" in joined
                if (depth > 0 or nxt in ("=", "(") or joined.endswith("=")
                        or (keyed and (nxt == ":" or joined.endswith(":")))):
                    i = j
                    continue
                break
            if c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
            parts.append(c)
            i += 1
        items.append(_Token("".join(parts), line, start))
    if not items:
        raise _error(f"empty annotation: expected one of {', '.join(ANNOTATIONS)} after '*@'",
                     line.pos)
    keyword = items[0]
    if keyword.low not in ANNOTATIONS:
        raise _error(f"unknown annotation '*@ {keyword.text}' (expected one of {', '.join(ANNOTATIONS)})",
                     keyword.pos)
    return _Annotation(keyword.low, items[1:], keyword.pos)


class _Structure:
    """Pass 2: logical lines -> scope tree, annotations and options."""

    def __init__(self, title: str, lines: list[_Line], file: str):
        self.title = title
        self.file = file
        self.top = _Scope("", None)
        self.annotations: list[_Annotation] = []
        self.options: list[_Token] = []
        scope = self.top
        for line in lines:
            if line.annotation:
                annotation = _scan_annotation(line)
                if scope is not self.top:
                    raise _error(f"'*@ {annotation.keyword}' inside .subckt {scope.name}: "
                                 "annotations belong at the top level", annotation.pos)
                self.annotations.append(annotation)
                continue
            first = line.text.split()[0].lower()
            tokens = _tokenize(line, "" if first == ".param" else "(),")
            if not tokens:
                continue
            head = tokens[0]
            if head.key is not None:
                raise _error(f"expected an element or a control card, got '{head.shown}'", head.key.pos)
            word = head.low
            if word.startswith("."):
                scope = self.card(word, tokens, line, scope)
            elif word[:1] in ELEMENT_KINDS:
                scope.elements.append(tokens)
            elif word[:1] in UNSUPPORTED_ELEMENTS:
                raise _error(f"unsupported element '{head.text}' ({UNSUPPORTED_ELEMENTS[word[0]]}): "
                             "only R, D, V, I and X elements are modelled", head.pos)
            else:
                raise _error(f"expected an element (R, D, V, I, X) or a control card, got '{head.text}'",
                             head.pos)
        if scope is not self.top:
            raise _error(f"missing .ends for .subckt {scope.name}", scope.line.pos if scope.line else None)

    def card(self, word: str, tokens: list[_Token], line: _Line, scope: _Scope) -> _Scope:
        head = tokens[0]
        if word == ".subckt":
            if len(tokens) < 2 or tokens[1].key is not None:
                raise _error(".subckt: expected a subcircuit name", head.pos)
            name = tokens[1].low
            sub = _Scope(name, scope, line)
            in_params = False
            for tok in tokens[2:]:
                if tok.key is None and tok.low == "params:":
                    in_params = True
                elif tok.key is not None:
                    sub.defaults.append(tok)
                elif in_params:
                    raise _error(f".subckt {name}: expected NAME=VALUE after params:, got '{tok.text}'",
                                 tok.pos)
                else:
                    sub.ports.append(tok)
            if name in scope.subckts:
                raise _error(f"duplicate subcircuit '{name}'", tokens[1].pos)
            scope.subckts[name] = sub
            return sub
        if word == ".ends":
            if scope is self.top:
                raise _error(".ends without a matching .subckt", head.pos)
            if len(tokens) > 1 and tokens[1].low != scope.name:
                raise _error(f".ends {tokens[1].text} closes .subckt {scope.name}", tokens[1].pos)
            return scope.parent
        if word == ".model":
            if len(tokens) < 3 or tokens[1].key is not None or tokens[2].key is not None:
                raise _error(".model: expected '.model NAME D (PARAM=VALUE ...)'", head.pos)
            name = tokens[1].low
            if name in scope.models:
                raise _error(f"duplicate model '{name}'", tokens[1].pos)
            if tokens[2].low != "d":
                raise _error(f"model '{name}': unsupported model type '{tokens[2].text}' "
                             "(only D diodes are modelled)", tokens[2].pos)
            for tok in tokens[3:]:
                if tok.key is None:
                    raise _error(f"model '{name}': expected PARAM=VALUE, got '{tok.text}'", tok.pos)
            scope.models[name] = tokens
            return scope
        if word == ".param":
            for tok in tokens[1:]:
                if tok.key is None:
                    raise _error(f".param: expected NAME=VALUE, got '{tok.text}'", tok.pos)
                if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", tok.key.text):
                    raise _error(f".param: bad parameter name '{tok.key.text}'", tok.key.pos)
            scope.params.append(tokens)
            return scope
        if word in (".options", ".option", ".opt"):
            self.options.extend(tokens[1:])
            return scope
        if word == ".title":
            self.title = line.text.strip()[len(head.text):].strip()
            return scope
        if word == ".op":
            return scope
        raise _error(f"unsupported control card {head.text.lower()}", head.pos)


# --------------------------------------------------------------------- pass 3: flattening


@dataclass
class _Model:
    saturation_current: float
    emission: float
    series_resistance: float


class _Flattener:
    """Pass 3: expand subcircuits into flat element lists, ngspice's names."""

    def __init__(self, structure: _Structure, ideal_models: set[str], node_order: list[_Token]):
        self.structure = structure
        self.ideal_models = ideal_models
        self.node_names = ["0"]
        self.node_index = {"0": 0}
        self.internal = [False]
        for tok in node_order:
            name = "0" if tok.low in ("0", "gnd") else tok.low
            if name == "0":
                continue
            if name in self.node_index:
                raise _error(f"nodes: node '{tok.text}' listed twice", tok.pos)
            self.node(name)
        self.elements: dict[str, _Token] = {}
        self.r_names: list[str] = []
        self.r_nodes: list[tuple[int, int]] = []
        self.r_g: list[float] = []
        self.r_head: list[_Token] = []
        self.d_names: list[str] = []
        self.d_nodes: list[tuple[int, int]] = []
        self.d_is: list[float] = []
        self.d_n: list[float] = []
        self.i_names: list[str] = []
        self.i_nodes: list[tuple[int, int]] = []
        self.s_names: list[str] = []
        self.s_nodes: list[tuple[int, int]] = []
        self.s_value: list[float] = []
        self.s_voltage: list[bool] = []
        self.model_cache: dict[tuple[int, int], tuple[dict, _Model]] = {}
        self.used_models: set[int] = set()

    def node(self, name: str) -> int:
        index = self.node_index.get(name)
        if index is None:
            index = len(self.node_names)
            self.node_index[name] = index
            self.node_names.append(name)
            self.internal.append("#" in name)
        return index

    def expand(self, scope: _Scope, path: str, env: dict[str, float], ports: dict[str, str],
               stack: tuple[_Scope, ...]) -> None:
        env = dict(env)
        for card in scope.params:
            for tok in card[1:]:
                env[tok.key.low] = _number(tok, env, "a parameter value", f".param {tok.key.text}")
        for tokens in scope.elements:
            head = tokens[0]
            local = head.low
            full = f"{local[0]}.{path}.{local}" if path else local
            if full in self.elements:
                first = self.elements[full].pos
                raise _error(f"duplicate element name '{full}' (first defined at "
                             f"{first.file}:{first.line})", head.pos)
            self.elements[full] = head

            def node(tok: _Token, what: str = "a node name", owner: str = head.text) -> int:
                if tok.key is not None or tok.text.startswith("{") or not tok.text:
                    raise _error(f"{owner}: expected {what}, got '{tok.shown}'", tok.pos)
                name = tok.low
                if name in ("0", "gnd"):
                    return 0
                if path:
                    name = ports.get(name, f"{path}.{name}")
                return self.node(name)

            kind = local[0]
            if kind == "r":
                self.resistor(tokens, full, node, env)
            elif kind == "d":
                self.diode(tokens, full, node, env, scope)
            elif kind in "vi":
                self.source(tokens, full, node, env)
            else:
                self.instance(tokens, path, node, env, scope, stack)

    @staticmethod
    def positional(tokens: list[_Token], count: int, usage: str) -> None:
        got = [t for t in tokens[1:count + 1] if t.key is None]
        if len(tokens) <= count or len(got) < count:
            raise _error(f"{tokens[0].text}: expected '{usage}', got {len(got)} item(s) after the name",
                         tokens[0].pos)

    def resistor(self, tokens, full, node, env) -> None:
        head = tokens[0]
        usage = f"{head.text} n+ n- resistance"
        self.positional(tokens, 2, usage)
        a, b = node(tokens[1]), node(tokens[2])
        value_tok = None
        for tok in tokens[3:]:
            key = tok.key.low if tok.key else None
            if key is None or key in ("r", "resistance"):
                if value_tok is not None:
                    raise _error(f"{head.text}: expected '{usage}', got an extra '{tok.shown}'", tok.pos)
                value_tok = tok
            elif key in ("ac", "noisy"):
                continue
            else:
                raise _error(f"{head.text}: resistor parameter '{tok.key.text}' is not supported",
                             tok.key.pos)
        if value_tok is None:
            raise _error(f"{head.text}: expected a resistance value after the two nodes", head.pos)
        value = _exact(value_tok, env, "a resistance value", head.text)
        if isinstance(value, Decimal):
            if value <= 0:
                raise _error(f"{head.text}: resistance must be positive, got '{value_tok.text}'",
                             value_tok.pos)
            try:
                conductance = reciprocal(value)
            except ExpressionError as exc:
                raise _error(f"{head.text}: resistance '{value_tok.text}': {exc}", value_tok.pos) from None
        else:
            if value <= 0:
                raise _error(f"{head.text}: resistance must be positive, got {value!r} from "
                             f"'{value_tok.text}'", value_tok.pos)
            conductance = 1.0 / value
        if not (math.isfinite(conductance) and conductance > 0):
            raise _error(f"{head.text}: resistance '{value_tok.text}' is out of range", value_tok.pos)
        self.add_resistor(full, (a, b), conductance, head)

    def add_resistor(self, name, nodes, conductance, head: _Token) -> None:
        self.r_names.append(name)
        self.r_nodes.append(nodes)
        self.r_g.append(conductance)
        self.r_head.append(head)

    def model(self, tokens: list[_Token], env: dict[str, float]) -> _Model:
        key = (id(tokens), id(env))
        if key in self.model_cache:
            return self.model_cache[key][1]
        name = tokens[1].low
        values = dict(DIODE_DEFAULTS)
        for tok in tokens[3:]:
            param = tok.key.low
            owner = f"model '{name}'"
            if param in DIODE_USED:
                values[param] = _number(tok, env, f"a value for {param.upper()}", owner)
            elif param == "level":
                if _number(tok, env, "a level", owner) != 1:
                    raise _error(f"{owner}: only LEVEL=1 diodes are modelled", tok.key.pos)
            elif param == "tnom":
                if _number(tok, env, "a temperature", owner) != 27:
                    raise _error(f"{owner}: TNOM other than 27 changes IS at 27 degC and is not modelled",
                                 tok.key.pos)
            elif param in DIODE_REFUSED:
                raise _error(f"{owner}: {tok.key.text}: {DIODE_REFUSED[param]}", tok.key.pos)
            elif param in DIODE_IGNORED:
                _number(tok, env, f"a value for {param.upper()}", owner)
            else:
                raise _error(f"{owner}: unknown diode parameter '{tok.key.text}'", tok.key.pos)
        if not values["is"] > 0:
            raise _error(f"model '{name}': IS must be positive, got {values['is']!r}", tokens[1].pos)
        if not values["n"] > 0:
            raise _error(f"model '{name}': N must be positive, got {values['n']!r}", tokens[1].pos)
        if values["rs"] < 0:
            raise _error(f"model '{name}': RS must not be negative, got {values['rs']!r}", tokens[1].pos)
        model = _Model(values["is"], values["n"], values["rs"])
        self.model_cache[key] = (env, model)
        self.used_models.add(id(tokens))
        return model

    def diode(self, tokens, full, node, env, scope: _Scope) -> None:
        head = tokens[0]
        usage = f"{head.text} anode cathode model"
        self.positional(tokens, 3, usage)
        a, c = node(tokens[1]), node(tokens[2])
        model_name = tokens[3].low
        card = scope.find_model(model_name)
        if card is None:
            raise _error(f"{head.text}: unknown model '{tokens[3].text}'", tokens[3].pos)
        model = self.model(card, env)
        area, multiplier = 1.0, 1.0
        seen_area = False
        for tok in tokens[4:]:
            key = tok.key.low if tok.key else None
            if key is None and tok.low == "off":
                continue
            if key is None and not seen_area:
                area = _number(tok, env, "an area factor or OFF", head.text)
                seen_area = True
            elif key == "area":
                area = _number(tok, env, "an area factor", head.text)
            elif key == "m":
                multiplier = _number(tok, env, "a multiplier", head.text)
            elif key is None:
                raise _error(f"{head.text}: expected '{usage} [area] [off] [m=...]', got an extra "
                             f"'{tok.text}'", tok.pos)
            else:
                raise _error(f"{head.text}: diode parameter '{tok.key.text}' is not supported", tok.key.pos)
        scale = area * multiplier
        if not (math.isfinite(scale) and scale > 0):
            raise _error(f"{head.text}: area and m must be positive, got area={area!r} m={multiplier!r}",
                         head.pos)
        if model_name in self.ideal_models:
            self.i_names.append(full)
            self.i_nodes.append((a, c))
            return
        saturation = model.saturation_current * scale
        if not (math.isfinite(saturation) and saturation > 0):
            raise _error(f"{head.text}: IS * area out of range", head.pos)
        if model.series_resistance > 0:
            junction = self.node(f"{full}#rs")
            self.add_resistor(f"rs#{full}", (a, junction), scale / model.series_resistance, head)
            a = junction
        self.d_names.append(full)
        self.d_nodes.append((a, c))
        self.d_is.append(saturation)
        self.d_n.append(model.emission)

    def source(self, tokens, full, node, env) -> None:
        head = tokens[0]
        usage = f"{head.text} n+ n- [DC] value"
        self.positional(tokens, 2, usage)
        a, b = node(tokens[1]), node(tokens[2])
        what = "a voltage" if full[0] == "v" else "a current"
        value, have_value = 0.0, False
        rest = tokens[3:]
        i = 0
        while i < len(rest):
            tok = rest[i]
            if tok.key is not None:
                raise _error(f"{head.text}: unexpected '{tok.shown}' (expected '{usage}')", tok.key.pos)
            word = tok.low
            if word == "dc":
                if i + 1 >= len(rest) or rest[i + 1].key is not None:
                    raise _error(f"{head.text}: expected {what} after DC", tok.pos)
                if have_value:
                    raise _error(f"{head.text}: DC value given twice", tok.pos)
                value, have_value = _number(rest[i + 1], env, what, head.text), True
                i += 2
            elif word == "ac":
                i += 1
                for _ in range(2):  # magnitude and phase, both optional; no effect at DC
                    if i < len(rest) and rest[i].key is None and (
                            parse_literal(rest[i].text) is not None or rest[i].text.startswith("{")):
                        i += 1
            elif word in TRANSIENT_FUNCTIONS:
                raise _error(f"{head.text}: transient source function {word.upper()} is not supported; "
                             "give a DC value", tok.pos)
            elif not have_value:
                value, have_value = _number(tok, env, what, head.text), True
                i += 1
            else:
                raise _error(f"{head.text}: unexpected '{tok.text}' (expected '{usage}')", tok.pos)
        self.s_names.append(full)
        self.s_nodes.append((a, b))
        self.s_value.append(value)
        self.s_voltage.append(full[0] == "v")

    def instance(self, tokens, path, node, env, scope: _Scope, stack) -> None:
        head = tokens[0]
        positional = [t for t in tokens[1:] if t.key is None and t.low != "params:"]
        overrides = [t for t in tokens[1:] if t.key is not None]
        if not positional:
            raise _error(f"{head.text}: expected '{head.text} node ... subcircuit [NAME=VALUE ...]'",
                         head.pos)
        name_tok = positional[-1]
        sub = scope.find_subckt(name_tok.low)
        if sub is None:
            raise _error(f"{head.text}: unknown subcircuit '{name_tok.text}'", name_tok.pos)
        nodes = positional[:-1]
        if len(nodes) != len(sub.ports):
            raise _error(f"{head.text}: subcircuit '{sub.name}' has {len(sub.ports)} port(s), "
                         f"got {len(nodes)} node(s)", head.pos)
        if sub in stack:
            raise _error(f"{head.text}: subcircuit '{sub.name}' instantiates itself", head.pos)
        if len(stack) >= MAX_SUBCIRCUIT_DEPTH:
            raise _error(f"{head.text}: subcircuits nested deeper than {MAX_SUBCIRCUIT_DEPTH}", head.pos)
        port_map: dict[str, str] = {}
        for port, tok in zip(sub.ports, nodes):
            if port.low in ("0", "gnd"):
                raise _error(f".subckt {sub.name}: ground cannot be a port", port.pos)
            if port.low in port_map:
                raise _error(f".subckt {sub.name}: port '{port.text}' listed twice", port.pos)
            port_map[port.low] = self.node_names[node(tok)]
        inner = dict(env)
        declared = set()
        for tok in sub.defaults:
            inner[tok.key.low] = _number(tok, inner, "a parameter value", f".subckt {sub.name}")
            declared.add(tok.key.low)
        for tok in overrides:
            if tok.key.low not in declared:
                raise _error(f"{head.text}: subcircuit '{sub.name}' has no parameter '{tok.key.text}'",
                             tok.key.pos)
            inner[tok.key.low] = _number(tok, env, "a parameter value", head.text)
        local = head.low
        self.expand(sub, f"{path}.{local}" if path else local, inner, port_map, (*stack, sub))


# ------------------------------------------------------------------------ annotations


def _node_ref(tok_text: str, tok: _Token, flat: _Flattener, what: str) -> int:
    name = tok_text.strip().lower()
    name = "0" if name == "gnd" else name
    if name not in flat.node_index:
        raise _error(f"{what}: unknown node '{tok_text.strip()}'", tok.pos)
    return flat.node_index[name]


def _pair(tok: _Token, function: str) -> tuple[str, str] | None:
    match = re.fullmatch(rf"{function}\((.*)\)", tok.text, flags=re.IGNORECASE)
    if match is None:
        return None
    parts = match.group(1).split(",")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        keyword = "input" if function == "pair" else "output"
        raise _error(f"{keyword}: expected {function}(A,B), got '{tok.text}'", tok.pos)
    return parts[0].strip(), parts[1].strip()


def _bound(text: str, tok: _Token) -> float:
    text = text.strip().lower()
    if text in ("inf", "+inf"):
        return math.inf
    literal = parse_literal(text)
    if literal is None:
        raise _error(f"learn: expected range=LO:HI in siemens, got '{tok.text}'", tok.pos)
    try:
        return decimal_to_float(literal)
    except ExpressionError:
        raise _error(f"learn: range bound '{text}' out of range", tok.pos) from None


def _learning(annotations: list[_Annotation], flat: _Flattener) -> Learning:
    n_sources = len(flat.s_names)
    source_index = {name: k for k, name in enumerate(flat.s_names)}
    columns: list[dict[int, float]] = []
    input_names: list[str] = []
    driven: dict[int, _Pos] = {}
    outputs: list[tuple[int, int]] = []
    output_names: list[str] = []
    ranges: dict[int, tuple[float, float, _Pos]] = {}
    g0: float | None = None
    g0_pos: _Pos | None = None
    learnable = [k for k, name in enumerate(flat.r_names) if "#" not in name]

    def source(name: str, tok: _Token) -> int:
        key = name.strip().lower()
        if key not in source_index:
            raise _error(f"input: unknown source '{name.strip()}'", tok.pos)
        k = source_index[key]
        if k in driven:
            first = driven[k]
            raise _error(f"input: source '{key}' already driven by the input at line {first.line}", tok.pos)
        driven[k] = tok.pos
        return k

    for note in annotations:
        if note.keyword in ("ideal", "nodes"):
            continue  # applied before flattening
        if note.keyword != "g0" and not note.items:
            raise _error(f"'*@ {note.keyword}' needs at least one item", note.pos)
        if note.keyword == "input":
            for tok in note.items:
                pair = _pair(tok, "pair")
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
                pair = _pair(tok, "diff")
                if pair is not None:
                    p, n = _node_ref(pair[0], tok, flat, "output"), _node_ref(pair[1], tok, flat, "output")
                    outputs.append((p, n))
                    output_names.append(f"diff({flat.node_names[p]},{flat.node_names[n]})")
                else:
                    p = _node_ref(tok.text, tok, flat, "output")
                    outputs.append((p, 0))
                    output_names.append(flat.node_names[p])
        elif note.keyword == "learn":
            low, high = 0.0, math.inf
            patterns = []
            for tok in note.items:
                if tok.low.startswith("range="):
                    bounds = tok.text[len("range="):].split(":")
                    if len(bounds) != 2:
                        raise _error(f"learn: expected range=LO:HI in siemens, got '{tok.text}'", tok.pos)
                    low, high = _bound(bounds[0], tok), _bound(bounds[1], tok)
                    if not 0 <= low <= high:
                        raise _error(f"learn: range needs 0 <= LO <= HI, got '{tok.text}'", tok.pos)
                else:
                    patterns.append(tok)
            if not patterns:
                raise _error("learn: expected a resistor name pattern", note.pos)
            for tok in patterns:
                regex = re.compile(fnmatch.translate(tok.low))
                matched = [k for k in learnable if regex.match(flat.r_names[k])]
                if not matched:
                    raise _error(f"learn: pattern '{tok.text}' matches no resistor", tok.pos)
                for k in matched:
                    ranges[k] = (low, high, tok.pos)
        elif note.keyword == "g0":
            if len(note.items) != 1:
                raise _error("g0: expected one conductance value in siemens", note.pos)
            tok = note.items[0]
            literal = parse_literal(tok.text)
            finite = literal is not None and abs(literal) < Decimal("1e300")
            value = decimal_to_float(literal) if finite else None
            if value is None or not value > 0:
                raise _error(f"g0: expected a positive conductance in siemens, got '{tok.text}'", tok.pos)
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
            raise _error(f"learn: resistor {flat.r_names[k]} (line {where.line} of "
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
        g0=g0)


# ----------------------------------------------------------------------------- assembling


def _gmin(options: list[_Token]) -> float:
    gmin = DEFAULT_GMIN
    for tok in options:
        if tok.key is not None and tok.key.low == "gmin":
            gmin = _number(tok, {}, "a conductance", ".options gmin")
            if not gmin >= 0:
                raise _error(f".options gmin: expected a non-negative conductance, got '{tok.text}'", tok.pos)
    return gmin


def _compile(structure: _Structure) -> Circuit:
    ideal: set[str] = set()
    ideal_pos: dict[str, _Token] = {}
    order: list[_Token] = []
    for note in structure.annotations:
        if note.keyword == "ideal":
            if not note.items:
                raise _error("ideal: expected a diode model name", note.pos)
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
            raise _error(f"ideal: unknown diode model '{tok.text}'", tok.pos)

    flat = _Flattener(structure, ideal, order)
    flat.expand(structure.top, "", {}, {}, (structure.top,))
    top_env: dict[str, float] = {}
    for card in structure.top.params:
        for tok in card[1:]:
            top_env[tok.key.low] = _number(tok, top_env, "a parameter value", f".param {tok.key.text}")
    for tokens in structure.top.models.values():
        if id(tokens) not in flat.used_models:
            flat.model(tokens, top_env)  # validate unused top-level models too

    learning = _learning(structure.annotations, flat)
    resistors = Resistors(tuple(flat.r_names), np.array(flat.r_nodes, dtype=np.int64).reshape(-1, 2),
                          np.array(flat.r_g, dtype=np.float64))
    diodes = Diodes(tuple(flat.d_names), np.array(flat.d_nodes, dtype=np.int64).reshape(-1, 2),
                    np.array(flat.d_is, dtype=np.float64), np.array(flat.d_n, dtype=np.float64),
                    gmin=_gmin(structure.options))
    ideal_diodes = IdealDiodes(tuple(flat.i_names), np.array(flat.i_nodes, dtype=np.int64).reshape(-1, 2))
    sources = Sources(tuple(flat.s_names), np.array(flat.s_nodes, dtype=np.int64).reshape(-1, 2),
                      np.array(flat.s_value, dtype=np.float64), np.array(flat.s_voltage, dtype=bool))
    return Circuit(structure.title, tuple(flat.node_names), resistors, diodes, ideal_diodes, sources,
                   learning, internal=np.array(flat.internal, dtype=bool))


def _parse(text: str, file: str, directory: Path, stack: tuple[str, ...]) -> Circuit:
    try:
        reader = _Reader()
        reader.read(text, file, directory, stack, top=True)
        return _compile(_Structure(reader.title, reader.lines, file))
    except NetlistError:
        raise
    except RecursionError:
        raise NetlistError("netlist nested too deeply", file) from None
    except Exception as exc:  # the contract: nothing but NetlistError ever leaves the parser
        raise NetlistError(f"internal error while parsing ({type(exc).__name__}: {exc}); "
                           "please report this netlist", file) from exc


def parse_text(text: str, file: str = "<string>") -> Circuit:
    """Compile netlist `text`; `file` names it in error messages and anchors relative `.include`s.

    The first line is the title, as in SPICE. Raises `NetlistError` (and nothing else) on
    any text it cannot accept, with file, line and column of the fault.
    """
    if not isinstance(text, str):
        raise NetlistError(f"expected netlist text (str), got {type(text).__name__}", file)
    directory = Path.cwd() if file.startswith("<") else Path(file).parent
    stack: tuple[str, ...] = ()
    if not file.startswith("<"):
        try:
            stack = (str(Path(file).resolve()),)
        except (OSError, RuntimeError, ValueError):
            stack = ()
    return _parse(text, file, directory, stack)


def parse_netlist(path: str | os.PathLike) -> Circuit:
    """Compile the netlist file at `path` (see `parse_text`)."""
    file = os.fspath(path)
    try:
        data = Path(file).read_bytes()
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise NetlistError(f"cannot read netlist: {reason}", file) from None
    return parse_text(_decode(data), file)


def parse_value(text: str, what: str = "value") -> float:
    """A SPICE number ('1.5k', '10uA', '-3V') or `{expression}` as a float, e.g. for `--set V1=0.3`.

    Raises `NetlistError` (file "<value>") if `text` is neither.
    """
    text = str(text).strip()
    line = _Line(text, [(0, _Pos("<value>", 1, 1))])
    if text.startswith("'") and text.endswith("'") and len(text) >= 2:
        text = "{" + text[1:-1] + "}"
    tok = _Token(text, line, 0)
    try:
        return float(_number(tok, {}, "a number (with an optional suffix, e.g. 1.5k) or {expr}", what))
    except NetlistError:
        raise
    except Exception as exc:  # same contract as the netlist parser
        raise NetlistError(f"{what}: cannot read '{text}' ({exc})", "<value>") from exc
