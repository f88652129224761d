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
place (one GEMM per block, into θ or into its velocity): the fast path of the EP family.

Physics: the diodes, bias resistors and nudge are the element table's (`circuit.elements`);
the weight blocks' co-content, currents and dE/dtheta are fused matrix-product forms of the
resistor's stamp, held against `circuit.energy.Problem` on `circuit()` by tests/test_fast_paths.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy import matmul

from aeqprop_circuits.circuit.circuit import DEFAULT_GMIN, THERMAL_VOLTAGE
from aeqprop_circuits.circuit.elements import JUNCTION, NUDGE, RESISTOR
from aeqprop_circuits.errors import AeqpropError, DivergenceError
from aeqprop_circuits.systems.base import (
    ExactLossGradient,
    FusedContrastStep,
    InPlaceDescent,
    InPlaceMomentum,
    ParameterGroups,
    Phase,
    PhysicalSystem,
    VelocityCheckpoint,
)
from aeqprop_circuits.systems.kernels import clip_nonnegative, gemm_into, update_panels


@dataclass(eq=False)
class _StepPlan:
    """What the compiled step (one_hidden.py) takes of one contrast, per batch size."""

    weights: np.ndarray  # (K,) c_k / B per term
    betas: np.ndarray  # (K,) beta_k per term (0: the free phase)
    min_beta: float
    panel_rows: int  # rows of the input block updated at a time (kernels.update_panels)


@dataclass(eq=False)
class _Derived:
    version: int
    D: list
    inv_D: list
    bias_current: list
    schur_bound: float | None = None
    folded: tuple | None = None  # one hidden layer: blocks with 1/D folded in (see _relax_one_hidden)


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


class DRNSystem(PhysicalSystem, ExactLossGradient, ParameterGroups, InPlaceDescent, FusedContrastStep, InPlaceMomentum,
                VelocityCheckpoint):
    """A deep resistive network `sizes = [n_inputs, hidden..., n_outputs]` (data counts; inputs doubled).

    diodes:      "ideal" (clipping, closed-form block update) or "shockley" (Is, n; block Newton).
    iterations:  block sweeps per phase (the paper's 4), or None to sweep until the largest
                 change is below `tol` V (at most `max_iterations`).
    input_gain:  the input sources are at +-input_gain * x (1: the builder's circuit).
    dtype:       float64 (default: reference accuracy) or float32 (training; the presets).
    init:        "builder" (the builder's conductances for this seed: uniform [0, 2/fan_in], biases
                 uniform [0, 1/4]) or "paper" (Scellier 2024's code: kaiming-uniform weights
                 gain/sqrt(fan_in) clipped at 0, biases 0).
    """

    def __init__(self, sizes, *, seed: int = 0, g0: float = 1e-3, v_low: float = 0.0, v_high: float = 1.0,
                 bias: bool = True, diodes: str = "ideal", saturation_current: float = 1e-14,
                 emission: float = 1.0, iterations: int | None = None, tol: float | None = None,
                 max_iterations: int = 10_000, input_gain: float = 1.0, dtype="float64", init: str = "builder",
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
        # The JUNCTION stamp's parameters in normalised units (Is / g0, n Vt, gmin / g0).
        self._junction = (self.saturation_current / self.g0, self.emission * THERMAL_VOLTAGE, DEFAULT_GMIN / self.g0)
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
        self._colsum0 = None  # (version, column sums of the input block)
        n = self.n_outputs
        self._swap = np.r_[n:2 * n, 0:n]  # output layer [op, on] -> [on, op]
        self._augmented = {}  # (rows, width) -> reusable buffer of descend's augmented matrices
        self._plans = {}  # (batch size, terms) -> _StepPlan of contrast_step, or None if it does not apply
        self._no_velocity = (np.empty((0, 0), self.dtype), np.empty(0, self.dtype))  # contrast_step without momentum
        self.momentum = 0.0  # SGD momentum of `descend` / `contrast_step` (PyTorch's form), set by the trainer
        self._velocity = None  # (P,) like theta, allocated at the first step with momentum
        self.parameters = self._initial(seed, init, init_gain)

    # --- construction -----------------------------------------------------------------------
    @classmethod
    def from_spec(cls, spec: str, seed: int = 0, **options) -> DRNSystem:
        """'drn:1568-100-10' (the spec counts the doubled input nodes, as the paper does)."""
        from aeqprop_circuits.circuit.builder import parse_drn_spec

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
        from aeqprop_circuits.circuit.builder import deep_resistive_network

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
        """D per free layer: the total conductance at each node (normalised)."""
        return self._derived().D

    def _derived(self) -> _Derived:
        """What the settles need of theta (D, 1/D, bias currents, nudge coefficients), cached per theta."""
        cached = self._cache_D
        if cached is not None and cached.version == self._version:
            return cached
        D, bias_current = [], []
        dt = self.dtype
        for k in range(len(self.widths) - 1):
            if k == 0 and self._colsum0 is not None and self._colsum0[0] == self._version:
                d = self._colsum0[1].copy()  # from the input GEMM of this theta
            else:
                d = self.weights[k].sum(axis=0, dtype=dt)
            if k + 1 < len(self.weights):
                d += self.weights[k + 1].sum(axis=1, dtype=dt)
            if self.bias:
                d += self.bias_plus[k] + self.bias_minus[k]
                bias_current.append(self.bias_plus[k] - self.bias_minus[k])
            else:
                bias_current.append(np.zeros(self.widths[k + 1], dt))
            D.append(d)
        self._cache_D = _Derived(self._version, D, [1.0 / d for d in D], bias_current)
        return self._cache_D

    def _input_current(self, inputs: np.ndarray):
        """(input-layer potentials, current into the first free layer from inputs and bias rails): one GEMM."""
        cached = self._cache_input
        if cached is not None and cached[0] is inputs and cached[1] == self._version:
            return cached[2], cached[3]
        x = np.asarray(inputs, dtype=self.dtype) * self.dtype.type(self.input_gain)
        B = len(x)
        v_in = np.empty((B + 1, 2 * x.shape[1]), dtype=self.dtype)
        v_in[:B, :x.shape[1]] = x
        np.negative(x, out=v_in[:B, x.shape[1]:])
        v_in[B] = 1.0
        stacked = matmul(v_in, self.weights[0])  # the input currents and, in the last row, W0's column sums
        self._colsum0 = (self._version, stacked[B])
        v_in, current = v_in[:B], stacked[:B]
        current += self._derived().bias_current[0]
        self._cache_input = (inputs, self._version, v_in, current)
        return v_in, current

    def _incoming(self, k: int, V: list, first_current, bias_current) -> np.ndarray:
        """sum_j g_ij V_j over the neighbouring layers of free layer k, plus the fixed sources' current."""
        if k == 0:
            r = first_current
        else:
            r = matmul(V[k - 1], self.weights[k])
            r += bias_current[k]
        if k + 1 < len(V):
            r = r + matmul(V[k + 1], self.weights[k + 1].T)
        return r

    def _update_hidden(self, r, D, inv_D):
        if self.diodes == "ideal":
            h = r * inv_D
            np.maximum(h, self.v_low, out=h)
            return np.minimum(h, self.v_high, out=h)
        return self._shockley_node(r, D)

    def _shockley_node(self, r, D, tol=None):
        """argmin_V 1/2 D V^2 - r V + [G_up(V - v_high) + G_down(v_low - V)] / g0 per node (Shockley diodes).

        G is the JUNCTION stamp's co-content. The derivative is increasing; the root is bracketed by
        [min(r/D, v_low), max(r/D, v_high)] and found by Newton steps kept inside the bracket.
        """
        r64, D64 = np.asarray(r, np.float64), np.asarray(D, np.float64)
        nvt = self._junction[1]
        linear = r64 / D64
        lo = np.minimum(linear, self.v_low)
        hi = np.maximum(linear, self.v_high)
        V = np.clip(linear, self.v_low, self.v_high)
        tol = 1e-13 if tol is None else tol
        for _ in range(200):
            grad = D64 * V - r64 + self._junction_current(V)
            curv = D64 + self._junction_conductance(V)
            lo = np.where(grad < 0, V, lo)
            hi = np.where(grad > 0, V, hi)
            with np.errstate(invalid="ignore"):  # inf / inf beyond the junctions' overflow: bisected below
                step = V - grad / curv
            # Far up an exponential a Newton step moves by ~nVt only: bisect there instead.
            inside = (step > lo) & (step < hi) & (np.maximum(V - self.v_high, self.v_low - V) < 40.0 * nvt)
            new = np.where(inside, step, 0.5 * (lo + hi))
            change = np.abs(new - V).max(initial=0.0)
            V = new
            if change <= tol * (1.0 + np.abs(V).max(initial=0.0)):
                break
        return V.astype(self.dtype)

    def _nudge_rows(self, betas, target, B: int, derived: _Derived):
        """Coefficients of the output pairs' 2x2 solve, rows i*B..(i+1)*B nudged at betas[i].

        (a, b, c, pull) with a = (Dn+beta)/det, b = beta/det, c = (Dp+beta)/det, det = Dp Dn + beta (Dp + Dn),
        pull = beta y, shaped (m, 1, n) and (m, B, n) for m = len(betas), to broadcast against the
        layer viewed as (m, B, 2n).
        """
        if min(betas) < 0:
            self._check_convex(min(betas), derived)
        n = self.n_outputs
        beta = np.asarray(betas, dtype=self.dtype)[:, None, None]
        Dp, Dn = derived.D[-1][:n], derived.D[-1][n:]
        inv_det = 1.0 / (Dp * Dn + beta * (Dp + Dn))
        pull = np.asarray(target, dtype=self.dtype).reshape(len(betas), B, n) * beta
        return (Dn + beta) * inv_det, beta * inv_det, (Dp + beta) * inv_det, pull

    def _update_output(self, r, derived: _Derived, nudge, clamp, k: int):
        if clamp is None and nudge is None:
            return r * derived.inv_D[k]
        n = self.n_outputs
        rp, rn = r[:, :n], r[:, n:]
        if clamp is not None:  # V(op) - V(on) held at the clamp value; common mode free
            D = derived.D[k]
            v = np.asarray(clamp, dtype=self.dtype)
            on = (rp + rn - D[:n] * v) / (D[:n] + D[n:])
            return np.concatenate([on + v, on], axis=1)
        a, b, c, pull = nudge
        m = len(pull)
        rp, rn = rp.reshape(m, -1, n), rn.reshape(m, -1, n)
        ap, an = rp + pull, rn - pull
        out = np.empty((m, len(r) // m, 2 * n), dtype=r.dtype)
        np.add(a * ap, b * an, out=out[..., :n])
        np.add(b * ap, c * an, out=out[..., n:])
        return out.reshape(len(r), 2 * n)

    def _check_convex(self, beta: float, derived: _Derived) -> None:
        """A negative nudge must leave the co-content convex (else there is no equilibrium).

        The test is on the outputs' Schur complement S with the last hidden layer eliminated (all
        its nodes free, the least convex case): S + beta A^T A > 0, A = [I, -I], whose eigenvalues
        are >= lambda_min(S) - 2 |beta|. A Gershgorin bound on lambda_min(S) (S's rows are
        diagonally dominant), computed once per theta, decides most cases without an eigenvalue
        solve; for several hidden layers the test is necessary, not sufficient.
        """
        n = self.n_outputs
        D = derived.D
        Do = D[-1].astype(np.float64)
        if self.n_hidden == 0:
            worst = float((Do[:n] * Do[n:] + beta * (Do[:n] + Do[n:])).min())
        else:
            if derived.schur_bound is None:
                W = self.weights[-1]
                share = W.sum(axis=1) / D[-2]
                derived.schur_bound = float((Do - share @ W).min())
            worst = derived.schur_bound + 2.0 * beta
            if worst <= 0:
                W = self.weights[-1].astype(np.float64)
                S = np.diag(Do) - (W.T / D[-2].astype(np.float64)) @ W
                A = np.hstack([np.eye(n), -np.eye(n)])
                worst = float(np.linalg.eigvalsh(S + beta * A.T @ A).min())
        if worst <= 0:
            raise DivergenceError(f"non-convex phase: beta={beta:g} makes the co-content unbounded below "
                                  "(the nudge conductance exceeds what the outputs' conductances allow); "
                                  "use a smaller |beta|")

    def settle(self, phase: Phase, start: DRNState | None = None, callback=None) -> DRNState:
        if phase.beta != 0.0 and phase.target is None and phase.clamp is None:
            raise AeqpropError("a nudged phase needs a target")
        v_in, first = self._input_current(phase.inputs)
        derived = self._derived()
        B = len(v_in)
        nudge = None
        if phase.beta != 0.0 and phase.clamp is None:
            nudge = self._nudge_rows([phase.beta], phase.target, B, derived)
        if start is not None and len(start.layers[0]) == B:
            V = list(start.layers)  # updates make new arrays: the start state is not modified
        else:
            V = [np.zeros((B, w), dtype=self.dtype) for w in self.widths[1:]]
        energy = None if callback is None else (lambda layers: self._energy(layers, v_in, phase))
        sweeps, converged = self._relax(V, first, derived, nudge, phase.clamp, callback, energy)
        return DRNState(V, v_in, phase, self._version, sweeps, converged, self)

    def settle_nudges(self, base: Phase, betas, start: DRNState) -> list[DRNState]:
        """The phases base.nudged(b), b in betas, from `start`, settled together as one batch of len(betas) B rows.

        The physics of each sample is unchanged (samples never interact); stacking only makes
        one layer update serve every phase (the EP family's nudged phases share inputs and theta).
        """
        v_in, first = self._input_current(base.inputs)
        derived = self._derived()
        B, m = len(v_in), len(betas)
        nudge = self._nudge_rows(betas, np.concatenate([base.target] * m), B, derived)
        V = [np.concatenate([layer] * m) for layer in start.layers]
        sweeps, converged = self._relax(V, np.concatenate([first] * m), derived, nudge, None, None, None)
        return [DRNState([layer[i * B:(i + 1) * B] for layer in V], v_in, base.nudged(b), self._version, sweeps,
                         converged, self) for i, b in enumerate(betas)]

    def _relax(self, V: list, first, derived: _Derived, nudge, clamp, callback, energy) -> tuple[int, bool]:
        """Block coordinate descent on V in place (list of layers): returns (sweeps, converged).

        Forward (input to output) sweeps in a free phase, backward (from the nudged or clamped
        outputs) otherwise.
        """
        n_layers = len(V)
        free = nudge is None and clamp is None
        if n_layers == 2 and self.iterations and callback is None and clamp is None and self.diodes == "ideal":
            return self._relax_one_hidden(V, first, derived, nudge), True
        order = range(n_layers) if free else range(n_layers - 1, -1, -1)
        limit = self.iterations or self.max_iterations
        exact = self.iterations is None
        converged = False
        sweep = 0
        while sweep < limit:
            sweep += 1
            change = 0.0
            for k in order:
                r = self._incoming(k, V, first, derived.bias_current)
                if k == n_layers - 1:
                    new = self._update_output(r, derived, nudge, clamp, k)
                else:
                    new = self._update_hidden(r, derived.D[k], derived.inv_D[k])
                if exact:
                    change = max(change, float(np.abs(new - V[k]).max(initial=0.0)))
                V[k] = new
            if callback is not None:
                try:
                    callback(energy(V))
                except StopIteration:
                    break
            if exact and change <= self.tol:
                converged = True
                break
        if exact and not all(np.isfinite(layer).all() for layer in V):
            raise DivergenceError("non-finite potentials: the phase diverged")
        if exact and not converged and callback is None:
            raise DivergenceError(f"a phase did not settle in {limit} block sweeps")
        return sweep, converged or not exact

    def outputs(self, state: DRNState) -> np.ndarray:
        return self._outputs_of(state.layers[-1])

    def _outputs_of(self, layer: np.ndarray) -> np.ndarray:
        """V(op) - V(on) (B, n_outputs) of an output layer [op, on]."""
        n = self.n_outputs
        return (layer[:, :n] - layer[:, n:]).astype(np.float64)

    def cost(self, state: DRNState, target: np.ndarray) -> np.ndarray:
        diff = self.outputs(state) - target
        return 0.5 * (diff * diff).sum(axis=1)

    def _relax_one_hidden(self, V: list, first, derived: _Derived, nudge) -> int:
        """`_relax` for one hidden layer, ideal diodes and a fixed number of sweeps (the training hot loop).

        The same block updates with the per-node factors folded into the blocks once per theta
        (W / D), and the output pairs' 2x2 solve folded into one matrix per nudge strength:
        op = a rp + b rn + (a - b) beta y, on = b rp + c rn + (b - c) beta y with r = h W + bias current,
        so an output update is one (batched) matmul and an add, a hidden update a matmul and a clip.
        """
        h, o = V
        lo, hi = self.v_low, self.v_high
        if derived.folded is None:
            W = self.weights[1]
            derived.folded = (np.ascontiguousarray((W * derived.inv_D[0][:, None]).T),  # (2n, H): o -> h
                              W * derived.inv_D[1], derived.bias_current[1] * derived.inv_D[1])
        to_hidden, to_output, output_bias = derived.folded
        scaled_first = first * derived.inv_D[0]
        maximum, minimum = np.maximum, np.minimum
        if nudge is None:
            for _ in range(self.iterations):
                h = matmul(o, to_hidden)
                h += scaled_first
                minimum(maximum(h, lo, out=h), hi, out=h)
                o = matmul(h, to_output)
                o += output_bias
        else:
            a, b, c, pull = nudge  # (m, 1, n), (m, 1, n), (m, 1, n), (m, B, n)
            n, m = self.n_outputs, len(pull)
            W, bias = self.weights[1], derived.bias_current[1]
            diagonal = np.concatenate([a, c], axis=2)  # multiplies r
            cross = np.concatenate([b, b], axis=2)  # multiplies r with its halves swapped
            swap = self._swap
            blocks = W * diagonal + W[:, swap] * cross  # (m, H, 2n)
            offset = (bias * diagonal + bias[swap] * cross
                      + np.concatenate([(a - b) * pull, (b - c) * pull], axis=2)).reshape(-1, 2 * n)
            rows = len(first) // m
            for _ in range(self.iterations):
                o = matmul(h.reshape(m, rows, -1), blocks).reshape(len(first), 2 * n)
                o += offset
                h = matmul(o, to_hidden)
                h += scaled_first
                minimum(maximum(h, lo, out=h), hi, out=h)
        V[0], V[1] = h, o
        return self.iterations

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
            if self.bias:  # resistors to the +1 V and -1 V rails
                e += (RESISTOR.content(layer - 1.0, self.bias_plus[k].astype(np.float64))
                      + RESISTOR.content(layer + 1.0, self.bias_minus[k].astype(np.float64))).sum(axis=1)
            if self.diodes == "shockley" and k < len(V) - 1:
                e += self._junction_content(layer).sum(axis=1)
        if phase.beta != 0.0 and phase.clamp is None:
            e += NUDGE.content(self._outputs_of(V[-1]), phase.beta, phase.target).sum(axis=1)
        return e

    # The two junctions of a hidden node at V: node -> v_high rail (branch voltage V - v_high) and
    # v_low rail -> node (v_low - V); the node's current and conductance are d/dV of their co-content.
    def _junction_content(self, V):
        return JUNCTION.content(V - self.v_high, *self._junction) + JUNCTION.content(self.v_low - V, *self._junction)

    def _junction_current(self, V):
        return JUNCTION.current(V - self.v_high, *self._junction) - JUNCTION.current(self.v_low - V, *self._junction)

    def _junction_conductance(self, V):
        return JUNCTION.conductance(V - self.v_high, *self._junction) \
            + JUNCTION.conductance(self.v_low - V, *self._junction)

    def _gradient(self, V, phase: Phase) -> list:
        """d(energy)/dV per free layer (B, width), from the settle's own pieces: the net current
        leaving each node (g0 V), the ideal diodes' currents excluded (they are the settle's clip)."""
        _, first = self._input_current(phase.inputs)
        derived = self._derived()
        out = []
        for k, layer in enumerate(V):
            grad = derived.D[k] * layer - self._incoming(k, V, first, derived.bias_current)
            if self.diodes == "shockley" and k < len(V) - 1:
                grad = grad + self._junction_current(layer)
            out.append(grad)
        if phase.beta != 0.0 and phase.clamp is None:
            pull = NUDGE.current(self._outputs_of(V[-1]), phase.beta, phase.target)
            out[-1] = out[-1] + np.concatenate([pull, -pull], axis=1)
        return out

    def energy(self, state: DRNState) -> np.ndarray:
        return self._energy(state.layers, state.inputs, state.phase)

    def _block_gradient(self, Va, Vb, out=None) -> np.ndarray:
        """mean_b 1/2 (Va_i - Vb_j)^2 as one GEMM of augmented matrices (N, H)."""
        B = len(Va)
        one_a, one_b = np.ones((1, Va.shape[1]), Va.dtype), np.ones((1, Vb.shape[1]), Vb.dtype)
        left = np.vstack([Va, 0.5 * (Va * Va).mean(axis=0, keepdims=True), one_a])
        right = np.vstack([Vb * Vb.dtype.type(-1.0 / B), one_b, 0.5 * (Vb * Vb).mean(axis=0, keepdims=True)])
        return matmul(left.T, right)

    def energy_gradient(self, state: DRNState) -> np.ndarray:
        grad = np.empty(self.n_parameters, dtype=self.dtype)
        for (Va, Vb, _), where in zip(self._pairs(state.layers, state.inputs), self._slices):
            grad[where] = self._block_gradient(Va, Vb).ravel()
        if self.bias:
            V = np.concatenate(state.layers, axis=1)
            for where, rail in zip(self._bias_slices, (1.0, -1.0)):
                grad[where] = RESISTOR.parameter_gradient(V - rail, self._theta[where]).mean(axis=0)
        return grad

    def relax_parameters(self, state: DRNState, knobs, epsilon) -> np.ndarray:
        theta = np.asarray(knobs) - epsilon * self.energy_gradient(state)
        return np.maximum(theta, 0.0)

    def block_steps(self, step) -> list | None:
        """Per-block step sizes [w1, w2, ..., bias] from a scalar or a (P,) array; None if not constant per block."""
        if np.isscalar(step):
            return [float(step)] * (len(self._slices) + 1)
        step = np.asarray(step, dtype=np.float64)
        pieces = [step[s] for s in self._slices] + ([step[self._bias_slices[0].start:]] if self.bias else [])
        if any(piece.size and not np.all(piece == piece[0]) for piece in pieces):
            return None
        steps = [float(piece[0]) for piece in pieces]
        return steps if self.bias else steps + [0.0]

    def descend(self, terms, step) -> None:
        """theta <- max(0, theta - step * sum_k c_k dE/dtheta(s_k)), in place: the EP family's update.

        `step` is a scalar or per-block sizes [w1, w2, ..., bias] (`block_steps`).
        `terms` is [(c_k, state_k)] for states of one batch settled at the current theta. Each
        weight block takes one GEMM (into the block, or into its velocity) on augmented matrices (rows of
        all states, with their c_k / B), so no (P,) gradient is materialised; when the states share their inputs
        the input block's squares enter once, weighted by sum_k c_k (zero for a centred contrast).
        """
        terms = [(float(c), s) for c, s in terms if c != 0.0]
        if not terms:
            return
        steps = [float(step)] * (len(self.weights) + 1) if np.isscalar(step) else list(step)
        dt = self.dtype.type
        B = len(terms[0][1].inputs)
        weights = np.empty(len(terms) * B, dtype=self.dtype)  # (R,) c_k / B per row
        for i, (c, _) in enumerate(terms):
            weights[i * B:(i + 1) * B] = c / B
        stacked = [np.concatenate(parts) if len(parts) > 1 else parts[0]
                   for parts in zip(*[s.layers for _, s in terms])]
        shared = all(s.inputs is terms[0][1].inputs for _, s in terms)
        layers = [None if shared else np.concatenate([s.inputs for _, s in terms]), *stacked]
        for k, W in enumerate(self.weights):
            Vb = layers[k + 1]
            if k == 0 and shared:
                Va = terms[0][1].inputs
                total = sum(c for c, _ in terms)
                pulled = (Vb * weights[:, None]).reshape(len(terms), B, -1).sum(axis=0)
            else:
                Va = layers[k]
                total = None
                pulled = Vb * weights[:, None]
            # [Va; 1/2 sum c a^2 / B; 1]^T [-(c/B) Vb; 1; 1/2 sum c b^2 / B] = sum_k c_k dE/dW(s_k)
            # (without the squares of Va when their weight sum_k c_k is 0)
            left, right = self._augmented_pair(len(Va), W.shape, total != 0.0)
            left[:len(Va)] = Va
            if total is None:
                np.matmul(weights, Va * Va, out=left[-2])
                left[-2] *= dt(0.5)
            elif total:
                np.multiply(np.add.reduce(Va * Va, axis=0), dt(0.5 * total / B), out=left[-2])
            np.negative(pulled, out=right[:len(Va)])
            np.matmul(weights, Vb * Vb, out=right[-1])
            right[-1] *= dt(0.5)
            self._descend_block(k, left, right, steps[k])
        if self.bias:
            V = np.concatenate(stacked, axis=1)
            self._descend_biases(np.stack([V - 1.0, V + 1.0]), weights, steps[-1])
        self._version += 1

    def _descend_biases(self, rails: np.ndarray, weights: np.ndarray, step: float) -> None:
        """The biases' part of `descend`: rails = [V - 1, V + 1] (2, R, n_biased), overwritten by its squares.

        The +1 V biases then the -1 V ones, as theta stores them: one (broadcast) product for both.
        """
        np.square(rails, out=rails)
        start = self._bias_slices[0].start
        biases, gradient = self._theta[start:], self.dtype.type(0.5) * (weights @ rails).ravel()
        if self.momentum:
            velocity = self._velocities()[start:]
            velocity *= self.dtype.type(self.momentum)
            velocity += gradient
            gradient = velocity
        biases -= self.dtype.type(step) * gradient
        clip_nonnegative(biases)

    def _descend_block(self, k: int, left: np.ndarray, right: np.ndarray, step: float) -> None:
        """W_k <- max(0, W_k - step * left^T right), through the velocity when momentum > 0."""
        W = self.weights[k]
        if self.momentum:
            velocity = self._velocities()[self._slices[k]].reshape(W.shape)
            gemm_into(velocity, left, right, 1.0, keep=self.momentum)
            W -= self.dtype.type(step) * velocity
            clip_nonnegative(W)
            return
        for where in update_panels(*W.shape, W.itemsize):
            panel = W[where]
            gemm_into(panel, left[:, where], right, -step)
            clip_nonnegative(panel)

    def _velocities(self) -> np.ndarray:
        """The momentum buffer, zero at the first step (and after a resume: it is not checkpointed)."""
        if self._velocity is None:
            self._velocity = np.zeros_like(self._theta)
        return self._velocity

    def _augmented_pair(self, rows: int, shape, fan_in_squares: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Reusable buffers [V_a; squares_a; 1] and [V_b; 1; squares_b] (constant rows set), rows + 2 high.

        Without `fan_in_squares` (a contrast whose weights sum to 0 on shared inputs: those squares
        cancel exactly) the pair is [V_a; 1] and [V_b; squares_b]: one GEMM row fewer.
        """
        key = (rows, *shape, fan_in_squares)
        pair = self._augmented.get(key)
        if pair is None:
            extra = 2 if fan_in_squares else 1
            left, right = np.empty((rows + extra, shape[0]), self.dtype), np.empty((rows + extra, shape[1]), self.dtype)
            left[-1] = 1.0
            if fan_in_squares:
                right[-2] = 1.0
            pair = self._augmented[key] = (left, right)
        return pair

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
                masks.append(np.ones_like(V[k]))
                Dh.append(D[k] + self._junction_conductance(V[k]))
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

    # --- training fast path -----------------------------------------------------------------
    in_place = True  # every instance has the in-place kernels (InPlaceDescent)

    def in_place_rates(self, learning_rate) -> list | None:
        """What `descend` takes for runs/inplace.py: per-block step sizes, or None if not constant per block."""
        return self.block_steps(learning_rate)

    def contrast_step(self, x: np.ndarray, target: np.ndarray, terms, rates) -> DRNState | None:
        """One step of a nudge contrast for one hidden layer, compiled (one_hidden.py): free phase, nudged
        phases, update in place, in the arithmetic of settle, settle_nudges and descend (tests check one step
        against them), in one call.

        terms: ((c_k, beta_k), ...), the contrast's weights / beta and the phases' nudges (0: the free
        phase); rates: per-block step sizes [w1, w2, bias] or a scalar. Returns the free phase's state, or
        None where there is no compiled step (several hidden layers, Shockley diodes, sweeps to
        convergence, no biases, every c_k = 0).
        """
        plan = self._plans.get((len(x), terms), False)
        if plan is False:
            plan = self._plans[len(x), terms] = self._make_plan(terms, len(x))
        if plan is None:
            return None
        from aeqprop_circuits.systems.drn import one_hidden  # numba is imported only where a step is compiled

        dt = self.dtype.type
        rates = np.array([rates] * 3 if np.isscalar(rates) else rates, dtype=self.dtype)
        if rates.shape != (3,):
            raise AeqpropError(f"the compiled step takes a scalar rate or three [w1, w2, bias], got {rates.shape}")
        x = np.ascontiguousarray(x, dtype=self.dtype)
        y = np.ascontiguousarray(target, dtype=self.dtype)
        W0, W1 = self.weights
        plus, minus = self._theta[self._bias_slices[0]], self._theta[self._bias_slices[1]]
        if self.momentum:
            velocity = self._velocities()
            velocities = (velocity[self._slices[0]].reshape(W0.shape), velocity[self._slices[1]].reshape(W1.shape),
                          velocity[self._bias_slices[0].start:])
        else:
            velocities = (self._no_velocity[0], self._no_velocity[0], self._no_velocity[1])
        for checked in (False, True):
            convex, h, o, v_in = one_hidden.step(
                x, y, W0, W1, plus, minus, dt(self.input_gain), dt(self.v_low), dt(self.v_high), self.iterations,
                plan.weights, plan.betas, rates, dt(self.momentum), *velocities, plan.panel_rows, checked)
            if convex:
                break
            self._check_convex(plan.min_beta, self._derived())  # the full test where the bound fails: raises
        self._version += 1
        return DRNState([h, o], v_in, Phase(x, 0.0, target), self._version - 1, self.iterations, True, self)

    def _make_plan(self, terms, B: int) -> _StepPlan | None:
        fusable = self.n_hidden == 1 and self.diodes == "ideal" and self.iterations and self.bias
        terms = [(float(c), float(b)) for c, b in terms if c != 0.0]
        if not fusable or not terms:
            return None
        weights = np.array([c / B for c, _ in terms]).astype(self.dtype)  # as descend casts c_k / B
        betas = np.array([b for _, b in terms])
        panel_rows = update_panels(*self.weights[0].shape, self.dtype.itemsize)[0].stop
        return _StepPlan(weights=weights, betas=betas.astype(self.dtype), min_beta=float(betas.min()),
                         panel_rows=panel_rows)
