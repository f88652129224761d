"""`aeqprop bench` runs at small sizes and its tables name what ran (no timings are asserted)."""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner

from aeqprop_circuits.bench.hopfield import format_iteration_cost, iteration_cost
from aeqprop_circuits.cli.bench import bench
from aeqprop_circuits.systems.hopfield.models import build_model


def test_bench_solve_writes_its_tables_with_the_command(tmp_path):
    out = tmp_path / "benchmarks.md"
    result = CliRunner().invoke(bench, ["solve", "--no-ngspice", "--hidden", "3", "--batch", "2", "--repeats", "1",
                                        "--markdown", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert f"aeqprop bench solve --hidden 3 --batch 2 --repeats 1 --no-ngspice --markdown {out}`" in text
    row = next(line for line in text.splitlines() if line.startswith("| 3 |"))
    assert "| layered (" in row  # auto runs the layered path on a deep resistive network
    assert text.split("Produced by", 1)[1].split("\n\n", 1)[1].strip() == result.stdout.strip()


def test_iteration_cost_covers_dense_and_pooled_convolutional_networks():
    rows = []
    for spec in ("hopfield:784-8-10", "conv:1x28x28-4c5max-10"):
        net = build_model(spec)
        rows.append({"network": spec, "precision": net.precision, "batch": 2, **iteration_cost(net, 2, repeats=1)})
    assert all(r["iteration_ms"] > 0 and r["products_ms"] > 0 for r in rows)
    assert format_iteration_cost(rows).count("\n| ") == 2


def test_bench_train_reports_the_step_against_its_floor_of_necessary_products():
    from aeqprop_circuits.bench.drn import _floor_products, bench_train, format_report
    from aeqprop_circuits.learning.algorithms import get_algorithm
    from aeqprop_circuits.systems.models import load_system

    system = load_system("drn:8-5-6-3", circuit="signed", iterations=4)
    floor = _floor_products(system, get_algorithm("c-ep", beta=0.5), batch=2)
    kinds = [kind for kind, *_ in floor]
    # the drive once; free and stacked nudged phases x 4 sweeps x (1 + 2 + 1) products; a rank-k update per block
    assert kinds == ["drive"] + ["matmul"] * 2 * 4 * 4 + ["update"] * 3
    assert [shapes[1][0] for kind, shapes, *_ in floor if kind == "update"] == [2 + 2, 2 * 2 + 2, 2 * 2 + 2]
    assert {shapes[0][0] for kind, shapes, *_ in floor if kind == "matmul"} == {2, 4}  # B and the 2 nudged phases

    report = bench_train("drn:8-5-6-3", "drn-xl", steps=5, warmup=2, eval_samples=8)
    assert report["floor_calls_per_step"] == len(floor) and report["ms_per_step_floor"] > 0
    assert report["step_over_floor_cpu"] > 0 and report["velocity_mb"] == 0.0
    assert "step / floor" in format_report(report) and report["peak_traced_evaluation_mb"] > 0


def test_bench_train_counts_no_separate_drive_read_where_the_update_pass_makes_the_drive(monkeypatch):
    from aeqprop_circuits.bench.drn import _traffic_calls, bench_train, format_report
    from aeqprop_circuits.systems.drn import signed

    shapes = [(16, 8), (8, 3)]
    assert _traffic_calls(shapes, np.float32)[1] == 4 * (16 * 8 + 2 * (16 * 8 + 8 * 3))
    assert _traffic_calls(shapes, np.float32, drive_in_update=True)[1] == 4 * 2 * (16 * 8 + 8 * 3)
    monkeypatch.setattr(signed, "_STREAM_BYTES", 0)  # stream even this small first block
    report = bench_train("drn:8-5-6-3", "drn-xl", steps=4, warmup=2, eval_samples=8)
    assert report["streamed_first_block"] and report["traffic_mb_per_step"] == 4 * 2 * (8 * 5 + 5 * 6 + 6 * 3) / 1e6
    assert "the input drive in the first block's pass" in format_report(report)


def test_bench_train_floor_reads_and_writes_a_streamed_first_block_once(monkeypatch):
    """Where the first block's update and the next drive share one pass, the floor has that block's read and
    write in place of its drive and its update; the other blocks keep their rank-k updates."""
    from aeqprop_circuits.bench.drn import _floor_products, _product_calls, bench_train, format_report
    from aeqprop_circuits.learning.algorithms import get_algorithm
    from aeqprop_circuits.systems.drn import signed
    from aeqprop_circuits.systems.models import load_system

    monkeypatch.setattr(signed, "_STREAM_BYTES", 0)  # stream even this small first block
    system = load_system("drn:8-5-6-3", circuit="signed", iterations=4)  # drn-xl's sweeps
    floor = _floor_products(system, get_algorithm("c-ep", beta=0.5), batch=2)
    assert floor[0][:2] == ("read and write", ((8, 5),))
    assert [kind for kind, *_ in floor].count("drive") == 0
    assert [shapes[0] for kind, shapes, *_ in floor if kind == "update"] == [(5, 6), (6, 3)]
    for call in _product_calls(floor, seed=0):
        call()
    report = bench_train("drn:8-5-6-3", "drn-xl", steps=3, warmup=1, eval_samples=8)
    assert report["floor_calls_per_step"] == len(floor)
    assert "the first block read and written once" in format_report(report)


def test_bench_train_floor_keeps_the_drive_of_a_batch_too_large_for_the_pass(monkeypatch):
    """Above streaming.BATCH rows the step drives with BLAS apart from the pass: the floor and the traffic keep
    that drive."""
    from aeqprop_circuits.bench.drn import _floor_products, bench_train, format_report
    from aeqprop_circuits.learning.algorithms import get_algorithm
    from aeqprop_circuits.systems.drn import signed
    from aeqprop_circuits.systems.models import load_system

    monkeypatch.setattr(signed, "_STREAM_BYTES", 0)
    system = load_system("drn:8-5-6-3", circuit="signed", iterations=4)
    assert system.fuses_drive(4) and not system.fuses_drive(5)
    kinds = [kind for kind, *_ in _floor_products(system, get_algorithm("c-ep", beta=0.5), batch=6)]
    assert kinds[:2] == ["drive", "read and write"] and kinds.count("update") == 2
    report = bench_train("drn:8-5-6-3", "drn-xl", steps=3, warmup=1, eval_samples=8, batch=6)
    assert report["streamed_first_block"] and not report["drive_in_pass"]
    assert report["traffic_mb_per_step"] == 4 * (8 * 5 + 2 * (8 * 5 + 5 * 6 + 6 * 3)) / 1e6
    assert "input drive once, the first block read and written once (its update's pass)" in format_report(report)


def test_bench_train_times_a_narrow_block_as_the_step_multiplies_it(monkeypatch):
    """The floor's relaxation products and updates with a narrow block are narrow.py's loops, on V and the block's
    transpose."""
    from aeqprop_circuits.bench.drn import _floor_products, _product_calls, bench_train, format_report
    from aeqprop_circuits.learning.algorithms import get_algorithm
    from aeqprop_circuits.systems.drn import signed
    from aeqprop_circuits.systems.models import load_system

    monkeypatch.setattr(signed, "_NARROW_BYTES", 0)  # every block into at most 16 nodes is narrow
    system = load_system("drn:8-5-6-3", circuit="signed", iterations=1)
    floor = _floor_products(system, get_algorithm("c-ep", beta=0.5), batch=2)
    relaxation = [(kind, shapes) for kind, shapes, *_ in floor if kind not in ("drive", "update", "narrow update")]
    assert [kind for kind, *_ in floor if kind.endswith("update")] == ["update", "narrow update", "narrow update"]
    # per phase: layer 1 <- V2 W2^T, layer 2 <- V1 W2 and V3 W3^T, outputs <- V2 W3 (W2 5 x 6, W3 6 x 3)
    assert relaxation[:4] == [("narrow times", ((2, 6), (6, 5))), ("narrow times transpose", ((2, 5), (6, 5))),
                              ("narrow times", ((2, 3), (3, 6))), ("narrow times transpose", ((2, 6), (3, 6)))]
    for call in _product_calls(floor, seed=0):
        call()
    report = bench_train("drn:8-5-6-3", "drn-xl", steps=3, warmup=1, eval_samples=8)
    assert report["numba_loops"] == ["narrow blocks"] and report["numba_threads"] >= 1
    assert "numba loops (narrow blocks)" in format_report(report)
