"""Device-mismatched copies of one netlist as the tasks of a bilevel system.

Each task is one realisation of the netlist as hardware (systems/hardware.py, kind `mismatch`):
every element value off by its own factor e^(sigma n), the trainable conductances programmed
through per-device gains. A task row is the copy's hardware seed. The lower level learns the
copy's programmed values phi = log(theta) on a support set (f = 1/2 sum_k |o(x_k) - y_k|^2,
measured on the copy: exactly, or in situ by an EP rule's estimate); the readouts are the copy's
outputs at the query points. With `InnerSolve("gd", steps=K)` the lower level is K steps of
in-situ learning from the prior, so a prior meta-learnt over copies is one that an unseen copy
turns into a good circuit in K steps.

A task row is (hardware seed, query set): query set 0 reads the copy at the query points,
1 at the evaluation points (e.g. held-out data for held-out copies, so that what a prior is
judged on never entered its meta-training).
"""

from __future__ import annotations

import numpy as np

from aeqprop_circuits.errors import AeqpropError
from aeqprop_circuits.systems.base import Phase, PhysicalSystem
from aeqprop_circuits.systems.bilevel import Measure
from aeqprop_circuits.systems.circuit import CircuitSystem
from aeqprop_circuits.systems.hardware import HardwareSpec, build_hardware


class MismatchedCopies:
    """The `TaskModel` of mismatched copies (module docstring).

    model: the netlist as designed; mismatch: sigma of the copies' element values; support:
    (x, y) the copies learn from; query: inputs (N_q, n_inputs) the readouts are taken at;
    evaluation: inputs as many as the query's, read by rows whose second value is 1 (default: the query);
    measure: (system, inputs, targets) -> (outputs, batch-mean gradient in theta), None for the
    copy's exact gradient (implicit differentiation of its true co-content).
    """

    n_inputs = 2  # (hardware seed, query set)

    def __init__(self, model: CircuitSystem, mismatch: float, support: tuple[np.ndarray, np.ndarray],
                 query: np.ndarray, measure: Measure | None = None, max_cached: int = 256,
                 evaluation: np.ndarray | None = None):
        if not mismatch > 0:
            raise AeqpropError(f"mismatched copies: mismatch must be positive, got {mismatch}")
        self.model, self.mismatch, self.measure = model, float(mismatch), measure
        self.g0 = model.g0
        self.support_x, self.support_y = (np.atleast_2d(np.asarray(a, dtype=np.float64)) for a in support)
        self.query_x = np.atleast_2d(np.asarray(query, dtype=np.float64))
        self.evaluation_x = self.query_x if evaluation is None else np.atleast_2d(np.asarray(evaluation, float))
        if self.evaluation_x.shape != self.query_x.shape:
            raise AeqpropError(f"mismatched copies: {len(self.evaluation_x)} evaluation points for "
                               f"{len(self.query_x)} query points; give as many")
        low, high = model.parameter_bounds()
        self._bounds = (np.log(low), np.log(high))
        self.initial = np.log(model.parameters)
        self.size = len(self.initial)
        self.n_outputs = len(self.query_x) * model.n_outputs
        self.max_cached = int(max_cached)
        self._copies: dict[int, PhysicalSystem] = {}

    def bounds(self):
        return self._bounds

    def copy(self, seed) -> PhysicalSystem:
        """The hardware of one task row (its seed), built once."""
        seed = int(round(float(np.asarray(seed).ravel()[0])))  # a row (seed, query set) or the seed
        if seed < 0:
            raise AeqpropError(f"mismatched copies: a task row is a hardware seed >= 0, got {seed}")
        if seed not in self._copies:
            if len(self._copies) >= self.max_cached:
                self._copies.pop(next(iter(self._copies)))
            self._copies[seed] = build_hardware(self.model, HardwareSpec("mismatch", self.mismatch, seed))
        return self._copies[seed]

    def run(self, phi: np.ndarray, row, x: np.ndarray, y: np.ndarray | None = None):
        """One copy programmed with theta = e^phi: outputs (N, m) at x and, given y, the loss and its phi-gradient."""
        hardware, theta = self.copy(row), np.exp(phi)
        hardware.parameters = theta
        if y is None:
            return hardware.outputs(hardware.settle(Phase(x))), None, None
        if self.measure is None:
            state = hardware.settle(Phase(x))
            outputs, gradient = hardware.outputs(state), hardware.loss_gradient(state, y)
        else:
            outputs, gradient = self.measure(hardware, x, y)
        return outputs, 0.5 * float(((outputs - y) ** 2).sum()), len(x) * gradient * theta

    def support(self, phi, tasks):
        losses, gradients = np.zeros(len(tasks)), np.zeros(phi.shape)
        for t, row in enumerate(tasks):
            _, losses[t], gradients[t] = self.run(phi[t], row, self.support_x, self.support_y)
        return losses, gradients

    def query(self, phi, tasks, target=None):
        readouts = np.zeros((len(tasks), self.n_outputs))
        gradients = None if target is None else np.zeros(phi.shape)
        for t, row in enumerate(tasks):
            points = self.evaluation_x if len(row) > 1 and row[1] == 1 else self.query_x
            y = None if target is None else np.asarray(target[t]).reshape(len(points), -1)
            outputs, _, gradient = self.run(phi[t], row, points, y)
            readouts[t] = outputs.ravel()
            if gradients is not None:
                gradients[t] = gradient
        return readouts, gradients
