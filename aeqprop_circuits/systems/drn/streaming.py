"""One pass over a weight block larger than the caches: a step's update and the next step's input drive.

A training step of a wide DRN (DRN-XL: W1 is 1568 x 32768, 205 MB of float32) is bound by moving
W1 through memory. Done as BLAS calls it moves W1 three times: read for the drive x W1, read and
written for the rank-k update W1 += left^T right. This kernel makes one pass: for each group of
four rows of W1 and a cache-sized tile of its columns, it applies the pending update, clips the
conductances at 0, and adds them to the column sums (the hidden nodes' conductance sums) and to
the next batch's drive, while the tile is in cache. signed.py keeps a step's update pending until
the next drive, so the two share the pass.

The inner loop is written out for four rows, five update terms and four batch rows: each value of
the update's factors, the sums and the drive is then loaded once per four rows, and the loop
touches, besides W, only arrays allocated here (copies of the factors, the accumulators), which the
compiler knows alias nothing, so it vectorises without run-time overlap checks. More terms take
extra passes of five. A larger batch's drive is BLAS's job (signed.py). Compiled with numba and run on
column chunks in parallel, one per numba thread (NUMBA_NUM_THREADS, by default one per core).
"""

from __future__ import annotations

import numba
import numpy as np

from aeqprop_circuits.systems.kernels import FASTMATH

BATCH = 4  # rows of the drive fused into the pass
TILE = 2048  # columns per tile: four rows of it, its factors and its accumulators stay in the L1/L2 caches


@numba.njit(nogil=True, fastmath=FASTMATH, boundscheck=False, cache=True)
def _chunk(W, left, right, step, x, offset, columns, drive, start, stop):
    """Columns [start, stop) of W: update, clip, column sums and drive (see stream_update)."""
    n, k, batch = W.shape[0], left.shape[0], x.shape[0]
    width = stop - start
    passes = max(1, (k + 4) // 5)
    R = np.zeros((5 * passes, width), W.dtype)  # the update's right factors, zero-padded to whole passes
    R[:k] = right[:, start:stop]
    X = np.zeros((4, n), W.dtype)  # the drive's inputs, zero-padded to four rows
    X[:batch] = x
    col = np.zeros(width, W.dtype)
    D = np.zeros((4, width), W.dtype)
    D[:batch] = offset[start:stop]  # the drive's sums start at the offset
    a = np.zeros((4, 5 * passes), W.dtype)  # -step x the update's left factors of the four rows
    i = np.empty(4, np.int64)  # the rows; past the last row, it again with weight 0
    w = np.empty(4, W.dtype)
    zero = np.zeros(1, W.dtype)[0]  # the clip's bound in W's dtype (a literal 0 would promote the loop to float64)
    for i0 in range(0, n, 4):
        used = min(4, n - i0)
        for q in range(4):
            i[q], w[q] = min(i0 + q, n - 1), 1 if q < used else 0
            for r in range(k):
                a[q, r] = -step * left[r, i[q]] * w[q]
        for t0 in range(0, width, TILE):
            t1 = min(t0 + TILE, width)
            W0, W1 = W[i[0]][start + t0:start + t1], W[i[1]][start + t0:start + t1]
            W2, W3 = W[i[2]][start + t0:start + t1], W[i[3]][start + t0:start + t1]
            for f in range(0, 5 * passes - 5, 5):  # terms before the last five: plain passes, row by row
                r0, r1, r2, r3, r4 = R[f][t0:t1], R[f + 1][t0:t1], R[f + 2][t0:t1], R[f + 3][t0:t1], R[f + 4][t0:t1]
                for q in range(used):
                    Wq = W[i[q]][start + t0:start + t1]
                    b0, b1, b2, b3, b4 = a[q, f], a[q, f + 1], a[q, f + 2], a[q, f + 3], a[q, f + 4]
                    for j in range(t1 - t0):
                        Wq[j] += b0 * r0[j] + b1 * r1[j] + b2 * r2[j] + b3 * r3[j] + b4 * r4[j]
            f = 5 * passes - 5
            r0, r1, r2, r3, r4 = R[f][t0:t1], R[f + 1][t0:t1], R[f + 2][t0:t1], R[f + 3][t0:t1], R[f + 4][t0:t1]
            a00, a01, a02, a03, a04 = a[0, f], a[0, f + 1], a[0, f + 2], a[0, f + 3], a[0, f + 4]
            a10, a11, a12, a13, a14 = a[1, f], a[1, f + 1], a[1, f + 2], a[1, f + 3], a[1, f + 4]
            a20, a21, a22, a23, a24 = a[2, f], a[2, f + 1], a[2, f + 2], a[2, f + 3], a[2, f + 4]
            a30, a31, a32, a33, a34 = a[3, f], a[3, f + 1], a[3, f + 2], a[3, f + 3], a[3, f + 4]
            w1, w2, w3 = w[1], w[2], w[3]
            x00, x01, x02, x03 = X[0, i[0]], X[0, i[1]] * w1, X[0, i[2]] * w2, X[0, i[3]] * w3
            x10, x11, x12, x13 = X[1, i[0]], X[1, i[1]] * w1, X[1, i[2]] * w2, X[1, i[3]] * w3
            x20, x21, x22, x23 = X[2, i[0]], X[2, i[1]] * w1, X[2, i[2]] * w2, X[2, i[3]] * w3
            x30, x31, x32, x33 = X[3, i[0]], X[3, i[1]] * w1, X[3, i[2]] * w2, X[3, i[3]] * w3
            c, d0, d1, d2, d3 = col[t0:t1], D[0][t0:t1], D[1][t0:t1], D[2][t0:t1], D[3][t0:t1]
            for j in range(t1 - t0):
                v0 = max(W0[j] + a00 * r0[j] + a01 * r1[j] + a02 * r2[j] + a03 * r3[j] + a04 * r4[j], zero)
                v1 = max(W1[j] + a10 * r0[j] + a11 * r1[j] + a12 * r2[j] + a13 * r3[j] + a14 * r4[j], zero)
                v2 = max(W2[j] + a20 * r0[j] + a21 * r1[j] + a22 * r2[j] + a23 * r3[j] + a24 * r4[j], zero)
                v3 = max(W3[j] + a30 * r0[j] + a31 * r1[j] + a32 * r2[j] + a33 * r3[j] + a34 * r4[j], zero)
                W3[j] = v3  # past the last row, copies of it (written first, the real one last)
                W2[j] = v2
                W1[j] = v1
                W0[j] = v0
                c[j] += v0 + w1 * v1 + w2 * v2 + w3 * v3
                d0[j] += x00 * v0 + x01 * v1 + x02 * v2 + x03 * v3
                d1[j] += x10 * v0 + x11 * v1 + x12 * v2 + x13 * v3
                d2[j] += x20 * v0 + x21 * v1 + x22 * v2 + x23 * v3
                d3[j] += x30 * v0 + x31 * v1 + x32 * v2 + x33 * v3
    columns[start:stop] = col
    drive[:, start:stop] = D[:batch]


@numba.njit(parallel=True, fastmath=FASTMATH, boundscheck=False, cache=True)
def _stream(W, left, right, step, x, offset, columns, drive, chunks):
    m = W.shape[1]
    width = ((m + chunks - 1) // chunks + 15) // 16 * 16  # whole cache lines per chunk
    for c in numba.prange(chunks):
        _chunk(W, left, right, step, x, offset, columns, drive, min(c * width, m), min((c + 1) * width, m))


def stream_update(W: np.ndarray, left: np.ndarray, right: np.ndarray, step: float, x: np.ndarray,
                  offset: np.ndarray | None = None):
    """W <- max(W - step left^T right, 0) in place; returns (column sums of the new W, offset + x @ new W).

    W (n, m) C-contiguous; left (k, n), right (k, m), x (B, n) with B <= BATCH (B may be 0); offset (m,),
    zero if None (the first layer's bias currents: the drive comes out with them added).
    """
    if len(x) > BATCH:
        raise ValueError(f"the fused drive takes at most {BATCH} rows, got {len(x)}")
    dtype = W.dtype
    offset = np.zeros(W.shape[1], dtype=dtype) if offset is None else offset
    left, right, x, offset = (np.ascontiguousarray(a, dtype=dtype) for a in (left, right, x, offset))
    columns = np.empty(W.shape[1], dtype=dtype)
    drive = np.empty((len(x), W.shape[1]), dtype=dtype)
    _stream(W, left, right, dtype.type(step), x, offset, columns, drive, numba.get_num_threads())
    return columns, drive
