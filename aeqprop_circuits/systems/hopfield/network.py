"""Layered Hopfield-like networks (dense and convolutional) as PhysicalSystems.

Energy (Aeqprop eq. 20-22, EBL study eq. 18-19), for layers s_1..s_N and input s_0 = x:

    E(theta, x, s) = sum_k 1/2 |s_k|^2 - sum_k s_k . F_k(s_{k-1}; W_k) - sum_k b_k . s_k
    C(s, y)        = c |s_N - y|^2          (c = `cost_scale`; both papers write c = 1, both
                                             authors' codes use c = 1/2, as the aeqprop-* and ebl-dchn presets)

with each s_k in a box [p_k, q_k] (infinite bounds allowed). F_k is a dense product or a
convolution followed by average / max pooling (interactions.py). The total energy of a
phase is E + beta C, or E with the output layer held at `phase.clamp` (CL, CpL).

Relaxation: exact block coordinate descent. Given its neighbours, E + beta C is a separable
quadratic in one layer, so the whole layer is updated in closed form

    s_k = clip(F_k(s_{k-1}) + F_{k+1}^T(s_{k+1}) + b_k, p_k, q_k)          (hidden layers)
    s_N = clip((F_N(s_{N-1}) + b_N + 2 beta c y) / (1 + 2 beta c), p_N, q_N)  (output)

(when 1 + 2 beta c <= 0 the output energy is concave per unit and its minimiser over a
bounded box is the better endpoint; an unbounded output then raises DivergenceError).
Layers of the same parity do not interact, so updating all odd layers then all even ones
("alternating", EBL App. C) is exact block descent too; "sequential" relaxes the layers one
by one, forward in free phases and backward in nudged phases (Aeqprop App. C). With
average pooling every block update is an exact minimisation, so the energy never increases;
with max pooling the update uses the routing of the current state (as the EBL study does)
and monotonicity is not guaranteed. The input layer's drive F_1(x) + b_1 is computed once
per phase (and reused by later phases with the same input array and parameters).

Precision: "float64", "float32", or "float16". float16 is emulated: weights, input drive and
states are rounded to float16 after every update while products accumulate in float32
(numpy has no float16 GEMM; this reproduces the storage precision of the EBL study's 16-bit
runs, not the speed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from aeqprop_circuits.errors import DivergenceError
from aeqprop_circuits.systems.base import (
    EpochEnd,
    ExactLossGradient,
    InPlaceDescent,
    ParameterGroups,
    Phase,
    PhysicalSystem,
    TrainingState,
)
from aeqprop_circuits.systems.hopfield.interactions import Conv, Dense
from aeqprop_circuits.systems.kernels import clip, gemm_into

PRECISIONS = ("float64", "float32", "float16")
SCHEDULES = ("alternating", "sequential")


def _mean(values: np.ndarray) -> float:
    """values.mean() (same float: sum in the array's dtype, then / count) without np.mean's ~10 us of Python."""
    return float(values.sum() / len(values))


@dataclass(frozen=True, eq=False)
class HopfieldState:
    """An equilibrium (or the last iterate) of one phase.

    layers: (s_1, ..., s_N), each (B, *layer_shape), never mutated.
    phase: the Phase it was settled under (energy() needs beta, target and clamp).
    iterations: relaxation iterations performed; change: L1 change of the last one
    (batch mean of sum over units of |s_next - s_previous|); converged: change < threshold.
    """

    layers: tuple
    phase: Phase
    iterations: int = 0
    converged: bool = False
    change: float = float("inf")

    @property
    def output(self) -> np.ndarray:
        return self.layers[-1]


class HopfieldNetwork(PhysicalSystem, ExactLossGradient, ParameterGroups, InPlaceDescent, EpochEnd, TrainingState):
    """A layered Hopfield network; see the module docstring for energy and relaxation.

    input_shape: (n,) for a dense input, (C, H, W) for images (inputs arrive flattened in
    C-major order and are converted to channels-last once per phase, after zero-padding by
    `input_padding` pixels on each side).
    interactions: Dense / Conv objects, interaction k feeding layer k.
    bounds: one (p_k, q_k) per layer.
    threshold: convergence threshold xi on the L1 change of an iteration (0: always run
    max_iterations). max_iterations: (free phase, nudged / clamped phases).
    adaptive_threshold: Aeqprop App. C, xi_{t+1} = min(xi_t, gamma mu_t) where mu_t is the
    mean L1 distance between the first and the second equilibrium of a step over epoch t,
    recorded by settle() whenever a nudged or clamped phase starts from a given state;
    call end_epoch() at the end of each epoch.
    """

    def __init__(self, input_shape, interactions, bounds, *, precision: str = "float32",
                 schedule: str = "alternating", threshold: float = 1e-3,
                 max_iterations: tuple[int, int] = (100, 100), cost_scale: float = 1.0,
                 adaptive_threshold: bool = False, gamma: float = 0.01, input_padding: int = 0):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        if len(bounds) != len(interactions):
            raise ValueError(f"{len(interactions)} layers but {len(bounds)} bounds")
        self.input_shape = tuple(int(v) for v in input_shape)
        self.input_padding = int(input_padding)
        self.interactions = list(interactions)
        self.bounds = [(float(p), float(q)) for p, q in bounds]
        self.layer_shapes = [inter.post_shape for inter in self.interactions]
        self.n_layers = len(self.interactions)
        self.n_inputs = int(np.prod(self.input_shape))
        self.n_outputs = int(np.prod(self.layer_shapes[-1]))
        if len(self.layer_shapes[-1]) != 1:
            raise ValueError("the output layer must be dense (a vector)")
        self.precision = precision
        self.dtype = np.float64 if precision == "float64" else np.float32
        # the boxes as 0-d arrays for _relax_dense's clip (a numpy scalar is converted on every call:
        # 1 us of 5 at 16 x 1024); None for a layer unbounded on both sides
        self._box = [(np.array(p, self.dtype), np.array(q, self.dtype)) if np.isfinite([p, q]).any() else None
                     for p, q in self.bounds]
        self.schedule = schedule
        self.threshold = float(threshold)
        self.max_iterations = (int(max_iterations[0]), int(max_iterations[1]))
        self.cost_scale = float(cost_scale)
        self.adaptive_threshold = bool(adaptive_threshold)
        self.gamma = float(gamma)
        self._gap_sum, self._gap_count = 0.0, 0

        # flat parameter layout: W_1, b_1, W_2, b_2, ...
        self.groups: list[tuple[str, slice]] = []
        offset = 0
        self._bias_shapes = []
        for k, inter in enumerate(self.interactions, start=1):
            size = int(np.prod(inter.weight_shape))
            self.groups.append((f"w{k}", slice(offset, offset + size)))
            offset += size
            bias_shape = (inter.post_shape[-1],)  # per unit (dense) / per channel (conv)
            self._bias_shapes.append(bias_shape)
            self.groups.append((f"b{k}", slice(offset, offset + bias_shape[0])))
            offset += bias_shape[0]
        self.n_parameters = offset
        self._theta = np.zeros(offset)
        self._theta_stale = False  # True after descend(): the compute weights are the truth
        self._version = 0
        self._set_compute_parameters()
        self._drive_cache = None
        self._transposed_cache = None
        self._initial_template = None
        # dense float32/float64 nets relax in place on preallocated layers (_relax_dense) and can
        # take the EP family's update in place (descend); conv and emulated float16 nets use the
        # generic tuple-per-iteration path
        self.in_place = precision != "float16" and all(isinstance(i, Dense) for i in self.interactions)
        self._gram = None  # (inputs, x x^T, x) of the knob-coupled relaxation's Gram shortcut

    # --- parameters --------------------------------------------------------------------------
    @property
    def parameters(self) -> np.ndarray:
        self._sync_theta()
        return self._theta.copy()

    @parameters.setter
    def parameters(self, theta) -> None:
        theta = np.asarray(theta, dtype=np.float64)
        if theta.shape != (self.n_parameters,):
            raise ValueError(f"expected {self.n_parameters} parameters, got shape {theta.shape}")
        self._theta = theta.copy()
        self._theta_stale = False
        self._set_compute_parameters()

    def _sync_theta(self):
        """Copy the compute weights back into the float64 theta after in-place updates (descend)."""
        if self._theta_stale:
            for k in range(self.n_layers):
                self._theta[self.groups[2 * k][1]] = self.weights[k].ravel()
                self._theta[self.groups[2 * k + 1][1]] = self.biases[k]
            self._theta_stale = False

    def _set_compute_parameters(self):
        self._version += 1
        self.weights, self.biases = self._unpack(self._theta)
        self._flipped = [self._flip(k, w) for k, w in enumerate(self.weights)]

    def _unpack(self, theta):
        weights, biases = [], []
        for k, inter in enumerate(self.interactions):
            w = theta[self.groups[2 * k][1]].reshape(inter.weight_shape)
            b = theta[self.groups[2 * k + 1][1]]
            weights.append(self._round(np.ascontiguousarray(w, dtype=self.dtype)))
            biases.append(self._round(np.asarray(b, dtype=self.dtype)))
        return weights, biases

    def _flip(self, k, weight):
        inter = self.interactions[k]
        return inter.flipped(weight) if isinstance(inter, Conv) else None

    def group(self, name: str) -> slice:
        return dict(self.groups)[name]

    def per_parameter(self, values) -> np.ndarray:
        """(P,) array from one value per group: a dict {"w1": .., "b1": ..}, a list in group order, or a scalar."""
        out = np.empty(self.n_parameters)
        if np.isscalar(values):
            out[:] = values
        elif isinstance(values, dict):
            missing = [n for n, _ in self.groups if n not in values]
            if missing:
                raise ValueError(f"missing values for parameter groups {missing}")
            for name, sl in self.groups:
                out[sl] = values[name]
        else:
            values = list(values)
            if len(values) != len(self.groups):
                names = [n for n, _ in self.groups]
                raise ValueError(f"expected {len(self.groups)} values (groups {names}), got {len(values)}")
            for v, (_, sl) in zip(values, self.groups):
                out[sl] = v
        return out

    def _round(self, a):
        if self.precision == "float16":
            return a.astype(np.float16).astype(np.float32)
        return a

    # --- phases ------------------------------------------------------------------------------
    def _input_layer(self, inputs):
        x = np.asarray(inputs, dtype=self.dtype).reshape((len(inputs),) + self.input_shape)
        if len(self.input_shape) == 3:
            pad = self.input_padding
            if pad:
                x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
            x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        return self._round(x)

    def _input_drive(self, inputs, weights=None, biases=None):
        """F_1(x) + b_1, cached for the last input array seen with the current parameters."""
        if weights is None:
            cache = self._drive_cache
            if cache is not None and cache[0] is inputs and cache[1] == self._version:
                return cache[2], cache[3]
        x = self._input_layer(inputs)
        w = self.weights[0] if weights is None else weights[0]
        b = self.biases[0] if biases is None else biases[0]
        drive = self._round(self.interactions[0].forward(x, w) + b)
        if weights is None:
            self._drive_cache = (inputs, self._version, drive, x)
        return drive, x

    def _initial_layers(self, batch):
        """Fresh layers with every unit at the point of its box nearest 0: copies of a template kept for the
        last batch size (copying is twice as fast as np.full at 16 rows; a free phase starts here)."""
        if self._initial_template is None or len(self._initial_template[0]) != batch:
            self._initial_template = tuple(self._round(np.full((batch,) + shape, min(max(0.0, p), q), dtype=self.dtype))
                                           for shape, (p, q) in zip(self.layer_shapes, self.bounds))
        return tuple(layer.copy() for layer in self._initial_template)

    def _order(self, phase):
        free = phase.beta == 0 and phase.clamp is None
        n = self.n_layers
        if self.schedule == "sequential":
            return list(range(n)) if free else list(range(n - 1, -1, -1))
        first = [k for k in range(n) if k % 2 == 0]  # s_1, s_3, ... (the layer fed by the input)
        second = [k for k in range(n) if k % 2 == 1]
        if not free and (n - 1) % 2 == 1:  # nudged: start with the group holding the output
            first, second = second, first
        return first + second

    def _sweep(self, layers, order, phase, weights, biases, flipped, drive, routes, nudge):
        """One iteration: exact block updates of the layers in `order`. Returns a new tuple."""
        layers = list(layers)
        n = self.n_layers
        for k in order:
            if k == 0:
                h = drive
            else:
                inter = self.interactions[k]
                if inter.has_routing:
                    h, route = inter.forward_with_routing(layers[k - 1], weights[k])
                    routes[k] = (layers[k - 1], route)
                else:
                    h = inter.forward(layers[k - 1], weights[k])
                h = h + biases[k]
            if k < n - 1:
                h = h + self._backward(k + 1, layers[k + 1], layers[k], weights, flipped, routes)
            if k == n - 1:
                layers[k] = self._output_update(h, phase, nudge)
            else:
                p, q = self.bounds[k]
                layers[k] = self._round(np.clip(h, p, q))
        return tuple(layers)

    def _backward(self, j, post, pre, weights, flipped, routes):
        """F_j^T(post): drive of layer j-1 from layer j, routing from the current pre (cached)."""
        inter = self.interactions[j]
        route = None
        if inter.has_routing:
            cached = routes.get(j)
            if cached is not None and cached[0] is pre:
                route = cached[1]
            else:
                route = inter.routing(pre, weights[j])
                routes[j] = (pre, route)
        if isinstance(inter, Conv):
            return inter.backward(post, weights[j], routing=route, flipped=flipped[j])
        return inter.backward(post, weights[j])

    def _nudge_terms(self, phase):
        if phase.clamp is not None:
            return ("clamp", self._round(np.asarray(phase.clamp, dtype=self.dtype)))
        if phase.beta == 0:
            return None
        if phase.target is None:
            raise ValueError("a nudged phase (beta != 0) needs a target")
        coupling = 2.0 * phase.beta * self.cost_scale
        a = 1.0 + coupling
        p, q = self.bounds[-1]
        if a <= 0 and not (np.isfinite(p) and np.isfinite(q)):
            raise DivergenceError(f"beta = {phase.beta} makes the output energy unbounded below "
                                  f"(1 + 2 beta c = {a:.3g} <= 0 with output bounds [{p}, {q}])")
        pull = (coupling * np.asarray(phase.target, dtype=np.float64)).astype(self.dtype)
        return ("nudge", a, pull)

    def _output_update(self, h, phase, nudge):
        p, q = self.bounds[-1]
        if nudge is None:
            return self._round(np.clip(h, p, q))
        if nudge[0] == "clamp":
            return nudge[1]
        _, a, pull = nudge
        h = h + pull
        if a > 0:
            return self._round(np.clip(h / a, p, q))
        # concave per unit: the minimiser over [p, q] of a/2 z^2 - h z is an endpoint
        energy_p = 0.5 * a * p * p - h * p
        energy_q = 0.5 * a * q * q - h * q
        return self._round(np.where(energy_p <= energy_q, p, q).astype(self.dtype))

    def settle(self, phase: Phase, start: HopfieldState | None = None, callback=None) -> HopfieldState:
        drive, _ = self._input_drive(phase.inputs)
        return self._relax(phase, start, callback, self.weights, self.biases, self._flipped, drive)

    def _relax(self, phase, start, callback, weights, biases, flipped, drive, record_gap=True):
        batch = len(phase.inputs)
        free = phase.beta == 0 and phase.clamp is None
        max_iter = self.max_iterations[0 if free else 1]
        order = self._order(phase)
        nudge = self._nudge_terms(phase)
        output = self._output_mode(nudge) if self.in_place and callback is None else None
        if output is not None:  # dense: in place on owned copies, same updates in the same order
            layers = list(self._initial_layers(batch)) if start is None else [s.copy() for s in start.layers]
            it, _, change, converged = self._relax_dense(layers, drive, weights, biases, order, output, max_iter)
            layers = tuple(layers)
            if record_gap and self.adaptive_threshold and start is not None and not free:
                self._gap_sum += self._l1(layers, start.layers)
                self._gap_count += 1
            return HopfieldState(layers=layers, phase=phase, iterations=it, converged=converged, change=change)
        layers = self._initial_layers(batch) if start is None else tuple(start.layers)
        routes: dict = {}
        change, it, converged = float("inf"), 0, False
        while it < max_iter:
            new = self._sweep(layers, order, phase, weights, biases, flipped, drive, routes, nudge)
            change = self._l1(new, layers)
            layers, it = new, it + 1
            if not np.isfinite(change):
                raise DivergenceError(f"relaxation produced non-finite states after {it} iterations")
            if callback is not None:
                try:
                    callback(self._energy(layers, phase, weights, biases, drive))
                except StopIteration:
                    break
            if change < self.threshold:
                converged = True
                break
        if record_gap and self.adaptive_threshold and start is not None and not free:
            self._gap_sum += self._l1(layers, start.layers)
            self._gap_count += 1
        return HopfieldState(layers=layers, phase=phase, iterations=it, converged=converged, change=change)

    def _output_mode(self, nudge):
        """How _relax_dense updates the output: ("free",), ("clamp", values) or ("nudge", a, pull); None
        for the concave output case (1 + 2 beta c <= 0), left to the generic path."""
        if nudge is None:
            return ("free",)
        if nudge[0] == "clamp":
            return nudge
        _, a, pull = nudge
        return ("nudge", a, pull) if a > 0 else None

    def _transposed(self, weights):
        """W_k^T contiguous for the backward products (a transposed view is a slower GEMM at these
        shapes), kept while the parameters are unchanged: a step's free and nudged phases share it."""
        cache = self._transposed_cache
        if weights is self.weights and cache is not None and cache[0] == self._version:
            return cache[1]
        transposed = [None] + [np.ascontiguousarray(w.T) for w in weights[1:]]
        if weights is self.weights:
            self._transposed_cache = (self._version, transposed)
        return transposed

    def _relax_dense(self, layers, drive, weights, biases, order, output, max_iter):
        """Block coordinate descent of a dense net, in place on `layers` (a list of owned (R, n_k) arrays).

        The same exact block updates, in the same order and float arithmetic, as _sweep. `drive`
        is the input drive of the R rows, `output` as from _output_mode, its `a` a scalar or an
        (R, 1) column (phases stacked as rows). The L1 change is measured every iteration when
        threshold > 0 (to stop), else on the last one only. Returns (iterations, per-row L1
        change of the last iteration, its mean over the rows, converged).

        An iteration is a flat list of in-place calls built once (per layer: one GEMM per neighbour,
        then its last add and its clip in one compiled pass, fused.py; a nudged output's add, division
        and clip stay numpy calls): at 16 rows the GEMMs take 13-23 us, so every microsecond of Python
        or allocation between them shows in the time.
        """
        if len(drive) != len(layers[0]):
            raise ValueError(f"an input drive of {len(drive)} rows for layers of {len(layers[0])}")
        last = self.n_layers - 1
        transposed = self._transposed(weights)
        clamp = output[1] if output[0] == "clamp" else None
        # the output's constant drive: b_N, plus the nudge's pull 2 beta c y (then divided by a)
        pull, divisor = (output[2], output[1]) if output[0] == "nudge" else (None, None)
        offset = biases[last] if pull is None else biases[last] + pull
        from aeqprop_circuits.systems.hopfield import fused  # numba is imported only where a dense net relaxes

        calls = []  # (function, arguments): the arguments end with the output array (fused.add_clip's begin with it)
        for k in order:
            s = layers[k]
            if k == last and clamp is not None:
                calls.append((np.copyto, (s, clamp)))
                continue
            added = None  # the layer's last term, added after its products
            if k == 0 and k == last:  # a single layer: its drive already holds b_1
                calls.append((np.copyto, (s, drive)) if pull is None else (np.add, (drive, pull, s)))
            elif k == 0:
                calls.append((np.matmul, (layers[1], transposed[1], s)))
                added = drive
            else:
                calls.append((np.matmul, (layers[k - 1], weights[k], s)))
                added = offset if k == last else biases[k]
                if k < last:
                    scratch = np.empty_like(s)
                    calls += [(np.add, (s, added, s)), (np.matmul, (layers[k + 1], transposed[k + 1], scratch))]
                    added = scratch
            divided = k == last and divisor is not None
            if added is not None and self._box[k] is not None and not divided:  # the add and the clip: one pass
                low, high = self._box[k]
                calls.append((fused.add_clip, (s, added if added.ndim == 2 else added[None], low[()], high[()])))
                continue
            if added is not None:
                calls.append((np.add, (s, added, s)))
            if divided:
                calls.append((np.divide, (s, divisor, s)))
            if self._box[k] is not None:
                calls.append((clip, (s, *self._box[k], s)))
        track = self.threshold > 0
        it = 0 if track else max(max_iter - 1, 0)  # iterations before the measured ones
        for _ in range(it):
            for function, arguments in calls:
                function(*arguments)
        rows, change, converged = None, float("inf"), False
        while it < max_iter:
            it += 1
            previous = [s.copy() for s in layers]
            for function, arguments in calls:
                function(*arguments)
            for s, old in zip(layers, previous):  # |s - old| into old
                np.abs(np.subtract(s, old, out=old), out=old)
            rows = previous[0].sum(axis=1)
            for old in previous[1:]:
                rows += old.sum(axis=1)
            change = _mean(rows)
            if not math.isfinite(change):  # (rows >= 0: the mean is finite if and only if all are)
                raise DivergenceError(f"relaxation produced non-finite states after {it} iterations")
            if track and change < self.threshold:
                converged = True
                break
        if rows is None:
            rows = np.full(len(layers[0]), np.inf)
        return it, rows, change, converged

    def settle_nudges(self, base: Phase, betas, start: HopfieldState) -> list[HopfieldState]:
        """The phases base.nudged(b), b in betas, each from `start` (the EP family's nudged phases).

        With a fixed iteration count (threshold 0) on a dense net they are settled together, as
        one batch of len(betas) * B rows sharing the input drive (samples never interact, so the
        physics of each phase is unchanged and each state equals its own settle). Otherwise (a
        threshold stops each phase at its own iteration) they are settled one by one.
        """
        phases = [base.nudged(b) for b in betas]
        couplings = [2.0 * b * self.cost_scale for b in betas]
        if not (self.in_place and self.threshold <= 0 and len(phases) > 1 and min(couplings) > -1.0):
            return [self.settle(phase, start=start) for phase in phases]
        drive, _ = self._input_drive(base.inputs)
        batch, m = len(drive), len(phases)
        target = np.asarray(base.target, dtype=np.float64)
        a = np.repeat(np.array([1.0 + c for c in couplings], dtype=self.dtype), batch)[:, None]
        pull = np.concatenate([(c * target).astype(self.dtype) for c in couplings])
        layers = [np.concatenate([s] * m) for s in start.layers]
        # the drive repeated (one copy per step; adding it broadcast over the phases was no faster)
        it, rows, _, _ = self._relax_dense(layers, np.concatenate([drive] * m), self.weights, self.biases,
                                           self._order(phases[0]), ("nudge", a, pull), self.max_iterations[1])
        states = []
        for i, phase in enumerate(phases):
            part = tuple(s[i * batch:(i + 1) * batch] for s in layers)
            if self.adaptive_threshold:
                self._gap_sum += self._l1(part, start.layers)
                self._gap_count += 1
            states.append(HopfieldState(layers=part, phase=phase, iterations=it, converged=False,
                                        change=_mean(rows[i * batch:(i + 1) * batch])))
        return states

    # --- the EP family's update in place (runs/inplace.py) ---------------------------------
    def group_rates(self, rates) -> list[tuple[float, float]]:
        """(weight rate, bias rate) per layer from a scalar, a {"w1": ..} dict, a (P,) array constant per
        group, or such a list already (returned as is)."""
        if isinstance(rates, list) and all(isinstance(r, tuple) and len(r) == 2 for r in rates):
            if len(rates) != self.n_layers:
                raise ValueError(f"expected {self.n_layers} (weight, bias) rates, got {len(rates)}")
            return rates
        if isinstance(rates, dict):
            rates = self.per_parameter(rates)
        if np.isscalar(rates) or np.ndim(rates) == 0:
            return [(float(rates), float(rates))] * self.n_layers
        rates = np.asarray(rates, dtype=np.float64)
        per_group = []
        for name, sl in self.groups:
            values = rates[sl]
            if not np.all(values == values[0]):
                raise ValueError(f"rates vary within parameter group {name}")
            per_group.append(float(values[0]))
        return list(zip(per_group[0::2], per_group[1::2]))

    def descend(self, terms, rates) -> None:
        """theta <- theta - rate * sum_k c_k dE/dtheta(s_k), in place: the EP family's SGD update.

        `terms` is [(c_k, state_k)] for states of one batch (same inputs array) settled at the
        current theta; `rates` as for group_rates. With dE/dW_k = -pre^T post / B, each weight
        block takes one in-place GEMM, W_k += (rate / B) [pre_k]^T [c_k post_k] over the stacked
        rows of the states; the input layer is shared, so W_1 += (rate / B) x^T sum_k c_k s_1(k).
        No (P,) gradient and no copy of theta; the float64 theta is synced when read.
        """
        terms = [(float(c), s) for c, s in terms if c != 0.0]
        if not terms:
            return
        if not self.in_place:
            raise ValueError(f"descend needs a dense float32/float64 network, not {self!r}")
        inputs = terms[0][1].phase.inputs
        if any(s.phase.inputs is not inputs for _, s in terms):
            raise ValueError("descend needs states of one batch (the same inputs array)")
        _, x = self._input_drive(inputs)
        batch = len(x)
        dt = self.dtype
        for k, (rate_w, rate_b) in enumerate(self.group_rates(rates)):
            posts = [s.layers[k] * dt(c) for c, s in terms]
            if k == 0:
                pre, post = x.reshape(batch, -1), sum(posts[1:], posts[0])
            else:
                pres = [s.layers[k - 1] for _, s in terms]
                pre = np.concatenate(pres) if len(pres) > 1 else pres[0]
                post = np.concatenate(posts) if len(posts) > 1 else posts[0]
            gemm_into(self.weights[k], pre, post, rate_w / batch)
            self.biases[k] += dt(rate_b / batch) * post.sum(axis=0)
        self._version += 1
        self._theta_stale = True

    def in_place_rates(self, learning_rate) -> list | None:
        """What `descend` takes for runs/inplace.py: (weight, bias) rates per layer, or None if they vary in a group."""
        try:
            return self.group_rates(learning_rate)
        except ValueError:
            return None

    @staticmethod
    def _l1(a, b):
        """Batch mean of sum over all units of |a - b|."""
        return float(sum(np.abs(x - y).reshape(len(x), -1).sum(axis=1).mean() for x, y in zip(a, b)))

    def training_state(self) -> dict[str, np.ndarray]:
        """The adaptive relaxation threshold (checkpointed, so a resumed run relaxes as an uninterrupted one)."""
        return {"threshold": np.array(self.threshold)}

    def restore_training_state(self, saved: dict[str, np.ndarray]) -> None:
        if "threshold" in saved:
            self.threshold = float(saved["threshold"])

    def end_epoch(self) -> float:
        """Adaptive threshold update of Aeqprop App. C; returns the threshold for the next epoch."""
        if self.adaptive_threshold and self._gap_count:
            self.threshold = min(self.threshold, self.gamma * self._gap_sum / self._gap_count)
        self._gap_sum, self._gap_count = 0.0, 0
        return self.threshold

    # --- readouts and local measurements -----------------------------------------------------
    def outputs(self, state: HopfieldState) -> np.ndarray:
        return np.asarray(state.layers[-1], dtype=np.float64)

    def output_cost(self, outputs: np.ndarray, target) -> np.ndarray:
        diff = outputs - np.asarray(target, dtype=np.float64)
        return self.cost_scale * np.sum(diff * diff, axis=1)

    def energy(self, state: HopfieldState) -> np.ndarray:
        drive, _ = self._input_drive(state.phase.inputs)
        return self._energy(state.layers, state.phase, self.weights, self.biases, drive)

    def _energy(self, layers, phase, weights, biases, drive):
        batch = len(layers[0])
        flat = [np.asarray(s, dtype=np.float64).reshape(batch, -1) for s in layers]
        total = sum(0.5 * np.sum(s * s, axis=1) for s in flat)
        total = total - np.sum(flat[0] * np.asarray(drive, np.float64).reshape(batch, -1), axis=1)
        for k in range(1, self.n_layers):
            h = self.interactions[k].forward(layers[k - 1], weights[k]) + biases[k]
            total = total - np.sum(flat[k] * np.asarray(h, np.float64).reshape(batch, -1), axis=1)
        if phase.clamp is None and phase.beta != 0:
            diff = flat[-1] - np.asarray(phase.target, dtype=np.float64)
            total = total + phase.beta * self.cost_scale * np.sum(diff * diff, axis=1)
        return total

    def drives(self, state: HopfieldState, weights=None, biases=None):
        """The total drive h_k of each layer at the state (what a block update would clip)."""
        weights = self.weights if weights is None else weights
        biases = self.biases if biases is None else biases
        drive, _ = self._input_drive(state.phase.inputs)
        layers, out, routes = state.layers, [], {}
        for k in range(self.n_layers):
            h = drive if k == 0 else self.interactions[k].forward(layers[k - 1], weights[k]) + biases[k]
            if k < self.n_layers - 1:
                h = h + self._backward(k + 1, layers[k + 1], layers[k], weights, self._flipped, routes)
            out.append(h)
        return out

    def energy_gradient(self, state: HopfieldState) -> np.ndarray:
        _, x = self._input_drive(state.phase.inputs)
        return self._energy_gradient(state.layers, x, self.weights)

    def _energy_gradient(self, layers, x, weights):
        batch = len(layers[0])
        grad = np.empty(self.n_parameters)
        pres = (x,) + tuple(layers[:-1])
        for k, inter in enumerate(self.interactions):
            route = inter.routing(pres[k], weights[k]) if inter.has_routing else None
            gw = inter.weight_grad(pres[k], layers[k], routing=route)
            grad[self.groups[2 * k][1]] = -np.asarray(gw, np.float64).ravel() / batch
            grad[self.groups[2 * k + 1][1]] = -np.asarray(inter.bias_sum(layers[k]), np.float64) / batch
        return grad

    def relax_parameters(self, state: HopfieldState, knobs, epsilon) -> np.ndarray:
        # E is linear in theta, so argmin_theta mean E + |u - theta|^2 / 2 eps = u - eps dE/dtheta
        return np.asarray(knobs, np.float64) - np.asarray(epsilon) * self.energy_gradient(state)

    def loss_gradient(self, state: HopfieldState, target) -> np.ndarray:
        """Exact gradient of the batch-mean cost at the free equilibrium (rbp, implicit differentiation)."""
        from aeqprop_circuits.systems.hopfield.adjoint import rbp_gradient

        return rbp_gradient(self, state, target)[0]

    # --- joint relaxation of states and parameters (Aeqprop's clamped-knob phase) -----------
    def settle_with_knobs(self, phase: Phase, knobs, epsilon, start=None, theta=None, steps: int = 1):
        """`steps` rounds of the joint relaxation of (s, theta) with the knobs clamped.

        Same semantics as PhysicalSystem.settle_with_knobs: one round settles the layers with
        theta fixed (exact block updates to convergence), then relaxes all the parameters in
        parallel in closed form, theta = knobs - eps dE/dtheta(s) (Aeqprop App. C; E is linear in
        theta); a final settle at the last theta gives the returned state. Every step is an exact
        block minimisation of mean_b (E + beta C) + |knobs - theta|^2 / 2 eps, so the joint
        energy never increases. Faster than the default: for a dense first layer the input drive
        under the moving W_1 is x W_1 = x U_1 + (eps / B)(x x^T) s_1, a (B, B) Gram matrix
        instead of a new (B, n_in) x (n_in, n_1) product per round, and W_1 is materialised once
        at the end. Returns (state, theta); self.parameters is left unchanged.

        Note: with large eps (eps / B) x x^T is large and the joint energy is far from the
        gradient-step regime of Theorem 1; steps=1 (one parallel parameter relaxation) is the
        procedure of App. C.
        """
        knobs = np.asarray(knobs, dtype=np.float64)
        eps = np.broadcast_to(np.asarray(epsilon, dtype=np.float64), knobs.shape)
        theta = self.parameters if theta is None else np.asarray(theta, dtype=np.float64)
        self._sync_theta()
        batch = len(phase.inputs)
        x = self._input_layer(phase.inputs)
        weights, biases = self._unpack(theta)
        first = self.interactions[0]
        w1 = self.group("w1")
        gram_eps = float(eps[w1][0]) if isinstance(first, Dense) and np.all(eps[w1] == eps[w1][0]) else None
        cache = self._drive_cache
        if cache is not None and cache[0] is phase.inputs and cache[1] == self._version \
                and np.array_equal(theta, self._theta):
            drive = self._drive_cache[2]
        else:
            drive = self._round(first.forward(x, weights[0]) + biases[0])
        state, knob_drive = start, None
        for _ in range(int(steps)):
            state = self._relax(phase, state, None, weights, biases,
                                [self._flip(k, w) for k, w in enumerate(weights)], drive, record_gap=False)
            grad = self._energy_gradient_partial(state.layers, x, weights, skip_w1=gram_eps is not None)
            theta = knobs - eps * grad
            weights, biases = self._unpack_partial(theta, weights, skip_w1=gram_eps is not None)
            if gram_eps is not None:
                if self._gram is None or self._gram[0] is not phase.inputs:
                    xf = np.asarray(x, self.dtype).reshape(batch, -1)
                    self._gram = (phase.inputs, xf @ xf.T, xf)
                _, gram, xf = self._gram
                s1 = np.asarray(state.layers[0], self.dtype).reshape(batch, -1)
                if knob_drive is None:  # x U_1: the one large product of the phase
                    knob_drive = xf @ knobs[w1].reshape(first.weight_shape).astype(self.dtype)
                drive = self._round(knob_drive + (gram_eps / batch) * (gram @ s1) + biases[0])
            else:
                drive = self._round(first.forward(x, weights[0]) + biases[0])
        if gram_eps is not None and steps:
            theta[w1] = knobs[w1] - eps[w1] * self._energy_gradient(state.layers, x, weights)[w1]
            weights, biases = self._unpack(theta)
        state = self._relax(phase, state, None, weights, biases,
                            [self._flip(k, w) for k, w in enumerate(weights)], drive, record_gap=False)
        return state, theta

    def _energy_gradient_partial(self, layers, x, weights, skip_w1):
        if not skip_w1:
            return self._energy_gradient(layers, x, weights)
        grad = np.zeros(self.n_parameters)
        batch = len(layers[0])
        pres = (x,) + tuple(layers[:-1])
        for k, inter in enumerate(self.interactions):
            if k > 0:
                route = inter.routing(pres[k], weights[k]) if inter.has_routing else None
                gw = inter.weight_grad(pres[k], layers[k], routing=route)
                grad[self.groups[2 * k][1]] = -np.asarray(gw, np.float64).ravel() / batch
            grad[self.groups[2 * k + 1][1]] = -np.asarray(inter.bias_sum(layers[k]), np.float64) / batch
        return grad

    def _unpack_partial(self, theta, old_weights, skip_w1):
        if not skip_w1:
            return self._unpack(theta)
        weights, biases = [], []
        for k, inter in enumerate(self.interactions):
            if k == 0:
                weights.append(old_weights[0])  # not materialised: its product with x is tracked
            else:
                w = theta[self.groups[2 * k][1]].reshape(inter.weight_shape)
                weights.append(self._round(np.ascontiguousarray(w, dtype=self.dtype)))
            biases.append(self._round(np.asarray(theta[self.groups[2 * k + 1][1]], dtype=self.dtype)))
        return weights, biases

    def __repr__(self):
        shapes = "-".join("x".join(map(str, s)) for s in [self.input_shape] + self.layer_shapes)
        return (f"HopfieldNetwork({shapes}, {self.n_parameters} parameters, {self.precision}, "
                f"{self.schedule})")
