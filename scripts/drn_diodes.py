"""What the ideal-diode approximation costs: a trained DRN evaluated with Shockley diodes.

    nice python scripts/drn_diodes.py runs/drn/xs-cep --images 2000

Loads the run's latest theta and classifies the first N Fashion-MNIST test images with
the same conductances and three diode models: ideal (the training physics), the exponential
stand-in the spice solver gives ngspice for an ideal diode (IS = 1e-20 A, N = 0.05), and a
silicon-like diode (IS = 1e-14 A, N = 1, ~0.6 V forward drop at these currents). Settles are
exact (float64, block sweeps to 1e-12 V; a 1-D Newton per node for the exponential diodes).
Prints a Markdown table: test error and the largest output change against the ideal network.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from aeqprop_circuits.data.datasets import load_dataset
from aeqprop_circuits.experiments.rundir import RunDir
from aeqprop_circuits.systems.drn import DRNSystem

MODELS = [("ideal", {"diodes": "ideal"}),
          ("exponential IS=1e-20 A, N=0.05 (ngspice stand-in)", {"diodes": "shockley", "saturation_current": 1e-20,
                                                                 "emission": 0.05}),
          ("Shockley IS=1e-14 A, N=1", {"diodes": "shockley", "saturation_current": 1e-14, "emission": 1.0})]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--images", type=int, default=2000)
    args = parser.parse_args()
    run = RunDir(args.run_dir)
    config, theta = run.read_config(), run.latest_checkpoint()["parameters"]
    data = load_dataset(config["data"])
    x, labels = data.x_test[:args.images], data.y_test[:args.images]
    options = {k: v for k, v in config.get("model_options", {}).items() if k not in ("iterations", "dtype")}
    reference = None
    print("| diodes | test error (%) | max abs output change vs ideal (V) | seconds |")
    print("|---|---|---|---|")
    for name, diode in MODELS:
        system = DRNSystem.from_spec(config["model"], seed=config["seed"], **{**options, **diode})
        system.parameters = theta
        began = time.time()
        outputs = np.concatenate([system.predict(x[i:i + 500]) for i in range(0, len(x), 500)])
        seconds = time.time() - began
        reference = outputs if reference is None else reference
        error = 100.0 * np.mean(outputs.argmax(axis=1) != labels)
        print(f"| {name} | {error:.2f} | {np.abs(outputs - reference).max():.3g} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
