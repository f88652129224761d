"""Each entry point in scripts/ (scripts/README.md) runs: a smoke test with small arguments."""

from __future__ import annotations

import importlib.util
import pathlib
import subprocess
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"


def run(script: str, *args):
    return subprocess.run([sys.executable, str(SCRIPTS / script), *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def load(script: str):
    spec = importlib.util.spec_from_file_location(script.removesuffix(".py"), SCRIPTS / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_netlists_writes_the_shipped_netlists(tmp_path):
    done = run("make_netlists.py", tmp_path)
    assert done.returncode == 0, done.stderr
    written = sorted(tmp_path.iterdir())
    assert [p.name for p in written] == ["iris.cir", "linear_regression.cir", "regression_fourier.cir", "wine.cir"]
    assert all(p.read_text() == (ROOT / "netlists" / p.name).read_text() for p in written)


def test_authors_aeqprop_check_needs_the_authors_code(tmp_path):
    assert run("authors_aeqprop_check.py", "--help").returncode == 0
    done = run("authors_aeqprop_check.py", "--authors-code", tmp_path)
    assert done.returncode == 1 and "no network/network.py there" in done.stderr and "Traceback" not in done.stderr


def test_authors_aeqprop_check_takes_our_training_step():
    """Our side of the comparison: the preset's network and the training loop's in-place Aeqprop step."""
    ours, in_place = load("authors_aeqprop_check.py").our_network("centered", 0.5)
    x = np.random.default_rng(0).uniform(0.0, 1.0, (32, 784)).astype(np.float32)
    before = ours.parameters
    in_place.step(x, np.eye(10)[np.arange(32) % 10], in_place.base_rates)
    moved = ours.parameters - before
    assert np.isfinite(moved).all() and np.abs(moved).max() > 0


def test_mutate_lists_its_mutants_and_refuses_a_selection_of_none():
    listed = run("mutate.py", "--list")
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) > 200, listed.stderr
    for pattern, message in (("no-such-mutant", "no mutant matches"), ("(", "not a regular expression")):
        done = run("mutate.py", "-k", pattern)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
