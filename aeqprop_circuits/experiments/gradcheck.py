"""A rule's gradient estimate against a reference, on one batch: what `aeqprop gradcheck` measures.

References:
  exact-gradient  implicit differentiation through the free equilibrium (circuits, DRNs);
  ep              for an Aeqprop rule, the EP estimate of its own two phases (p-ep for optimistic,
                  n-ep for pessimistic, c-ep at beta/2 for centered). By Theorem 1 the Aeqprop step
                  tends to it as epsilon -> 0; with the oracle controller and one parameter
                  relaxation it is that EP step at every epsilon, when the phases are settled;
  oracle          for an Aeqprop rule, the same rule with the oracle controller: how far the
                  proportional (agnostic) controller's step is from the one it stands for;
  any other rule  that rule's estimate at the same beta (rbp for Hopfield networks, c-ep, ...).

An Aeqprop rule is checked at each epsilon given. An epsilon given per parameter group
({"w1": 3e-6, "w2": 0.3, "b": 0.3}) also gives the comparison per group. The curvature |h|
of F(theta) = min_s E (largest |eigenvalue| of its Hessian, one settle per parameter) bounds the
epsilon a proportional controller can hold, a = epsilon |h| < 1 (docs/how-to/proportional-controller.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from aeqprop_circuits.errors import AeqpropError, DivergenceError
from aeqprop_circuits.learning.algorithms import get_algorithm
from aeqprop_circuits.systems.base import PhysicalSystem

# Aeqprop rule -> (the EP rule of the same phases, its beta as a multiple of the Aeqprop rule's)
EP_OF_AEQPROP = {"aeqprop-optimistic": ("p-ep", 1.0), "aeqprop-pessimistic": ("n-ep", 1.0),
                 "aeqprop-centered": ("c-ep", 0.5)}
SPECIAL_REFERENCES = ("ep", "oracle")


@dataclass(frozen=True)
class GradCheck:
    """One estimate against its reference."""

    algorithm: str
    beta: float
    epsilon: float | dict | None  # Aeqprop rules only
    reference: str
    cosine: float = np.nan
    relative_error: float = np.nan  # |estimate - reference| / |reference|
    norm_ratio: float = np.nan  # |estimate| / |reference|
    reference_norm: float = np.nan  # |reference|
    groups: dict = field(default_factory=dict)  # group -> {"cosine": .., "norm_ratio": ..}
    largest: dict = field(default_factory=dict)  # {"index": k, "others": relative error without parameter k}
    a: float | None = None  # largest epsilon times the curvature |h|
    message: str = ""  # why there is no estimate (e.g. a hold that failed), else empty

    def as_dict(self) -> dict:
        row = {"algorithm": self.algorithm, "beta": self.beta}
        if self.epsilon is not None:
            row["epsilon"] = self.epsilon
        if self.a is not None:
            row["a"] = round(self.a, 4)
        row.update(reference=self.reference, reference_norm=self.reference_norm, cosine=self.cosine,
                   relative_error=self.relative_error, norm_ratio=self.norm_ratio)
        if self.groups:
            row["groups"] = self.groups
        if self.largest:
            row["largest_difference"] = self.largest
        if self.message:
            row["message"] = self.message
        return row


def _compare(estimate: np.ndarray, reference: np.ndarray) -> tuple[float, float, float]:
    """(cosine, relative error, norm ratio) of an estimate against a reference."""
    norm, norm_reference = np.linalg.norm(estimate), np.linalg.norm(reference)
    cosine = float(estimate @ reference / (norm * norm_reference)) if norm * norm_reference > 0 else np.nan
    if norm_reference == 0:
        return cosine, np.nan, np.nan
    return cosine, float(np.linalg.norm(estimate - reference) / norm_reference), float(norm / norm_reference)


def per_parameter(system: PhysicalSystem, epsilon):
    """A scalar epsilon as it is, a per-group one as a (P,) array."""
    if not isinstance(epsilon, dict):
        return epsilon
    try:
        return system.per_parameter(epsilon)
    except AttributeError:
        raise AeqpropError(f"epsilon {epsilon}: {type(system).__name__} has no parameter groups") from None
    except (KeyError, ValueError) as err:
        raise AeqpropError(f"epsilon {epsilon}: expected a value for each parameter group ({err})") from None


class _Checker:
    """Estimates on one batch, each from the same parameters, references computed once."""

    def __init__(self, system, inputs, target, controller, rule_options):
        self.system, self.inputs, self.target = system, inputs, target
        self.controller, self.rule_options = controller, rule_options
        self.theta = system.parameters
        self.references = {}

    def gradient(self, rule) -> np.ndarray:
        try:
            return rule.estimate(self.system, self.inputs, self.target).gradient
        finally:
            self.system.parameters = self.theta

    def rule(self, name: str, beta: float, epsilon, controller: str | None = None):
        if name in EP_OF_AEQPROP:
            return get_algorithm(name, beta=beta, epsilon=per_parameter(self.system, epsilon),
                                 controller=controller or self.controller, **self.rule_options)
        return get_algorithm(name, beta=beta)

    def reference(self, reference: str, name: str, beta: float, epsilon) -> np.ndarray:
        if reference in SPECIAL_REFERENCES and name not in EP_OF_AEQPROP:
            raise AeqpropError(f"reference '{reference}' compares an Aeqprop rule with the {reference} estimate "
                               f"of the same step; {name} is not an Aeqprop rule")
        key = {"ep": (reference, name, beta), "oracle": (reference, name, beta, repr(epsilon))}.get(
            reference, (reference, beta))
        if key not in self.references:
            if reference == "ep":
                ep, factor = EP_OF_AEQPROP[name]
                rule = get_algorithm(ep, beta=beta * factor)
            elif reference == "oracle":
                rule = self.rule(name, beta, epsilon, controller="oracle")
            else:
                rule = get_algorithm(reference, beta=beta)
            self.references[key] = self.gradient(rule)
        return self.references[key]


def check_gradients(system: PhysicalSystem, inputs, target, algorithms, beta: float, epsilons,
                    controller: str = "oracle", reference: str = "exact-gradient", rule_options: dict | None = None,
                    curvature: float | None = None) -> list[GradCheck]:
    """Each algorithm's estimate (each Aeqprop rule at each epsilon) against the reference.

    rule_options go to the Aeqprop rules (relax_rounds, adaptive_gain, step_rtol). An estimate
    that diverges (a hold that fails, a phase that does not settle) gives a row with its message.
    """
    checker = _Checker(system, np.atleast_2d(inputs), np.atleast_2d(target), controller, rule_options or {})
    rows = []
    for name in algorithms:
        for epsilon in (epsilons if name in EP_OF_AEQPROP else [None]):
            a = None
            if curvature is not None and epsilon is not None:
                a = float(np.max(list(epsilon.values()) if isinstance(epsilon, dict) else epsilon)) * curvature
            expected = checker.reference(reference, name, beta, epsilon)
            base = dict(algorithm=name, beta=beta, epsilon=epsilon, reference=reference, a=a,
                        reference_norm=float(np.linalg.norm(expected)))
            try:
                estimate = checker.gradient(checker.rule(name, beta, epsilon))
            except DivergenceError as err:
                rows.append(GradCheck(**base, message=" ".join(str(err).split())))
                continue
            cosine, relative, ratio = _compare(estimate, expected)
            k = int(np.argmax(np.abs(estimate - expected)))
            others = np.delete(estimate - expected, k)
            largest = {"index": k, "others": float(np.linalg.norm(others) / np.linalg.norm(expected))
                       if np.linalg.norm(expected) > 0 else np.nan}
            groups = {}
            if isinstance(epsilon, dict):
                for group in epsilon:
                    mask = per_parameter(system, {g: float(g == group) for g in epsilon}) > 0
                    g_cosine, _, g_ratio = _compare(estimate[mask], expected[mask])
                    groups[group] = {"cosine": g_cosine, "norm_ratio": g_ratio}
            rows.append(GradCheck(**base, cosine=cosine, relative_error=relative, norm_ratio=ratio, groups=groups,
                                  largest=largest))
    return rows
