"""The element table: each element kind's co-content and its derivatives, written once.

An element with branch voltage v = V[first] - V[second] (V), whose current i(v) flows from its
first node through it to its second, has the co-content G(v) = integral_0^v i (W). A resistive
network's equilibrium minimises the sum of the G over the free potentials, and the gradient of
that sum is Kirchhoff's current law (DESIGN.md, Physics). A `Stamp` gives, for one element kind,

- content(v, *p):            G(v), W
- current(v, *p):            i = G'(v), A
- conductance(v, *p):        G''(v), S
- change(v, dv, *p):         G(v + dv) - G(v), W, without the cancellation of subtracting two
                             contents (near a minimum the change is far below the rounding of G)
- parameter_gradient(v, *p): dG/dp[0] (the trainable parameter), None for an element that has none

as numpy functions applied elementwise over arrays of any shape (elements, or batch x elements;
parameters broadcast against v). Units are SI, or any consistent scaling: the DRN systems call
them with conductances in g0 and energies in g0 V^2.

Every path that evaluates circuit physics calls this table (`circuit.energy.Problem`, the layered
solver, the DRN systems, the replica circuits), or, where it keeps a fused kernel for speed (a
block of resistors as matrix products), is held against `Problem` by tests/test_fast_paths.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np


class Stamp(NamedTuple):
    """The co-content of one element kind and its derivatives (see the module docstring)."""

    content: Callable
    current: Callable | None
    conductance: Callable | None
    change: Callable
    parameter_gradient: Callable | None


# --- resistor, conductance g (S): G = g v^2 / 2 ---------------------------------------------------
def resistor_content(v, g):
    return g * resistor_parameter_gradient(v, g)


def resistor_current(v, g):
    return g * v


def resistor_conductance(v, g):
    return np.broadcast_to(g, np.broadcast_shapes(np.shape(v), np.shape(g)))


def resistor_change(v, dv, g):
    return g * dv * (v + 0.5 * dv)


def resistor_parameter_gradient(v, g):
    """dG/dg = v^2 / 2: the local measurement of the EP family (V^2)."""
    return 0.5 * v * v


# --- Shockley junction: i = Is (e^{v/nVt} - 1) + gmin v, as SPICE's diode without RS ----------------
# Is (A), nVt (V) the emission coefficient times the thermal voltage, gmin (S) SPICE's parallel
# conductance. Overflow beyond v ~ 700 nVt gives +inf, which the solvers treat as "too far".
def junction_content(v, isat, nvt, gmin):
    with np.errstate(over="ignore"):
        return isat * (nvt * np.expm1(v / nvt) - v) + resistor_content(v, gmin)


def junction_current(v, isat, nvt, gmin):
    with np.errstate(over="ignore"):
        return isat * np.expm1(v / nvt) + resistor_current(v, gmin)


def junction_conductance(v, isat, nvt, gmin):
    with np.errstate(over="ignore"):
        return isat * np.exp(v / nvt) / nvt + gmin


def junction_change(v, dv, isat, nvt, gmin):
    with np.errstate(over="ignore", invalid="ignore"):
        return isat * (nvt * np.exp(v / nvt) * np.expm1(dv / nvt) - dv) + resistor_change(v, dv, gmin)


# --- ideal diode: the constraint v <= 0 ---------------------------------------------------------------
# Its co-content is 0 where v <= 0 and +inf beyond: a constraint, which the solvers impose as a
# bound (coordinate descent, the layered and DRN paths: a clip) or a linear inequality (qp). Its
# current is the constraint's multiplier, found by the solver, not a function of v.
def ideal_diode_content(v):
    return np.where(np.asarray(v) > 0.0, np.inf, 0.0)


def ideal_diode_change(v, dv):
    return ideal_diode_content(np.asarray(v) + dv)


# --- current source, current I (A) from its first node through it to its second: G = I v ----------
def current_source_content(v, current):
    return current * v


def current_source_current(v, current):
    return np.broadcast_to(current, np.broadcast_shapes(np.shape(v), np.shape(current)))


def current_source_conductance(v, current):
    return np.zeros(np.broadcast_shapes(np.shape(v), np.shape(current)))


def current_source_change(v, dv, current):
    return current * dv


def current_source_parameter_gradient(v, current):
    """dG/dI = v (V): a trainable bias current's local measurement."""
    return np.asarray(v, dtype=float)


# --- cubic conductor, coefficient c (S/V^2): i = c v^3, G = c v^4 / 4 -------------------------------
# The odd cubic part of a nonlinear conductor: a resistor g in parallel with one of c = gamma g has
# i = g (v + gamma v^3) (systems/hardware.py, the unknown law of a trainable element). Convex for c >= 0.
def cubic_content(v, c):
    return c * cubic_parameter_gradient(v, c)


def cubic_current(v, c):
    return c * v * v * v


def cubic_conductance(v, c):
    return 3.0 * c * v * v


def cubic_change(v, dv, c):
    """c ((v + dv)^4 - v^4) / 4, expanded so that small steps do not cancel."""
    return c * dv * (v * v * v + dv * (1.5 * v * v + dv * (v + 0.25 * dv)))


def cubic_parameter_gradient(v, c):
    """dG/dc = v^4 / 4 (V^4)."""
    return 0.25 * (v * v) * (v * v)


# --- the nudge: a conductance beta (S) from an output at v to a source at the target y (V) ----------
# G = beta (v - y)^2 / 2, i.e. beta C for the squared-error cost C; beta < 0 is an active element.
def nudge_content(v, beta, target):
    return resistor_content(v - target, beta)


def nudge_current(v, beta, target):
    return resistor_current(v - target, beta)


def nudge_conductance(v, beta, target):
    return resistor_conductance(v - target, beta)


def nudge_change(v, dv, beta, target):
    return resistor_change(v - target, dv, beta)


def nudge_parameter_gradient(v, beta, target):
    """dG/dbeta = (v - y)^2 / 2: the squared-error cost (V^2)."""
    return resistor_parameter_gradient(v - target, beta)


RESISTOR = Stamp(resistor_content, resistor_current, resistor_conductance, resistor_change,
                 resistor_parameter_gradient)
JUNCTION = Stamp(junction_content, junction_current, junction_conductance, junction_change, None)
IDEAL_DIODE = Stamp(ideal_diode_content, None, None, ideal_diode_change, None)
CURRENT_SOURCE = Stamp(current_source_content, current_source_current, current_source_conductance,
                       current_source_change, current_source_parameter_gradient)
CUBIC = Stamp(cubic_content, cubic_current, cubic_conductance, cubic_change, cubic_parameter_gradient)
NUDGE = Stamp(nudge_content, nudge_current, nudge_conductance, nudge_change, nudge_parameter_gradient)

ELEMENTS: dict[str, Stamp] = {"resistor": RESISTOR, "junction": JUNCTION, "ideal_diode": IDEAL_DIODE,
                              "current_source": CURRENT_SOURCE, "cubic": CUBIC, "nudge": NUDGE}
