"""Hyperparameters are chosen on validation splits: `fmnist:validation`, and the shipped sweeps that use them."""

from __future__ import annotations

import os

import numpy as np
import pytest

from aeqprop_circuits.data.datasets import load_dataset
from aeqprop_circuits.errors import DatasetError
from aeqprop_circuits.experiments.config import resolve
from aeqprop_circuits.experiments.sweep import load_spec

SWEEPS = os.path.join(os.path.dirname(__file__), os.pardir, "netlists", "sweeps")
VALIDATION_SWEEPS = ("iris-validation.json", "iris-validation-cl.json", "wine-validation.json",
                     "drn-xs-validation.json", "drn-1h-validation.json")


@pytest.fixture(scope="module")
def fmnist():
    try:
        return load_dataset("fmnist")
    except DatasetError as err:
        pytest.skip(str(err))


def test_fmnist_validation_is_a_stratified_seeded_split_of_the_training_images(fmnist):
    split = load_dataset("fmnist:validation", seed=1)
    assert (len(split.x_train), len(split.x_test)) == (48_000, 12_000)
    assert np.bincount(split.y_test).tolist() == [1200] * 10
    assert split.image_shape == fmnist.image_shape and split.name == "fmnist:validation"
    training = {row.tobytes(): label for row, label in zip(fmnist.x_train, fmnist.y_train)}
    assert all(training.get(row.tobytes()) == label for row, label in zip(split.x_test, split.y_test))
    assert all(training.get(row.tobytes()) == label for row, label in zip(split.x_train[:1000], split.y_train))
    assert np.array_equal(load_dataset("fashion-mnist:validation", seed=1).x_test, split.x_test)
    assert not np.array_equal(load_dataset("fmnist:validation", seed=2).y_test, split.y_test)


def test_fmnist_validation_takes_no_test_fraction_and_other_suffixes_are_unknown():
    with pytest.raises(DatasetError, match="its own test set"):
        load_dataset("fmnist:validation", test_fraction=0.1)
    with pytest.raises(DatasetError, match="unknown dataset 'fmnist:test'.*optionally :validation"):
        load_dataset("fmnist:test")


@pytest.mark.parametrize("name", VALIDATION_SWEEPS)
def test_validation_sweeps_never_train_or_score_on_a_test_split(name):
    spec = load_spec(os.path.join(SWEEPS, name))
    assert spec.points
    for point in spec.points:
        config = resolve(**{key: value for key, value in point.options.items() if value is not None})
        assert config.data.endswith(":validation"), (point.name, config.data)


def test_reference_dense_lr_sweep_varies_only_the_rate_of_the_preset():
    spec = load_spec(os.path.join(SWEEPS, "reference-dense-lr.json"))
    assert list(spec.grid) == ["lr"] and 0.03 in spec.grid["lr"]
    for point in spec.points:
        config = resolve(**{key: value for key, value in point.options.items() if value is not None})
        assert (config.preset, config.epochs, config.lr) == ("reference-dense", 1, point.values["lr"])
