"""SPICE netlists in and out: `parse_netlist` / `parse_text` compile a `Circuit`, `write_netlist` prints one.

The format (ngspice's DC subset plus `*@` learning annotations) is described in
docs/netlist-format.md.
"""

from aeqprop_circuits.netlist.parser import NetlistWarning, parse_netlist, parse_text, parse_value
from aeqprop_circuits.netlist.writer import write_netlist

__all__ = ["parse_netlist", "parse_text", "parse_value", "write_netlist", "NetlistWarning"]
