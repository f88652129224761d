"""`aeqprop bench train`: the cost of a DRN training step, of its matrix products, of an epoch.

Times `steps` training steps (after a warm-up) of the in-place loop the trainer uses
(for one hidden layer of the builder's circuit, DRNSystem.contrast_step's compiled step). The
report says how much of a step is BLAS: one more step runs with the DRN modules' `matmul` and
`gemm_into` recording the products it makes (their shapes, layouts and dtype; the compiled step's
products, the signed DRN's streamed first block and its narrow-block products run inside numba
and are not recorded), and those products are then timed
bare, on fresh operands, `steps` times; the timed steps themselves run uninstrumented, in five
rounds interleaved with the products' and the floor's rounds (below). An epoch is
extrapolated from the step time (60 000 / batch steps for Fashion-MNIST) plus a measured
evaluation pass over the 10 000 test images (what the in-place trainer does after each epoch;
its training metrics are running means over the epoch's free phases). Wall and CPU (process)
time are both given, with the runnable-process count before and after (os.getloadavg):
on contended cores wall time overstates what a step costs.
The traffic floor is the weight memory a step must move (the input block read once for the
drive, every block read and written once by the update), timed as bare numpy passes over
arrays of the weights' shapes in the same rounds; it gives the streaming bandwidth measured.
The floor is what a step cannot do without, timed bare in the same run, `steps` times: the
input drive x W1 once per batch (shared by every phase of the step), the relaxations' products
(each phase's block sweeps; the nudged phases stacked into one batch), and one rank-k update per
weight block (k = the contrast's rows). A signed DRN whose first block streams (its update and
the next drive made in one pass, streaming.py) has, in place of that block's drive and update,
one read and one write of it: the pass's traffic, without its arithmetic. The report gives
step / floor: how far the step is from its necessary matrix products and weight traffic.
Memory: the process's peak resident set (ru_maxrss, dataset included), the peak of Python/numpy
allocations while the system is built, during 20 traced steps and while a batch of 512 test
images settles (tracemalloc), against theta (and the momentum's velocity, when the preset sets
one).
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
from aeqprop_circuits.systems.drn import narrow
from aeqprop_circuits.systems.drn import signed as signed_module
from aeqprop_circuits.systems.drn import system as drn_module
from aeqprop_circuits.systems.drn.signed import SignedDRNSystem, narrow_block
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

    def gemm_into(weights, left, right, alpha, keep=1.0):
        products.append(("gemm", *layout(weights, left, right), weights.dtype))
        return kernels.gemm_into(weights, left, right, alpha, keep)

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


def _product_calls(products: list[tuple], seed: int) -> list:
    """Calls running the bare products on fresh operands of the recorded shapes and layouts (each run once). A
    "drive" is x W and an "update" W += left^T right computed as the signed DRN computes them (one BLAS call,
    or by cache-sized panels of rows of a block larger than the cache); a "read and write" one bare numpy pass
    over the block."""
    rng = np.random.default_rng(seed)

    def operand(shape, fortran, dtype):
        values = rng.uniform(0.0, 1e-3, shape).astype(dtype)
        return np.asfortranarray(values) if fortran else values

    calls = []
    for kind, shapes, layouts, dtype in products:
        arrays = [operand(shape, fortran, dtype) for shape, fortran in zip(shapes, layouts)]
        if kind == "drive":
            calls.append(lambda a=arrays[0], b=arrays[1]: signed_module._drive(a, b))
        elif kind == "matmul":
            calls.append(lambda a=arrays[0], b=arrays[1]: np.matmul(a, b))
        elif kind == "narrow times":
            calls.append(lambda a=arrays[0], b=arrays[1]: narrow.times(a, b))
        elif kind == "narrow times transpose":
            calls.append(lambda a=arrays[0], b=arrays[1]: narrow.times_transpose(a, b))
        elif kind == "matmul into":
            out = np.empty(np.matmul(*arrays).shape, dtype)
            calls.append(lambda a=arrays[0], b=arrays[1], out=out: np.matmul(a, b, out=out))
        elif kind == "update":
            calls.append(lambda w=arrays[0], left=arrays[1], right=arrays[2]: _update(w, left, right))
        elif kind == "read and write":
            calls.append(lambda w=arrays[0]: _read_write(w))
        elif kind == "narrow update":
            transpose = np.ascontiguousarray(arrays[0].T)
            calls.append(lambda w=arrays[0], wt=transpose, left=arrays[1], right=arrays[2]:
                         narrow.descend(wt, w, left, right, 1e-3))
        else:
            calls.append(lambda w=arrays[0], left=arrays[1], right=arrays[2]: kernels.gemm_into(w, left, right, 1e-3))
    for call in calls:  # operands paged in, BLAS buffers allocated
        call()
    return calls


def _update(weights: np.ndarray, left: np.ndarray, right: np.ndarray) -> None:
    """weights += 1e-3 left^T right as the DRNs' update makes it: in update_panels' slices of rows."""
    for where in kernels.update_panels(*weights.shape, weights.itemsize):
        kernels.gemm_into(weights[where], left[:, where], right, 1e-3)


def _read_write(block: np.ndarray) -> None:
    """One read and one write of every weight of the block, as a bare numpy pass."""
    np.multiply(block, block.dtype.type(1.0), out=block)


def _time_calls(calls: list, repeats: int) -> tuple[float, float]:
    """Wall and CPU seconds of `repeats` runs of the calls."""
    began, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        for call in calls:
            call()
    return time.perf_counter() - began, time.process_time() - cpu


def _floor_products(system, rule, batch: int) -> list[tuple]:
    """The products a training step needs, in `_recorded_products`' form: the input drive once, each phase's
    relaxation products (nudged phases stacked; a signed DRN's narrow blocks by its narrow.py loops, as its
    step makes them), one rank-k update per weight block (a signed DRN's narrow block's on its transpose, as
    narrow.descend makes it). Where a signed DRN streams its first block, that block's update is one read and
    one write of it, and so is the drive where the same pass makes it (a batch of a few rows)."""
    used = [(m, w) for m, w in zip(rule.multipliers, rule.weights) if w != 0.0]
    nudges, terms = sum(m != 0.0 for m, _ in used), len(used)
    widths, dtype, sweeps = system.widths, system.dtype, system.iterations or 1
    signed = isinstance(system, SignedDRNSystem)

    def product(rows: int, block: int, transpose: bool) -> tuple:
        """V @ W (or V @ W^T) with W = weights[block], shape (widths[block], widths[block + 1])."""
        fan_in, fan_out = widths[block], widths[block + 1]
        if signed and narrow_block((fan_in, fan_out), dtype.itemsize):  # V and W's transpose, C-ordered
            kind = "narrow times" if transpose else "narrow times transpose"
            return kind, ((rows, fan_out if transpose else fan_in), (fan_out, fan_in)), (False, False), dtype
        if transpose:
            return "matmul", ((rows, fan_out), (fan_out, fan_in)), (False, True), dtype
        return "matmul", ((rows, fan_in), (fan_in, fan_out)), (False, False), dtype

    streamed = signed and system.streams_first_block
    products = [] if signed and system.fuses_drive(batch) else \
        [("drive", ((batch, widths[0]), (widths[0], widths[1])), (False, False), dtype)]
    if streamed:  # the update (and the drive) in one pass: its floor is the block's traffic, without arithmetic
        products.append(("read and write", ((widths[0], widths[1]),), (False,), dtype))
    for rows in [batch] + ([nudges * batch] if nudges else []):
        for _ in range(sweeps):
            for k in range(1, len(widths) - 1):  # free layer k (1-based width index): its neighbours' currents
                if k > 1:
                    products.append(product(rows, k - 1, transpose=False))
                if k + 1 < len(widths):
                    products.append(product(rows, k, transpose=True))
            products.append(product(rows, len(widths) - 2, transpose=False))
    for k in range(1 if streamed else 0, len(widths) - 1):
        rank = (batch if k == 0 else terms * batch) + 2  # the input block's rows are shared by the phases
        products.append(("narrow update" if signed and system.updates_on_transpose(k) else "update",
                         ((widths[k], widths[k + 1]), (rank, widths[k]), (rank, widths[k + 1])),
                         (False, False, False), dtype))
    return products


def _traffic_calls(shapes: list[tuple], dtype, drive_in_update: bool = False) -> tuple[list, int]:
    """The weight traffic a step cannot avoid, as bare numpy passes over weight-sized arrays: one read of the
    input block (the drive; none where the update's pass makes it, `drive_in_update`) and one read-modify-write
    of every block (the update). Returns (calls, bytes)."""
    blocks = [np.full(shape, 1e-3, dtype=dtype) for shape in shapes]
    ones = np.ones(shapes[0][0], dtype=dtype)
    read = np.empty(shapes[0][1], dtype=dtype)
    calls = [] if drive_in_update else [lambda: np.matmul(ones, blocks[0], out=read)]
    calls += [lambda block=block: _read_write(block) for block in blocks]
    for call in calls:
        call()
    return calls, (0 if drive_in_update else blocks[0].nbytes) + 2 * sum(block.nbytes for block in blocks)


def bench_train(model: str = "drn:1568-100-10", preset: str | None = None, algorithm: str = "c-ep",
                steps: int = 300, batch: int | None = None, seed: int = 0, eval_samples: int = 4096,
                warmup: int = 20) -> dict:
    settings = dict(PRESETS[preset]) if preset else dict(PRESETS["drn-xs"])
    options = dict(settings["model_options"])
    if preset and not model:
        model = settings["model"]
    batch = batch or settings["batch_size"]
    tracemalloc.start()
    system = load_system(model, seed=seed, **options)
    build_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    system.momentum = float(settings.get("momentum", 0.0))  # as the trainer sets it
    rule = get_algorithm(algorithm, beta=settings["beta"])
    rates = settings["lr"] if np.isscalar(settings["lr"]) else system.per_parameter(settings["lr"])
    lr = system.in_place_rates(rates)  # per-block rates of the preset
    count = (steps + warmup + 22) * batch
    x, y, source = _data(system.n_inputs, system.n_outputs, max(count, eval_samples), seed)
    batches = iter(range(count // batch))

    def step():
        i = next(batches)
        ep_step(system, rule, x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch], lr)

    for _ in range(warmup):
        step()
    tracemalloc.start()
    for _ in range(20):
        step()
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the bench's own operands
    compiled = any(plan is not None for plan in getattr(system, "_plans", {}).values())  # DRNSystem.contrast_step
    products = _recorded_products(step)
    floor = _floor_products(system, rule, batch)
    recorded_calls, floor_calls = _product_calls(products, seed), _product_calls(floor, seed + 1)
    signed = isinstance(system, SignedDRNSystem)
    streamed = signed and system.streams_first_block
    fused = signed and system.fuses_drive(batch)
    loops = [name for name, used in (("streamed first block", streamed),
                                     ("narrow blocks", signed and any(narrow_block(W.shape, W.itemsize)
                                                                        for W in system.weights[1:])))
             if used]
    traffic_calls, traffic_bytes = _traffic_calls([W.shape for W in system.weights], system.dtype, fused)
    # Steps, their recorded products and the floor in interleaved rounds, so that a change in the machine's
    # load falls on all three alike.
    rounds = [len(part) for part in np.array_split(np.arange(steps), min(5, steps))]
    load_before = os.getloadavg()[0]
    wall = cpu = gemm_seconds = floor_seconds = floor_cpu = traffic_seconds = traffic_cpu = 0.0
    for n in rounds:
        began, began_cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            step()
        wall, cpu = wall + time.perf_counter() - began, cpu + time.process_time() - began_cpu
        gemm_seconds += _time_calls(recorded_calls, n)[0]
        floor_wall, floor_cpu_seconds = _time_calls(floor_calls, n)
        floor_seconds, floor_cpu = floor_seconds + floor_wall, floor_cpu + floor_cpu_seconds
        traffic_wall, traffic_cpu_seconds = _time_calls(traffic_calls, n)
        traffic_seconds, traffic_cpu = traffic_seconds + traffic_wall, traffic_cpu + traffic_cpu_seconds
    gemm_calls = len(products) * steps
    # Evaluation: free phases over batches of 512, as runs.trainer.evaluate does.
    e_wall, e_cpu = time.perf_counter(), time.process_time()
    for start in range(0, eval_samples, 512):
        system.outputs(system.settle(Phase(x[start:start + 512])))
    e_wall, e_cpu = time.perf_counter() - e_wall, time.process_time() - e_cpu
    tracemalloc.start()
    system.outputs(system.settle(Phase(x[:512])))
    evaluation_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    steps_per_epoch = TRAIN_SIZE // batch
    evaluation = TEST_SIZE / eval_samples
    return {
        "model": model, "algorithm": algorithm, "batch": batch, "iterations": system.iterations,
        "dtype": str(system.dtype), "parameters": system.n_parameters, "data": source, "steps": steps,
        "eval_samples": eval_samples,
        "step_path": "compiled one-hidden-layer step" if compiled else "generic phases", "compiled_step": compiled,
        "ms_per_step_wall": 1e3 * wall / steps, "ms_per_step_cpu": 1e3 * cpu / steps,
        "ms_per_step_matmul": 1e3 * gemm_seconds / steps, "matmul_calls_per_step": gemm_calls / steps,
        "matmul_share": gemm_seconds / wall,
        "ms_per_step_floor": 1e3 * floor_seconds / steps, "ms_per_step_floor_cpu": 1e3 * floor_cpu / steps,
        "floor_calls_per_step": len(floor), "step_over_floor": wall / floor_seconds,
        "step_over_floor_cpu": cpu / floor_cpu,
        "ms_per_step_traffic": 1e3 * traffic_seconds / steps, "ms_per_step_traffic_cpu": 1e3 * traffic_cpu / steps,
        "traffic_mb_per_step": traffic_bytes / 1e6, "stream_gb_per_s": traffic_bytes * steps / traffic_seconds / 1e9,
        "s_per_epoch_training_wall": wall / steps * steps_per_epoch,
        "s_per_epoch_training_cpu": cpu / steps * steps_per_epoch,
        "s_per_epoch_evaluation_wall": e_wall * evaluation, "s_per_epoch_evaluation_cpu": e_cpu * evaluation,
        "s_per_epoch_wall": (wall / steps * steps_per_epoch) + e_wall * evaluation,
        "s_per_epoch_cpu": (cpu / steps * steps_per_epoch) + e_cpu * evaluation,
        "peak_rss_mb": peak_rss,
        "peak_traced_step_mb": traced_peak / 2**20,
        "peak_traced_build_mb": build_peak / 2**20,
        "peak_traced_evaluation_mb": evaluation_peak / 2**20,
        "theta_mb": system.n_parameters * system.dtype.itemsize / 2**20,
        "momentum": system.momentum,
        "velocity_mb": system.n_parameters * system.dtype.itemsize / 2**20 if system.momentum else 0.0,
        "runnable": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
        "streamed_first_block": streamed, "drive_in_pass": fused,
        "numba_loops": loops,
        "numba_threads": _numba_threads() if loops else None,
    }


def _numba_threads() -> int:
    import numba

    return numba.get_num_threads()


def format_report(r: dict) -> str:
    lines = [
        f"{r['model']}  {r['algorithm']}  batch {r['batch']}  {r['iterations']} block iterations/phase  "
        f"{r['dtype']}  {r['parameters']:,} conductances  ({r['data']} inputs, {r['steps']} steps, "
        f"{r['step_path']})",
        f"  step:    {r['ms_per_step_wall']:.3f} ms wall, {r['ms_per_step_cpu']:.3f} ms CPU; "
        + ("its products run inside the compiled step" if r["compiled_step"] else
           f"BLAS products {r['ms_per_step_matmul']:.3f} ms ({r['matmul_calls_per_step']:.0f} calls, "
           f"{100 * r['matmul_share']:.0f}% of the step)"),
        f"  floor:   {r['ms_per_step_floor']:.3f} ms wall, {r['ms_per_step_floor_cpu']:.3f} ms CPU "
        f"({r['floor_calls_per_step']} calls: "
        + ("the first block read and written once (its update and the input drive share a pass), relaxations, "
           "one rank-k update per other block" if r["drive_in_pass"] else
           "input drive once, the first block read and written once (its update's pass), relaxations, one rank-k "
           "update per other block" if r["streamed_first_block"] else
           "input drive once, relaxations, one rank-k update per block")
        + "); "
        f"step / floor {r['step_over_floor']:.2f}x wall, {r['step_over_floor_cpu']:.2f}x CPU",
        f"  traffic: {r['ms_per_step_traffic']:.3f} ms wall, {r['ms_per_step_traffic_cpu']:.3f} ms CPU to stream the "
        f"weights a step must move ({r['traffic_mb_per_step']:.1f} MB: "
        + ("every block read and written, the input drive in the first block's pass" if r["drive_in_pass"]
           else "the input block read, every block read and written")
        + f") at {r['stream_gb_per_s']:.1f} GB/s",
        f"  epoch:   training {r['s_per_epoch_training_wall']:.1f} s wall ({r['s_per_epoch_training_cpu']:.1f} s CPU)"
        f" + evaluation of the 10k test images {r['s_per_epoch_evaluation_wall']:.1f} s wall "
        f"({r['s_per_epoch_evaluation_cpu']:.1f} s CPU) = {r['s_per_epoch_wall']:.1f} s wall "
        f"({r['s_per_epoch_cpu']:.1f} s CPU)",
        f"  memory:  peak RSS {r['peak_rss_mb']:.0f} MB (dataset included), peak allocations in a step "
        f"{r['peak_traced_step_mb']:.2f} MB, theta {r['theta_mb']:.2f} MB"
        + (f" + velocity {r['velocity_mb']:.2f} MB" if r["velocity_mb"] else "")
        + f", building it {r['peak_traced_build_mb']:.2f} MB at peak, evaluating a batch of "
        f"{min(512, r['eval_samples'])} {r['peak_traced_evaluation_mb']:.2f} MB",
        f"  machine: {os.cpu_count()} cores, runnable processes {r['runnable'][0]} -> {r['runnable'][1]}, "
        f"OPENBLAS_NUM_THREADS={r['blas_threads']}"
        + (f", numba loops ({', '.join(r['numba_loops'])}) on {r['numba_threads']} threads" if r["numba_loops"]
           else ""),
    ]
    return "\n".join(lines)
