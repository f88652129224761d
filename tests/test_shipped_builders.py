"""Shipped files made by code: the netlists are what their builders write, the sweep specs train their presets."""

from __future__ import annotations

import pathlib

import pytest

from aeqprop_circuits.experiments.netlists import BUILT, built_netlists
from aeqprop_circuits.experiments.presets import PRESETS
from aeqprop_circuits.experiments.sweep.spec import load_spec

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(BUILT))
def test_a_shipped_netlist_is_what_its_builder_writes(name):
    assert (ROOT / "netlists" / name).read_text() == built_netlists()[name]


@pytest.mark.parametrize("name", ["drn-xs", "drn-xs-3-epochs", "drn-1h", "hopfield-table1"])
def test_a_preset_sweep_trains_the_presets_model(name):
    spec = load_spec(str(ROOT / "netlists" / "sweeps" / f"{name}.json"))
    for point in spec.points:
        assert point.options["model"] == PRESETS[point.options["preset"]]["model"]
