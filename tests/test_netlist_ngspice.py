"""ngspice's dialect for DC: each feature of docs/netlist-format.md read as ngspice reads it.

Every deck here is run by ngspice itself (`ngspice -b`, tolerances tightened) and by our
parser and solver; the node potentials must agree to VTOL. Decks ngspice accepts with
analyses we do not run are accepted with a warning.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import warnings

import numpy as np
import pytest

from aeqprop_circuits.netlist import NetlistWarning, parse_text
from aeqprop_circuits.solvers import solve

HAVE_NGSPICE = shutil.which("ngspice") is not None
VTOL = 1e-9  # volts
TIGHT = ".options reltol=1e-12 vntol=1e-15 abstol=1e-18 itl1=1000"


def ngspice_potentials(deck: str, tmp_path) -> dict[str, float]:
    """Node potentials of ngspice's operating point of `deck` (its own .end replaced by ours)."""
    body = re.split(r"^\.end\s*$", deck, flags=re.MULTILINE | re.IGNORECASE)[0]
    text = body.rstrip("\n") + f"\n{TIGHT}\n.control\nset numdgt=17\nop\nprint all\n.endc\n.end\n"
    path = tmp_path / "deck.cir"
    path.write_text(text)
    run = subprocess.run(["ngspice", "-b", str(path)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    values = {re.sub(r"^v\((.*)\)$", r"\1", m[1].lower()): float(m[2])  # numeric nodes print as v(1)
              for m in re.finditer(r"^(\S+) = (\S+)$", run.stdout, re.MULTILINE)}
    potentials = {name: value for name, value in values.items() if "#" not in name}
    assert potentials, run.stdout[-2000:] + run.stderr[-2000:]
    return potentials


def our_potentials(deck: str, tmp_path) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NetlistWarning)
        circuit = parse_text(deck, str(tmp_path / "deck.cir"))
    result = solve(circuit, sources=circuit.source_values(), method="newton", vtol=1e-14)
    assert result.success, result.message
    return {name: float(result.potentials[0, i]) for i, name in enumerate(circuit.node_names) if i}


def assert_agrees_with_ngspice(deck: str, tmp_path) -> float:
    theirs, ours = ngspice_potentials(deck, tmp_path), our_potentials(deck, tmp_path)
    assert set(theirs) <= set(ours), sorted(set(theirs) - set(ours))
    worst = max(abs(ours[name] - volts) for name, volts in theirs.items())
    assert worst <= VTOL, {name: (ours[name], volts) for name, volts in theirs.items()}
    return worst


needs_ngspice = pytest.mark.skipif(not HAVE_NGSPICE, reason="ngspice not installed (apt-get install ngspice)")

SOURCES_WITH_DC_KEYWORD = """dc= on sources
V1 1 0 dc=42
R1 1 2 10k
R2 2 0 30k
I1 0 3 dc=42mA
R3 3 0 1k
V2 4 0 DC = 5 ac=1
R4 4 0 1k
V3 5 0 ac 1 dc 2
R5 5 0 1k
.end
"""

# ngspice: an instance's parameter wins over the subcircuit's default and over its own .param;
# without one, the subcircuit's .param wins over the default; instance values are evaluated
# where the instance is written, defaults after them.
INSTANCE_PARAMETERS = """parameters of instances
.param p=3k
V1 a 0 1
X1 a 0 local p=5k
V2 b 0 1
X2 b 0 local
V3 c 0 1
X3 c 0 chain p=5k
V4 d 0 1
X4 d 0 scaled p={p*2}
V5 e 0 1
X5 e 0 derived
.subckt local n1 n2 p=2k
.param p=1k
R1 n1 n2 {p}
.ends
.subckt chain n1 n2 p=1k q={2*p}
R1 n1 n2 {q}
.ends
.subckt scaled n1 n2 p=1k
R1 n1 n2 {p}
.ends
.subckt derived n1 n2 p=2k
.param q={p*3}
R1 n1 n2 {q}
.ends
.end
"""


def diode_deck(options: str, model: str) -> str:
    return f"""diode at a temperature
V1 in 0 1
R1 in a 1k
D1 a 0 dm
D2 a b dm 2 m=3
R2 b 0 2k
.model dm D ({model})
{options}
.end
"""


TEMPERATURES = [
    (".options temp=50", "IS=2e-14 N=1.5"),
    (".temp 50", "IS=2e-14 N=1.5"),
    (".temp -20", "IS=2e-14 N=1.5"),
    (".options temp=50 tnom=30", "IS=2e-14 N=1.5"),
    (".options temp=50", "IS=2e-14 N=1.5 TNOM=40"),
    (".options temp=75", "IS=1e-15 N=1.1 EG=0.7 XTI=2"),
    (".options temp=60", "IS=2e-14 N=1.2 RS=20 TRS1=0.01 TRS2=1e-4"),
    (".options tnom=10", "IS=2e-14 N=1.5 RS=5"),
    ("", "IS=2e-14 N=1.5 TNOM=27"),
]

ANALYSES_AND_TRANSIENT_SOURCES = """a transient deck
V1 a 0 PULSE(1 2 1n 1n 1n 5n 10n)
R1 a 0 1k
V2 b 0 SIN(0.5 1 1k 1n 0 90)
R2 b 0 1k
V3 c 0 EXP(0.3 1 1n 1n 2n 1n)
R3 c 0 1k
V4 d 0 PWL(1n 0.9 2n 1)
R4 d 0 1k
V5 e 0 DC 3 PULSE(0 1 1n)
R5 e f 1k
R6 f 0 2k
I1 0 g 0.125 SIN(0 1m 1k)
R7 g 0 1k
.tran 1n 100n
.ac dec 10 1 1meg
.print tran v(a)
.control
run
.endc
.end
"""


LINES_PARAMETERS_SUBCIRCUITS = """lines, parameters, expressions and subcircuits
* a comment line
.param r0=10k half={r0/2}
.param e1={sqrt(16)*1k} e2={exp(1)*1k} e3={log(100)*1k} e4={ln(100)*1k} e5={log10(1000)*1k}
.param e6={abs(-2)*1k} e7={min(3,4)*1k} e8={max(3,4)*1k} e9={pow(2,3)*1k} e10={2**3*1k} e11={2^3*1k}
Vin IN gnd DC 2 ; inline comment
R1 in a {half} $ dollar comment
R2 a 0
+ {r0}
RE1 a b1 {e1}
RE2 b1 b2 {e2}
RE3 b2 b3 {e3}
RE4 b3 b4 {e4}
RE5 b4 b5 {e5}
RE6 b5 b6 {e6}
RE7 b6 b7 {e7}
RE8 b7 b8 {e8}
RE9 b8 b9 {e9}
RE10 b9 b10 'e10'
RE11 b10 0 {e11}
X1 a c stage rin=22k
X2 a d stage
.subckt stage p q params: rin=10k
.subckt inner n
R1 n 0 {rin}
.ends inner
R1 p m {rin}
X1 m inner
R2 m q 1k
.ends stage
RC c 0 5k
RD d 0 5k
.include part.inc
.title renamed
.end
R9 never read
"""


@needs_ngspice
def test_lines_parameters_and_subcircuits_agree_with_ngspice(tmp_path):
    (tmp_path / "part.inc").write_text("* an included file has no title\nRI c e 2k\nII 0 e 1m\n")
    assert_agrees_with_ngspice(LINES_PARAMETERS_SUBCIRCUITS, tmp_path)


@needs_ngspice
def test_dc_keyword_forms_of_sources_agree_with_ngspice(tmp_path):
    assert_agrees_with_ngspice(SOURCES_WITH_DC_KEYWORD, tmp_path)
    values = parse_text(SOURCES_WITH_DC_KEYWORD).sources.value.tolist()
    assert values == [42.0, 0.042, 5.0, 2.0]


@needs_ngspice
def test_instance_parameters_take_precedence_as_in_ngspice(tmp_path):
    assert_agrees_with_ngspice(INSTANCE_PARAMETERS, tmp_path)
    resistance = 1 / parse_text(INSTANCE_PARAMETERS).resistors.conductance
    np.testing.assert_allclose(resistance, [5e3, 1e3, 10e3, 6e3, 6e3])


@needs_ngspice
@pytest.mark.parametrize("options, model", TEMPERATURES, ids=[f"{o} {m}" for o, m in TEMPERATURES])
def test_diode_temperature_follows_ngspice(options, model, tmp_path):
    assert_agrees_with_ngspice(diode_deck(options, model), tmp_path)


def test_temperature_moves_the_operating_point_and_is_kept():
    hot = parse_text(diode_deck(".options temp=50", "IS=2e-14 N=1.5"))
    nominal = parse_text(diode_deck("", "IS=2e-14 N=1.5"))
    assert hot.diodes.temperature == 50.0 and nominal.diodes.temperature == 27.0
    assert hot.diodes.saturation_current[0] > 5 * nominal.diodes.saturation_current[0]
    a = hot.node_index["a"]
    shift = solve(hot).potentials[0, a] - solve(nominal).potentials[0, a]
    assert shift < -0.01  # about 20 mV here: what a silently ignored temperature costs


@needs_ngspice
def test_decks_with_analyses_and_transient_sources_give_ngspice_operating_point(tmp_path):
    with pytest.warns(NetlistWarning) as caught:
        circuit = parse_text(ANALYSES_AND_TRANSIENT_SOURCES, "deck.cir")
    messages = [(w.lineno, str(w.message)) for w in caught]
    assert (15, ".tran is not run: only the DC operating point is computed") in messages
    assert (16, ".ac is not run: only the DC operating point is computed") in messages
    assert (18, ".control block skipped: only the DC operating point is computed") in messages
    assert all(w.filename == "deck.cir" for w in caught)
    assert circuit.sources.value.tolist() == [1.0, 1.5, 0.3, 0.9, 3.0, 0.125]
    assert_agrees_with_ngspice(ANALYSES_AND_TRANSIENT_SOURCES, tmp_path)


@needs_ngspice
def test_units_and_gmin_are_read_as_ngspice_reads_them(tmp_path):
    deck = """units
V1 in 0 3V
R1 in a 1kOhm
R2 a 0 4.7megohm
I1 0 a 10uA
D1 a 0 dm
.model dm D (IS=1e-14)
.options gmin=1e-9
.end
"""
    assert_agrees_with_ngspice(deck, tmp_path)


def test_title_line_annotations_are_warned_about_not_read():
    with pytest.warns(NetlistWarning, match="first line of a netlist is its title"):
        circuit = parse_text("*@ output a\nV1 a 0 1\nR1 a b 1k\nR2 b 0 1k\n")
    assert circuit.n_outputs == 0


def test_written_netlist_keeps_the_temperature():
    from aeqprop_circuits.netlist import write_netlist

    circuit = parse_text(diode_deck(".temp 42.5", "IS=2e-14 N=1.5 RS=3"))
    text = write_netlist(circuit)
    assert ".options temp=42.5 tnom=42.5" in text
    again = parse_text(text)
    assert again.diodes.temperature == 42.5
    np.testing.assert_array_equal(again.diodes.saturation_current, circuit.diodes.saturation_current)
    np.testing.assert_array_equal(again.resistors.conductance, circuit.resistors.conductance)


DECKS = {"lines, parameters, subcircuits": LINES_PARAMETERS_SUBCIRCUITS, "dc=": SOURCES_WITH_DC_KEYWORD,
         "instance parameters": INSTANCE_PARAMETERS, "analyses": ANALYSES_AND_TRANSIENT_SOURCES,
         **{f"{options} {model}": diode_deck(options, model) for options, model in TEMPERATURES}}


@pytest.mark.parametrize("deck", DECKS.values(), ids=DECKS.keys())
def test_what_check_accepts_solve_solves(deck, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from aeqprop_circuits.cli.circuits import check
    from aeqprop_circuits.cli.circuits import solve as solve_command

    monkeypatch.chdir(tmp_path)
    (tmp_path / "part.inc").write_text("RI c e 2k\nII 0 e 1m\n")
    (tmp_path / "deck.cir").write_text(deck)
    for command in (check, solve_command):
        result = CliRunner().invoke(command, ["deck.cir"])
        assert result.exit_code == 0, result.output
