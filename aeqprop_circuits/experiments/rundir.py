"""Run directories: never overwritten, self-contained, written so that a kill at any moment loses nothing.

A run directory holds `config.json` (the TrainConfig and facts of the run), `metrics.csv` (one
row per epoch, epoch 0 the untrained network), `steps.jsonl` (one record per traced step),
`checkpoints/epochNNNN.npz` (theta, the optimiser's and the system's training state after each
epoch) and, for a netlist model, `netlist/` (a copy of the netlist and its includes, with
their hash in config.json): a resumed run trains the circuit it started with.

Writes are atomic (a temporary file, then `os.replace`) or appends of whole records. The
order within an epoch is: step records, then the metrics row, then the checkpoint. Resuming
takes the newest checkpoint that reads back and cuts metrics.csv and steps.jsonl back to its
epoch, so a run killed at any moment and resumed ends as an uninterrupted run.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
import shutil
import time
import zipfile

import numpy as np

from aeqprop_circuits.errors import AeqpropError

CHECKPOINT = re.compile(r"^epoch(\d{4,})\.npz$")


class RunDirError(AeqpropError):
    """A run directory that cannot be read or resumed; the message names the file."""


def fresh_directory(path: str) -> str:
    """Create and return `path` if free (absent or empty), else `path-2`, `path-3`, ...: never overwrite a run."""
    candidate, k = path, 1
    while True:
        try:
            os.makedirs(candidate)
            return candidate
        except FileExistsError:
            if os.path.isdir(candidate) and not os.listdir(candidate):
                return candidate
        k += 1
        candidate = f"{path}-{k}"


def default_name(model: str, algorithm: str) -> str:
    stem = os.path.splitext(os.path.basename(model.replace(":", "-")))[0]
    return os.path.join("runs", f"{stem}-{algorithm}-{time.strftime('%Y%m%d-%H%M%S')}")


def atomic_write(path: str, data: bytes | str) -> None:
    """Write a whole file or nothing: a temporary file next to it, flushed, then renamed over it."""
    temporary = f"{path}.tmp{os.getpid()}"
    try:
        with open(temporary, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except OSError as err:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise RunDirError(f"cannot write {path}: {err.strerror or err}; the run can be resumed from its last "
                          "checkpoint once there is room") from None


def _append(path: str, text: str) -> None:
    """Append one or more whole lines in one write (a reader never sees a part of a record it keeps)."""
    try:
        with open(path, "a") as f:
            f.write(text)
            f.flush()
    except OSError as err:
        raise RunDirError(f"cannot write {path}: {err.strerror or err}; the run can be resumed from its last "
                          "checkpoint once there is room") from None


def file_hash(paths) -> str:
    """sha256 over the files' contents, in order."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()


class RunDir:
    """One training run's directory; also the trainer's recorder (`epoch`, `step`)."""

    def __init__(self, path: str, create: bool = True):
        self.path = path
        if create:
            os.makedirs(os.path.join(path, "checkpoints"), exist_ok=True)
        elif not os.path.isfile(self.file("config.json")):
            raise RunDirError(f"{path}: not a run directory (no config.json)")

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    # --- config and netlist copy ------------------------------------------------------------
    def write_config(self, config: dict) -> None:
        atomic_write(self.file("config.json"), json.dumps(config, indent=2, sort_keys=True) + "\n")

    def read_config(self) -> dict:
        path = self.file("config.json")
        try:
            with open(path) as f:
                return json.load(f)
        except json.JSONDecodeError as err:
            raise RunDirError(f"{path}: not valid JSON ({err})") from None

    def keep_netlist(self, files: list[str]) -> tuple[str, str]:
        """Copy a netlist (first) and its includes into netlist/, keeping their relative layout.

        Returns (the copy of the netlist relative to the run directory, the files' hash).
        """
        root = os.path.dirname(os.path.abspath(files[0]))
        target = self.file("netlist")
        for path in files:
            relative = os.path.relpath(os.path.abspath(path), root)
            if relative.startswith(".."):  # an include outside the netlist's folder: keep it flat
                relative = os.path.basename(path)
            destination = os.path.join(target, relative)
            os.makedirs(os.path.dirname(destination), exist_ok=True)
            shutil.copyfile(path, destination)
        return os.path.join("netlist", os.path.basename(files[0])), file_hash(files)

    # --- the recorder -----------------------------------------------------------------------
    def epoch(self, row: dict, checkpoint: dict[str, np.ndarray]) -> None:
        """The metrics row, then the checkpoint of the same epoch (see the module docstring for why this order)."""
        path = self.file("metrics.csv")
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(row), lineterminator="\n")
        if not os.path.exists(path) or os.path.getsize(path) == 0:
            writer.writeheader()
        writer.writerow(row)
        _append(path, text.getvalue())
        self.save_checkpoint(int(row["epoch"]), checkpoint)

    def step(self, record: dict) -> None:
        _append(self.file("steps.jsonl"), json.dumps(record) + "\n")

    def save_checkpoint(self, epoch: int, arrays: dict[str, np.ndarray]) -> str:
        buffer = io.BytesIO()
        np.savez(buffer, **{**arrays, "epoch": np.array(epoch)})
        os.makedirs(os.path.join(self.path, "checkpoints"), exist_ok=True)
        path = os.path.join(self.path, "checkpoints", f"epoch{epoch:04d}.npz")
        atomic_write(path, buffer.getvalue())
        return path

    # --- reading back and resuming ----------------------------------------------------------
    def checkpoint_epochs(self) -> list[int]:
        folder = os.path.join(self.path, "checkpoints")
        names = os.listdir(folder) if os.path.isdir(folder) else []
        return sorted(int(m.group(1)) for m in map(CHECKPOINT.match, names) if m)

    def load_checkpoint(self, epoch: int) -> dict[str, np.ndarray]:
        path = os.path.join(self.path, "checkpoints", f"epoch{epoch:04d}.npz")
        try:
            with np.load(path) as data:
                saved = {key: data[key] for key in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise RunDirError(f"{path}: unreadable checkpoint ({err})") from None
        if "parameters" not in saved:
            raise RunDirError(f"{path}: not a checkpoint (no parameters)")
        return saved

    def latest_checkpoint(self, warn=None) -> dict[str, np.ndarray] | None:
        """The newest checkpoint that reads back (unreadable ones are skipped, with a warning)."""
        for epoch in reversed(self.checkpoint_epochs()):
            try:
                return self.load_checkpoint(epoch)
            except RunDirError as err:
                if warn:
                    warn(f"warning: {err}; trying an earlier one")
        return None

    def cut_back(self, epoch: int) -> None:
        """Drop metrics rows and step records after `epoch`, and any partial last line (a kill mid-write)."""
        path = self.file("metrics.csv")
        if os.path.exists(path):
            lines = _whole_lines(path)
            kept = lines[:1] + [line for line in lines[1:] if _leading_int(line) <= epoch]
            atomic_write(path, "".join(kept))
        path = self.file("steps.jsonl")
        if os.path.exists(path):
            kept = []
            for line in _whole_lines(path):
                try:
                    if json.loads(line)["epoch"] <= epoch:
                        kept.append(line)
                except (ValueError, KeyError):
                    continue
            atomic_write(path, "".join(kept))


def read_metrics(run_dir: str) -> list[dict[str, float]]:
    """The rows of a run's metrics.csv as numbers (empty before any epoch), whole lines only.

    A last line without its newline is a write that a kill cut short: it is left out. A cell
    that is not a number is an error naming file, line and column.
    """
    path = os.path.join(run_dir, "metrics.csv")
    if not os.path.exists(path):
        return []
    lines = _whole_lines(path)
    rows = []
    header = next(csv.reader(lines[:1]), [])
    for number, cells in enumerate(csv.reader(lines[1:]), start=2):
        if len(cells) != len(header):
            raise RunDirError(f"{path}:{number}: expected {len(header)} columns, got {len(cells)}")
        row = {}
        for column, (key, cell) in enumerate(zip(header, cells), start=1):
            try:
                row[key] = float(cell) if cell else math.nan
            except ValueError:
                raise RunDirError(f"{path}:{number}:{column}: {key}: expected a number, got '{cell}'") from None
        rows.append(row)
    return rows


def _whole_lines(path: str) -> list[str]:
    with open(path) as f:
        lines = f.readlines()
    return [line for line in lines if line.endswith("\n")]


def _leading_int(line: str) -> int:
    try:
        return int(line.split(",", 1)[0])
    except ValueError:
        return 1 << 62  # a damaged row: after every epoch, so it is dropped
