"""`aeqprop bench peer`: training steps of the papers' PyTorch code and of ours, side by side in one run.

The peer is the public energy-based-learning code (rain-neuromorphics/energy-based-learning),
given as a checkout. Neither it nor torch is a dependency: they are imported from that
directory at run time, and a missing one is reported as a `PeerUnavailable` message.

Each case builds the same network on both sides with the same settings, as the peer's
scripts set them:

- DRN-XS and DRN-1H (papers/fast-drn/drn.py: 1568-100-10 and 1568-1024-10, input sources at
  +-100 x and +-480 x, batch 4, 4 block iterations in every phase, centered EP with nudging
  1, SGD at 0.006 without momentum): the peer's DeepResistiveEnergy, ours the same circuit
  (`drn:...` with `circuit=signed`, drn/signed.py: excitatory/inhibitory hidden units, bias
  current sources, single-node outputs) with the script's block order (`schedule=alternating`:
  its 'asynchronous' minimizer) and warm start (`warm_start=last`: a batch's free phase starts
  where the previous step's +beta phase ended, as its Trainer and EquilibriumProp leave it);
- DHN 784-H-10 (papers/fast-drn/dhn.py, dhn-1h: hard-sigmoid hidden layer, linear output,
  cost 1/2 |o - y|^2, weights U(+-0.7/sqrt(fan_in)), biases 0, batch 16, 15 asynchronous
  iterations per phase, centered EP with nudging 0.2, SGD at 0.05): the peer's
  DeepHopfieldEnergy, ours `hopfield:784-H-10` with bounds [0, 1] and (-inf, inf),
  init ebl at gains 0.7, cost_scale 0.5, schedule alternating, max_iterations (15, 15).

A step on the peer's side is its Trainer's loop body: set the input (the state kept from the
previous batch), the free relaxation, set the target, its estimator's gradient, its
optimizer's step, the parameters' clamp (its per-batch statistics are left out). Ours is
the training loop's in-place step, `ep_step` with `system.in_place_rates(lr)`. Both run on
one thread (BLAS, OpenMP and torch) on the same Fashion-MNIST batches, in interleaved
blocks (peer, ours, ours, peer, ...), so that a change of machine speed hits both alike;
the ratio is of the medians of the blocks' per-step times. An epoch is either extrapolated
(60 000 / batch steps plus the evaluation of the 10 000 test images, timed on a part of
them) or, with `epoch=True`, run in full on both sides (the blocks then cover the whole
training set), with each side's test error after it. With `same_start`, ours
starts from the peer's initial parameters, and the report says how far the two sides' first
updates are from each other and from ours in float64, and how far their final parameters differ.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aeqprop_circuits.errors import AeqpropError

TRAIN_SIZE, TEST_SIZE = 60_000, 10_000
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
PEER_FILES = ("model/resistive/network.py", "model/hopfield/network.py", "training/sgd.py")


class PeerUnavailable(AeqpropError):
    """The peer's code or torch cannot be used; the message says what is missing and how to get it."""


@dataclass(frozen=True)
class Case:
    """One network, with the settings of the peer's script that trains it."""

    name: str
    kind: str  # "drn" | "dhn"
    sizes: tuple  # data counts: inputs (pixels), hidden..., outputs
    batch: int
    iterations: int
    beta: float
    lr: float
    input_gain: float = 1.0  # DRN: sources at +-input_gain x
    weight_gain: float = 1.0

    @property
    def our_model(self) -> tuple[str, dict]:
        if self.kind == "drn":
            spec = "drn:" + "-".join(str(s) for s in (2 * self.sizes[0], *self.sizes[1:]))
            return spec, {"circuit": "signed", "input_gain": self.input_gain, "iterations": self.iterations,
                          "dtype": "float32", "warm_start": "last", "schedule": "alternating",
                          "init_gain": self.weight_gain}
        spec = "hopfield:" + "-".join(str(s) for s in self.sizes)
        return spec, {"bounds": [(0.0, 1.0)] * (len(self.sizes) - 2) + [(-np.inf, np.inf)], "init": "ebl",
                      "gains": [self.weight_gain] * (len(self.sizes) - 1), "threshold": 0.0,
                      "max_iterations": (self.iterations, self.iterations), "schedule": "alternating",
                      "cost_scale": 0.5, "precision": "float32"}

    @property
    def settings(self) -> str:
        return (f"batch {self.batch}, {self.iterations}/{self.iterations} iterations, c-ep beta {self.beta:g}, "
                f"SGD {self.lr:g}" + (f", inputs +-{self.input_gain:g} x" if self.kind == "drn" else ""))


CASES = {
    "drn-xs": Case("DRN-XS 1568-100-10", "drn", (784, 100, 10), 4, 4, 1.0, 0.006, input_gain=100.0),
    "drn-1h": Case("DRN-1H 1568-1024-10", "drn", (784, 1024, 10), 4, 4, 1.0, 0.006, input_gain=480.0),
    "dhn-1024": Case("DHN 784-1024-10", "dhn", (784, 1024, 10), 16, 15, 0.2, 0.05, weight_gain=0.7),
    "dhn-2048": Case("DHN 784-2048-10", "dhn", (784, 2048, 10), 16, 15, 0.2, 0.05, weight_gain=0.7),
}


def single_thread() -> None:
    """One thread for BLAS and OpenMP on both sides (variables read when a library loads)."""
    for name in THREAD_VARIABLES:
        os.environ[name] = "1"


def check_peer_source(source) -> Path:
    """The peer checkout's root, or PeerUnavailable naming what is missing."""
    if source is None:
        raise PeerUnavailable("no peer source given: pass --peer-source DIR, a checkout of "
                              "rain-neuromorphics/energy-based-learning")
    root = Path(source).expanduser().resolve()
    if not root.is_dir():
        raise PeerUnavailable(f"--peer-source {source}: no such directory; expected a checkout of "
                              "rain-neuromorphics/energy-based-learning")
    missing = [name for name in PEER_FILES if not (root / name).is_file()]
    if missing:
        raise PeerUnavailable(f"--peer-source {source}: not a checkout of rain-neuromorphics/energy-based-learning "
                              f"(missing {', '.join(missing)})")
    return root


def import_torch():
    """torch on one thread, or PeerUnavailable."""
    single_thread()
    try:
        import torch
    except ImportError as error:
        raise PeerUnavailable(f"torch is not installed ({error}); the peer's code needs it: "
                              "pip install torch (a CPU build is enough)") from None
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set once in this process
        pass
    return torch


def peer_commit(root: Path) -> str:
    """The checkout's commit (git), else the directory's name."""
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return root.name


def _import_peer(root: Path):
    """The peer's modules, imported from its checkout (its top-level packages are `model` and `training`)."""
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        from model.function.cost import SquaredError
        from model.function.network import Network
        from model.hopfield.minimizer import FixedPointMinimizer
        from model.hopfield.network import DeepHopfieldEnergy
        from model.resistive.minimizer import QuadraticMinimizer
        from model.resistive.network import DeepResistiveEnergy
        from training.sgd import AugmentedFunction, EquilibriumProp
    except ImportError as error:
        raise PeerUnavailable(f"the peer's code at {root} does not import: {error}") from None
    return {"SquaredError": SquaredError, "Network": Network, "FixedPointMinimizer": FixedPointMinimizer,
            "DeepHopfieldEnergy": DeepHopfieldEnergy, "QuadraticMinimizer": QuadraticMinimizer,
            "DeepResistiveEnergy": DeepResistiveEnergy, "AugmentedFunction": AugmentedFunction,
            "EquilibriumProp": EquilibriumProp}


def _peer_optimizer(torch, energy_fn, cost_fn, learning_rates):
    """The peer's Optimizer (training/monitor.py, a torch.optim.SGD with a rate per parameter); when that module
    does not import (it needs tensorboard), torch.optim.SGD with the same parameter groups."""
    try:
        from training.monitor import Optimizer

        return Optimizer(energy_fn, cost_fn, learning_rates, 0.0, 0.0), "training.monitor.Optimizer"
    except ImportError:
        params = energy_fn.params() + cost_fn.params()
        groups = [{"params": param.state, "lr": lr} for param, lr in zip(params, learning_rates)]
        return torch.optim.SGD(groups, lr=0.1, momentum=0.0, weight_decay=0.0), "torch.optim.SGD (same groups)"


class PeerSide:
    """The peer's network, estimator and optimizer for a case, as its script builds them (on the CPU)."""

    def __init__(self, torch, modules: dict, case: Case, seed: int):
        torch.manual_seed(seed)
        self.torch, self.case = torch, case
        n_layers = len(case.sizes) - 1
        if case.kind == "drn":
            shapes = [(2, 28, 28), *[(s,) for s in case.sizes[1:]]]
            energy_fn = modules["DeepResistiveEnergy"](shapes, [case.weight_gain] * n_layers, case.input_gain)
            minimizer = modules["QuadraticMinimizer"]
        else:
            shapes = [(1, 28, 28), *[(s,) for s in case.sizes[1:]]]
            energy_fn = modules["DeepHopfieldEnergy"](shapes, [case.weight_gain] * n_layers)
            minimizer = modules["FixedPointMinimizer"]
        energy_fn.set_device("cpu")
        cost_fn = modules["SquaredError"](energy_fn.layers()[-1])
        network = modules["Network"](energy_fn)
        free_layers = network.free_layers()
        augmented = modules["AugmentedFunction"](energy_fn, cost_fn)
        training_minimizer = minimizer(augmented, free_layers)
        training_minimizer.num_iterations = case.iterations
        training_minimizer.mode = "asynchronous"
        estimator = modules["EquilibriumProp"](energy_fn.params(), energy_fn.layers(), augmented, cost_fn,
                                               training_minimizer)
        estimator.nudging = case.beta
        estimator.variant = "centered"
        self.inference = minimizer(energy_fn, free_layers)
        self.inference.num_iterations = case.iterations
        self.inference.mode = "asynchronous"
        self.optimizer, self.optimizer_name = _peer_optimizer(torch, energy_fn, cost_fn, [case.lr] * (2 * n_layers))
        self.params = energy_fn.params() + cost_fn.params()
        self.network, self.cost_fn, self.estimator = network, cost_fn, estimator

    def tensors(self, x: np.ndarray, labels: np.ndarray):
        """Images (N, 784) in [0, 1] and labels as the peer's data loaders give them: (N, 1, 28, 28), int64."""
        torch = self.torch
        return torch.from_numpy(np.ascontiguousarray(x, np.float32).reshape(-1, 1, 28, 28)), \
            torch.from_numpy(labels.astype(np.int64))

    def step(self, x, labels) -> None:
        """The body of the peer's Trainer.run loop, without its statistics."""
        self.network.set_input(x, reset=False)
        self.inference.compute_equilibrium()
        self.cost_fn.set_target(labels)
        grads = self.estimator.compute_gradient()
        for param, grad in zip(self.params, grads):
            param.state.grad = grad
        self.optimizer.step()
        for param in self.params:
            param.clamp_()

    def our_theta(self) -> np.ndarray:
        """The peer's parameters in our layout: the signed DRN's [W1, W2, ..., biases of the free layers], the
        Hopfield network's [W1, b1, W2, b2, ...].

        The peer holds [biases..., weights...] with W1 shaped (C, 28, 28, H): the DRN's doubled input is
        (x, -x) by channel on its side and by node on ours, so a row-major reshape maps one onto the other.
        """
        n_layers = len(self.case.sizes) - 1
        states = [param.state.detach().cpu().numpy() for param in self.params[:2 * n_layers]]
        biases, weights = states[:n_layers], states[n_layers:]
        order = weights + biases if self.case.kind == "drn" else [a for pair in zip(weights, biases) for a in pair]
        return np.concatenate([state.reshape(-1) for state in order])

    def errors(self, x, labels) -> int:
        """Misclassified images of a batch, as the peer's Evaluator measures them (free phase from zero)."""
        self.network.set_input(x, reset=True)
        self.inference.compute_equilibrium()
        self.cost_fn.set_target(labels)
        return int(self.cost_fn.error_fn().sum())


class OurSide:
    """Our system for a case, stepped by the training loop's in-place step."""

    def __init__(self, case: Case, seed: int):
        from aeqprop_circuits.learning.algorithms import get_algorithm
        from aeqprop_circuits.systems.models import load_system

        spec, options = case.our_model
        self.spec, self.options = spec, options
        self.system = load_system(spec, seed=seed, **options)
        self.rule = get_algorithm("c-ep", beta=case.beta)
        self.rates = self.system.in_place_rates(case.lr)

    def step(self, x: np.ndarray, target: np.ndarray) -> None:
        from aeqprop_circuits.learning.algorithms import ep_step

        ep_step(self.system, self.rule, x, target, self.rates)

    def errors(self, x: np.ndarray, labels: np.ndarray) -> int:
        from aeqprop_circuits.systems.base import Phase

        outputs = self.system.outputs(self.system.settle(Phase(x)))
        return int(np.sum(np.argmax(outputs, axis=1) != labels))


def _data(seed: int):
    """Fashion-MNIST as float32 images in [0, 1] and labels; uniform random images when it is not installed."""
    try:
        from aeqprop_circuits.data.datasets import load_dataset

        data = load_dataset("fmnist")
        return (data.x_train.astype(np.float32), data.y_train.astype(np.int64),
                data.x_test.astype(np.float32), data.y_test.astype(np.int64), "fmnist")
    except Exception:  # noqa: BLE001 - any missing-data error: the timing does not depend on the pixels
        rng = np.random.default_rng(seed)
        return (rng.random((TRAIN_SIZE, 784), dtype=np.float32), rng.integers(0, 10, TRAIN_SIZE),
                rng.random((TEST_SIZE, 784), dtype=np.float32), rng.integers(0, 10, TEST_SIZE), "random")


def _timed_blocks(sides: dict, batches: dict, blocks: int) -> tuple[dict, dict]:
    """Wall and CPU (process) seconds per step of each block of each side, the sides taking turns (the order
    reversed every block). `batches[name]` is the list of per-step arguments, split into `blocks` blocks."""
    names = list(sides)
    steps = len(batches[names[0]])
    edges = np.linspace(0, steps, blocks + 1).astype(int)
    wall = {name: [] for name in names}
    cpu = {name: [] for name in names}
    for k in range(blocks):
        for name in (names if k % 2 == 0 else names[::-1]):
            step, args = sides[name], batches[name][edges[k]:edges[k + 1]]
            began, began_cpu = time.perf_counter(), time.process_time()
            for arg in args:
                step(*arg)
            cpu[name].append((time.process_time() - began_cpu) / max(len(args), 1))
            wall[name].append((time.perf_counter() - began) / max(len(args), 1))
    return wall, cpu


def _errors_and_seconds(errors, batches) -> tuple[int, float, float]:
    """Misclassified images, wall and CPU seconds of an evaluation."""
    began, began_cpu = time.perf_counter(), time.process_time()
    wrong = sum(errors(*arg) for arg in batches)
    return wrong, time.perf_counter() - began, time.process_time() - began_cpu


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    """|a - b| / |a| (Euclidean), in float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(a))


def _first_updates(case: Case, peer: PeerSide, ours: OurSide, peer_batch, our_batch) -> dict:
    """One step on each side from the same parameters, and the same step of ours in float64: how far the two
    float32 updates are from each other and from the float64 one (relative, Euclidean)."""
    from aeqprop_circuits.learning.algorithms import ep_step
    from aeqprop_circuits.systems.models import load_system

    before = peer.our_theta()
    precision = {"dtype": "float64"} if case.kind == "drn" else {"precision": "float64"}
    exact = load_system(ours.spec, seed=0, **{**ours.options, **precision})
    exact.parameters = before
    ep_step(exact, ours.rule, np.asarray(our_batch[0], np.float64), np.asarray(our_batch[1], np.float64),
            exact.in_place_rates(case.lr))
    peer.step(*peer_batch)
    ours.step(*our_batch)
    reference = exact.parameters - before
    peer_update, our_update = peer.our_theta() - before, ours.system.parameters - before
    return {"first_update_difference": _relative(peer_update, our_update),
            "first_update_error_peer": _relative(reference, peer_update),
            "first_update_error_ours": _relative(reference, our_update)}


def bench_case(case: Case, peer: PeerSide | None, *, steps: int, blocks: int, warmup: int, eval_samples: int,
               epoch: bool, data, seed: int, same_start: bool = False) -> dict:
    """Time one case on both sides (ours alone when `peer` is None). With `same_start`, ours starts from the
    peer's initial parameters, and the row reports how far the sides' first updates and final parameters differ."""
    x_train, y_train, x_test, y_test, _ = data
    ours = OurSide(case, seed)
    if same_start:
        if peer is None or warmup < 1:
            raise AeqpropError("a same start needs the peer's side and at least one warm-up step")
        ours.system.parameters = peer.our_theta()
    eye = np.eye(case.sizes[-1], dtype=np.float32)
    b = case.batch
    total = TRAIN_SIZE // b if epoch else steps
    order = np.random.default_rng(seed).permutation(TRAIN_SIZE)
    index = [order[(i * b) % TRAIN_SIZE:(i * b) % TRAIN_SIZE + b] for i in range(warmup + total)]
    our_batches = [(x_train[i], eye[y_train[i]]) for i in index]
    sides, batches = {"ours": ours.step}, {"ours": our_batches[warmup:]}
    if peer is not None:
        peer_batches = [peer.tensors(x_train[i], y_train[i]) for i in index]
        sides["peer"], batches["peer"] = peer.step, peer_batches[warmup:]
        first_updates = _first_updates(case, peer, ours, peer_batches[0], our_batches[0]) if same_start else {}
        for arg in peer_batches[1 if same_start else 0:warmup]:
            peer.step(*arg)
    for arg in our_batches[1 if same_start else 0:warmup]:
        ours.step(*arg)
    per_step, per_step_cpu = _timed_blocks(sides, batches, blocks)
    # Evaluation, each side as its training loop does it: ours in batches of 512, the peer's at its batch size.
    n_eval = TEST_SIZE if epoch else min(eval_samples, TEST_SIZE)
    evaluation = {"ours": [(x_test[s:s + 512], y_test[s:s + 512]) for s in range(0, n_eval, 512)]}
    errors = {"ours": ours.errors}
    if peer is not None:
        evaluation["peer"] = [peer.tensors(x_test[s:s + b], y_test[s:s + b]) for s in range(0, n_eval, b)]
        errors["peer"] = peer.errors
    row = {"case": case.name, "settings": case.settings, "our_model": ours.spec,
           "our_options": {k: (str(v) if isinstance(v, list) else v) for k, v in ours.options.items()},
           "steps": total, "blocks": blocks, "epoch_run": epoch, "steps_per_epoch": TRAIN_SIZE // b}
    counts = np.diff(np.linspace(0, total, blocks + 1).astype(int))
    for name in sides:
        wrong, seconds, seconds_cpu = _errors_and_seconds(errors[name], evaluation[name])
        step_s, step_cpu = float(np.median(per_step[name])), float(np.median(per_step_cpu[name]))
        row[f"{name}_ms_per_step"] = 1e3 * step_s
        row[f"{name}_ms_per_step_cpu"] = 1e3 * step_cpu
        row[f"{name}_ms_per_step_blocks"] = [round(1e3 * t, 4) for t in per_step[name]]
        row[f"{name}_s_evaluation"] = seconds * TEST_SIZE / n_eval
        row[f"{name}_s_per_epoch"] = step_s * (TRAIN_SIZE // b) + seconds * TEST_SIZE / n_eval
        row[f"{name}_s_per_epoch_cpu"] = step_cpu * (TRAIN_SIZE // b) + seconds_cpu * TEST_SIZE / n_eval
        if epoch:
            row[f"{name}_s_per_epoch_measured"] = float(np.sum(np.asarray(per_step[name]) * counts)) + seconds
            row[f"{name}_s_per_epoch_measured_cpu"] = float(np.sum(np.asarray(per_step_cpu[name]) * counts)) \
                + seconds_cpu
            row[f"{name}_test_error"] = 100.0 * wrong / n_eval
    if peer is not None:
        row["ratio_step"] = row["peer_ms_per_step"] / row["ours_ms_per_step"]
        row["ratio_step_cpu"] = row["peer_ms_per_step_cpu"] / row["ours_ms_per_step_cpu"]
        row["ratio_epoch"] = row["peer_s_per_epoch"] / row["ours_s_per_epoch"]
        row["ratio_epoch_cpu"] = row["peer_s_per_epoch_cpu"] / row["ours_s_per_epoch_cpu"]
        row["peer_optimizer"] = peer.optimizer_name
    if same_start:
        row["same_start"] = True
        row.update(first_updates)
        row["final_parameter_difference"] = _relative(peer.our_theta(), ours.system.parameters)
    return row


def bench_peer(peer_source, cases=tuple(CASES), *, steps: int = 200, blocks: int = 10, warmup: int = 10,
               eval_samples: int = 1000, epoch: bool = False, seed: int = 0, ours_only: bool = False,
               same_start: bool = False, log=None) -> dict:
    """Both sides of every case, timed in interleaved blocks; with `ours_only`, our side alone (no torch needed)."""
    single_thread()
    unknown = [name for name in cases if name not in CASES]
    if unknown:
        raise AeqpropError(f"unknown case(s) {', '.join(unknown)}; expected some of {', '.join(CASES)}")
    if same_start and ours_only:
        raise AeqpropError("--same-start needs the peer's side: it starts ours from the peer's parameters")
    torch = modules = root = None
    if not ours_only:
        root = check_peer_source(peer_source)
        torch = import_torch()
        modules = _import_peer(root)
    data = _data(seed)
    rows = []
    for name in cases:
        case = CASES[name]
        if log:
            log(f"{case.name}: {case.settings}")
        peer = None if ours_only else PeerSide(torch, modules, case, seed)
        rows.append(bench_case(case, peer, steps=steps, blocks=blocks, warmup=warmup, eval_samples=eval_samples,
                               epoch=epoch, data=data, seed=seed, same_start=same_start))
    import numpy

    return {
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, {platform.processor() or platform.system()}",
        "threads": ", ".join(f"{v}=1" for v in THREAD_VARIABLES) + ("" if ours_only else ", torch.set_num_threads(1)"),
        "torch": None if torch is None else torch.__version__, "numpy": numpy.__version__,
        "peer_commit": None if root is None else peer_commit(root), "data": data[4], "rows": rows,
    }


def format_report(report: dict) -> str:
    """The speed page's table: per step and per epoch, wall (CPU) time, ratios, with the machine, threads, torch
    and the peer's commit."""
    rows = report["rows"]
    peer = report["peer_commit"] is not None
    epoch_run = any(r["epoch_run"] for r in rows)
    lines = [f"Machine: {report['machine']}; threads: {report['threads']}; numpy {report['numpy']}"
             + (f"; torch {report['torch']}; peer: rain-neuromorphics/energy-based-learning at "
                f"{report['peer_commit']}" if peer else "; peer not run") + f"; {report['data']} data.",
             ""]
    epoch_key = "s_per_epoch_measured" if epoch_run else "s_per_epoch"
    epoch_label = "epoch, s" + ("" if epoch_run else " (extrapolated)")

    def pair(row, side, key, scale="{:.3g}"):
        return f"{scale.format(row[f'{side}_{key}'])} ({scale.format(row[f'{side}_{key}_cpu'])})"

    if peer:
        header = ["network", "settings (both sides)", "peer, ms/step", "ours, ms/step", "ratio",
                  f"peer {epoch_label}", f"ours {epoch_label}", "ratio"]
        if epoch_run:
            header += ["peer test error", "ours test error"]
    else:
        header = ["network", "settings", "ours, ms/step", f"ours {epoch_label}"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        if peer:
            epoch_ratio = r[f"peer_{epoch_key}"] / r[f"ours_{epoch_key}"]
            epoch_ratio_cpu = r[f"peer_{epoch_key}_cpu"] / r[f"ours_{epoch_key}_cpu"]
            cells = [r["case"], r["settings"], pair(r, "peer", "ms_per_step"), pair(r, "ours", "ms_per_step"),
                     f"**{r['ratio_step']:.1f}×** ({r['ratio_step_cpu']:.1f}×)",
                     pair(r, "peer", epoch_key, "{:.1f}"), pair(r, "ours", epoch_key, "{:.1f}"),
                     f"**{epoch_ratio:.1f}×** ({epoch_ratio_cpu:.1f}×)"]
            if epoch_run:
                cells += [f"{r['peer_test_error']:.2f} %", f"{r['ours_test_error']:.2f} %"]
        else:
            cells = [r["case"], r["settings"], pair(r, "ours", "ms_per_step"), pair(r, "ours", epoch_key, "{:.1f}")]
        lines.append("| " + " | ".join(cells) + " |")
    steps = " / ".join(dict.fromkeys(str(r["steps"]) for r in rows))  # row by row, where the rows differ
    lines += ["", "Wall time, with CPU (process) time in parentheses. Per step: the median over "
              f"{rows[0]['blocks']} interleaved blocks ({steps} steps per side in all"
              + (", a full epoch" if epoch_run else "") + "); ratio = peer / ours."]
    same = [r for r in rows if r.get("same_start")]
    if same:
        lines.append("Same start: our side starts from the peer's initial parameters. The first update, relative "
                     "to the same update of ours in float64 (|u - u64| / |u64|), peer / ours: " + ", ".join(
                         f"{r['case']} {r['first_update_error_peer']:.1e} / {r['first_update_error_ours']:.1e}"
                         for r in same)
                     + "; the parameters at the end, |peer - ours| / |peer|: " + ", ".join(
                         f"{r['case']} {r['final_parameter_difference']:.1e}" for r in same) + ".")
    if not epoch_run:
        lines.append("Epoch: 60 000 / batch steps at the median step time, plus the evaluation of the 10 000 test "
                     "images timed on a part of them, each side evaluating as its training loop does.")
    return "\n".join(lines)
