"""Numbers and expressions of SPICE netlists: engineering suffixes and safe `{expr}` arithmetic.

Literal numbers are read exactly (as `Decimal`), so that a resistance written with enough
digits gives back the very conductance (S) it was written from: the writer relies on this
for exact round trips. Expressions are evaluated by a small recursive-descent parser over
floats; nothing is ever handed to Python's `eval`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal, DecimalException

# Engineering suffixes, case-insensitive; longest first ("meg" and "mil" before "m").
SUFFIXES: tuple[tuple[str, str], ...] = (
    ("meg", "1e6"), ("mil", "25.4e-6"),
    ("t", "1e12"), ("g", "1e9"), ("k", "1e3"), ("m", "1e-3"),
    ("u", "1e-6"), ("n", "1e-9"), ("p", "1e-12"), ("f", "1e-15"),
)
# Unit words written after a number and its suffix, ignored as ngspice ignores them. Any other
# letters are refused, so that typos such as `1kk` or `1farad` (femto!) do not pass silently.
UNITS = frozenset({"", "ohm", "ohms", "v", "volt", "volts", "a", "amp", "amps", "f", "farad", "farads", "h",
                   "henry", "s", "sec", "hz", "w", "mho", "siemens"})
_LITERAL = re.compile(r"([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)([a-zA-Z_]*)")
_PRECISION = 40  # decimal digits for exact reciprocals (a double needs 17)
MAX_NESTING = 40  # parentheses / unary operators / calls in one expression
# Wide enough that no SPICE number overflows it (overflow shows up as inf when converted).
_EXACT = Context(prec=_PRECISION, Emax=MAX_EMAX, Emin=MIN_EMIN)
_SHORT = Context(prec=25, Emax=MAX_EMAX, Emin=MIN_EMIN)
_ONE = Decimal(1)
_SCALES = {suffix: Decimal(scale) for suffix, scale in SUFFIXES}


class ExpressionError(Exception):
    """A bad number or expression; `offset` is the character offset of the fault in the text."""

    def __init__(self, message: str, offset: int = 0):
        super().__init__(message)
        self.offset = offset


def split_literal(text: str) -> tuple[str, str, str] | None:
    """'1.5kOhm' -> ('1.5', 'k', 'ohm'): mantissa, scale suffix, unit (lower case); None if not a number
    followed by letters."""
    match = _LITERAL.fullmatch(text)
    if match is None:
        return None
    mantissa, letters = match.groups()
    letters = letters.lower()
    for suffix, _ in SUFFIXES:
        if letters.startswith(suffix):
            return mantissa, suffix, letters[len(suffix):]
    return mantissa, "", letters


def parse_literal(text: str) -> Decimal | None:
    """'1.5k' -> Decimal('1500'); None if `text` is not a SPICE number.

    A number, then optionally an engineering suffix (f p n u m k meg g t mil, any case),
    then optionally a unit that is ignored (`1kOhm`, `10uA`, `3V`; see UNITS). Other letters
    (`1kk`) and digits after the letters (`1k5`) are refused: ngspice reads both as 1k,
    which is rarely what was meant.
    """
    match = _LITERAL.fullmatch(text)
    if match is None:
        return None
    mantissa, letters = match.groups()
    if not letters:
        return Decimal(mantissa)
    letters = letters.lower()
    for suffix, _ in SUFFIXES:
        if letters.startswith(suffix):
            if letters[len(suffix):] not in UNITS:
                return None
            return _EXACT.multiply(Decimal(mantissa), _SCALES[suffix])
    return Decimal(mantissa) if letters in UNITS else None


def decimal_to_float(value: Decimal) -> float:
    """The nearest float, or ExpressionError if it is not a finite float."""
    try:
        result = float(value)
    except (DecimalException, ValueError, OverflowError) as exc:  # pragma: no cover - defensive
        raise ExpressionError(f"number {value} out of range") from exc
    if not math.isfinite(result):
        raise ExpressionError("number out of range")
    return result


def reciprocal(value: Decimal) -> float:
    """1 / value correctly rounded to a float (used for resistance -> conductance)."""
    return decimal_to_float(_EXACT.divide(_ONE, value))


def resistance_text(conductance: float) -> str:
    """A resistance (ohm) string that `reciprocal(parse_literal(...))` maps back to exactly `conductance`.

    Round values stay readable ('100000' rather than '99999.99999999999'); the shortest
    float repr of 1/g works for about four values in five; the others get the exact quotient
    to 25 significant digits, which always does.
    """
    resistance = 1.0 / conductance
    for text in (f"{resistance:.15g}", repr(resistance)):
        if reciprocal(Decimal(text)) == conductance:
            return text
    return str(_SHORT.divide(_ONE, Decimal(conductance)))


def _check(value: float, offset: int) -> float:
    if not math.isfinite(value):
        raise ExpressionError("expression overflows", offset)
    return value


def _log(x: float) -> float:
    if x <= 0:
        raise ValueError("log of a non-positive number")
    return math.log(x)


def _log10(x: float) -> float:
    if x <= 0:
        raise ValueError("log10 of a non-positive number")
    return math.log10(x)


def _sqrt(x: float) -> float:
    if x < 0:
        raise ValueError("sqrt of a negative number")
    return math.sqrt(x)


FUNCTIONS: dict[str, tuple[int, int, Callable[..., float]]] = {
    # name: (min args, max args, function)
    "sqrt": (1, 1, _sqrt),
    "exp": (1, 1, math.exp),
    "log": (1, 1, _log),  # natural logarithm, as in ngspice
    "ln": (1, 1, _log),
    "log10": (1, 1, _log10),
    "abs": (1, 1, abs),
    "min": (1, 64, min),
    "max": (1, 64, max),
    "pow": (2, 2, math.pow),
}

_TOKEN = re.compile(
    r"\s*(?:(?P<num>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?[a-zA-Z_]*)"
    r"|(?P<name>[a-zA-Z_][a-zA-Z0-9_]*)|(?P<op>\*\*|[-+*/^(),]))"
)


def evaluate(text: str, params: Mapping[str, float]) -> float:
    """Value of an arithmetic expression over numbers (with suffixes) and parameters.

    Grammar: + - * / ** ^ (power, right-associative), unary + -, parentheses, and the
    functions sqrt exp log ln log10 abs min max pow. Parameter names are case-insensitive.
    """
    return _Expression(text, params).run()


class _Expression:
    def __init__(self, text: str, params: Mapping[str, float]):
        self.text, self.params = text, params
        self.tokens: list[tuple[str, str, int]] = []  # (kind, text, offset)
        pos = 0
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if match is None or match.end() == pos:
                if text[pos:].strip() == "":
                    break
                bad = pos + len(text[pos:]) - len(text[pos:].lstrip())
                raise ExpressionError(f"unexpected character '{text[bad]}' in expression", bad)
            kind = match.lastgroup
            self.tokens.append((kind, match.group(kind), match.start(kind)))
            pos = match.end()
        self.index = 0
        self.depth = 0

    def run(self) -> float:
        if not self.tokens:
            raise ExpressionError("empty expression", 0)
        try:
            value = self.sum()
        except (ValueError, OverflowError, ZeroDivisionError, TypeError) as exc:
            raise ExpressionError(f"cannot evaluate: {exc}", 0) from exc
        if self.index < len(self.tokens):
            _, tok, offset = self.tokens[self.index]
            raise ExpressionError(f"unexpected '{tok}' in expression", offset)
        return value

    def peek(self) -> tuple[str, str, int]:
        if self.index < len(self.tokens):
            return self.tokens[self.index]
        return ("end", "", len(self.text))

    def take(self) -> tuple[str, str, int]:
        token = self.peek()
        self.index += 1
        return token

    def expect(self, op: str) -> None:
        kind, tok, offset = self.take()
        if tok != op or kind != "op":
            got = f"'{tok}'" if tok else "the end"
            raise ExpressionError(f"expected '{op}' in expression, got {got}", offset)

    def nest(self, offset: int) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise ExpressionError("expression nested too deeply", offset)

    def sum(self) -> float:
        value = self.product()
        while self.peek()[1] in ("+", "-") and self.peek()[0] == "op":
            _, op, offset = self.take()
            rhs = self.product()
            value = _check(value + rhs if op == "+" else value - rhs, offset)
        return value

    def product(self) -> float:
        value = self.unary()
        while self.peek()[1] in ("*", "/") and self.peek()[0] == "op":
            _, op, offset = self.take()
            rhs = self.unary()
            if op == "/":
                if rhs == 0:
                    raise ExpressionError("division by zero", offset)
                value = _check(value / rhs, offset)
            else:
                value = _check(value * rhs, offset)
        return value

    def unary(self) -> float:
        kind, tok, offset = self.peek()
        if kind == "op" and tok in ("+", "-"):
            self.take()
            self.nest(offset)
            value = self.unary()
            self.depth -= 1
            return -value if tok == "-" else value
        return self.power()

    def power(self) -> float:
        base = self.atom()
        kind, tok, offset = self.peek()
        if kind == "op" and tok in ("**", "^"):
            self.take()
            self.nest(offset)
            exponent = self.unary()
            self.depth -= 1
            return _check(math.pow(base, exponent), offset)
        return base

    def atom(self) -> float:
        kind, tok, offset = self.take()
        if kind == "num":
            literal = parse_literal(tok)
            if literal is None:
                raise ExpressionError(f"bad number '{tok}'", offset)
            try:
                return decimal_to_float(literal)
            except ExpressionError as exc:
                raise ExpressionError(str(exc), offset) from exc
        if kind == "name":
            name = tok.lower()
            if self.peek()[1] == "(":
                return self.call(name, offset)
            if name not in self.params:
                raise ExpressionError(f"unknown parameter '{tok}'", offset)
            return self.params[name]
        if kind == "op" and tok == "(":
            self.nest(offset)
            value = self.sum()
            self.expect(")")
            self.depth -= 1
            return value
        got = f"'{tok}'" if tok else "the end"
        raise ExpressionError(f"expected a number, parameter or '(' in expression, got {got}", offset)

    def call(self, name: str, offset: int) -> float:
        if name not in FUNCTIONS:
            known = ", ".join(sorted(FUNCTIONS))
            raise ExpressionError(f"unknown function '{name}' (known: {known})", offset)
        low, high, function = FUNCTIONS[name]
        self.expect("(")
        self.nest(offset)
        args = [self.sum()]
        while self.peek()[1] == ",":
            self.take()
            args.append(self.sum())
        self.expect(")")
        self.depth -= 1
        if not low <= len(args) <= high:
            raise ExpressionError(f"{name}() takes {low}" + (f" to {high}" if high != low else "")
                                  + f" argument(s), got {len(args)}", offset)
        try:
            return _check(float(function(*args)), offset)
        except (ValueError, OverflowError) as exc:
            raise ExpressionError(f"{name}(): {exc}", offset) from exc
