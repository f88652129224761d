"""The documentation cannot rot.

- Command blocks marked as quick in the docs run, in a scratch directory, and exit with 0.
  A quick block is a fenced ``console`` block preceded by the line ``<!-- test -->``; its
  commands are the lines starting with ``$ `` (a trailing backslash continues a command),
  the other lines are expected output and are not compared. Files the page asks the reader
  to write are fenced blocks preceded by ``<!-- file: NAME -->``; they are written into the
  scratch directory first, next to a link to the repository's ``netlists/``.
- Every other `aeqprop ...` command of README.md, docs/ and scripts/README.md (the sweeps,
  long trainings, reproductions and benchmarks too long to run here) parses against the
  command tree: its subcommand, options, literal choice values, presets and model options exist.
- Every relative link in README.md and docs/ resolves, and so does every path into the
  repository that the text names (``netlists/...``, ``tests/...``, ``scripts/...``).
- README, docs and the code speak of the software only: no numbered stages of its
  development, issue numbers, times of work or remarks about the machine's load.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
COMMAND_TIMEOUT = 120  # seconds per command; the marked blocks are meant to take a few seconds

TEST_MARK = "<!-- test -->"
FILE_MARK = re.compile(r"<!--\s*file:\s*([\w.\-]+)\s*-->")
FENCE = re.compile(r"^(`{3,}|~{3,})\s*([\w+-]*)")


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def fenced_blocks(text: str):
    """(marker line or None, language, body, first line number) of every fenced block."""
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i].strip())
        if not match:
            i += 1
            continue
        fence, language, start = match.group(1), match.group(2), i
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            j += 1
        k = start - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        marker = lines[k].strip() if k >= 0 and lines[k].strip().startswith("<!--") else None
        blocks.append((marker, language, "\n".join(lines[start + 1:j]), start + 1))
        i = j + 1
    return blocks


def commands(body: str) -> list[str]:
    """The `$ ` lines of a console block, continuation lines joined."""
    result, current = [], None
    for line in body.splitlines():
        if current is not None:
            current += "\n" + line
        elif line.startswith("$ "):
            current = line[2:]
        else:
            continue
        if not current.endswith("\\"):
            result.append(current)
            current = None
    if current is not None:
        result.append(current)
    return result


def quick_pages():
    pages = []
    for page in PAGES:
        blocks = fenced_blocks(page.read_text(encoding="utf-8"))
        if any(marker == TEST_MARK for marker, *_ in blocks):
            pages.append(page)
    return pages


def test_the_docs_mark_some_quick_blocks():
    assert len(quick_pages()) >= 5, "the quick command blocks of the docs are not found"


def aeqprop_shim(directory: Path) -> Path:
    """A directory whose `aeqprop` runs this interpreter's package, first on PATH."""
    bin_dir = directory / ".bin"
    bin_dir.mkdir()
    shim = bin_dir / "aeqprop"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m aeqprop_circuits "$@"\n')
    shim.chmod(0o755)
    return bin_dir


def run_command(command: str, cwd: Path, env: dict) -> tuple[int, str]:
    """(exit code, output) of one documented command: `aeqprop ...` in this process (no interpreter start-up
    per command), anything else through bash."""
    words = shlex.split(command.replace("\\\n", " "))
    if words and words[0] == "aeqprop" and not set(command) & set("|;&<>$`"):
        from click.testing import CliRunner

        from aeqprop_circuits.cli.main import main

        previous = os.getcwd()
        os.chdir(cwd)
        try:
            result = CliRunner().invoke(main, words[1:], env={"MPLBACKEND": "Agg"})
        finally:
            os.chdir(previous)
        return result.exit_code, result.output
    done = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT)
    return done.returncode, done.stdout[-2000:] + "\n" + done.stderr[-2000:]


def run_page(page: Path, tmp_path: Path):
    """Run a page's quick blocks in `tmp_path`; None when they all pass, else what failed (or 'skip: why')."""
    blocks = fenced_blocks(page.read_text(encoding="utf-8"))
    os.symlink(ROOT / "netlists", tmp_path / "netlists")
    for marker, _, body, _ in blocks:
        name = FILE_MARK.fullmatch(marker or "")
        if name:
            (tmp_path / name.group(1)).write_text(body + "\n", encoding="utf-8")
    env = dict(os.environ)
    env["PATH"] = f"{aeqprop_shim(tmp_path)}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("MPLBACKEND", "Agg")
    for marker, language, body, line in blocks:
        if marker != TEST_MARK:
            continue
        if language != "console":
            return f"{rel(page)}:{line}: a quick block must be a console block"
        for command in commands(body):
            if "--solver spice" in command and shutil.which("ngspice") is None:
                return "skip: ngspice is not installed"
            code, output = run_command(command, tmp_path, env)
            if code != 0:
                return f"{rel(page)}:{line}: `{command}` exited with {code}\n{output[-3000:]}"
    return None


@pytest.fixture(scope="module")
def page_results(tmp_path_factory):
    """Every page's quick blocks, one page after the other (each in its own directory)."""
    return {page: run_page(page, tmp_path_factory.mktemp(page.stem)) for page in quick_pages()}


@pytest.mark.parametrize("page", quick_pages(), ids=rel)
def test_quick_command_blocks_run(page, page_results):
    result = page_results[page]
    if result and result.startswith("skip: "):
        pytest.skip(result[6:])
    assert result is None, result


# --- links and file references --------------------------------------------------------------

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
REPO_PATH = re.compile(r"(?<![\w./-])((?:netlists|docs|tests|scripts|aeqprop_circuits|\.ci)/[\w./*-]*[\w*])")
PLACEHOLDER = re.compile(r"[A-Z]{2,}|\*")
# pages docs/hooks/generated_pages.py adds when the site is built
GENERATED = {DOCS / "reference" / "presets.md", DOCS / "python-api.md"}


def prose(text: str) -> str:
    """The page without its fenced blocks and inline code (where links are not links)."""
    text = re.sub(r"^(`{3,}|~{3,}).*?^\1", "", text, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def test_every_relative_link_resolves():
    broken = []
    for page in PAGES:
        for target in LINK.findall(prose(page.read_text(encoding="utf-8"))):
            if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue
            path = target.split("#", 1)[0]
            target_path = (page.parent / path).resolve()
            if path and not target_path.exists() and target_path not in GENERATED:
                broken.append(f"{rel(page)}: {target}")
    assert not broken, "links that do not resolve:\n" + "\n".join(broken)


def test_every_file_the_docs_name_exists():
    missing = []
    for page in PAGES:
        for path in REPO_PATH.findall(page.read_text(encoding="utf-8")):
            path = path.split("::", 1)[0]
            if PLACEHOLDER.search(path) or path.startswith("docs/figures/") and "--out" in path:
                continue
            if not (ROOT / path).exists():
                missing.append(f"{rel(page)}: {path}")
    assert not missing, "paths the docs name that do not exist:\n" + "\n".join(missing)


# --- the software only ------------------------------------------------------------------------

PROCESS_WORDS = re.compile("|".join([
    r"\bsessions?\s+\d",                      # numbered stages of work
    r"(?-i:\(sessions?\b)",
    r"\bissues?\s+#?\d",                      # issue numbers
    r"(?<![\w&/#])#\d{1,4}\b(?![0-9a-fA-F])",
    r"\bU[T]C\b",                             # times and dates of work
    r"\b\d{1,2}:\d{2}(?::\d{2})?\s*(?:–|-|to)\s*\d{1,2}:\d{2}\b",
    r"\b(?:at|from|until|since)\s+\d{1,2}:\d{2}\b",
    r"\b20\d\d-[01]\d-[0-3]\d\b",
    r"\bload\s+average",                      # the machine's load, other people's jobs
    r"\bload\s+(?:of\s+)?~?\d",
    r"\bother\s+(?:engineers|jobs|processes)\b",
    r"\b(?:shared|quiet|busy|loaded)\s+(?:\d-core\s+)?machine\b",
    r"\bheavily\s+shared\b",
    r"\bjobs?\s+paused\b",
    r"\bSIGSTOP\b",
]), re.IGNORECASE)


def process_word_hits(paths) -> list[str]:
    hits = []
    for path in paths:
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            match = PROCESS_WORDS.search(line)
            if match:
                hits.append(f"{rel(path)}:{number}: {match.group(0)!r}: {line.strip()[:120]}")
    return hits


def test_docs_speak_of_the_software_only():
    own = [*PAGES, *sorted((DOCS / "hooks").glob("*.py")), ROOT / "mkdocs.yml", ROOT / ".ci" / "run"]
    hits = process_word_hits(path for path in own if path.exists())
    assert not hits, "README and docs talk about the development process:\n" + "\n".join(hits)


CODE = [path for folder in ("aeqprop_circuits", "tests", "scripts") for path in sorted((ROOT / folder).rglob("*.py"))
        if path.name != "test_docs.py"]


def test_code_speaks_of_the_software_only():
    hits = process_word_hits(CODE)
    assert not hits, f"{len(hits)} lines of code talk about the development process:\n" + "\n".join(hits)


CODE_DOC_PATH = re.compile(r"\bdocs/[\w./-]+?\.md\b")


def test_every_docs_page_the_code_names_exists():
    """Docstrings, comments and help texts point at pages of docs/: a moved page must be named anew."""
    missing = [f"{rel(path)}:{number}: {match}"
               for path in CODE
               for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
               for match in CODE_DOC_PATH.findall(line) if not (ROOT / match).exists()]
    assert not missing, "docs pages the code names that do not exist:\n" + "\n".join(missing)


# --- every documented command parses --------------------------------------------------------
# Commands too long to run in a test (sweeps, long trainings, reproductions, bench) are not run,
# but each `aeqprop ...` line of README.md, docs/ and scripts/README.md (fenced and indented
# blocks, and inline code) is parsed against the command tree: the subcommand exists, every
# option exists, a literal value converts to the option's type and is one of its choices, a
# --preset names a preset, a --set KEY=VALUE names an option of the model. Shell around the
# command is understood: `$ ` prompts, backslash continuations, comments, `;`, `&&`, `||`, pipes,
# loops, redirections, leading VAR=value assignments, {a,b} brace lists. A word holding a shell
# variable ($s, "$@"), a placeholder in capitals (DIR, RUN_DIR, NAME) or `...` is not checked as
# a value. Inline code is read as a synopsis: its options are checked, its values only when literal.

COMMAND_PAGES = [*PAGES, ROOT / "scripts" / "README.md"]
SHELL_LANGUAGES = {"", "console", "bash", "sh", "shell", "text"}
OPERATORS = {";", "&&", "||", "|", "&", "(", ")", ";;", "|&"}
REDIRECTIONS = {">", ">>", "<", "<<", ">&", "&>", ">|"}  # each followed by its target
ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*=")
PREFIX_WORDS = {"$", "do", "then", "else", "time", "nohup", "env", "exec", "!", "{", "}"}
UNCHECKED = re.compile(r"\$|\.\.\.|\||(?<![a-z])[A-Z][A-Z0-9_]+(?![a-z])|^[A-Z]$")


def shell_lines(page: Path):
    """(line number, logical shell line) of the page's fenced shell blocks and indented blocks."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found, fenced = [], set()
    for _, language, body, start in fenced_blocks("\n".join(lines)):
        fenced.update(range(start - 1, start + body.count("\n") + 2))
        if language not in SHELL_LANGUAGES:
            continue
        body_lines = body.splitlines()
        if language == "console":  # only the `$ ` lines, with their continuations
            keep, going = [], False
            for line in body_lines:
                going = line.startswith("$ ") or going
                keep.append(line if going else "")
                going = going and line.rstrip().endswith("\\")
            body_lines = keep
        found += join_continuations(body_lines, start + 1)
    block, first = [], None
    for number, line in enumerate([*lines, "end"]):
        prose = number in fenced or not line.startswith("    ")
        if line.strip() and not prose and (block or number == 0 or not lines[number - 1].strip()):
            first = first or number + 1
            block.append(line)
        elif block and not line.strip() and number not in fenced:
            block.append("")
        else:
            found += join_continuations(block, first) if block else []
            block, first = [], None
    return found


def join_continuations(lines: list[str], first: int):
    """(line number, line) with trailing-backslash continuations joined and `#` comments dropped."""
    result, current, where = [], "", None
    for offset, line in enumerate(lines):
        line = re.sub(r"(^|\s)#.*$", "", line).rstrip()
        if where is None:
            where = first + offset
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        result.append((where, current + line))
        current, where = "", None
    if current.strip():
        result.append((where, current))
    return result


def expand_braces(word: str) -> list[str]:
    """Bash brace expansion of one word: a{b,c}d -> abd acd (no nesting)."""
    match = re.search(r"\{([^{}]*,[^{}]*)\}", word)
    if not match:
        return [word]
    return [expanded for part in match.group(1).split(",")
            for expanded in expand_braces(word[:match.start()] + part + word[match.end():])]


def aeqprop_commands(line: str) -> list[list[str]]:
    """The argument lists of the `aeqprop` commands in one shell line (None when it does not tokenize)."""
    line = re.sub(r"(?<=\s)\d+(?=[<>])", "", line)  # 2>&1: the descriptor belongs to the redirection
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()<>")
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        tokens = list(lexer)
    except ValueError:
        return [None] if re.search(r"(^|[\s;&|(])aeqprop\s", line) else []
    segments, current = [], []
    for token in tokens:
        if token in OPERATORS:
            segments.append(current)
            current = []
        else:
            current.append(token)
    segments.append(current)
    found = []
    for words in segments:
        while words and (words[0] in PREFIX_WORDS or ASSIGNMENT.match(words[0])):
            words = words[1:]
        if not words or words[0] != "aeqprop":
            continue
        arguments, rest = [], iter(words[1:])
        for word in rest:
            if word in REDIRECTIONS:
                next(rest, None)
            else:
                arguments += expand_braces(word)
        found.append(arguments)
    return found


def without_fenced_blocks(text: str) -> str:
    """The text with each fenced block's lines emptied (line numbers kept)."""
    return re.sub(r"^(`{3,}|~{3,}).*?^\1", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.M | re.S)


def inline_commands(page: Path):
    """(line number, command text) of the inline code spans that hold an `aeqprop` command."""
    text = without_fenced_blocks(page.read_text(encoding="utf-8"))
    for match in re.finditer(r"(?<!`)`([^`]+)`(?!`)", text):
        span = match.group(1).replace("\\|", "|").replace("\n", " ")
        if re.search(r"(^|[\s;&|(])aeqprop\s+[a-z]", span):  # [--option] optional, A|B alternatives
            span = re.sub(r"(?<=\S)\|(?=\S)", " ", span.replace("[", " ").replace("]", " "))
            yield text.count("\n", 0, match.start()) + 1, span


def command_tree():
    """The `aeqprop` click group."""
    from aeqprop_circuits.cli.main import main

    return main


def literal(value: str) -> bool:
    """A value as the reader types it: no shell variable, placeholder in capitals, `...` or alternatives."""
    return not UNCHECKED.search(value)


def check_arguments(arguments: list[str], synopsis: bool) -> list[str]:
    """What is wrong with `aeqprop ARGUMENTS` (empty when it parses); `synopsis`: inline code, lenient."""
    import click

    command, path = command_tree(), ["aeqprop"]
    while isinstance(command, click.Group):
        if not arguments or arguments[0].startswith("-"):
            return [] if not arguments or arguments[0] in ("-h", "--help", "--version") else \
                [f"{' '.join(path)}: {arguments[0]} before a subcommand"]
        name = arguments[0]
        if name not in command.commands:
            if synopsis and not literal(name):
                return []
            return [f"{' '.join(path)} has no subcommand '{name}' (it has {', '.join(sorted(command.commands))})"]
        command, path, arguments = command.commands[name], [*path, name], arguments[1:]
    where = " ".join(path)
    options = {}
    for param in command.params:
        if isinstance(param, click.Option):
            for name in (*param.opts, *param.secondary_opts):
                options[name] = param
    positional, given, problems, open_ended, i = [], [], [], False, 0
    while i < len(arguments):
        word = arguments[i]
        i += 1
        if not literal(word) and not word.startswith("--"):
            open_ended = open_ended or "$@" in word or "..." in word or "$*" in word
            positional.append(word)
            continue
        if word == "--":
            positional += arguments[i:]
            break
        if not word.startswith("-") or word == "-":
            positional.append(word)
            continue
        name, equals, value = word.partition("=")
        if name in ("-h", "--help"):
            continue
        if name not in options:
            if literal(name):
                problems.append(f"{where}: no option {name}")
            continue
        param = options[name]
        if param.is_flag or param.count:
            continue
        if not equals:
            if i >= len(arguments) or synopsis and arguments[i].startswith("-"):
                if not synopsis:
                    problems.append(f"{where}: {name} needs a value")
                continue
            value = arguments[i]
            i += 1
        given.append((param, name, value))
    for param, name, value in given:
        problems += check_value(command, where, param, name, value, given, positional)
    if where == "aeqprop sweep" and positional and literal(positional[0]) and (ROOT / positional[0]).is_file():
        from aeqprop_circuits.errors import AeqpropError
        from aeqprop_circuits.experiments.sweep.spec import load_spec

        try:
            load_spec(str(ROOT / positional[0]))
        except AeqpropError as err:
            problems.append(f"{where}: {positional[0]}: {err}")
    if not synopsis and not open_ended:
        arguments_taken = [p for p in command.params if isinstance(p, click.Argument)]
        if not any(p.nargs == -1 for p in arguments_taken) and len(positional) > len(arguments_taken):
            problems.append(f"{where}: unexpected argument(s) {' '.join(positional[len(arguments_taken):])}")
        required = [p for p in arguments_taken if p.required]
        if len(positional) < len(required):
            problems.append(f"{where}: missing argument {required[len(positional)].human_readable_name}")
    return problems


def check_value(command, where, param, name, value, given, positional) -> list[str]:
    """A literal value of an option: its type and choices, and the settings checkers of the package."""
    import click

    from aeqprop_circuits.errors import AeqpropError
    from aeqprop_circuits.experiments.config import FIELDS, check_setting, parse_settings
    from aeqprop_circuits.experiments.presets import PRESETS
    from aeqprop_circuits.learning.algorithms import algorithm_names
    from aeqprop_circuits.systems.models import check_model_options

    if not literal(value):
        return []
    label = f"{where}: {name} {value}"
    if not isinstance(param.type, (click.Path, click.File)) and param.type is not click.STRING:
        try:
            converted = param.type.convert(value, param, None)
        except click.BadParameter as err:
            return [f"{label}: {err.message}"]
    else:
        converted = value
    subcommand = where.split(" ", 1)[1]
    if name == "--preset" and subcommand in ("train", "gradcheck") and value not in PRESETS:
        return [f"{label}: no such preset (presets: {', '.join(PRESETS)})"]
    rules = algorithm_names()
    if (name == "--algorithm" and subcommand in ("gradcheck", "bench train") or name == "--reference"
            and subcommand == "gradcheck" and value not in ("exact-gradient", "ep", "oracle")) and value not in rules:
        return [f"{label}: no such rule (rules: {', '.join(rules)})"]
    if name == "--by" and subcommand == "summary" and value not in FIELDS:
        return [f"{label}: not a setting of config.json"]
    if subcommand == "train" and param.name in FIELDS:
        try:
            check_setting(param.name, converted)
        except AeqpropError as err:
            return [f"{label}: {err}"]
    if name == "--set" and subcommand in ("train", "gradcheck"):
        values = {p.name: v for p, _, v in given}
        model = values.get("model_option") or (positional[0] if positional else None)
        if model is None and values.get("preset") in PRESETS:
            model = PRESETS[values["preset"]].get("model")
        if model is None or not literal(model):
            return []
        try:
            check_model_options(model, parse_settings([value]))
        except AeqpropError as err:
            return [f"{label}: {err}"]
    return []


@functools.cache
def documented_commands() -> tuple:
    """(page:line, command text, argument list or None, synopsis?) of every documented aeqprop command."""
    found = []
    for page in COMMAND_PAGES:
        for number, line in shell_lines(page):
            for arguments in aeqprop_commands(line):
                found.append((f"{rel(page)}:{number}", line.strip(), arguments, False))
        for number, span in inline_commands(page):
            for arguments in aeqprop_commands(span):
                found.append((f"{rel(page)}:{number}", span.strip(), arguments, True))
    return tuple(found)


def test_the_command_reader_understands_the_shell(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("Text `aeqprop plot DIR` and `aeqprop summary PATH... [--by KEY]`.\n\n"
                    "    for s in 0 1; do  # seeds\n"
                    "      OPENBLAS_NUM_THREADS=1 aeqprop train --preset drn-xs --seed $s \\\n"
                    "        --out runs/x$s > log-$s.txt 2>&1 && aeqprop plot runs/x$s\n"
                    "    done\n\n"
                    "```console\n$ aeqprop compare runs/{a,b} --last 2 | tee table.md\noutput aeqprop x\n```\n",
                    encoding="utf-8")
    blocks = [(number, arguments) for number, line in shell_lines(page) for arguments in aeqprop_commands(line)]
    assert blocks == [(9, ["compare", "runs/a", "runs/b", "--last", "2"]),
                      (4, ["train", "--preset", "drn-xs", "--seed", "$s", "--out", "runs/x$s"]),
                      (4, ["plot", "runs/x$s"])]
    spans = [(number, aeqprop_commands(span)) for number, span in inline_commands(page)]
    assert spans == [(1, [["plot", "DIR"]]), (1, [["summary", "PATH...", "--by", "KEY"]])]
    assert check_arguments(["train", "--preset", "drn-xs", "--seed", "$s", "--out", "runs/x$s"], False) == []
    problems = check_arguments(["train", "--presets", "drn-xs", "--solver", "spicy", "--lr", "-1"], False)
    assert [problem.split(":")[1] for problem in problems] == [" no option --presets", " --solver spicy",
                                                                " --lr -1"], problems


def test_the_docs_commands_are_found():
    found = documented_commands()
    blocks = [entry for entry in found if not entry[3]]
    assert len(blocks) >= 100 and len(found) >= 200, f"only {len(blocks)} block and {len(found)} commands found"
    kinds = {" ".join(arguments[:1]) for _, _, arguments, _ in found if arguments}
    assert {"train", "sweep", "reproduce", "bench", "summary", "meta"} <= kinds


def test_every_documented_command_parses():
    failures = []
    for where, text, arguments, synopsis in documented_commands():
        if arguments is None:
            failures.append(f"{where}: cannot split into words: {text[:100]}")
            continue
        failures += [f"{where}: {problem}\n    {text[:160]}" for problem in check_arguments(arguments, synopsis)]
    assert not failures, f"{len(failures)} documented commands do not follow the CLI:\n" + "\n".join(failures)


def test_every_option_the_docs_name_exists():
    """Inline code that starts with an option (`--hardware mismatch`) names an option of some aeqprop command."""
    import click

    names, commands = set(), [command_tree()]
    while commands:
        command = commands.pop()
        names.update(name for param in command.params if isinstance(param, click.Option)
                     for name in (*param.opts, *param.secondary_opts))
        commands += list(getattr(command, "commands", {}).values())
    unknown = []
    for page in COMMAND_PAGES:
        text = without_fenced_blocks(page.read_text(encoding="utf-8"))
        for match in re.finditer(r"(?<!`)`(--[a-z][\w-]*)[^`]*`(?!`)", text):
            if match.group(1) not in names:
                unknown.append(f"{rel(page)}:{text.count(chr(10), 0, match.start()) + 1}: {match.group(0)}")
    assert not unknown, "options the docs name that no aeqprop command has:\n" + "\n".join(unknown)


def test_every_sweep_spec_the_docs_show_loads(tmp_path):
    """A JSON, TOML or YAML block with a "grid" is a sweep spec: it loads and validates."""
    from aeqprop_circuits.errors import AeqpropError
    from aeqprop_circuits.experiments.sweep.spec import load_spec

    failures, shown = [], 0
    for page in COMMAND_PAGES:
        for _, language, body, line in fenced_blocks(page.read_text(encoding="utf-8")):
            if language in ("json", "toml", "yaml") and "grid" in body:
                shown += 1
                path = tmp_path / f"spec{shown}.{language}"
                path.write_text(body + "\n", encoding="utf-8")
                try:
                    load_spec(str(path))
                except AeqpropError as err:
                    failures.append(f"{rel(page)}:{line}: {err}")
    assert shown >= 2 and not failures, "sweep specs in the docs that do not load:\n" + "\n".join(failures)
