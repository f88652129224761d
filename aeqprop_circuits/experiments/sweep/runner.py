"""Run a sweep's points as dask.distributed tasks, one run directory per point, resumable.

A point's directory `DIR/points/NAME` is an ordinary run directory (runs/rundir.py), which
`aeqprop train --resume` and `aeqprop plot` take as they are; the sweep keeps its own notes
apart, in `DIR/logs/NAME.json` (status, message, what the sweep did with it) and
`DIR/logs/NAME.log` (the lines `aeqprop train` would print). The state of the run directory
decides what a (re)run does:

- finished (metrics.csv holds every epoch): skipped;
- started (config.json written, epochs missing): resumed from its latest checkpoint;
- new: trained from scratch.

A task never raises for a point that fails (bad option, diverging phase, any exception): it
returns the failure as a record, so one bad point never stops the others and dask's
`retries=` are spent only on workers that die (the retry resumes from the checkpoint).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import traceback

from aeqprop_circuits.errors import AeqpropError, DivergenceError
from aeqprop_circuits.experiments.rundir import read_metrics
from aeqprop_circuits.experiments.sweep.spec import Point

# Options whose change between runs of a point is not a different run (epochs may grow: resume trains on).
_RESUMABLE_CHANGES = {"epochs", "out", "model"}


def one_line(error: BaseException) -> str:
    """An error's message on one line (it goes into a table cell)."""
    return " ".join(str(error).split())


def point_state(run_dir: str, epochs: int | None) -> str:
    """'finished', 'started' or 'new' (see the module docstring)."""
    if not os.path.exists(os.path.join(run_dir, "config.json")):
        return "new"
    if epochs is None:
        with open(os.path.join(run_dir, "config.json")) as f:
            epochs = json.load(f).get("epochs")
    rows = read_metrics(run_dir)
    if rows and epochs is not None and rows[-1].get("epoch", 0) >= epochs:
        return "finished"
    return "started"


def _config_mismatch(run_dir: str, options: dict) -> str | None:
    """What differs between the options of a started run and those the spec asks for now, if anything."""
    with open(os.path.join(run_dir, "config.json")) as f:
        config = json.load(f)
    changed = [f"{key}: {config.get(key)!r} there, {value!r} in the spec" for key, value in sorted(options.items())
               if value is not None and key not in _RESUMABLE_CHANGES and config.get(key) != value]
    return "; ".join(changed) or None


def run_point(point: Point, run_dir: str, log_dir: str) -> dict:
    """Bring one point to its last epoch (dask task). Returns {name, status, action, message}.

    status: ok | failed | diverged; action: skipped | resumed | ran. The record also goes to
    `log_dir/NAME.json`, next to `log_dir/NAME.log` (what `aeqprop train` would have printed).
    """
    from aeqprop_circuits.experiments.session import run_training

    state = point_state(run_dir, point.epochs)
    record = {"name": point.name, "status": "ok", "action": "skipped", "message": ""}
    status_file = os.path.join(log_dir, f"{point.name}.json")
    if state == "finished":
        if read_status(status_file).get("status") != "ok":
            write_status(status_file, record)  # finished by `aeqprop train --resume` or by an interrupted sweep
        return record
    os.makedirs(log_dir, exist_ok=True)
    began = time.time()
    with open(os.path.join(log_dir, f"{point.name}.log"), "a") as log:
        def echo(line=""):
            log.write(f"{line}\n")
            log.flush()

        echo(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {state} point {point.name}")
        try:
            given = {key: value for key, value in point.options.items() if key != "model"}
            if state == "started":
                record["action"] = "resumed"
                mismatch = _config_mismatch(run_dir, point.options)
                if mismatch:
                    raise AeqpropError(f"{run_dir} holds a run with other options ({mismatch}); "
                                       f"remove it or sweep into another --out")
                run_training(None, run_dir, True, {"epochs": point.epochs}, echo=echo)
            else:
                record["action"] = "ran"
                _clear_empty(run_dir)
                written = run_training(point.options["model"], None, True, {**given, "out": run_dir}, echo=echo)
                if os.path.abspath(written) != os.path.abspath(run_dir):
                    raise AeqpropError(f"the run went to {written} instead of {run_dir}")
        except DivergenceError as err:
            record.update(status="diverged", message=one_line(err))
        except AeqpropError as err:
            record.update(status="failed", message=one_line(err))
        except Exception as err:  # a bug or a library error: keep the traceback in the point's log
            record.update(status="failed", message=f"{type(err).__name__}: {one_line(err)}")
            echo(traceback.format_exc())
        if record["message"]:
            echo(f"{record['status']}: {record['message']}")
    record["wall_seconds"] = round(time.time() - began, 3)
    write_status(status_file, record)
    return record


def _clear_empty(run_dir: str) -> None:
    """Remove a point directory left without config.json (a run that failed before writing it), if it holds no file.

    runs/rundir.py's fresh_directory never reuses a non-empty directory, and the point's name must stay its own.
    """
    if not os.path.isdir(run_dir):
        return
    files = [os.path.join(root, name) for root, _, names in os.walk(run_dir) for name in names]
    if files:
        raise AeqpropError(f"{run_dir} holds files ({os.path.relpath(files[0], run_dir)}, ...) but no config.json; "
                           f"remove it or sweep into another --out")
    shutil.rmtree(run_dir)


def read_status(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def write_status(path: str, record: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(record, f, indent=2)


def points_directory(out: str) -> str:
    return os.path.join(out, "points")


def logs_directory(out: str) -> str:
    return os.path.join(out, "logs")


def start_client(scheduler: str | None, workers: int | None, processes: bool = True):
    """A dask Client: on `scheduler` if given, else on an embedded LocalCluster of `workers` single-thread workers."""
    import logging

    from distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout="20s")
        except (OSError, TimeoutError, ValueError) as err:
            raise AeqpropError(f"--scheduler {scheduler}: cannot connect ({err})") from None
    options = {"env": worker_environment(workers)} if processes else {}
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=processes, dashboard_address=None,
                           silence_logs=logging.ERROR, **options)
    return Client(cluster)


def worker_environment(workers: int | None, cores: int | None = None) -> dict:
    """Environment of a local worker process: the cores shared out among the workers for numba's loops (a
    signed DRN's streamed first block and narrow blocks run on NUMBA_NUM_THREADS threads, by default one
    per core, in each process). A NUMBA_NUM_THREADS the user set is kept."""
    if "NUMBA_NUM_THREADS" in os.environ:
        return {"NUMBA_NUM_THREADS": os.environ["NUMBA_NUM_THREADS"]}
    from dask.system import CPU_COUNT  # the cores this process may use (affinity, cgroup quota), as dask counts them

    cores = cores or CPU_COUNT
    return {"NUMBA_NUM_THREADS": str(max(1, cores // (workers or cores)))}


def run_points(points: list, out: str, client, retries: int = 2, progress: bool = True, task=run_point) -> dict:
    """Submit every point, gather as they complete; name -> record. Workers that die are retried `retries` times."""
    from distributed import as_completed

    directory, log_dir = os.path.abspath(points_directory(out)), os.path.abspath(logs_directory(out))
    futures = {}
    for point in points:
        future = client.submit(task, point, os.path.join(directory, point.name), log_dir,
                               key=f"sweep-point-{point.name}", retries=retries, pure=False)
        futures[future] = point
    records = {}
    completed = as_completed(futures)
    if progress:
        from tqdm import tqdm

        completed = tqdm(completed, total=len(futures), desc="sweep", unit="point", file=sys.stderr)
    for future in completed:
        point = futures[future]
        try:
            record = future.result()
        except Exception as err:  # the worker died more than `retries` times (KilledWorker) or the task broke
            record = {"name": point.name, "status": "failed", "action": "ran",
                      "message": f"{type(err).__name__}: {one_line(err)}"}
            write_status(os.path.join(log_dir, f"{point.name}.json"), record)
        records[point.name] = record
        if progress:
            line = f"{record['status']:8s} {record['action']:8s} {point.name}"
            completed.write(line + (f": {record['message']}" if record["message"] else ""), file=sys.stderr)
    return records
