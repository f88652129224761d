"""What a rule hands the training loop: a gradient estimate, or (Aeqprop) the parameters the physics moved to."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class Estimate:
    gradient: np.ndarray  # (P,) estimate of the batch-mean loss gradient
    outputs: np.ndarray | None  # free-phase outputs (B, n_outputs), when the rule measured them
    free_state: object = None  # the free equilibrium, when the rule computed it
    betas: tuple[float, float] = (0.0, 0.0)  # (beta_1, beta_2) of the contrast (Lyapunov trace)
    new_parameters: np.ndarray | None = None  # Aeqprop: theta as read after the step
    extras: dict = field(default_factory=dict)
