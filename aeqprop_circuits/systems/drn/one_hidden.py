"""A training step of a one-hidden-layer DRN (the builder's circuit, ideal diodes) as one compiled function.

At batch 4 a step of DRN-XS (1568-100-10) is about 60 array operations, most of them on a few hundred
values: as separate numpy calls, their call costs outweigh the arithmetic. This function makes the
step in one call: its matrix products are BLAS calls from compiled code (numba's np.dot), and
everything between them (the clips, the 2x2 solves of the output pairs, the squares of the update,
the clip at 0 of the conductances) compiled loops. The input block's update is made a cache-sized
panel of rows at a time: its product, the squares' rank-2 terms and the clip while the panel is in
cache. The arithmetic is DRNSystem's (settle, settle_nudges, descend); tests/test_drn.py holds the
two to each other for every nudge contrast, and with momentum for c-ep.

Compiled with numba (cached on disk). Every constant is in the weights' dtype: a literal would
promote float32 loops to float64.
"""

from __future__ import annotations

import numba
import numpy as np

from aeqprop_circuits.systems.kernels import FASTMATH

_JIT = dict(nogil=True, fastmath=FASTMATH, boundscheck=False, error_model="numpy", cache=True)


@numba.njit(**_JIT)
def _clip(value, lo, hi):
    """min(max(value, lo), hi), a NaN kept (the clip ufunc's semantics)."""
    value = lo if value < lo else value
    return hi if value > hi else value


@numba.njit(**_JIT)
def _hidden(outputs, W1T, inv_D, scaled, lo, hi):
    """The hidden layer's update: (outputs @ W1^T) / D + the scaled input current, clipped to [lo, hi]."""
    hidden = np.dot(outputs, W1T)
    for b in range(hidden.shape[0]):
        row, drive = hidden[b], scaled[b]
        for i in range(hidden.shape[1]):
            row[i] = _clip(row[i] * inv_D[i] + drive[i], lo, hi)
    return hidden


@numba.njit(**_JIT)
def _descend_block(W, product, left_squares, right_squares, step, momentum, velocity):
    """W <- max(0, W - step g) (through the velocity when momentum > 0), g = product + the squares' rank-2 terms."""
    zero = np.zeros(1, W.dtype)[0]
    for i in range(W.shape[0]):
        w, g, a = W[i], product[i], left_squares[i]
        if momentum > 0:
            moving = velocity[i]
            for j in range(W.shape[1]):
                moving[j] = momentum * moving[j] + (g[j] + a + right_squares[j])
                value = w[j] - step * moving[j]
                w[j] = zero if value < zero else value
        else:
            for j in range(W.shape[1]):
                value = w[j] - step * (g[j] + a + right_squares[j])
                w[j] = zero if value < zero else value


@numba.njit(**_JIT)
def step(x, y, W0, W1, plus, minus, gain, lo, hi, iterations, weights, betas, rates, momentum,
         velocity0, velocity1, velocity_bias, panel_rows, checked):
    """One nudge-contrast step; returns (convex, h, o, v_in), the free phase's layers and the input layer.

    x (B, n_in), y (B, n): the batch and its targets. W0 (2 n_in, H), W1 (H, 2n), plus and minus (H + 2n,)
    (the +1 V and -1 V bias conductances over [hidden, op, on]): views of theta, updated in place.
    weights (K,) c_k / B and betas (K,) beta_k of the contrast's terms (beta 0: the free phase); rates
    [w1, w2, bias] step sizes; with momentum > 0 each block goes through its velocity (views of the
    system's buffer, else empty); the input block is updated `panel_rows` rows at a time. A negative
    beta is first tested against the bound of DRNSystem._check_convex: where that fails and not
    `checked`, the step returns convex False with nothing updated, for the caller's full test.
    """
    dtype = W0.dtype
    zero, one, half = np.zeros(1, dtype)[0], np.ones(1, dtype)[0], np.full(1, 0.5, dtype)[0]
    B, n_in = x.shape
    H, n2 = W1.shape
    n = n2 // 2
    K = len(weights)
    # The input layer and a row of ones: one product gives the input current and the input block's column sums.
    stacked = np.empty((B + 1, 2 * n_in), dtype)
    for b in range(B):
        for i in range(n_in):
            stacked[b, i] = x[b, i] * gain
            stacked[b, n_in + i] = -stacked[b, i]
    stacked[B] = one
    v_in = stacked[:B]
    current = np.dot(stacked, W0)
    # Per theta: the conductance sums D over [hidden, op, on] and the bias currents.
    W1_row_sums = np.empty(H, dtype)
    D = plus + minus
    for i in range(H):
        total = zero
        for q in range(n2):
            total += W1[i, q]
            D[H + q] += W1[i, q]
        W1_row_sums[i] = total
        D[i] += current[B, i] + total
    inv_D = one / D
    bias_current = plus - minus
    scaled = np.empty((B, H), dtype)
    for b in range(B):
        for i in range(H):
            scaled[b, i] = (current[b, i] + bias_current[i]) * inv_D[i]
    inv_hidden, inv_out, out_bias = inv_D[:H], inv_D[H:], bias_current[H:]
    W1T = W1.T
    # Free phase: sweeps from V = 0 (whose first hidden update is the clipped scaled current), hidden layer first.
    o = np.zeros((B, n2), dtype)
    for _ in range(iterations):
        h = _hidden(o, W1T, inv_hidden, scaled, lo, hi)
        o = np.dot(h, W1)
        for b in range(B):
            for q in range(n2):
                o[b, q] = (o[b, q] + out_bias[q]) * inv_out[q]
    # A negative nudge needs a convex co-content: the outputs' Schur complement's Gershgorin bound first.
    min_beta = 0.0
    for k in range(K):
        min_beta = min(min_beta, float(betas[k]))
    if min_beta < 0 and not checked:
        bound = np.inf
        for q in range(n2):
            schur_row = float(D[H + q])
            for i in range(H):
                schur_row -= float(W1_row_sums[i]) / float(D[i]) * float(W1[i, q])
            bound = min(bound, schur_row)
        if bound + 2.0 * min_beta <= 0:
            return False, h, o, v_in
    # Nudged phases from the free state: output pairs by their 2x2 solve, then the hidden layer. The rows of
    # every term's phase are stacked in the terms' order, as descend stacks them.
    hidden, outputs = np.empty((K * B, H), dtype), np.empty((K * B, n2), dtype)
    diagonal, cross = np.empty(n2, dtype), np.empty(n2, dtype)
    for k in range(K):
        rows = slice(k * B, (k + 1) * B)
        beta = betas[k]
        if beta == 0:
            hidden[rows], outputs[rows] = h, o
            continue
        for q in range(n2):
            pair = q + n if q < n else q - n  # op_j <-> on_j
            inv_det = one / (D[H + q] * D[H + pair] + beta * (D[H + q] + D[H + pair]))
            diagonal[q], cross[q] = (D[H + pair] + beta) * inv_det, beta * inv_det
        hidden_k, outputs_k = h, outputs[rows]
        for _ in range(iterations):
            currents = np.dot(hidden_k, W1)
            for b in range(B):
                for q in range(n2):
                    pair = q + n if q < n else q - n
                    pull = y[b, q % n] * (beta if q < n else -beta)
                    outputs_k[b, q] = diagonal[q] * (currents[b, q] + out_bias[q]) \
                        + cross[q] * (currents[b, pair] + out_bias[pair]) + (diagonal[q] - cross[q]) * pull
            hidden_k = _hidden(outputs_k, W1T, inv_hidden, scaled, lo, hi)
        hidden[rows] = hidden_k
    # The update: sum_k c_k dE/dtheta(s_k) as descend's augmented products: per block one product of the
    # states and, in the pass that updates and clips the block, the squares' rank-2 terms.
    pulled = np.zeros((B, H), dtype)  # -sum_k (c_k / B) h_k: the input block's right factor
    negative = np.empty((K * B, n2), dtype)  # -(c_k / B) o_k: the output block's right factor
    squares_h, squares_o = np.zeros(H, dtype), np.zeros(n2, dtype)  # sum_k (c_k / 2B) sum_b V^2
    total_weight = zero
    for k in range(K):
        c, c_half = weights[k], weights[k] * half
        total_weight += c
        for b in range(B):
            row = k * B + b
            for i in range(H):
                v = hidden[row, i]
                pulled[b, i] -= c * v
                squares_h[i] += c_half * (v * v)
            for q in range(n2):
                v = outputs[row, q]
                negative[row, q] = -c * v
                squares_o[q] += c_half * (v * v)
    squares_in = np.zeros(2 * n_in, dtype)  # the input block's squares, weighted by sum_k c_k / 2B (0: centred)
    if total_weight != 0:
        for b in range(B):
            for i in range(2 * n_in):
                squares_in[i] += v_in[b, i] * v_in[b, i]
        squares_in *= total_weight * half
    inputs_t = np.ascontiguousarray(v_in.T)
    for start in range(0, W0.shape[0], panel_rows):  # a panel of the input block's product at a time, in cache
        rows = slice(start, min(start + panel_rows, W0.shape[0]))
        moving = velocity0[rows] if momentum > 0 else velocity0
        _descend_block(W0[rows], np.dot(inputs_t[rows], pulled), squares_in[rows], squares_h, rates[0], momentum,
                       moving)
    _descend_block(W1, np.dot(hidden.T, negative), squares_h, squares_o, rates[1], momentum, velocity1)
    # Biases: dE/dtheta = 1/2 (V -+ 1)^2 for the +1 V and -1 V resistors of each node.
    biased = H + n2
    for j in range(biased):
        up, down = zero, zero
        for k in range(K):
            c = weights[k] * half
            for b in range(B):
                v = hidden[k * B + b, j] if j < H else outputs[k * B + b, j - H]
                up += c * ((v - one) * (v - one))
                down += c * ((v + one) * (v + one))
        if momentum > 0:
            velocity_bias[j] = momentum * velocity_bias[j] + up
            velocity_bias[biased + j] = momentum * velocity_bias[biased + j] + down
            up, down = velocity_bias[j], velocity_bias[biased + j]
        value = plus[j] - rates[2] * up
        plus[j] = zero if value < zero else value
        value = minus[j] - rates[2] * down
        minus[j] = zero if value < zero else value
    return True, h, o, v_in.copy()
