"""Copies of one circuit side by side in a single circuit: R devices that settle in one solve.

`replicate(circuit, copies)` joins R disjoint copies of a circuit at ground. Copy r keeps every
element, source and annotation of the original; its nodes are renamed `name_r`. The layout is
copy-major everywhere, so that reshaping recovers the copies:

- data inputs (B, R n_inputs): columns r n_inputs ... (r + 1) n_inputs drive copy r;
- outputs (B, R n_outputs): copy r's outputs in the original order;
- trainable conductances (R P,): copy r's P conductances, bounds repeated.

A bilevel system uses it to give every task of a batch its own conductances while one settle
serves them all (the solvers share conductances across a batch, not across copies).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from aeqprop_circuits.circuit.circuit import Circuit, IdealDiodes, Learning, Resistors, Sources


def _shifted(nodes: np.ndarray, copies: int, n_nodes: int) -> np.ndarray:
    """Node pairs of each copy, copy r's non-ground nodes moved up by r (n_nodes - 1)."""
    shift = (np.arange(copies) * (n_nodes - 1))[:, None, None]
    return np.where(nodes[None] == 0, 0, nodes[None] + shift).reshape(-1, 2)


def _names(names: tuple[str, ...], copies: int) -> tuple[str, ...]:
    return tuple(f"{name}_{r}" for r in range(copies) for name in names)


def replicate(circuit: Circuit, copies: int) -> Circuit:
    """`copies` disjoint copies of `circuit` in one circuit (see the module docstring for the layout)."""
    if copies < 1:
        raise ValueError(f"replicate: expected at least one copy, got {copies}")
    n = circuit.n_nodes

    def pairs(nodes):
        return _shifted(np.asarray(nodes, dtype=np.int64).reshape(-1, 2), copies, n)

    res, dio, ideal, src, learn = (circuit.resistors, circuit.diodes, circuit.ideal_diodes, circuit.sources,
                                   circuit.learning)
    n_res = len(res.names)
    input_map = np.kron(np.eye(copies), learn.input_map) if learn.input_map.size else learn.input_map
    learning = Learning(
        input_sources=_names(learn.input_sources, copies), input_map=input_map,
        output_names=_names(learn.output_names, copies), outputs=pairs(learn.outputs),
        trainable=(learn.trainable[None, :] + n_res * np.arange(copies)[:, None]).ravel(),
        low=np.tile(learn.low, copies), high=np.tile(learn.high, copies), g0=learn.g0)
    return Circuit(
        f"{copies} x {circuit.title}", ("0",) + _names(circuit.node_names[1:], copies),
        Resistors(_names(res.names, copies), pairs(res.nodes), np.tile(res.conductance, copies)),
        replace(dio, names=_names(dio.names, copies), nodes=pairs(dio.nodes),
                saturation_current=np.tile(dio.saturation_current, copies), emission=np.tile(dio.emission, copies)),
        IdealDiodes(_names(ideal.names, copies), pairs(ideal.nodes), ideal.spice_model),
        Sources(_names(src.names, copies), pairs(src.nodes), np.tile(src.value, copies),
                np.tile(src.is_voltage, copies)),
        learning, internal=np.concatenate([[False], np.tile(circuit.internal[1:], copies)]))


__all__ = ["replicate"]
