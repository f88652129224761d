"""A dense fast path for layered ideal-diode networks (deep resistive networks: builder or netlist).

The generic solvers see a DRN as sparse matrices over ~10^5-10^6 resistors and pay for
building them (the `Problem`: incidence products, offsets, the Hessian M^T diag(g) M) on
every call. Here the circuit's `layers` and its row-major resistor layout are recognised once
(`layered_structure`) and each call works on views of the conductance vector reshaped into
dense (fan_in, fan_out) blocks:

- per layer, the total conductance D at each node (row/column sums of the blocks) and the
  current c injected by fixed nodes (one GEMM: sources @ W, the matrix-vector floor);
- one hidden layer + an unconstrained output layer (the DRN of the benchmark): the hidden
  layer is eliminated in closed form, h(o) = clip((c_h + W o) / D_h, lo, hi), and the output
  potentials minimise the convex piecewise-quadratic F(o) = min_h E(h, o) by semi-smooth
  Newton (generalised Hessian D_o - W^T diag(free / D_h) W, O x O per sample) with an Armijo
  line search. When the set of clipped hidden nodes stops changing, the step is exact, so the
  answer is exact to rounding (the nudge, a term in the outputs only, fits in F as well);
- deeper networks: exact block coordinate descent over the layers (each block update one
  GEMM + clip), as `coordinate` does, but on the dense blocks.

Energy, KCL residual and branch currents are those of the generic `Problem`; they are
computed only when read (`SolveResult.currents` is a lazy mapping here, since a DRN at
H = 1024 has 1.6 10^6 resistors per sample). The blocks' co-content and currents are fused
matrix-product forms of the resistor's stamp; the nudge is the table's (`circuit.elements`);
tests/test_fast_paths.py holds them against `Problem`.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from aeqprop_circuits.circuit.circuit import Circuit
from aeqprop_circuits.circuit.elements import NUDGE
from aeqprop_circuits.circuit.energy import Nudge, Problem, structure
from aeqprop_circuits.errors import CircuitError
from aeqprop_circuits.solvers.result import SolveResult, keep_going
from aeqprop_circuits.solvers.shockley import Junctions, ShockleyNewton, junction_terms


@dataclass(frozen=True, eq=False)
class Block:
    """Resistors conductance[start:stop] joining rows[i] of group `a` to cols[j] of group `b`, row-major.

    Groups are -1 (fixed nodes; positions index the fixed-node list) or a layer number
    (positions index that layer's nodes).
    """

    a: int
    rows: np.ndarray
    b: int
    cols: np.ndarray
    start: int
    stop: int
    order: np.ndarray | None = None  # resistor indices in row-major order, when not start:stop

    def weights(self, g: np.ndarray) -> np.ndarray:
        if self.order is not None:
            return g[self.order].reshape(len(self.rows), len(self.cols))
        return g[self.start:self.stop].reshape(len(self.rows), len(self.cols))


@dataclass(frozen=True, eq=False)
class LayeredStructure:
    fixed_nodes: np.ndarray  # node indices at fixed potential (ground's supernode)
    fixed_map: object  # sparse (n_fixed, n_sources): potentials of the fixed nodes from source values
    layers: tuple[np.ndarray, ...]  # node indices per layer
    free: tuple[np.ndarray, ...]  # free-variable index of each layer node
    blocks: tuple[Block, ...]
    # bounds from ideal diodes to fixed nodes: (layer, position, fixed position, is_upper)
    bounds: tuple[tuple[int, np.ndarray, np.ndarray, bool], ...]
    bounded: tuple[bool, ...]  # per layer: has any ideal-diode bound
    junctions: Junctions | None = None  # Shockley diodes from layer nodes to fixed nodes (solvers/shockley.py)


# Per circuit object, for as long as it lives: its dense-block view (None: not layered).
_STRUCTURES: weakref.WeakKeyDictionary[Circuit, LayeredStructure | None] = weakref.WeakKeyDictionary()


def layered_structure(circuit: Circuit) -> LayeredStructure | None:
    """The dense-block view of a layered circuit, or None when it does not fit (computed once)."""
    try:
        return _STRUCTURES[circuit]
    except KeyError:
        found = _STRUCTURES[circuit] = _find_structure(circuit)
        return found


def infer_layers(circuit: Circuit) -> tuple[np.ndarray, ...] | None:
    """Layers of a circuit read from a netlist (no builder `layers`): breadth-first from the outputs.

    The output nodes are the last layer; each earlier layer is the free nodes joined by a
    resistor to the next one and not yet placed. None when some free node is never reached.
    A netlist that names no outputs is tried as two layers (`_two_layers`).
    `_find_structure` then checks the candidate strictly (resistors only between consecutive
    layers, full row-major blocks), so a wrong guess only means the generic solvers run.
    """
    topo, _ = structure(circuit)
    free = topo.free_of_node >= 0
    outputs = np.unique(circuit.learning.outputs)
    outputs = outputs[free[outputs]]
    pairs = circuit.resistors.nodes
    both = free[pairs[:, 0]] & free[pairs[:, 1]]
    a, b = pairs[both, 0], pairs[both, 1]
    if len(outputs) == 0:
        return _two_layers(free, a, b)
    placed = np.zeros(circuit.n_nodes, dtype=bool)
    placed[outputs] = True
    layers, current = [outputs], outputs
    while True:
        mark = np.zeros(circuit.n_nodes, dtype=bool)
        mark[current] = True
        neighbours = np.unique(np.concatenate([b[mark[a]], a[mark[b]]]))
        neighbours = neighbours[~placed[neighbours]]
        if len(neighbours) == 0:
            break
        placed[neighbours] = True
        layers.append(neighbours)
        current = neighbours
    if placed.sum() != free.sum():
        return None
    return tuple(reversed(layers))


def _two_layers(free: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, ...] | None:
    """Layers of a netlist that names no outputs: the free nodes split by the parity of their distance
    (over resistors between free nodes) from the first one, the smaller side last. None unless that
    reaches every free node."""
    nodes = np.flatnonzero(free)
    if len(nodes) < 2:
        return None
    side = np.full(len(free), -1)
    side[nodes[0]] = 0
    current = nodes[:1]
    while len(current):
        mark = np.zeros(len(free), dtype=bool)
        mark[current] = True
        neighbours = np.unique(np.concatenate([b[mark[a]], a[mark[b]]]))
        neighbours = neighbours[side[neighbours] < 0]
        side[neighbours] = 1 - side[current[0]]
        current = neighbours
    if (side[nodes] < 0).any():
        return None
    even, odd = nodes[side[nodes] == 0], nodes[side[nodes] == 1]
    return (even, odd) if len(even) >= len(odd) else (odd, even)


def _find_structure(circuit: Circuit) -> LayeredStructure | None:
    if (~circuit.sources.is_voltage).any() or (len(circuit.diodes.names) and len(circuit.ideal_diodes.names)) \
            or not len(circuit.resistors.names):
        return None
    given = circuit.layers if circuit.layers is not None else infer_layers(circuit)
    if given is None:
        return None
    topo, _ = structure(circuit)
    n = circuit.n_nodes
    group = np.full(n, -2)
    fixed_nodes = np.flatnonzero(topo.free_of_node < 0)
    group[fixed_nodes] = -1
    position = np.zeros(n, dtype=np.int64)
    position[fixed_nodes] = np.arange(len(fixed_nodes))
    layers = tuple(np.asarray(layer, dtype=np.int64) for layer in given)
    for k, layer in enumerate(layers):
        group[layer] = k
        position[layer] = np.arange(len(layer))
    free = tuple(topo.free_of_node[layer] for layer in layers)
    if (group == -2).any() or sum(len(f) for f in free) != topo.n_free \
            or len(np.unique(np.concatenate(free))) != topo.n_free or min(f.min() for f in free) < 0:
        return None  # nodes outside the layers, or layer nodes tied by voltage sources

    pairs = circuit.resistors.nodes
    ga, gb = group[pairs[:, 0]], group[pairs[:, 1]]
    if ((ga >= 0) & (gb >= 0) & (np.abs(ga - gb) != 1)).any():
        return None  # a resistor inside a layer or skipping one
    blocks = _blocks_in_place(pairs, ga, gb, position)
    if blocks is None:
        blocks = _blocks_sorted(pairs, group, position)
    if blocks is None:
        return None

    ideal = circuit.ideal_diodes
    gx_a, gx_b = group[ideal.nodes[:, 0]], group[ideal.nodes[:, 1]]
    if ((gx_a >= 0) & (gx_b >= 0)).any():
        return None
    bounds = []
    bounded = [False] * len(layers)
    for k in range(len(layers)):
        upper = (gx_a == k) & (gx_b == -1)  # anode on the layer: V <= V[cathode]
        lower = (gx_b == k) & (gx_a == -1)  # cathode on the layer: V >= V[anode]
        if upper.any():
            bounds.append((k, position[ideal.nodes[upper, 0]], position[ideal.nodes[upper, 1]], True))
        if lower.any():
            bounds.append((k, position[ideal.nodes[lower, 1]], position[ideal.nodes[lower, 0]], False))
        bounded[k] = bool(upper.any() or lower.any())
    junctions = None
    if len(circuit.diodes.names):
        d = circuit.diodes
        ga_d, gb_d = group[d.nodes[:, 0]], group[d.nodes[:, 1]]
        on_layer = np.where(ga_d >= 0, 0, 1)  # which terminal is on a layer: anode (0) or cathode (1)
        if not (((ga_d >= 0) & (gb_d == -1)) | ((ga_d == -1) & (gb_d >= 0))).all():
            return None  # a junction between two layer nodes, or between fixed nodes
        rows = np.arange(len(d.names))
        node, other = d.nodes[rows, on_layer], d.nodes[rows, 1 - on_layer]
        junctions = Junctions(group[node], position[node], position[other], np.where(on_layer == 0, 1.0, -1.0),
                              d.saturation_current, d.thermal_voltage, rows)
    fixed_map = topo.Q[fixed_nodes].tocsr()
    return LayeredStructure(fixed_nodes, fixed_map, layers, free, tuple(blocks), tuple(bounds),
                            tuple(bounded), junctions)


def _blocks_in_place(pairs, ga, gb, position) -> list[Block] | None:
    """Blocks as the builder and its written netlists lay resistors out: runs with the same pair of
    groups, each a full row-major grid (the weights are then views of the conductance vector)."""
    change = np.flatnonzero((np.diff(ga) != 0) | (np.diff(gb) != 0)) + 1
    blocks = []
    for start, stop in zip(np.r_[0, change], np.r_[change, len(pairs)]):
        if ga[start] == -1 and gb[start] == -1:
            continue  # between fixed nodes: no effect on the free potentials
        block = _grid(pairs[start:stop], start, ga[start], gb[start], position)
        if block is None:
            return None
        blocks.append(block)
    return blocks


def _blocks_sorted(pairs, group, position) -> list[Block] | None:
    """Blocks of resistors in any order and orientation (a hand-written or exported netlist): each
    resistor turned fixed side or earlier layer first, sorted by (groups, row, column), and each
    pair of groups checked to be a full grid with one resistor per node pair."""
    swap = group[pairs[:, 1]] < group[pairs[:, 0]]
    first = np.where(swap, pairs[:, 1], pairs[:, 0])
    second = np.where(swap, pairs[:, 0], pairs[:, 1])
    ga, gb, pa, pb = group[first], group[second], position[first], position[second]
    order = np.lexsort((pb, pa, gb, ga))
    ga, gb, pa, pb = ga[order], gb[order], pa[order], pb[order]
    change = np.flatnonzero((np.diff(ga) != 0) | (np.diff(gb) != 0)) + 1
    blocks = []
    for start, stop in zip(np.r_[0, change], np.r_[change, len(order)]):
        if ga[start] == -1 and gb[start] == -1:
            continue
        rows, cols = np.unique(pa[start:stop]), np.unique(pb[start:stop])
        if stop - start != len(rows) * len(cols) or not (
                np.array_equal(pa[start:stop], np.repeat(rows, len(cols)))
                and np.array_equal(pb[start:stop], np.tile(cols, len(rows)))):
            return None
        blocks.append(Block(int(ga[start]), rows, int(gb[start]), cols, int(start), int(stop),
                            order[start:stop]))
    return blocks


def _grid(pairs: np.ndarray, start: int, a: int, b: int, position: np.ndarray) -> Block | None:
    first, second = pairs[:, 0], pairs[:, 1]
    n_cols = int(np.argmax(first != first[0])) or len(first)
    if len(first) % n_cols:
        return None
    rows, cols = first[::n_cols], second[:n_cols]
    expected = np.stack(np.meshgrid(rows, cols, indexing="ij"), axis=-1).reshape(-1, 2)
    if not np.array_equal(expected, pairs) or len(np.unique(rows)) != len(rows) \
            or len(np.unique(cols)) != len(cols):
        return None
    return Block(int(a), position[rows], int(b), position[cols], start, start + len(pairs))


SHOCKLEY_MAXITER = 200  # block Newton iterations at most (as `newton`); maxiter bounds the sweeps


class _Unsupported(Exception):
    """The circuit is layered, but not in a way this fast path handles."""


class LazyCurrents(Mapping):
    """Branch currents per group, computed by the generic `Problem` on first access."""

    def __init__(self, problem_factory, z):
        self._factory, self._z = problem_factory, z

    @cached_property
    def _currents(self) -> dict:
        return self._factory().branch_currents(self._z)

    def __getitem__(self, key):
        return self._currents[key]

    def __iter__(self):
        return iter(self._currents)

    def __len__(self):
        return len(self._currents)


@dataclass(eq=False)
class Assembly:
    """One phase's dense blocks, what every layered solve and read-out works on (SI units).

    Per layer k: D[k] the total conductance at each node (S), c[k] (B, n_k) the current the fixed
    nodes inject (A), lo[k], hi[k] (B, n_k) the ideal diodes' bounds (V). `couplings` are the blocks
    between two layers (a, b, W (n_a, n_b), positions in a, positions in b); `sums` per block the row
    sums, column sums and the fixed side's current that the energy reuses; `fixed` (B, n_fixed) the
    potentials of the fixed nodes.
    """

    D: list
    c: list
    lo: list
    hi: list
    couplings: list
    sums: list
    fixed: np.ndarray


def assemble(st: LayeredStructure, g: np.ndarray, sources: np.ndarray) -> Assembly:
    """The blocks of one phase from the conductances (S) and source values (B, n_sources)."""
    fixed = np.asarray(st.fixed_map @ sources.T).T  # (B, n_fixed) potentials of fixed nodes
    B = len(fixed)
    sizes = [len(layer) for layer in st.layers]
    D = [np.zeros(m) for m in sizes]
    c = [np.zeros((B, m)) for m in sizes]
    couplings = []  # (k, m, W oriented (n_k, n_m), positions in k, positions in m)
    sums = []  # per block: row sums, column sums, and the fixed side's current (B, n of the free side)
    for blk in st.blocks:
        W = blk.weights(g)
        injected = None
        if blk.a == -1:
            # The one pass over the big input block every solve needs: its column sums and the
            # current the sources inject, as one GEMM.
            # (Small batches also take the sources' squares along, for the energy.)
            Vf = fixed[:, blk.rows]
            squares = B <= 8
            stacked = np.vstack([Vf, np.ones(len(blk.rows))] + ([Vf * Vf] if squares else [])) @ W
            injected, col_sum = stacked[:B], stacked[B]
            row_sum = (stacked[B + 1:], ) if squares else None  # (Va^2 @ W) in a tuple: see _energy
            D[blk.b][blk.cols] += col_sum
            c[blk.b][:, blk.cols] += injected
        elif blk.b == -1:
            row_sum, col_sum = W.sum(axis=1), W.sum(axis=0)
            D[blk.a][blk.rows] += row_sum
            injected = fixed[:, blk.cols] @ W.T
            c[blk.a][:, blk.rows] += injected
        else:
            row_sum, col_sum = W.sum(axis=1), W.sum(axis=0)
            D[blk.a][blk.rows] += row_sum
            D[blk.b][blk.cols] += col_sum
            couplings.append((blk.a, blk.b, W, blk.rows, blk.cols))
        sums.append((row_sum, col_sum, injected))
    lo = [np.full((B, m), -np.inf) for m in sizes]
    hi = [np.full((B, m), np.inf) for m in sizes]
    for k, pos, fpos, upper in st.bounds:
        bound, combine = (hi[k], np.minimum) if upper else (lo[k], np.maximum)
        if len(np.unique(pos)) == len(pos):  # one diode per node and side (the DRN): no ufunc.at
            bound[:, pos] = combine(bound[:, pos], fixed[:, fpos])
        else:
            combine.at(bound.T, pos, fixed[:, fpos].T)
    return Assembly(D, c, lo, hi, couplings, sums, fixed)


def layered(circuit: Circuit, sources: np.ndarray, conductance: np.ndarray | None = None,
            nudge: Nudge | None = None, x0: np.ndarray | None = None, vtol: float = 1e-13,
            maxiter: int = 10_000, callback=None, lazy: bool = True) -> SolveResult | None:
    """Operating points of a layered ideal-diode network on dense blocks; None if it is not one.

    Same arguments and result as `solve(..., method="coordinate")` (x0 is accepted but the
    Newton path does not need it). With `lazy=True` the energy and residual are computed from
    the dense blocks and the currents only when read.
    """
    st = layered_structure(circuit)
    if st is None:
        return None
    n_layers = len(st.layers)
    newton_path = n_layers == 2 and not st.bounded[1]
    if st.junctions is not None and n_layers != 2:
        return None  # Shockley diodes: the block Newton of one hidden layer only
    if nudge is not None and float(nudge.conductance) != 0.0 and not newton_path:
        return None  # a nudge couples o+ and o- inside the output layer: not a block update
    s = np.atleast_2d(np.asarray(sources, dtype=np.float64))
    B = len(s)
    g = circuit.resistors.conductance if conductance is None else np.asarray(conductance, dtype=np.float64)
    topo, _ = structure(circuit)
    blocks = assemble(st, g, s)
    for k in range(n_layers):
        if (blocks.D[k] <= 0).any():
            raise CircuitError("non-convex phase: a node has no positive conductance to the rest "
                               "of the circuit (negative conductance?)")
        if (blocks.lo[k] > blocks.hi[k] + 1e-12).any():
            raise CircuitError("conflicting constraints: ideal diodes hold a node both above and below")

    try:
        if st.junctions is not None:
            objective = OutputObjective(blocks, circuit, st, nudge)
            gmin = float(circuit.diodes.gmin)
            h, o, iterations, success, message = ShockleyNewton(objective, st.junctions, blocks.fixed, gmin).solve(
                vtol, min(maxiter, SHOCKLEY_MAXITER), callback)
            V = objective.layers(h, o)
        elif newton_path:
            V, iterations, success, message = _eliminate_and_newton(OutputObjective(blocks, circuit, st, nudge),
                                                                    B, vtol, maxiter, callback)
        else:
            V, iterations, success, message = _sweeps(blocks, B, vtol, maxiter, callback,
                                                      lambda V: block_energy(V, blocks, st, g, nudge, circuit))
    except _Unsupported:
        return None

    z = np.zeros((B, topo.n_free))
    for k in range(n_layers):
        z[:, st.free[k]] = V[k]

    def problem() -> Problem:
        return Problem(circuit, s, conductance, nudge)

    if lazy:
        potentials = full_potentials(V, blocks.fixed, st, circuit.n_nodes)
        energy = block_energy(V, blocks, st, g, nudge, circuit, potentials)
        gradient = block_gradient(V, blocks, st, nudge, circuit, potentials)
        if st.junctions is not None:
            for k in range(n_layers):
                content, current, _ = junction_terms(V, blocks.fixed, st.junctions, float(circuit.diodes.gmin), k)
                energy, gradient[k] = energy + content, gradient[k] + current
        residual = _residual(V, blocks, gradient)
        currents = LazyCurrents(problem, z)
    else:
        p = problem()
        energy, residual = p.energy(z), p.residual(z)
        currents, potentials = p.branch_currents(z), p.potentials(z)
    return SolveResult(potentials=potentials, currents=currents, energy=energy, free=z,
                       iterations=int(iterations), residual=residual, success=bool(success),
                       message=message, solver="layered")


def _neighbour_sum(k, V, couplings, B, m):
    """Current into layer k's nodes from its neighbouring layers, sum_j g_ij V_j, (B, m)."""
    total = np.zeros((B, m))
    for a, b, W, rows, cols in couplings:
        if a == k:
            total[:, rows] += V[b][:, cols] @ W.T
        elif b == k:
            total[:, cols] += V[a][:, rows] @ W
    return total


def _sweeps(blocks: Assembly, B, vtol, maxiter, callback, energy_of):
    D, c, lo, hi, couplings = blocks.D, blocks.c, blocks.lo, blocks.hi, blocks.couplings
    V = [np.clip(ck / Dk, lk, hk) for ck, Dk, lk, hk in zip(c, D, lo, hi)]
    for sweep in range(1, maxiter + 1):
        change = 0.0
        for k in range(len(V)):
            new = np.clip((c[k] + _neighbour_sum(k, V, couplings, B, len(D[k]))) / D[k], lo[k], hi[k])
            change = max(change, float(np.abs(new - V[k]).max(initial=0.0)))
            V[k] = new
        if callback is not None and not keep_going(callback, energy_of(V)):
            return V, sweep, False, "stopped by callback"
        if change <= vtol * (1.0 + max(float(np.abs(v).max(initial=0.0)) for v in V)):
            return V, sweep, True, "converged: block updates below tolerance"
    return V, maxiter, False, f"no convergence in {maxiter} sweeps"


class OutputObjective:
    """F(o) = min over the hidden layer of the co-content, nudge included, up to a constant (W):
    the objective of the Newton path (one hidden layer h, box-bounded, and unbounded outputs o).

    With the fixed nodes' currents ch, co and the layers' conductance sums Dh, Do, the co-content
    is 1/2 Dh h^2 - ch h - h W o + 1/2 Do o^2 - co o + beta C(A o + a) + const, where the outputs
    read A o + a (A the (n_outputs, O) signed selection, a from fixed nodes). h(o) = clip((ch + W o)
    / Dh, lo, hi) minimises it over h, and dF/do = Do o - co - h W + beta dC/do (envelope theorem).
    """

    def __init__(self, blocks: Assembly, circuit: Circuit, st: LayeredStructure, nudge: Nudge | None):
        if len(blocks.couplings) != 1:  # several hidden-output blocks (e.g. copies of a circuit): not this path
            raise _Unsupported("the hidden layer meets the outputs in more than one block")
        (_, _, W, rows, cols), = blocks.couplings  # hidden (layer 0) rows, outputs (layer 1) cols
        self.W, self.rows, self.cols, self.sizes = W, rows, cols, [len(d) for d in blocks.D]
        self.Dh, self.Do = blocks.D[0][rows], blocks.D[1][cols]
        self.ch, self.co = blocks.c[0][:, rows], blocks.c[1][:, cols]
        self.lo_h, self.hi_h = blocks.lo[0][:, rows], blocks.hi[0][:, rows]
        B, O = len(self.ch), len(self.Do)
        self.beta = 0.0 if nudge is None else float(nudge.conductance)
        self.A = np.zeros((circuit.n_outputs, O))
        self.offset = np.zeros((B, circuit.n_outputs))
        if self.beta:
            self.target = np.broadcast_to(np.asarray(nudge.target, float), self.offset.shape)
            where = np.full(circuit.n_nodes, -1)
            where[st.layers[1][cols]] = np.arange(O)
            fixed_where = np.full(circuit.n_nodes, -1)
            fixed_where[st.fixed_nodes] = np.arange(len(st.fixed_nodes))
            for j, (p, n) in enumerate(circuit.learning.outputs):
                for node, sign in ((p, 1.0), (n, -1.0)):
                    if node == 0:
                        continue
                    if where[node] >= 0:
                        self.A[j, where[node]] += sign
                    elif fixed_where[node] >= 0:
                        self.offset[:, j] += sign * blocks.fixed[:, fixed_where[node]]
                    else:
                        raise _Unsupported("output node outside the output layer")
        self.base = np.diag(self.Do) + NUDGE.conductance(0.0, self.beta, 0.0) * (self.A.T @ self.A)

    def hidden(self, o):
        return np.clip((self.ch + o @ self.W.T) / self.Dh, self.lo_h, self.hi_h)

    def __call__(self, o):
        """(F(o) (B,), dF/do (B, O), h(o) (B, H))."""
        h = self.hidden(o)
        value = (0.5 * self.Do * o * o - self.co * o).sum(1) \
            + (0.5 * self.Dh * h * h - self.ch * h - h * (o @ self.W.T)).sum(1)
        gradient = self.Do * o - self.co - h @ self.W
        if self.beta:
            out = o @ self.A.T + self.offset
            value = value + NUDGE.content(out, self.beta, self.target).sum(1)
            gradient = gradient + NUDGE.current(out, self.beta, self.target) @ self.A
        return value, gradient, h

    def layers(self, h, o):
        """[hidden layer, output layer] in the structure's node order."""
        Vh, Vo = np.empty((len(h), self.sizes[0])), np.empty((len(o), self.sizes[1]))
        Vh[:, self.rows], Vo[:, self.cols] = h, o
        return [Vh, Vo]


def _eliminate_and_newton(objective: OutputObjective, B, vtol, maxiter, callback):
    """One hidden layer h (box-bounded) eliminated in closed form; semi-smooth Newton on the outputs o."""
    W, Dh, base, beta = objective.W, objective.Dh, objective.base, objective.beta
    # Convexity: the generalised Hessian is smallest with every hidden node free.
    if beta < 0 and np.linalg.eigvalsh(base - (W.T / Dh) @ W).min() <= 1e-12 * np.abs(base).max():
        raise CircuitError(f"non-convex phase: the negative nudge (conductance {beta:.3g} S) makes the "
                           "co-content unbounded below, so there is no equilibrium; use a smaller |beta|")
    lo_h, hi_h = objective.lo_h, objective.hi_h
    o = (objective.co + objective.hidden(np.zeros((B, len(objective.Do)))) @ W) / objective.Do  # one block sweep
    value, gradient, h = objective(o)
    message = f"no convergence in {maxiter} Newton iterations"
    for iteration in range(1, maxiter + 1):
        free = ((h > lo_h) & (h < hi_h)).astype(float)
        S = base[None] - (W.T[None] * (free / Dh)[:, None, :]) @ W  # (B, O, O)
        step = -np.linalg.solve(S, gradient[..., None])[..., 0]
        slope = (gradient * step).sum(1)
        alpha = np.ones(B)
        pending = np.ones(B, dtype=bool)
        for _ in range(60):
            trial = o + alpha[:, None] * step
            v_trial, g_trial, h_trial = objective(trial)
            ok = v_trial <= value + 1e-4 * alpha * slope + 4e-16 * np.abs(value) + 1e-300
            accept = pending & ok
            o[accept], value[accept], gradient[accept], h[accept] = (
                trial[accept], v_trial[accept], g_trial[accept], h_trial[accept])
            pending &= ~ok
            if not pending.any():
                break
            alpha[pending] *= 0.5
        if not keep_going(callback, value):
            return objective.layers(h, o), iteration, False, "stopped by callback"
        if np.abs(step).max() <= vtol * (1.0 + np.abs(o).max()):
            message = "converged: exact Newton step on the outputs, hidden layer in closed form"
            break
    else:
        return objective.layers(h, o), maxiter, False, message
    return objective.layers(h, o), iteration, True, message


def full_potentials(V, fixed, st, n_nodes):
    """All node potentials (B, n_nodes) from the fixed ones and the layers'."""
    full = np.zeros((len(fixed), n_nodes))
    full[:, st.fixed_nodes] = fixed
    for k, layer in enumerate(st.layers):
        full[:, layer] = V[k]
    return full


def _outputs(full, circuit):
    """V_p - V_n per output (B, n_outputs)."""
    p, n = circuit.learning.outputs.T
    return full[:, p] - full[:, n]


def block_energy(V, blocks: Assembly, st, g, nudge, circuit, full=None):
    """Total co-content (B,), W: sum g (Va - Vb)^2 / 2 = (Va^2 rows + Vb^2 cols) / 2 - Va W Vb per block."""
    fixed = blocks.fixed
    e = np.zeros(len(fixed))
    for blk, (row_sum, col_sum, injected) in zip(st.blocks, blocks.sums):
        Va = fixed[:, blk.rows] if blk.a == -1 else V[blk.a][:, blk.rows]
        Vb = fixed[:, blk.cols] if blk.b == -1 else V[blk.b][:, blk.cols]
        if row_sum is None:
            row_sum = blk.weights(g).sum(axis=1)
        if isinstance(row_sum, tuple):  # the input block's Va^2 @ W, from the stacked GEMM
            e += 0.5 * (row_sum[0].sum(1) + (Vb * Vb) @ col_sum) - (injected * Vb).sum(1)
            continue
        if blk.a == -1:
            cross = (injected * Vb).sum(1)
        elif blk.b == -1:
            cross = (injected * Va).sum(1)
        else:
            cross = ((Va @ blk.weights(g)) * Vb).sum(1)
        e += 0.5 * ((Va * Va) @ row_sum + (Vb * Vb) @ col_sum) - cross
    if nudge is not None and float(nudge.conductance):
        full = full_potentials(V, fixed, st, circuit.n_nodes) if full is None else full
        e += NUDGE.content(_outputs(full, circuit), float(nudge.conductance),
                           np.asarray(nudge.target, float)).sum(1)
    return e


def block_gradient(V, blocks: Assembly, st, nudge, circuit, full=None) -> list:
    """d(co-content)/dV per layer (B, n_k), A: the net current leaving each node, diodes' currents excluded."""
    B = len(blocks.fixed)
    extra = None
    if nudge is not None and float(nudge.conductance):
        full = full_potentials(V, blocks.fixed, st, circuit.n_nodes) if full is None else full
        pulled = NUDGE.current(_outputs(full, circuit), float(nudge.conductance), np.asarray(nudge.target, float))
        p, n = circuit.learning.outputs.T
        extra = np.zeros((B, circuit.n_nodes))
        np.add.at(extra.T, p, pulled.T)
        np.add.at(extra.T, n, -pulled.T)
    out = []
    for k in range(len(V)):
        grad = blocks.D[k] * V[k] - blocks.c[k] - _neighbour_sum(k, V, blocks.couplings, B, len(blocks.D[k]))
        out.append(grad if extra is None else grad + extra[:, st.layers[k]])
    return out


def _residual(V, blocks: Assembly, gradients) -> float:
    """Largest KCL violation at free nodes, amperes; at a clipped node the ideal diode takes
    any imbalance in its conducting direction, so only the other direction counts."""
    worst = 0.0
    for k, grad in enumerate(gradients):
        grad = np.where(V[k] >= blocks.hi[k], np.maximum(grad, 0.0), grad)  # held up: grad <= 0 is fine
        grad = np.where(V[k] <= blocks.lo[k], np.minimum(grad, 0.0), grad)  # held down: grad >= 0 is fine
        worst = max(worst, float(np.abs(grad).max(initial=0.0)))
    return worst
