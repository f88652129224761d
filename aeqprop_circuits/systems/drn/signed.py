"""The universal-DRN circuit: one-sided hidden units, bias current sources, single-node outputs.

Scellier's deep-resistive-network code (energy-based-learning, model/resistive/, used by
papers/fast-drn and papers/universal-drn) simulates a different circuit from the package's
builder (drn/system.py), and its Fashion-MNIST DRN-1H result (10.38 %) is this circuit's:

- half of each hidden layer is excitatory (an ideal diode to ground holds the node >= 0 V),
  the other half inhibitory (<= 0 V); there is no upper rail;
- biases are current sources into the hidden and output nodes (energy -b V, b of either
  sign), not conductances to rails;
- an output is a single node, the cost 1/2 |o - y|^2;
- inputs are source pairs at +-input_gain x, conductances join consecutive layers.

Energy (units of g0: theta = g / g0, potentials in volts, bias currents in g0 x 1 V):
E = 1/2 sum g_ij (V_i - V_j)^2 - sum b_k V_k, with the diodes as hard sign constraints. A
layer's nodes do not touch each other, so the exact minimiser over one layer is its
weighted neighbour mean plus its bias current, divided by its conductance sum, clipped to
its sign: a matrix product and a clip per layer update, as in the builder's DRN. Block
order (`schedule`): forward in the free phase and output first in nudged or clamped phases
(the universal-DRN script's), or even layers then odd ones in every phase (the fast-DRN
script's). `iterations` fixes the sweeps per phase (the paper's 4); None sweeps until the
largest change is below `tol`.

During training (`contrast_step`, runs/inplace.py) the free phase of a step starts from the
previous step's state (`warm_start`: its free state, or where its last phase ended as in the
papers' code, whose hardware is not reset between minibatches); `settle` on its own, and so
evaluation, starts from zero. A first weight block larger than the caches is updated in one
pass with the next drive (streaming.py; its update pending until then).

Physics: the bias current sources and the nudge are the element table's (`circuit.elements`);
the weight blocks' co-content and dE/dtheta are fused matrix-product forms of the resistor's
stamp, held against `circuit.energy.Problem` on `circuit()` by tests/test_fast_paths.py.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from numpy import matmul

from aeqprop_circuits.circuit.elements import CURRENT_SOURCE, NUDGE
from aeqprop_circuits.errors import AeqpropError, DivergenceError, ThreadsWarning
from aeqprop_circuits.systems import kernels
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
from aeqprop_circuits.systems.kernels import gemm_into, row_panels, update_panels

_STREAM_BYTES = 1 << 26  # a first block above this (64 MB, twice the L3 cache) is updated by streaming.py
_NARROW_WIDTH, _NARROW_BYTES = 16, 1 << 20  # a block into at most 16 nodes, of 1 MB or more, is multiplied by narrow.py


def narrow_block(shape: tuple, itemsize: int) -> bool:
    """Whether a block's relaxation products run as narrow.py's loops: a block into at most 16 nodes of 1 MB
    or more (smaller blocks keep BLAS)."""
    fan_in, fan_out = shape
    return fan_out <= _NARROW_WIDTH and fan_in * fan_out * itemsize >= _NARROW_BYTES


def _node_sums(columns: np.ndarray | None, rows_after: np.ndarray | None) -> np.ndarray | None:
    """A free layer's conductance sums: its incoming block's column sums plus its outgoing block's row sums
    (None while the incoming block's update is pending)."""
    if columns is None or rows_after is None:
        return columns
    return columns + rows_after


def _drive(v: np.ndarray, W: np.ndarray) -> np.ndarray:
    """v @ W; for a block larger than the last-level cache and a few rows of v, summed over panels of W's rows
    (one BLAS call for the whole block is slower there: the output stays in cache, each panel is read once)."""
    if W.nbytes <= 32 * kernels.PANEL_BYTES or len(v) * W.shape[1] * W.itemsize > 2 * kernels.PANEL_BYTES:
        return matmul(v, W)
    panels = row_panels(*W.shape, W.itemsize)
    out = matmul(v[:, panels[0]], W[panels[0]])
    for where in panels[1:]:
        out += matmul(v[:, where], W[where])
    return out


@dataclass(eq=False)
class SignedDRNState:
    """Potentials of the free layers (hidden..., outputs), each (B, width), and of the input layer."""

    layers: list
    inputs: np.ndarray | None
    phase: Phase
    system: SignedDRNSystem | None = None
    version: int = -1

    @property
    def theta(self):
        """The parameters this state was settled for while they are still the system's (descend
        changes theta in place), else None."""
        if self.system is None or self.version != self.system._version:
            return None
        return self.system._theta

    @property
    def potentials(self) -> list:
        return self.layers


class SignedDRNSystem(PhysicalSystem, ExactLossGradient, ParameterGroups, InPlaceDescent, FusedContrastStep,
                      InPlaceMomentum, VelocityCheckpoint):
    """DRN `sizes = [n_inputs, hidden..., n_outputs]` (data counts; the inputs are doubled) of the universal-DRN code.

    input_gain: sources at +-input_gain x (the universal-DRN script's Fashion-MNIST gain is 300).
    init_gain:  weights max(0, U(-1, 1) gain / sqrt(fan_in)) in the paper code's draw order, biases 0.
    warm_start: where a training step's free phase starts: "free" (or True), the previous step's free state;
                "last", the state the previous step's last phase ended in, as in the papers' code (its
                Trainer does not reset the layers between batches, and its EquilibriumProp leaves them in
                the +beta phase); False, zero.
    schedule:   block order of a sweep: "forward-backward", forward in the free phase and output first in
                nudged or clamped phases (the universal-DRN script's minimizers); "alternating", the
                even-indexed free layers then the odd-indexed ones in every phase (the fast-DRN script's
                'asynchronous' minimizer; with one hidden layer: hidden, then outputs).
    """

    def __init__(self, sizes, *, seed: int = 0, g0: float = 1e-3, input_gain: float = 1.0,
                 iterations: int | None = 4, tol: float | None = None, max_iterations: int = 10_000,
                 dtype="float32", init_gain: float = 1.0, warm_start: bool | str = True,
                 schedule: str = "forward-backward"):
        sizes = [int(s) for s in sizes]
        if len(sizes) < 3 or min(sizes) < 1:
            raise AeqpropError(f"signed DRN sizes {sizes}: expected [n_inputs, hidden..., n_outputs], "
                               "at least one hidden layer, all positive")
        self.sizes, self.g0, self.input_gain = sizes, float(g0), float(input_gain)
        self.iterations = None if iterations in (None, 0, "converge") else int(iterations)
        self.dtype = np.dtype(dtype)
        self.tol = float(tol) if tol is not None else (1e-12 if self.dtype == np.float64 else 1e-6)
        self.max_iterations = int(max_iterations)
        starts = {True: "free", False: None, "free": "free", "last": "last", "none": None}
        if not isinstance(warm_start, (bool, str)) or warm_start not in starts:
            raise AeqpropError(f"signed DRN warm_start {warm_start!r}: expected free, last, none, true or false")
        self.warm_start = starts[warm_start]
        if schedule not in ("forward-backward", "alternating"):
            raise AeqpropError(f"signed DRN schedule {schedule!r}: expected forward-backward or alternating")
        self.schedule = schedule
        self.n_inputs, self.n_outputs = sizes[0], sizes[-1]
        self.widths = [2 * sizes[0], *sizes[1:]]
        shapes = list(zip(self.widths[:-1], self.widths[1:]))
        edges = np.cumsum([0, *(a * b for a, b in shapes)])
        self._slices = [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]
        self._shapes = shapes
        self.n_weights = int(edges[-1])
        self.n_parameters = self.n_weights + sum(self.widths[1:])
        # Sign windows of the hidden layers: excitatory first half [0, inf), inhibitory second half (-inf, 0].
        self._excitatory = [width // 2 for width in self.widths[1:-1]]
        self._version = 0
        self._cache = None  # (version, conductance sums per free layer)
        self._transposes = None  # (version, {k: W_k^T contiguous}) of the large narrow blocks (narrow.py)
        self._pending = None  # W1's update of the last step, applied with the next drive (streaming.py)
        self._drive = None  # (inputs array, version, input potentials, their current into layer 1)
        self._resting = None  # the last training step's free layers (warm start)
        self.momentum, self._velocity = 0.0, None  # SGD momentum of `descend`, set by the trainer
        self._theta = self._initial(seed, init_gain)
        self._bind()
        if self.uses_numba_loops and kernels.blas_threads() > 1:
            warnings.warn(f"BLAS runs on {kernels.blas_threads()} threads beside this network's numba loops, "
                          "which use the same cores and slow each other down: set OPENBLAS_NUM_THREADS=1 "
                          "before numpy is imported (the aeqprop command does)", ThreadsWarning, stacklevel=2)

    @property
    def uses_numba_loops(self) -> bool:
        """Whether training runs numba's threaded loops: a streamed first block, a narrow block's products and
        update."""
        return self.weights[0].nbytes > _STREAM_BYTES or \
            any(narrow_block(W.shape, W.itemsize) for W in self.weights[1:])

    def updates_on_transpose(self, k: int) -> bool:
        """Whether `descend` updates block k on its kept transpose (narrow.descend): a narrow block after the
        first, trained without momentum."""
        W = self.weights[k]
        return k > 0 and not self.momentum and narrow_block(W.shape, W.itemsize)

    @classmethod
    def from_spec(cls, spec: str, seed: int = 0, **options) -> SignedDRNSystem:
        """'drn:1568-1024-10' with model option circuit=signed (the spec counts the doubled inputs)."""
        from aeqprop_circuits.circuit.builder import parse_drn_spec

        return cls(parse_drn_spec(spec), seed=seed, **options)

    def _initial(self, seed: int, gain: float) -> np.ndarray:
        """theta in the system's dtype, drawn a few rows of a block at a time (the same values as one draw per
        block): no float64 copy of theta, so building DRN-XL's 52 M conductances peaks near theta's own size."""
        rng = np.random.default_rng(seed)
        theta = np.zeros(self.n_parameters, dtype=self.dtype)
        for (fan_in, fan_out), where in zip(self._shapes, self._slices):
            block = theta[where].reshape(fan_in, fan_out)
            rows = max(1, (1 << 20) // fan_out)
            for start in range(0, fan_in, rows):
                draw = rng.uniform(-1, 1, (min(rows, fan_in - start), fan_out))
                block[start:start + len(draw)] = np.maximum(draw * gain / np.sqrt(fan_in), 0)
        return theta

    # --- parameters -------------------------------------------------------------------------
    @property
    def parameters(self) -> np.ndarray:
        self._apply_pending()
        return self._theta.copy()

    @parameters.setter
    def parameters(self, theta: np.ndarray) -> None:
        self._pending = None  # replaced, not updated
        theta = np.array(theta, dtype=self.dtype)
        if theta.shape != (self.n_parameters,):
            raise AeqpropError(f"expected {self.n_parameters} parameters, got shape {theta.shape}")
        if not np.isfinite(theta).all():
            raise DivergenceError("non-finite parameters: the learning step diverged")
        self._theta = theta
        self._bind()

    def _bind(self) -> None:
        theta = self._theta
        self.weights = [theta[s].reshape(shape) for s, shape in zip(self._slices, self._shapes)]
        edges = self.n_weights + np.cumsum([0, *self.widths[1:]])
        self.biases = [theta[a:b] for a, b in zip(edges[:-1], edges[1:])]
        self._version += 1

    def parameter_bounds(self):
        low = np.zeros(self.n_parameters, dtype=self.dtype)
        low[self.n_weights:] = -np.inf  # bias currents have either sign
        return low, np.full(self.n_parameters, np.inf, dtype=self.dtype)

    def per_parameter(self, rates) -> np.ndarray:
        """A (P,) array from per-block values {"w1": .., "w2": .., "b": ..} (or a scalar)."""
        if np.isscalar(rates):
            return np.full(self.n_parameters, float(rates))
        out = np.empty(self.n_parameters)
        for k, where in enumerate(self._slices):
            out[where] = rates[f"w{k + 1}"]
        out[self.n_weights:] = rates.get("b", rates[f"w{len(self._slices)}"])
        return out

    in_place = True  # every instance has the in-place kernels (InPlaceDescent)

    @property
    def streams_first_block(self) -> bool:
        """Whether `descend` leaves W1's update pending for the next drive's pass (streaming.py): a first block
        larger than the caches, trained without momentum."""
        return not self.momentum and self.weights[0].nbytes > _STREAM_BYTES

    def fuses_drive(self, batch: int) -> bool:
        """Whether the next drive of a batch of this size is made in the streamed first block's pass (streaming.py
        takes a few rows; BLAS drives a larger batch better)."""
        if not self.streams_first_block:
            return False
        from aeqprop_circuits.systems.drn import streaming  # numba is imported only where a block streams

        return batch <= streaming.BATCH

    def in_place_rates(self, learning_rate) -> list | None:
        """Per-block step sizes [w1, ..., wL, b] for `descend`, or None when a block's rates differ."""
        if np.isscalar(learning_rate):
            return [float(learning_rate)] * (len(self._slices) + 1)
        rate = np.asarray(learning_rate, dtype=np.float64)
        pieces = [rate[s] for s in self._slices] + [rate[self.n_weights:]]
        if any(not np.all(piece == piece[0]) for piece in pieces):
            return None
        return [float(piece[0]) for piece in pieces]

    # --- the physics ------------------------------------------------------------------------
    def _conductance_sums(self) -> list:
        """Each free layer's total conductance per node, cached per theta."""
        self._apply_pending()
        if self._cache is None or self._cache[0] != self._version:
            after = [W.sum(axis=1) for W in self.weights[1:]] + [None]
            sums = [_node_sums(W.sum(axis=0), rows) for W, rows in zip(self.weights, after)]
            self._cache = (self._version, sums)
        return self._cache[1]

    def _input_drive(self, inputs: np.ndarray):
        """(input potentials, their current into the first free layer plus its bias): one GEMM per batch and theta."""
        cached = self._drive
        if cached is not None and cached[0] is inputs and cached[1] == self._version:
            return cached[2], cached[3]
        x = np.asarray(inputs, dtype=self.dtype) * self.dtype.type(self.input_gain)
        v_in = np.concatenate([x, -x], axis=1)
        drive = self._apply_pending(v_in)  # the last update and this drive in one pass over W1, if any
        if drive is None:
            drive = _drive(v_in, self.weights[0])
            drive += self.biases[0]
        self._drive = (inputs, self._version, v_in, drive)
        return v_in, drive

    def _apply_pending(self, v_in: np.ndarray | None = None) -> np.ndarray | None:
        """Apply W1's pending update (and its conductance sums); with `v_in` of a few rows, return v_in @ W1 plus
        the first layer's biases from the same pass (None for a larger batch: BLAS drives it better)."""
        if self._pending is None:
            return None
        from aeqprop_circuits.systems.drn import streaming  # numba is imported only where a block streams

        if v_in is not None and not self.fuses_drive(len(v_in)):
            v_in = None
        left, right, step, rows_after = self._pending
        inputs = v_in if v_in is not None else np.zeros((0, self.widths[0]), dtype=self.dtype)
        columns, drive = streaming.stream_update(self.weights[0], left, right, step, inputs, self.biases[0])
        self._pending = None  # only once applied: a failed pass leaves it pending
        self._cache[1][0] = _node_sums(columns, rows_after)
        return drive if v_in is not None else None

    def _output_factors(self, phase: Phase, D_out: np.ndarray):
        """(extra pull on the outputs, their conductance sum) under the phase's nudge."""
        if phase.beta == 0.0 or phase.clamp is not None:
            return 0.0, D_out
        if phase.target is None:
            raise AeqpropError("a nudged phase needs a target")
        total = D_out + self.dtype.type(phase.beta)
        if np.any(total <= 0):
            j = int(np.argmin(total))
            raise DivergenceError(f"nudge beta = {phase.beta} makes output {j}'s energy non-convex: its "
                                  f"conductance sum is {float(D_out[j]):.4g} (normalised), so beta must be above "
                                  f"{-float(D_out[j]):.4g}")
        return np.asarray(phase.target, dtype=self.dtype) * self.dtype.type(phase.beta), total

    def settle(self, phase: Phase, start: SignedDRNState | None = None, callback=None) -> SignedDRNState:
        v_in, drive = self._input_drive(phase.inputs)
        B = len(v_in)
        if start is not None and len(start.layers[0]) == B:
            V = list(start.layers)
        else:
            V = [np.zeros((B, w), dtype=self.dtype) for w in self.widths[1:]]
        if phase.clamp is not None:
            V[-1] = np.asarray(phase.clamp, dtype=self.dtype)
        pull, D_out = self._output_factors(phase, self._conductance_sums()[-1])
        energy = None if callback is None else (lambda layers: callback(self._energy(layers, v_in, phase)))
        self._sweep(V, drive, pull, D_out, phase.beta == 0.0 and phase.clamp is None, phase.clamp is not None, energy)
        return self._state(V, v_in, phase)

    def settle_nudges(self, base: Phase, betas, start: SignedDRNState) -> list[SignedDRNState]:
        """The phases base.nudged(b), b in betas, from `start`, settled together as one batch of len(betas) B rows.

        Samples never interact, so the physics of each is unchanged; stacked, one product per block and one
        clip per layer serve every phase (the nudged phases of a step share their inputs and theta).
        """
        v_in, drive = self._input_drive(base.inputs)
        B, m = len(v_in), len(betas)
        if m < 2 or len(start.layers[0]) != B:
            return [self.settle(base.nudged(b), start=start) for b in betas]
        D_out = self._conductance_sums()[-1]
        factors = [self._output_factors(base.nudged(b), D_out) for b in betas]
        pull = np.concatenate([np.broadcast_to(p, (B, self.n_outputs)) for p, _ in factors])
        totals = np.concatenate([np.broadcast_to(total, (B, self.n_outputs)) for _, total in factors])
        V = [np.concatenate([layer] * m) for layer in start.layers]
        self._sweep(V, drive, pull, totals, False, False, None)  # the phases share the drive
        return [self._state([layer[i * B:(i + 1) * B] for layer in V], v_in, base.nudged(b))
                for i, b in enumerate(betas)]

    def _sweep(self, V: list, drive, pull, D_out, free: bool, clamped: bool, energy) -> None:
        """Block sweeps on the layers V in place: `iterations` of them, or until the largest change is below tol.

        Block order by `schedule`; the outputs are held where `clamped`; `energy(V)` after each sweep.
        """
        D = self._conductance_sums()
        last = len(V) - 1
        if self.schedule == "alternating":
            order = list(range(0, last + 1, 2)) + list(range(1, last + 1, 2))
        else:
            order = list(range(last + 1)) if free else list(range(last, -1, -1))
        if clamped:
            order.remove(last)
        from aeqprop_circuits.systems.drn import hidden  # numba is imported only where a system settles

        limit = self.iterations or self.max_iterations
        for _ in range(limit):
            change = 0.0
            for k in order:
                if k < last:  # the current from ahead is a fresh array: the layer's update is made in it
                    new = hidden.update(self._ahead(k, V), self._behind(k, V, drive), D[k], self._excitatory[k])
                else:
                    new = self._incoming(k, V, drive)
                    new += pull
                    new /= D_out
                if self.iterations is None:
                    change = max(change, float(np.abs(new - V[k]).max(initial=0.0)))
                V[k] = new
            if energy is not None:
                energy(V)
            if self.iterations is None and change <= self.tol:
                break
        else:
            if self.iterations is None:
                raise DivergenceError(f"a phase did not settle in {limit} block sweeps")

    def _state(self, V: list, v_in: np.ndarray, phase: Phase) -> SignedDRNState:
        if not np.isfinite(V[-1]).all():
            raise DivergenceError("non-finite potentials: a node has no conductance left (all its resistors "
                                  "trained to 0) or the phase diverged")
        return SignedDRNState(V, v_in, phase, self, self._version)

    def _incoming(self, k: int, V: list, drive: np.ndarray) -> np.ndarray:
        """Current into free layer k from its neighbouring layers, sum_j g_ij V_j, plus its bias current."""
        r = self._behind(k, V, drive)
        if k + 1 < len(V):
            ahead = self._ahead(k, V)
            ahead += r  # = r + ahead, in a fresh array of the layer's size (r may be the cached drive)
            r = ahead
        return r

    def _behind(self, k: int, V: list, drive: np.ndarray) -> np.ndarray:
        """Current into free layer k from the layer behind it (the input drive for the first), plus its bias."""
        return drive if k == 0 else self._product(V[k - 1], k) + self.biases[k]

    def _ahead(self, k: int, V: list) -> np.ndarray:
        """Current into free layer k from the layer ahead of it, a fresh array."""
        return self._product(V[k + 1], k + 1, transpose=True)

    def _product(self, V: np.ndarray, k: int, transpose: bool = False) -> np.ndarray:
        """V @ W_k, or V @ W_k^T, for a block k >= 1 (the first block's products are the input drive):
        BLAS, or narrow.py's loops for a large block into a few nodes (its transpose kept per theta)."""
        W = self.weights[k]
        if not narrow_block(W.shape, W.itemsize):
            return matmul(V, W.T if transpose else W)
        from aeqprop_circuits.systems.drn import narrow  # numba is imported only where a block needs it

        WT = self._transpose(k)
        return narrow.times(V, WT) if transpose else narrow.times_transpose(V, WT)

    def _transpose(self, k: int) -> np.ndarray:
        """W_k^T, C-contiguous, kept per theta (narrow.py's operand)."""
        if self._transposes is None or self._transposes[0] != self._version:
            self._transposes = (self._version, {})
        WT = self._transposes[1].get(k)
        if WT is None:
            WT = self._transposes[1][k] = np.ascontiguousarray(self.weights[k].T)
        return WT

    def _gradient(self, V, phase: Phase) -> list:
        """d(energy)/dV per free layer (B, width), from the settle's own pieces: the net current leaving
        each node (g0 V), the ideal diodes' currents excluded (they are the settle's clip)."""
        _, drive = self._input_drive(phase.inputs)
        D = self._conductance_sums()
        out = [D[k] * layer - self._incoming(k, V, drive) for k, layer in enumerate(V)]
        if phase.beta != 0.0 and phase.clamp is None:
            out[-1] = out[-1] + NUDGE.current(V[-1], phase.beta, phase.target)
        return out

    def outputs(self, state: SignedDRNState) -> np.ndarray:
        return state.layers[-1].astype(np.float64)

    def _energy(self, V, v_in, phase: Phase) -> np.ndarray:
        self._apply_pending()
        layers = [v_in.astype(np.float64), *(layer.astype(np.float64) for layer in V)]
        e = np.zeros(len(v_in))
        for k, W in enumerate(self.weights):
            Va, Vb, W = layers[k], layers[k + 1], W.astype(np.float64)
            e += 0.5 * ((Va * Va) @ W.sum(axis=1) + (Vb * Vb) @ W.sum(axis=0)) - ((Va @ W) * Vb).sum(axis=1)
            # a bias source drives b from ground into each node: branch voltage V(0) - V = -V
            e += CURRENT_SOURCE.content(-Vb, self.biases[k].astype(np.float64)).sum(axis=1)
        if phase.beta != 0.0 and phase.clamp is None:
            e += NUDGE.content(layers[-1], phase.beta, phase.target).sum(axis=1)
        return e

    def energy(self, state: SignedDRNState) -> np.ndarray:
        return self._energy(state.layers, state.inputs, state.phase)

    # --- local measurements and the update --------------------------------------------------
    def _contrast(self, terms):
        """sum_k c_k dE/dtheta(s_k) (batch means) as factors: (per block (left, right), bias gradient).

        A block's contrast is left^T right, with
        1/2 sum c (a_i - b_j)^2 / B = 1/2 sum c a_i^2 / B + 1/2 sum c b_j^2 / B - (sum c a^T b / B)_ij, i.e.
        left = [a rows; 1/2 sum c a^2 / B; 1], right = [-(c/B) b rows; 1; 1/2 sum c b^2 / B]: one GEMM,
        never a B x N x H broadcast. Phases that share their inputs (a training step's) give the input
        block B rows instead of K B, and no squares row when sum c = 0 (a centred contrast). A free layer's
        squares serve the blocks on both its sides, its weighted sum the bias gradient (moments.py: one pass).
        """
        from aeqprop_circuits.systems.drn import moments  # numba is imported only where a contrast is taken

        B, K, dtype = len(terms[0][1].inputs), len(terms), self.dtype
        coefficients = np.repeat(np.array([c / B for c, _ in terms], dtype=dtype), B)  # (K B,) c_k / B per row
        if all(s.inputs is terms[0][1].inputs for _, s in terms):
            a, total = terms[0][1].inputs, float(sum(c for c, _ in terms)) / B
            a_squares = (0.5 * total) * (a * a).sum(axis=0) if total else None
            groups = B  # the input block's right factor sums the phases' pulled rows
        else:
            a = np.concatenate([s.inputs for _, s in terms])
            a_squares, groups = 0.5 * (coefficients @ (a * a)), K * B
        squares_row = a_squares is not None
        left = np.concatenate([a] + ([a_squares[None]] if squares_row else []) +
                              [np.ones((1, a.shape[1]), dtype)]).astype(dtype, copy=False)
        pairs, sums = [], []
        for k, width in enumerate(self.widths[1:]):  # block k and the free layer it leads into
            inner = k + 1 < len(self.weights)  # the layer also leads out: stacked as the next left factor
            stacked = np.empty((K * B + 2 * inner, width), dtype=dtype)
            np.concatenate([s.layers[k] for _, s in terms], out=stacked[:K * B])
            right = np.empty((groups + squares_row + 1, width), dtype=dtype)
            right[groups:-1] = 1  # the ones row facing left's squares row, if it has one
            weighted_sum, right[-1] = moments.weighted(stacked[:K * B], coefficients, right[:groups])
            pairs.append((left, right))
            sums.append(weighted_sum)
            if inner:
                stacked[K * B], stacked[K * B + 1] = right[-1], 1
                left, squares_row, groups = stacked, True, K * B
        bias = -np.concatenate(sums)  # dE/db = -V: CURRENT_SOURCE's, at branch voltage -V
        return pairs, bias

    def energy_gradient(self, state: SignedDRNState) -> np.ndarray:
        pairs, bias = self._contrast([(1.0, state)])
        return np.concatenate([*(matmul(left.T, right).ravel() for left, right in pairs), bias])

    def relax_parameters(self, state: SignedDRNState, knobs, epsilon) -> np.ndarray:
        theta = np.asarray(knobs) - epsilon * self.energy_gradient(state)
        theta[:self.n_weights] = np.maximum(theta[:self.n_weights], 0.0)
        return theta

    def loss_gradient(self, state: SignedDRNState, target: np.ndarray) -> np.ndarray:
        """dL/dtheta at a converged free equilibrium (L = batch mean of C), by implicit differentiation.

        Adjoint H lambda = dC/dV over the free nodes (H: D_k on layer k, -W_k between layers; a
        hidden node held at 0 V by its conducting diode is frozen, lambda = 0), solved by block
        Gauss-Seidel sweeps to 1e-13 relative. Then dL/dW_ij = -mean (V_i - V_j)(lambda_i - lambda_j)
        and dL/db = mean lambda (the bias enters E as -b V).
        """
        V = [layer.astype(np.float64) for layer in state.layers]
        v_in = state.inputs.astype(np.float64)
        Ws = [W.astype(np.float64) for W in self.weights]
        D = [d.astype(np.float64) for d in self._conductance_sums()]
        last, B = len(V) - 1, len(v_in)
        masks = [(np.abs(layer) > 1e-9).astype(float) for layer in V[:-1]] + [np.ones_like(V[-1])]
        lam = [np.zeros_like(layer) for layer in V]
        residual = self.outputs(state) - np.asarray(target, dtype=np.float64)
        for _ in range(100_000):
            change = 0.0
            for k in range(last, -1, -1):
                rhs = residual.copy() if k == last else lam[k + 1] @ Ws[k + 1].T
                if k > 0:
                    rhs += lam[k - 1] @ Ws[k]
                new = masks[k] * rhs / D[k]
                change = max(change, float(np.abs(new - lam[k]).max(initial=0.0)))
                lam[k] = new
            if change <= 1e-13 * (1.0 + max(float(np.abs(x).max(initial=0.0)) for x in lam)):
                break
        layers, adjoints = [v_in, *V], [np.zeros_like(v_in), *lam]
        blocks = [(Va.T @ lb + la.T @ Vb) / B - (Va * la).mean(axis=0)[:, None] - (Vb * lb).mean(axis=0)[None, :]
                  for Va, Vb, la, lb in zip(layers[:-1], layers[1:], adjoints[:-1], adjoints[1:])]
        return np.concatenate([*(b.ravel() for b in blocks), np.concatenate(lam, axis=1).mean(axis=0)])

    def descend(self, terms, steps) -> None:
        """theta <- theta - step * sum_k c_k dE/dtheta(s_k) (through the velocity with momentum), conductances >= 0.

        A weight block is updated a panel of rows at a time (~0.5 MB, cache-resident): the rank-k update
        (BLAS), then the clip at 0 and the panel's column and row sums (the new conductance sums, cached for
        the next settle) in one compiled pass (panels.py) while the panel is in cache. Without momentum, a
        first block larger than the caches is left pending (the next drive applies it in its own pass,
        streaming.py), and a narrow block is updated on its kept transpose (narrow.py), both layouts written.
        """
        terms = [(float(c), s) for c, s in terms if c != 0.0]
        if not terms:
            return
        self._apply_pending()
        steps = [float(steps)] * (len(self.weights) + 1) if np.isscalar(steps) else list(steps)
        pairs, bias = self._contrast(terms)
        dt = self.dtype.type
        if self.momentum and self._velocity is None:
            self._velocity = np.zeros_like(self._theta)
        columns, rows, transposes = [], [], {}
        stream = self.streams_first_block
        for k, (W, (left, right), step) in enumerate(zip(self.weights, pairs, steps)):
            if k == 0 and stream:
                pending = (left, right, step)
                columns.append(None)  # the pending pass computes W1's column sums
                rows.append(None)  # the input layer is not free: W1's row sums are never needed
                continue
            if self.updates_on_transpose(k):
                from aeqprop_circuits.systems.drn import narrow

                transposes[k] = self._transpose(k)
                row, column = narrow.descend(transposes[k], W, left, right, step)
                columns.append(column)
                rows.append(row)
                continue
            from aeqprop_circuits.systems.drn import panels  # numba is imported only where a system trains

            velocity = self._velocity[self._slices[k]].reshape(W.shape) if self.momentum else None
            column, row = np.zeros(W.shape[1], dtype=self.dtype), np.empty(W.shape[0], dtype=self.dtype)
            for where in update_panels(*W.shape, W.itemsize):
                panel = W[where]
                moving = velocity[where] if self.momentum else None
                if self.momentum:  # velocity <- momentum velocity + gradient; W <- W - step velocity
                    gemm_into(moving, left[:, where], right, 1.0, keep=self.momentum)
                else:
                    gemm_into(panel, left[:, where], right, -step)
                panels.finish(panel, moving, step, column, row[where])
            columns.append(column)
            rows.append(row)
        if self.momentum:
            velocity = self._velocity[self.n_weights:]
            velocity *= dt(self.momentum)
            velocity += bias
            bias = velocity
        self._theta[self.n_weights:] -= dt(steps[-1]) * bias
        self._version += 1
        if transposes:
            self._transposes = (self._version, transposes)  # the narrow blocks' transposes, updated with them
        sums = [_node_sums(columns[k], rows[k + 1] if k + 1 < len(rows) else None) for k in range(len(columns))]
        self._cache = (self._version, sums)
        if stream:
            self._pending = (*pending, rows[1])  # a signed DRN has at least two blocks

    def contrast_step(self, x: np.ndarray, target: np.ndarray, terms, rates) -> SignedDRNState:
        """A nudge-contrast step (runs/inplace.py), its free phase warm-started from the previous step's."""
        base = Phase(x, 0.0, target)
        start = None
        if self.warm_start and self._resting is not None:
            start = SignedDRNState(self._resting, None, base)
        free = self.settle(base, start=start)
        nudged = self.settle_nudges(base, [b for _, b in terms if b != 0.0], start=free)
        self._resting = nudged[-1].layers if self.warm_start == "last" and nudged else free.layers
        nudged = iter(nudged)
        self.descend([(c, free if b == 0.0 else next(nudged)) for c, b in terms], rates)
        return free

    # --- the circuit ------------------------------------------------------------------------
    def source_values(self, circuit, inputs: np.ndarray) -> np.ndarray:
        """Values of every source of `circuit()` for a batch of data (input gain applied)."""
        return circuit.source_values(np.asarray(inputs, dtype=np.float64) * self.input_gain)

    def circuit(self):
        """This network as a Circuit (ideal diodes, bias current sources at their trained values): a netlist away."""
        self._apply_pending()
        from aeqprop_circuits.circuit.circuit import Circuit, Diodes, IdealDiodes, Learning, Resistors, Sources

        n_in, n_out = self.n_inputs, self.n_outputs
        names = ["0", *(f"xp{i}" for i in range(n_in)), *(f"xn{i}" for i in range(n_in))]
        layers, start = [], len(names)
        for k, width in enumerate(self.widths[1:]):
            prefix = "o" if k == len(self.widths) - 2 else f"h{k + 1}_"
            names.extend(f"{prefix}{i}" for i in range(width))
            layers.append(np.arange(start, start + width))
            start += width
        nodes, r_names = [], []
        for k, src in enumerate([np.arange(1, 2 * n_in + 1), *layers[:-1]]):
            a, b = np.meshgrid(src, layers[k], indexing="ij")
            nodes.append(np.stack([a.ravel(), b.ravel()], axis=1))
            r_names.extend(f"rw{k + 1}_{i}_{j}" for i in range(len(src)) for j in range(len(layers[k])))
        conductance = self._theta[:self.n_weights].astype(np.float64) * self.g0
        resistors = Resistors(tuple(r_names), np.concatenate(nodes), conductance)
        hidden = np.concatenate(layers[:-1])
        excitatory = np.concatenate([np.arange(len(layer)) < half
                                     for layer, half in zip(layers[:-1], self._excitatory)])
        zero = np.zeros_like(hidden)  # ground -> node holds V >= 0; node -> ground holds V <= 0
        d_nodes = np.where(excitatory[:, None], np.stack([zero, hidden], 1), np.stack([hidden, zero], 1))
        d_names = tuple(f"d{names[node]}" for node in hidden)
        biased = np.concatenate(layers)
        s_names = [f"vxp{i}" for i in range(n_in)] + [f"vxn{i}" for i in range(n_in)] + \
                  [f"ib{names[i]}" for i in biased]
        s_nodes = [(i, 0) for i in range(1, 2 * n_in + 1)] + [(0, i) for i in biased]  # I 0 node: into the node
        s_values = np.r_[np.zeros(2 * n_in), self._theta[self.n_weights:].astype(np.float64) * self.g0]
        sources = Sources(tuple(s_names), s_nodes, s_values, np.r_[np.ones(2 * n_in), np.zeros(len(biased))])
        input_map = np.zeros((len(s_names), n_in))
        input_map[np.arange(n_in), np.arange(n_in)] = 1.0
        input_map[n_in + np.arange(n_in), np.arange(n_in)] = -1.0
        learning = Learning(
            input_sources=tuple(f"pair(vxp{i},vxn{i})" for i in range(n_in)), input_map=input_map,
            output_names=tuple(f"o{j}" for j in range(n_out)),
            outputs=np.stack([layers[-1], np.zeros(n_out, dtype=np.int64)], axis=1),
            trainable=np.arange(self.n_weights), low=np.zeros(self.n_weights),
            high=np.full(self.n_weights, np.inf), g0=self.g0)
        title = "signed deep resistive network " + "-".join(str(s) for s in [2 * n_in, *self.sizes[1:]])
        return Circuit(title, tuple(names), resistors, Diodes((), np.zeros((0, 2)), [], []),
                       IdealDiodes(d_names, d_nodes), sources, learning, layers=tuple(layers))
