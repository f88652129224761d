"""The end of a weight panel's update in one pass: the velocity's step, the clip at 0 and the conductance sums.

A signed DRN's `descend` updates a block one cache-sized panel of rows at a time (kernels.update_panels):
a BLAS call adds the contrast (to the panel, or to its velocity under momentum), and then the panel
still needs W <- max(W - step v, 0) and its column and row sums (the next settle's conductance sums).
As numpy calls that is four passes over the panel (an axpy, a clip, two products with ones); this loop
makes it one, while the panel is in cache. Compiled with numba (cached on disk), one thread.
"""

from __future__ import annotations

import numba
import numpy as np

from aeqprop_circuits.systems.kernels import FASTMATH_SUMS


@numba.njit(nogil=True, fastmath=FASTMATH_SUMS, boundscheck=False, error_model="numpy", cache=True)
def _finish(panel, velocity, step, columns, rows):
    zero = np.zeros(1, panel.dtype)[0]  # in the panel's dtype: a literal 0 would promote the loop to float64
    for i in range(panel.shape[0]):
        w, total = panel[i], zero
        if velocity.shape[0]:
            v = velocity[i]
            for j in range(panel.shape[1]):
                value = w[j] - step * v[j]
                value = zero if value < zero else value
                w[j] = value
                columns[j] += value
                total += value
        else:
            for j in range(panel.shape[1]):
                value = zero if w[j] < zero else w[j]
                w[j] = value
                columns[j] += value
                total += value
        rows[i] = total


def finish(panel: np.ndarray, velocity: np.ndarray | None, step: float, columns: np.ndarray,
           rows: np.ndarray) -> None:
    """panel <- max(panel - step velocity, 0) in place (max(panel, 0) without a velocity); columns += the new
    panel's column sums, rows <- its row sums. All C-contiguous, of the panel's dtype."""
    dtype = panel.dtype
    if velocity is None:
        velocity = np.empty((0, panel.shape[1]), dtype)
    _finish(panel, velocity, dtype.type(step), columns, rows)
