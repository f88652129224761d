"""One Fashion-MNIST epoch of c-ep on a dense 784-H-10 net at the reference settings, for one learning rate.

    python scripts/hopfield_lr_sweep.py H LR [STEPS] [MODEL_OPTIONS_JSON]
    python scripts/hopfield_lr_sweep.py 1024 0.03 3750 '{"init": "ebl", "gains": [1, 1]}'

Settings of issue 6's reference (beta 0.2, batch 16, 15 free and 15 nudged iterations, threshold
0, sequential order) through the lean loop (runs/inplace.py), batches in the order of
`aeqprop train`'s epoch 1. LR is a number or a JSON dict of per-group rates ({"w1": .., "b1": ..});
MODEL_OPTIONS default to the Aeqprop init with gains [0.8, 1.2]. Prints the test error on the first
2000 test images after 100, 500 and 1500 steps (with the mean hidden activity), then on all 10 000
after STEPS steps (default: the epoch) and the wall seconds. The sweep behind the reference-dense
preset's learning rate and init (docs/hopfield.md).
"""

import json
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: threaded BLAS stalls on a shared 2-core box

import numpy as np  # noqa: E402

from aeqprop_circuits.data.datasets import load_dataset  # noqa: E402
from aeqprop_circuits.experiments.inplace import ep_step  # noqa: E402
from aeqprop_circuits.experiments.trainer import TrainOptions, epoch_batches  # noqa: E402
from aeqprop_circuits.learning.algorithms import get_algorithm  # noqa: E402
from aeqprop_circuits.systems.base import Phase  # noqa: E402
from aeqprop_circuits.systems.hopfield import build_model  # noqa: E402


def main():
    data = load_dataset("fmnist")
    hidden, lr = int(sys.argv[1]), json.loads(sys.argv[2])
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 3750
    extra = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {"gains": [0.8, 1.2]}
    net = build_model(f"hopfield:784-{hidden}-10", threshold=0.0, max_iterations=(15, 15), schedule="sequential",
                      **extra)
    rates = net.group_rates(lr)
    rule = get_algorithm("c-ep", beta=0.2)
    x_all, y_all = data.x_train.astype(np.float32), data.targets(data.y_train, 10, 1.0)

    def error(n=10000):
        state = net.settle(Phase(data.x_test[:n]))
        return (net.outputs(state).argmax(1) != data.y_test[:n]).mean(), float(state.layers[0].mean())

    began = time.time()
    for step, index in enumerate(epoch_batches(60000, 1, TrainOptions(batch_size=16, progress=False))):
        ep_step(net, rule, x_all[index], y_all[index], rates)
        if step in (100, 500, 1500):
            print(hidden, lr, step, error(2000), flush=True)
        if step + 1 >= steps:
            break
    print(hidden, lr, sys.argv[4:], "final", error(), round(time.time() - began, 1), flush=True)


if __name__ == "__main__":
    main()
