"""Check a trained DRN with ngspice: write it as a netlist, solve test images with ngspice, compare classes.

    nice python scripts/drn_spice_check.py runs/drn/xs-cep --images 100 --out runs/drn/xs-cep-spice

The run's checkpoint (theta = g / g0) goes into the builder circuit (`DRNSystem.circuit()`:
`deep_resistive_network(...)` + `circuit.with_conductance`), which is written as a SPICE
netlist (`netlist.write_netlist`, OUT/trained.cir) with the ideal diodes as exponential
stand-ins (`--model`, default `spice.NEAR_IDEAL_MODEL`: IS = 1e-20 A, N = 0.001, ~1 mV
forward drop at mA currents). Conductances trained down to 0 S are written as 1e-15 S.

The images are solved by `solvers.spice.spice_rows`: the netlist is loaded into ngspice once
per chunk of `--chunk` images and all of them are solved by one `dc` sweep whose point k
sets the inputs to image k (`--method sweep`; `--method alter` runs `alter` + `op` per
image instead; `--method per-image` is the old path, `spice()` per image, which writes and
reloads the netlist every time). Each image's outputs are compared with DRNSystem's, both
as trained (float32, the preset's block sweeps) and exact (float64, converged), and one JSON
line per image goes to OUT/spice_check.jsonl (a rerun skips the images already there).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from aeqprop_circuits.data.datasets import load_dataset
from aeqprop_circuits.experiments.rundir import RunDir
from aeqprop_circuits.netlist import write_netlist
from aeqprop_circuits.solvers import spice as spice_module
from aeqprop_circuits.solvers.spice import NEAR_IDEAL_MODEL, spice, spice_rows, with_spice_model
from aeqprop_circuits.systems.drn import DRNSystem

OPEN = 1e-15  # S


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--epoch", type=int, default=None, help="checkpoint epoch [default: latest]")
    parser.add_argument("--out", default=None, help="output directory [default: RUN_DIR]")
    parser.add_argument("--model", default=NEAR_IDEAL_MODEL, help="ngspice diode model standing in for "
                        "the ideal diodes [default: %(default)s]")
    parser.add_argument("--method", choices=("sweep", "alter", "per-image"), default="sweep")
    parser.add_argument("--chunk", type=int, default=100, help="images per ngspice load [default: %(default)s]")
    parser.add_argument("--tight", action="store_true", help="ngspice at spice.TIGHT_OPTIONS")
    args = parser.parse_args()
    run = RunDir(args.run_dir)
    config = run.read_config()
    out_dir = args.out or args.run_dir
    os.makedirs(out_dir, exist_ok=True)
    name = f"epoch{args.epoch:04d}.npz" if args.epoch else "latest.npz"
    with np.load(os.path.join(args.run_dir, "checkpoints", name)) as saved:
        theta, epoch = saved["parameters"], int(saved["epoch"])
    options = dict(config.get("model_options", {}))
    trained = DRNSystem.from_spec(config["model"], seed=config["seed"], **options)
    trained.parameters = theta
    exact = DRNSystem.from_spec(config["model"], seed=config["seed"],
                                **{**options, "iterations": None, "dtype": "float64"})
    exact.parameters = theta
    circuit = exact.circuit()
    # A conductance clipped to 0 S is an open circuit; SPICE wants a resistance, so it gets 1e-15 S (1 POhm).
    circuit = circuit.with_conductance(np.maximum(circuit.resistors.conductance, OPEN))
    circuit = with_spice_model(circuit, args.model)
    with open(os.path.join(out_dir, "trained.cir"), "w") as f:
        f.write(write_netlist(circuit))
    data = load_dataset(config.get("data", "fmnist"))
    out_path = os.path.join(out_dir, "spice_check.jsonl")
    done = set()
    if os.path.exists(out_path):
        with open(out_path) as f:
            done = {json.loads(line)["image"] for line in f if line.strip()}
    todo = [i for i in range(args.images) if i not in done]
    outs = circuit.learning.outputs
    solve_options = {"tight": args.tight}
    step = 1 if args.method == "per-image" else max(args.chunk, 1)
    for start in range(0, len(todo), step):
        images = np.array(todo[start:start + step])
        x = data.x_test[images]
        sources = exact.source_values(circuit, x)
        began = time.perf_counter()
        if args.method == "per-image":
            result = spice(circuit, sources=sources, **solve_options)
        else:
            result = spice_rows(circuit, sources, method=args.method, **solve_options)
        seconds = time.perf_counter() - began
        timing = spice_module.last_timing
        o_spice = result.potentials[:, outs[:, 0]] - result.potentials[:, outs[:, 1]]
        o_trained = trained.predict(x.astype(trained.dtype)).astype(np.float64)
        o_exact = exact.predict(x)
        ok = np.isfinite(o_spice).all(axis=1)
        # seconds per image: the one-time netlist write and load excluded, except per image
        per_image = (seconds if args.method == "per-image" else seconds - timing.write - timing.load) / len(images)
        chunk = {"rows": len(images), "seconds": round(seconds, 2), "write": round(timing.write, 2),
                 "load": round(timing.load, 2), "analysis": round(timing.op, 2), "read": round(timing.read, 2)}
        print(json.dumps({"chunk": chunk, "message": result.message[:300]}), flush=True)
        with open(out_path, "a") as f:
            for r, i in enumerate(images):
                record = {"image": int(i), "label": int(data.y_test[i]), "epoch": epoch, "success": bool(ok[r]),
                          "class_spice": int(o_spice[r].argmax()) if ok[r] else None,
                          "class_trained": int(o_trained[r].argmax()), "class_exact": int(o_exact[r].argmax()),
                          "max_dout_spice_exact": float(np.abs(o_spice[r] - o_exact[r]).max()),
                          "max_dout_trained_exact": float(np.abs(o_trained[r] - o_exact[r]).max()),
                          "method": args.method, "model": args.model,
                          "seconds": round(per_image, 3), "chunk": chunk}
                f.write(json.dumps(record) + "\n")
    with open(out_path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    summary = summarize(rows)
    with open(os.path.join(out_dir, "spice_check_summary.json"), "w") as f:
        json.dump({**summary, "run_dir": args.run_dir, "epoch": epoch, "loadavg": os.getloadavg()}, f, indent=1)
    print(json.dumps(summary))


def summarize(rows: list[dict]) -> dict:
    """Agreement counts, largest output differences and time per image over the check's records."""
    chunks = {json.dumps(r["chunk"], sort_keys=True): r["chunk"] for r in rows if "chunk" in r}.values()
    return {
        "images": len(rows), "solved": sum(r["success"] for r in rows),
        "same_class_spice_trained": sum(r["class_spice"] == r["class_trained"] for r in rows),
        "same_class_spice_exact": sum(r["class_spice"] == r["class_exact"] for r in rows),
        "same_class_trained_exact": sum(r["class_trained"] == r["class_exact"] for r in rows),
        "correct_spice": sum(r["class_spice"] == r["label"] for r in rows),
        "max_dout_spice_exact": max(r["max_dout_spice_exact"] for r in rows),
        "max_dout_trained_exact": max(r["max_dout_trained_exact"] for r in rows),
        "seconds_per_image": sum(r["seconds"] for r in rows) / len(rows),
        "load_seconds": [c["load"] for c in chunks], "write_seconds": [c["write"] for c in chunks],
        "model": sorted({r.get("model", "is=1e-20 n=0.05") for r in rows}),
    }


if __name__ == "__main__":
    main()
