"""Pass 2 of the netlist parser: logical lines -> a tree of scopes, the annotations and the options.

The top level and each `.subckt` definition is a `Scope` holding its element cards, models,
`.param` cards and nested definitions. Control cards are dealt with here: the ones that set up
the DC operating point (`.model`, `.param`, `.options`, `.temp`, ...) are kept, analyses other
than `.op` are accepted with a warning that they are not run, and anything that would change
the operating point in a way we do not model is refused by name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from aeqprop_circuits.netlist.lexer import Line, Notes, Pos, Run, Token, check_parens, error, number, tokenize

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
TRANSIENT_FUNCTIONS = frozenset({"pulse", "sin", "exp", "pwl", "sffm", "am", "trnoise", "trrandom",
                                 "distof1", "distof2"})
ANNOTATIONS = ("input", "output", "learn", "ideal", "g0", "nodes")
# Analyses ngspice would run besides the operating point: accepted, not run.
ANALYSES = {".tran", ".ac", ".dc", ".noise", ".tf", ".sens", ".pz", ".disto", ".sp", ".pss"}
# Cards that only choose what ngspice prints or measures: no effect on the operating point.
OUTPUT_CARDS = {".print", ".plot", ".save", ".probe", ".meas", ".measure", ".four", ".fourier", ".width"}
# Cards that only give an initial state: the operating point of our circuits is unique.
INITIAL_STATE_CARDS = {".ic": "initial conditions apply to transient analysis only",
                       ".nodeset": "a starting guess only: the operating point computed here is unique"}
REFUSED_OPTIONS = {"rshunt": "RSHUNT adds a resistor from every node to ground, which is not modelled: "
                             "write those resistors into the netlist"}
ABSOLUTE_ZERO = -273.15  # degC


@dataclass(eq=False)
class Scope:
    """The top level or one `.subckt` definition."""

    name: str
    parent: Scope | None
    line: Line | None = None
    ports: list[Token] = field(default_factory=list)
    defaults: list[Token] = field(default_factory=list)  # key=value tokens of `params:`
    params: list[list[Token]] = field(default_factory=list)  # each a .param card's tokens
    elements: list[list[Token] | Run] = field(default_factory=list)  # a Run only at the top level
    models: dict[str, list[Token]] = field(default_factory=dict)
    spice_models: dict[str, list[Token]] = field(default_factory=dict)  # other types, for ngspice (top level)
    subckts: dict[str, Scope] = field(default_factory=dict)

    def find_subckt(self, name: str) -> Scope | None:
        scope: Scope | None = self
        while scope is not None:
            if name in scope.subckts:
                return scope.subckts[name]
            scope = scope.parent
        return None

    def find_model(self, name: str) -> list[Token] | None:
        scope: Scope | None = self
        while scope is not None:
            if name in scope.models:
                return scope.models[name]
            scope = scope.parent
        return None

    def parameter_names(self) -> set[str]:
        """Names an instance may set: the `params:` defaults and the scope's own `.param`s."""
        return {tok.key.low for tok in self.defaults} | {tok.key.low for card in self.params for tok in card[1:]}


@dataclass
class Annotation:
    keyword: str
    items: list[Token]
    pos: Pos


def scan_annotation(line: Line) -> Annotation:
    """`*@ keyword item item ...`; items are words or `word(...)` groups, spaces inside removed."""
    text = line.text
    items: list[Token] = []
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
        items.append(Token("".join(parts), line, start))
    if not items:
        raise error(f"empty annotation: expected one of {', '.join(ANNOTATIONS)} after '*@'", line.pos)
    keyword = items[0]
    if keyword.low not in ANNOTATIONS:
        raise error(f"unknown annotation '*@ {keyword.text}' (expected one of {', '.join(ANNOTATIONS)})",
                    keyword.pos)
    return Annotation(keyword.low, items[1:], keyword.pos)


class Structure:
    """Logical lines -> scope tree, annotations, options (gmin, temperatures in degC) and warnings.

    With `spice`, elements and `.model` types the built-in solvers do not model are kept for
    ngspice (netlist/parser.py, `spice=True`) instead of refused.
    """

    def __init__(self, title: str, lines: list[Line | Run], file: str, notes: Notes, spice: bool = False):
        self.title = title
        self.file = file
        self.notes = notes
        self.spice = spice
        self.top = Scope("", None)
        self.annotations: list[Annotation] = []
        self.gmin: Token | None = None
        self.temperature: tuple[float, Token] | None = None
        self.nominal: tuple[float, Token] | None = None  # TNOM
        scope = self.top
        pending = list(reversed(lines))
        while pending:
            line = pending.pop()
            if isinstance(line, Run):
                if scope is self.top:  # flattened in one batch (parser.py)
                    scope.elements.append(line)
                else:  # inside a .subckt: line by line
                    pending.extend(reversed(line.lines()))
                continue
            if line.annotation:
                annotation = scan_annotation(line)
                if scope is not self.top:
                    raise error(f"'*@ {annotation.keyword}' inside .subckt {scope.name}: "
                                "annotations belong at the top level", annotation.pos)
                self.annotations.append(annotation)
                continue
            first = line.text.split()[0].lower()
            tokens = tokenize(line, "" if first == ".param" else "(),")
            if not tokens:
                continue
            head = tokens[0]
            if head.key is not None:
                raise error(f"expected an element or a control card, got '{head.shown}'", head.key.pos)
            word = head.low
            if word.startswith("."):
                scope = self.card(word, tokens, line, scope)
            elif word[:1] in ELEMENT_KINDS:
                if "(" in line.text or ")" in line.text:
                    check_parens(line, head.text, TRANSIENT_FUNCTIONS if word[0] in "vi" else frozenset())
                scope.elements.append(tokens)
            elif word[:1] in UNSUPPORTED_ELEMENTS and self.spice:
                scope.elements.append(tokens)
            elif word[:1] in UNSUPPORTED_ELEMENTS:
                raise error(f"unsupported element '{head.text}' ({UNSUPPORTED_ELEMENTS[word[0]]}): "
                            "only R, D, V, I and X elements are modelled (--solver spice passes it to ngspice)",
                            head.pos)
            else:
                raise error(f"expected an element (R, D, V, I, X) or a control card, got '{head.text}'",
                            head.pos)
        if scope is not self.top:
            raise error(f"missing .ends for .subckt {scope.name}", scope.line.pos if scope.line else None)

    def card(self, word: str, tokens: list[Token], line: Line, scope: Scope) -> Scope:
        head = tokens[0]
        if word == ".subckt":
            if len(tokens) < 2 or tokens[1].key is not None:
                raise error(".subckt: expected a subcircuit name", head.pos)
            name = tokens[1].low
            sub = Scope(name, scope, line)
            in_params = False
            for tok in tokens[2:]:
                if tok.key is None and tok.low == "params:":
                    in_params = True
                elif tok.key is not None:
                    sub.defaults.append(tok)
                elif in_params:
                    raise error(f".subckt {name}: expected NAME=VALUE after params:, got '{tok.text}'", tok.pos)
                else:
                    sub.ports.append(tok)
            if name in scope.subckts:
                raise error(f"duplicate subcircuit '{name}'", tokens[1].pos)
            scope.subckts[name] = sub
            return sub
        if word == ".ends":
            if scope is self.top:
                raise error(".ends without a matching .subckt", head.pos)
            if len(tokens) > 1 and tokens[1].low != scope.name:
                raise error(f".ends {tokens[1].text} closes .subckt {scope.name}", tokens[1].pos)
            return scope.parent
        if word == ".model":
            if len(tokens) < 3 or tokens[1].key is not None or tokens[2].key is not None:
                raise error(".model: expected '.model NAME D (PARAM=VALUE ...)'", head.pos)
            name = tokens[1].low
            if name in scope.models or name in scope.spice_models:
                raise error(f"duplicate model '{name}'", tokens[1].pos)
            if tokens[2].low != "d" and self.spice:
                if scope is not self.top:
                    raise error(f"model '{name}': a model for ngspice alone belongs at the top level, not inside "
                                f".subckt {scope.name}", tokens[1].pos)
                scope.spice_models[name] = tokens
                return scope
            if tokens[2].low != "d":
                raise error(f"model '{name}': unsupported model type '{tokens[2].text}' "
                            "(only D diodes are modelled; --solver spice passes it to ngspice)", tokens[2].pos)
            if "(" in line.text or ")" in line.text:
                check_parens(line, f"model '{name}'", {tokens[2].low})
            for tok in tokens[3:]:
                if tok.key is None:
                    raise error(f"model '{name}': expected PARAM=VALUE, got '{tok.text}'", tok.pos)
            scope.models[name] = tokens
            return scope
        if word == ".param":
            for tok in tokens[1:]:
                if tok.key is None:
                    raise error(f".param: expected NAME=VALUE, got '{tok.text}'", tok.pos)
                if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", tok.key.text):
                    raise error(f".param: bad parameter name '{tok.key.text}'", tok.key.pos)
            scope.params.append(tokens)
            return scope
        if word in (".options", ".option", ".opt"):
            for tok in tokens[1:]:
                self.option(tok)
            return scope
        if word == ".temp":
            if len(tokens) != 2 or tokens[1].key is not None:
                raise error(".temp: expected one temperature in degC", head.pos)
            self.set_temperature("temperature", tokens[1])
            return scope
        if word == ".title":
            self.title = line.text.strip()[len(head.text):].strip()
            return scope
        if word == ".op" or word in OUTPUT_CARDS:
            return scope
        if word in ANALYSES:
            self.notes.add(head.pos, f"{word} is not run: only the DC operating point is computed")
            return scope
        if word in INITIAL_STATE_CARDS:
            self.notes.add(head.pos, f"{word} ignored: {INITIAL_STATE_CARDS[word]}")
            return scope
        raise error(f"unsupported control card {word}", head.pos)

    def option(self, tok: Token) -> None:
        """One `.options` item: gmin, temp and tnom are used; tolerances and the like do not move the
        operating point; options that would move it in a way not modelled are refused."""
        if tok.key is None:
            return
        key = tok.key.low
        if key == "gmin":
            value = number(tok, {}, "a conductance", ".options gmin")
            if not value >= 0:
                raise error(f".options gmin: expected a non-negative conductance, got '{tok.text}'", tok.pos)
            self.gmin = tok
        elif key in ("temp", "tnom"):
            self.set_temperature("temperature" if key == "temp" else "nominal", tok)
        elif key in REFUSED_OPTIONS:
            raise error(f".options {tok.key.text}: {REFUSED_OPTIONS[key]}", tok.key.pos)

    def set_temperature(self, which: str, tok: Token) -> None:
        label = ".temp" if tok.key is None else f".options {tok.key.low}"
        value = number(tok, {}, "a temperature in degC", label)
        if not value > ABSOLUTE_ZERO:
            raise error(f"{label}: {value!r} degC is not above absolute zero ({ABSOLUTE_ZERO} degC)", tok.pos)
        given = getattr(self, which)
        if given is not None and given[0] != value:
            first = given[1].pos
            raise error(f"{label}: the {'circuit' if which == 'temperature' else which} temperature is "
                        f"already {given[0]!r} degC "
                        f"(line {first.line}); give it once", tok.pos)
        setattr(self, which, (value, tok))
