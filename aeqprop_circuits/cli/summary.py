"""`aeqprop summary PATH...`: accuracy over seeds and Lyapunov counts of run directories."""

from __future__ import annotations

import json
import math

import click

from aeqprop_circuits.cli.common import user_errors


def json_row(row: dict) -> str:
    """A row as one line of strict JSON: a number that is not there (nan) is null."""
    def plain(value):
        if isinstance(value, dict):
            return {key: plain(entry) for key, entry in value.items()}
        return None if isinstance(value, float) and math.isnan(value) else value

    return json.dumps(plain(row), allow_nan=False)


@click.command()
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--by", multiple=True, default=("algorithm",), show_default=True, metavar="KEY",
              help="config.json key whose values make the rows (repeatable); runs that differ only in other "
                   "keys, such as the seed, are pooled.")
@click.option("--seeds", is_flag=True, help="Instead: the final test accuracy (%) of each finished run, by seed.")
@click.option("--metric", default="test_accuracy", show_default=True, metavar="COLUMN",
              help="The metrics.csv column summarised, e.g. test_loss or hardware_test_loss (accuracies and errors "
                   "in %).")
@click.option("--plot", default=None, metavar="PNG",
              help="Also draw the metric against the last --by key, one line per value of the other keys.")
@click.option("--wide", is_flag=True,
              help="Instead: the metric alone, a row per value of the last --by key and a column per value of the "
                   "others.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per row instead of a Markdown table.")
@user_errors
def summary(paths, by, seeds, metric, plot, wide, as_json):
    """Final test accuracy (mean ± std over the finished seeds) and Lyapunov counts of runs, finished or not.

    PATH is a run directory, a sweep directory or a directory of run directories. Per row:
    test accuracy after the last epoch of the runs that finished, how many did and did not,
    seconds per epoch, and over every run its traced steps (steps.jsonl), how many raised the
    Lyapunov function beyond the settles' tolerance (as metrics.csv counts them), the largest rise,
    and the largest relative change (negative: every traced step lowered it).
    """
    from aeqprop_circuits.errors import AeqpropError
    from aeqprop_circuits.experiments.results import (
        per_seed,
        per_seed_markdown,
        plot_summary,
        read_runs,
        summary_markdown,
        wide_markdown,
    )
    from aeqprop_circuits.experiments.results import summary as summary_rows

    records = read_runs(paths)
    if not any(metric in row for record in records for row in record.metrics[-1:]):
        columns = sorted({key for record in records for row in record.metrics[-1:] for key in row})
        raise AeqpropError(f"--metric {metric}: no run has that column; metrics.csv has {', '.join(columns)}")
    if seeds:
        numbers, found = per_seed(records, by)
        if as_json:
            for key, by_seed in found.items():
                click.echo(json_row({**dict(zip(by, key)), "test_accuracy": by_seed}))
        else:
            click.echo(per_seed_markdown(numbers, found, by))
        return
    rows = summary_rows(records, by, metric)
    if plot:
        click.echo(f"plot: {plot_summary(rows, by, metric, plot)}", err=True)
    if as_json:
        for row in rows:
            click.echo(json_row(row))
    elif wide:
        click.echo(wide_markdown(rows, by, metric))
    else:
        click.echo(summary_markdown(rows, by, metric))
