"""Bad inputs, as a new user would give them: each a clear refusal (or a correct answer), never a traceback.

Every case runs a command the way the CLI does (click's runner): netlists through `aeqprop
check` and `aeqprop solve`, CSV files through the data loader behind the CLI's error
handling, and asserts the exit code, that no traceback is printed, and the words the message
must contain (file, line, what was expected). Valid decks that ngspice runs are in the table
too: they must pass, with the warnings they deserve.
"""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from aeqprop_circuits.cli.circuits import check, solve
from aeqprop_circuits.cli.common import user_errors
from aeqprop_circuits.data.datasets import load_dataset

ROOT = Path(__file__).resolve().parents[1]
DIVIDER = "V1 a 0 1\nR1 a b 1k\nR2 b 0 1k\n"


def subcircuit_tree(depth: int) -> str:
    """A netlist whose subcircuit tree doubles `depth` times: 2**(depth + 1) resistors."""
    lines = ["doubling", ".subckt b0 a c", "R1 a c 1k", "R2 a c 1k", ".ends"]
    for k in range(1, depth + 1):
        lines += [f".subckt b{k} a c", f"X1 a c b{k - 1}", f"X2 a c b{k - 1}", ".ends"]
    return "\n".join(lines + ["V1 in 0 1", f"X1 in 0 b{depth}", ""])


# (id, netlist text, extra arguments, exit code, words in the output)
CHECK_CASES = [
    ("empty file", "", [], 1, ["empty.cir", "empty netlist", "title line"]),
    ("blank lines only", "\n  \n\n", [], 1, ["empty netlist"]),
    ("title only", "just a title\n", [], 1, ["deck.cir:1:1", "no elements"]),
    ("element on the title line", "R1 a 0 1k\n", [], 1, ["deck.cir:1:1", "'R1 a 0 1k', is the title"]),
    ("elements only in an unused subcircuit", "t\n.subckt s a\nR1 a 0 1k\n.ends\n", [], 1, ["no elements"]),
    ("output on ground", "t\n" + DIVIDER + "*@ output 0\n", [], 1, ["deck.cir:5:11", "is ground"]),
    ("output on gnd", "t\n" + DIVIDER + "*@ output GND\n", [], 1, ["deck.cir:5:11", "'GND' is ground"]),
    ("differential output on one node", "t\n" + DIVIDER + "*@ output diff(b, b)\n", [], 1,
     ["deck.cir:5:11", "against itself", "two different nodes"]),
    ("output pinned by an input source", "t\n" + DIVIDER + "*@ input V1\n*@ output a\n", [], 1,
     ["deck.cir:6:", "output a is pinned", "constant loss"]),
    ("differential output across a source", "t\nV1 a 0 1\nV2 b c 1\nR1 a b 1k\nR2 c 0 1k\n*@ output diff(b,c)\n",
     [], 1, ["deck.cir:6:", "pinned", "tied to each other"]),
    ("ideal and exponential diodes mixed",
     "t\n.model dc D\n.model dr D\nV1 a 0 1\nR1 a b 1k\nD1 b 0 dc\nD2 b 0 dr\n*@ ideal dc\n", [], 1,
     ["deck.cir", "mixing ideal and exponential diodes"]),
    ("trailing letters after a suffix", "t\nV1 a 0 1\nR1 a b 1kk\nR2 b 0 1k\n", [], 1,
     ["deck.cir:3:8", "R1: expected a resistance value, got '1kk'", "neither a scale suffix nor a unit"]),
    ("femto trap", "t\nV1 a 0 1\nR1 a 0 1farad\n", [], 1, ["deck.cir:3:8", "'1farad'"]),
    ("unknown letters", "t\nV1 a 0 1x\nR1 a 0 1k\n", [], 1, ["deck.cir:2:8", "V1: expected a voltage, got '1x'"]),
    ("digits after a suffix", "t\nV1 a 0 1\nR1 a 0 1k5\n", [], 1, ["deck.cir:3:8", "ambiguous"]),
    ("opening parenthesis after a value", "t\nV1 a 0 1\nR1 a b 1k(\nR2 b 0 1k\n", [], 1,
     ["deck.cir:3:10", "R1: unexpected '(' after '1k'"]),
    ("closing parenthesis after a value", "t\nV1 a 0 1\nR1 a 0 1k)\n", [], 1, ["deck.cir:3:10", "unexpected ')'"]),
    ("model parameters never closed", "t\nV1 a 0 1\nR1 a b 1k\nD1 b 0 dm\n.model dm D (IS=1e-14\n", [], 1,
     ["deck.cir:5:13", "'(' is never closed"]),
    ("floating nodes", "t\nV1 a 0 1\nR1 a 0 1k\nR2 b c 1k\n", [], 1,
     ["deck.cir:4:", "floating nodes 'b', 'c'", "no DC path"]),
    ("floating node inside a subcircuit", "t\n.subckt s p\nR1 p 0 1k\nR2 q r 1k\n.ends\nV1 a 0 1\nX1 a s\n", [], 1,
     ["deck.cir:4:", "'x1.q'"]),
    ("loop of voltage sources", "t\nV1 a 0 1\nV2 a 0 2\nR1 a 0 1k\n", [], 1,
     ["deck.cir:3:", "loop of voltage sources through v2"]),
    ("voltage source on one node", "t\nV1 a a 1\nR1 a 0 1k\n", [], 1, ["deck.cir:2:", "both terminals"]),
    ("subcircuit expanding past the limit", subcircuit_tree(25), [], 1,
     ["deck.cir:", "X1: this instance expands to 67,108,864 elements", "limit of 3,000,000", "--max-elements"]),
    ("a lower element limit", "t\n" + DIVIDER, ["--max-elements", "2"], 1,
     ["deck.cir:4:1", "more than the limit of 2 elements"]),
    ("unsupported control card", "t\n" + DIVIDER + ".global vdd\n", [], 1,
     ["deck.cir:5:1", "unsupported control card .global"]),
    (".endc alone", "t\n" + DIVIDER + ".endc\n", [], 1, ["deck.cir:5:1", ".endc without a .control"]),
    (".control never closed", "t\n" + DIVIDER + ".control\nop\n", [], 1, ["deck.cir:5:1", "missing .endc"]),
    ("two temperatures", "t\n" + DIVIDER + ".temp 50\n.options temp=60\n", [], 1,
     ["deck.cir:6:15", "already 50.0 degC", "give it once"]),
    ("temperature below absolute zero", "t\n" + DIVIDER + ".temp -300\n", [], 1,
     ["deck.cir:5:7", "not above absolute zero"]),
    ("two values on .temp", "t\n" + DIVIDER + ".temp 25 50\n", [], 1, ["deck.cir:5:1", "one temperature"]),
    ("rshunt option", "t\n" + DIVIDER + ".options rshunt=1e12\n", [], 1, ["deck.cir:5:10", "RSHUNT"]),
    ("source function with no value at time 0", "t\nV1 a 0 AM(1 0.3 1k 1meg)\nR1 a 0 1k\n", [], 1,
     ["deck.cir:2:8", "AM at time 0", "give a DC value"]),
    ("DC given twice", "t\nV1 a 0 dc=1 dc=2\nR1 a 0 1k\n", [], 1, ["deck.cir:2:13", "DC value given twice"]),
    ("instance parameter nobody reads", "t\n.subckt s a p=1k\nR1 a 0 {p}\n.ends\nX1 n s q=2\nR1 n 0 1k\n", [], 1,
     ["deck.cir:5:8", "has no parameter 'q'"]),
    ("zero resistance", "t\nV1 a 0 1\nR1 a 0 0\n", [], 1, ["deck.cir:3:8", "resistance must be positive"]),
    ("output on an unknown node", "t\n" + DIVIDER + "*@ output nowhere\n", [], 1,
     ["deck.cir:5:11", "unknown node 'nowhere'"]),
    ("learn pattern matching nothing", "t\n" + DIVIDER + "*@ learn q*\n", [], 1, ["matches no resistor"]),
    ("division by zero", "t\nV1 a 0 {1/0}\nR1 a 0 1k\n", [], 1, ["deck.cir:2:", "division by zero"]),
    ("include not found", "t\n.include nowhere.inc\n" + DIVIDER, [], 1,
     ["deck.cir:2:1", "cannot include 'nowhere.inc'"]),
    # valid decks: accepted, with the warnings they deserve
    ("annotation on the title line", "*@ output b\n" + DIVIDER, [], 0,
     ["deck.cir:1: the first line of a netlist is its title", "ok"]),
    ("analyses and a control block", "t\n" + DIVIDER + ".tran 1n 1u\n.control\nrun\n.endc\n", [], 0,
     ["deck.cir:5: .tran is not run", "deck.cir:6: .control block skipped", "ok"]),
    ("dc= on sources", "t\nV1 a 0 dc=2\nR1 a b 1k\nR2 b 0 1k\nI1 0 b dc=1mA\n*@ output b\n", [], 0, ["ok"]),
    ("a diode at 50 degC", "t\nV1 a 0 1\nR1 a b 1k\nD1 b 0 dm\n.model dm D (IS=2e-14)\n.options temp=50\n"
     "*@ output b\n", [], 0, ["temperature", "50 degC", "ok"]),
    ("transient source with a DC value", "t\nV1 a 0 DC 1 PULSE(0 1 1n)\nR1 a b 1k\nR2 b 0 1k\n", [], 0, ["ok"]),
    # elements only ngspice models: accepted, for the spice solver alone
    ("a capacitor", "t\nV1 a 0 1\nR1 a 0 1k\nC1 a 0 1p\n", [], 0, ["ngspice only", "c1 (capacitor)", "spice only"]),
    ("breakdown voltage", "t\nV1 a 0 1\nR1 a b 1k\nD1 b 0 dm\n.model dm D (BV=5)\n", [], 0,
     ["d1 (diode with BV)", "spice only"]),
]

SOLVE_CASES = [
    ("value with trailing letters", ["--set", "V1=1kk"], 1, ["V1", "'1kk'"]),
    ("unknown source", ["--set", "V9=1"], 1, ["--set V9=1", "expected SOURCE=VALUE", "v1"]),
    ("set without a value", ["--set", "V1="], 1, ["expected SOURCE=VALUE"]),
    ("a lower element limit", ["--max-elements", "1"], 1, ["limit of 1 elements"]),
]


def run(command, args):
    result = CliRunner().invoke(command, [str(a) for a in args])
    text = result.output  # stdout and stderr, as a terminal shows them
    assert "Traceback" not in text
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result, text


@pytest.mark.parametrize("text, args, code, words", [case[1:] for case in CHECK_CASES],
                         ids=[case[0] for case in CHECK_CASES])
def test_check_refuses_bad_netlists_by_name(tmp_path, monkeypatch, text, args, code, words):
    monkeypatch.chdir(tmp_path)
    name = "empty.cir" if text.strip() == "" else "deck.cir"
    (tmp_path / name).write_text(text)
    result, output = run(check, [name, *args])
    assert result.exit_code == code, output
    for word in words:
        assert word in output, (word, output)


@pytest.mark.parametrize("args, code, words", [case[1:] for case in SOLVE_CASES], ids=[c[0] for c in SOLVE_CASES])
def test_solve_refuses_bad_options_by_name(tmp_path, monkeypatch, args, code, words):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "deck.cir").write_text("t\n" + DIVIDER)
    result, output = run(solve, ["deck.cir", *args])
    assert result.exit_code == code, output
    for word in words:
        assert word in output, (word, output)


@pytest.mark.parametrize("text", [case[1] for case in CHECK_CASES if case[3] == 0],
                         ids=[case[0] for case in CHECK_CASES if case[3] == 0])
def test_what_check_accepts_solve_solves(tmp_path, monkeypatch, text):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "deck.cir").write_text(text)
    result, output = run(solve, ["deck.cir"])
    assert result.exit_code == 0, output


def test_missing_and_unreadable_netlists_are_errors(tmp_path):
    result, output = run(check, [tmp_path / "absent.cir"])
    assert result.exit_code == 1 and "absent.cir" in output and "no such netlist file" in output
    result, output = run(solve, [tmp_path])
    assert result.exit_code == 1 and "cannot read netlist" in output


@click.command()
@click.argument("path")
@click.option("--task", default=None)
@click.option("--test-fraction", type=float, default=None)
@user_errors
def load(path, task, test_fraction):
    """The data loader behind the CLI's error handling."""
    data = load_dataset(path, task=task, test_fraction=test_fraction, log=click.echo)
    click.echo(f"{data.name}: {data.task}, classes {data.class_map}")


ROWS = "".join(f"{k},{k % 3},{k % 2}\n" for k in range(10))
# (id, file contents or None for no file, extra arguments, exit code, words in the output)
CSV_CASES = [
    ("file not found", None, [], 1, ["data.csv: file not found"]),
    ("empty file", "", [], 1, ["data.csv: empty file"]),
    ("header only", "x,y,label\n", [], 1, ["only a header row"]),
    ("one data row", "1,2,0\n", [], 1, ["only one data row (line 1)", "at least two"]),
    ("one column", "1\n2\n3\n", [], 1, ["data.csv:1:", "got one column"]),
    ("ragged row", "1,2,0\n3,4\n5,6,1\n", [], 1, ["data.csv:2:", "expected 3 cells (as on line 1), got 2"]),
    ("text in a feature", "x,y,label\n1,2,0\n3,abc,1\n5,6,0\n", [], 1,
     ["data.csv:3:2: y: expected a finite number, got 'abc'"]),
    ("nan in the first row", "1,nan,0\n3,4,1\n5,6,0\n", [], 1, ["data.csv:1:2", "got 'nan'"]),
    ("empty cell", "1,2,0\n3,,1\n5,6,0\n", [], 1, ["data.csv:2:2", "an empty cell"]),
    ("missing label", "1,2,0\n3,4,\n5,6,1\n", [], 1, ["data.csv:2:3", "missing label"]),
    ("one class only", "1,2,7\n3,4,7\n5,6,7\n", [], 1, ["every label is '7'", "at least two classes"]),
    ("fractional labels as classes", "1,0.5\n2,1.5\n3,0.5\n", ["--task", "classification"], 1,
     ["data.csv:1:2", "label '0.5' is not a class"]),
    ("text labels as regression", "1,a\n2,b\n3,a\n", ["--task", "regression"], 1,
     ["data.csv:1:2", "expected a number for regression, got 'a'"]),
    ("unknown task", ROWS, ["--task", "clustering"], 1, ["task 'clustering'", "classification or regression"]),
    ("test fraction leaving no test sample", ROWS, ["--task", "classification", "--test-fraction", "0.01"], 1,
     ["leaves no test sample"]),
    ("test fraction above one", ROWS, ["--test-fraction", "2"], 1, ["strictly between 0 and 1"]),
    ("binary file", b"\xff\xfe\x00\x01garbage", [], 1, ["data.csv: not a UTF-8 text file"]),
    ("integer labels announced", ROWS, [], 0, ["taken as classes", "classification", "'0': 0, '1': 1"]),
    ("labels -1 0 1 mapped in order", "".join(f"{k},{k % 3 - 1}\n" for k in range(9)), [], 0,
     ["'-1': 0, '0': 1, '1': 2"]),
]


@pytest.mark.parametrize("contents, args, code, words", [case[1:] for case in CSV_CASES],
                         ids=[case[0] for case in CSV_CASES])
def test_bad_csv_files_are_refused_by_file_line_and_column(tmp_path, monkeypatch, contents, args, code, words):
    monkeypatch.chdir(tmp_path)
    if isinstance(contents, bytes):
        (tmp_path / "data.csv").write_bytes(contents)
    elif contents is not None:
        (tmp_path / "data.csv").write_text(contents)
    result, output = run(load, ["data.csv", *args])
    assert result.exit_code == code, output
    for word in words:
        assert word in output, (word, output)


def test_the_table_is_large_enough():
    assert len(CHECK_CASES) + len(SOLVE_CASES) + len(CSV_CASES) + 1 >= 40
