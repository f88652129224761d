"""`aeqprop gradcheck`: estimates against the exact gradient, the EP estimate of the same phases, or the oracle."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from aeqprop_circuits.cli.main import main
from aeqprop_circuits.experiments.presets import PRESETS

SMALL_DRN = ["drn:8-6-3", "--set", "dtype=float64", "--set", "iterations=null", "--batch-size", "8"]


def rows(*args) -> list[dict]:
    result = CliRunner().invoke(main, ["gradcheck", *map(str, args), "--json"])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_centered_ep_is_close_to_the_exact_gradient():
    (row,) = rows(*SMALL_DRN, "--algorithm", "c-ep", "--beta", 0.01)
    assert row["reference"] == "exact-gradient" and row["cosine"] > 0.9999 and row["relative_error"] < 1e-3


def test_one_relaxation_aeqprop_step_is_the_ep_step_of_its_phases_at_every_epsilon():
    """With the oracle controller and settled phases, one parameter relaxation moves theta by exactly
    -epsilon (beta_2 - beta_1) times the EP estimate of (beta_1, beta_2), however large epsilon is."""
    found = rows(*SMALL_DRN, "--algorithm", "aeqprop-centered", "--algorithm", "aeqprop-optimistic",
                 "--relax-rounds", 1, "--beta", 0.2, "--reference", "ep", "--epsilon", 1e-3, "--epsilon", 1.0)
    assert [(r["algorithm"], r["epsilon"]) for r in found] == [
        ("aeqprop-centered", 0.001), ("aeqprop-centered", 1.0), ("aeqprop-optimistic", 0.001),
        ("aeqprop-optimistic", 1.0)]
    assert all(r["relative_error"] < 1e-6 for r in found), found


def test_the_joint_relaxation_needs_a_small_epsilon():
    """Theorem 1: the step is -epsilon beta grad + O(epsilon^2 beta); the EP estimate is its limit."""
    large, small = rows(*SMALL_DRN, "--algorithm", "aeqprop-centered", "--beta", 0.2, "--reference", "ep",
                        "--epsilon", 0.5, "--epsilon", 1e-4)
    assert small["relative_error"] < 1e-2 < large["relative_error"]


def test_a_proportional_hold_follows_the_oracle_below_the_curvature_bound_and_fails_above():
    below, above = rows(*SMALL_DRN, "--algorithm", "aeqprop-centered", "--controller", "proportional",
                        "--relax-rounds", 1, "--beta", 0.2, "--reference", "oracle", "--fraction-of-bound",
                        "--epsilon", 0.5, "--epsilon", 1.5)
    assert below["a"] == pytest.approx(0.5, rel=1e-4) and below["relative_error"] < 1e-5
    assert above["cosine"] is None and above["message"].startswith("homeostasis failed")


def test_an_epsilon_per_group_compares_per_group():
    (row,) = rows(*SMALL_DRN, "--algorithm", "aeqprop-centered", "--relax-rounds", 1, "--reference", "ep",
                  "--epsilon", "w1=1e-3,w2=0.1,b=0.1")
    assert row["epsilon"] == {"w1": 1e-3, "w2": 0.1, "b": 0.1}
    assert set(row["groups"]) == {"w1", "w2", "b"} and all(g["cosine"] > 0.9999 for g in row["groups"].values())


@pytest.mark.parametrize("args, code, message", [
    (["--algorithm", "c-ep", "--reference", "ep"], 1, "not an Aeqprop rule"),
    (["--algorithm", "aeqprop-centered", "--epsilon", "w9=1"], 1, "each parameter group"),
    (["--epsilon", "abc"], 2, "expected a number or NAME=VALUE"),
    (["--reference", "no-such-rule"], 1, "unknown algorithm 'no-such-rule'"),
])
def test_bad_input_is_one_line_and_a_nonzero_exit(args, code, message):
    result = CliRunner().invoke(main, ["gradcheck", *SMALL_DRN, *args])
    assert result.exit_code == code and message in result.output and "Traceback" not in result.output


def test_a_preset_gives_the_model_data_and_rates():
    (row,) = rows("--preset", "drn-xs", "--algorithm", "aeqprop-centered", "--relax-rounds", 1, "--reference", "ep",
                  "--batch-size", 4)
    assert row["beta"] == PRESETS["drn-xs"]["beta"] and row["epsilon"] == PRESETS["drn-xs"]["epsilon"]
    assert set(row["groups"]) == set(PRESETS["drn-xs"]["epsilon"])


def test_no_model_and_no_preset_is_an_error():
    result = CliRunner().invoke(main, ["gradcheck"])
    assert result.exit_code == 1 and "no model" in result.output
