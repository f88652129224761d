"""Time per relaxation iteration of Hopfield networks against the time of its matrix products alone.

    python scripts/hopfield_bench.py                 # dense 784-2048-10 (B=32) and DCHN x0.25 (B=128)
    python scripts/hopfield_bench.py --epoch-steps 200   # also c-ep training steps, 784-1024-10, B=16

For each network: one relaxation iteration (every layer once, exact block updates, input drive
precomputed) is timed, then the same GEMMs on ready operands (no clipping, no im2col, no
pooling), then the GEMMs plus the im2col copies. Reported: median milliseconds and the ratio.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: threaded BLAS stalls on a shared 2-core box

import numpy as np  # noqa: E402

from aeqprop_circuits.bench.hopfield import median_seconds as median_time
from aeqprop_circuits.systems.base import Phase
from aeqprop_circuits.systems.hopfield import Conv, build_model
from aeqprop_circuits.systems.hopfield.interactions import im2col


def iteration_vs_products(net, batch_size, repeats, phase_beta=0.0):
    rng = np.random.default_rng(0)
    x = rng.random((batch_size, net.n_inputs)).astype(np.float32)
    y = np.eye(net.n_outputs)[rng.integers(0, net.n_outputs, batch_size)]
    phase = Phase(x, phase_beta, y)
    state = net.settle(Phase(x), start=None)  # realistic operating point
    drive, xin = net._input_drive(x)
    order = net._order(phase)
    nudge = net._nudge_terms(phase)
    routes: dict = {}

    def iteration():
        net._sweep(state.layers, order, phase, net.weights, net.biases, net._flipped, drive, routes, nudge)

    # the products one iteration performs: forward of interactions 2..N, backward of 2..N
    operands = []
    for k in range(1, net.n_layers):
        inter = net.interactions[k]
        pre, post = state.layers[k - 1], state.layers[k]
        if isinstance(inter, Conv):
            cols = im2col(pre, inter.kernel, inter.padding)
            up = inter._unpool(post, inter.routing(pre, net.weights[k]))
            cols_t = im2col(up, inter.kernel, inter.kernel - 1 - inter.padding)
            operands.append((cols.reshape(-1, cols.shape[-1]), net.weights[k]))
            operands.append((cols_t.reshape(-1, cols_t.shape[-1]), net._flipped[k]))
            if inter.has_routing:  # max pooling: the backward needs the routing of the updated pre
                operands.append((cols.reshape(-1, cols.shape[-1]), net.weights[k]))
        else:
            operands.append((pre.reshape(len(pre), -1), net.weights[k]))
            operands.append((post, net.weights[k].T))

    def products():
        for a, b in operands:
            a @ b

    def products_and_im2col():
        for k in range(1, net.n_layers):
            inter = net.interactions[k]
            if isinstance(inter, Conv):
                im2col(state.layers[k - 1], inter.kernel, inter.padding)
                im2col(state.layers[k], inter.kernel, inter.kernel - 1 - inter.padding)
        products()

    def input_drive():
        net.interactions[0].forward(xin, net.weights[0])

    return {name: median_time(fn, repeats) * 1e3 for name, fn in
            [("iteration", iteration), ("products", products), ("products+im2col", products_and_im2col),
             ("input drive (once per phase)", input_drive)]}


def training_steps(steps, batch_size=16, iterations=15, beta=0.2, lr=0.05):
    """c-ep steps on 784-1024-10 with the reference implementation's settings (15 + 15 iterations),
    through the lean in-place loop `aeqprop train` uses (runs/inplace.py; `aeqprop bench hopfield`
    reports more: parts of a step, CPU time, the generic path)."""
    from aeqprop_circuits.data.datasets import load_dataset
    from aeqprop_circuits.experiments.inplace import ep_step
    from aeqprop_circuits.learning.algorithms import get_algorithm

    data = load_dataset("fmnist")
    net = build_model("hopfield:784-1024-10", threshold=0.0, max_iterations=(iterations, iterations),
                      schedule="sequential", init="aeqprop", gains=[0.8, 1.2])
    rule = get_algorithm("c-ep", beta=beta)
    x_all = data.x_train.astype(np.float32)
    start = time.perf_counter()
    for step in range(steps):
        idx = slice(step * batch_size, (step + 1) * batch_size)
        ep_step(net, rule, x_all[idx], data.targets(data.y_train[idx], 10), lr)
    per_step = (time.perf_counter() - start) / steps
    return per_step, per_step * len(data.x_train) / batch_size


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--epoch-steps", type=int, default=0, help="also time this many c-ep training steps")
    args = parser.parse_args()
    cases = [("dense 784-2048-10, B=32", build_model("aeqprop-dense"), 32),
             ("dense 784-1024-10, B=16", build_model("hopfield:784-1024-10"), 16),
             ("aeqprop conv (avg pool), B=16", build_model("aeqprop-conv"), 16),
             ("DCHN x0.25 (max pool, fp16 emulated), B=128", build_model("ebl-dchn"), 128),
             ("DCHN x0.25 (max pool, fp32), B=128", build_model("ebl-dchn", precision="float32"), 128)]
    print(f"{'network':48s} {'iteration':>10s} {'products':>9s} {'+im2col':>8s} {'ratio':>6s} "
          f"{'input drive':>11s}  (ms)")
    for name, net, batch in cases:
        t = iteration_vs_products(net, batch, args.repeats)
        ratio = t["iteration"] / t["products"]
        print(f"{name:48s} {t['iteration']:10.3f} {t['products']:9.3f} {t['products+im2col']:8.3f} "
              f"{ratio:6.2f} {t['input drive (once per phase)']:11.3f}")
    if args.epoch_steps:
        per_step, per_epoch = training_steps(args.epoch_steps)
        print(f"c-ep 784-1024-10, B=16, 15+15 iterations: {per_step * 1e3:.1f} ms/step, "
              f"{per_epoch:.0f} s per Fashion-MNIST epoch (extrapolated from {args.epoch_steps} steps)")


if __name__ == "__main__":
    main()
