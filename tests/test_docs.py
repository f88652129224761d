"""The documentation cannot rot.

- Command blocks marked as quick in the docs run, in a scratch directory, and exit with 0.
  A quick block is a fenced ``console`` block preceded by the line ``<!-- test -->``; its
  commands are the lines starting with ``$ `` (a trailing backslash continues a command),
  the other lines are expected output and are not compared. Files the page asks the reader
  to write are fenced blocks preceded by ``<!-- file: NAME -->``; they are written into the
  scratch directory first, next to a link to the repository's ``netlists/``.
- Every relative link in README.md and docs/ resolves, and so does every path into the
  repository that the text names (``netlists/...``, ``tests/...``, ``scripts/...``).
- README, docs and the code speak of the software only: no numbered stages of its
  development, issue numbers, times of work or remarks about the machine's load.
"""

from __future__ import annotations

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
def page_outcomes(tmp_path_factory):
    """Every page's quick blocks, one page after the other (each in its own directory)."""
    return {page: run_page(page, tmp_path_factory.mktemp(page.stem)) for page in quick_pages()}


@pytest.mark.parametrize("page", quick_pages(), ids=rel)
def test_quick_command_blocks_run(page, page_outcomes):
    outcome = page_outcomes[page]
    if outcome and outcome.startswith("skip: "):
        pytest.skip(outcome[6:])
    assert outcome is None, outcome


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
    r"\bUTC\b",                               # times and dates of work
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
