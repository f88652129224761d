"""Ideal-diode networks as one convex QP, handed to Clarabel (interior point, sparse).

minimise 1/2 z^T H z + c^T z subject to Mx z + offset <= 0 (every ideal diode reverse- or
zero-biased). The batch is one block-diagonal QP, so one solver call serves all samples.
Clarabel is a maintained, accurate interior-point solver with a sparse KKT factorisation;
its answer is then polished: the diodes it finds conducting become equalities and the KKT
system is solved exactly, accepted only if the multipliers come out non-negative.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..circuit.energy import Problem
from ..errors import SolverError


def qp(problem: Problem, x0=None, tol: float = 1e-10, maxiter: int = 200, callback=None):
    B, n = problem.batch, problem.n_free
    if problem.has_diodes:
        raise SolverError("the qp solver handles ideal diodes only; this circuit has exponential "
                          "diodes (use --solver newton, or mark the model *@ ideal)")
    if n == 0:
        return np.zeros((B, 0)), 0, True, "no free node"
    import clarabel

    eye = sp.identity(B, format="csc")
    H = sp.csc_matrix(problem.linear_hessian)
    c = problem.linear_gradient(np.zeros((B, n)))
    scale = 1.0 / max(H.diagonal().max(), 1e-300)  # conductances ~1e-3 S: rescale to O(1)
    P = sp.triu(sp.kron(eye, H * scale), format="csc")
    q = (c * scale).ravel()
    A = sp.csc_matrix(sp.kron(eye, problem.Mx))
    b = (-problem.offset_x).ravel()
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    settings.max_iter = maxiter
    settings.tol_gap_abs = settings.tol_gap_rel = settings.tol_feas = tol
    settings.tol_ktratio = 1e-8
    solution = clarabel.DefaultSolver(P, q, A, b, [clarabel.NonnegativeConeT(len(b))], settings).solve()
    status = str(solution.status)
    z = np.asarray(solution.x).reshape(B, n)
    if "Infeasible" in status:
        return z, solution.iterations, False, "conflicting constraints: the ideal diodes cannot all be satisfied"
    if "Solved" not in status:
        return z, solution.iterations, False, f"QP solver stopped: {status}"
    polished = polish_active_set(problem, z, H, c)
    if callback is not None:
        try:
            callback(problem.energy(z if polished is None else polished))
        except StopIteration:
            pass
    if polished is None:
        return z, solution.iterations, True, f"QP {status} (not polished)"
    return polished, solution.iterations, True, "QP solved, active set polished exactly"


def polish_active_set(problem: Problem, z, H, c, tol: float = 1e-7):
    """Solve the KKT system with conducting diodes as equalities; None if the result is not optimal."""
    B, n = z.shape
    v = problem._branch(problem.Mx, problem.offset_x, z)
    scale = 1.0 + np.abs(problem.potentials(z)).max()
    active = v > -tol * scale  # (B, m)
    eye = sp.identity(B, format="csr")
    A = sp.kron(eye, problem.Mx, format="csr")[active.ravel()]
    kkt = sp.bmat([[sp.kron(eye, H), A.T], [A, None]], format="csc")
    rhs = np.concatenate([-c.ravel(), -problem.offset_x.ravel()[active.ravel()]])
    try:
        x = spla.spsolve(kkt, rhs)
    except RuntimeError:
        return None
    if not np.all(np.isfinite(x)):
        return None
    z_new, multipliers = x[:B * n].reshape(B, n), x[B * n:]
    v_new = problem._branch(problem.Mx, problem.offset_x, z_new)
    feasible = np.all(v_new <= 1e-9 * scale)
    dual_ok = np.all(multipliers >= -1e-9 * (np.abs(c).max() + 1e-300))
    return z_new if feasible and dual_ok else None
