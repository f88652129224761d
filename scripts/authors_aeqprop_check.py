"""Our dense Aeqprop step against the Aeqprop authors' own code, step by step.

Both take the same batches of Fashion-MNIST training images (unflipped) from the same
parameters: before each step ours is set to the authors' current parameters, then each code
makes its step, and the two moves are compared (largest entry of the difference over the
largest entry of the move, per parameter group, and the cosine of the whole moves). The
authors' network keeps its warm start from batch to batch, as in their training loop.

This is a measurement, not a dependency: it needs PyTorch and a copy of the authors' code
(github.com/bscellier/agnostic-equilibrium-propagation, imported from --authors-code, never
copied here):

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python scripts/authors_aeqprop_check.py \\
        --authors-code /path/to/agnostic-equilibrium-propagation --mode centered --steps 100
    # from a trained network: --checkpoint runs/.../checkpoints/epoch0020.npz --skip 1000
    # and the two codes' test predictions on it: --steps 0 --evaluate 10000

Their network is built as their run.py builds it, from their hyperparameters.py entry for
FashionMNIST '1h', with run.py's default nudging 0.5 (--beta).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from aeqprop_circuits.data.datasets import load_dataset
from aeqprop_circuits.experiments.presets import PRESETS
from aeqprop_circuits.learning.algorithms import get_algorithm
from aeqprop_circuits.systems.base import Phase
from aeqprop_circuits.systems.models import load_system

PRESET = PRESETS["aeqprop-dense"]

THEIR_ORDER = {"b1": 0, "b2": 1, "w1": 2, "w2": 3}  # their add_layer (biases) first, then add_edge (weights)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--authors-code", required=True, help="a copy of bscellier/agnostic-equilibrium-propagation")
    ap.add_argument("--mode", default="centered", choices=["centered", "optimistic", "pessimistic"])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--beta", type=float, default=0.5)
    ap.add_argument("--checkpoint", help="start from this run checkpoint's parameters (.npz)")
    ap.add_argument("--skip", type=int, default=0, help="start at this batch of the training set")
    ap.add_argument("--seed", type=int, default=0, help="torch seed of their initialisation")
    ap.add_argument("--threshold", type=float, default=None,
                    help="our convergence threshold (default the preset's 1e-3; theirs sums over the batch "
                         "of 32, about 1e-3 / 32 in ours)")
    ap.add_argument("--evaluate", type=int, default=0,
                    help="first, compare both codes' predictions on this many test images")
    return ap.parse_args()


def their_network(args):
    """The authors' dense network and Aeqprop trainer, as their run.py builds them."""
    if not os.path.isfile(os.path.join(args.authors_code, "network", "network.py")):
        raise SystemExit(f"--authors-code {args.authors_code}: no network/network.py there; expected a copy of "
                         "github.com/bscellier/agnostic-equilibrium-propagation")
    try:
        import torch
    except ImportError:
        raise SystemExit("this check needs PyTorch (pip install torch); the package itself does not") from None
    sys.path.insert(0, os.path.abspath(args.authors_code))
    from hyperparameters import load_hyperparameters
    from network.network import Network
    from training.sgd import Aeqprop

    torch.manual_seed(args.seed)
    hp = load_hyperparameters("FashionMNIST", "1h")
    net = Network(hp["layer_shapes"][0])
    for shape, lo, hi, lr in zip(hp["layer_shapes"][1:], hp["min_intervals"], hp["max_intervals"],
                                 hp["learning_rates_biases"]):
        net.add_layer(shape, min_interval=lo, max_interval=hi, learning_rate=lr)
    for (pre, post), kind, gain, lr in zip(hp["edges"], hp["weight_types"], hp["gains"], hp["learning_rates_weights"]):
        net.add_edge(pre, post, kind, gain, None, 0, learning_rate=lr)
    net.pack(linearized_cost=False)
    net.thresholds = [hp["threshold"]] * net.num_layers
    net.set_device("cpu")
    trainer = Aeqprop(net)
    trainer.training_mode, trainer.nudging = args.mode, args.beta
    trainer.max_iterations_first_phase = hp["max_iterations_first_phase"]
    trainer.max_iterations_second_phase = hp["max_iterations_second_phase"]
    trainer.max_iterations_params = hp["max_iterations_params"]
    return torch, net, trainer


def compare_predictions(torch, theirs, ours, data, n, batch=100):
    """Both codes' test predictions from the same parameters (their Evaluator: zero start, forward sweeps)."""
    theirs.set_nudging(0.0)
    errors, differ = np.zeros(2), 0
    for i in range(0, n, batch):
        x = data.x_test[i:i + batch].astype(np.float32)
        y = data.y_test[i:i + batch]
        theirs.set_data(torch.from_numpy(x.reshape(-1, 1, 28, 28)), torch.from_numpy(y.astype(np.int64)), reset=True)
        theirs.homeostatic_relaxation(max_iterations=100, adjust_control_knobs=False)
        their_pred = theirs.predict().numpy()
        our_pred = ours.outputs(ours.settle(Phase(x))).argmax(1)
        errors += [(their_pred != y).sum(), (our_pred != y).sum()]
        differ += int((their_pred != our_pred).sum())
    print(f"{n} test images: test error authors' {100 * errors[0] / n:.2f} %, ours {100 * errors[1] / n:.2f} %; "
          f"{differ} predictions differ", flush=True)


def our_network(mode: str, beta: float, threshold: float | None = None):
    """Our aeqprop-dense network and the training loop's in-place step of its Aeqprop rule (oracle, one relaxation)."""
    options = {**PRESET["model_options"], **({} if threshold is None else {"threshold": threshold})}
    ours = load_system(PRESET["model"], seed=0, **options)
    rule = get_algorithm(f"aeqprop-{mode}", beta=beta, epsilon=ours.per_parameter(PRESET["epsilon"]),
                         controller="oracle", relax_rounds=1)
    return ours, rule.in_place(ours, None)


def main():
    args = parse_args()
    torch, theirs, their_trainer = their_network(args)
    ours, in_place = our_network(args.mode, args.beta, args.threshold)
    groups = ours.groups

    def read_theirs():
        states = [p.state.detach().numpy().astype(np.float64) for p in theirs._params]
        return np.concatenate([states[THEIR_ORDER[name]].ravel() for name, _ in groups])

    if args.checkpoint:
        theta = np.load(args.checkpoint)["parameters"]
        for name, sl in groups:
            param = theirs._params[THEIR_ORDER[name]]
            param.state = torch.tensor(theta[sl].reshape(param.state.shape), dtype=torch.float32)

    data = load_dataset("fmnist", seed=0)
    if args.evaluate:
        ours.parameters = read_theirs()
        compare_predictions(torch, theirs, ours, data, args.evaluate)
    if not args.steps:
        return
    eye = np.eye(ours.n_outputs)
    worst, cosines, cpu = [], [], []
    for k in range(args.skip, args.skip + args.steps):
        x = data.x_train[32 * k:32 * (k + 1)].astype(np.float32)
        y = data.y_train[32 * k:32 * (k + 1)]
        before = read_theirs()
        ours.parameters = before
        t0 = time.process_time()
        theirs.set_data(torch.from_numpy(x.reshape(-1, 1, 28, 28)), torch.from_numpy(y.astype(np.int64)))
        their_trainer.inference()
        their_trainer.training_step()
        t1 = time.process_time()
        in_place.step(x, eye[y], in_place.base_rates)
        t2 = time.process_time()
        a, b = read_theirs() - before, ours.parameters - before
        rel = {name: np.abs(a[sl] - b[sl]).max() / np.abs(a[sl]).max() for name, sl in groups}
        worst.append(max(rel.values()))
        cosines.append(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
        cpu.append((t1 - t0, t2 - t1))
        if k - args.skip < 3 or (k + 1 - args.skip) % 25 == 0:
            print(f"batch {k}: difference / move " + " ".join(f"{n} {v:.2g}" for n, v in rel.items())
                  + f", cosine {cosines[-1]:.7f}", flush=True)
    print(f"{args.mode}, {args.steps} steps from batch {args.skip}"
          f"{' of ' + args.checkpoint if args.checkpoint else ' at initialisation'}: difference / move median "
          f"{np.median(worst):.2g}, largest {max(worst):.2g}; smallest cosine {min(cosines):.7f}; "
          f"CPU s per step (median): authors' {np.median(cpu, axis=0)[0]:.3f}, ours {np.median(cpu, axis=0)[1]:.3f}")


if __name__ == "__main__":
    main()
