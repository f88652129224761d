"""Products with a large, narrow weight block (a wide layer into a few nodes) on all cores.

DRN-XL's relaxation multiplies its 4 x 10 outputs by the 10 x 32 768 transpose of its output block, and
its 4 x 32 768 hidden layer by that block, 8 times each per training step. OpenBLAS runs these shapes at
a fraction of the rate the block's 1.3 MB allow: one thread, and kernels made for a wide inner dimension.
These loops run over the block's transpose (narrow x wide, C-contiguous, kept by the caller per theta) in
tiles of its columns shared out among numba's threads, so every inner loop is a unit-stride loop over the
wide dimension, and the results do not depend on the number of threads. Each pass over a tile row takes
five rows of the transpose at once (`_add_products`, `_add_dots`): a tile row is then loaded and stored
once per five multiply-adds instead of once per one, which is what bounds these loops.

`descend` updates such a block on its transpose, in tiles on all cores, writing both layouts: the transpose
stays valid for the next step's products, and the update's column and row sums (the conductance sums) come
from the same pass.
"""

from __future__ import annotations

import numba
import numpy as np

from aeqprop_circuits.systems.kernels import FASTMATH_SUMS

TILE = 1024  # columns of the block's transpose per tile: a tile of it and of the rows it meets stay in L1/L2


_JIT = dict(fastmath=FASTMATH_SUMS, boundscheck=False, error_model="numpy", cache=True)


@numba.njit(**_JIT)
def _add_products(v, M, t0, t1, row):
    """row[:] += sum_o v[o] M[o, t0:t1] (row: the tile's t1 - t0 values), five rows of M per pass over row."""
    o, count = 0, len(v)
    while o + 5 <= count:
        v0, v1, v2, v3, v4 = v[o], v[o + 1], v[o + 2], v[o + 3], v[o + 4]
        m0, m1, m2, m3, m4 = M[o, t0:t1], M[o + 1, t0:t1], M[o + 2, t0:t1], M[o + 3, t0:t1], M[o + 4, t0:t1]
        for j in range(t1 - t0):
            row[j] += v0 * m0[j] + v1 * m1[j] + v2 * m2[j] + v3 * m3[j] + v4 * m4[j]
        o += 5
    while o < count:
        v0, m0 = v[o], M[o, t0:t1]
        for j in range(t1 - t0):
            row[j] += v0 * m0[j]
        o += 1


@numba.njit(**_JIT)
def _add_dots(row, M, t0, t1, out):
    """out[o] += row . M[o, t0:t1] for every row o of M, five of them per pass over row."""
    o, count = 0, M.shape[0]
    zero = np.zeros(1, out.dtype)[0]
    while o + 5 <= count:
        s0 = s1 = s2 = s3 = s4 = zero
        m0, m1, m2, m3, m4 = M[o, t0:t1], M[o + 1, t0:t1], M[o + 2, t0:t1], M[o + 3, t0:t1], M[o + 4, t0:t1]
        for j in range(t1 - t0):
            x = row[j]
            s0 += x * m0[j]
            s1 += x * m1[j]
            s2 += x * m2[j]
            s3 += x * m3[j]
            s4 += x * m4[j]
        out[o] += s0
        out[o + 1] += s1
        out[o + 2] += s2
        out[o + 3] += s3
        out[o + 4] += s4
        o += 5
    while o < count:
        s0, m0 = zero, M[o, t0:t1]
        for j in range(t1 - t0):
            s0 += row[j] * m0[j]
        out[o] += s0
        o += 1


@numba.njit(parallel=True, **_JIT)
def _times(V, WT, out):
    wide = WT.shape[1]
    for t in numba.prange((wide + TILE - 1) // TILE):
        t0, t1 = t * TILE, min(wide, (t + 1) * TILE)
        for b in range(V.shape[0]):
            row = out[b, t0:t1]
            row[:] = 0
            _add_products(V[b], WT, t0, t1, row)


@numba.njit(parallel=True, **_JIT)
def _times_transpose(V, WT):
    B, wide = V.shape
    tiles = (wide + TILE - 1) // TILE
    parts = np.zeros((tiles, B, WT.shape[0]), V.dtype)  # per tile, not per thread: the sums do not depend on threads
    for t in numba.prange(tiles):
        t0, t1 = t * TILE, min(wide, (t + 1) * TILE)
        for b in range(B):
            _add_dots(V[b, t0:t1], WT, t0, t1, parts[t, b])
    return _in_order(parts)


@numba.njit(**_JIT)
def _in_order(parts):
    """The tiles' partial sums added in tile order."""
    out = np.zeros(parts.shape[1:], parts.dtype)
    for t in range(parts.shape[0]):
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


@numba.njit(parallel=True, **_JIT)
def _descend(WT, W, left, right, step, rows):
    narrow, wide = WT.shape
    tiles = (wide + TILE - 1) // TILE
    zero = np.zeros(1, WT.dtype)[0]
    parts = np.zeros((tiles, narrow), WT.dtype)
    factors = -step * right.T.copy()  # (narrow, k): row o's update is sum_r factors[o, r] left[r]
    for t in numba.prange(tiles):
        t0, t1 = t * TILE, min(wide, (t + 1) * TILE)
        width, row_sums, block = t1 - t0, rows[t0:t1], W[t0:t1]
        row_sums[:] = 0
        for o in range(narrow):
            w = WT[o, t0:t1]
            _add_products(factors[o], left, t0, t1, w)
            total = zero
            for j in range(width):
                value = zero if w[j] < zero else w[j]
                w[j] = value
                row_sums[j] += value
                total += value
            parts[t, o] = total
            for j in range(width):
                block[j, o] = w[j]
    return _in_order(parts)


def descend(WT: np.ndarray, W: np.ndarray, left: np.ndarray, right: np.ndarray, step: float):
    """W <- max(W - step left^T right, 0) in place, made on its transpose WT and written to both; returns
    (W's row sums, W's column sums). WT (narrow, wide) and W (wide, narrow) C-contiguous, left (k, wide),
    right (k, narrow)."""
    dtype = WT.dtype
    left, right = (np.ascontiguousarray(a, dtype=dtype) for a in (left, right))
    rows = np.empty(WT.shape[1], dtype=dtype)
    return rows, _descend(WT, W, left, right, dtype.type(step), rows)
