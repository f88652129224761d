"""Damped Newton on KCL with a backtracking line search on the co-content.

The co-content is strictly convex for monotone elements, so a Newton step is a descent
direction and the line search (per sample: each sample of the batch has its own step
length) makes every iteration lower the energy. Convergence is quadratic near the solution;
we stop when the full Newton step is below `vtol` volts, so the returned potentials are
accurate to about machine precision.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from aeqprop_circuits.circuit.energy import Problem
from aeqprop_circuits.errors import SolverError
from aeqprop_circuits.solvers.result import keep_going

ARMIJO = 1e-4


def _start(problem: Problem) -> np.ndarray:
    """Solution of the circuit with each junction replaced by a stiff resistor.

    Junctions then start near 0 V, below their operating voltage: Newton on an exponential
    converges fast from below once its upward steps are damped (`_junction_limit`), and only
    slowly (about n Vt per iteration) from far above.
    """
    B, n = problem.batch, problem.n_free
    zero = np.zeros((B, n))
    if n == 0:
        return zero
    H, rhs = problem.linear_hessian, -problem.linear_gradient(zero)
    if problem.has_diodes:
        typical = 100.0 * (problem.g.max() if len(problem.g) else 1e-3)
        H = H + typical * (problem.Md.T @ problem.Md)
        rhs = rhs - np.asarray((typical * problem.offset_d) @ problem.Md)
    z = spla.splu(sp.csc_matrix(H)).solve(rhs.T).T
    return np.where(np.isfinite(problem.energy(z))[:, None], z, 0.0)


STALL_VTOL = 1e-8  # V (relative above 1 V): a Newton step this small that no line search can take is accepted


def newton(problem: Problem, x0=None, vtol: float = 1e-12, maxiter: int = 200, callback=None):
    B, n = problem.batch, problem.n_free
    if problem.has_ideal_diodes:  # their constraints are not in the co-content Newton descends
        raise SolverError("the newton solver handles smooth elements only; this circuit has ideal diodes "
                          "(use --solver coordinate or qp)")
    try:
        z = _start(problem) if x0 is None else np.array(x0, dtype=np.float64).reshape(B, n)
    except RuntimeError:  # a singular start system: the Newton steps below report it per iteration
        z = np.zeros((B, n))
    if n == 0:
        return z, 0, True, "no free node"
    energy = problem.energy(z)
    if not problem.has_diodes:  # quadratic: one factorisation serves the whole batch, one step
        try:
            step = spla.splu(problem.linear_hessian).solve(-problem.gradient(z).T).T
        except RuntimeError:
            return z, 0, False, "singular conductance matrix: the circuit has no unique operating point"
        z = z + step
        if callback is not None:
            keep_going(callback, problem.energy(z))
        return z, 1, True, "linear circuit solved by one factorisation"
    for iteration in range(1, maxiter + 1):
        grad = problem.gradient(z)
        step = spla.spsolve(problem.hessian(z), -grad.ravel()).reshape(B, n)
        if not np.all(np.isfinite(step)):
            return z, iteration, False, "singular Jacobian: the circuit has no unique operating point"
        size = np.abs(step).max()
        if np.all(np.abs(step) <= vtol * (1.0 + np.abs(z))):  # per node: one node at 1e8 V excuses no other
            # Converged. The co-content is flat to rounding here, so a line search would reject
            # this last step on noise and leave the residual ~1e3 times larger: take it whole.
            z = z + step
            if callback is not None and not keep_going(callback, problem.energy(z)):
                return z, iteration, False, "stopped by callback"
            return z, iteration, True, "converged: Newton step below tolerance"
        alpha = _junction_limit(problem, z, step)
        slope = (grad * step).sum(axis=1)  # < 0: a descent direction
        pending = np.ones(B, dtype=bool)
        for _ in range(60):
            trial = z + alpha[:, None] * step
            e_trial = problem.energy(trial)
            # Armijo on the energy change summed term by term: a difference of two energies
            # is rounding noise once steps are below ~1e-8 V, and the search would stall there.
            change = problem.energy_change(z, alpha[:, None] * step)
            ok = np.where(np.isfinite(energy), change <= ARMIJO * alpha * slope, e_trial <= energy)
            accepted = pending & ok
            z[accepted] = trial[accepted]
            energy[accepted] = e_trial[accepted]
            pending &= ~ok
            if not pending.any():
                break
            alpha[pending] *= 0.5
        if callback is not None and not keep_going(callback, energy):
            return z, iteration, False, "stopped by callback"
        if pending.any() and np.all(np.abs(step) <= STALL_VTOL * (1.0 + np.abs(z))) and _stationary(problem, z, grad):
            # No step length lowers the energy of some sample, KCL holds to rounding and the
            # remaining Newton step is below STALL_VTOL (at a node held only by reverse-biased
            # junctions it is KCL's rounding over their ~1e-13 S, up to a few nV): the energy
            # cannot resolve it, and iterating would repeat it until maxiter.
            return z, iteration, True, "converged: KCL holds to rounding, the energy resolves no further step"
    return z, maxiter, False, f"no convergence in {maxiter} Newton iterations (last step {size:.2e} V)"


def _stationary(problem: Problem, z, grad, rtol: float = 1e-12) -> bool:
    """Whether the KCL residual of every sample is below rtol times the largest branch current."""
    currents = [np.abs(c).max(initial=0.0) for c in problem.branch_currents(z).values()]
    return bool(np.abs(grad).max() <= rtol * max(currents, default=0.0))


def _junction_limit(problem: Problem, z, step) -> np.ndarray:
    """Per-sample step length that damps large forward steps of junction voltages logarithmically.

    SPICE's pnjlim idea: a junction driven above its critical voltage by more than 2 n Vt moves
    only n Vt log(1 + dv / n Vt). Applied as a step length, so the step stays a Newton direction.
    """
    v = problem._branch(problem.Md, problem.offset_d, z)
    dv = np.asarray((problem.Md @ step.T).T)
    nvt = problem.nvt
    vcrit = nvt * np.log(nvt / (np.sqrt(2.0) * problem.isat))
    big = (v + dv > vcrit) & (dv > 2.0 * nvt)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(big, nvt * np.log1p(dv / nvt) / dv, 1.0)
    return ratio.min(axis=1) if ratio.size else np.ones(len(z))

