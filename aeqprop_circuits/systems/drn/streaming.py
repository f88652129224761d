"""One pass over a weight block larger than the caches: a step's update and the next step's input drive.

A training step of a wide DRN (DRN-XL: W1 is 1568 x 32768, 205 MB of float32) is bound by moving
W1 through memory. Done as BLAS calls it moves W1 three times: read for the drive x W1, read and
written for the rank-k update W1 += left^T right. This kernel makes one pass: for each group of
four rows of W1 and a cache-sized tile of its columns, it applies the pending update, clips the
conductances at 0, adds them to the column sums (the hidden nodes' conductance sums) and to the
next batch's drive, while the tile is in the L1/L2 cache. The update of a step is therefore
applied when the next step's drive is computed (signed.py keeps it pending until then).

Compiled with numba (the loops are the arithmetic numpy would run as separate passes; a compiled
loop is the only way to run them in one pass over memory) and run on the column chunks in
parallel, one per numba thread (NUMBA_NUM_THREADS, by default one per core).
"""

from __future__ import annotations

import numba
import numpy as np

_OPTIONS = {"nogil": True, "fastmath": True, "boundscheck": False, "cache": True}
TILE = 4096  # columns per tile: four rows of it and the tile's factors fit the L2 cache
ROWS = 4  # rows per group: the column sums and the drive are read and written once per group


@numba.njit(**_OPTIONS)
def _add_terms(out, coefficients, right, first, count, t0, t1, clip):
    """out += sum_{s < count} coefficients[first + s] right[first + s, t0:t1] (count <= 4), then max(out, 0)
    if clip. Four terms per pass keep each loop at six contiguous arrays, which the compiler vectorises."""
    p = right[first][t0:t1]
    a0 = coefficients[first]
    if count == 1:
        if clip:
            for j in range(out.shape[0]):
                out[j] = max(out[j] + a0 * p[j], 0)
        else:
            for j in range(out.shape[0]):
                out[j] += a0 * p[j]
        return
    q = right[first + 1][t0:t1]
    a1 = coefficients[first + 1]
    if count == 2:
        if clip:
            for j in range(out.shape[0]):
                out[j] = max(out[j] + a0 * p[j] + a1 * q[j], 0)
        else:
            for j in range(out.shape[0]):
                out[j] += a0 * p[j] + a1 * q[j]
        return
    s = right[first + 2][t0:t1]
    a2 = coefficients[first + 2]
    if count == 3:
        if clip:
            for j in range(out.shape[0]):
                out[j] = max(out[j] + a0 * p[j] + a1 * q[j] + a2 * s[j], 0)
        else:
            for j in range(out.shape[0]):
                out[j] += a0 * p[j] + a1 * q[j] + a2 * s[j]
        return
    u = right[first + 3][t0:t1]
    a3 = coefficients[first + 3]
    if clip:
        for j in range(out.shape[0]):
            out[j] = max(out[j] + a0 * p[j] + a1 * q[j] + a2 * s[j] + a3 * u[j], 0)
    else:
        for j in range(out.shape[0]):
            out[j] += a0 * p[j] + a1 * q[j] + a2 * s[j] + a3 * u[j]


@numba.njit(**_OPTIONS)
def _accumulate(total, w0, w1, w2, w3, c0, c1, c2, c3):
    """total += c0 w0 + c1 w1 + c2 w2 + c3 w3: one read and write of `total` for four rows."""
    for j in range(total.shape[0]):
        total[j] += c0 * w0[j] + c1 * w1[j] + c2 * w2[j] + c3 * w3[j]


@numba.njit(**_OPTIONS)
def _chunk(W, left, right, step, x, columns, drive, start, stop):
    """Columns [start, stop) of W: update, clip, column sums, drive (see stream_update)."""
    n, k, batch = W.shape[0], left.shape[0], x.shape[0]
    one, zero = W.dtype.type(1), W.dtype.type(0)
    coefficients = np.empty((ROWS, k), W.dtype)
    rows = np.empty(ROWS, np.int64)
    for i0 in range(0, n, ROWS):
        for q in range(ROWS):
            rows[q] = min(i0 + q, n - 1)  # past the last row: repeat it with weight 0
            for r in range(k):
                coefficients[q, r] = -step * left[r, rows[q]]
        used = min(ROWS, n - i0)
        for t0 in range(start, stop, TILE):
            t1 = min(t0 + TILE, stop)
            for q in range(used):
                row = W[rows[q]][t0:t1]
                if k == 0:
                    for j in range(row.shape[0]):
                        row[j] = max(row[j], 0)
                for first in range(0, k, 4):
                    count = min(4, k - first)
                    _add_terms(row, coefficients[q], right, first, count, t0, t1, first + count == k)
            w0, w1, w2, w3 = W[rows[0]][t0:t1], W[rows[1]][t0:t1], W[rows[2]][t0:t1], W[rows[3]][t0:t1]
            _accumulate(columns[t0:t1], w0, w1, w2, w3, one, one if used > 1 else zero,
                        one if used > 2 else zero, one if used > 3 else zero)
            for b in range(batch):
                c0 = x[b, rows[0]]
                c1 = x[b, rows[1]] if used > 1 else zero
                c2 = x[b, rows[2]] if used > 2 else zero
                c3 = x[b, rows[3]] if used > 3 else zero
                if c0 != 0 or c1 != 0 or c2 != 0 or c3 != 0:  # dark pixels drive nothing
                    _accumulate(drive[b][t0:t1], w0, w1, w2, w3, c0, c1, c2, c3)


@numba.njit(parallel=True, fastmath=True, boundscheck=False, cache=True)
def _stream(W, left, right, step, x, columns, drive, chunks):
    m = W.shape[1]
    width = ((m + chunks - 1) // chunks + 15) // 16 * 16  # whole cache lines per chunk
    for c in numba.prange(chunks):
        _chunk(W, left, right, step, x, columns, drive, min(c * width, m), min((c + 1) * width, m))


def stream_update(W: np.ndarray, left: np.ndarray, right: np.ndarray, step: float, x: np.ndarray):
    """W <- max(W - step left^T right, 0) in place; returns (column sums of the new W, x @ new W).

    W (n, m) C-contiguous; left (k, n), right (k, m), x (B, n) (B may be 0), all of W's dtype.
    """
    dtype = W.dtype
    left, right, x = (np.ascontiguousarray(a, dtype=dtype) for a in (left, right, x))
    columns = np.zeros(W.shape[1], dtype=dtype)
    drive = np.zeros((len(x), W.shape[1]), dtype=dtype)
    _stream(W, left, right, dtype.type(step), x, columns, drive, numba.get_num_threads())
    return columns, drive
