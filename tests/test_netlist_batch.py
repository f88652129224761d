"""Plain resistor lines read in batches (netlist/batch.py) give what the line-by-line path gives:
the same circuit to the last bit, or the same error with the same file, line and column."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_netlist_parser import assert_same_circuit

from aeqprop_circuits.circuit.builder import deep_resistive_network
from aeqprop_circuits.errors import NetlistError
from aeqprop_circuits.netlist import lexer, parse_text, write_netlist
from aeqprop_circuits.netlist.batch import conductances
from aeqprop_circuits.netlist.lexer import _LINES, Reader, Run
from aeqprop_circuits.netlist.values import parse_literal, reciprocal

VALUES = ["1k", "2.5meg", "1e-3", "4.7kOhm", "10", "3.3K", "1mil", ".5", "7.", "+2", "1e3k", "100ohms",
          "2905999.2950067683", "1230843.260442978814365543", "0.000001", "1e22", "1e-22", "9.99e-30",
          "12345678901234567890123", "1T", "3g", "5u", "8n", "2p", "1f", "1E+2", "1kk", "1k5", "-1", "0",
          "abc", "1e999", "1e-999", "1k_", "e5", "1.5.2", "{1k}", "1k(", "r=1k", "1\u212a", "1\u00b5"]
NODES = ["a", "b", "N1", "n1", "0", "gnd", "GND", "x.y", "d1#rs", "mid_2", "\u00e91"]
TAILS = ["", " ", "\t", " ; comment", ";c", " $ note", "$x", "\r", " * star"]


def both_ways(text: str):
    """(circuit or error message) from the batch path and from the line-by-line path."""
    out = []
    for batch in (True, False):
        lexer.BATCH = batch
        try:
            out.append(parse_text(text, "net.cir"))
        except NetlistError as exc:
            out.append(str(exc))
        finally:
            lexer.BATCH = True
    return out


def assert_same(text: str) -> None:
    fast, full = both_ways(text)
    if isinstance(full, str) or isinstance(fast, str):
        assert fast == full
    else:
        assert_same_circuit(fast, full)
        np.testing.assert_array_equal(fast.origin.nodes, full.origin.nodes)
        np.testing.assert_array_equal(fast.origin.sources, full.origin.sources)


line = st.one_of(
    st.tuples(st.sampled_from(["r", "R", "  r", "\tR"]), st.sampled_from(["1", "2", "3", "x", "_a", "1"]),
              st.sampled_from(NODES), st.sampled_from(NODES), st.sampled_from(VALUES),
              st.sampled_from([" ", "\t", "  "]), st.sampled_from(TAILS))
    .map(lambda t: f"{t[0]}{t[1]}{t[5]}{t[2]}{t[5]}{t[3]}{t[5]}{t[4]}{t[6]}"),
    st.sampled_from(["", "* a comment", "; only a comment", "+ 2k", "v1 a 0 DC 1", "i1 b 0 1m",
                     "*@ nodes a b", ".subckt sub p q", ".ends", "xs a b sub", ".param rv=2k",
                     "rp a b {rv}", ".control", ".endc", ".end", "r9 a b 1k r=2k", "ra a\rb 1k"]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(line, min_size=1, max_size=12))
def test_batch_path_equals_line_by_line_on_random_lines(lines):
    assert_same("title\n" + "\n".join(lines) + "\nv0 a 0 1\n")


@pytest.mark.parametrize("body", [
    "r1 a b 1k\nr2 b 0 2.5meg ; comment\nr3 b 0 1e-3 $ note\nv1 a 0 1\n",
    "r1 a b 1k\n* comment\n+ 2k\nv1 a 0 1\n",  # a continuation after a comment continues r1
    "r1 a b 1k\nr2 b 0 1kk\nv1 a 0 1\n",  # bad suffix: the full path's message, line 3
    "r1 a b 1k\nr1 b 0 2k\nv1 a 0 1\n",  # duplicate inside a run
    "r1 a b 1k\nv1 a 0 1\nR1 b 0 2k\n",  # duplicate of a run's resistor by a later line
    "r1 a b -1\nv1 a 0 1\n", "r1 a b 0\nv1 a 0 1\n", "r1 a b 1e-999\nv1 a 0 1\n",
    "*@ nodes b a\nr1 a b 1k\nr2 b 0 1k\nv1 a 0 1\n",  # nodes listed first, placed by the run
    "*@ output b\n*@ learn r*\nr1 a b 1k\nr2 b 0 1k\nv1 a 0 1\n*@ input v1\n",
    "*@ output b\n*@ learn r2 range=1u:2u\nr1 a b 1k\nr2 b 0 1k\nv1 a 0 1\n",  # range error names r2's line
    ".subckt s p q\nr1 p q 1k\nr2 q 0 2k\n.ends\nx1 a 0 s\nr1 a 0 1k\nv1 a 0 1\n",
    "r1 a b 1k\r\nr2 b 0 1k\r\nv1 a 0 1\r\n",
    ".control\nr5 a b 1k\n.endc\nr1 a 0 1k\nv1 a 0 1\n",
    "r1 a b 1k\n.end\nr2 b 0 zz\n",
])
def test_batch_path_equals_line_by_line_on_cases(body):
    assert_same("title\n" + body)


def test_element_limit_names_the_line_inside_a_run():
    text = "title\n" + "".join(f"r{k} n{k} 0 1k\n" for k in range(10))
    lexer.BATCH = True
    with pytest.raises(NetlistError, match=r"net\.cir:6:1: .*limit of 4 elements") as fast:
        parse_text(text, "net.cir", max_elements=4)
    lexer.BATCH = False
    try:
        with pytest.raises(NetlistError) as full:
            parse_text(text, "net.cir", max_elements=4)
    finally:
        lexer.BATCH = True
    assert str(fast.value) == str(full.value)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 10 ** 25), st.integers(-40, 40), st.sampled_from(["", "k", "meg", "m", "u", "mil", "ohm"]))
def test_conductances_are_the_decimal_reciprocal_to_the_last_bit(digits, shift, suffix):
    text = str(digits)
    point = max(0, min(len(text), len(text) + min(shift, 0)))
    value = f"{text[:point]}.{text[point:]}e{max(shift, 0)}{suffix}"
    fields = _LINES.findall(f"r1 a b {value}")
    assert fields and fields[0][0] == "r1"
    expected = reciprocal(parse_literal(value))
    got = conductances(fields)
    if 0 < expected < np.inf:
        assert got == [expected]
    else:
        assert got is None


def test_a_written_drn_is_read_in_runs_and_equals_the_line_by_line_read():
    circuit = deep_resistive_network([6, 5, 2], seed=3)
    text = write_netlist(circuit)
    reader = Reader(lexer.Notes())
    reader.read(text, "drn.cir", None, (), top=True)
    runs = [line for line in reader.lines if isinstance(line, Run)]
    assert sum(len(run) for run in runs) == len(circuit.resistors.names)
    assert_same(text)
    np.testing.assert_array_equal(parse_text(text).resistors.conductance, circuit.resistors.conductance)


def test_bench_netlist_file_times_the_cli_end_to_end(tmp_path):
    from aeqprop_circuits.bench.solve import bench_netlist_file

    path = tmp_path / "drn.cir"
    path.write_text(write_netlist(deep_resistive_network([3, 2, 1], seed=0)))
    row = bench_netlist_file(str(path), repeats=1, ngspice=False)
    assert row["file"] == str(path) and row["ours_s"] > 0 and "ngspice_s" not in row
