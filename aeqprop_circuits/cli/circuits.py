"""`aeqprop check` and `aeqprop solve`: a netlist validated, and its DC operating point."""

from __future__ import annotations

import json
import sys

import click
import numpy as np

from aeqprop_circuits.cli.common import user_errors
from aeqprop_circuits.errors import AeqpropError
from aeqprop_circuits.solvers import SOLVER_NAMES


@click.command()
@click.argument("netlist")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@user_errors
def check(netlist, as_json):
    """Validate a netlist (or drn: spec) and summarise it."""
    from aeqprop_circuits.circuit.topology import build_topology
    from aeqprop_circuits.systems.models import load_circuit

    circuit = load_circuit(netlist)
    build_topology(circuit)  # floating nodes, source loops
    summary = circuit.summary()
    if as_json:
        click.echo(json.dumps(summary))
        return
    click.echo(f"{netlist}: ok — {summary['title']}")
    for key in ("nodes", "resistors", "diodes", "ideal_diodes", "voltage_sources", "current_sources", "trainable"):
        click.echo(f"  {key.replace('_', ' '):16s} {summary[key]}")
    click.echo(f"  {'inputs':16s} {', '.join(summary['inputs']) or '-'}")
    click.echo(f"  {'outputs':16s} {', '.join(summary['outputs']) or '-'}")


def _parse_settings(settings, circuit):
    values = circuit.sources.value.copy()
    names = {name: k for k, name in enumerate(circuit.sources.names)}
    for item in settings:
        name, _, value = item.partition("=")
        if name.lower() not in names or not value:
            raise AeqpropError(f"--set {item}: expected SOURCE=VALUE with a source of the netlist "
                               f"({', '.join(circuit.sources.names)})")
        from aeqprop_circuits.netlist.parser import parse_value

        values[names[name.lower()]] = parse_value(value)
    return values[None, :]


@click.command()
@click.argument("netlist")
@click.option("--solver", default="auto", show_default=True,
              type=click.Choice(SOLVER_NAMES))
@click.option("--set", "settings", multiple=True, metavar="SOURCE=VALUE", help="Override a source value.")
@click.option("--json", "as_json", is_flag=True, help="Print the operating point as JSON.")
@user_errors
def solve(netlist, solver, settings, as_json):
    """DC operating point of a netlist."""
    from aeqprop_circuits.solvers import solve as solve_circuit
    from aeqprop_circuits.systems.models import load_circuit

    circuit = load_circuit(netlist)
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
        click.echo(f"{'node':>20s} {'volts':>16s}")
        for name, v in nodes.items():
            click.echo(f"{name:>20s} {v:16.9g}")
        click.echo(f"{'element':>20s} {'amperes':>16s}")
        for name, i in currents.items():
            click.echo(f"{name:>20s} {i:16.9g}")
    if not result.success:
        click.echo(f"Error: {result.message}", err=True)
        sys.exit(2)


# --- learning ---------------------------------------------------------------------------------
