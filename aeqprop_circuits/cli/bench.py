"""`aeqprop bench`: speed measured side by side in one run (ratios, never timed tests)."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import click

from aeqprop_circuits.experiments.presets import DRN_PRESETS

MARKDOWN = click.option("--markdown", "markdown_file", type=click.Path(dir_okay=False), default=None,
                        help="Also write the tables, with the command that produced them, to this file.")


def _command_line() -> str:
    """The running `aeqprop bench` command with the options given (not left at their defaults), and the
    BLAS thread settings of the environment: what reproduces its tables."""
    ctx = click.get_current_context()
    words = ["aeqprop", "bench", ctx.info_name]
    for param in ctx.command.params:
        value = ctx.params[param.name]
        if not isinstance(param, click.Option) or value is None or value == param.default \
                or (param.multiple and tuple(value) == tuple(param.default)):
            continue
        flag = max(param.opts, key=len)
        if param.is_flag:
            words.append(flag)
        else:
            words += [word for item in (value if param.multiple else [value]) for word in (flag, str(item))]
    threads = [f"{name}={os.environ[name]}" for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
               if name in os.environ]
    return " ".join([*threads, shlex.join(words)])


def _write_markdown(path: str, title: str, tables: str) -> None:
    """The tables under a title, with the command that produced them."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(f"{title}\n\nProduced by `{_command_line()}`.\n\n{tables.rstrip()}\n")


@click.group()
def bench():
    """Benchmarks: solve (ours vs ngspice), train (DRN training steps), hopfield (relaxations and c-ep steps),
    spice-step (a training step through ngspice), peer (training steps against the papers' PyTorch code)."""


@bench.command()
@click.option("--hidden", type=int, multiple=True, default=(10, 100, 1024), show_default=True)
@click.option("--batch", type=int, default=64, show_default=True)
@click.option("--repeats", type=int, default=5, show_default=True)
@click.option("--spice-repeats", type=int, default=1, show_default=True, help="Repeats of each ngspice run.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-ngspice", is_flag=True, help="Skip the ngspice side (our timings only).")
@MARKDOWN
def solve(hidden, batch, repeats, spice_repeats, seed, no_ngspice, markdown_file):
    """Deep resistive networks 784x2 inputs - H - 10x2 outputs: our solvers against ngspice's .op."""
    from aeqprop_circuits.bench.solve import bench_solve

    _, tables = bench_solve(tuple(hidden), seed=seed, batch=batch, repeats=repeats, spice_repeats=spice_repeats,
                            ngspice=not no_ngspice, log=lambda message: click.echo(message, err=True))
    click.echo(tables)
    if markdown_file:
        _write_markdown(markdown_file, "# Benchmarks\n\n## Solve: ours vs ngspice", tables)


@bench.command("train")
@click.option("--model", default=None, help="drn: spec [default: the preset's model, drn:1568-100-10].")
@click.option("--preset", default=None, type=click.Choice(sorted(DRN_PRESETS)),
              help="The DRN preset whose circuit, iterations, dtype, beta and lr are used [default: drn-xs].")
@click.option("--algorithm", default="c-ep", show_default=True, help="p-ep | n-ep | c-ep | multi-point-ep")
@click.option("--steps", type=int, default=300, show_default=True)
@click.option("--batch", type=int, default=None, help="[default: the preset's, 4]")
@click.option("--eval-samples", type=int, default=4096, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def train(model, preset, algorithm, steps, batch, eval_samples, seed, as_json):
    """DRN training steps: time per step and per epoch, time in matrix products, memory."""
    import json

    from aeqprop_circuits.bench.drn import bench_train, format_report

    if not model and not preset:
        model = "drn:1568-100-10"
    report = bench_train(model, preset, algorithm, steps=steps, batch=batch, seed=seed, eval_samples=eval_samples)
    click.echo(json.dumps(report, indent=2) if as_json else format_report(report))


@bench.command("spice-step")
@click.argument("netlists", nargs=-1, required=True)
@click.option("--data", "datasets", multiple=True, help="The data set of each netlist, in order [default: iris].")
@click.option("--batch", type=int, default=10, show_default=True)
@click.option("--steps", type=int, default=5, show_default=True)
@MARKDOWN
def spice_step(netlists, datasets, batch, steps, markdown_file):
    """A c-EP step through ngspice: a netlist per sample against the circuit kept loaded and altered."""
    from aeqprop_circuits.bench.spice_step import bench_spice_step, format_report

    datasets = list(datasets) + ["iris"] * (len(netlists) - len(datasets))
    rows = [row for netlist, data in zip(netlists, datasets)
            for row in bench_spice_step(netlist, data, batch=batch, steps=steps)]
    tables = format_report(rows)
    click.echo(tables)
    if markdown_file:
        _write_markdown(markdown_file, "# Benchmarks\n\n## A c-EP step through ngspice", tables)


@bench.command("hopfield")
@click.option("--hidden", type=int, multiple=True, default=(1024, 2048), show_default=True,
              help="Hidden units of the dense 784-H-10 net (repeat the option for several).")
@click.option("--batch", type=int, default=16, show_default=True)
@click.option("--iterations", type=int, default=15, show_default=True, help="Free and nudged iterations each.")
@click.option("--beta", type=float, default=0.2, show_default=True)
@click.option("--steps", type=int, default=300, show_default=True, help="Lean-loop steps timed.")
@click.option("--generic-steps", type=int, default=30, show_default=True, help="Generic-path steps timed.")
@click.option("--repeats", type=int, default=30, show_default=True, help="Calls per median of a part.")
@click.option("--iteration-cost", is_flag=True,
              help="Instead: one relaxation iteration of each reference network (dense, convolutional, DCHN) "
                   "against its matrix products alone.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@MARKDOWN
def hopfield(hidden, batch, iterations, beta, steps, generic_steps, repeats, iteration_cost, seed, as_json,
             markdown_file):
    """Dense Hopfield c-ep at the reference settings: time per step and epoch, per iteration against its GEMMs."""
    import json

    from aeqprop_circuits.bench import hopfield as bench_module

    if iteration_cost:
        rows = bench_module.bench_iteration_cost(repeats=repeats)
        tables = bench_module.format_iteration_cost(rows)
        title = "# Benchmarks\n\n## Hopfield: a relaxation iteration against its matrix products"
    else:
        rows = bench_module.bench_hopfield(tuple(hidden), batch=batch, iterations=iterations, beta=beta, steps=steps,
                                           generic_steps=generic_steps, repeats=repeats, seed=seed)
        tables = bench_module.format_report(rows)
        title = "# Benchmarks\n\n## Hopfield: c-ep training steps"
    click.echo(json.dumps(rows, indent=2) if as_json else tables)
    if markdown_file:
        _write_markdown(markdown_file, title, tables)


@bench.command("peer")
@click.option("--peer-source", type=click.Path(file_okay=False), default=None,
              help="A checkout of the papers' PyTorch code (rain-neuromorphics/energy-based-learning).")
@click.option("--case", "cases", multiple=True, default=("drn-xs", "drn-1h", "dhn-1024", "dhn-2048"),
              show_default=True, help="drn-xs | drn-1h | dhn-1024 | dhn-2048 (repeat the option for several).")
@click.option("--steps", type=int, default=200, show_default=True, help="Training steps timed per side.")
@click.option("--blocks", type=int, default=10, show_default=True, help="Interleaved blocks the steps are split into.")
@click.option("--warmup", type=int, default=10, show_default=True, help="Untimed steps per side first.")
@click.option("--eval-samples", type=int, default=1000, show_default=True,
              help="Test images the evaluation is timed on (extrapolated to 10 000).")
@click.option("--epoch", is_flag=True, help="Run a full training epoch per side (in the blocks) and the whole "
                                            "test set, with each side's test error.")
@click.option("--ours-only", is_flag=True, help="Our side only (no torch, no peer checkout needed).")
@click.option("--same-start", is_flag=True, help="Start ours from the peer's initial parameters and report how far "
                                                 "the first updates and the final parameters differ.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@MARKDOWN
def peer(peer_source, cases, steps, blocks, warmup, eval_samples, epoch, ours_only, same_start, seed, as_json,
         markdown_file):
    """Training steps of the papers' PyTorch code and ours on the same networks, timed in interleaved blocks."""
    import json

    from aeqprop_circuits.bench.peer import bench_peer, format_report
    from aeqprop_circuits.errors import AeqpropError

    try:
        report = bench_peer(peer_source, tuple(cases), steps=steps, blocks=blocks, warmup=warmup,
                            eval_samples=eval_samples, epoch=epoch, seed=seed, ours_only=ours_only,
                            same_start=same_start, log=lambda message: click.echo(message, err=True))
    except AeqpropError as error:  # PeerUnavailable included
        raise click.ClickException(str(error)) from None
    tables = format_report(report)
    click.echo(json.dumps(report, indent=2) if as_json else tables)
    if markdown_file:
        _write_markdown(markdown_file, "# Benchmarks\n\n## Training steps: the papers' PyTorch code and ours",
                        tables)
