"""Regularisation learning (the CML paper's Sec. 4.3 and Table 1): per-synapse L2 strengths learnt on validation data.

The lower level is a linear softmax classifier, phi = its weights W (K classes, D inputs and a
constant input for the bias) flattened, learnt on a small training set with a per-synapse penalty

    L_in(phi, theta) = mean over the training set of CE(W x, y) + sum_k lambda_k / 2 phi_k^2,

lambda = exp(theta), and the upper level is the validation cross-entropy
L_out(phi) = mean over the validation set of CE(W x, y). The meta-parameters theta = log lambda
(one per synapse; the prior omega stays at 0), so every strength stays positive and L_in is
strongly convex for every theta (the cross-entropy is convex in W, the penalty adds lambda_k to
every curvature): the setting of the paper's theory, with one task. On it the CML estimate for
synapse k is lambda_k (phi_beta,k^2 - phi_0,k^2) / 2 beta (local to the synapse, paper App. B),
and T1-T2's -lambda_k phi_k alpha v_k, v = dL_out/dphi (the inverse Hessian of implicit
differentiation replaced by alpha I).

`SoftmaxTask` is the lower level (a `TaskModel` with its own `QueryLoss`): its data are held by
the model, and a task row is one value (0) naming the one task. `RegularisationSystem` is a
`BilevelSystem` whose meta-parameters are log lambda.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from aeqprop_circuits.errors import AeqpropError, DivergenceError
from aeqprop_circuits.systems.base import Phase
from aeqprop_circuits.systems.bilevel import BilevelSystem, InnerSolve


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


class SoftmaxTask:
    """A linear softmax classifier learnt on (x_train, y_train), judged on (x_val, y_val).

    x: (N, D) inputs, y: (N,) class indices 0..n_classes-1. phi (T, P) holds T copies of the
    weights, P = n_classes (D + 1), row-major (class, input), the last input the constant 1.
    """

    def __init__(self, x_train, y_train, x_val, y_val, n_classes: int):
        self.n_classes = int(n_classes)
        self.x_train, self.x_val = self.features(x_train), self.features(x_val)
        self.y_train, self.y_val = np.asarray(y_train, dtype=int), np.asarray(y_val, dtype=int)
        for name, y, x in (("training", self.y_train, self.x_train), ("validation", self.y_val, self.x_val)):
            if len(y) != len(x) or len(y) == 0:
                raise AeqpropError(f"{name} set: {len(x)} inputs and {len(y)} labels (expected as many, at least one)")
            if y.min() < 0 or y.max() >= self.n_classes:
                raise AeqpropError(f"{name} labels must be in 0..{self.n_classes - 1}")
        self.width = self.x_train.shape[1]
        if self.x_val.shape[1] != self.width:
            raise AeqpropError(f"training inputs have {self.width - 1} values, validation inputs "
                               f"{self.x_val.shape[1] - 1}")
        self.size = self.n_classes * self.width
        self.n_inputs = 1
        self.n_outputs = len(self.y_val) * self.n_classes
        self.train_onehot = np.eye(self.n_classes)[self.y_train]

    @staticmethod
    def features(x) -> np.ndarray:
        """Inputs (N, D) with the constant input of the bias appended (N, D + 1)."""
        x = np.asarray(x, dtype=np.float64)
        return np.concatenate([x, np.ones((len(x), 1))], axis=1)

    def target(self) -> np.ndarray:
        """The query target of the one task (1, n_outputs): the validation labels one-hot."""
        return np.eye(self.n_classes)[self.y_val].reshape(1, -1)

    def bounds(self):
        return None

    def logits(self, phi: np.ndarray, x: np.ndarray) -> np.ndarray:
        """W x for every copy of the weights: (T, N, n_classes) for phi (T, P) and features x (N, D + 1)."""
        weights = phi.reshape(len(phi), self.n_classes, self.width)
        return np.matmul(x[None], weights.transpose(0, 2, 1))

    def _cross_entropy(self, phi, x, onehot):
        """Mean cross-entropy per copy (T,) and its gradient in phi (T, P)."""
        log_p = _log_softmax(self.logits(phi, x))
        value = -(onehot * log_p).sum(axis=-1).mean(axis=-1)
        pull = (np.exp(log_p) - onehot) / x.shape[0]  # d/dlogits of the mean
        return value, np.matmul(pull.transpose(0, 2, 1), x).reshape(len(phi), -1)

    def support(self, phi, tasks):
        return self._cross_entropy(phi, self.x_train, self.train_onehot[None])

    def query(self, phi, tasks, target=None):
        readout = self.logits(phi, self.x_val).reshape(len(phi), -1)
        if target is None:
            return readout, None
        onehot = np.asarray(target).reshape(len(phi), -1, self.n_classes)
        return readout, self._cross_entropy(phi, self.x_val, onehot)[1]

    def query_loss(self, readout, target) -> np.ndarray:
        """Mean validation cross-entropy per task (T,): the upper level's loss (`QueryLoss`)."""
        T = len(readout)
        log_p = _log_softmax(np.asarray(readout).reshape(T, -1, self.n_classes))
        return -(np.asarray(target).reshape(log_p.shape) * log_p).sum(axis=-1).mean(axis=-1)

    def evaluate(self, phi: np.ndarray, x, y) -> tuple[float, float]:
        """(mean cross-entropy, accuracy) of the weights phi (P,) on inputs x (N, D) and labels y (N,)."""
        logits = self.logits(phi[None], self.features(x))[0]
        y = np.asarray(y, dtype=int)
        loss = -_log_softmax(logits)[np.arange(len(y)), y].mean()
        return float(loss), float((logits.argmax(axis=1) == y).mean())


class RegularisationSystem(BilevelSystem):
    """A bilevel system whose meta-parameters are log lambda, one per lower-level parameter, the prior at 0.

    strength: the initial lambda (P,) or a scalar, > 0. The derivatives of the penalty
    lambda_k / 2 phi_k^2 in theta_k = log lambda_k are lambda_k phi_k^2 / 2 and, mixed with phi,
    lambda_k phi_k (the App. B rule with the chain rule of the exponential).
    """

    def __init__(self, model, strength=1e-2, *, inner: InnerSolve | None = None, check: bool = True,
                 warm: bool = True):
        super().__init__(model, prior=0.0, strength=strength, inner=inner, check=check)
        if not (self._lambda > 0).all():
            raise AeqpropError("regularisation learning: the strengths are exp(theta), so they must start > 0")
        self.warm = warm
        self._previous = None  # the latest free solution

    def settle(self, phase: Phase, start=None, callback=None):
        """As a bilevel system's, but with `warm` a free phase starts from the latest free solution (the lower
        level keeps its weights between meta-steps). L_in is strongly convex: the start changes the time to
        the solution, not the solution."""
        if start is None and self.warm and phase.beta == 0.0 and self._previous is not None and \
                self._previous.phi.shape[0] == len(phase.inputs):
            start = replace(self._previous, phase=phase)
        state = super().settle(phase, start, callback)
        if phase.beta == 0.0:
            self._previous = state
        return state

    @property
    def parameters(self) -> np.ndarray:
        return np.log(self._lambda)

    @parameters.setter
    def parameters(self, theta: np.ndarray) -> None:
        theta = np.array(theta, dtype=np.float64)
        if theta.shape != self._lambda.shape:
            raise AeqpropError(f"parameters: expected shape {self._lambda.shape}, got {theta.shape}")
        if not np.all(np.isfinite(theta)):
            raise DivergenceError("non-finite meta-parameters: the meta-learning step diverged")
        self._lambda = np.exp(theta)

    def parameter_bounds(self):
        return None

    def per_parameter(self, values: dict) -> np.ndarray:
        """A (P,) array of the one group's value: {"strength": value}."""
        if set(values) != {"strength"}:
            raise KeyError(f"expected a value for the group strength, got {sorted(values)}")
        return np.full(self.model.size, float(values["strength"]))

    def _split(self, theta=None):
        return self._omega, (self._lambda if theta is None else np.exp(theta))

    def prior_parameter_gradient(self, phi, theta=None) -> np.ndarray:
        """d/dtheta of the penalty per task (T, P): lambda (phi - omega)^2 / 2."""
        omega, lam = self._split(theta)
        return 0.5 * lam * (phi - omega) ** 2

    def prior_mixed(self, phi, adjoint, theta=None) -> np.ndarray:
        """adjoint^T d2/dphi dtheta of the penalty per task (T, P): lambda (phi - omega) adjoint."""
        omega, lam = self._split(theta)
        return lam * (phi - omega) * adjoint

    def output_cost(self, outputs, target) -> np.ndarray:
        """The validation cross-entropy of readouts (T,): the loss a nudge of strength beta adds beta times of."""
        return self.model.query_loss(outputs, target)

    def prior_part(self, gradient: np.ndarray) -> np.ndarray:
        """No prior is learnt here: the first-order rules, which move the prior only, move nothing."""
        return np.zeros_like(gradient)

    def relax_parameters(self, state, knobs, epsilon):
        raise AeqpropError("regularisation learning has no knob-coupled relaxation: use a CML or implicit estimator")

    def weights(self, state) -> np.ndarray:
        """The lower level's learnt weights (P,) of the first task of a state."""
        return state.phi[0]
