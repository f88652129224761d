"""Deep resistive networks on dense layer blocks: the fast path of `drn:` models (docs/drn.md)."""

from .presets import PRESETS
from .system import DRNState, DRNSystem

__all__ = ["PRESETS", "DRNState", "DRNSystem"]
