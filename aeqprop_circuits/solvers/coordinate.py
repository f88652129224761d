"""Exact block coordinate descent for ideal-diode networks.

With ideal diodes from free nodes to fixed potentials (bias sources, ground), the co-content
is a convex quadratic in the free potentials with box constraints. For a block of nodes with
no element between any two of them (an independent set: a layer of a layered network), the
quadratic separates, and its exact minimiser over the block is one matrix product and a
clip. Each block update therefore lowers the energy, and sweeping over the blocks converges
to the minimum. Blocks come from the builder (`circuit.layers`) or from a greedy colouring.

When the sweeps have found which diodes conduct, `polish` solves the remaining linear system
exactly, so the answer is exact to rounding, not just to the sweep tolerance.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from aeqprop_circuits.circuit.energy import Problem
from aeqprop_circuits.errors import CircuitError, SolverError
from aeqprop_circuits.solvers.result import keep_going


def box_bounds(problem: Problem) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) per free potential and sample from ideal diodes with one fixed terminal.

    Raises SolverError when a diode joins two free nodes (not a box: use the qp solver) and
    CircuitError when the constraints conflict.
    """
    B, n = problem.batch, problem.n_free
    lo, hi = np.full((B, n), -np.inf), np.full((B, n), np.inf)
    if not problem.has_ideal_diodes:
        return lo, hi
    Mx = problem.Mx.tocsr()
    counts = np.diff(Mx.indptr)
    names = problem.circuit.ideal_diodes.names
    if (counts > 1).any():
        k = int(np.flatnonzero(counts > 1)[0])
        raise SolverError(f"ideal diode {names[k]} joins two free nodes; the coordinate solver needs "
                          "each ideal diode to touch a fixed potential (use --solver qp)")
    fixed = counts == 0
    if fixed.any():
        v = problem.offset_x[:, fixed]
        if (v > 1e-12).any():
            k = int(np.flatnonzero(fixed)[np.argmax(v.max(axis=0))])
            raise CircuitError(f"conflicting constraints: ideal diode {names[k]} is forward-biased "
                               "by sources alone")
    rows = np.flatnonzero(~fixed)
    cols, sign = Mx.indices[Mx.indptr[rows]], Mx.data[Mx.indptr[rows]]
    # v = sign * z_col + offset <= 0  ->  z_col <= -offset (anode) or z_col >= offset (cathode)
    bound = -problem.offset_x[:, rows] / sign
    anode = sign > 0
    np.minimum.at(hi.T, cols[anode], bound[:, anode].T)
    np.maximum.at(lo.T, cols[~anode], bound[:, ~anode].T)
    if (lo > hi + 1e-12).any():
        j = int(np.argwhere(lo > hi + 1e-12)[0, 1])
        node = problem.circuit.node_names[int(np.flatnonzero(problem.topology.free_of_node == j)[0])]
        raise CircuitError(f"conflicting constraints: ideal diodes hold node '{node}' both above "
                           "and below")
    return lo, hi


def independent_blocks(problem: Problem) -> list[np.ndarray]:
    """Partition the free potentials into independent sets (greedy colouring of the node graph)."""
    circuit, topo = problem.circuit, problem.topology
    if circuit.layers is not None:
        blocks = [topo.free_of_node[np.asarray(layer)] for layer in circuit.layers]
        blocks = [b[b >= 0] for b in blocks]
        if sum(len(b) for b in blocks) == problem.n_free:
            return [b for b in blocks if len(b)]
    H = sp.csr_matrix(problem.linear_hessian)
    colour = np.full(problem.n_free, -1)
    for j in range(problem.n_free):  # once per topology, not on the solve path
        neighbours = colour[H.indices[H.indptr[j]:H.indptr[j + 1]]]
        used = set(neighbours[neighbours >= 0].tolist())
        c = 0
        while c in used:
            c += 1
        colour[j] = c
    return [np.flatnonzero(colour == c) for c in range(colour.max() + 1)]


def coordinate(problem: Problem, x0=None, vtol: float = 1e-13, maxiter: int = 100_000, callback=None,
               polish_result: bool = True):
    B, n = problem.batch, problem.n_free
    if problem.has_diodes:
        raise SolverError("the coordinate solver handles ideal diodes only; this circuit has "
                          "exponential diodes (use --solver newton, or mark the model *@ ideal)")
    if n == 0:
        return np.zeros((B, 0)), 0, True, "no free node"
    lo, hi = box_bounds(problem)
    H = sp.csr_matrix(problem.linear_hessian)
    c = problem.linear_gradient(np.zeros((B, n)))  # gradient = z @ H + c
    diag = H.diagonal()
    if (diag <= 0).any():
        raise CircuitError("non-convex phase: a node has no positive conductance to the rest "
                           "of the circuit (negative nudge?)")
    blocks = [(b, H[b], diag[b]) for b in independent_blocks(problem)]
    z = np.clip(np.zeros((B, n)) if x0 is None else np.array(x0, dtype=float).reshape(B, n), lo, hi)
    message = f"no convergence in {maxiter} sweeps"
    success, sweep = False, 0
    for sweep in range(1, maxiter + 1):
        change = 0.0
        for idx, rows, d in blocks:
            grad = (rows @ z.T).T + c[:, idx]
            new = np.clip(z[:, idx] - grad / d, lo[:, idx], hi[:, idx])
            change = max(change, np.abs(new - z[:, idx]).max())
            z[:, idx] = new
        if callback is not None and not keep_going(callback, problem.energy(z)):
            return z, sweep, False, "stopped by callback"
        if change <= vtol * (1.0 + np.abs(z).max()):
            success, message = True, "converged: block updates below tolerance"
            break
        if polish_result and (sweep & (sweep - 1) == 0 or sweep % 32 == 0):  # sweeps 1, 2, 4, 8, ...; then every 32
            polished = polish(problem, z, lo, hi)
            if polished is not None:
                return polished, sweep, True, "converged: active set found, solved exactly"
    if success and polish_result:
        polished = polish(problem, z, lo, hi)
        if polished is not None:
            z = polished
    return z, sweep, success, message


def polish(problem: Problem, z: np.ndarray, lo: np.ndarray, hi: np.ndarray, tol: float = 1e-9):
    """Exact minimiser for the active set that z suggests, or None if it fails the KKT test.

    Variables at a bound stay there; the others solve their linear KCL equations exactly. The
    result is accepted only if it is feasible and every active bound pushes the right way.
    """
    B, n = z.shape
    scale = 1.0 + np.abs(z).max()
    at_lo = np.isfinite(lo) & (z <= lo + tol * scale)
    at_hi = np.isfinite(hi) & (z >= hi - tol * scale)
    active = (at_lo | at_hi).ravel()
    H = sp.csr_matrix(problem.linear_hessian)
    c = problem.linear_gradient(np.zeros((B, n)))
    big = sp.kron(sp.identity(B, format="csr"), H, format="csr")
    keep = sp.diags((~active).astype(float))
    system = keep @ big + sp.diags(active.astype(float))
    target = np.where(at_lo, lo, np.where(at_hi, hi, 0.0)).ravel()
    rhs = np.where(active, target, -c.ravel())
    try:
        x = spla.spsolve(sp.csc_matrix(system), rhs).reshape(B, n)
    except RuntimeError:
        return None
    if not np.all(np.isfinite(x)):
        return None
    grad = x @ H + c
    slack = 1e-9 * scale
    feasible = np.all(x >= lo - slack) and np.all(x <= hi + slack)
    gtol = 1e-9 * (np.abs(c).max() + 1e-300)
    # At a lower bound the energy must rise going up (grad >= 0); at an upper bound, going down.
    kkt = np.all(grad[at_lo] >= -gtol) and np.all(grad[at_hi] <= gtol)
    return np.clip(x, lo, hi) if feasible and kkt else None
