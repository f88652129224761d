"""A dense layer's last add and its clip to the box in one pass.

In the in-place relaxation of a dense Hopfield net (HopfieldNetwork._relax_dense) a layer's update ends
with an add (the input drive, its bias, or the current from the layer ahead) and the clip to the layer's
box: two numpy calls over the (R, n) layer, each with its own call cost, where at 16 x 1024 an
iteration's products take about 13 us. This loop makes the two one pass. The arithmetic is numpy's: a
float add, then np.clip's max and min, a NaN kept a NaN. Compiled with numba (cached on disk), one thread.
"""

from __future__ import annotations

import numba


@numba.njit(nogil=True, boundscheck=False, error_model="numpy", cache=True)
def add_clip(s, term, low, high):
    """s <- clip(s + term, low, high) in place. s (R, n) C-contiguous; term (R', n) with R' dividing R, row b of
    s taking row b mod R' (a bias as one row); low, high scalars of s's dtype (+-inf for an open side)."""
    rows = term.shape[0]
    for b in range(s.shape[0]):
        row, added = s[b], term[b % rows]
        for j in range(s.shape[1]):
            value = row[j] + added[j]
            value = value if value > low or value != value else low
            row[j] = value if value < high or value != value else high
