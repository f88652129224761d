"""Deep resistive networks on dense layer blocks: the fast path of `drn:` models (docs/results/drn.md)."""

from aeqprop_circuits.systems.drn.system import DRNState, DRNSystem

__all__ = ["DRNState", "DRNSystem"]
