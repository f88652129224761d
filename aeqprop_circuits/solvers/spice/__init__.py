"""The `spice` solver: ngspice's DC operating point through PySpice's shared-library interface.

A reference, not a fast path: the circuit is written as a netlist (the package's own writer,
with the sample's source values, the given conductances and the nudge as extra elements),
loaded into libngspice and solved by ngspice's DC operating-point analysis. The node voltages
and voltage-source branch currents ngspice reports are read back; energy, KCL residual and the
other branch currents are evaluated with our device equations at ngspice's voltages, so a
result from ngspice is comparable field by field with one from `newton`, `coordinate` or `qp`.
Ideal diodes become exponential stand-ins (`deck`), so ngspice solves an approximation of an
ideal-diode circuit and the result is that of the circuit it solved.

Tolerances: ngspice's defaults (reltol 1e-3, vntol 1e-6 V) stop Newton at millivolt-level
updates. `tight=True` adds `.options` TIGHT_OPTIONS, with which ngspice's last Newton update
is below ~1e-12 V, so its operating point agrees with ours to ~1e-12 V on smooth circuits
(tests/test_spice.py checks <= 1e-9 V).

Many rows of one circuit: `spice_rows()` loads the netlist once and solves every row in one
ngspice `dc` sweep, or by `alter` + `op` per row, with the same result as `spice()`; at DRN-XS
size the sweep takes ~2.6 s of ngspice time per row where `alter` + `op` takes ~18 s and
`spice()` ~35 s (docs/results/drn.md). Both results carry `timing` (SpiceTiming: write, load, analyses,
read seconds).

Modules: `session` (libngspice: load, analyse, read vectors), `deck` (the netlists ngspice
runs), `readout` (ngspice's voltages as a SolveResult), `operating_point` (the entry points).
PySpice is imported only when a solve runs, never at package import.
"""

from aeqprop_circuits.solvers.spice.deck import (
    NEAR_IDEAL_MODEL,
    NGSPICE_MIN_IS,
    OPEN_CONDUCTANCE,
    exponential_equivalent,
    netlist_text,
    with_spice_model,
)
from aeqprop_circuits.solvers.spice.deck import _spice_model_parameters as _spice_model_parameters
from aeqprop_circuits.solvers.spice.operating_point import (
    BENCHMARK_OPTIONS,
    ROW_METHODS,
    TIGHT_OPTIONS,
    spice,
    spice_rows,
)
from aeqprop_circuits.solvers.spice.readout import SpiceResult, SpiceTiming
from aeqprop_circuits.solvers.spice.session import INSTALL_HINT, ngspice_available, ngspice_instance

__all__ = ["spice", "spice_rows", "SpiceResult", "SpiceTiming", "ngspice_available", "ngspice_instance",
           "exponential_equivalent", "with_spice_model", "netlist_text", "TIGHT_OPTIONS", "BENCHMARK_OPTIONS",
           "NEAR_IDEAL_MODEL", "NGSPICE_MIN_IS", "OPEN_CONDUCTANCE", "ROW_METHODS", "INSTALL_HINT"]
