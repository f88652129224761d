"""`aeqprop bench peer`: clear messages without the peer's code or torch, and our side of its table (no timings
are asserted)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from click.testing import CliRunner

from aeqprop_circuits.bench import peer as peer_module
from aeqprop_circuits.bench.peer import CASES, PEER_FILES, Case, PeerUnavailable, bench_case, format_report
from aeqprop_circuits.cli.bench import bench


def _fake_checkout(root):
    for name in PEER_FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")
    return root


def test_bench_peer_without_a_source_says_what_to_pass():
    result = CliRunner().invoke(bench, ["peer"])
    assert result.exit_code != 0
    assert "--peer-source" in result.output and "energy-based-learning" in result.output
    assert "Traceback" not in result.output


def test_bench_peer_names_the_files_a_checkout_lacks(tmp_path):
    result = CliRunner().invoke(bench, ["peer", "--peer-source", str(tmp_path)])
    assert result.exit_code != 0
    assert "not a checkout" in result.output and "training/sgd.py" in result.output
    missing = CliRunner().invoke(bench, ["peer", "--peer-source", str(tmp_path / "absent")])
    assert missing.exit_code != 0 and "no such directory" in missing.output


def test_bench_peer_without_torch_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    with pytest.raises(PeerUnavailable, match="pip install torch"):
        peer_module.import_torch()
    result = CliRunner().invoke(bench, ["peer", "--peer-source", str(_fake_checkout(tmp_path)),
                                        "--case", "drn-xs"])
    assert result.exit_code != 0
    assert "torch is not installed" in result.output and "Traceback" not in result.output


def test_peer_cases_match_the_papers_scripts_on_our_side():
    xs, dhn = CASES["drn-xs"], CASES["dhn-1024"]
    spec, options = xs.our_model
    assert spec == "drn:1568-100-10" and options["circuit"] == "signed" and options["iterations"] == 4
    assert (xs.batch, xs.beta, xs.lr, xs.input_gain) == (4, 1.0, 0.006, 100.0)
    spec, options = dhn.our_model
    assert spec == "hopfield:784-1024-10" and options["cost_scale"] == 0.5  # 1/2 |o - y|^2
    assert options["gains"] == [0.7, 0.7] and options["init"] == "ebl" and options["max_iterations"] == (15, 15)
    assert (dhn.batch, dhn.beta, dhn.lr) == (16, 0.2, 0.05)


@pytest.mark.parametrize("kind", ["drn", "dhn"])
def test_our_side_of_the_peer_table_runs_on_a_small_network(kind):
    case = Case(f"small {kind}", kind, (784, 64, 10), 4, 2, 0.5, 0.001, input_gain=10.0)
    data = peer_module._data(0)
    row = bench_case(case, None, steps=4, blocks=2, warmup=1, eval_samples=8, epoch=False, data=data, seed=0)
    assert row["ours_ms_per_step"] > 0 and len(row["ours_ms_per_step_blocks"]) == 2
    report = {"machine": "test", "threads": "OPENBLAS_NUM_THREADS=1", "torch": None, "numpy": "x",
              "peer_commit": None, "data": data[4], "rows": [row]}
    table = format_report(report)
    assert "peer not run" in table and f"| small {kind} |" in table


def test_bench_peer_ours_only_writes_its_table_with_the_command(tmp_path):
    out = tmp_path / "peer.md"
    result = CliRunner().invoke(bench, ["peer", "--ours-only", "--case", "drn-xs", "--steps", "4", "--blocks", "2",
                                        "--warmup", "1", "--eval-samples", "8", "--markdown", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "aeqprop bench peer --case drn-xs --steps 4 --blocks 2 --warmup 1 --eval-samples 8 --ours-only" in text
    assert "| DRN-XS 1568-100-10 |" in text


class _Tensor:
    """Stands in for a torch tensor: detach().cpu().numpy()."""

    def __init__(self, array):
        self.array = array

    def detach(self):
        return self

    def cpu(self):
        return self

    def numpy(self):
        return self.array


class _Param:
    def __init__(self, array):
        self.state = _Tensor(array)


def test_a_same_start_puts_each_peer_conductance_on_our_resistor_between_the_same_nodes():
    """The peer holds [b_hidden, b_out, W1 (2, 28, 28, H), W2 (H, 10)], its inputs (x, -x) by channel;
    our signed DRN holds [W1 (1568, H), W2, b_hidden, b_out], its inputs xp0.., xn0..."""
    case = Case("small drn", "drn", (784, 6, 10), 4, 2, 0.5, 0.001, input_gain=10.0)
    rng = np.random.default_rng(0)
    b_hidden, b_out = rng.normal(size=6), rng.normal(size=10)
    w1, w2 = rng.random((2, 28, 28, 6)), rng.random((6, 10))
    peer = object.__new__(peer_module.PeerSide)
    peer.case, peer.params = case, [_Param(b_hidden), _Param(b_out), _Param(w1), _Param(w2)]
    ours = peer_module.OurSide(case, 0)
    ours.system.parameters = peer.our_theta()
    system = ours.system
    row, col = 5, 17  # pixel (5, 17) is data input 5 * 28 + 17
    assert system.weights[0][5 * 28 + 17, 3] == np.float32(w1[0, row, col, 3])  # +x source xp
    assert system.weights[0][784 + 5 * 28 + 17, 3] == np.float32(w1[1, row, col, 3])  # -x source xn
    np.testing.assert_array_equal(system.weights[1], w2.astype(np.float32))
    np.testing.assert_array_equal(system.biases[0], b_hidden.astype(np.float32))
    np.testing.assert_array_equal(system.biases[1], b_out.astype(np.float32))


def test_a_same_start_puts_each_peer_hopfield_weight_and_bias_in_our_layout():
    """The peer holds [b_hidden, b_out, W1 (1, 28, 28, H), W2 (H, 10)]; our Hopfield network [W1, b1, W2, b2]."""
    case = Case("small dhn", "dhn", (784, 6, 10), 4, 2, 0.5, 0.001, weight_gain=0.7)
    rng = np.random.default_rng(1)
    b_hidden, b_out, w1, w2 = rng.normal(size=6), rng.normal(size=10), rng.random((1, 28, 28, 6)), rng.random((6, 10))
    peer = object.__new__(peer_module.PeerSide)
    peer.case, peer.params = case, [_Param(b_hidden), _Param(b_out), _Param(w1), _Param(w2)]
    system = peer_module.OurSide(case, 0).system
    system.parameters = peer.our_theta()
    groups = dict(system.groups)
    theta = system.parameters
    np.testing.assert_array_equal(theta[groups["w1"]].reshape(784, 6)[5 * 28 + 17], w1[0, 5, 17])
    np.testing.assert_array_equal(theta[groups["b1"]], b_hidden)
    np.testing.assert_array_equal(theta[groups["w2"]].reshape(6, 10), w2)
    np.testing.assert_array_equal(theta[groups["b2"]], b_out)


def test_a_same_start_is_refused_without_the_peer():
    result = CliRunner().invoke(bench, ["peer", "--ours-only", "--same-start", "--case", "drn-xs"])
    assert result.exit_code != 0 and "--same-start needs the peer's side" in result.output
    assert "Traceback" not in result.output


class _OursAsPeer:
    """A peer that is our own code (another seed): a same start must make the two sides step identically."""

    optimizer_name = "ours"

    def __init__(self, case):
        self.case, self.side = case, peer_module.OurSide(case, 5)

    def tensors(self, x, labels):
        return x, np.eye(self.case.sizes[-1], dtype=np.float32)[labels]

    def step(self, x, target):
        self.side.step(x, target)

    def errors(self, x, target):
        return self.side.errors(x, np.argmax(target, axis=1))

    def our_theta(self):
        return self.side.system.parameters


@pytest.mark.parametrize("case", [Case("small drn", "drn", (784, 16, 10), 4, 2, 0.5, 0.001, input_gain=10.0),
                                  Case("small dhn", "dhn", (784, 16, 10), 4, 3, 0.5, 0.01, weight_gain=0.7)])
def test_a_same_start_starts_ours_from_the_peers_parameters_and_reports_the_differences(case):
    peer = _OursAsPeer(case)
    row = bench_case(case, peer, steps=4, blocks=2, warmup=2, eval_samples=8, epoch=False,
                     data=peer_module._data(0), seed=0, same_start=True)
    assert row["first_update_difference"] == 0.0 and row["final_parameter_difference"] == 0.0
    assert 0.0 < row["first_update_error_ours"] == row["first_update_error_peer"] < 1e-3  # float32 vs float64
    report = {"machine": "test", "threads": "-", "torch": "-", "numpy": "-", "peer_commit": "abc", "data": "x",
              "rows": [row]}
    assert "Same start" in format_report(report)
