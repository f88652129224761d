"""From what a user names on the command line to a PhysicalSystem.

A model is a netlist file (`iris.cir`), a deep-resistive-network spec (`drn:1568-100-10`)
or a Hopfield spec handled by `aeqprop_circuits.systems.hopfield` (`hopfield:784-2048-10`, ...).
"""

from __future__ import annotations

import os

from aeqprop_circuits.errors import AeqpropError


def load_circuit(model: str, seed: int = 0, **options):
    """A compiled Circuit from a netlist path or a drn: spec."""
    if model.startswith("drn:"):
        from aeqprop_circuits.circuit.builder import deep_resistive_network, parse_drn_spec

        return deep_resistive_network(parse_drn_spec(model), seed=seed, **options)
    if not os.path.exists(model):
        raise AeqpropError(f"{model}: no such netlist file (or model spec like drn:1568-100-10)")
    from aeqprop_circuits.netlist import parse_netlist

    return parse_netlist(model)


def load_system(model: str, solver: str = "auto", seed: int = 0, **options):
    """A PhysicalSystem ready to train."""
    if model.split(":", 1)[0] in ("hopfield", "conv", "dchn"):
        try:
            from aeqprop_circuits.systems.hopfield import build_model
        except ImportError as err:
            raise AeqpropError(f"{model}: the Hopfield module is not available ({err})") from None
        return build_model(model, seed=seed, **options)
    circuit = options.pop("circuit", "window") if model.startswith("drn:") else None
    if circuit == "signed":  # the universal-DRN code's circuit (drn/signed.py); no netlist-solver path
        if solver not in ("auto", "coordinate"):
            raise AeqpropError(f"solver '{solver}': the signed DRN circuit is settled by its own block coordinate "
                               "descent only (use --solver auto); its netlist is SignedDRNSystem.circuit()")
        from aeqprop_circuits.systems.drn.signed import SignedDRNSystem
        return SignedDRNSystem.from_spec(model, seed=seed, **options)
    if circuit not in (None, "window"):
        raise AeqpropError(f"circuit '{circuit}': expected window (the builder's DRN) or signed (the universal-DRN "
                           "code's excitatory/inhibitory units, bias currents, single outputs)")
    if model.startswith("drn:") and solver in ("auto", "coordinate"):  # dense-block fast path (docs/drn.md)
        from aeqprop_circuits.systems.drn import DRNSystem
        return DRNSystem.from_spec(model, seed=seed, **options)
    from aeqprop_circuits.systems.circuit import CircuitSystem

    return CircuitSystem(load_circuit(model, seed=seed, **options), solver=solver)
