"""Run directories: never overwritten, everything needed to rerun, checkpoints to resume from."""

from __future__ import annotations

import csv
import json
import os
import time

import numpy as np


def fresh_directory(path: str) -> str:
    """`path` if free, else `path-2`, `path-3`, ...: a run never overwrites another."""
    candidate, k = path, 1
    while os.path.exists(candidate) and os.listdir(candidate):
        k += 1
        candidate = f"{path}-{k}"
    os.makedirs(candidate, exist_ok=True)
    return candidate


def default_name(model: str, algorithm: str) -> str:
    stem = os.path.splitext(os.path.basename(model.replace(":", "-")))[0]
    return os.path.join("runs", f"{stem}-{algorithm}-{time.strftime('%Y%m%d-%H%M%S')}")


class RunDir:
    """config.json, metrics.csv (per epoch), steps.jsonl (per step), checkpoints/*.npz."""

    def __init__(self, path: str):
        self.path = path
        os.makedirs(os.path.join(path, "checkpoints"), exist_ok=True)

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def write_config(self, config: dict) -> None:
        with open(self.file("config.json"), "w") as f:
            json.dump(config, f, indent=2, sort_keys=True)

    def read_config(self) -> dict:
        with open(self.file("config.json")) as f:
            return json.load(f)

    def append_metrics(self, row: dict) -> None:
        path = self.file("metrics.csv")
        new = not os.path.exists(path)
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)

    def append_step(self, record: dict) -> None:
        with open(self.file("steps.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")

    def save_checkpoint(self, epoch: int, parameters: np.ndarray, **extra) -> str:
        path = os.path.join(self.path, "checkpoints", f"epoch{epoch:04d}.npz")
        np.savez(path, parameters=parameters, epoch=epoch, **extra)
        np.savez(os.path.join(self.path, "checkpoints", "latest.npz"), parameters=parameters, epoch=epoch, **extra)
        return path

    def latest_checkpoint(self):
        path = os.path.join(self.path, "checkpoints", "latest.npz")
        if not os.path.exists(path):
            return None
        with np.load(path) as data:
            return {key: data[key] for key in data.files}
