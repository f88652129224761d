"""`aeqprop sweep SPEC`: a grid of training runs on dask.distributed, resumable, with a summary."""

from __future__ import annotations

import json
import os
import sys

import click

from aeqprop_circuits.cli.common import progress_bar, user_errors

EXIT_POINTS_FAILED = 4


@click.command("sweep")
@click.argument("spec_file", metavar="SPEC")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Address of a running dask scheduler (tcp://host:8786). [default: an embedded LocalCluster]")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Workers of the embedded LocalCluster. [default: min(points to run, CPU cores)]")
@click.option("--out", default=None, help="Sweep directory (reused: finished points are skipped). "
                                          "[default: runs/sweeps/SPEC-NAME]")
@click.option("--retries", type=click.IntRange(min=0), default=2, show_default=True,
              help="Times a point is rerun after its worker died (it resumes from its last checkpoint).")
@click.option("--processes/--threads", default=True, show_default=True,
              help="LocalCluster workers as processes (the cores shared out among their numba threads) or as "
                   "threads of this process.")
@click.option("--list", "list_only", is_flag=True, help="List the points and their state; run nothing.")
@click.option("--quiet", is_flag=True, help="No progress on stderr.")
@user_errors
def sweep(spec_file, scheduler, workers, out, retries, processes, list_only, quiet):
    """Train every point of SPEC's grid (seeds x algorithms x hyperparameters x models) and summarise.

    SPEC is a JSON, TOML or YAML file: {"base": {train options}, "grid": {option: [values]}}.
    Each point trains in DIR/points/KEY=VALUE,... (see docs/how-to/sweep.md); DIR/summary.md,
    summary.csv and summary.png hold the results. Exit code 4 when some points failed.
    """
    from dask.system import CPU_COUNT

    from aeqprop_circuits.experiments.sweep.runner import (
        logs_directory,
        point_state,
        points_directory,
        read_status,
        run_points,
        start_client,
    )
    from aeqprop_circuits.experiments.sweep.spec import load_spec
    from aeqprop_circuits.experiments.sweep.summary import write_summary

    spec = load_spec(spec_file)
    out = out or os.path.join("runs", "sweeps", os.path.splitext(os.path.basename(spec_file))[0])
    states = {p.name: point_state(os.path.join(points_directory(out), p.name), p.epochs) for p in spec.points}
    if list_only:
        for point in spec.points:
            last = read_status(os.path.join(logs_directory(out), f"{point.name}.json"))
            note = f" (last run {last['status']}: {last['message']})" if last.get("status", "ok") != "ok" else ""
            click.echo(f"{states[point.name]:9s} {point.name}{note}")
        click.echo(f"{len(spec.points)} points, {sum(s == 'finished' for s in states.values())} finished, "
                   f"in {os.path.abspath(out)}")
        return
    os.makedirs(points_directory(out), exist_ok=True)
    with open(os.path.join(out, "sweep_spec.json"), "w") as f:
        json.dump({"spec": os.path.abspath(spec_file), "base": spec.base, "grid": spec.grid}, f, indent=2)
    records = {name: {"name": name, "status": "ok", "action": "skipped", "message": ""}
               for name, state in states.items() if state == "finished"}
    todo = [p for p in spec.points if states[p.name] != "finished"]
    if not quiet:
        click.echo(f"sweep: {len(spec.points)} points, {len(records)} finished before, {len(todo)} to run "
                   f"-> {os.path.abspath(out)}", err=True)
    if todo:
        if scheduler and workers:
            click.echo("sweep: --workers is ignored with --scheduler (the cluster has its own)", err=True)
        client = start_client(scheduler, workers or min(len(todo), CPU_COUNT), processes=processes)
        cluster = None if scheduler else client.cluster
        try:
            records.update(run_points(todo, out, client, retries=retries, progress=progress_bar(quiet)))
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    summary = write_summary(spec, out, records)
    with open(summary["files"][2]) as f:
        click.echo(f.read())
    for path in summary["files"]:
        click.echo(f"  {path}")
    failed = [row for row in summary["rows"] if row["status"] != "ok"]
    if failed:
        click.echo(f"Error: {len(failed)} of {len(summary['rows'])} points failed (status and message in "
                   f"{summary['files'][2]})", err=True)
        sys.exit(EXIT_POINTS_FAILED)
