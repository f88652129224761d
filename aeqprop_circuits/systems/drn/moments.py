"""A layer's share of the contrast in one pass: its weighted sums, its weighted squares and its pulled rows.

The signed DRN's contrast (SignedDRNSystem._contrast) needs, of each free layer stacked over the phases
(rows r with weights c_r = c_k / B), three things: sum_r c_r V_r (the bias gradient), 1/2 sum_r c_r V_r^2
(a row of the update's factors of the blocks on both sides of the layer) and the rows -c_r V_r, summed over
the phases where they share their inputs (the block into the layer's right factor). As numpy calls that is
six passes over the stacked layer and three temporaries; this loop makes one, in tiles of columns.
Compiled with numba (cached on disk), one thread.
"""

from __future__ import annotations

import numba
import numpy as np

from aeqprop_circuits.systems.kernels import FASTMATH

TILE = 1024  # columns per tile: the tiles of the outputs stay in the L1/L2 caches while the rows pass


@numba.njit(nogil=True, fastmath=FASTMATH, boundscheck=False, error_model="numpy", cache=True)
def _weighted(V, weights, negative):
    rows, width = V.shape
    groups = negative.shape[0]
    sums, squares = np.zeros(width, V.dtype), np.zeros(width, V.dtype)
    half = np.ones(1, V.dtype)[0] / 2  # in the layer's dtype: a float literal would promote the loop to float64
    for t0 in range(0, width, TILE):
        t1 = min(width, t0 + TILE)
        negative[:, t0:t1] = 0
        total, square = sums[t0:t1], squares[t0:t1]
        for r in range(rows):
            c, v, pulled = weights[r], V[r, t0:t1], negative[r % groups, t0:t1]
            for j in range(t1 - t0):
                current = c * v[j]
                pulled[j] -= current
                total[j] += current
                square[j] += current * v[j]
        for j in range(t1 - t0):
            square[j] *= half
    return sums, squares


def weighted(V: np.ndarray, weights: np.ndarray, negative: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sum_r w_r V_r, 1/2 sum_r w_r V_r^2) over the rows of V (R, width); writes -sum w_r V_r over the rows
    r = g mod G into row g of `negative` (G, width), G dividing R. All of V's dtype, `negative` C-contiguous."""
    if len(V) % len(negative):
        raise ValueError(f"{len(negative)} rows of pulled currents do not divide the layer's {len(V)}")
    if len(weights) != len(V) or negative.shape[1] != V.shape[1]:
        raise ValueError(f"{len(weights)} weights and {negative.shape[1]} columns of pulled currents for a "
                         f"layer of {V.shape}")
    return _weighted(V, np.ascontiguousarray(weights, dtype=V.dtype), negative)
