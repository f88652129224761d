"""A signed DRN's hidden-layer update in one pass: the currents' sum, over the conductance sums, clipped to the
diodes' sign windows.

A hidden node's exact update is (current from the layer ahead + current from behind, bias included) / its
conductance sum, clipped to [0, inf) in the excitatory half of the layer and (-inf, 0] in the inhibitory
half. As numpy calls that is four passes over the layer (an add, a divide, two clips); this loop makes it
one. The arithmetic is numpy's, operation for operation (an add, then a true division), so the results
are the same to the last bit. Compiled with numba (cached on disk), one thread.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(nogil=True, boundscheck=False, error_model="numpy", cache=True)
def _update(ahead, behind, D, excitatory):
    zero = np.zeros(1, ahead.dtype)[0]  # in the layer's dtype: a literal 0 would promote the loop to float64
    width, shared = ahead.shape[1], behind.shape[0]
    D_in, D_out = D[:excitatory], D[excitatory:]
    for b in range(ahead.shape[0]):
        head, tail = ahead[b, :excitatory], ahead[b, excitatory:]
        from_head, from_tail = behind[b % shared, :excitatory], behind[b % shared, excitatory:]
        for j in range(excitatory):
            value = (head[j] + from_head[j]) / D_in[j]
            head[j] = zero if value < zero else value
        for j in range(width - excitatory):
            value = (tail[j] + from_tail[j]) / D_out[j]
            tail[j] = zero if value > zero else value


def update(ahead: np.ndarray, behind: np.ndarray, D: np.ndarray, excitatory: int) -> np.ndarray:
    """ahead <- clip((ahead + behind) / D) in place, to [0, inf) on its first `excitatory` columns and to
    (-inf, 0] on the others; returns ahead. ahead (B, width) C-contiguous; D (width,); behind (B', width)
    with B' dividing B, row b of ahead taking row b mod B' (phases stacked in ahead share their drive)."""
    if len(ahead) % len(behind):
        raise ValueError(f"{len(behind)} rows of current from behind do not divide the layer's {len(ahead)}")
    if behind.shape[1] != ahead.shape[1] or len(D) != ahead.shape[1]:
        raise ValueError(f"currents of widths {ahead.shape[1]} and {behind.shape[1]} over {len(D)} conductance sums")
    dtype = ahead.dtype
    _update(ahead, np.ascontiguousarray(behind, dtype=dtype), np.ascontiguousarray(D, dtype=dtype), excitatory)
    return ahead
