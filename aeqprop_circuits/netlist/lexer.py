"""Pass 1 of the netlist parser: text -> logical lines -> tokens, with file, line and column kept.

Comments are stripped (`*` lines, `;` anywhere, `$` starting a word), `+` continuations
joined, `.include` files spliced in place and `.control ... .endc` blocks (ngspice's scripts,
which only run analyses) skipped. Positions are computed only when an error or a warning needs
them, so that a 10^6-line netlist reads fast.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aeqprop_circuits.errors import NetlistError
from aeqprop_circuits.netlist.values import ExpressionError, decimal_to_float, evaluate, parse_literal, split_literal

MAX_INCLUDE_DEPTH = 32


@dataclass(frozen=True)
class Pos:
    file: str
    line: int
    column: int


def error(message: str, pos: Pos | None, file: str = "<string>") -> NetlistError:
    if pos is None:
        return NetlistError(message, file)
    return NetlistError(message, pos.file, pos.line, pos.column)


class Notes(list):
    """Warnings found while reading: (position, message) pairs, issued once the netlist is accepted."""

    def add(self, pos: Pos, message: str) -> None:
        self.append((pos, message))


class Token:
    """A word of a logical line; its position is computed only when an error needs it."""

    __slots__ = ("text", "line", "offset", "key")

    def __init__(self, text: str, line: Line, offset: int, key: Token | None = None):
        self.text = text  # as written
        self.line, self.offset = line, offset
        self.key = key  # for `key=value` tokens: the key; `text` is then the value

    @property
    def pos(self) -> Pos:
        return self.line.at(self.offset)

    @property
    def low(self) -> str:
        return self.text.lower()

    @property
    def shown(self) -> str:
        return f"{self.key.text}={self.text}" if self.key else self.text


@dataclass
class Line:
    """A logical line: continuations joined, comments stripped, positions kept per segment."""

    text: str
    segments: list[tuple[int, Pos]]  # (offset in text, position of that character)
    annotation: bool = False

    @property
    def pos(self) -> Pos:
        return self.segments[0][1]

    def at(self, offset: int) -> Pos:
        start, pos = self.segments[0]
        if len(self.segments) == 1:
            return Pos(pos.file, pos.line, pos.column + offset)
        for seg_start, seg_pos in self.segments:
            if seg_start <= offset:
                start, pos = seg_start, seg_pos
        return Pos(pos.file, pos.line, pos.column + offset - start)

    def extend(self, text: str, pos: Pos) -> None:
        self.text += " "
        self.segments.append((len(self.text), pos))
        self.text += text


def strip_comment(text: str) -> str:
    """Cut `;` comments anywhere and `$` comments that start a word (ngspice's rules)."""
    cut = text.find(";")
    if cut >= 0:
        text = text[:cut]
    if "$" in text:
        for match in re.finditer(r"(^|\s)\$", text):
            return text[: match.start()]
    return text


def _first_word(text: str) -> str:
    words = text.split(None, 1)
    return words[0].lower() if words else ""


# ------------------------------------------------------------------ plain resistor lines in batches

# A plain resistor line, `Rname n+ n- value` with an optional trailing comment: what the full path
# reads as exactly four words, an element name starting with R, two valid node names and a
# literal number (its letters are checked against the suffixes and units in `Run`). Anything
# else (other whitespace, quotes, braces, parentheses, '=', continuation lines) goes the full way.
_WORD = r"[A-Za-z0-9_.:#\-\[\]<>!%&/|@^~?]"
_PLAIN_R = (r"[ \t]*([rR]" + _WORD + r"*)[ \t]+(" + _WORD + r"+)[ \t]+(" + _WORD + r"+)[ \t]+"
            r"([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?([a-zA-Z]*)"
            r"[ \t]*(?:;[^\n]*|(?<=[ \t])\$[^\n]*)?\r*")
# One match per physical line (`^...$` in multi-line mode): a plain line's fields, or empty groups.
_LINES = re.compile(r"^(?:" + _PLAIN_R + r"|[^\n]*)$", re.M | re.A)
BATCH = True  # read runs of plain resistor lines in batches (`Run`); False: every line the full way


class Run:
    """Consecutive plain resistor lines of one file, read in one batch instead of line by line.

    Holds what the full path would read from them (lower-cased names and nodes, the value's
    parts) and the physical lines themselves: `lines()` gives back the very `Line`s the full
    path makes, for whatever the batch path does not take on (a duplicate name, a bad value, a
    run inside a .subckt), so that errors and results are the full path's.
    """

    annotation = False

    def __init__(self, file: str, first: int, raw: list[str], fields: list[tuple[str, ...]]):
        self.file, self.first, self.raw = file, first, raw  # first: line number of raw[0]
        self.fields = fields  # per line, lower case: name, n+, n-, sign, integer, fraction, exponent, letters
        self.names = [f[0] for f in fields]
        self.r_start = 0  # index of its first resistor in the flat resistor list, once added

    def __len__(self) -> int:
        return len(self.raw)

    def lines(self) -> list[Line]:
        return [Line(strip_comment(raw), [(0, Pos(self.file, self.first + k, 1))]) for k, raw in enumerate(self.raw)]

    def line(self, k: int) -> Line:
        return Line(strip_comment(self.raw[k]), [(0, Pos(self.file, self.first + k, 1))])

    def head(self, k: int) -> Token:
        """The name token of line k, as the full path makes it (for error positions)."""
        return tokenize(self.line(k))[0]

    def head_of(self, name: str) -> Token:
        return self.head(self.names.index(name))


def _skipped(stripped: str, raw: str) -> bool:
    """Whether read_lines passes over this physical line without starting or ending a logical line."""
    return not stripped or stripped.startswith("*") or not strip_comment(raw).strip()


def _runs(text: str, physical: list[str], start: int) -> dict[int, tuple[int, list]]:
    """Plain resistor runs by the physical index they start at: (number of lines, fields per line).

    A run's last line is left out when a continuation line ('+', after skipped lines) follows it.
    """
    # Names, nodes and suffixes are read in lower case, as SPICE reads them; the lines themselves keep
    # their case for messages. (Only ASCII text is lowered whole: lower() maps some other letters to ASCII.)
    ascii_text = text.isascii()
    fields = _LINES.findall(text.lower() if ascii_text else text)
    if len(fields) != len(physical):  # pragma: no cover - one match per line, by construction
        return {}
    plain = np.array([bool(f[0]) for f in fields])
    plain[:start] = False
    edges = np.flatnonzero(np.diff(np.r_[0, plain.view(np.int8), 0]))
    found: dict[int, tuple[int, list]] = {}
    for first, stop in zip(edges[::2].tolist(), edges[1::2].tolist()):
        after = stop
        while after < len(physical):
            raw = physical[after].rstrip("\r")
            stripped = raw.lstrip()
            if not _skipped(stripped, raw):
                if stripped.startswith("+"):
                    stop -= 1
                break
            after += 1
        if stop > first:
            run = fields[first:stop]
            found[first] = (stop - first, run if ascii_text else [tuple(x.lower() for x in f) for f in run])
    return found


def read_lines(text: str, file: str, top: bool, notes: Notes) -> tuple[str | None, list[Line | Run]]:
    """Title (top-level file only) and logical lines of one file (no include splicing yet)."""
    physical = text.split("\n")
    title = None
    start = 0
    if top:
        title = physical[0].strip() if physical else ""
        start = 1
        if title.startswith("*@"):
            notes.add(Pos(file, 1, 1), "the first line of a netlist is its title, so this '*@' annotation is "
                                       "not read: put a title line first")
    runs = _runs(text, physical, start) if BATCH else {}
    lines: list[Line | Run] = []
    current: Line | None = None
    control: Pos | None = None  # inside a .control block opened here
    index = start - 1
    while index + 1 < len(physical):
        index += 1
        if index in runs and control is None:
            count, fields = runs[index]
            lines.append(Run(file, index + 1, physical[index:index + count], fields))
            current = None  # no continuation line follows a run (`_runs`)
            index += count - 1
            continue
        raw = physical[index].rstrip("\r")
        stripped = raw.lstrip()
        if not stripped:
            continue
        indent = len(raw) - len(stripped)
        number = index + 1
        if control is not None:
            if _first_word(stripped) == ".endc":
                control = None
            continue
        if stripped.startswith("*"):
            if stripped.startswith("*@"):
                lines.append(Line(stripped[2:], [(0, Pos(file, number, indent + 3))], annotation=True))
            continue
        body = strip_comment(raw)
        if not body.strip():
            continue
        if stripped.startswith("+"):
            if current is None:
                raise error("continuation line '+' with no line before it to continue",
                            Pos(file, number, indent + 1))
            current.extend(body[indent + 1:], Pos(file, number, indent + 2))
            continue
        if stripped[0] == ".":
            word = _first_word(stripped)
            if word == ".end":
                break
            if word == ".control":
                control = Pos(file, number, indent + 1)
                notes.add(control, ".control block skipped: only the DC operating point is computed")
                current = None
                continue
            if word == ".endc":
                raise error(".endc without a .control before it", Pos(file, number, indent + 1))
        current = Line(body, [(0, Pos(file, number, 1))])
        lines.append(current)
    if control is not None:
        raise error("missing .endc for this .control block", control)
    return title, lines


def decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


class Reader:
    """Files -> logical lines, `.include` spliced in place."""

    def __init__(self, notes: Notes):
        self.title = ""
        self.lines: list[Line | Run] = []
        self.notes = notes

    def read(self, text: str, file: str, directory: Path, stack: tuple[str, ...], top: bool) -> None:
        title, lines = read_lines(text, file, top, self.notes)
        if top:
            self.title = title or ""
        for line in lines:
            if isinstance(line, Run):
                self.lines.append(line)
                continue
            words = line.text.split()
            if not line.annotation and words and words[0].lower() in (".include", ".inc"):
                self.include(line, words[0], directory, stack)
            else:
                self.lines.append(line)

    def include(self, line: Line, keyword: str, directory: Path, stack: tuple[str, ...]) -> None:
        rest = line.text.split(None, 1)[1].strip() if len(line.text.split(None, 1)) > 1 else ""
        if len(rest) >= 2 and rest[0] in "\"'" and rest[-1] == rest[0]:
            rest = rest[1:-1]
        if not rest:
            raise error(f"{keyword.lower()}: expected a file name", line.pos)
        path = Path(rest).expanduser()
        if not path.is_absolute():
            path = directory / path
        try:
            key = str(path.resolve())
        except (OSError, RuntimeError, ValueError) as exc:
            raise error(f"cannot include '{rest}': {exc}", line.pos) from exc
        if key in stack:
            chain = " -> ".join(os.path.basename(p) for p in (*stack[stack.index(key):], key))
            raise error(f"include cycle: {chain}", line.pos)
        if len(stack) >= MAX_INCLUDE_DEPTH:
            raise error(f"includes nested deeper than {MAX_INCLUDE_DEPTH}", line.pos)
        try:
            data = path.read_bytes()
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise error(f"cannot include '{rest}': {reason}", line.pos) from exc
        self.read(decode(data), str(path), path.parent, (*stack, key), top=False)


# ------------------------------------------------------------------------ tokens and values


_SIMPLE_WORDS = re.compile(r"=|[^\s(),=]+")
_PARAM_WORDS = re.compile(r"=|[^\s=]+")


def tokenize(line: Line, separators: str = "(),") -> list[Token]:
    """Words, `{expr}` / `'expr'` groups (as `{...}`), quoted strings; `key = value` merged."""
    text = line.text
    raw: list[Token] = []
    i, n = 0, len(text)
    stops = separators + "="
    if not any(c in text for c in "{'\""):  # fast path: words and '=' only
        pattern = _SIMPLE_WORDS if separators else _PARAM_WORDS
        raw = [Token(m.group(), line, m.start()) for m in pattern.finditer(text)]
        n = 0
    while i < n:
        c = text[i]
        if c.isspace() or c in separators:
            i += 1
            continue
        start = i
        if c == "=":
            raw.append(Token("=", line, start))
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
                raise error(f"unterminated '{c}'", line.at(start))
            raw.append(Token("{" + text[i + 1:j] + "}", line, start))
            i = j + 1
            continue
        if c == '"':
            j = text.find('"', i + 1)
            if j < 0:
                raise error("unterminated '\"'", line.at(start))
            raw.append(Token(text[i + 1:j], line, start))
            i = j + 1
            continue
        while i < n and not (text[i].isspace() or text[i] in stops):
            i += 1
        raw.append(Token(text[start:i], line, start))
    tokens: list[Token] = []
    k = 0
    while k < len(raw):
        tok = raw[k]
        if tok.text == "=":
            raise error("unexpected '=' (expected NAME=VALUE)", tok.pos)
        if k + 1 < len(raw) and raw[k + 1].text == "=":
            if k + 2 >= len(raw) or raw[k + 2].text == "=":
                raise error(f"expected a value after '{tok.text}='", raw[k + 1].pos)
            value = raw[k + 2]
            tokens.append(Token(value.text, value.line, value.offset, key=tok))
            k += 3
            continue
        tokens.append(tok)
        k += 1
    return tokens


def check_parens(line: Line, owner: str, callers: frozenset[str] | set[str]) -> None:
    """Parentheses are separators in SPICE, but here only where they belong: right after one of
    `callers` (a source function such as PULSE, a model type), one level deep, each one closed.

    So `R1 a b 1k(` is refused instead of being read as 1k, as ngspice reads it.
    """
    text = line.text
    depth, i, n = 0, 0, len(text)
    opened = 0
    while i < n:
        c = text[i]
        if c == "{":  # an expression: its parentheses are its own
            close = text.find("}", i)
            i = n if close < 0 else close + 1
            continue
        if c == "'":
            close = text.find("'", i + 1)
            i = n if close < 0 else close + 1
            continue
        if c == "(":
            before = re.search(r"([^\s(),=]*)\s*$", text[:i]).group(1)
            if depth or before.lower() not in callers:
                after = f" after '{before}'" if before else ""
                raise error(f"{owner}: unexpected '('{after}", line.at(i))
            depth, opened = 1, i
        elif c == ")":
            if not depth:
                raise error(f"{owner}: unexpected ')'", line.at(i))
            depth = 0
        i += 1
    if depth:
        raise error(f"{owner}: '(' is never closed", line.at(opened))


def number(tok: Token, env: dict[str, float], what: str, owner: str) -> float:
    """A float from a literal (with suffix) or a `{expr}` token; NetlistError naming `owner`."""
    return exact(tok, env, what, owner, as_decimal=False)


def exact(tok: Token, env: dict[str, float], what: str, owner: str, as_decimal: bool = True):
    """The value of `tok`: a Decimal for a literal (when `as_decimal`), a float for an expression."""
    text = tok.text
    if text.startswith("{") and text.endswith("}") and len(text) >= 2:
        try:
            return evaluate(text[1:-1], env)
        except ExpressionError as exc:
            pos = Pos(tok.pos.file, tok.pos.line, tok.pos.column + 1 + exc.offset)
            raise error(f"{owner}: {exc} in '{text}'", pos) from None
    literal = parse_literal(text)
    if literal is None:
        raise error(f"{owner}: expected {what}, got '{tok.shown}'{_hint(text, env)}", tok.pos)
    if as_decimal:
        return literal
    try:
        return decimal_to_float(literal)
    except ExpressionError as exc:
        raise error(f"{owner}: {exc}: '{text}'", tok.pos) from None


def _hint(text: str, env: dict[str, float]) -> str:
    """Why `text` is not a number, when a likely reason is known."""
    if text.lower() in env:
        return f" (write {{{text}}} to use the parameter)"
    if re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)[a-zA-Z]+\d+", text):
        return " (digits after a suffix are ambiguous; write e.g. 1.5k, not 1k5)"
    parts = split_literal(text)
    if parts is not None:
        mantissa, suffix, unit = parts
        return f" ('{unit}' after '{mantissa}{suffix}' is neither a scale suffix nor a unit)"
    return ""
