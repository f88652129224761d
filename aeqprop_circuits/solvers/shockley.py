"""Block Newton for layered networks of resistors and Shockley diodes (ngspice's junction, RS = 0).

A network of one hidden layer h and an output layer o whose diodes each join a layer node to a
fixed node (a rail or a source), as the deep resistive network with exponential diodes is:
the co-content is

    E(h, o) = 1/2 Dh h^2 - ch h - h W o + 1/2 Do o^2 - co o + sum_d J(v_d) [+ the nudge]

(`solvers/layered.py`'s blocks, J the JUNCTION stamp's co-content, v_d = +-(node - fixed)). Its
Hessian is block-structured: diagonal in each layer (Dh + J''(v) on h, Do + J''(v) on o) and
W between them, so the Newton step is one O x O Schur complement per sample,

    S = diag(Do + g_o) [+ beta A^T A] - W^T diag(1 / (Dh + g_h)) W,

then a division on the hidden layer: O(H O^2) work per iteration and nothing of the size of the
input block after assembly. The globalisation is `newton`'s: the stiff-resistor start, SPICE's
junction limiting as a step length, an Armijo line search on the co-content per sample, and the
last step (below `vtol` volts per node) taken whole. So both reach the same operating point, and
that of ngspice's `.op` on the same netlist.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aeqprop_circuits.circuit.elements import JUNCTION, NUDGE
from aeqprop_circuits.solvers.result import keep_going

ARMIJO = 1e-4
STALL_VTOL = 1e-9  # V (relative above 1 V), as `newton`'s
STIFF = 100.0  # the start's junctions: resistors of STIFF times the largest conductance


@dataclass(frozen=True, eq=False)
class Junctions:
    """Diodes from layer nodes to fixed nodes, per layer: (layer, position in the layer, fixed position,
    sign (+1: anode on the layer, -1: cathode), IS (A), N Vt (V), diode index)."""

    layer: np.ndarray
    position: np.ndarray
    fixed: np.ndarray
    sign: np.ndarray
    isat: np.ndarray
    nvt: np.ndarray
    index: np.ndarray


def junction_terms(V: list, fixed: np.ndarray, junctions: Junctions, gmin: float, layer: int):
    """For layer `layer`: (content (B,), current leaving each node (B, n), conductance (B, n)) of its
    junctions at layer potentials V[layer] (B, n) and fixed potentials (B, n_fixed)."""
    mine = junctions.layer == layer
    pos, fpos, sign = junctions.position[mine], junctions.fixed[mine], junctions.sign[mine]
    isat, nvt = junctions.isat[mine], junctions.nvt[mine]
    B, n = V[layer].shape
    v = sign * (V[layer][:, pos] - fixed[:, fpos])
    content = JUNCTION.content(v, isat, nvt, gmin).sum(1)
    current = np.zeros((B, n))
    conductance = np.zeros((B, n))
    leaving = sign * JUNCTION.current(v, isat, nvt, gmin)
    slope = JUNCTION.conductance(v, isat, nvt, gmin)
    if len(np.unique(pos)) == len(pos):
        current[:, pos] = leaving
        conductance[:, pos] = slope
    else:
        np.add.at(current.T, pos, leaving.T)
        np.add.at(conductance.T, pos, slope.T)
    return content, current, conductance


class ShockleyNewton:
    """The block Newton iteration on (h, o) for `layered` (one hidden layer, junctions to fixed nodes)."""

    def __init__(self, objective, junctions: Junctions, fixed: np.ndarray, gmin: float):
        o = objective  # layered.OutputObjective: blocks W (H, O), Dh, Do, ch, co, nudge terms, node orders
        self.o = o
        self.junctions, self.fixed, self.gmin = junctions, fixed, gmin
        self.H, self.O = len(o.Dh), len(o.Do)
        # junction positions in the objective's orders (W's rows for h, its columns for o)
        self.order = []
        for perm in (o.rows, o.cols):
            inverse = np.empty(len(perm), dtype=np.int64)
            inverse[perm] = np.arange(len(perm))
            self.order.append(inverse)
        j = junctions
        position = j.position.copy()
        for layer in (0, 1):
            position[j.layer == layer] = self.order[layer][j.position[j.layer == layer]]
        self.j = Junctions(j.layer, position, j.fixed, j.sign, j.isat, j.nvt, j.index)
        self.vcrit = j.nvt * np.log(j.nvt / (np.sqrt(2.0) * j.isat))

    def terms(self, h, o):
        """(energy (B,), gradient on h, on o, Hessian diagonals on h, on o)."""
        ob = self.o
        Wo = o @ ob.W.T
        e_h, i_h, g_h = junction_terms([h, o], self.fixed, self.j, self.gmin, 0)
        e_o, i_o, g_o = junction_terms([h, o], self.fixed, self.j, self.gmin, 1)
        energy = (0.5 * ob.Dh * h * h - ob.ch * h - h * Wo).sum(1) + (0.5 * ob.Do * o * o - ob.co * o).sum(1) \
            + e_h + e_o
        grad_h = ob.Dh * h - ob.ch - Wo + i_h
        grad_o = ob.Do * o - ob.co - h @ ob.W + i_o
        if ob.beta:
            out = o @ ob.A.T + ob.offset
            energy = energy + NUDGE.content(out, ob.beta, ob.target).sum(1)
            grad_o = grad_o + NUDGE.current(out, ob.beta, ob.target) @ ob.A
        return energy, grad_h, grad_o, ob.Dh + g_h, g_o

    def change(self, h, o, dh, do):
        """E(h + dh, o + do) - E(h, o) (B,) summed term by term (as `Problem.energy_change`), so that it
        keeps its sign for steps whose energy difference is below the energy's rounding."""
        ob, j = self.o, self.j
        Wdo = do @ ob.W.T
        lin_h = ob.Dh * h - ob.ch - o @ ob.W.T
        lin_o = ob.Do * o - ob.co - h @ ob.W
        total = (lin_h * dh).sum(1) + (lin_o * do).sum(1) \
            + 0.5 * ((ob.Dh * dh * dh).sum(1) + (ob.Do * do * do).sum(1)) - (dh * Wdo).sum(1)
        for layer, (x, dx) in enumerate(((h, dh), (o, do))):
            mine = j.layer == layer
            if mine.any():
                v = j.sign[mine] * (x[:, j.position[mine]] - self.fixed[:, j.fixed[mine]])
                dv = j.sign[mine] * dx[:, j.position[mine]]
                total = total + JUNCTION.change(v, dv, j.isat[mine], j.nvt[mine], self.gmin).sum(1)
        if ob.beta:
            out = o @ ob.A.T + ob.offset
            total = total + NUDGE.change(out, do @ ob.A.T, ob.beta, ob.target).sum(1)
        return total

    def step(self, grad_h, grad_o, P, g_o):
        """The Newton step (dh, do) through the Schur complement on the outputs."""
        ob = self.o
        S = ob.base[None] + (np.eye(self.O)[None] * g_o[:, None, :]) - (ob.W.T[None] * (1.0 / P)[:, None, :]) @ ob.W
        rhs = -(grad_o + (grad_h / P) @ ob.W)
        do = np.linalg.solve(S, rhs[..., None])[..., 0]
        dh = (-grad_h + do @ ob.W.T) / P
        return dh, do

    def start(self):
        """Each junction replaced by a stiff resistor to its fixed node: one linear block solve (newton's start)."""
        ob, j = self.o, self.j
        B = len(ob.ch)
        stiff = STIFF * max(float(ob.W.max(initial=0.0)), float(np.max(ob.Dh, initial=0.0)), 1e-300)
        P, Q = np.tile(ob.Dh, (B, 1)), np.zeros((B, self.O))
        ch, co = ob.ch.copy(), ob.co.copy()
        for layer, (diag, rhs) in enumerate(((P, ch), (Q, co))):
            mine = j.layer == layer
            np.add.at(diag.T, j.position[mine], stiff)
            np.add.at(rhs.T, j.position[mine], (stiff * self.fixed[:, j.fixed[mine]]).T)
        zero_h, zero_o = np.zeros((B, self.H)), np.zeros((B, self.O))
        grad_h = -ch
        grad_o = -co
        if ob.beta:
            grad_o = grad_o + NUDGE.current(zero_o @ ob.A.T + ob.offset, ob.beta, ob.target) @ ob.A
        dh, do = self.step(grad_h, grad_o, P, Q)
        return zero_h + dh, zero_o + do

    def limit(self, h, o, dh, do):
        """Per-sample step length damping large forward junction steps (`newton._junction_limit`)."""
        j = self.j
        alpha = np.ones(len(h))
        for layer, (x, dx) in enumerate(((h, dh), (o, do))):
            mine = j.layer == layer
            if not mine.any():
                continue
            v = j.sign[mine] * (x[:, j.position[mine]] - self.fixed[:, j.fixed[mine]])
            dv = j.sign[mine] * dx[:, j.position[mine]]
            nvt = j.nvt[mine]
            big = (v + dv > self.vcrit[mine]) & (dv > 2.0 * nvt)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(big, nvt * np.log1p(dv / nvt) / dv, 1.0)
            alpha = np.minimum(alpha, ratio.min(axis=1))
        return alpha

    def solve(self, vtol: float, maxiter: int, callback=None):
        """(h, o, iterations, success, message)."""
        h, o = self.start()
        energy, grad_h, grad_o, P, g_o = self.terms(h, o)
        B = len(h)
        for iteration in range(1, maxiter + 1):
            dh, do = self.step(grad_h, grad_o, P, g_o)
            if not (np.isfinite(dh).all() and np.isfinite(do).all()):
                return h, o, iteration, False, "singular Jacobian: the circuit has no unique operating point"
            if np.all(np.abs(dh) <= vtol * (1.0 + np.abs(h))) and np.all(np.abs(do) <= vtol * (1.0 + np.abs(o))):
                h, o = h + dh, o + do  # converged: the energy is flat to rounding here, take the step whole
                if callback is not None and not keep_going(callback, self.terms(h, o)[0]):
                    return h, o, iteration, False, "stopped by callback"
                return h, o, iteration, True, "converged: block Newton step below tolerance"
            alpha = self.limit(h, o, dh, do)
            slope = (grad_h * dh).sum(1) + (grad_o * do).sum(1)
            pending = np.ones(B, dtype=bool)
            for _ in range(60):
                th, to = h + alpha[:, None] * dh, o + alpha[:, None] * do
                e_t, gh_t, go_t, P_t, g_t = self.terms(th, to)
                delta = self.change(h, o, alpha[:, None] * dh, alpha[:, None] * do)
                ok = np.where(np.isfinite(energy), delta <= ARMIJO * alpha * slope, e_t <= energy)
                ok &= np.isfinite(e_t)
                accept = pending & ok
                h[accept], o[accept], energy[accept] = th[accept], to[accept], e_t[accept]
                grad_h[accept], grad_o[accept], P[accept], g_o[accept] = gh_t[accept], go_t[accept], P_t[accept], \
                    g_t[accept]
                pending &= ~ok
                if not pending.any():
                    break
                alpha[pending] *= 0.5
            if callback is not None and not keep_going(callback, energy):
                return h, o, iteration, False, "stopped by callback"
            small = np.all(np.abs(dh) <= STALL_VTOL * (1.0 + np.abs(h))) and \
                np.all(np.abs(do) <= STALL_VTOL * (1.0 + np.abs(o)))
            if pending.any() and small:
                # No step length lowers the co-content of some sample and the Newton step is below
                # STALL_VTOL: accepted when KCL holds to rounding (as `newton` does), else iterated on.
                scale = max(float(np.abs(self.o.ch).max(initial=0.0)), float(np.abs(self.o.co).max(initial=0.0)),
                            1e-300)
                worst = max(float(np.abs(grad_h).max(initial=0.0)), float(np.abs(grad_o).max(initial=0.0)))
                if worst <= 1e-12 * scale:
                    return h, o, iteration, True, ("converged: KCL holds to rounding, the energy resolves no "
                                                   "further step")
        return h, o, maxiter, False, f"no convergence in {maxiter} block Newton iterations"

