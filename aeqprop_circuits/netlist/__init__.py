"""SPICE netlists in and out: `parse_netlist` / `parse_text` compile a `Circuit`, `write_netlist` prints one.

The format (ngspice's DC subset plus `*@` learning annotations) is described in
docs/netlist-format.md.
"""

from .parser import parse_netlist, parse_text, parse_value
from .writer import write_netlist

__all__ = ["parse_netlist", "parse_text", "parse_value", "write_netlist"]
