"""Pass 3 of the netlist parser: the scope tree -> flat element lists, as ngspice expands it.

Subcircuits are expanded with ngspice's names (`r.x1.r1`, node `x1.mid`) and its parameter
rules: an instance's parameters (evaluated where the instance is written) take precedence
over the subcircuit's `params:` defaults and over its own `.param` cards. Diode models are
evaluated at the circuit temperature with ngspice's temperature law for IS and RS. The number
of elements is counted before anything is expanded, so that a subcircuit tree that would
expand to more than `max_elements` is refused at once instead of filling the memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from aeqprop_circuits.circuit.circuit import BOLTZMANN, CELSIUS_TO_KELVIN, CHARGE
from aeqprop_circuits.netlist.cards import UNSUPPORTED_ELEMENTS, Scope, Structure
from aeqprop_circuits.netlist.lexer import Pos, Run, Token, error, exact, number
from aeqprop_circuits.netlist.values import ExpressionError, parse_literal, reciprocal

MAX_SUBCIRCUIT_DEPTH = 64
# A node name cannot start a comment or an expression when written back after a space, nor hold a delimiter.
BAD_NODE_START = "{$;*+"
BAD_NODE_CHARACTERS = "{}'\"="
# Diode model parameters: the ones we use (IS, N, RS and their temperature law), the ones with
# no effect on the DC operating point (capacitances, transit time, noise, their temperature
# coefficients, safe-operating-area limits), and the ones we refuse because they change the DC
# current and we do not model them.
DIODE_DEFAULTS = {"is": 1e-14, "n": 1.0, "rs": 0.0, "eg": 1.11, "xti": 3.0, "trs1": 0.0, "trs2": 0.0}
DIODE_ALIASES = {"js": "is", "trs": "trs1"}
DIODE_IGNORED = {
    "cjo", "cj0", "cj", "vj", "pb", "m", "mj", "cjp", "cjsw", "php", "mjsw", "fc", "fcs", "tt",
    "kf", "af", "tm1", "tm2", "ttt1", "ttt2", "cta", "ctp", "tpb", "tphp", "tlev", "tlevc", "tcv",
    "fv_max", "bv_max", "id_max", "te_max", "pd_max",
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


def _sine_at_zero(args: list[float]) -> float:
    offset, amplitude = args[0], args[1] if len(args) > 1 else 0.0
    phase = args[5] if len(args) > 5 else 0.0
    return offset + amplitude * math.sin(math.radians(phase))


# A source given only a transient function has, at the DC operating point, the function's value
# at time 0 (ngspice's rule), for these functions: name -> (fewest arguments, value at t = 0).
VALUE_AT_TIME_ZERO = {
    "pulse": (1, lambda args: args[0]),
    "sin": (1, _sine_at_zero),
    "exp": (1, lambda args: args[0]),
    "pwl": (2, lambda args: args[1]),
}


# Elements passed through to ngspice (`spice=True`): how many nodes lead each kind's line, and what it is.
# A bipolar transistor's fourth node (the substrate) is optional: it is a node unless it names a model.
SPICE_NODES = {"c": 2, "l": 2, "d": 2, "m": 4, "j": 3, "z": 3, "q": 3, "e": 4, "g": 4, "b": 2, "f": 2, "h": 2,
               "s": 4, "w": 2}
SPICE_KINDS = {"c": "capacitor", "l": "inductor", "d": "diode", "m": "MOSFET", "j": "JFET", "z": "MESFET",
               "q": "bipolar transistor", "e": "voltage-controlled voltage source",
               "g": "voltage-controlled current source", "b": "behavioural source",
               "f": "current-controlled current source", "h": "current-controlled voltage source",
               "s": "voltage-controlled switch", "w": "current-controlled switch"}
# Inside a subcircuit, only lines whose nodes lead and whose rest names no node or element can be renamed.
SPICE_IN_SUBCIRCUITS = frozenset("cldmjzqeg")


@dataclass
class Model:
    saturation_current: float  # A, at the circuit temperature
    emission: float
    series_resistance: float  # ohm, at the circuit temperature


def count_elements(scope: Scope, counts: dict[int, int], stack: tuple[Scope, ...] = ()) -> int:
    """Elements `scope` expands to (a diode's series resistor not counted), without expanding it.

    Unknown or recursive subcircuits count 0: expanding them reports the error with its line.
    """
    known = counts.get(id(scope))
    if known is not None:
        return known
    total = 0
    for tokens in scope.elements:
        total += instance_size(scope, tokens, counts, stack) if tokens[0].text[0] in "xX" else 1
    counts[id(scope)] = total
    return total


def instance_size(scope: Scope, tokens: list[Token], counts: dict[int, int], stack: tuple[Scope, ...]) -> int:
    positional = [t for t in tokens[1:] if t.key is None and t.low != "params:"]
    sub = scope.find_subckt(positional[-1].low) if positional else None
    if sub is None or sub in stack or len(stack) >= MAX_SUBCIRCUIT_DEPTH:
        return 0
    return count_elements(sub, counts, (*stack, sub))


class Flattener:
    """Expand subcircuits into flat element lists with ngspice's names; remember where nodes are first used."""

    def __init__(self, structure: Structure, ideal_models: set[str], node_order: list[Token],
                 temperature: float, nominal: float):
        self.structure = structure
        self.ideal_models = ideal_models
        self.temperature, self.nominal = temperature, nominal  # degC
        self.node_names = ["0"]
        self.node_index = {"0": 0}
        self.internal = [False]
        self.node_pos: list[Pos | None] = [None]
        for tok in node_order:
            name = "0" if tok.low in ("0", "gnd") else tok.low
            if name == "0":
                continue
            if name in self.node_index:
                raise error(f"nodes: node '{tok.text}' listed twice", tok.pos)
            self.node(name)
        self.unplaced = set(range(1, len(self.node_names)))  # listed by *@ nodes, not yet used
        self.elements: dict[str, Token] = {}
        self.r_names: list[str] = []
        self.r_nodes: list[tuple[int, int]] = []
        self.r_g: list[float] = []
        self.r_head: list[Token] = []
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
        self.s_pos: list[Pos] = []
        self.model_cache: dict[tuple[int, int], tuple[dict, Model]] = {}
        self.used_models: set[int] = set()
        self.x_names: list[str] = []  # elements for ngspice alone (structure.spice)
        self.x_kinds: list[str] = []
        self.x_nodes: list[tuple[int, ...]] = []
        self.x_lines: list[str] = []
        self.x_models: dict[str, str] = {}  # the model cards those lines use, by name

    def node(self, name: str, pos: Pos | None = None) -> int:
        index = self.node_index.get(name)
        return self.new_node(name, pos) if index is None else index

    def new_node(self, name: str, pos: Pos | None) -> int:
        index = len(self.node_names)
        self.node_index[name] = index
        self.node_names.append(name)
        self.internal.append("#" in name)
        self.node_pos.append(pos)  # where it is first used: the start of that card
        return index

    def check_size(self, top: Scope, limit: int) -> None:
        """Refuse, before expanding anything, a netlist that expands to more than `limit` elements."""
        counts: dict[int, int] = {}
        total = 0
        for tokens in top.elements:
            if isinstance(tokens, Run):  # plain resistor lines read in a batch: one element a line
                size = len(tokens)
                head = tokens.head(limit - total) if total + size > limit else None
            else:
                size = instance_size(top, tokens, counts, (top,)) if tokens[0].text[0] in "xX" else 1
                head = tokens[0]
            total += size
            if total > limit:
                hint = "raise the limit with max_elements= (aeqprop check/solve --max-elements)"
                if size > 1 and not isinstance(tokens, Run):  # an instance, not a batch of lines
                    raise error(f"{head.text}: this instance expands to {size:,} elements, which takes the netlist "
                                f"past the limit of {limit:,} elements; {hint}", head.pos)
                raise error(f"the netlist has more than the limit of {limit:,} elements; {hint}", head.pos)

    def expand(self, scope: Scope, path: str, env: dict[str, float], ports: dict[str, str],
               stack: tuple[Scope, ...], given: frozenset[str] = frozenset()) -> None:
        env = dict(env)
        for card in scope.params:
            for tok in card[1:]:
                if tok.key.low not in given:  # an instance's value takes precedence (ngspice)
                    env[tok.key.low] = number(tok, env, "a parameter value", f".param {tok.key.text}")
        for tokens in scope.elements:
            head = tokens[0]
            local = head.low
            full = f"{local[0]}.{path}.{local}" if path else local
            if full in self.elements:
                first = self.elements[full].pos
                raise error(f"duplicate element name '{full}' (first defined at "
                            f"{first.file}:{first.line})", head.pos)
            self.elements[full] = head

            def node(tok: Token, what: str = "a node name", owner: str = head.text) -> int:
                if tok.key is not None or not tok.text or tok.text[0] in BAD_NODE_START \
                        or any(c in tok.text for c in BAD_NODE_CHARACTERS):
                    raise error(f"{owner}: expected {what}, got '{tok.shown}'", tok.pos)
                name = tok.low
                if name in ("0", "gnd"):
                    return 0
                if path:
                    name = ports.get(name, f"{path}.{name}")
                index = self.node_index.get(name)
                if index is None:
                    return self.new_node(name, tok.line.pos)
                if self.unplaced and index in self.unplaced:
                    self.unplaced.discard(index)
                    self.node_pos[index] = tok.line.pos
                return index

            kind = local[0]
            if kind == "r":
                self.resistor(tokens, full, node, env)
            elif kind == "d" and self.spice_diode(tokens, scope):
                self.spice_element(tokens, full, node, path, scope, self.spice_diode(tokens, scope))
            elif kind == "d":
                self.diode(tokens, full, node, env, scope)
            elif kind in "vi":
                self.source(tokens, full, node, env)
            elif kind == "x":
                self.instance(tokens, path, node, env, scope, stack)
            else:
                self.spice_element(tokens, full, node, path, scope, SPICE_KINDS.get(kind, ""))

    @staticmethod
    def positional(tokens: list[Token], count: int, usage: str) -> None:
        got = [t for t in tokens[1:count + 1] if t.key is None]
        if len(tokens) <= count or len(got) < count:
            raise error(f"{tokens[0].text}: expected '{usage}', got {len(got)} item(s) after the name",
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
                    raise error(f"{head.text}: expected '{usage}', got an extra '{tok.shown}'", tok.pos)
                value_tok = tok
            elif key in ("ac", "noisy"):
                continue
            else:
                raise error(f"{head.text}: resistor parameter '{tok.key.text}' is not supported", tok.key.pos)
        if value_tok is None:
            raise error(f"{head.text}: expected a resistance value after the two nodes", head.pos)
        value = exact(value_tok, env, "a resistance value", head.text)
        if isinstance(value, Decimal):
            if value <= 0:
                raise error(f"{head.text}: resistance must be positive, got '{value_tok.text}'", value_tok.pos)
            try:
                conductance = reciprocal(value)
            except ExpressionError as exc:
                raise error(f"{head.text}: resistance '{value_tok.text}': {exc}", value_tok.pos) from None
        else:
            if value <= 0:
                raise error(f"{head.text}: resistance must be positive, got {value!r} from "
                            f"'{value_tok.text}'", value_tok.pos)
            conductance = 1.0 / value
        if not (math.isfinite(conductance) and conductance > 0):
            raise error(f"{head.text}: resistance '{value_tok.text}' is out of range", value_tok.pos)
        self.add_resistor(full, (a, b), conductance, head)

    def add_resistor(self, name, nodes, conductance, head: Token) -> None:
        self.r_names.append(name)
        self.r_nodes.append(nodes)
        self.r_g.append(conductance)
        self.r_head.append(head)

    def model(self, tokens: list[Token], env: dict[str, float]) -> Model:
        """A diode model at the circuit temperature: IS(T) = IS exp((T/Tnom - 1) EG/(N Vt) + XTI/N ln(T/Tnom)),
        Vt = kT/q, and RS(T) = RS (1 + TRS1 dT + TRS2 dT^2), as ngspice's diode computes them."""
        key = (id(tokens), id(env))
        if key in self.model_cache:
            return self.model_cache[key][1]
        name = tokens[1].low
        owner = f"model '{name}'"
        values = dict(DIODE_DEFAULTS)
        nominal = self.nominal
        for tok in tokens[3:]:
            param = DIODE_ALIASES.get(tok.key.low, tok.key.low)
            if param in DIODE_DEFAULTS:
                values[param] = number(tok, env, f"a value for {tok.key.text.upper()}", owner)
            elif param == "tnom":
                nominal = number(tok, env, "a temperature in degC", owner)
            elif param == "level":
                if number(tok, env, "a level", owner) != 1:
                    raise error(f"{owner}: only LEVEL=1 diodes are modelled", tok.key.pos)
            elif param in DIODE_REFUSED:
                raise error(f"{owner}: {tok.key.text}: {DIODE_REFUSED[param]} (--solver spice passes its diodes to "
                            "ngspice)", tok.key.pos)
            elif param in DIODE_IGNORED:
                number(tok, env, f"a value for {param.upper()}", owner)
            else:
                raise error(f"{owner}: unknown diode parameter '{tok.key.text}'", tok.key.pos)
        if not values["is"] > 0:
            raise error(f"{owner}: IS must be positive, got {values['is']!r}", tokens[1].pos)
        if not values["n"] > 0:
            raise error(f"{owner}: N must be positive, got {values['n']!r}", tokens[1].pos)
        if values["rs"] < 0:
            raise error(f"{owner}: RS must not be negative, got {values['rs']!r}", tokens[1].pos)
        saturation, resistance = values["is"], values["rs"]
        if self.temperature != nominal:
            temperature, reference = self.temperature + CELSIUS_TO_KELVIN, nominal + CELSIUS_TO_KELVIN
            if not reference > 0:
                raise error(f"{owner}: TNOM {nominal!r} degC is not above absolute zero", tokens[1].pos)
            ratio = temperature / reference
            nvt = values["n"] * (BOLTZMANN / CHARGE) * temperature
            saturation *= math.exp((ratio - 1) * values["eg"] / nvt + values["xti"] / values["n"] * math.log(ratio))
            dt = temperature - reference
            resistance *= 1 + values["trs1"] * dt + values["trs2"] * dt * dt
            if not (math.isfinite(saturation) and saturation > 0):
                raise error(f"{owner}: IS at {self.temperature!r} degC is out of range", tokens[1].pos)
            if resistance < 0:
                raise error(f"{owner}: RS at {self.temperature!r} degC is negative (TRS1, TRS2)", tokens[1].pos)
        model = Model(saturation, values["n"], resistance)
        self.model_cache[key] = (env, model)
        self.used_models.add(id(tokens))
        return model

    def spice_diode(self, tokens: list[Token], scope: Scope) -> str:
        """What makes a diode ngspice's alone ("diode with BV, IBV"), or '': its model's parameters not modelled here.

        Only when the netlist is parsed for ngspice (`structure.spice`).
        """
        if not self.structure.spice or len(tokens) < 4:
            return ""
        card = scope.find_model(tokens[3].low)
        if card is None or tokens[3].low in self.ideal_models:
            return ""
        others = [tok.key.text.upper() for tok in card[3:] if tok.key is not None and (
            DIODE_ALIASES.get(tok.key.low, tok.key.low) not in (*DIODE_DEFAULTS, *DIODE_IGNORED, "tnom", "level")
            or tok.key.low == "level" and tok.text.strip() not in ("1", "1.0"))]
        return f"diode with {', '.join(others)}" if others else ""

    def spice_element(self, tokens: list[Token], full: str, node, path: str, scope: Scope, kind: str) -> None:
        """An element kept as SPICE text for ngspice: its nodes registered, its line renamed inside subcircuits."""
        head = tokens[0]
        letter = head.low[0]
        if letter not in SPICE_NODES:
            raise error(f"unsupported element '{head.text}' ({UNSUPPORTED_ELEMENTS[letter]}): not passed to ngspice "
                        "either (passed: " + ", ".join(sorted(SPICE_KINDS.values())) + ")", head.pos)
        count = SPICE_NODES[letter]
        words = [t for t in tokens[1:] if t.key is None]
        if letter == "q" and len(words) > 4 and not self.spice_model(words[3].low):
            count = 4
        if len(words) < count:
            raise error(f"{head.text}: expected {count} nodes after the name of a {kind}", head.pos)
        node_tokens = words[:count]
        nodes = tuple(node(tok) for tok in node_tokens)
        text = head.line.text
        if path:
            last = node_tokens[-1]
            rest = text[last.offset + len(last.text):]
            if letter not in SPICE_IN_SUBCIRCUITS or any(c in rest for c in "{}()'"):
                raise error(f"{head.text}: a {kind} inside a .subckt is passed to ngspice only when its line is "
                            "nodes, a model or value and NAME=VALUE numbers; write it at the top level", head.pos)
            text = " ".join([full] + [self.node_names[k] for k in nodes]) + rest
        for tok in words[count:]:
            card = self.spice_model(tok.low)
            if card is not None:
                self.x_models.setdefault(tok.low, card[0].line.text)
            elif scope.find_model(tok.low) is not None:
                raise error(f"{head.text}: model '{tok.text}' is defined inside a .subckt; for ngspice alone it "
                            "must be defined at the top level", tok.pos)
        self.x_names.append(full)
        self.x_kinds.append(kind)
        self.x_nodes.append(nodes)
        self.x_lines.append(text)

    def spice_model(self, name: str) -> list[Token] | None:
        """A top-level model card an element passed to ngspice may use (any type), or None."""
        top = self.structure.top
        return top.spice_models.get(name) or top.models.get(name)

    def diode(self, tokens, full, node, env, scope: Scope) -> None:
        head = tokens[0]
        usage = f"{head.text} anode cathode model"
        self.positional(tokens, 3, usage)
        a, c = node(tokens[1]), node(tokens[2])
        model_name = tokens[3].low
        card = scope.find_model(model_name)
        if card is None:
            raise error(f"{head.text}: unknown model '{tokens[3].text}'", tokens[3].pos)
        model = self.model(card, env)
        area, multiplier = 1.0, 1.0
        seen_area = False
        for tok in tokens[4:]:
            key = tok.key.low if tok.key else None
            if key is None and tok.low == "off":
                continue
            if key is None and not seen_area:
                area = number(tok, env, "an area factor or OFF", head.text)
                seen_area = True
            elif key == "area":
                area = number(tok, env, "an area factor", head.text)
            elif key == "m":
                multiplier = number(tok, env, "a multiplier", head.text)
            elif key is None:
                raise error(f"{head.text}: expected '{usage} [area] [off] [m=...]', got an extra "
                            f"'{tok.text}'", tok.pos)
            else:
                raise error(f"{head.text}: diode parameter '{tok.key.text}' is not supported", tok.key.pos)
        scale = area * multiplier
        if not (math.isfinite(scale) and scale > 0):
            raise error(f"{head.text}: area and m must be positive, got area={area!r} m={multiplier!r}", head.pos)
        if model_name in self.ideal_models:
            self.i_names.append(full)
            self.i_nodes.append((a, c))
            return
        saturation = model.saturation_current * scale
        if not (math.isfinite(saturation) and saturation > 0):
            raise error(f"{head.text}: IS * area out of range", head.pos)
        if model.series_resistance > 0:
            junction = self.node(f"{full}#rs", head.pos)
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
        value: float | None = None  # the DC value
        at_zero: float | None = None  # a transient function's value at time 0
        function: Token | None = None
        rest = tokens[3:]
        i = 0
        while i < len(rest):
            tok = rest[i]
            word = tok.low
            if tok.key is not None:
                if tok.key.low == "dc":  # ngspice's `dc=value`
                    if value is not None:
                        raise error(f"{head.text}: DC value given twice", tok.key.pos)
                    value = number(tok, env, what, head.text)
                elif tok.key.low == "ac":
                    number(tok, env, "an AC magnitude", head.text)
                else:
                    raise error(f"{head.text}: unexpected '{tok.shown}' (expected '{usage}')", tok.key.pos)
                i += 1
            elif word == "dc":
                if i + 1 >= len(rest) or rest[i + 1].key is not None:
                    raise error(f"{head.text}: expected {what} after DC", tok.pos)
                if value is not None:
                    raise error(f"{head.text}: DC value given twice", tok.pos)
                value = number(rest[i + 1], env, what, head.text)
                i += 2
            elif word == "ac":
                i += 1
                for _ in range(2):  # magnitude and phase, both optional; no effect at DC
                    if i < len(rest) and _is_number(rest[i]):
                        i += 1
            elif word in VALUE_AT_TIME_ZERO or word in ("sffm", "am", "trnoise", "trrandom", "distof1", "distof2"):
                if function is not None:
                    raise error(f"{head.text}: a second source function '{tok.text}'", tok.pos)
                function, i = tok, i + 1
                args = []
                while i < len(rest) and _is_number(rest[i]):
                    args.append(number(rest[i], env, f"an argument of {word.upper()}", head.text))
                    i += 1
                fewest, at_time_zero = VALUE_AT_TIME_ZERO.get(word, (None, None))
                if at_time_zero is not None and len(args) >= fewest:
                    at_zero = at_time_zero(args)
            elif value is None:
                value = number(tok, env, what, head.text)
                i += 1
            else:
                raise error(f"{head.text}: unexpected '{tok.text}' (expected '{usage}')", tok.pos)
        if value is None and function is not None:
            if at_zero is None:
                raise error(f"{head.text}: the DC operating point needs the value of {function.text.upper()} at "
                            f"time 0, which is not computed here: give a DC value (DC 0 {function.text}(...))",
                            function.pos)
            value = at_zero
        self.s_names.append(full)
        self.s_nodes.append((a, b))
        self.s_value.append(0.0 if value is None else value)
        self.s_voltage.append(full[0] == "v")
        self.s_pos.append(head.pos)

    def instance(self, tokens, path, node, env, scope: Scope, stack) -> None:
        head = tokens[0]
        positional = [t for t in tokens[1:] if t.key is None and t.low != "params:"]
        overrides = [t for t in tokens[1:] if t.key is not None]
        if not positional:
            raise error(f"{head.text}: expected '{head.text} node ... subcircuit [NAME=VALUE ...]'", head.pos)
        name_tok = positional[-1]
        sub = scope.find_subckt(name_tok.low)
        if sub is None:
            raise error(f"{head.text}: unknown subcircuit '{name_tok.text}'", name_tok.pos)
        nodes = positional[:-1]
        if len(nodes) != len(sub.ports):
            raise error(f"{head.text}: subcircuit '{sub.name}' has {len(sub.ports)} port(s), "
                        f"got {len(nodes)} node(s)", head.pos)
        if sub in stack:
            raise error(f"{head.text}: subcircuit '{sub.name}' instantiates itself", head.pos)
        if len(stack) >= MAX_SUBCIRCUIT_DEPTH:
            raise error(f"{head.text}: subcircuits nested deeper than {MAX_SUBCIRCUIT_DEPTH}", head.pos)
        port_map: dict[str, str] = {}
        for port, tok in zip(sub.ports, nodes):
            if port.low in ("0", "gnd"):
                raise error(f".subckt {sub.name}: ground cannot be a port", port.pos)
            if port.low in port_map:
                raise error(f".subckt {sub.name}: port '{port.text}' listed twice", port.pos)
            port_map[port.low] = self.node_names[node(tok)]
        names = sub.parameter_names()
        given: dict[str, float] = {}
        for tok in overrides:  # evaluated where the instance is written
            if tok.key.low not in names:
                raise error(f"{head.text}: subcircuit '{sub.name}' has no parameter '{tok.key.text}'", tok.key.pos)
            given[tok.key.low] = number(tok, env, "a parameter value", head.text)
        inner = dict(env)
        for tok in sub.defaults:
            value = given.get(tok.key.low)
            inner[tok.key.low] = value if value is not None else number(
                tok, inner, "a parameter value", f".subckt {sub.name}")
        inner.update(given)
        local = head.low
        self.expand(sub, f"{path}.{local}" if path else local, inner, port_map, (*stack, sub), frozenset(given))


def _is_number(tok: Token) -> bool:
    return tok.key is None and (tok.text.startswith("{") or parse_literal(tok.text) is not None)
