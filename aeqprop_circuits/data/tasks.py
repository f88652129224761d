"""Task families for meta-learning: each sample of a `Dataset` is a whole task.

A task row packs what the lower level learns from and where it is asked: its support set
(inputs and targets) and its query inputs, `TaskLayout.pack`; the row's label is the query
targets. A bilevel system (systems/bilevel.py) unpacks the rows with the same layout, so the
training loop, run directories and evaluation treat tasks exactly as they treat samples.

- `sinusoid_tasks`: few-shot regression of y = A sin(pi z + p), amplitude A and phase p random
  per task, z uniform in [-1, 1] (MAML's sinusoid family on the input range of the circuits, whose
  Fourier-feature inputs carry sin(pi z) and cos(pi z)).
- `quadratic_tasks`: the analytically tractable model of the CML paper's App. E: the support and
  query minimisers phi_t, phi_v drawn around a task centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aeqprop_circuits.data.datasets import Dataset
from aeqprop_circuits.errors import DatasetError


@dataclass(frozen=True)
class TaskLayout:
    """How a task row is laid out: support inputs (shots, width), support targets (shots, outputs), query inputs."""

    shots: int
    queries: int
    width: int = 1  # raw input values per point
    outputs: int = 1  # target values per point

    @property
    def row_size(self) -> int:
        return self.shots * (self.width + self.outputs) + self.queries * self.width

    def pack(self, support_x, support_y, query_x) -> np.ndarray:
        """Task rows (T, row_size) from support inputs (T, K, w), support targets (T, K, m), query inputs (T, Q, w)."""
        T = len(support_x)
        return np.concatenate([np.reshape(support_x, (T, -1)), np.reshape(support_y, (T, -1)),
                               np.reshape(query_x, (T, -1))], axis=1)

    def unpack(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(support inputs (T, K, w), support targets (T, K, m), query inputs (T, Q, w)) of task rows."""
        rows = np.atleast_2d(rows)
        if rows.shape[1] != self.row_size:
            raise DatasetError(f"task rows of {rows.shape[1]} values; this layout ({self.shots} shots, "
                               f"{self.queries} queries) packs {self.row_size}")
        T, K, Q, w, m = len(rows), self.shots, self.queries, self.width, self.outputs
        a, b = K * w, K * (w + m)
        return rows[:, :a].reshape(T, K, w), rows[:, a:b].reshape(T, K, m), rows[:, b:].reshape(T, Q, w)


def sinusoid_tasks(train: int, test: int, shots: int = 5, queries: int = 10, seed: int = 0,
                   amplitude: tuple[float, float] = (0.1, 0.5), phase: tuple[float, float] = (0.0, np.pi)
                   ) -> tuple[Dataset, TaskLayout]:
    """`train` and `test` tasks y = A sin(pi z + p), A and p uniform in their ranges, z uniform in [-1, 1] (volts).

    Each task has `shots` support points and `queries` query points. Returns the tasks as a
    regression Dataset (rows: `TaskLayout.pack`, labels: the query targets) and the layout.
    """
    if min(train, test, shots, queries) < 1:
        raise DatasetError(f"sinusoid tasks: expected at least one train and test task, shot and query; got "
                           f"train={train}, test={test}, shots={shots}, queries={queries}")
    layout = TaskLayout(shots, queries)
    rng = np.random.default_rng(seed)

    def draw(count):
        a = rng.uniform(*amplitude, (count, 1, 1))
        p = rng.uniform(*phase, (count, 1, 1))
        z = rng.uniform(-1.0, 1.0, (count, shots + queries, 1))
        y = a * np.sin(np.pi * z + p)
        return layout.pack(z[:, :shots], y[:, :shots], z[:, shots:]), y[:, shots:, 0]

    x_train, y_train = draw(train)
    x_test, y_test = draw(test)
    return Dataset("sinusoid", x_train, y_train, x_test, y_test, 0), layout


def quadratic_tasks(count: int, size: int = 50, seed: int = 0, centre_std: float = 1.0,
                    spread: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """App. E's tasks: support and query minimisers (count, size) each, drawn with std `spread` around a
    task centre of std `centre_std`."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(0.0, centre_std, (count, size))
    return centre + rng.normal(0.0, spread, (count, size)), centre + rng.normal(0.0, spread, (count, size))
