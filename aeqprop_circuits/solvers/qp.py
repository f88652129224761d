"""Ideal-diode networks as one convex QP, handed to Clarabel (interior point, sparse).

minimise 1/2 z^T H z + c^T z subject to Mx z + offset <= 0 (every ideal diode reverse- or
zero-biased). The batch is one block-diagonal QP, so one solver call serves all samples.
Clarabel is a maintained, accurate interior-point solver with a sparse KKT factorisation;
its answer is then polished: the diodes it finds conducting become equalities and the KKT
system is solved exactly, accepted only if the multipliers come out non-negative.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.optimize
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from aeqprop_circuits.circuit.energy import Problem
from aeqprop_circuits.errors import CircuitError, SolverError
from aeqprop_circuits.solvers.result import keep_going


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
    if "Infeasible" in status:  # no operating point exists: a circuit error, as in `box_bounds`
        raise CircuitError("conflicting constraints: the ideal diodes cannot all be reverse- or "
                           "zero-biased at once (sources force some diode forward)")
    if "Solved" not in status:
        return z, solution.iterations, False, f"QP solver stopped: {status}"
    # Interior-point iterates: a diode conducts when its multiplier exceeds its slack (both in
    # volts after the scaling above).
    conducting = (np.asarray(solution.z) > np.asarray(solution.s)).reshape(B, -1)
    polished = polish_active_set(problem, z, H, c, guess=conducting)
    if callback is not None:
        keep_going(callback, problem.energy(z if polished is None else polished))  # the last report: nothing to stop
    if polished is None:
        return z, solution.iterations, True, f"QP {status} (not polished)"
    return polished, solution.iterations, True, "QP solved, active set polished exactly"


def polish_active_set(problem: Problem, z, H, c, guess=None, tol: float = 1e-7, rounds: int = 20):
    """Solve the KKT system with conducting diodes as equalities; None if no optimal set is found.

    Near a knee (a diode about to conduct: multiplier and slack both ~0) an interior-point
    answer is only accurate to about the square root of its tolerance (~1e-5 V), so which
    diodes conduct is a guess (`guess`, (B, m) bool, else the diodes within `tol` of
    conducting). Primal-dual active-set rounds correct it: diodes that come out forward-biased
    join the set, diodes with a negative multiplier leave it, until the KKT conditions hold.
    """
    B, n = z.shape
    v = problem._branch(problem.Mx, problem.offset_x, z)
    scale = 1.0 + np.abs(problem.potentials(z)).max()
    active = (v > -tol * scale if guess is None else np.asarray(guess, dtype=bool)).ravel().copy()
    eye = sp.identity(B, format="csr")
    H_batch = sp.csc_matrix(sp.kron(eye, H))
    A_all = sp.kron(eye, problem.Mx, format="csr")
    bound = -problem.offset_x.ravel()  # A_all z <= bound
    v_tol = 1e-9 * scale
    i_tol = 1e-9 * (np.abs(c).max() + 1e-300)
    for _ in range(rounds):
        A = A_all[active]
        if A.shape[0]:
            kkt = sp.bmat([[H_batch, A.T], [A, None]], format="csc")
            rhs = np.concatenate([-c.ravel(), bound[active]])
        else:
            kkt, rhs = H_batch, -c.ravel()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", spla.MatrixRankWarning)
                x = spla.spsolve(kkt, rhs)
        except RuntimeError:
            return None
        if not np.all(np.isfinite(x)):
            # Dependent constraints (parallel or anti-parallel ideal diodes): the potentials are
            # still unique but the multipliers are not; accept if some of them are non-negative.
            if kkt.shape[0] > 4000:
                return None
            x = np.linalg.lstsq(kkt.toarray(), rhs, rcond=None)[0]
            z_new = x[:B * n].reshape(B, n)
            forward = ~active & (A_all @ z_new.ravel() - bound > v_tol)
            if forward.any():
                active |= forward
                continue
            pull = -(H_batch @ z_new.ravel() + c.ravel())  # = A^T multipliers at a KKT point
            _, mismatch = scipy.optimize.nnls(A.T.toarray(), pull)
            return z_new if mismatch <= i_tol * np.sqrt(len(pull)) else None
        z_new = x[:B * n].reshape(B, n)
        multipliers = np.zeros(len(active))
        multipliers[active] = x[B * n:]
        forward = ~active & (A_all @ z_new.ravel() - bound > v_tol)
        reverse = active & (multipliers < -i_tol)
        if not forward.any() and not reverse.any():
            return z_new
        active = (active | forward) & ~reverse
    return None
