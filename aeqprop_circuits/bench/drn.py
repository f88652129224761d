"""`aeqprop bench train`: the cost of a DRN training step, of its matrix products, of an epoch.

Times `steps` training steps (after a warm-up) of the in-place loop the trainer uses
(for one hidden layer, DRNSystem.contrast_step's fused step). The report says how much of a
step is BLAS: one more step runs with the DRN modules' `matmul` and `gemm_into` recording
the products it makes (their shapes, layouts and dtype), and those products are then timed
bare, on fresh operands, `steps` times; the timed steps themselves run uninstrumented. An epoch is
extrapolated from the step time (60 000 / batch steps for Fashion-MNIST) plus a measured
evaluation pass over the 10 000 test images (what the in-place trainer does after each epoch;
its training metrics are running means over the epoch's free phases). Wall and CPU (process)
time are both given, with the runnable-process count before and after (os.getloadavg):
on contended cores wall time overstates what a step costs.
Memory: the process's peak resident set (ru_maxrss, dataset included) and the peak of
Python/numpy allocations during 20 traced steps (tracemalloc).
"""

from __future__ import annotations

import os
import resource
import time
import tracemalloc

import numpy as np

from aeqprop_circuits.experiments.presets import DRN_PRESETS as PRESETS
from aeqprop_circuits.learning.algorithms import ep_step, get_algorithm
from aeqprop_circuits.systems import kernels
from aeqprop_circuits.systems.base import Phase
from aeqprop_circuits.systems.drn import signed as signed_module
from aeqprop_circuits.systems.drn import system as drn_module
from aeqprop_circuits.systems.models import load_system

TRAIN_SIZE, TEST_SIZE = 60_000, 10_000


def _data(n_inputs: int, n_outputs: int, count: int, seed: int):
    """Fashion-MNIST when it fits the model and is installed, else uniform random pixels and labels."""
    if n_inputs == 784 and n_outputs >= 10:
        try:
            from aeqprop_circuits.data.datasets import load_dataset

            data = load_dataset("fmnist")
            x = data.x_train[:count].astype(np.float32)
            y = data.targets(data.y_train[:count], n_outputs, 1.0).astype(np.float32)
            return x, y, "fmnist"
        except Exception:  # noqa: BLE001 - any missing-data error: fall back to synthetic inputs
            pass
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, (count, n_inputs)).astype(np.float32)
    y = np.eye(n_outputs, dtype=np.float32)[rng.integers(0, n_outputs, count)]
    return x, y, "random"


def _recorded_products(step) -> list[tuple]:
    """The matrix products `step()` makes: (kind, operand shapes, Fortran layouts, dtype)."""
    products = []

    def layout(*arrays):
        return tuple(a.shape for a in arrays), tuple(not a.flags.c_contiguous and a.flags.f_contiguous
                                                     for a in arrays)

    def matmul(a, b, out=None):
        products.append(("matmul" if out is None else "matmul into", *layout(a, b), np.result_type(a, b)))
        return np.matmul(a, b, out=out)

    def gemm_into(weights, left, right, alpha):
        products.append(("gemm", *layout(weights, left, right), weights.dtype))
        return kernels.gemm_into(weights, left, right, alpha)

    modules = (drn_module, signed_module)
    saved = [(module.matmul, module.gemm_into) for module in modules]
    try:
        for module in modules:
            module.matmul, module.gemm_into = matmul, gemm_into
        step()
    finally:
        for module, (matmul_, gemm_) in zip(modules, saved):
            module.matmul, module.gemm_into = matmul_, gemm_
    return products


def _time_products(products: list[tuple], repeats: int, seed: int) -> float:
    """Seconds for `repeats` runs of the bare products, on fresh operands of the recorded shapes and layouts."""
    rng = np.random.default_rng(seed)

    def operand(shape, fortran, dtype):
        values = rng.uniform(0.0, 1e-3, shape).astype(dtype)
        return np.asfortranarray(values) if fortran else values

    calls = []
    for kind, shapes, layouts, dtype in products:
        arrays = [operand(shape, fortran, dtype) for shape, fortran in zip(shapes, layouts)]
        if kind == "matmul":
            calls.append(lambda a=arrays[0], b=arrays[1]: np.matmul(a, b))
        elif kind == "matmul into":
            out = np.empty(np.matmul(*arrays).shape, dtype)
            calls.append(lambda a=arrays[0], b=arrays[1], out=out: np.matmul(a, b, out=out))
        else:
            calls.append(lambda w=arrays[0], left=arrays[1], right=arrays[2]: kernels.gemm_into(w, left, right, 1e-3))
    began = time.perf_counter()
    for _ in range(repeats):
        for call in calls:
            call()
    return time.perf_counter() - began


def bench_train(model: str = "drn:1568-100-10", preset: str | None = None, algorithm: str = "c-ep",
                steps: int = 300, batch: int | None = None, seed: int = 0, eval_samples: int = 4096,
                warmup: int = 20) -> dict:
    settings = dict(PRESETS[preset]) if preset else dict(PRESETS["drn-xs"])
    options = dict(settings["model_options"])
    if preset and not model:
        model = settings["model"]
    batch = batch or settings["batch_size"]
    system = load_system(model, seed=seed, **options)
    rule = get_algorithm(algorithm, beta=settings["beta"])
    lr = system.in_place_rates(system.per_parameter(settings["lr"]))  # per-block rates of the preset
    count = (steps + warmup + 21) * batch
    x, y, source = _data(system.n_inputs, system.n_outputs, max(count, eval_samples), seed)
    load_before = os.getloadavg()[0]
    for i in range(warmup):
        ep_step(system, rule, x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch], lr)
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(warmup, warmup + steps):
        ep_step(system, rule, x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch], lr)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    fused = any(plan is not None for plan in getattr(system, "_plans", {}).values())  # DRNSystem.contrast_step
    i = warmup + steps
    products = _recorded_products(lambda: ep_step(system, rule, x[i * batch:(i + 1) * batch],
                                                  y[i * batch:(i + 1) * batch], lr))
    gemm_seconds, gemm_calls = _time_products(products, steps, seed), len(products) * steps
    # Evaluation: free phases over batches of 512, as runs.trainer.evaluate does.
    e_wall, e_cpu = time.perf_counter(), time.process_time()
    for start in range(0, eval_samples, 512):
        system.outputs(system.settle(Phase(x[start:start + 512])))
    e_wall, e_cpu = time.perf_counter() - e_wall, time.process_time() - e_cpu
    tracemalloc.start()
    for i in range(warmup + steps + 1, warmup + steps + 21):
        ep_step(system, rule, x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch], lr)
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    steps_per_epoch = TRAIN_SIZE // batch
    evaluation = TEST_SIZE / eval_samples
    return {
        "model": model, "algorithm": algorithm, "batch": batch, "iterations": system.iterations,
        "dtype": str(system.dtype), "parameters": system.n_parameters, "data": source, "steps": steps,
        "step_path": "fused one-hidden-layer step" if fused else "generic phases",
        "ms_per_step_wall": 1e3 * wall / steps, "ms_per_step_cpu": 1e3 * cpu / steps,
        "ms_per_step_matmul": 1e3 * gemm_seconds / steps, "matmul_calls_per_step": gemm_calls / steps,
        "matmul_share": gemm_seconds / wall,
        "s_per_epoch_training_wall": wall / steps * steps_per_epoch,
        "s_per_epoch_training_cpu": cpu / steps * steps_per_epoch,
        "s_per_epoch_evaluation_wall": e_wall * evaluation, "s_per_epoch_evaluation_cpu": e_cpu * evaluation,
        "s_per_epoch_wall": (wall / steps * steps_per_epoch) + e_wall * evaluation,
        "s_per_epoch_cpu": (cpu / steps * steps_per_epoch) + e_cpu * evaluation,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_traced_step_mb": traced_peak / 2**20,
        "theta_mb": system.n_parameters * system.dtype.itemsize / 2**20,
        "runnable": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
    }


def format_report(r: dict) -> str:
    lines = [
        f"{r['model']}  {r['algorithm']}  batch {r['batch']}  {r['iterations']} block iterations/phase  "
        f"{r['dtype']}  {r['parameters']:,} conductances  ({r['data']} inputs, {r['steps']} steps, "
        f"{r['step_path']})",
        f"  step:    {r['ms_per_step_wall']:.3f} ms wall, {r['ms_per_step_cpu']:.3f} ms CPU; matrix products "
        f"{r['ms_per_step_matmul']:.3f} ms ({r['matmul_calls_per_step']:.0f} calls, "
        f"{100 * r['matmul_share']:.0f}% of the step)",
        f"  epoch:   training {r['s_per_epoch_training_wall']:.1f} s wall ({r['s_per_epoch_training_cpu']:.1f} s CPU)"
        f" + evaluation of the 10k test images {r['s_per_epoch_evaluation_wall']:.1f} s wall "
        f"({r['s_per_epoch_evaluation_cpu']:.1f} s CPU) = {r['s_per_epoch_wall']:.1f} s wall "
        f"({r['s_per_epoch_cpu']:.1f} s CPU)",
        f"  memory:  peak RSS {r['peak_rss_mb']:.0f} MB (dataset included), peak allocations in a step "
        f"{r['peak_traced_step_mb']:.2f} MB, theta {r['theta_mb']:.2f} MB",
        f"  machine: {os.cpu_count()} cores, runnable processes {r['runnable'][0]} -> {r['runnable'][1]}, "
        f"OPENBLAS_NUM_THREADS={r['blas_threads']}",
    ]
    return "\n".join(lines)
