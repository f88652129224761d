"""Products with a large, narrow weight block (a wide layer into a few nodes) on all cores.

DRN-XL's relaxation multiplies its 4 x 10 outputs by the 10 x 32 768 transpose of its output block, and
its 4 x 32 768 hidden layer by that block, 12 times each per training step. OpenBLAS runs these shapes at
a fraction of the rate the block's 1.3 MB allow: one thread, and kernels made for a wide inner dimension.
These loops run over the block's transpose (narrow x wide, C-contiguous, kept by the caller per theta) in
tiles of its columns shared out among numba's threads, so every inner loop is a unit-stride loop over the
wide dimension, and the results do not depend on the number of threads.
"""

from __future__ import annotations

import numba
import numpy as np

_FASTMATH = {"contract", "arcp", "nsz", "reassoc"}  # fused multiply-adds, sums vectorised; not "nnan"
TILE = 2048  # columns of the block's transpose per tile: a tile of it and of the rows it meets stay in L1/L2


@numba.njit(parallel=True, fastmath=_FASTMATH, boundscheck=False, error_model="numpy", cache=True)
def _times(V, WT, out):
    B, narrow = V.shape
    wide = WT.shape[1]
    for t in numba.prange((wide + TILE - 1) // TILE):
        t0, t1 = t * TILE, min(wide, (t + 1) * TILE)
        for b in range(B):
            row = out[b, t0:t1]
            row[:] = 0
            for o in range(narrow):
                v, w = V[b, o], WT[o, t0:t1]
                for j in range(t1 - t0):
                    row[j] += v * w[j]


@numba.njit(parallel=True, fastmath=_FASTMATH, boundscheck=False, error_model="numpy", cache=True)
def _times_transpose(V, WT):
    B, wide = V.shape
    narrow = WT.shape[0]
    tiles = (wide + TILE - 1) // TILE
    parts = np.zeros((tiles, B, narrow), V.dtype)  # per tile, not per thread: the sums do not depend on the threads
    for t in numba.prange(tiles):
        t0, t1 = t * TILE, min(wide, (t + 1) * TILE)
        for b in range(B):
            v = V[b, t0:t1]
            for o in range(narrow):
                w = WT[o, t0:t1]
                total = parts[t, b, o]
                for j in range(t1 - t0):
                    total += v[j] * w[j]
                parts[t, b, o] = total
    out = np.zeros((B, narrow), V.dtype)
    for t in range(tiles):  # in order
        out += parts[t]
    return out


def times(V: np.ndarray, WT: np.ndarray) -> np.ndarray:
    """V @ WT: V (B, narrow), WT (narrow, wide) C-contiguous, both of one dtype; a new (B, wide) array."""
    out = np.empty((len(V), WT.shape[1]), dtype=WT.dtype)
    _times(np.ascontiguousarray(V, dtype=WT.dtype), WT, out)
    return out


def times_transpose(V: np.ndarray, WT: np.ndarray) -> np.ndarray:
    """V @ WT.T: V (B, wide), WT (narrow, wide) C-contiguous, both of one dtype; a new (B, narrow) array."""
    return _times_transpose(np.ascontiguousarray(V, dtype=WT.dtype), WT)
