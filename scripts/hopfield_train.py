"""Resumable Fashion-MNIST training of a Hopfield network with one learning rule, per-epoch CSV.

    nice -n 10 python scripts/hopfield_train.py --rule aeqprop-centered --out runs/hopfield/dense-centered
    nice -n 10 python scripts/hopfield_train.py --rule c-ep --out runs/hopfield/dense-cep

Stand-in for `aeqprop train --model ... --preset aeqprop-dense` until the CLI takes --model.
Settings come from the preset (default aeqprop-dense: Aeqprop Table 2). Aeqprop rules use the
oracle controller (App. C) with eps_k from the table; EP rules use the same expected step:
c-ep nudges at +-beta/2 (Aeqprop-centered's two nudges) and SGD with rate beta * eps_k
(the paper's autodiff baseline step size). Learning rates decay by 0.99 per epoch, the
convergence threshold adapts per epoch (App. C). After each epoch: theta, threshold and RNG
state go to checkpoint.npz, one row to metrics.csv (epoch, test error, train error on the
batches seen, mean train cost, seconds); a rerun with the same --out resumes.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: threaded BLAS stalls on a shared 2-core box

import numpy as np  # noqa: E402

from aeqprop_circuits.data.datasets import load_dataset
from aeqprop_circuits.learning.algorithms import get_algorithm
from aeqprop_circuits.systems.base import Phase
from aeqprop_circuits.systems.hopfield import PRESETS, build_model, preset_rates


def test_error(net, x, labels, batch=1000):
    wrong = 0
    for i in range(0, len(x), batch):
        out = net.outputs(net.settle(Phase(x[i:i + batch])))
        wrong += int(np.sum(out.argmax(axis=1) != labels[i:i + batch]))
    return 100.0 * wrong / len(x)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rule", default="aeqprop-centered")
    parser.add_argument("--preset", default="aeqprop-dense")
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-limit", type=int, default=0, help="use only the first N training images")
    args = parser.parse_args()
    preset = PRESETS[args.preset]
    os.makedirs(args.out, exist_ok=True)
    data = load_dataset(preset["data"])
    x_train, y_train = data.x_train, data.y_train
    if args.train_limit:
        x_train, y_train = x_train[:args.train_limit], y_train[:args.train_limit]
    net = build_model(args.preset, seed=args.seed)
    eps0 = preset_rates(net, args.preset)
    beta, batch = preset["beta"], preset["batch_size"]
    epochs = args.epochs or preset["epochs"]
    checkpoint = os.path.join(args.out, "checkpoint.npz")
    metrics = os.path.join(args.out, "metrics.csv")
    rng = np.random.default_rng(args.seed)
    first_epoch = 1
    if os.path.exists(checkpoint):
        saved = np.load(checkpoint, allow_pickle=True)
        net.parameters = saved["theta"]
        net.threshold = float(saved["threshold"])
        rng.bit_generator.state = json.loads(str(saved["rng"]))
        first_epoch = int(saved["epoch"]) + 1
        print(f"resuming after epoch {first_epoch - 1}")
    else:
        with open(os.path.join(args.out, "config.json"), "w") as f:
            json.dump({"rule": args.rule, "preset": args.preset, "seed": args.seed, "beta": beta,
                       "batch_size": batch, "train_limit": args.train_limit, "network": repr(net)}, f, indent=1)
        with open(metrics, "w", newline="") as f:
            csv.writer(f).writerow(["epoch", "test_error", "train_error", "train_cost", "threshold", "seconds"])
    for epoch in range(first_epoch, epochs + 1):
        eps = eps0 * preset.get("lr_decay", 1.0) ** (epoch - 1)
        if args.rule.startswith("aeqprop"):
            # App. C: oracle homeostasis, then one parallel relaxation of the parameters
            rule = get_algorithm(args.rule, beta=beta, epsilon=eps, controller="oracle", relax_rounds=1)
        else:
            rule = get_algorithm(args.rule, beta=beta / 2)
        order = rng.permutation(len(x_train))
        start = time.time()
        wrong, cost, seen = 0, 0.0, 0
        for i in range(0, len(order) - batch + 1, batch):
            idx = order[i:i + batch]
            x, labels = x_train[idx], y_train[idx]
            y = data.targets(labels, net.n_outputs)
            estimate = rule.estimate(net, x, y)
            if estimate.new_parameters is not None:
                net.parameters = estimate.new_parameters
            else:
                net.parameters = net.parameters - beta * eps * estimate.gradient
            if estimate.outputs is not None:
                wrong += int(np.sum(estimate.outputs.argmax(axis=1) != labels))
                cost += float(np.sum(net.cost_scale * np.sum((estimate.outputs - y) ** 2, axis=1)))
            seen += len(idx)
        seconds = time.time() - start
        threshold = net.end_epoch()
        err = test_error(net, data.x_test, data.y_test)
        train_err = 100.0 * wrong / seen if wrong or args.rule.endswith("ep") else float("nan")
        with open(metrics, "a", newline="") as f:
            csv.writer(f).writerow([epoch, f"{err:.2f}", f"{train_err:.2f}", f"{cost / seen:.4f}",
                                    f"{threshold:.3g}", f"{seconds:.1f}"])
        np.savez(checkpoint, theta=net.parameters, threshold=threshold, epoch=epoch,
                 rng=json.dumps(rng.bit_generator.state))
        print(f"epoch {epoch}: test error {err:.2f}%  train error {train_err:.2f}%  {seconds:.0f} s", flush=True)


if __name__ == "__main__":
    main()
