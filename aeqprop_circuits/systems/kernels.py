"""In-place numpy/BLAS kernels shared by the systems that train in place (DRNs, dense Hopfield nets).

At batch 4-16 a call's Python overhead is a visible part of a training step, so these skip
the convenience wrappers.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import blas

# The clip ufunc itself (private in numpy 1 and 2): np.clip's Python wrapper costs more than the
# clip at these sizes. np.clip (same results, slower) if a numpy release moves it.
clip = getattr(getattr(getattr(np, "_core", None), "umath", None), "clip", None) or \
    getattr(getattr(getattr(np, "core", None), "umath", None), "clip", None) or np.clip


def gemm_into(weights: np.ndarray, left: np.ndarray, right: np.ndarray, alpha: float, keep: float = 1.0) -> None:
    """weights <- keep * weights + alpha * left^T @ right, in place, one BLAS call (weights C-contiguous
    (n_in, n_out)); keep < 1 is a momentum's decay of its velocity, made in the same pass.

    weights^T is Fortran-ordered (n_out, n_in): C = alpha * right^T @ left + C, written in place;
    C-ordered operands go in as Fortran-ordered transposes, so the wrapper copies no weights (a strided
    factor, a panel's columns of `left`, it copies: k rows of a panel).
    """
    gemm = blas.sgemm if weights.dtype == np.float32 else blas.dgemm
    out = gemm(alpha, right.T, left.T, beta=keep, c=weights.T, trans_b=True, overwrite_c=True)
    if not np.may_share_memory(out, weights):  # the wrapper copied (unexpected layout): write back
        weights[...] = out.T


# numba's fastmath flags for the compiled loops (systems/drn/): fused multiply-adds and reciprocals, signs of
# zero ignored; not "nnan": a NaN must stay a NaN. FASTMATH_SUMS also lets sums be reordered into vector
# lanes (where threads share a sum it is made per fixed tile, so the numbers do not depend on the threads).
FASTMATH = {"contract", "arcp", "nsz"}
FASTMATH_SUMS = FASTMATH | {"reassoc"}

PANEL_BYTES = 1 << 19  # a weight panel that stays in a core's L2 cache while it is updated, clipped and summed


def row_panels(fan_in: int, fan_out: int, itemsize: int) -> list:
    """Row slices of a (fan_in, fan_out) block, each ~PANEL_BYTES (one slice when the block is that small)."""
    rows = max(1, PANEL_BYTES // (fan_out * itemsize))
    return [slice(start, min(start + rows, fan_in)) for start in range(0, fan_in, rows)]


def update_panels(fan_in: int, fan_out: int, itemsize: int) -> list:
    """The row slices a block's in-place update and clip are made in: the whole block while it fits the L2
    cache (two panels), else row_panels, each panel clipped while the update has left it in the cache."""
    panels = row_panels(fan_in, fan_out, itemsize)
    return panels if len(panels) > 2 else [slice(0, fan_in)]


def clip_nonnegative(values: np.ndarray) -> None:
    """values <- max(values, 0) in place (conductances stay physical), a NaN kept a NaN: the clip ufunc with
    scalar bounds, faster than a masked copy or np.maximum."""
    clip(values, values.dtype.type(0), values.dtype.type(np.inf), out=values)


def blas_threads() -> int:
    """The most threads a loaded BLAS library runs on (threadpoolctl), 1 when none is found."""
    from threadpoolctl import threadpool_info

    return max((pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"), default=1)
