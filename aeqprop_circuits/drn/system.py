"""Deep resistive networks as dense layer blocks: the builder's circuit, settled by exact block coordinate descent.

The physics is that of `circuit.builder.deep_resistive_network` (Scellier 2024, "A fast
algorithm to simulate nonlinear resistive networks"): inputs as +x/-x source pairs, hidden
nodes held inside [v_low, v_high] by two diodes to rails, trainable resistors between
consecutive layers, bias resistors to +1 V / -1 V rails, outputs read as differential pairs
V(op_j) - V(op_n). Units are the package's normalised ones: theta = g / g0, potentials in
volts, energy = co-content / g0 (V^2), cost C = 1/2 |o - y|^2 per sample.

Storage: theta is one flat float vector in the builder's resistor order (blocks row-major,
then the +1 V biases, then the -1 V biases), and each block is a (fan_in, fan_out) view of it,
so a layer update is a matrix product and a trained theta is the builder circuit's
conductance / g0 as it stands.

Settling. The nodes of one layer are not joined to each other, so with the other layers held
the co-content is separable over the layer's nodes: a 1-D convex problem per node, solved in
closed form for ideal diodes (the unconstrained minimiser r / D clipped to the rails) or by a
safeguarded 1-D Newton for Shockley diodes. The output layer is unconstrained; the nudge
beta/2 |V(op) - V(on) - y|^2 couples op_j with on_j only, so its block update is a 2x2 solve per
pair. The current the input sources inject into the first layer is one GEMM per batch and
parameter setting (cached across the phases of a training step, which share the inputs).
A settle runs a fixed number of block sweeps (as the paper does: 4) or, with
`iterations=None`, sweeps until the largest change is below `tol` volts.

Local measurements as GEMMs: for a block between layers a and b,
mean_batch 1/2 (V_a,i - V_b,j)^2 = 1/2 mean V_a,i^2 + 1/2 mean V_b,j^2 - (V_a^T V_b)_ij / B, evaluated
as one product of the augmented matrices [V_a; 1/2 mean V_a^2; 1]^T [-V_b / B; 1; 1/2 mean V_b^2],
never a B x N x H broadcast. `descend` applies a contrast of such measurements to theta in
place (one GEMM with beta=1 per block): the fast path of the EP family.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from scipy.linalg import blas

from ..circuit.circuit import DEFAULT_GMIN, THERMAL_VOLTAGE
from ..errors import AeqpropError, DivergenceError
from ..physics.system import Phase, PhysicalSystem


class MatmulClock:
    """Seconds spent in the matrix products of DRN systems while `timing()` is active (for benchmarks)."""

    active = False
    seconds = 0.0
    calls = 0


@contextmanager
def timing():
    MatmulClock.active, MatmulClock.seconds, MatmulClock.calls = True, 0.0, 0
    try:
        yield MatmulClock
    finally:
        MatmulClock.active = False


def _matmul(a, b):
    if not MatmulClock.active:
        return a @ b
    began = time.perf_counter()
    out = a @ b
    MatmulClock.seconds += time.perf_counter() - began
    MatmulClock.calls += 1
    return out


def _gemm_into(weights: np.ndarray, left: np.ndarray, right: np.ndarray, alpha: float) -> None:
    """weights += alpha * left^T @ right, in place, one BLAS call (weights C-contiguous (N, H))."""
    began = time.perf_counter() if MatmulClock.active else 0.0
    gemm = blas.sgemm if weights.dtype == np.float32 else blas.dgemm
    # weights^T is Fortran-ordered (H, N): C = alpha * right^T @ left + 1 * C, written in place.
    out = gemm(alpha, right, left, beta=1.0, c=weights.T, trans_a=True, overwrite_c=True)
    if not np.shares_memory(out, weights):  # BLAS wrapper made a copy: write it back
        weights[...] = out.T
    if MatmulClock.active:
        MatmulClock.seconds += time.perf_counter() - began
        MatmulClock.calls += 1


@dataclass(eq=False)
class DRNState:
    """An equilibrium (or the state after a fixed number of sweeps) of one phase.

    layers: free-layer potentials (B, width) per layer, hidden layers then the output layer
    [op_0..op_n-1, on_0..on_n-1]; inputs: the input-layer potentials (B, 2 n_inputs).
    """

    layers: list
    inputs: np.ndarray
    phase: Phase
    version: int
    iterations: int
    converged: bool
    system: DRNSystem

    @property
    def theta(self):
        """The parameters this state was settled for, if they are still the system's (else None)."""
        return self.system._theta if self.version == self.system._version else None

    @property
    def potentials(self) -> list:
        return self.layers


class DRNSystem(PhysicalSystem):
    """A deep resistive network `sizes = [n_inputs, hidden..., n_outputs]` (data counts; inputs doubled).

    diodes:      "ideal" (clipping, closed-form block update) or "shockley" (Is, n; block Newton).
    iterations:  block sweeps per phase (the paper's 4), or None to sweep until the largest
                 change is below `tol` V (at most `max_iterations`).
    input_gain:  the input sources are at +-input_gain * x (1: the builder's circuit).
    dtype:       float32 (training) or float64 (reference accuracy).
    init:        "builder" (the builder's conductances for this seed: uniform [0, 2/fan_in], biases
                 uniform [0, 1/4]) or "paper" (Scellier 2024's code: kaiming-uniform weights
                 gain/sqrt(fan_in) clipped at 0, biases 0).
    """

    def __init__(self, sizes, *, seed: int = 0, g0: float = 1e-3, v_low: float = 0.0, v_high: float = 1.0,
                 bias: bool = True, diodes: str = "ideal", saturation_current: float = 1e-14,
                 emission: float = 1.0, iterations: int | None = None, tol: float | None = None,
                 max_iterations: int = 10_000, input_gain: float = 1.0, dtype="float32", init: str = "builder",
                 init_gain: float = 1.0):
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise AeqpropError(f"DRN sizes {sizes}: expected [n_inputs, hidden..., n_outputs], all positive")
        if diodes not in ("ideal", "shockley"):
            raise AeqpropError(f"diodes='{diodes}': expected 'ideal' or 'shockley'")
        if not v_low < v_high:
            raise AeqpropError(f"v_low={v_low} must be below v_high={v_high}")
        self.sizes, self.g0, self.v_low, self.v_high = sizes, float(g0), float(v_low), float(v_high)
        self.bias, self.diodes, self.input_gain = bool(bias), diodes, float(input_gain)
        self.saturation_current, self.emission = float(saturation_current), float(emission)
        self.iterations = None if iterations in (None, 0, "converge") else int(iterations)
        self.dtype = np.dtype(dtype)
        self.tol = float(tol) if tol is not None else (1e-12 if self.dtype == np.float64 else 1e-6)
        self.max_iterations = int(max_iterations)
        self.n_inputs, self.n_outputs = sizes[0], sizes[-1]
        # Widths of the input layer and of the free layers (hidden..., output pairs).
        self.widths = [2 * sizes[0], *sizes[1:-1], 2 * sizes[-1]]
        self.n_hidden = len(sizes) - 2
        shapes = list(zip(self.widths[:-1], self.widths[1:]))
        self._slices, start = [], 0
        for fan_in, fan_out in shapes:
            self._slices.append(slice(start, start + fan_in * fan_out))
            start += fan_in * fan_out
        self.n_biased = sum(self.widths[1:])
        self._bias_slices = (slice(start, start + self.n_biased), slice(start + self.n_biased,
                                                                       start + 2 * self.n_biased))
        self.n_parameters = start + (2 * self.n_biased if self.bias else 0)
        self._version = 0
        self._cache_D = None  # (version, D per free layer)
        self._cache_input = None  # (inputs array, version, input layer potentials, first-layer current)
        self.parameters = self._initial(seed, init, init_gain)

    # --- construction -----------------------------------------------------------------------
    @classmethod
    def from_spec(cls, spec: str, seed: int = 0, **options) -> DRNSystem:
        """'drn:1568-100-10' (the spec counts the doubled input nodes, as the paper does)."""
        from ..circuit.builder import parse_drn_spec

        return cls(parse_drn_spec(spec), seed=seed, **options)

    def _initial(self, seed, init, gain) -> np.ndarray:
        rng = np.random.default_rng(seed)
        theta = np.zeros(self.n_parameters)
        if init == "builder":  # the same draws, in the same order, as deep_resistive_network
            for (fan_in, _), where in zip(zip(self.widths[:-1], self.widths[1:]), self._slices):
                theta[where] = rng.uniform(0.0, 2.0 * gain / fan_in, size=where.stop - where.start)
            if self.bias:
                for where in self._bias_slices:
                    theta[where] = rng.uniform(0.0, 0.25 * gain, size=self.n_biased)
        elif init == "paper":  # energy-based-learning model/variable/parameter.py: DenseWeight, Bias(0)
            for (fan_in, _), where in zip(zip(self.widths[:-1], self.widths[1:]), self._slices):
                scale = gain / np.sqrt(fan_in)
                theta[where] = np.maximum(rng.uniform(-scale, scale, size=where.stop - where.start), 0.0)
        else:
            raise AeqpropError(f"init='{init}': expected 'builder' or 'paper'")
        return theta

    def circuit(self):
        """The builder's Circuit with the current conductances (g = theta g0): a netlist away from SPICE."""
        from ..circuit.builder import deep_resistive_network

        circuit = deep_resistive_network(self.sizes, seed=0, g0=self.g0, v_low=self.v_low, v_high=self.v_high,
                                         bias=self.bias, ideal=self.diodes == "ideal",
                                         saturation_current=self.saturation_current, emission=self.emission)
        conductance = circuit.resistors.conductance.copy()
        conductance[circuit.learning.trainable] = self._theta.astype(np.float64) * self.g0
        return circuit.with_conductance(conductance)

    def source_values(self, circuit, inputs: np.ndarray) -> np.ndarray:
        """Values of every source of `circuit()` for a batch of data (input gain applied)."""
        return circuit.source_values(np.asarray(inputs, dtype=np.float64) * self.input_gain)

    # --- parameters -------------------------------------------------------------------------
    @property
    def parameters(self) -> np.ndarray:
        return self._theta.copy()

    @parameters.setter
    def parameters(self, theta: np.ndarray) -> None:
        theta = np.array(theta, dtype=self.dtype)  # a copy: the system owns its parameters
        if theta.shape != (self.n_parameters,):
            raise AeqpropError(f"expected {self.n_parameters} parameters, got shape {theta.shape}")
        if not np.isfinite(theta).all():
            raise DivergenceError("non-finite conductances: the learning step diverged")
        self._theta = theta
        self._bind()

    def _bind(self) -> None:
        """Views of the flat theta: weight blocks (fan_in, fan_out) and per-layer biases."""
        theta = self._theta
        self.weights = [theta[s].reshape(a, b) for s, (a, b) in
                        zip(self._slices, zip(self.widths[:-1], self.widths[1:]))]
        if self.bias:
            bp, bn = theta[self._bias_slices[0]], theta[self._bias_slices[1]]
            edges = np.cumsum([0, *self.widths[1:]])
            self.bias_plus = [bp[a:b] for a, b in zip(edges[:-1], edges[1:])]
            self.bias_minus = [bn[a:b] for a, b in zip(edges[:-1], edges[1:])]
        self._version += 1

    def parameter_bounds(self):
        return (np.zeros(self.n_parameters, dtype=self.dtype), np.full(self.n_parameters, np.inf, dtype=self.dtype))

    def per_parameter(self, rates) -> np.ndarray:
        """A (P,) array from per-block values: {"w1": .., "w2": .., "b": ..} or [w1, w2, ..] (biases: the last)."""
        if np.isscalar(rates):
            return np.full(self.n_parameters, float(rates))
        if isinstance(rates, dict):
            values = [rates[f"w{k + 1}"] for k in range(len(self._slices))]
            bias = rates.get("b", values[-1])
        else:
            values, bias = list(rates), rates[-1]
            if len(values) == len(self._slices) + 1:
                values, bias = values[:-1], values[-1]
        out = np.empty(self.n_parameters)
        for where, value in zip(self._slices, values):
            out[where] = value
        if self.bias:
            out[self._bias_slices[0].start:] = bias
        return out

    # --- the physics ------------------------------------------------------------------------
    def _conductance_sums(self) -> list:
        """D per free layer: the total conductance at each node (normalised), cached per theta."""
        if self._cache_D is not None and self._cache_D[0] == self._version:
            return self._cache_D[1]
        D = []
        for k in range(len(self.widths) - 1):
            d = self.weights[k].sum(axis=0, dtype=np.float64)
            if k + 1 < len(self.weights):
                d = d + self.weights[k + 1].sum(axis=1, dtype=np.float64)
            if self.bias:
                d = d + self.bias_plus[k] + self.bias_minus[k]
            D.append(d.astype(self.dtype))
        self._cache_D = (self._version, D)
        return D

    def _input_current(self, inputs: np.ndarray):
        """(input-layer potentials, current the inputs inject into the first free layer): one GEMM."""
        cached = self._cache_input
        if cached is not None and cached[0] is inputs and cached[1] == self._version:
            return cached[2], cached[3]
        x = np.asarray(inputs, dtype=self.dtype) * self.dtype.type(self.input_gain)
        v_in = np.concatenate([x, -x], axis=1)
        current = _matmul(v_in, self.weights[0])
        self._cache_input = (inputs, self._version, v_in, current)
        return v_in, current

    def _incoming(self, k: int, V: list, first_current) -> np.ndarray:
        """sum_j g_ij V_j over the neighbouring layers of free layer k, plus the fixed sources' current."""
        r = first_current if k == 0 else _matmul(V[k - 1], self.weights[k])
        if k + 1 < len(V):
            r = r + _matmul(V[k + 1], self.weights[k + 1].T)
        if self.bias:
            r = r + (self.bias_plus[k] - self.bias_minus[k])
        return r

    def _update_hidden(self, r, D):
        if self.diodes == "ideal":
            return np.clip(r / D, self.v_low, self.v_high)
        return self._shockley_node(r, D)

    def _shockley_node(self, r, D, tol=None):
        """argmin_V 1/2 D V^2 - r V + [G_up(V - v_high) + G_down(v_low - V)] / g0 per node (Shockley diodes).

        G(v) = Is (nVt (e^{v/nVt} - 1) - v) + gmin v^2 / 2. The derivative is increasing; the root is
        bracketed by [min(r/D, v_low), max(r/D, v_high)] and found by Newton steps kept inside the bracket.
        """
        r64, D64 = np.asarray(r, np.float64), np.asarray(D, np.float64)
        a = self.saturation_current / self.g0
        nvt = self.emission * THERMAL_VOLTAGE
        gmin = DEFAULT_GMIN / self.g0
        linear = r64 / D64
        lo = np.minimum(linear, self.v_low)
        hi = np.maximum(linear, self.v_high)
        V = np.clip(linear, self.v_low, self.v_high)
        tol = 1e-13 if tol is None else tol
        for _ in range(200):
            up = np.exp(np.minimum((V - self.v_high) / nvt, 700.0))
            down = np.exp(np.minimum((self.v_low - V) / nvt, 700.0))
            grad = D64 * V - r64 + a * (up - 1.0) - a * (down - 1.0) + gmin * (V - self.v_high) \
                - gmin * (self.v_low - V)
            curv = D64 + (a / nvt) * (up + down) + 2.0 * gmin
            lo = np.where(grad < 0, V, lo)
            hi = np.where(grad > 0, V, hi)
            step = V - grad / curv
            inside = (step > lo) & (step < hi)
            new = np.where(inside, step, 0.5 * (lo + hi))
            change = np.abs(new - V).max(initial=0.0)
            V = new
            if change <= tol * (1.0 + np.abs(V).max(initial=0.0)):
                break
        return V.astype(self.dtype)

    def _update_output(self, r, D, phase: Phase):
        n = self.n_outputs
        Dp, Dn = D[:n], D[n:]
        rp, rn = r[:, :n], r[:, n:]
        if phase.clamp is not None:  # V(op) - V(on) held at the clamp value; common mode free
            v = np.asarray(phase.clamp, dtype=self.dtype)
            on = (rp + rn - Dp * v) / (Dp + Dn)
            return np.concatenate([on + v, on], axis=1)
        beta = phase.beta
        if beta == 0.0:
            return r / D
        y = np.asarray(phase.target, dtype=self.dtype)
        det = Dp * Dn + beta * (Dp + Dn)
        ap, an = rp + beta * y, rn - beta * y
        op = ((Dn + beta) * ap + beta * an) / det
        on = (beta * ap + (Dp + beta) * an) / det
        return np.concatenate([op, on], axis=1)

    def _check_convex(self, phase: Phase, D) -> None:
        """A negative nudge must leave the co-content convex (else there is no equilibrium)."""
        beta = phase.beta
        if beta >= 0 or phase.clamp is not None:
            return
        n = self.n_outputs
        Dp, Dn = D[-1][:n].astype(np.float64), D[-1][n:].astype(np.float64)
        if self.n_hidden == 0:
            worst = float((Dp * Dn + beta * (Dp + Dn)).min())
        else:  # outputs' Schur complement with the last hidden layer eliminated (all its nodes free)
            W = self.weights[-1].astype(np.float64)
            S = np.diag(D[-1].astype(np.float64)) - (W.T / D[-2].astype(np.float64)) @ W
            A = np.hstack([np.eye(n), -np.eye(n)])
            worst = float(np.linalg.eigvalsh(S + beta * A.T @ A).min())
        if worst <= 0:
            raise DivergenceError(f"non-convex phase: beta={beta:g} makes the co-content unbounded below "
                                  "(the nudge conductance exceeds what the outputs' conductances allow); "
                                  "use a smaller |beta|")

    def settle(self, phase: Phase, start: DRNState | None = None, callback=None) -> DRNState:
        inputs = phase.inputs
        if phase.beta != 0.0 and phase.target is None and phase.clamp is None:
            raise AeqpropError("a nudged phase needs a target")
        D = self._conductance_sums()
        self._check_convex(phase, D)
        v_in, first = self._input_current(inputs)
        B, n_layers = len(v_in), len(self.widths) - 1
        if start is not None and len(start.layers[0]) == B:
            V = [layer.copy() for layer in start.layers]
        else:
            V = [np.zeros((B, w), dtype=self.dtype) for w in self.widths[1:]]
        order = range(n_layers) if (phase.beta == 0.0 and phase.clamp is None) else range(n_layers - 1, -1, -1)
        limit = self.iterations or self.max_iterations
        converged = False
        sweep = 0
        while sweep < limit:
            sweep += 1
            change = 0.0
            for k in order:
                r = self._incoming(k, V, first)
                new = self._update_output(r, D[k], phase) if k == n_layers - 1 else self._update_hidden(r, D[k])
                if self.iterations is None:
                    change = max(change, float(np.abs(new - V[k]).max(initial=0.0)))
                V[k] = new
            if callback is not None:
                try:
                    callback(self._energy(V, v_in, phase))
                except StopIteration:
                    break
            if self.iterations is None and change <= self.tol:
                converged = True
                break
        if not all(np.isfinite(layer).all() for layer in V):
            raise DivergenceError(f"phase with beta={phase.beta:g}: non-finite potentials")
        if self.iterations is None and not converged and callback is None:
            raise DivergenceError(f"phase with beta={phase.beta:g} did not settle in {limit} block sweeps")
        return DRNState(V, v_in, phase, self._version, sweep, converged or self.iterations is not None, self)

    def outputs(self, state: DRNState) -> np.ndarray:
        out = state.layers[-1]
        n = self.n_outputs
        return (out[:, :n] - out[:, n:]).astype(np.float64)

    def cost(self, state: DRNState, target: np.ndarray) -> np.ndarray:
        diff = self.outputs(state) - target
        return 0.5 * (diff * diff).sum(axis=1)

    # --- energy and local measurements ------------------------------------------------------
    def _pairs(self, V, v_in):
        """(V_a, V_b, block) for every block, V_a the fan-in side."""
        layers = [v_in, *V]
        return [(layers[k], layers[k + 1], W) for k, W in enumerate(self.weights)]

    def _energy(self, V, v_in, phase: Phase) -> np.ndarray:
        e = np.zeros(len(v_in))
        for Va, Vb, W in self._pairs(V, v_in):
            Va, Vb, W = Va.astype(np.float64), Vb.astype(np.float64), W.astype(np.float64)
            e += 0.5 * ((Va * Va) @ W.sum(axis=1) + (Vb * Vb) @ W.sum(axis=0)) - ((Va @ W) * Vb).sum(axis=1)
        for k, layer in enumerate(V):
            layer = layer.astype(np.float64)
            if self.bias:
                e += 0.5 * (((layer - 1.0) ** 2) @ self.bias_plus[k] + ((layer + 1.0) ** 2) @ self.bias_minus[k])
            if self.diodes == "shockley" and k < len(V) - 1:
                e += self._diode_co_content(layer).sum(axis=1)
        if phase.beta != 0.0 and phase.clamp is None:
            n = self.n_outputs
            out = V[-1].astype(np.float64)
            diff = out[:, :n] - out[:, n:] - phase.target
            e += 0.5 * phase.beta * (diff * diff).sum(axis=1)
        return e

    def _diode_co_content(self, V):
        a, nvt, gmin = self.saturation_current / self.g0, self.emission * THERMAL_VOLTAGE, DEFAULT_GMIN / self.g0
        total = 0.0
        for v in (V - self.v_high, self.v_low - V):
            total = total + a * (nvt * np.expm1(v / nvt) - v) + 0.5 * gmin * v * v
        return total

    def energy(self, state: DRNState) -> np.ndarray:
        return self._energy(state.layers, state.inputs, state.phase)

    def _block_gradient(self, Va, Vb, out=None) -> np.ndarray:
        """mean_b 1/2 (Va_i - Vb_j)^2 as one GEMM of augmented matrices (N, H)."""
        B = len(Va)
        one_a, one_b = np.ones((1, Va.shape[1]), Va.dtype), np.ones((1, Vb.shape[1]), Vb.dtype)
        left = np.vstack([Va, 0.5 * (Va * Va).mean(axis=0, keepdims=True), one_a])
        right = np.vstack([Vb * Vb.dtype.type(-1.0 / B), one_b, 0.5 * (Vb * Vb).mean(axis=0, keepdims=True)])
        return _matmul(left.T, right)

    def energy_gradient(self, state: DRNState) -> np.ndarray:
        grad = np.empty(self.n_parameters, dtype=self.dtype)
        for (Va, Vb, _), where in zip(self._pairs(state.layers, state.inputs), self._slices):
            grad[where] = self._block_gradient(Va, Vb).ravel()
        if self.bias:
            V = np.concatenate(state.layers, axis=1)
            grad[self._bias_slices[0]] = 0.5 * ((V - 1.0) ** 2).mean(axis=0)
            grad[self._bias_slices[1]] = 0.5 * ((V + 1.0) ** 2).mean(axis=0)
        return grad

    def relax_parameters(self, state: DRNState, knobs, epsilon) -> np.ndarray:
        theta = np.asarray(knobs) - epsilon * self.energy_gradient(state)
        return np.maximum(theta, 0.0)

    def descend(self, terms, step: float) -> None:
        """theta <- max(0, theta - step * sum_k c_k dE/dtheta(s_k)), in place: the EP family's update.

        `terms` is [(c_k, state_k)] for states settled at the current theta; each weight block
        takes one GEMM with beta=1 (the contrast is formed in the augmented matrices, so the
        input layer's squares cancel when sum_k c_k = 0 and no (P,) gradient is materialised).
        """
        terms = [(float(c), s) for c, s in terms if c != 0.0]
        if not terms:
            return
        B = len(terms[0][1].inputs)
        layers = [[s.inputs, *s.layers] for _, s in terms]
        shared_input = all(s.inputs is terms[0][1].inputs for _, s in terms)
        dt = self.dtype.type
        for k, W in enumerate(self.weights):
            if k == 0 and shared_input:
                Va = terms[0][1].inputs
                total = sum(c for c, _ in terms)
                left_rows = [Va, dt(0.5 * total) * (Va * Va).mean(axis=0, keepdims=True)]
                combined = sum(dt(c) * lay[1] for (c, _), lay in zip(terms, layers))
                right_rows = [combined * dt(-1.0 / B)]
            else:
                left_rows = [lay[k] for lay in layers]
                left_rows.append(sum(dt(0.5 * c) * (lay[k] * lay[k]).mean(axis=0, keepdims=True)
                                     for (c, _), lay in zip(terms, layers)))
                right_rows = [dt(-c / B) * lay[k + 1] for (c, _), lay in zip(terms, layers)]
            b_squares = sum(dt(0.5 * c) * (lay[k + 1] * lay[k + 1]).mean(axis=0, keepdims=True)
                            for (c, _), lay in zip(terms, layers))
            left = np.vstack([*left_rows, np.ones((1, W.shape[0]), self.dtype)])
            right = np.vstack([*right_rows, np.ones((1, W.shape[1]), self.dtype), b_squares])
            # rows: [Va..., 1/2 sum c a^2, 1] against [-c Vb / B..., 1, 1/2 sum c b^2]
            _gemm_into(W, left, right, -step)
            np.maximum(W, 0.0, out=W)
        if self.bias:
            for c, s in terms:
                V = np.concatenate(s.layers, axis=1)
                self._theta[self._bias_slices[0]] -= dt(step * c) * 0.5 * ((V - 1.0) ** 2).mean(axis=0)
                self._theta[self._bias_slices[1]] -= dt(step * c) * 0.5 * ((V + 1.0) ** 2).mean(axis=0)
            tail = self._theta[self._bias_slices[0].start:]
            np.maximum(tail, 0.0, out=tail)
        self._version += 1

    # --- exact gradient (reference) ---------------------------------------------------------
    def loss_gradient(self, state: DRNState, target: np.ndarray) -> np.ndarray:
        """dL/dtheta, L = batch mean of C(o(theta)) at the free equilibrium, by implicit differentiation.

        Adjoint: H lambda = dC/dV over the free nodes, H the co-content's Hessian (block
        tridiagonal: D_k on layer k, -W_k between layers); nodes held by a conducting ideal
        diode are frozen (lambda = 0). Solved by the same block Gauss-Seidel sweeps as the settle
        (the system is the settle's, linear), to 1e-13 relative. Then for the resistor between
        nodes a and b, dL/dtheta = -mean (V_a - V_b)(lambda_a - lambda_b): one augmented GEMM per block.
        `state` should be converged (settle with iterations=None); it is the gradient of the
        equilibrium's loss, not of a truncated relaxation.
        """
        V = [layer.astype(np.float64) for layer in state.layers]
        v_in = state.inputs.astype(np.float64)
        Ws = [W.astype(np.float64) for W in self.weights]
        D = [d.astype(np.float64) for d in self._conductance_sums()]
        n_layers, B = len(V), len(v_in)
        masks, Dh = [], []
        for k in range(n_layers):
            if k == n_layers - 1:
                masks.append(np.ones_like(V[k]))
                Dh.append(np.broadcast_to(D[k], V[k].shape))
            elif self.diodes == "ideal":
                span = 1e-9 * (1.0 + abs(self.v_high) + abs(self.v_low))
                masks.append(((V[k] > self.v_low + span) & (V[k] < self.v_high - span)).astype(float))
                Dh.append(np.broadcast_to(D[k], V[k].shape))
            else:
                a, nvt = self.saturation_current / self.g0, self.emission * THERMAL_VOLTAGE
                diode = (a / nvt) * (np.exp((V[k] - self.v_high) / nvt) + np.exp((self.v_low - V[k]) / nvt)) \
                    + 2.0 * DEFAULT_GMIN / self.g0
                masks.append(np.ones_like(V[k]))
                Dh.append(D[k] + diode)
        r = self.outputs(state) - np.asarray(target, float)
        g = [np.zeros_like(v) for v in V]
        g[-1] = np.concatenate([r, -r], axis=1)
        lam = [np.zeros_like(v) for v in V]
        for _ in range(100_000):
            change = 0.0
            for k in range(n_layers - 1, -1, -1):
                rhs = g[k].copy()
                if k > 0:
                    rhs += lam[k - 1] @ Ws[k]
                if k + 1 < n_layers:
                    rhs += lam[k + 1] @ Ws[k + 1].T
                new = masks[k] * rhs / Dh[k]
                change = max(change, float(np.abs(new - lam[k]).max(initial=0.0)))
                lam[k] = new
            if change <= 1e-13 * (1.0 + max(float(np.abs(x).max(initial=0.0)) for x in lam)):
                break
        grad = np.empty(self.n_parameters)
        layers, adjoints = [v_in, *V], [np.zeros_like(v_in), *lam]
        for k, where in enumerate(self._slices):
            Va, Vb, la, lb = layers[k], layers[k + 1], adjoints[k], adjoints[k + 1]
            left = np.vstack([Va, la, -(Va * la).mean(axis=0, keepdims=True), np.ones((1, Va.shape[1]))])
            right = np.vstack([lb / B, Vb / B, np.ones((1, Vb.shape[1])), -(Vb * lb).mean(axis=0, keepdims=True)])
            grad[where] = (left.T @ right).ravel()
        if self.bias:
            Vall, lall = np.concatenate(V, axis=1), np.concatenate(lam, axis=1)
            grad[self._bias_slices[0]] = -((Vall - 1.0) * lall).mean(axis=0)
            grad[self._bias_slices[1]] = -((Vall + 1.0) * lall).mean(axis=0)
        return grad
