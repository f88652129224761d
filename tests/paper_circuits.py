"""Oracles: the fast-DRN paper's circuit written independently of the package, for the tests.

Scellier 2024 (energy-based-learning, papers/fast-drn/drn.py and model/resistive/) simulates
a circuit other than the package's builder DRN:

- half of the hidden nodes are excitatory (one ideal diode keeps them >= 0 V), half
  inhibitory (<= 0 V), with no upper rail;
- biases are current sources (energy -b . V, signed), initialised at 0;
- outputs are single nodes, cost 1/2 |o - y|^2, nudged at +-beta;
- inputs +-gain x, conductances initialised at max(0, U(-1, 1) / sqrt(fan_in)) and clipped
  at 0 after each step; SGD with PyTorch's momentum form.

`PaperDRN` is that circuit in a few lines of numpy, from the description above (energy
1/2 sum g (V_i - V_j)^2 - sum b V, so each layer's block update is a weighted mean of its
neighbours plus its bias current, divided by its total conductance, then clipped).
tests/test_drn_paper_circuit.py checks it against a generic minimiser, and
tests/test_drn_signed.py holds the package's `SignedDRNSystem` equal to it step by step.
"""

from __future__ import annotations

import numpy as np


class PaperDRN:
    """One-hidden-layer DRN of the paper's code: excitatory/inhibitory hidden units, bias currents, single outputs."""

    def __init__(self, n_in: int, n_hidden: int, n_out: int, gain: float, seed: int, dtype=np.float32):
        rng = np.random.default_rng(seed)
        self.g1 = np.maximum(rng.uniform(-1, 1, (2 * n_in, n_hidden)) / np.sqrt(2 * n_in), 0).astype(dtype)
        self.g2 = np.maximum(rng.uniform(-1, 1, (n_hidden, n_out)) / np.sqrt(n_hidden), 0).astype(dtype)
        self.b1, self.b2 = np.zeros(n_hidden, dtype), np.zeros(n_out, dtype)
        self.gain, self.dtype, self.half = gain, dtype, n_hidden // 2
        self.velocity = [np.zeros_like(theta) for theta in (self.g1, self.g2, self.b1, self.b2)]

    def sources(self, x):
        return (self.gain * np.concatenate([x, -x], axis=1)).astype(self.dtype)

    def clamp(self, v):
        """What the phases of one step share: the inputs' current into the hidden nodes and their conductance sums."""
        return v @ self.g1 + self.b1, self.g1.sum(0) + self.g2.sum(1)

    def relax(self, clamped, h, o, iterations, beta=0.0, y=None, backward=False):
        """Block coordinate descent from (h, o): each layer in closed form, hidden then output
        (output then hidden with `backward`, the universal-DRN script's order in nudged phases)."""
        drive, d_hidden = clamped
        d_out = self.g2.sum(0) + beta
        if np.any(d_out <= 0):
            raise ValueError(f"nudge beta = {beta} makes an output node's energy non-convex")
        pull = self.b2 + (beta * y if beta else 0.0)
        for _ in range(iterations):
            if backward:
                o = (h @ self.g2 + pull) / d_out
            h = (drive + o @ self.g2.T) / d_hidden
            h[:, :self.half] = np.maximum(h[:, :self.half], 0)
            h[:, self.half:] = np.minimum(h[:, self.half:], 0)
            if not backward:
                o = (h @ self.g2 + pull) / d_out
        return h, o

    def step(self, v, h_plus, o_plus, h_minus, o_minus, beta, lr, momentum=0.0):
        """Centered EP: [dE/dtheta(+beta) - dE/dtheta(-beta)] / 2 beta, in GEMM form, then SGD
        (PyTorch's momentum form: velocity = momentum * velocity + gradient) and clipping at 0."""
        scale = 1.0 / (2 * beta * len(v))
        # 1/2 mean (a_i - b_j)^2 differences: the a_i^2 terms of the input block cancel (same sources)
        hidden_sq = 0.5 * ((h_plus**2).sum(0) - (h_minus**2).sum(0))
        grads = (scale * (hidden_sq - v.T @ (h_plus - h_minus)),
                 scale * (hidden_sq[:, None] + 0.5 * ((o_plus**2).sum(0) - (o_minus**2).sum(0))
                          - (h_plus.T @ o_plus - h_minus.T @ o_minus)),
                 -scale * (h_plus - h_minus).sum(0),  # dE/db = -V
                 -scale * (o_plus - o_minus).sum(0))
        for k, (theta, gradient) in enumerate(zip((self.g1, self.g2, self.b1, self.b2), grads)):
            self.velocity[k] = momentum * self.velocity[k] + gradient
            theta -= lr * self.velocity[k]
        np.maximum(self.g1, 0, out=self.g1)
        np.maximum(self.g2, 0, out=self.g2)
