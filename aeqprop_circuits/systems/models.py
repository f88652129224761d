"""From what a user names on the command line to a PhysicalSystem.

A model is a netlist file (`iris.cir`), a deep-resistive-network spec (`drn:1568-100-10`,
the builder's circuit, or with the option circuit="signed" the universal-DRN code's) or a
Hopfield spec (`hopfield:784-2048-10`, `conv:...`, `dchn:...`). Model options are checked
against the builder's keywords before anything is built: an unknown one is an error that
lists the valid ones.
"""

from __future__ import annotations

import difflib
import inspect
import os

from aeqprop_circuits.errors import AeqpropError

HOPFIELD_KINDS = ("hopfield", "conv", "dchn")
HOPFIELD_OPTIONS = ("width", "init", "bias_init", "gains", "output_bounds", "bounds", "precision", "schedule",
                    "threshold", "max_iterations", "cost_scale", "adaptive_threshold", "gamma", "input_padding")


def model_kind(model: str) -> str:
    """'netlist', 'drn' or 'hopfield'."""
    prefix = model.split(":", 1)[0] if ":" in model else ""
    if prefix == "drn":
        return "drn"
    if prefix in HOPFIELD_KINDS:
        return "hopfield"
    return "netlist"


def model_option_names(model: str, options: dict | None = None) -> tuple[str, ...]:
    """The option names a model takes (the builder's keywords); none for a netlist."""
    kind = model_kind(model)
    if kind == "hopfield":
        return HOPFIELD_OPTIONS
    if kind == "netlist":
        return ()
    from aeqprop_circuits.systems.drn.signed import SignedDRNSystem
    from aeqprop_circuits.systems.drn.system import DRNSystem

    signed = (options or {}).get("circuit") == "signed"
    builder = SignedDRNSystem if signed else DRNSystem
    names = [name for name, p in inspect.signature(builder.__init__).parameters.items()
             if p.kind == p.KEYWORD_ONLY and name != "seed"]
    return ("circuit", *names)


def check_model_options(model: str, options: dict) -> None:
    """Refuse option names the model does not take, naming the valid ones (and the closest match)."""
    valid = model_option_names(model, options)
    for key in options:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            listed = ", ".join(valid) if valid else "none: a netlist's settings are in the netlist"
            raise AeqpropError(f"model option '{key}'{hint} is not an option of {model}; valid: {listed}")


def load_circuit(model: str, seed: int = 0, spice: bool = False, **options):
    """A compiled Circuit from a netlist path or a drn: spec; `spice` keeps the elements only ngspice models."""
    if model.startswith("drn:"):
        from aeqprop_circuits.circuit.builder import deep_resistive_network, parse_drn_spec

        return deep_resistive_network(parse_drn_spec(model), seed=seed, **options)
    if not os.path.exists(model):
        raise AeqpropError(f"{model}: no such netlist file (or model spec like drn:1568-100-10)")
    from aeqprop_circuits.netlist import parse_netlist

    return parse_netlist(model, spice=spice)


def load_system(model: str, solver: str = "auto", seed: int = 0, **options):
    """A PhysicalSystem ready to train."""
    check_model_options(model, options)
    kind = model_kind(model)
    if kind == "hopfield":
        from aeqprop_circuits.systems.hopfield import build_model

        return build_model(model, seed=seed, **options)
    if kind == "netlist":
        from aeqprop_circuits.systems.circuit import CircuitSystem

        return CircuitSystem(load_circuit(model, spice=solver == "spice"), solver=solver)
    circuit = options.pop("circuit", "window")
    if circuit == "signed":  # the universal-DRN code's circuit (drn/signed.py); no netlist-solver path
        if solver not in ("auto", "layered"):
            raise AeqpropError(f"solver '{solver}': the signed DRN circuit is settled by its own dense layered "
                               "block descent only (use --solver auto); its netlist is SignedDRNSystem.circuit()")
        from aeqprop_circuits.systems.drn.signed import SignedDRNSystem

        return SignedDRNSystem.from_spec(model, seed=seed, **options)
    if circuit != "window":
        raise AeqpropError(f"circuit '{circuit}': expected window (the builder's DRN) or signed (the universal-DRN "
                           "code's excitatory/inhibitory units, bias currents, single outputs)")
    if solver in ("auto", "layered"):  # dense layer blocks: the DRN's own fast path (docs/explanation/solvers.md)
        from aeqprop_circuits.systems.drn import DRNSystem

        return DRNSystem.from_spec(model, seed=seed, **options)
    from aeqprop_circuits.systems.circuit import CircuitSystem

    return CircuitSystem(load_circuit(model, seed=seed, **options), solver=solver)
