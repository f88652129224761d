"""Check a trained DRN with ngspice: write it as a netlist, solve test images with `.op`, compare classes.

    nice python scripts/drn_spice_check.py runs/drn/xs-cep --images 100 [--epoch N]

The run's checkpoint (theta = g / g0) goes into the builder circuit (`DRNSystem.circuit()`:
`deep_resistive_network(...)` + `circuit.with_conductance`), which is written as a SPICE
netlist (`netlist.write_netlist`, DIR/trained.cir) and solved by the `spice` solver, one
image at a time: ngspice's `.op` with the ideal diodes written as exponential stand-ins
(IS = 1e-20 A, N = 0.05: tens of mV forward drop at mA currents). Each image's outputs are
compared with DRNSystem's, both as trained (float32, the preset's 4 block sweeps) and exact
(float64, converged), and one JSON line per image goes to DIR/spice_check.jsonl as it is done
(a rerun skips the images already there). Conductances trained down to 0 S are written as
1e-15 S. At DRN-XS size (159 040 resistors) ngspice takes
~40 s per image on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from aeqprop_circuits.data.datasets import load_dataset
from aeqprop_circuits.drn import DRNSystem
from aeqprop_circuits.netlist import write_netlist
from aeqprop_circuits.runs.rundir import RunDir
from aeqprop_circuits.solvers.spice import spice

OPEN = 1e-15  # S


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--epoch", type=int, default=None, help="checkpoint epoch [default: latest]")
    args = parser.parse_args()
    run = RunDir(args.run_dir)
    config = run.read_config()
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
    with open(run.file("trained.cir"), "w") as f:
        f.write(write_netlist(circuit))
    data = load_dataset(config.get("data", "fmnist"))
    out_path = run.file("spice_check.jsonl")
    done = set()
    if os.path.exists(out_path):
        with open(out_path) as f:
            done = {json.loads(line)["image"] for line in f if line.strip()}
    outs = circuit.learning.outputs
    for i in range(args.images):
        if i in done:
            continue
        x = data.x_test[i:i + 1]
        began = time.time()
        result = spice(circuit, sources=exact.source_values(circuit, x))
        seconds = time.time() - began
        o_spice = result.potentials[:, outs[:, 0]] - result.potentials[:, outs[:, 1]]
        o_trained = trained.predict(x.astype(trained.dtype))
        o_exact = exact.predict(x)
        record = {"image": i, "label": int(data.y_test[i]), "epoch": epoch, "success": bool(result.success),
                  "class_spice": int(o_spice.argmax()), "class_trained": int(o_trained.argmax()),
                  "class_exact": int(o_exact.argmax()),
                  "max_dout_spice_exact": float(np.abs(o_spice - o_exact).max()),
                  "max_dout_trained_exact": float(np.abs(o_trained - o_exact).max()), "seconds": round(seconds, 1)}
        with open(out_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)
    with open(out_path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    same = sum(r["class_spice"] == r["class_trained"] for r in rows)
    print(f"{len(rows)} images: ngspice and the trained DRN agree on {same}; "
          f"max |o_spice - o_exact| = {max(r['max_dout_spice_exact'] for r in rows):.3g} V")


if __name__ == "__main__":
    main()
