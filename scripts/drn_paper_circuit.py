"""Issue 7 diagnostic: the fast-DRN paper's own circuit, trained by centered EP, beside the builder's.

    OPENBLAS_NUM_THREADS=1 python scripts/drn_paper_circuit.py --passes 5              # validation split
    OPENBLAS_NUM_THREADS=1 python scripts/drn_paper_circuit.py --split test --passes 50 --out F.jsonl
    python scripts/drn_paper_circuit.py --to-run-dir F.jsonl DIR     # DIR/metrics.csv for `aeqprop compare`

Our DRN presets train the builder's circuit (hidden nodes held in [0, 1] V by two diodes,
bias resistors to +-1 V rails, differential output pairs) and DRN-1H plateaus near 11 % on
Fashion-MNIST, against the paper's 10.38 %. The paper's code (Scellier 2024, energy-based-
learning, papers/fast-drn/drn.py and model/resistive/) simulates a different circuit:

- half of the hidden nodes are excitatory (one ideal diode keeps them >= 0 V), half
  inhibitory (<= 0 V), with no upper rail;
- biases are current sources (energy -b . V, signed), initialised at 0;
- outputs are single nodes, cost 1/2 |o - y|^2 with one-hot y, nudged at +-beta (beta = 1);
- inputs +-gain x (gain 480 for 1H), conductances initialised at max(0, U(-1, 1) / sqrt(fan_in))
  and clipped at 0 after each step; SGD at 0.006 for every block, decayed 0.99 per epoch;
- batch 4, 4 block sweeps per phase (hidden then output), the free phase of a training step
  starting where the previous batch's ended, evaluation from zero states.

This script is that circuit, written in numpy from the description above (its energy is
1/2 sum g (V_i - V_j)^2 - sum b V, so each layer's block update is a weighted mean of its
neighbours plus its bias current, divided by its total conductance, then clipped). It answered
one question: does the circuit explain the gap? It did (docs/drn.md), and since session 8 the
package has the circuit: `aeqprop train --preset drn-1h-universal` (drn/signed.py). The script
stays as an independent second implementation: tests/test_drn_signed.py holds the package's
training steps equal to this script's. One JSON line per pass.

The defaults are the fast-DRN MNIST script's. The universal-DRN script's Fashion-MNIST recipe,
the source of the paper's 10.38 % (docs/drn.md, "Where 10.38 % comes from"), is

    --split test --passes 100 --gain 300 --beta 0.5 --lr 0.005 --momentum 0.9 --batch 32 --hflip --backward
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from aeqprop_circuits.data.datasets import load_dataset, random_hflip
from aeqprop_circuits.learning.optim import SGD


class PaperDRN:
    """One-hidden-layer DRN of the paper's code: excitatory/inhibitory hidden units, bias currents, single outputs."""

    def __init__(self, n_in: int, n_hidden: int, n_out: int, gain: float, seed: int, dtype=np.float32):
        rng = np.random.default_rng(seed)
        self.g1 = np.maximum(rng.uniform(-1, 1, (2 * n_in, n_hidden)) / np.sqrt(2 * n_in), 0).astype(dtype)
        self.g2 = np.maximum(rng.uniform(-1, 1, (n_hidden, n_out)) / np.sqrt(n_hidden), 0).astype(dtype)
        self.b1, self.b2 = np.zeros(n_hidden, dtype), np.zeros(n_out, dtype)
        self.gain, self.dtype, self.half = gain, dtype, n_hidden // 2
        self.velocity = [np.zeros_like(theta) for theta in (self.g1, self.g2, self.b1, self.b2)]

    def sources(self, x):
        return (self.gain * np.concatenate([x, -x], axis=1)).astype(self.dtype)

    def clamp(self, v):
        """What the phases of one step share: the inputs' current into the hidden nodes and their conductance sums."""
        return v @ self.g1 + self.b1, self.g1.sum(0) + self.g2.sum(1)

    def relax(self, clamped, h, o, iterations, beta=0.0, y=None, backward=False):
        """Block coordinate descent from (h, o): each layer in closed form, hidden then output
        (output then hidden with `backward`, the universal-DRN script's order in nudged phases)."""
        drive, d_hidden = clamped
        d_out = self.g2.sum(0) + beta
        if np.any(d_out <= 0):
            raise SystemExit(f"nudge beta = {beta} makes an output node's energy non-convex (beta >= its conductance)")
        pull = self.b2 + (beta * y if beta else 0.0)
        for _ in range(iterations):
            if backward:
                o = (h @ self.g2 + pull) / d_out
            h = (drive + o @ self.g2.T) / d_hidden
            h[:, :self.half] = np.maximum(h[:, :self.half], 0)
            h[:, self.half:] = np.minimum(h[:, self.half:], 0)
            if not backward:
                o = (h @ self.g2 + pull) / d_out
        return h, o

    def step(self, v, h_plus, o_plus, h_minus, o_minus, beta, lr, momentum=0.0):
        """Centered EP: [dE/dtheta(+beta) - dE/dtheta(-beta)] / 2 beta, in GEMM form, then SGD
        (PyTorch's momentum form: velocity = momentum * velocity + gradient) and clipping at 0."""
        scale = 1.0 / (2 * beta * len(v))
        # 1/2 mean (a_i - b_j)^2 differences: the a_i^2 terms of the input block cancel (same sources)
        hidden_sq = 0.5 * ((h_plus**2).sum(0) - (h_minus**2).sum(0))
        grads = (scale * (hidden_sq - v.T @ (h_plus - h_minus)),
                 scale * (hidden_sq[:, None] + 0.5 * ((o_plus**2).sum(0) - (o_minus**2).sum(0))
                          - (h_plus.T @ o_plus - h_minus.T @ o_minus)),
                 -scale * (h_plus - h_minus).sum(0),  # dE/db = -V
                 -scale * (o_plus - o_minus).sum(0))
        sgd = SGD(lr, momentum)
        for k, (theta, g) in enumerate(zip((self.g1, self.g2, self.b1, self.b2), grads)):
            delta, self.velocity[k] = sgd.update(g, self.velocity[k])
            theta += delta
        np.maximum(self.g1, 0, out=self.g1)
        np.maximum(self.g2, 0, out=self.g2)

    def predict(self, x, iterations, batch=1000):
        out = []
        for i in range(0, len(x), batch):
            v = self.sources(x[i:i + batch])
            h = np.zeros((len(v), self.g1.shape[1]), self.dtype)
            out.append(self.relax(self.clamp(v), h, np.zeros((len(v), self.g2.shape[1]), self.dtype), iterations)[1])
        return np.concatenate(out).argmax(1)


def to_run_dir(jsonl: str, run_dir: str) -> None:
    """A metrics.csv from this script's JSON lines, so that `aeqprop compare` reads the run."""
    import csv
    import os

    rows = [json.loads(line) for line in open(jsonl)]
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "metrics.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", "train_accuracy", "test_accuracy", "test_error", "seconds"])
        for r in rows:
            writer.writerow([r["pass"], 1 - r["train_error_running"] / 100, 1 - r["error"] / 100, r["error"] / 100,
                             r["seconds"]])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--to-run-dir", nargs=2, metavar=("JSONL", "DIR"),
                   help="only write DIR/metrics.csv from the JSON lines of a run, for `aeqprop compare`")
    p.add_argument("--split", choices=["validation", "test"], default="validation",
                   help="validation: train on images 0-49 999, evaluate on 50 000-59 999; test: all 60 000 / test set")
    p.add_argument("--passes", type=int, default=5)
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--gain", type=float, default=480.0)
    p.add_argument("--beta", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=0.006)
    p.add_argument("--decay", type=float, default=0.99)
    p.add_argument("--iterations", type=int, default=4)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--momentum", type=float, default=0.0)
    p.add_argument("--hflip", action="store_true", help="mirror each training image with probability 1/2")
    p.add_argument("--backward", action="store_true", help="nudged phases relax the output layer first")
    p.add_argument("--out", help="also append the JSON lines to this file")
    args = p.parse_args()
    if args.to_run_dir:
        return to_run_dir(*args.to_run_dir)

    data = load_dataset("fmnist")
    if args.split == "validation":
        x_train, y_train = data.x_train[:50_000], data.y_train[:50_000]
        x_eval, y_eval = data.x_train[50_000:], data.y_train[50_000:]
    else:
        x_train, y_train, x_eval, y_eval = data.x_train, data.y_train, data.x_test, data.y_test
    x_train, x_eval = x_train.astype(np.float32), x_eval.astype(np.float32)
    targets = np.eye(10, dtype=np.float32)[y_train]
    net = PaperDRN(x_train.shape[1], args.hidden, 10, args.gain, args.seed)
    h = np.zeros((args.batch, args.hidden), np.float32)
    o = np.zeros((args.batch, 10), np.float32)
    lr, began = args.lr, time.time()
    for epoch in range(1, args.passes + 1):
        order = np.random.default_rng([args.seed, epoch]).permutation(len(x_train))
        flips = np.random.default_rng([args.seed, epoch, 1])
        wrong = 0
        for start in range(0, len(order) - args.batch + 1, args.batch):
            index = order[start:start + args.batch]
            x = random_hflip(x_train[index], data.image_shape, flips) if args.hflip else x_train[index]
            v, y = net.sources(x), targets[index]
            clamped = net.clamp(v)  # one input GEMM per step, not per phase
            h, o = net.relax(clamped, h, o, args.iterations)  # free phase, warm-started from the last batch
            wrong += int((o.argmax(1) != y_train[index]).sum())
            hp, op = net.relax(clamped, h, o, args.iterations, args.beta, y, args.backward)
            hm, om = net.relax(clamped, h, o, args.iterations, -args.beta, y, args.backward)
            net.step(v, hp, op, hm, om, args.beta, lr, args.momentum)
        if not (np.isfinite(net.g1).all() and np.isfinite(net.g2).all()):
            raise SystemExit(f"diverged in pass {epoch}: non-finite conductances")
        lr *= args.decay
        error = 100.0 * float((net.predict(x_eval, args.iterations) != y_eval).mean())
        row = {"pass": epoch, "split": args.split, "error": round(error, 2),
               "train_error_running": round(100.0 * wrong / len(order), 2),
               "seconds": round(time.time() - began, 1), "config": vars(args)}
        print(json.dumps(row), flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
