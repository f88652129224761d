"""Meta-gradient estimators for bilevel systems (systems/bilevel.py): CML, implicit differentiation, first order.

Contrastive meta-learning needs no code of its own: on a bilevel system the EP rules are the
CML estimators (p-ep is the paper's Eq. 4, c-ep its symmetric form, multi-point-ep the forward
p-point form) and exact-gradient is implicit differentiation with the dense Hessian. This module
adds the baselines of the bilevel review (Zucchet & Sacramento, Sec. 4.1), which approximate the
adjoint q = H^-1 v (H the lower level's Hessian, v = dL_out/dphi, both at the free solution)
and return -mean q^T d2 L_in / dphi dtheta (`InnerCurvature.meta_gradient`):

  implicit-cg       `iterations` steps of conjugate gradients on H q = v from q = 0;
  implicit-neumann  `iterations` terms of the Neumann series q = alpha sum_j (I - alpha H)^j v, i.e.
                    gradient descent on the quadratic form (recurrent backprop, review Eq. 4.6);
  t1t2              its first term, q = alpha v: the Hessian taken as I / alpha (Luketina et al.);

and two first-order rules that learn the prior omega only (their strength entries are zero):

  fomaml            q = v / lambda: the data's curvature dropped, dphi*/domega = I, so the prior
                    moves by dL_out/dphi at the adapted parameters (first-order MAML);
  reptile           the prior moves towards the adapted parameters: lambda (omega - phi_0), which
                    at the free solution is the support loss gradient there (Nichol et al.).

alpha defaults to 1 / (largest eigenvalue of H), by power iteration per task. `ESTIMATORS`
maps the names of `aeqprop meta train --estimator` to rules.
"""

from __future__ import annotations

import numpy as np

from aeqprop_circuits.errors import AeqpropError
from aeqprop_circuits.learning.estimate import Estimate
from aeqprop_circuits.systems.base import Phase, PhysicalSystem
from aeqprop_circuits.systems.bilevel import BilevelError, InnerCurvature

# aeqprop meta train --estimator NAME -> the rule's name (get_algorithm)
ESTIMATORS = {"cml": "p-ep", "cml-symmetric": "c-ep", "cml-multipoint": "multi-point-ep",
              "implicit-cg": "implicit-cg", "implicit-neumann": "implicit-neumann", "t1t2": "t1t2",
              "fomaml": "fomaml", "reptile": "reptile", "exact": "exact-gradient"}


def _dot(a, b) -> np.ndarray:
    return (a * b).sum(axis=1, keepdims=True)


def conjugate_gradient(product, v: np.ndarray, iterations: int, tolerance: float = 1e-12) -> np.ndarray:
    """q ~ H^-1 v per row (T, P) after `iterations` CG steps from 0; `product(p)` = H p row by row.

    Raises BilevelError on a direction of non-positive curvature (H not positive definite).
    """
    q, r = np.zeros_like(v), v.copy()
    p, rr = r.copy(), _dot(r, r)
    scale = np.sqrt(rr)
    for _ in range(iterations):
        running = np.sqrt(rr) > tolerance * scale
        if not running.any():
            break
        hp = product(p)
        curvature = _dot(p, hp)
        if (running & (curvature <= 0)).any():
            raise BilevelError("conjugate gradients met a direction of non-positive curvature: the lower level "
                               "is not strongly convex at its solution; use a larger strength (lambda)")
        step = np.where(running, rr / np.where(running, curvature, 1.0), 0.0)
        q, r = q + step * p, r - step * hp
        rr_next = _dot(r, r)
        p = r + np.where(running, rr_next / np.where(running, rr, 1.0), 0.0) * p
        rr = rr_next
    return q


def neumann(product, v: np.ndarray, iterations: int, alpha) -> np.ndarray:
    """q = alpha sum_{j < iterations} (I - alpha H)^j v, by q <- q - alpha (H q - v) from q = 0."""
    q = np.zeros_like(v)
    for k in range(iterations):
        q = q - alpha * ((product(q) if k else 0.0) - v)
    return q


def largest_curvature(product, shape, iterations: int = 30, seed: int = 0) -> np.ndarray:
    """Largest eigenvalue of H per row (T, 1), by power iteration."""
    u = np.random.default_rng(seed).standard_normal(shape)
    value = np.ones((shape[0], 1))
    for _ in range(iterations):
        u = u / np.linalg.norm(u, axis=1, keepdims=True)
        hu = product(u)
        value = _dot(u, hu)
        u = hu
    return value


class Implicit:
    """An implicit-differentiation or first-order meta-gradient estimate at the free solution (module docstring)."""

    rate, betas, contrastive = None, (0.0, 0.0), False

    def __init__(self, name: str, iterations: int | None = None, alpha: float | None = None):
        if name not in IMPLICIT_TABLE:
            raise AeqpropError(f"unknown implicit estimator '{name}'; expected one of {', '.join(IMPLICIT_TABLE)}")
        if iterations is not None and iterations < 1:
            raise AeqpropError(f"{name}: iterations must be at least 1, got {iterations}")
        if alpha is not None and not alpha > 0:
            raise AeqpropError(f"{name}: alpha must be positive, got {alpha}")
        self.name = name
        self.iterations = iterations or {"implicit-cg": 20, "implicit-neumann": 50, "t1t2": 1}.get(name)
        self.alpha = alpha

    def with_rate(self, rate) -> Implicit:
        return self

    def in_place(self, system: PhysicalSystem, learning_rate) -> None:
        return None

    def estimate(self, system: PhysicalSystem, inputs, target) -> Estimate:
        if not isinstance(system, InnerCurvature):
            raise AeqpropError(f"{self.name} estimates meta-gradients: it needs a bilevel system, not "
                               f"{type(system).__name__}")
        target = np.atleast_2d(target)
        free = system.settle(Phase(np.atleast_2d(inputs)))
        gradient = IMPLICIT_TABLE[self.name](self, system, free, target)
        return Estimate(gradient, system.outputs(free), free)

    def _alpha(self, product, shape):
        return self.alpha if self.alpha is not None else 1.0 / largest_curvature(product, shape)

    def _implicit(self, system, state, target, solve):
        v = system.outer_gradient(state, target)
        return system.meta_gradient(state, solve(lambda u: system.inner_hessian_vector(state, u), v))

    def cg(self, system, state, target):
        return self._implicit(system, state, target,
                              lambda product, v: conjugate_gradient(product, v, self.iterations))

    def neumann(self, system, state, target):
        return self._implicit(system, state, target, lambda product, v: neumann(
            product, v, self.iterations, self._alpha(product, v.shape)))

    def fomaml(self, system, state, target):
        v = system.outer_gradient(state, target)
        return system.prior_part(system.meta_gradient(state, v / np.where(system.strength > 0, system.strength, 1)))

    def reptile(self, system, state, target):
        return system.prior_part(system.energy_gradient(state))


IMPLICIT_TABLE = {"implicit-cg": Implicit.cg, "implicit-neumann": Implicit.neumann, "t1t2": Implicit.neumann,
                  "fomaml": Implicit.fomaml, "reptile": Implicit.reptile}
