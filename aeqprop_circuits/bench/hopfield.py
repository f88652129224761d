"""`aeqprop bench hopfield`: the cost of Hopfield relaxations and training steps.

`bench_hopfield`: a c-ep training step of a dense net at the reference settings (preset
reference-dense: a PyTorch implementation trains 784-H-10 by c-ep with beta = 0.2, batch 16,
15 free and 15 nudged iterations). For each H this times, on Fashion-MNIST images (uniform
random pixels if the dataset is not installed):

- `steps` steps of the rule's in-place step (`ep_step`, what `aeqprop train` runs), after a
  warm-up: ms per step and the epoch it extrapolates to (60 000 / batch steps), wall and CPU
  (process) time (on contended cores wall time overstates the cost
  of a step, CPU time much less so);
- the parts of a step: the input drive (once per batch), the free relaxation (B rows), the
  two nudged relaxations settled together (2B rows), the in-place update;
- one relaxation iteration (the free phase's time / its iterations, and the stacked nudged
  one's) against its matrix products alone: the same GEMMs on operands of the same shapes,
  layout and dtype, as many as the phase makes in a row, timed in turn with the phases (wall
  and CPU time); and the marginal iteration, what
  one more iteration adds to a phase (phases of twice the iterations, minus; CPU time), which
  leaves out what a phase costs once (its setup, the last iteration's L1 change, its states);
- `generic_steps` steps of the generic path (rule.estimate, SGD on the float64 theta, the
  parameters setter), for comparison.

`bench_iteration_cost`: one relaxation iteration (every layer once, exact block updates, the
input drive precomputed) of each reference network, dense, convolutional and DCHN, against
the same matrix products on ready operands (no clipping, im2col or pooling), and against
those products plus the im2col copies.
"""

from __future__ import annotations

import os
import time

import numpy as np

from aeqprop_circuits.experiments.presets import PRESETS
from aeqprop_circuits.learning.algorithms import ep_step, get_algorithm
from aeqprop_circuits.systems.base import Phase
from aeqprop_circuits.systems.hopfield.interactions import Conv, im2col
from aeqprop_circuits.systems.hopfield.models import build_model

TRAIN_SIZE = 60_000


def _images(count: int, seed: int):
    try:
        from aeqprop_circuits.data.datasets import load_dataset

        data = load_dataset("fmnist")
        return data.x_train[:count].astype(np.float32), data.targets(data.y_train[:count], 10, 1.0), "fmnist"
    except Exception:  # noqa: BLE001 - dataset missing: the timing does not depend on the pixel values
        rng = np.random.default_rng(seed)
        return (rng.random((count, 784)).astype(np.float32),
                np.eye(10)[rng.integers(0, 10, count)], "random")


def median_seconds(fn, repeats: int) -> float:
    """Median wall time of `repeats` calls of fn, after one warm-up call."""
    return interleaved_medians({"fn": fn}, repeats)[0]["fn"]


def interleaved_medians(functions: dict, repeats: int) -> tuple[dict, dict]:
    """Median wall and CPU (process) seconds of a call of each function, called in turn (f, g, .., f, g, ..).

    In turn rather than one after the other, so that changes in competing work hit all
    alike and their ratios (an iteration against its GEMMs) do not compare two moments; CPU
    time also leaves out the time the process waited for a core. One warm-up call each first.
    """
    wall = {name: [] for name in functions}
    cpu = {name: [] for name in functions}
    for fn in functions.values():
        fn()
    for _ in range(repeats):
        for name, fn in functions.items():
            began, began_cpu = time.perf_counter(), time.process_time()
            fn()
            cpu[name].append(time.process_time() - began_cpu)
            wall[name].append(time.perf_counter() - began)
    return ({name: float(np.median(t)) for name, t in wall.items()},
            {name: float(np.median(t)) for name, t in cpu.items()})


def bench_one(hidden: int, *, batch: int = 16, iterations: int = 15, beta: float = 0.2, lr=None,
              steps: int = 300, generic_steps: int = 30, repeats: int = 30, seed: int = 0, warmup: int = 10) -> dict:
    preset = PRESETS["reference-dense"]
    options = {**preset["model_options"], "max_iterations": (iterations, iterations)}
    lr = preset["lr"] if lr is None else lr
    net = build_model(f"hopfield:784-{hidden}-10", seed=seed, **options)
    rule = get_algorithm("c-ep", beta=beta)
    count = (warmup + steps + generic_steps) * batch
    x_all, y_all, source = _images(count, seed)
    batches = [(x_all[i:i + batch], y_all[i:i + batch]) for i in range(0, count - batch + 1, batch)]
    rates = net.group_rates(lr)
    load_before = os.getloadavg()[0]

    for x, y in batches[:warmup]:
        ep_step(net, rule, x, y, rates)
    wall, cpu = time.perf_counter(), time.process_time()
    for x, y in batches[warmup:warmup + steps]:
        ep_step(net, rule, x, y, rates)
    step_wall = (time.perf_counter() - wall) / steps
    step_cpu = (time.process_time() - cpu) / steps

    # the parts of one step, on one batch at the current parameters
    x, y = batches[0]
    base = Phase(x, 0.0, y)
    drive_time = median_seconds(lambda: net.interactions[0].forward(x, net.weights[0]) + net.biases[0], repeats)
    free = net.settle(base)
    nudged = net.settle_nudges(base, [-beta, beta], start=free)
    saved = [w.copy() for w in net.weights], [b.copy() for b in net.biases]
    # a tiny rate (BLAS returns early for alpha = 0); the weights are restored after
    contrast = [(-0.5 / beta, nudged[0]), (0.5 / beta, nudged[1])]
    update_time = median_seconds(lambda: net.descend(contrast, 1e-12), repeats)
    for w, s in zip(net.weights + net.biases, saved[0] + saved[1]):
        np.copyto(w, s)
    net._version += 1  # the weights changed in place: no cached drive or W^T of the updated ones

    def products(rows):  # a phase's GEMMs: per iteration s_2 W_2^T (hidden) and s_1 W_2 (output)
        s1 = np.concatenate([free.layers[0]] * rows)
        s2 = np.concatenate([free.layers[1]] * rows)
        w2, w2t = net.weights[1], np.ascontiguousarray(net.weights[1].T)
        h, o = np.empty_like(s1), np.empty_like(s2)

        def phase():
            for _ in range(iterations):
                np.matmul(s2, w2t, out=h)
                np.matmul(s1, w2, out=o)
        return phase

    def free_phase(count=iterations):  # as in a step, where the free phase transposes W_2 and the nudged reuse it
        net.max_iterations = (count, count)
        net._transposed_cache = None
        return net.settle(base)

    def nudged_phases(count=iterations):
        net.max_iterations = (count, count)
        return net.settle_nudges(base, [-beta, beta], start=free)

    phases = {"free": free_phase, "nudged": nudged_phases, "products_free": products(1), "products_nudged": products(2),
              "free_twice": lambda: free_phase(2 * iterations), "nudged_twice": lambda: nudged_phases(2 * iterations)}
    wall_times, cpu_times = interleaved_medians(phases, repeats * 3)
    net.max_iterations = (iterations, iterations)
    free_time, nudged_time = wall_times["free"], wall_times["nudged"]
    per_iteration = {f"{clock}{name}": times[name] / iterations * 1e3
                     for clock, times in (("", wall_times), ("cpu_", cpu_times)) for name in times}
    # what one more iteration adds to a phase (CPU), without the phase's fixed costs
    marginal = {name: per_iteration[f"cpu_{name}_twice"] - per_iteration[f"cpu_{name}"] for name in ("free", "nudged")}

    theta, rate = net.parameters, net.per_parameter(lr) if isinstance(lr, dict) else lr
    began = time.perf_counter()
    for x, y in batches[warmup + steps:]:
        theta = theta - rate * rule.estimate(net, x, y).gradient
        net.parameters = theta
    generic_wall = (time.perf_counter() - began) / max(1, generic_steps)
    epoch_steps = TRAIN_SIZE / batch
    return {
        "network": f"784-{hidden}-10", "batch": batch, "iterations": iterations, "data": source, "steps": steps,
        "step_ms": step_wall * 1e3, "step_cpu_ms": step_cpu * 1e3,
        "epoch_s": step_wall * epoch_steps, "epoch_cpu_s": step_cpu * epoch_steps,
        "drive_ms": drive_time * 1e3, "free_ms": free_time * 1e3, "nudged_ms": nudged_time * 1e3,
        "update_ms": update_time * 1e3,
        # ms per iteration: a phase's time / its iterations, its GEMMs' likewise; wall and CPU
        "iteration_free_ms": per_iteration["free"], "products_free_ms": per_iteration["products_free"],
        "iteration_nudged_ms": per_iteration["nudged"], "products_nudged_ms": per_iteration["products_nudged"],
        "iteration_free_cpu_ms": per_iteration["cpu_free"], "products_free_cpu_ms": per_iteration["cpu_products_free"],
        "iteration_nudged_cpu_ms": per_iteration["cpu_nudged"],
        "products_nudged_cpu_ms": per_iteration["cpu_products_nudged"],
        "marginal_iteration_free_cpu_ms": marginal["free"], "marginal_iteration_nudged_cpu_ms": marginal["nudged"],
        "generic_step_ms": generic_wall * 1e3, "generic_epoch_s": generic_wall * epoch_steps,
        "load_before": load_before, "load_after": os.getloadavg()[0],
    }


def bench_hopfield(hidden=(1024, 2048), **options) -> list[dict]:
    return [bench_one(h, **options) for h in hidden]


def _iteration_ratio(row: dict, phase: str) -> str:
    wall, products = row[f"iteration_{phase}_ms"], row[f"products_{phase}_ms"]
    cpu = row[f"iteration_{phase}_cpu_ms"] / row[f"products_{phase}_cpu_ms"]
    marginal = row[f"marginal_iteration_{phase}_cpu_ms"] / row[f"products_{phase}_cpu_ms"]
    return (f"{wall * 1e3:.0f} / {products * 1e3:.0f} us "
            f"({wall / products:.2f}x; CPU {cpu:.2f}x, marginal {marginal:.2f}x)")


def format_report(rows: list[dict]) -> str:
    lines = ["| network | step ms (CPU) | epoch s (CPU) | drive | free | nudged x2 | update | "
             "iteration / its GEMMs, B rows | iteration / its GEMMs, 2B rows | generic step ms (epoch s) | load |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['network']}, B={r['batch']}, {r['iterations']}+{r['iterations']} it | "
            f"{r['step_ms']:.2f} ({r['step_cpu_ms']:.2f}) | {r['epoch_s']:.1f} ({r['epoch_cpu_s']:.1f}) | "
            f"{r['drive_ms']:.2f} | {r['free_ms']:.2f} | {r['nudged_ms']:.2f} | {r['update_ms']:.2f} | "
            f"{_iteration_ratio(r, 'free')} | {_iteration_ratio(r, 'nudged')} | "
            f"{r['generic_step_ms']:.1f} ({r['generic_epoch_s']:.0f}) | "
            f"{r['load_before']:.2f} -> {r['load_after']:.2f} |")
    lines.append("(ms per step of the lean c-ep loop, wall and CPU; epoch = 60 000 / B steps, training only; "
                 "iteration = a phase's time / its iterations, wall, with the ratio in CPU time after it and that "
                 "of the marginal iteration (what one more adds to a phase, its fixed costs left out); "
                 f"data: {rows[0]['data'] if rows else '-'})")
    return "\n".join(lines)


# (preset or model spec, options over the preset's, batch) of `bench_iteration_cost`
ITERATION_CASES = (("aeqprop-dense", {}, 32), ("reference-dense", {}, 16), ("aeqprop-conv", {}, 16),
                   ("ebl-dchn", {}, 128), ("ebl-dchn", {"precision": "float32"}, 128))


def _network(name: str, **options):
    preset = PRESETS.get(name)
    if preset is None:
        return build_model(name, **options)
    return build_model(preset["model"], **{**preset["model_options"], **options})


def iteration_cost(net, batch: int, repeats: int) -> dict:
    """Median ms of one relaxation iteration of `net` on `batch` random images, of its matrix products
    alone, of those and the im2col copies, and of the input drive (once per phase)."""
    rng = np.random.default_rng(0)
    x = rng.random((batch, net.n_inputs)).astype(np.float32)
    phase = Phase(x)
    state = net.settle(phase)  # an operating point the iteration starts from
    drive, xin = net._input_drive(x)
    order = net._order(phase)
    nudge = net._nudge_terms(phase)
    routes: dict = {}

    def iteration():
        net._sweep(state.layers, order, phase, net.weights, net.biases, net._flipped, drive, routes, nudge)

    operands = []  # the products one iteration makes: forward of interactions 2..N, backward of 2..N
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

    wall, _ = interleaved_medians({"iteration": iteration, "products": products,
                                   "products_im2col": products_and_im2col, "input_drive": input_drive}, repeats)
    return {f"{name}_ms": seconds * 1e3 for name, seconds in wall.items()}


def bench_iteration_cost(cases=ITERATION_CASES, repeats: int = 30) -> list[dict]:
    rows = []
    for name, options, batch in cases:
        net = _network(name, **options)
        rows.append({"network": name, "precision": net.precision, "batch": batch,
                     **iteration_cost(net, batch, repeats)})
    return rows


def format_iteration_cost(rows: list[dict]) -> str:
    lines = ["| network | B | iteration (ms) | its products (ms) | products + im2col (ms) | iteration / products "
             "| input drive, once per phase (ms) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['network']} ({r['precision']}) | {r['batch']} | {r['iteration_ms']:.3f} "
                     f"| {r['products_ms']:.3f} | {r['products_im2col_ms']:.3f} "
                     f"| {r['iteration_ms'] / r['products_ms']:.2f} | {r['input_drive_ms']:.3f} |")
    lines.append("(medians of repeats, called in turn; random images, from the state a free phase settles to)")
    return "\n".join(lines)
