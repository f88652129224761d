"""Aeqprop with the oracle controller and one parameter relaxation is an EP step: the in-place shortcut.

`Aeqprop.nudge_contrast` names the EP contrast and rate whose step equals the rule's step;
`aeqprop train` then runs the rule through the in-place loop. These tests hold the two
against each other (the generic operator loop through `KnobHandle` on one side) on the two
in-place systems, and check that the shortcut is refused where it would not be exact.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from aeqprop_circuits.experiments.session import run_training
from aeqprop_circuits.learning.algorithms import ep_step, get_algorithm
from aeqprop_circuits.systems.drn import DRNSystem
from aeqprop_circuits.systems.hopfield import build_model

RULES = ["aeqprop-optimistic", "aeqprop-pessimistic", "aeqprop-centered"]


def hopfield_net():
    # converged relaxations: the generic loop starts its beta_2 phase from s_beta1, the lean one from s_0
    return build_model("hopfield:12-9-4", seed=2, gains=[1.5, 1.5], threshold=1e-9, max_iterations=(400, 400))


def drn():
    return DRNSystem.from_spec("drn:6-5-3", seed=1, iterations=None, dtype="float64", input_gain=3.0)


def batch(system, size=5, seed=3):
    rng = np.random.default_rng(seed)
    x = rng.random((size, system.n_inputs))
    return x.astype(system.dtype), 0.5 * np.eye(system.n_outputs)[rng.integers(0, system.n_outputs, size)]


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("make", [hopfield_net, drn], ids=["hopfield", "drn"])
def test_oracle_one_relaxation_step_equals_the_in_place_ep_step(rule, make):
    epsilon, beta = 0.3, 0.2
    generic_system, lean_system = make(), make()
    x, y = batch(generic_system)
    aeqprop = get_algorithm(rule, beta=beta, epsilon=epsilon, controller="oracle", relax_rounds=1)
    before = generic_system.parameters.copy()
    after = aeqprop.estimate(generic_system, x, y).new_parameters
    contrast, spread = aeqprop.nudge_contrast()
    assert (contrast.beta * min(contrast.multipliers), contrast.beta * max(contrast.multipliers)) == pytest.approx(
        (aeqprop.beta_1, aeqprop.beta_2))
    ep_step(lean_system, contrast, x, y, lean_system.in_place_rates(epsilon * spread))
    moved = np.abs(after - before).max()
    assert moved > 1e-4  # the step does something
    assert np.abs(lean_system.parameters - after).max() < 1e-4 * moved


def test_the_shortcut_is_refused_when_it_would_not_be_exact():
    assert get_algorithm("aeqprop-centered", beta=0.2, epsilon=0.1, controller="proportional").nudge_contrast() is None
    assert get_algorithm("aeqprop-centered", beta=0.2, epsilon=0.1, controller="oracle",
                         relax_rounds=20).nudge_contrast() is None


def test_aeqprop_train_takes_the_in_place_loop_and_says_so(tmp_path):
    said = []
    # digits has 64 features: a 64-input DRN
    out = run_training("drn:128-8-10", None, True, {
        "data": "digits", "algorithm": "aeqprop-centered", "controller": "oracle", "relax_rounds": 1,
        "epochs": 1, "max_train": 40, "batch_size": 4, "beta": 0.1, "epsilon": 0.05, "trace_every": 5,
        "out": str(tmp_path / "run")}, echo=said.append)
    assert any("equivalent EP step" in line for line in said)
    with open(f"{out}/config.json") as f:
        assert json.load(f)["algorithm"] == "aeqprop-centered"
    with open(f"{out}/steps.jsonl") as f:
        records = [json.loads(line) for line in f]
    assert records and all(r["beta1"] == pytest.approx(-0.05) and r["beta2"] == pytest.approx(0.05) for r in records)
