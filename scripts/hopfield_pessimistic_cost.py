"""Aeqprop-pessimistic on the aeqprop-dense preset with the cost scaled by c: does the -beta phase stay bounded?

    OPENBLAS_NUM_THREADS=1 python scripts/hopfield_pessimistic_cost.py 0.5 runs/hopfield/pessimistic-c0.5
    OPENBLAS_NUM_THREADS=1 python scripts/hopfield_pessimistic_cost.py 1.0 runs/hopfield/pessimistic-c1

One epoch over the first 3 200 training images (100 steps of batch 32), C = c |s_N - y|^2.
"""

import sys

from aeqprop_circuits.experiments.session import run_training
from aeqprop_circuits.systems.hopfield.models import PRESETS

scale = float(sys.argv[1])
opts = {**PRESETS["aeqprop-dense"]["model_options"], "cost_scale": scale}
run_training(None, None, True, {"preset": "aeqprop-dense", "algorithm": "aeqprop-pessimistic", "max_train": 3200,
             "epochs": 1, "model_options": opts, "trace_every": 0, "out": sys.argv[2]}, echo=print)
