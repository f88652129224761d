"""`aeqprop check` and `aeqprop solve`: a netlist validated, and its DC operating point."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import warnings

import click
import numpy as np

from aeqprop_circuits.cli.common import user_errors
from aeqprop_circuits.errors import AeqpropError, CircuitError
from aeqprop_circuits.netlist.parser import DEFAULT_MAX_ELEMENTS, NetlistWarning
from aeqprop_circuits.solvers import SOLVER_NAMES

MAX_ELEMENTS_HELP = "Refuse a netlist whose subcircuits expand to more elements than this."


@contextlib.contextmanager
def _shown_warnings(collected: list[str]):
    """Netlist warnings as one line each on stderr ('Warning: file:line: ...'), also kept in `collected`."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NetlistWarning)
        yield
    for warning in caught:
        if issubclass(warning.category, NetlistWarning):
            text = f"{warning.filename}:{warning.lineno}: {warning.message}"
            collected.append(text)
            click.echo(f"Warning: {text}", err=True)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


def _load(netlist: str, max_elements: int, collected: list[str], spice: bool = False):
    """The compiled circuit of a netlist file (or drn: spec), its warnings shown; `spice` keeps elements for ngspice."""
    from aeqprop_circuits.systems.models import load_circuit

    if netlist.startswith("drn:") or not os.path.exists(netlist):
        return load_circuit(netlist)
    from aeqprop_circuits.netlist import parse_netlist

    with _shown_warnings(collected):
        return parse_netlist(netlist, max_elements=max_elements, spice=spice)


def preflight(circuit):
    """What `aeqprop check` asks of a compiled circuit: a well-posed structure (no floating node,
    no loop of voltage sources), outputs that can move, and an operating point at the netlist's
    source values found by the solver `aeqprop solve` uses. Returns that solve; AeqpropError if not."""
    from aeqprop_circuits.circuit.topology import build_topology, check_outputs
    from aeqprop_circuits.solvers import solve as solve_circuit

    if not circuit.spice_only:  # (ngspice judges the structure of a circuit with devices of its own)
        check_outputs(circuit, build_topology(circuit))
    result = solve_circuit(circuit)
    if not result.success:
        raise AeqpropError(f"no operating point at the netlist's source values: {result.message}")
    return result


def solvers(circuit, result) -> dict:
    """Which solvers can run a circuit: the built-in ones (and which `auto` takes) and ngspice."""
    from aeqprop_circuits.solvers.spice import ngspice_available

    if circuit.spice_only:
        return {"built_in": False, "spice": True,
                "reason": f"{circuit.spice_only.describe()}: modelled by ngspice alone (--solver spice)"}
    return {"built_in": True, "auto": result.solver, "spice": ngspice_available()}


@click.command()
@click.argument("netlist")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--max-elements", type=click.IntRange(min=1), default=DEFAULT_MAX_ELEMENTS, show_default=True,
              help=MAX_ELEMENTS_HELP)
@user_errors
def check(netlist, as_json, max_elements):
    """Pre-flight a netlist (or drn: spec): its text, its structure, its outputs, and a solve at its
    netlist values; exit 0 only if training and `aeqprop solve` can use it."""
    notes: list[str] = []
    circuit = _load(netlist, max_elements, notes, spice=True)
    try:
        result = preflight(circuit)
    except CircuitError:
        raise  # names the file and line itself
    except AeqpropError as err:
        raise AeqpropError(f"{netlist}: {err}") from None
    summary = circuit.summary()
    summary["solve"] = {"solver": result.solver, "iterations": result.iterations, "residual": result.residual}
    summary["solvers"] = solvers(circuit, result)
    if as_json:
        click.echo(json.dumps({**summary, "warnings": notes}))
        return
    click.echo(f"{netlist}: ok — {summary['title']}")
    for key in ("nodes", "resistors", "diodes", "ideal_diodes", "voltage_sources", "current_sources", "trainable"):
        click.echo(f"  {key.replace('_', ' '):16s} {summary[key]}")
    click.echo(f"  {'inputs':16s} {', '.join(summary['inputs']) or '-'}")
    click.echo(f"  {'outputs':16s} {', '.join(summary['outputs']) or '-'}")
    click.echo(f"  {'temperature':16s} {summary['temperature']:g} degC")
    usable = summary["solvers"]
    if circuit.spice_only:
        click.echo(f"  {'ngspice only':16s} {circuit.spice_only.describe()}")
        click.echo(f"  {'solvers':16s} spice only: the built-in solvers do not model these elements")
        click.echo(f"  {'settles':16s} spice (ngspice .op)")
        return
    click.echo(f"  {'solvers':16s} built-in (auto runs {usable['auto']})"
               + (" and spice" if usable["spice"] else "; spice needs ngspice, which is not installed"))
    click.echo(f"  {'settles':16s} {result.solver}, {result.iterations} iterations, "
               f"KCL residual {result.residual:.1e} A")


def _parse_settings(settings, circuit):
    values = circuit.sources.value.copy()
    names = {name: k for k, name in enumerate(circuit.sources.names)}
    for item in settings:
        name, _, value = item.partition("=")
        if name.lower() not in names or not value:
            raise AeqpropError(f"--set {item}: expected SOURCE=VALUE with a source of the netlist "
                               f"({', '.join(circuit.sources.names)})")
        from aeqprop_circuits.netlist.parser import parse_value

        values[names[name.lower()]] = parse_value(value, f"--set {name}")
    return values[None, :]


@click.command()
@click.argument("netlist")
@click.option("--solver", default="auto", show_default=True,
              type=click.Choice(SOLVER_NAMES))
@click.option("--set", "settings", multiple=True, metavar="SOURCE=VALUE", help="Override a source value.")
@click.option("--json", "as_json", is_flag=True, help="Print the operating point as JSON.")
@click.option("--max-elements", type=click.IntRange(min=1), default=DEFAULT_MAX_ELEMENTS, show_default=True,
              help=MAX_ELEMENTS_HELP)
@user_errors
def solve(netlist, solver, settings, as_json, max_elements):
    """DC operating point of a netlist."""
    from aeqprop_circuits.solvers import solve as solve_circuit

    circuit = _load(netlist, max_elements, [], spice=solver in ("auto", "spice"))
    result = solve_circuit(circuit, sources=_parse_settings(settings, circuit), method=solver)
    named = ~circuit.internal
    nodes = {name: float(result.potentials[0, i]) for i, name in enumerate(circuit.node_names)
             if named[i] and i > 0}
    currents = {}
    groups = {"resistors": circuit.resistors.names, "diodes": circuit.diodes.names,
              "ideal_diodes": circuit.ideal_diodes.names}
    for group, names in groups.items():
        currents.update({n: float(i) for n, i in zip(names, result.currents.get(group, np.zeros((1, 0)))[0])})
    src = circuit.sources
    currents.update({n: float(i) for n, i in zip(np.array(src.names)[src.is_voltage],
                                                 result.currents["voltage_sources"][0])})
    currents.update({n: float(i) for n, i in zip(np.array(src.names)[~src.is_voltage],
                                                 result.currents["current_sources"][0])})
    if as_json:
        click.echo(json.dumps({"nodes": nodes, "currents": currents, "energy": float(result.energy[0]),
                               "solver": result.solver, "iterations": result.iterations,
                               "residual": result.residual, "success": result.success}))
    else:
        click.echo(f"{netlist}: {result.message} ({result.solver}, {result.iterations} iterations, "
                   f"KCL residual {result.residual:.2e} A, co-content {result.energy[0]:.6g} W)")
        table = [f"{'node':>20s} {'volts':>16s}", *(f"{name:>20s} {v:16.9g}" for name, v in nodes.items()),
                 f"{'element':>20s} {'amperes':>16s}", *(f"{name:>20s} {i:16.9g}" for name, i in currents.items())]
        click.echo("\n".join(table))  # one write: a netlist may have 10^6 elements
    if not result.success:
        click.echo(f"Error: {result.message}", err=True)
        sys.exit(2)
