"""Mutation check of the physics and the learning rules: every sign flip or factor of 2 must fail a test.

    python scripts/mutate.py              # all mutants: a markdown table, exit status 1 if one survived
    python scripts/mutate.py -k 'junction|nudge'  # the mutants whose name matches a regular expression
    python scripts/mutate.py --list       # the mutants, without running them

The mutants (`MUTANTS`) cover each co-content, current, conductance, nudge-energy and dE/dtheta
formula of the element table and of every path that computes circuit physics: the reference
`Problem`, the layered solver, the DRN and signed-DRN systems, the replica circuits of the
regression study. A mutant names a statement by a piece of its text (unique in its file) and
either `negate`s or `double`s the statement's value (the expression after `return`, `=` or
`+=`), or replaces a piece of the line it names (a term's sign, a factor).

The working tree is copied to a temporary directory (so nothing another process imports is
ever patched); the tests of `TESTS` that pass there unmutated are collected first, then each
mutant is written into the copy and those tests run with -x, the shared property tests
(tests/test_fast_paths.py) on their own first: the first failure kills it.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ("tests/test_fast_paths.py", "tests/test_learning.py", "tests/test_aeqprop_in_place.py",
         "tests/test_hopfield.py", "tests/test_cpl_counterexample.py", "tests/test_solvers_analytic.py",
         "tests/test_layered.py", "tests/test_drn.py",
         "tests/test_drn_signed.py", "tests/test_drn_paper_circuit.py", "tests/test_circuit_regression.py",
         "tests/test_energy_system.py", "tests/test_solvers_properties.py", "tests/test_streaming.py",
         "tests/test_narrow.py", "tests/test_drn_panels.py")
PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--hypothesis-seed=0",
          "-W", "ignore::DeprecationWarning"]


@dataclass(frozen=True)
class Mutant:
    path: str  # relative to the repository
    where: str  # a piece of the statement's text, unique in the file
    change: str | tuple[str, str]  # "negate", "double", or (old, new) on the first line of `where`

    @property
    def how(self) -> str:
        return self.change if isinstance(self.change, str) else f"`{self.change[0]}` -> `{self.change[1]}`"

    @property
    def name(self) -> str:
        return f"{Path(self.path).name}: {self.where.strip().splitlines()[0][:70]} [{self.how}]"

    def line(self, source: str) -> int:
        return source[:source.index(self.where)].count("\n") + 1


def _mutants() -> list[Mutant]:
    out = []

    def add(path, where, *changes):
        out.extend(Mutant(path, where, change) for change in changes or ("negate", "double"))

    # the element table
    table = "aeqprop_circuits/circuit/elements.py"
    add(table, "return g * resistor_parameter_gradient(v, g)")
    add(table, "return g * v")
    add(table, "return np.broadcast_to(g, np.broadcast_shapes(np.shape(v), np.shape(g)))")
    add(table, "return g * dv * (v + 0.5 * dv)", "negate", "double", ("v + 0.5 * dv", "v - 0.5 * dv"))
    add(table, "return 0.5 * v * v")
    add(table, "return isat * (nvt * np.expm1(v / nvt) - v) + resistor_content(v, gmin)", "negate", "double",
        ("- v)", "+ v)"), ("- v)", "- 2 * v)"), ("+ resistor_content", "- resistor_content"))
    add(table, "return isat * np.expm1(v / nvt) + resistor_current(v, gmin)", "negate", "double",
        ("+ resistor_current", "- resistor_current"))
    add(table, "return isat * np.exp(v / nvt) / nvt + gmin", "negate", "double", ("+ gmin", "- gmin"))
    add(table, "return isat * (nvt * np.exp(v / nvt) * np.expm1(dv / nvt) - dv) + resistor_change(v, dv, gmin)",
        "negate", "double", ("- dv)", "+ dv)"), ("+ resistor_change", "- resistor_change"))
    add(table, "return np.where(np.asarray(v) > 0.0, np.inf, 0.0)", ("> 0.0", "< 0.0"))
    add(table, "return current * v")
    add(table, "return np.broadcast_to(current, np.broadcast_shapes(np.shape(v), np.shape(current)))")
    add(table, "return current * dv")
    add(table, "return np.asarray(v, dtype=float)")
    add(table, "return c * cubic_parameter_gradient(v, c)")
    add(table, "return c * v * v * v")
    add(table, "return 3.0 * c * v * v")
    add(table, "return c * dv * (v * v * v + dv * (1.5 * v * v + dv * (v + 0.25 * dv)))", "negate", "double",
        ("1.5 * v * v", "3.0 * v * v"), ("v + 0.25 * dv", "v - 0.25 * dv"))
    add(table, "return 0.25 * (v * v) * (v * v)")
    add(table, "return resistor_content(v - target, beta)", "negate", "double", ("v - target", "v + target"))
    add(table, "return resistor_current(v - target, beta)", "negate", "double", ("v - target", "v + target"))
    add(table, "return resistor_conductance(v - target, beta)")
    add(table, "return resistor_change(v - target, dv, beta)", "negate", "double", ("v - target", "v + target"))
    add(table, "return resistor_parameter_gradient(v - target, beta)", "negate", "double",
        ("v - target", "v + target"))

    # the reference
    energy = "aeqprop_circuits/circuit/energy.py"
    for line in ("e = e + JUNCTION.content", "e = e + CURRENT_SOURCE.content", "e = e + RESISTOR.content",
                 "change = change + term(JUNCTION", "change = change + term(CURRENT_SOURCE",
                 "change = change + term(RESISTOR", "grad = grad + JUNCTION.current",
                 "grad = grad + RESISTOR.current"):
        lhs = line.split(" = ")[0]
        add(energy, line, (f"= {lhs} + ", f"= {lhs} - "), (f"= {lhs} + ", f"= {lhs} + 2 * "))
    add(energy, "e = RESISTOR.content(self._branch(self.Mr")
    add(energy, "change = term(RESISTOR, self.Mr")
    add(energy, "grad = RESISTOR.current(self._branch(self.Mr", "negate", "double",
        ("+ self.linear_i", "- self.linear_i"))
    add(energy, "self.linear_i = CURRENT_SOURCE.current(0.0, self.i_value) @ self.Mi")
    add(energy, '"resistors": RESISTOR.parameter_gradient(vr, self.g)',
        ('"resistors": RESISTOR', '"resistors": -RESISTOR'), ('"resistors": RESISTOR', '"resistors": 2 * RESISTOR'))
    add(energy, '"current_sources": CURRENT_SOURCE.parameter_gradient',
        ('"current_sources": CURRENT', '"current_sources": -CURRENT'),
        ('"current_sources": CURRENT', '"current_sources": 2 * CURRENT'))
    add(energy, "H = self.Mr.T @ sp.diags(RESISTOR.conductance(0.0, self.g)) @ self.Mr")
    add(energy, "H = H + RESISTOR.conductance(0.0, self.gmin)", ("H + RES", "H - RES"), ("H + RES", "H + 2 * RES"))
    add(energy, "return sp.csc_matrix(self.network_hessian + RESISTOR", ("hessian + RES", "hessian - RES"),
        ("hessian + RES", "hessian + 2 * RES"))
    add(energy, "gd = JUNCTION.conductance(vd, *self.junction) - self.gmin", ("- self.gmin", "+ self.gmin"),
        ("gd = JUNCTION", "gd = 2 * JUNCTION"))
    add(energy, 'out = {"resistors": RESISTOR.current', ('{"resistors": RES', '{"resistors": -RES'),
        ('{"resistors": RES', '{"resistors": 2 * RES'))
    add(energy, 'out["diodes"] = JUNCTION.current', ("= JUNCTION", "= -JUNCTION"), ("= JUNCTION", "= 2 * JUNCTION"))
    add(energy, "leaving = leaving + RESISTOR.current", ("leaving + RES", "leaving - RES"),
        ("leaving + RES", "leaving + 2 * RES"))

    # the layered solver
    layered = "aeqprop_circuits/solvers/layered.py"
    add(layered, "D[blk.b][blk.cols] += col_sum\n            c[blk.b][:, blk.cols] += injected")
    add(layered, "c[blk.b][:, blk.cols] += injected")
    add(layered, "D[blk.a][blk.rows] += row_sum\n            injected")
    add(layered, "c[blk.a][:, blk.rows] += injected")
    add(layered, "D[blk.a][blk.rows] += row_sum\n            D[blk.b]")
    add(layered, "D[blk.b][blk.cols] += col_sum\n            couplings")
    add(layered, "e += 0.5 * (row_sum[0].sum(1) + (Vb * Vb) @ col_sum) - (injected * Vb).sum(1)",
        ("e += 0.5", "e += 1.0"), ("- (injected", "+ (injected"))
    add(layered, "e += 0.5 * ((Va * Va) @ row_sum + (Vb * Vb) @ col_sum) - cross", ("e += 0.5", "e += 1.0"),
        ("- cross", "+ cross"))
    add(layered, "cross = (injected * Vb).sum(1)")
    add(layered, "cross = (injected * Va).sum(1)")
    add(layered, "cross = ((Va @ blk.weights(g)) * Vb).sum(1)")
    add(layered, "e += NUDGE.content(_outputs(full, circuit)")
    add(layered, "pulled = NUDGE.current(_outputs(full, circuit)")
    add(layered, "grad = blocks.D[k] * V[k] - blocks.c[k]", ("blocks.D[k] * V[k]", "2 * blocks.D[k] * V[k]"),
        ("- blocks.c[k]", "+ blocks.c[k]"), ("- _neighbour_sum", "+ _neighbour_sum"))
    add(layered, "np.add.at(extra.T, p, pulled.T)", ("pulled.T", "2 * pulled.T"))
    add(layered, "np.add.at(extra.T, n, -pulled.T)", ("-pulled.T", "pulled.T"))
    add(layered, "value = (0.5 * self.Do * o * o - self.co * o).sum(1)", ("(0.5 * self.Do", "(1.0 * self.Do"),
        ("- self.co * o", "+ self.co * o"))
    add(layered, "+ (0.5 * self.Dh * h * h - self.ch * h - h * (o @ self.W.T)).sum(1)",
        ("(0.5 * self.Dh", "(1.0 * self.Dh"), ("- self.ch * h", "+ self.ch * h"), ("- h * (o", "+ h * (o"))
    add(layered, "gradient = self.Do * o - self.co - h @ self.W", ("self.Do * o", "2 * self.Do * o"),
        ("- self.co", "+ self.co"), ("- h @ self.W", "+ h @ self.W"))
    add(layered, "value = value + NUDGE.content(out", ("value + NUDGE", "value - NUDGE"),
        ("value + NUDGE", "value + 2 * NUDGE"))
    add(layered, "gradient = gradient + NUDGE.current(out", ("gradient + NUDGE", "gradient - NUDGE"),
        ("gradient + NUDGE", "gradient + 2 * NUDGE"))
    add(layered, "self.base = np.diag(self.Do) + NUDGE.conductance", ("+ NUDGE", "- NUDGE"), ("+ NUDGE", "+ 2 * NUDGE"))
    add(layered, "return np.clip((self.ch + o @ self.W.T) / self.Dh", ("self.ch + o", "self.ch - o"),
        ("/ self.Dh", "/ (2 * self.Dh)"))

    # the builder's DRN
    drn = "aeqprop_circuits/systems/drn/system.py"
    add(drn, "e += 0.5 * ((Va * Va) @ W.sum(axis=1) + (Vb * Vb) @ W.sum(axis=0)) - ((Va @ W) * Vb).sum(axis=1)",
        ("e += 0.5", "e += 1.0"), (") - ((Va @ W)", ") + ((Va @ W)"))
    add(drn, "e += (RESISTOR.content(layer - 1.0", ("layer - 1.0", "layer + 1.0"), ("e += (", "e -= ("),
        ("e += (", "e += 2 * ("))
    add(drn, "+ RESISTOR.content(layer + 1.0", ("layer + 1.0", "layer - 1.0"), ("+ RESISTOR", "- RESISTOR"))
    add(drn, "e += self._junction_content(layer).sum(axis=1)", ("e +=", "e -="), ("e += self", "e += 2 * self"))
    add(drn, "e += NUDGE.content(self._outputs_of(V[-1])", ("e +=", "e -="), ("e += NUDGE", "e += 2 * NUDGE"))
    add(drn, "return JUNCTION.content(V - self.v_high, *self._junction) + JUNCTION.content(self.v_low - V",
        "negate", "double", ("+ JUNCTION", "- JUNCTION"), ("V - self.v_high", "self.v_high - V"))
    add(drn, "return JUNCTION.current(V - self.v_high, *self._junction) - JUNCTION.current(self.v_low - V",
        "negate", "double", ("- JUNCTION", "+ JUNCTION"))
    add(drn, "return JUNCTION.conductance(V - self.v_high, *self._junction) \\", "negate", "double")
    add(drn, "+ JUNCTION.conductance(self.v_low - V, *self._junction)", ("+ JUNCTION", "- JUNCTION"))
    add(drn, "grad = D64 * V - r64 + self._junction_current(V)", ("+ self._junction", "- self._junction"),
        ("- r64", "+ r64"))  # (its curvature only sets the Newton steps' length inside the bracket)
    add(drn, "grad = derived.D[k] * layer - self._incoming(k, V, first, derived.bias_current)",
        ("derived.D[k] * layer", "2 * derived.D[k] * layer"), ("- self._incoming", "+ self._incoming"))
    add(drn, "grad = grad + self._junction_current(layer)", ("grad + self", "grad - self"),
        ("grad + self", "grad + 2 * self"))
    add(drn, "pull = NUDGE.current(self._outputs_of(V[-1])")
    add(drn, "out[-1] = out[-1] + np.concatenate([pull, -pull], axis=1)", ("[pull, -pull]", "[pull, pull]"))
    add(drn, "left = np.vstack([Va, 0.5 * (Va * Va).mean(axis=0, keepdims=True), one_a])", ("[Va, 0.5", "[Va, 1.0"))
    add(drn, "right = np.vstack([Vb * Vb.dtype.type(-1.0 / B), one_b, 0.5 * (Vb * Vb)",
        ("type(-1.0 / B)", "type(1.0 / B)"), ("one_b, 0.5", "one_b, 1.0"))
    add(drn, "grad[where] = RESISTOR.parameter_gradient(V - rail", ("V - rail", "V + rail"))
    add(drn, "d = self.weights[k].sum(axis=0, dtype=dt)")
    add(drn, "d += self.weights[k + 1].sum(axis=1, dtype=dt)", ("d +=", "d -="))
    add(drn, "d += self.bias_plus[k] + self.bias_minus[k]", ("d +=", "d -="),
        ("+ self.bias_minus", "- self.bias_minus"))
    add(drn, "bias_current.append(self.bias_plus[k] - self.bias_minus[k])", ("- self.bias_minus", "+ self.bias_minus"))
    add(drn, "inv_det = 1.0 / (Dp * Dn + beta * (Dp + Dn))", ("Dn + beta", "Dn - beta"))
    add(drn, "pull = np.asarray(target, dtype=self.dtype).reshape(len(betas), B, n) * beta")
    add(drn, "return (Dn + beta) * inv_det, beta * inv_det, (Dp + beta) * inv_det, pull",
        ("(Dn + beta)", "(Dn - beta)"), (", beta * inv_det", ", -beta * inv_det"), ("(Dp + beta)", "(Dp - beta)"))
    add(drn, "ap, an = rp + pull, rn - pull", ("rp + pull", "rp - pull"), ("rn - pull", "rn + pull"))
    add(drn, "biases, gradient = self._theta[start:], self.dtype.type(0.5) * (weights @ rails).ravel()",
        ("type(0.5)", "type(1.0)"), ("type(0.5)", "type(-0.5)"))
    add(drn, "left[-2] *= dt(0.5)")
    add(drn, "right[-1] *= dt(0.5)")
    add(drn, "np.multiply(np.add.reduce(Va * Va, axis=0), dt(0.5 * total / B), out=left[-2])",
        ("dt(0.5 * total", "dt(1.0 * total"), ("dt(0.5 * total", "dt(-0.5 * total"))
    add(drn, "np.negative(pulled, out=right[:len(Va)])", ("np.negative(pulled", "np.positive(pulled"))
    add(drn, "offset = (bias * diagonal + bias[swap] * cross", ("bias * diagonal +", "bias * diagonal -"))
    add(drn, "+ np.concatenate([(a - b) * pull, (b - c) * pull], axis=2)).reshape(-1, 2 * n)",
        ("(a - b) * pull", "(a + b) * pull"), ("(b - c) * pull", "(b + c) * pull"))
    add(drn, "Dh.append(D[k] + self._junction_conductance(V[k]))", ("D[k] + self", "D[k] - self"))
    one = "aeqprop_circuits/systems/drn/one_hidden.py"  # the builder DRN's compiled one-hidden-layer step
    add(one, "stacked[b, i] = x[b, i] * gain", "double")
    add(one, "stacked[b, n_in + i] = -stacked[b, i]", "negate")
    add(one, "D = plus + minus", ("plus + minus", "plus - minus"))
    add(one, "D[H + q] += W1[i, q]", ("+=", "-="))
    add(one, "D[i] += current[B, i] + total", ("+= current", "-= current"), ("+ total", "- total"))
    add(one, "bias_current = plus - minus", ("plus - minus", "plus + minus"))
    add(one, "scaled[b, i] = (current[b, i] + bias_current[i]) * inv_D[i]", ("+ bias_current", "- bias_current"))
    add(one, "o[b, q] = (o[b, q] + out_bias[q]) * inv_out[q]", ("+ out_bias", "- out_bias"))
    add(one, "row[i] = _clip(row[i] * inv_D[i] + drive[i], lo, hi)", ("+ drive[i]", "- drive[i]"))
    add(one, "return hi if value > hi else value", ("value > hi", "value < hi"))
    add(one, "inv_det = one / (D[H + q] * D[H + pair] + beta * (D[H + q] + D[H + pair]))", ("+ beta *", "- beta *"))
    add(one, "diagonal[q], cross[q] = (D[H + pair] + beta) * inv_det, beta * inv_det",
        ("(D[H + pair] + beta)", "(D[H + pair] - beta)"), (", beta * inv_det", ", -beta * inv_det"))
    add(one, "pull = y[b, q % n] * (beta if q < n else -beta)", ("else -beta", "else beta"))
    add(one, "pair = q + n if q < n else q - n  # op_j <-> on_j", ("q + n if", "q if"))
    add(one, "outputs_k[b, q] = diagonal[q] * (currents[b, q] + out_bias[q])",
        ("(currents[b, q] + out_bias[q])", "(currents[b, q] - out_bias[q])"))
    add(one, "+ cross[q] * (currents[b, pair] + out_bias[pair]) + (diagonal[q] - cross[q]) * pull",
        ("+ cross[q]", "- cross[q]"), ("(diagonal[q] - cross[q])", "(diagonal[q] + cross[q])"))
    add(one, "hidden_k, outputs_k = h, outputs[rows]", ("hidden_k, outputs_k = h,", "hidden_k, outputs_k = 0 * h,"))
    add(one, "schur_row -= float(W1_row_sums[i]) / float(D[i]) * float(W1[i, q])", ("-=", "+="))
    add(one, "value = lo if value < lo else value", ("lo if value < lo", "lo if value > lo"))
    add(one, "inv_D = one / D", ("one / D", "half / D"))
    add(one, "squares_in[i] += v_in[b, i] * v_in[b, i]", "double")
    add(one, "stacked[B] = one", ("= one", "= half"))
    add(one, "velocity_bias[biased + j] = momentum * velocity_bias[biased + j] + down", ("+ down", "- down"))
    add(one, "pulled[b, i] -= c * v", ("-=", "+="))
    add(one, "squares_h[i] += c_half * (v * v)", "double")
    add(one, "negative[row, q] = -c * v", "negate")
    add(one, "squares_o[q] += c_half * (v * v)", "double")
    add(one, "c, c_half = weights[k], weights[k] * half", ("* half", "* one"))
    add(one, "squares_in *= total_weight * half", ("* half", "* one"))
    add(one, "rows = slice(start, min(start + panel_rows, W0.shape[0]))", ("start + panel_rows,", "start + 1,"))
    add(one, "moving[j] = momentum * moving[j] + (g[j] + a + right_squares[j])", ("[j] + (g", "[j] - (g"))
    add(one, "value = w[j] - step * moving[j]", ("- step", "+ step"))
    add(one, "value = w[j] - step * (g[j] + a + right_squares[j])", ("- step", "+ step"), ("+ a +", "- a +"),
        ("+ right_squares", "- right_squares"))
    add(one, "up += c * ((v - one) * (v - one))", ("(v - one) * (v - one)", "(v + one) * (v + one)"))
    add(one, "down += c * ((v + one) * (v + one))", "double")
    add(one, "c = weights[k] * half", ("* half", "* one"))
    add(one, "velocity_bias[j] = momentum * velocity_bias[j] + up", ("+ up", "- up"))
    add(one, "value = plus[j] - rates[2] * up", ("- rates", "+ rates"))
    add(one, "value = minus[j] - rates[2] * down", ("- rates", "+ rates"))

    add(drn, "gemm_into(panel, left[:, where], right, -step)", ("-step", "step"))
    add(drn, "gemm_into(velocity, left, right, 1.0, keep=self.momentum)", ("keep=self.momentum", "keep=1.0"))
    add("aeqprop_circuits/systems/kernels.py", "out = gemm(alpha, right.T, left.T, beta=keep",
        ("beta=keep", "beta=1.0"))
    add("aeqprop_circuits/systems/kernels.py",
        "clip(values, values.dtype.type(0), values.dtype.type(np.inf), out=values)", ("type(0)", "type(-1)"))
    add(drn, "clip_nonnegative(panel)", ("clip_nonnegative(panel)", "panel.view()"))
    # the signed DRN
    signed = "aeqprop_circuits/systems/drn/signed.py"
    streaming = "aeqprop_circuits/systems/drn/streaming.py"
    add(signed, "e += 0.5 * ((Va * Va) @ W.sum(axis=1) + (Vb * Vb) @ W.sum(axis=0)) - ((Va @ W) * Vb).sum(axis=1)",
        ("e += 0.5", "e += 1.0"), (") - ((Va @ W)", ") + ((Va @ W)"))
    add(signed, "e += CURRENT_SOURCE.content(-Vb", ("content(-Vb", "content(Vb"), ("e += C", "e += 2 * C"))
    add(signed, "e += NUDGE.content(layers[-1], phase.beta, phase.target)", ("e +=", "e -="),
        ("e += NUDGE", "e += 2 * NUDGE"))
    add(signed, "out = [D[k] * layer - self._incoming(k, V, drive)", ("[D[k] * layer", "[2 * D[k] * layer"),
        ("- self._incoming", "+ self._incoming"))
    add(signed, "out[-1] = out[-1] + NUDGE.current(V[-1]", ("+ NUDGE", "- NUDGE"), ("+ NUDGE", "+ 2 * NUDGE"))
    add(signed, "return drive if k == 0 else self._product(V[k - 1], k) + self.biases[k]",
        ("+ self.biases[k]", "- self.biases[k]"))
    add(signed, "drive += self.biases[0]", ("+=", "-="))
    narrow = "aeqprop_circuits/systems/drn/narrow.py"
    add(narrow, "row[j] += v0 * m0[j] + v1 * m1[j]", ("+ v1 * m1[j]", "- v1 * m1[j]"))
    add(narrow, "row[j] += v0 * m0[j]\n", ("+=", "-="))
    add(narrow, "s3 += x * m3[j]", ("+=", "-="))
    add(narrow, "s0 += row[j] * m0[j]", ("+=", "-="))
    add(narrow, "out[o + 4] += s4", ("+= s4", "+= 2 * s4"))
    add(narrow, "factors = -step * right.T.copy()", "negate")
    add(narrow, "value = zero if w[j] < zero else w[j]", ("zero if w[j] < zero else w[j]", "w[j]"))
    add(narrow, "block[j, o] = w[j]", ("= w[j]", "= 2 * w[j]"))
    add(narrow, "row_sums[j] += value", "double")
    add(narrow, "total += value", "double")
    add(signed, "return narrow.times(V, WT) if transpose else narrow.times_transpose(V, WT)",
        ("if transpose else", "if not transpose else"))
    add(signed, "WT = self._transposes[1][k] = np.ascontiguousarray(self.weights[k].T)",
        ("(self.weights[k].T)", "(self.weights[k].T * 2)"))
    add(signed, "self._transposes = (self._version, {})",
        ("= (self._version, {})", "= self._transposes or (self._version, {})"))
    add(streaming, "a[q, r] = -step * left[r, i[q]] * w[q]", ("-step", "step"))
    add(streaming, "a14 * r4[j], zero)", (", zero)", ", zero - 1)"))
    add(signed, "self._excitatory = [width // 2 for", ("width // 2", "width // 2 + 1"))
    add(streaming, "Wq[j] += b0 * r0[j]", ("+=", "-="))
    add(streaming, "c[j] += v0 + w1 * v1 + w2 * v2 + w3 * v3", ("+ w3 * v3", "- w3 * v3"))
    add(streaming, "d2[j] += x20 * v0 + x21 * v1", ("+ x21 * v1", "- x21 * v1"))
    add(signed, "self._cache[1][0] = _node_sums(columns, rows_after)", ("rows_after)", "None)"))
    add(signed, "ahead += r  # = r + ahead", ("ahead += r", "ahead = r - ahead"))
    add(signed, "gemm_into(moving, left[:, where], right, 1.0, keep=self.momentum)", ("keep=self.momentum", "keep=1.0"))
    hidden = "aeqprop_circuits/systems/drn/hidden.py"
    add(hidden, "value = (head[j] + from_head[j]) / D_in[j]", ("+ from_head", "- from_head"))
    add(hidden, "value = (tail[j] + from_tail[j]) / D_out[j]", ("/ D_out[j]", "* D_out[j]"))
    add(hidden, "head[j] = zero if value < zero else value", ("value < zero", "value > zero"))
    add(hidden, "tail[j] = zero if value > zero else value", ("zero if value > zero else value", "value"))
    add(hidden, "D_in, D_out = D[:excitatory], D[excitatory:]", ("D[:excitatory], D[excitatory:]",
                                                                  "D[excitatory:], D[:excitatory]"))
    add(signed, "new = hidden.update(self._ahead(k, V), self._behind(k, V, drive), D[k], self._excitatory[k])",
        ("self._excitatory[k])", "self._excitatory[k] + 1)"))
    panels = "aeqprop_circuits/systems/drn/panels.py"
    add(panels, "value = w[j] - step * v[j]", ("- step", "+ step"))
    add(panels, "value = zero if value < zero else value", ("value < zero", "value > zero"))
    add(panels, "value = zero if w[j] < zero else w[j]", ("zero if w[j] < zero else w[j]", "w[j]"))
    add(panels, "columns[j] += value\n                total += value\n        rows", ("+=", "-="))
    add(panels, "columns[j] += value\n                total += value\n        else", ("+=", "-="))
    add(panels, "rows[i] = total", "double")
    add(signed, "panels.finish(panel, moving, step, column, row[where])", ("moving, step", "moving, -step"))
    add(signed, "pull = np.concatenate([np.broadcast_to(p, (B, self.n_outputs)) for p, _ in factors])",
        ("for p, _ in factors", "for p, _ in factors[::-1]"))
    add(signed, "totals = np.concatenate([np.broadcast_to(total, (B, self.n_outputs))",
        ("for _, total in factors", "for _, total in factors[::-1]"))
    add(signed, "sums = [_node_sums(W.sum(axis=0), rows)", ("W.sum(axis=0)", "2 * W.sum(axis=0)"))
    add(signed, "return columns + rows_after", ("+", "-"))
    add(signed, "        self._apply_pending()\n        steps = [float(steps)]", ("self._apply_pending()", "pass"))
    add(signed, "total = D_out + self.dtype.type(phase.beta)", ("D_out + self", "D_out - self"))
    add(signed, "return np.asarray(phase.target, dtype=self.dtype) * self.dtype.type(phase.beta), total",
        ("type(phase.beta), total", "type(-phase.beta), total"))
    add(signed, "a_squares = (0.5 * total) * (a * a).sum(axis=0) if total else None",
        ("(0.5 * total)", "(1.0 * total)"))
    add(signed, "a_squares, groups = 0.5 * (coefficients @ (a * a))", ("0.5 *", "1.0 *"))
    add(signed, "left = np.concatenate([a] + ([a_squares[None]] if squares_row",
        ("[a] + ([a_squares[None]]", "[a] + ([-a_squares[None]]"))
    add(signed, "right[groups:-1] = 1", ("= 1", "= 2"))
    add(signed, "stacked[K * B], stacked[K * B + 1] = right[-1], 1", ("right[-1], 1", "-right[-1], 1"))
    add(signed, "stacked[K * B], stacked[K * B + 1] = right[-1], 1", ("right[-1], 1", "right[-1], 2"))
    add(signed, "bias = -np.concatenate(sums)", "negate")
    moments = "aeqprop_circuits/systems/drn/moments.py"
    add(moments, "pulled[j] -= current", ("-=", "+="))
    add(moments, "total[j] += current", "double")
    add(moments, "square[j] += current * v[j]", ("+=", "-="))
    add(moments, "half = np.ones(1, V.dtype)[0] / 2", ("/ 2", "/ 1"))
    add(moments, "pulled = weights[r], V[r, t0:t1], negative[r % groups, t0:t1]", ("[r % groups", "[0"))
    add(streaming, "D[:batch] = offset[start:stop]", ("= offset", "= -offset"))
    fused = "aeqprop_circuits/systems/hopfield/fused.py"
    add(fused, "value = row[j] + added[j]", ("+ added", "- added"))
    add(fused, "value = value if value > low or", ("value > low", "value < low"))
    add(fused, "row[j] = value if value < high or", ("value < high", "value > high"))
    add(fused, "row, added = s[b], term[b % rows]", ("term[b % rows]", "term[0]"))
    add(hidden, "from_head, from_tail = behind[b % shared, :excitatory]", ("behind[b % shared, :", "behind[0, :"))

    # the replica circuits of the regression study
    replica = "aeqprop_circuits/experiments/reproduce/circuit_regression.py"
    add(replica, "return RESISTOR.content(potentials[:, pairs[:, 0]] - potentials[:, pairs[:, 1]], conductance)")
    add(replica, "content = self._contents(state.potentials, state.conductance).mean(axis=0) / self.g0")
    add(replica, "energy = self._contents(potentials, conductance).sum(axis=1)")
    add(replica, "b, rhs_pos, rhs_neg = betas, a_pos + betas * target, a_neg - betas * target",
        ("a_pos + betas", "a_pos - betas"), ("a_neg - betas", "a_neg + betas"))
    add(replica, "det = (g_pos + b) * (g_neg + b) - b * b", ("(g_pos + b)", "(g_pos - b)"), ("- b * b", "+ b * b"))
    add(replica, "v_pos = ((g_neg + b) * rhs_pos + b * rhs_neg) / det", ("(g_neg + b)", "(g_neg - b)"),
        ("+ b * rhs_neg", "- b * rhs_neg"))
    add(replica, "v_neg = (b * rhs_pos + (g_pos + b) * rhs_neg) / det", ("(g_pos + b)", "(g_pos - b)"),
        ("(b * rhs_pos", "(-b * rhs_pos"))
    add(replica, "A = np.asarray(self._slots.T @ (fixed[:, self._far] * g).T).T")
    add(replica, "G = np.asarray(self._slots.T @ g).ravel()")
    add(replica, "bad = g_pos * g_neg + betas * (g_pos + g_neg) <= 1e-6 * g_pos * g_neg",
        ("+ betas * (g_pos", "- betas * (g_pos"))

    # the learning rules: EP contrast weights, the estimate's scale, the multi-point weights
    rules = "aeqprop_circuits/learning/algorithms.py"
    for name, weights, flipped, doubled in (("p-ep", "(-1, 1)", "(1, -1)", "(-2, 2)"),
                                            ("n-ep", "(-1, 1)", "(1, -1)", "(-2, 2)"),
                                            ("c-ep", "(-0.5, 0.5)", "(0.5, -0.5)", "(-1, 1)")):
        add(rules, f'"{name}": ("nudge", ', (weights + ")", flipped + ")"), (weights + ")", doubled + ")"))
    add(rules, "return Estimate(np.asarray(gradient) / scale", ("/ scale", "* scale"), ("/ scale", "/ (2 * scale)"))
    add(rules, "rhs[1] = factorial(1)", ("factorial(1)", "-factorial(1)"), ("factorial(1)", "2 * factorial(1)"))
    add(rules, "gradient = (theta_before - new_parameters) / step", ("(theta_before - new_parameters)",
                                                                     "(new_parameters - theta_before)"),
        ("/ step", "/ (2 * step)"))
    add(rules, "step = self.epsilon * (self.beta_2 - self.beta_1)", ("(self.beta_2 - self.beta_1)",
                                                                     "(self.beta_1 - self.beta_2)"))
    # the knob rule: the parameters' own relaxation, the oracle's hold, the proportional gain
    add("aeqprop_circuits/systems/circuit.py", "theta = knobs - epsilon * self.energy_gradient(state)",
        ("knobs - epsilon", "knobs + epsilon"), ("knobs - epsilon", "knobs - 2 * epsilon"))
    add("aeqprop_circuits/systems/drn/system.py", "theta = np.asarray(knobs) - epsilon * self.energy_gradient",
        (") - epsilon", ") + epsilon"), (") - epsilon", ") - 2 * epsilon"))
    add("aeqprop_circuits/systems/hopfield/network.py", "return np.asarray(knobs, np.float64) - np.asarray(epsilon)",
        (") - np.asarray(epsilon)", ") + np.asarray(epsilon)"),
        (") - np.asarray(epsilon)", ") - 2 * np.asarray(epsilon)"))
    add("aeqprop_circuits/systems/knobs.py", "knobs = theta_target + handle.epsilon * force",
        ("theta_target + handle", "theta_target - handle"), ("handle.epsilon * force", "2 * handle.epsilon * force"))
    add("aeqprop_circuits/systems/knobs.py", "base_gain = gain = handle.parameter_rate / (4.0 * handle.epsilon)",
        ("(4.0 * handle", "(2.0 * handle"), ("(4.0 * handle", "(8.0 * handle"))
    # the Lyapunov function L_{b1;b2} = [F(b2) - F(b1)] / (b2 - b1)
    add("aeqprop_circuits/learning/lyapunov.py", "return (known[beta_2] - known[beta_1]) / (beta_2 - beta_1)",
        "negate", "double")
    return out


MUTANTS = _mutants()


def _statement(source: str, line: int) -> ast.stmt:
    """The innermost simple statement (return, assignment, expression) spanning `line` (1-based)."""
    best = None
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Return, ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr)) \
                and node.lineno <= line <= node.end_lineno:
            if best is None or node.lineno >= best.lineno:
                best = node
    if best is None:
        raise ValueError(f"no statement at line {line}")
    return best


def mutate(source: str, mutant: Mutant) -> str:
    """`source` with the mutant applied; ValueError if its text is not unique or the change does not apply."""
    if source.count(mutant.where) != 1:
        raise ValueError(f"{mutant.path}: {mutant.where!r} occurs {source.count(mutant.where)} times")
    line = mutant.line(source)
    statement = _statement(source, line)
    lines = source.splitlines(keepends=True)
    if isinstance(mutant.change, tuple):
        old, new = mutant.change
        text = lines[line - 1]
        if text.count(old) != 1:
            raise ValueError(f"{mutant.name}: {old!r} occurs {text.count(old)} times on its line")
        lines[line - 1] = text.replace(old, new)
        return "".join(lines)
    value = statement.value
    encoded = [text.encode() for text in lines]  # ast offsets count UTF-8 bytes
    start = sum(len(b) for b in encoded[:value.lineno - 1]) + value.col_offset
    stop = sum(len(b) for b in encoded[:value.end_lineno - 1]) + value.end_col_offset
    data = "".join(lines).encode()
    wrapped = {"negate": b"-(%s)", "double": b"2 * (%s)"}[mutant.change] % data[start:stop]
    return (data[:start] + wrapped + data[stop:]).decode()


def _copy_tree(destination: Path) -> None:
    ignore = shutil.ignore_patterns(".git", ".hypothesis", ".ruff_cache", "__pycache__", "runs", "*.egg-info")
    shutil.copytree(ROOT, destination, ignore=ignore, dirs_exist_ok=True)


def _run(tree: Path, arguments: list[str], timeout: float) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONDONTWRITEBYTECODE="1", OPENBLAS_NUM_THREADS="1")
    return subprocess.run(PYTEST + arguments, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)


def passing_tests(tree: Path) -> list[str]:
    """Node ids of the tests in TESTS that pass on the unmutated copy."""
    report = tree / "baseline.xml"
    _run(tree, [*TESTS, f"--junitxml={report}"], timeout=3600)
    ids = []
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        if any(child.tag in ("failure", "error", "skipped") for child in case):
            continue
        if "mutation_check" in case.get("name", ""):
            continue  # the check that every mutant applies: it fails on any mutated copy, killing nothing
        module = case.get("classname", "").replace(".", "/") + ".py"
        ids.append(f"{module}::{case.get('name')}")
    return ids


def killer(tree: Path, tests: list[str], timeout: float) -> str | None:
    """The first test that fails (the mutant is killed), or None (it survived)."""
    first = [t for t in tests if t.startswith(TESTS[0])]
    for stage in (first, [t for t in tests if t not in first]):
        try:
            result = _run(tree, ["-x", *stage], timeout)
        except subprocess.TimeoutExpired:
            return "(timeout)"
        if result.returncode != 0:
            failed = re.search(r"^(?:FAILED|ERROR) (\S+)", result.stdout, re.MULTILINE)
            return failed.group(1) if failed else f"(pytest exit {result.returncode})"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", default="", help="only the mutants whose name matches this regular expression")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per mutant's test run")
    args = parser.parse_args()
    try:
        mutants = [m for m in MUTANTS if re.search(args.k, m.name)]
    except re.error as err:
        parser.error(f"-k {args.k!r} is not a regular expression: {err}")
    if not mutants:
        parser.error(f"no mutant matches -k {args.k!r} (--list shows them)")
    for m in mutants:  # every mutant applies to the current sources, before anything runs
        mutate((ROOT / m.path).read_text(), m)
    if args.list:
        print("\n".join(m.name for m in mutants))
        return 0
    with tempfile.TemporaryDirectory(prefix="mutate-") as scratch:
        tree = Path(scratch) / "tree"
        _copy_tree(tree)
        tests = passing_tests(tree)
        print(f"{len(mutants)} mutants; {len(tests)} tests pass unmutated\n", file=sys.stderr)
        print("| where | statement | mutation | killed by |\n|---|---|---|---|")
        survived = 0
        for m in mutants:
            path = tree / m.path
            original = path.read_text()
            try:
                path.write_text(mutate(original, m))
                test = killer(tree, tests, args.timeout)
            finally:
                path.write_text(original)
            survived += test is None
            statement = m.where.strip().splitlines()[0].replace("|", "\\|")
            print(f"| {m.path.split('/')[-1]}:{m.line(original)} | `{statement}` | {m.how} | "
                  f"{test or '**survived**'} |", flush=True)
    print(f"\n{len(mutants) - survived} of {len(mutants)} mutants killed", file=sys.stderr)
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
