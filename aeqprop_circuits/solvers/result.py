"""The one result type every solver returns (in the manner of scipy.optimize.OptimizeResult)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class SolveResult:
    """A DC operating point of a batch of B source settings.

    potentials: (B, n_nodes) volts, node 0 is ground.
    currents:   per element group, (B, n_elements) amperes, SPICE sign (first node -> second);
                groups: resistors, diodes, ideal_diodes, voltage_sources, current_sources.
    energy:     (B,) total co-content at the solution, watts (nudge term included).
    free:       (B, n_free) the free potentials the solver iterated on (for warm starts).
    solver:     the method that ran: a name of SOLVER_NAMES, or a callable method's __name__.
    Nothing is raised for a non-converged solve: `success` says whether it worked, `message` why not.
    """

    potentials: np.ndarray
    currents: dict
    energy: np.ndarray
    free: np.ndarray
    iterations: int
    residual: float
    success: bool
    message: str
    solver: str


def keep_going(callback, energy) -> bool:
    """Report the (B,) co-content of an iteration to a solve's callback; False when it asks to stop (StopIteration)."""
    if callback is None:
        return True
    try:
        callback(np.array(energy, copy=True))
    except StopIteration:
        return False
    return True
