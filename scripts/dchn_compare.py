"""Issue 6: the EBL study's DCHN comparison (its Table 1, Fashion-MNIST), CPU-sized.

All nine rules (p-ep, n-ep, c-ep, cl, p-cpl, n-cpl, c-cpl, tbp, rbp) train the same small
max-pool DCHN from the same initial parameters, on the same training subset in the same
seeded batch order, with the same optimiser (SGD + momentum + weight decay, cosine-annealed
per step over the run, EBL Table 5 / App. D) and the same relaxation budget (T free, K
nudged iterations). One process runs the rules one after the other and appends one JSON row
per epoch to OUT/results.jsonl as it goes; a rule whose last epoch is already there is
skipped, so a rerun resumes (a rule interrupted mid-way is rerun from its start).

    OPENBLAS_NUM_THREADS=1 nice -n 10 python scripts/dchn_compare.py --out runs/hopfield/dchn
    python scripts/dchn_compare.py --time-steps 5 --rules c-ep      # time one rule's steps only
    python scripts/dchn_compare.py --table --out runs/hopfield/dchn  # markdown table of the results
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from aeqprop_circuits.data.datasets import load_dataset, random_hflip  # noqa: E402
from aeqprop_circuits.errors import AeqpropError, DivergenceError  # noqa: E402
from aeqprop_circuits.learning.algorithms import get_algorithm  # noqa: E402
from aeqprop_circuits.systems.base import Phase  # noqa: E402
from aeqprop_circuits.systems.hopfield import PRESETS, build_model  # noqa: E402

RULES = ["c-ep", "n-ep", "p-ep", "cl", "p-cpl", "n-cpl", "c-cpl", "tbp", "rbp"]
MEAN, STD = PRESETS["ebl-dchn"]["normalize"]  # Table 4, Fashion-MNIST


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/hopfield/dchn")
    ap.add_argument("--rules", nargs="+", default=RULES)
    ap.add_argument("--spec", default="conv:1x28x28-16c3p1max-32c3p1max-10")
    ap.add_argument("--train", type=int, default=6000, help="first N training images")
    ap.add_argument("--test", type=int, default=2000, help="first N test images (fixed subset)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--free-iterations", type=int, default=20, help="T (paper 60)")
    ap.add_argument("--nudged-iterations", type=int, default=8, help="K (paper 15), also tbp's K")
    ap.add_argument("--rbp-iterations", type=int, default=40, help="max adjoint iterations of rbp")
    ap.add_argument("--beta", type=float, default=0.25)
    ap.add_argument("--lr", type=float, nargs="+", default=[0.0625, 0.0375, 0.0125],
                    help="per interaction (weights and bias), default Table 5's eta_1, eta_2, eta_5")
    ap.add_argument("--lr-scale", type=float, default=1.0)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--weight-decay", type=float, default=3e-4)
    ap.add_argument("--eta-min", type=float, default=2e-6)
    ap.add_argument("--gain", type=float, default=0.5)
    ap.add_argument("--cost-scale", type=float, default=0.5,
                    help="c in C = c |o - y|^2; 0.5 as the study's code (sessions 3-6 ran 1.0)")
    ap.add_argument("--bias-init", default="fan-in", choices=["fan-in", "zero"],
                    help="as the study's code (sessions 3-6 ran zero)")
    ap.add_argument("--hflip", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--time-steps", type=int, default=0, help="only time this many steps per rule")
    ap.add_argument("--table", action="store_true", help="print the markdown table of OUT/results.jsonl")
    return ap.parse_args()


def make_net(args):
    n = len(args.spec.split(":")[1].split("-")) - 1
    return build_model(args.spec, init="ebl", gains=[args.gain] * n, seed=args.seed, bias_init=args.bias_init,
                       cost_scale=args.cost_scale,
                       bounds=[(0.0, 1.0)] * (n - 1) + [(-np.inf, np.inf)], precision="float32",
                       schedule="alternating", threshold=0.0,
                       max_iterations=(args.free_iterations, args.nudged_iterations))


def make_rule(name, args):
    if name == "tbp":
        return get_algorithm("tbp", iterations=args.nudged_iterations)
    if name == "rbp":
        return get_algorithm("rbp", max_iterations=args.rbp_iterations, tolerance=1e-4)
    return get_algorithm(name, beta=args.beta)


def rates(net, args):
    if len(args.lr) != net.n_layers:
        raise AeqpropError(f"--lr needs {net.n_layers} values, got {len(args.lr)}")
    return net.per_parameter([v * args.lr_scale for v in args.lr for _ in (0, 1)])


def evaluate(net, x, y, batch=500):
    correct, loss = 0, 0.0
    for i in range(0, len(x), batch):
        xb, yb = x[i:i + batch], y[i:i + batch]
        state = net.settle(Phase(xb))
        out = net.outputs(state)
        correct += int((out.argmax(1) == yb).sum())
        loss += float(((out - np.eye(10)[yb]) ** 2).sum())
    return 1.0 - correct / len(x), loss / len(x)


def run_rule(name, args, data, done_epochs, log_path):
    net = make_net(args)
    rule = make_rule(name, args)
    lr0 = rates(net, args)
    theta = net.parameters
    velocity = np.zeros_like(theta)
    x_train, y_train = data["x_train"], data["y_train"]
    steps_per_epoch = math.ceil(len(x_train) / args.batch)
    total = steps_per_epoch * args.epochs
    eye = np.eye(net.n_outputs)
    step, status = 0, "ok"
    load_start = os.getloadavg()[0]
    for epoch in range(1, args.epochs + 1):
        order = np.random.default_rng([args.seed, epoch]).permutation(len(x_train))
        flip_rng = np.random.default_rng([args.seed, epoch, 1])
        wall0, cpu0 = time.time(), time.process_time()
        train_correct, train_loss, seen, nonconv = 0, 0.0, 0, []
        for b in range(steps_per_epoch):
            idx = order[b * args.batch:(b + 1) * args.batch]
            xb = x_train[idx]
            if args.hflip:
                xb = random_hflip(xb, net.input_shape, flip_rng)
            target = eye[y_train[idx]]
            try:
                est = rule.estimate(net, xb, target)
            except DivergenceError as err:
                status = f"diverged at step {step + 1}: {err}"
                break
            g = est.gradient + args.weight_decay * theta
            lr = args.eta_min + 0.5 * (lr0 - args.eta_min) * (1 + math.cos(math.pi * step / total))
            velocity = args.momentum * velocity + g
            theta = theta - lr * velocity
            step += 1
            if not np.all(np.isfinite(theta)):
                status = f"diverged at step {step}: non-finite parameters"
                break
            net.parameters = theta
            if est.outputs is not None:
                train_correct += int((est.outputs.argmax(1) == y_train[idx]).sum())
                train_loss += float(((est.outputs - target) ** 2).sum())
                seen += len(idx)
            if "adjoint" in est.extras:
                nonconv.append(est.extras["adjoint"]["residual"])
            if args.time_steps and step >= args.time_steps:
                cpu, wall = time.process_time() - cpu0, time.time() - wall0
                print(f"{name}: {step} steps of batch {args.batch}: {cpu / step:.3f} s CPU/step, "
                      f"{wall / step:.3f} s wall/step -> {cpu / step * steps_per_epoch:.0f} s CPU/epoch "
                      f"(load {os.getloadavg()[0]:.2f})", flush=True)
                return
        train_wall, train_cpu = time.time() - wall0, time.process_time() - cpu0
        if status != "ok":
            row = {"rule": name, "epoch": epoch, "status": status, "train_seconds": round(train_wall, 1),
                   "train_cpu_seconds": round(train_cpu, 1)}
        else:
            test_error, test_loss = evaluate(net, data["x_test"], data["y_test"])
            row = {"rule": name, "epoch": epoch, "status": status,
                   "test_error": round(100 * test_error, 2), "test_loss": round(test_loss, 4),
                   "train_error_running": round(100 * (1 - train_correct / seen), 2) if seen else None,
                   "train_loss_running": round(train_loss / seen, 4) if seen else None,
                   "train_seconds": round(train_wall, 1), "train_cpu_seconds": round(train_cpu, 1),
                   "eval_seconds": round(time.time() - wall0 - train_wall, 1),
                   "epoch_cpu_seconds": round(time.process_time() - cpu0, 1),
                   "load_start": round(load_start, 2), "load_end": round(os.getloadavg()[0], 2),
                   "param_norm": round(float(np.linalg.norm(theta)), 3)}
            if nonconv:
                row["rbp_adjoint_residual_median"] = float(np.median(nonconv))
        with open(log_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
        if status != "ok":
            return


def table(out):
    rows = [json.loads(line) for line in open(os.path.join(out, "results.jsonl"))]
    config = json.load(open(os.path.join(out, "config.json")))
    paper = PRESETS["ebl-dchn"]["paper_test_error"]
    epochs = config["epochs"]
    head = "| rule | " + " | ".join(f"test error, epoch {e}" for e in range(1, epochs + 1))
    print(head + " | last-epoch train error (running) | CPU s / epoch (train + eval) | status"
          " | paper (full DCHN, 100 ep.) |")
    print("|" + "---|" * (epochs + 5))
    for rule in config["rules"]:
        mine = [r for r in rows if r["rule"] == rule]
        errs = [f"{r['test_error']:.2f} %" if "test_error" in r else "—" for r in mine]
        errs += ["—"] * (epochs - len(errs))
        last = mine[-1] if mine else {}
        cpu = [r.get("epoch_cpu_seconds", r.get("train_cpu_seconds")) for r in mine]
        status = last.get("status", "not run")
        blown = [r["epoch"] for r in mine if r.get("test_loss", 0) > 10 or r.get("test_error", 0) > 80]
        if status == "ok" and blown:  # finite parameters but the free-phase outputs ran away
            status = f"diverged (epoch {blown[0]}: test loss {mine[blown[0] - 1]['test_loss']:.3g})"
        elif status == "ok" and len(mine) > 1 and mine[-1]["test_error"] > mine[-2]["test_error"] + 1:
            status = "unstable (test error rose)"
        print(f"| {rule} | " + " | ".join(errs)
              + f" | {last.get('train_error_running', '—')} % | {', '.join(str(c) for c in cpu)} | "
              + f"{status} | {paper.get(rule, '—')} % |")


def main():
    args = parse_args()
    if args.table:
        table(args.out)
        return
    data_set = load_dataset("fmnist", seed=args.seed)
    norm = lambda a: ((a - MEAN) / STD).astype(np.float32)  # noqa: E731
    data = {"x_train": norm(data_set.x_train[:args.train]), "y_train": data_set.y_train[:args.train],
            "x_test": norm(data_set.x_test[:args.test]), "y_test": data_set.y_test[:args.test]}
    os.makedirs(args.out, exist_ok=True)
    log_path = os.path.join(args.out, "results.jsonl")
    config = {k: v for k, v in vars(args).items() if k not in ("table", "out")}
    if not args.time_steps:
        cfg_path = os.path.join(args.out, "config.json")
        if os.path.exists(cfg_path):
            old = json.load(open(cfg_path))
            if {k: v for k, v in old.items() if k != "rules"} != {k: v for k, v in config.items() if k != "rules"}:
                raise SystemExit(f"{cfg_path} holds different settings; use another --out")
            config["rules"] = list(dict.fromkeys(old["rules"] + config["rules"]))
        json.dump(config, open(cfg_path, "w"), indent=1)
    net = make_net(args)
    print(f"{args.spec}: {net.n_parameters} parameters, layers {net.layer_shapes}", flush=True)
    done = {}
    if os.path.exists(log_path):
        for line in open(log_path):
            r = json.loads(line)
            done.setdefault(r["rule"], []).append(r)
    for name in args.rules:
        rows = done.get(name, [])
        if not args.time_steps and rows and (rows[-1]["epoch"] == args.epochs or rows[-1]["status"] != "ok"):
            print(f"{name}: done, skipped", flush=True)
            continue
        if rows and not args.time_steps:  # partial: rerun from the start, drop the old rows
            kept = [line for line in open(log_path) if json.loads(line)["rule"] != name]
            open(log_path, "w").writelines(kept)
        run_rule(name, args, data, rows, log_path if not args.time_steps else os.devnull)


if __name__ == "__main__":
    main()
