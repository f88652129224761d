"""Dataset splits: seeded, stratified for classification, validation carved from the training part."""

import numpy as np
import pytest

from aeqprop_circuits.data.datasets import _split, load_dataset, random_hflip, validation_split


@pytest.mark.parametrize("name", ["iris", "wine"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classification_splits_are_stratified(name, seed):
    data = load_dataset(name, seed)
    n = len(data.y_train) + len(data.y_test)
    assert len(data.y_test) == round(0.2 * n)
    counts = np.bincount(np.concatenate([data.y_train, data.y_test]))
    # each class's test share is its fair share, rounded down or up
    fair = 0.2 * counts
    test_counts = np.bincount(data.y_test, minlength=len(counts))
    assert np.all(test_counts >= np.floor(fair)) and np.all(test_counts <= np.ceil(fair))


def test_iris_test_set_has_ten_of_each_class():
    assert np.bincount(load_dataset("iris", 3).y_test).tolist() == [10, 10, 10]


def test_split_is_seeded_and_disjoint():
    x = np.arange(100.0)[:, None]
    y = np.repeat([0, 1, 2, 3], 25)
    a, b = _split(x, y, 4, stratify=True), _split(x, y, 4, stratify=True)
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    assert not np.array_equal(a[2], _split(x, y, 5, stratify=True)[2])
    used = np.concatenate([a[0][:, 0], a[2][:, 0]])
    assert sorted(used.tolist()) == list(range(100))
    assert np.bincount(a[3]).tolist() == [5, 5, 5, 5]


def test_regression_targets_split_without_stratification():
    x = np.arange(20.0)[:, None]
    y = np.linspace(0, 1, 20)[:, None]
    xtr, ytr, xte, yte = _split(x, y, 0)
    assert len(xte) == 4 and len(xtr) == 16


def test_validation_split_never_touches_the_test_part():
    data = load_dataset("iris", 1)
    val = validation_split(data, seed=1)
    assert len(val.x_train) + len(val.x_test) == len(data.x_train)
    train_rows = {tuple(r) for r in data.x_train}
    assert all(tuple(r) in train_rows for r in val.x_test)
    assert np.bincount(val.y_test).tolist() == [8, 8, 8]
    named = load_dataset("iris:validation", 1)
    assert np.array_equal(named.x_test, val.x_test) and np.array_equal(named.y_train, val.y_train)


def test_random_hflip_mirrors_each_image_or_leaves_it():
    shape = (2, 3, 4)  # C x H x W, rows flattened C-major
    x = np.random.default_rng(0).random((400, 24)).astype(np.float32)
    out = random_hflip(x, shape, np.random.default_rng(1))
    mirrored = x.reshape(400, 2, 3, 4)[..., ::-1].reshape(400, 24)
    flipped = np.all(out == mirrored, axis=1)
    assert np.all(flipped | np.all(out == x, axis=1))
    assert 160 < flipped.sum() < 240  # probability 1/2
    assert out.dtype == np.float32
    assert np.array_equal(out, random_hflip(x, shape, np.random.default_rng(1)))  # seeded
    assert np.array_equal(out[0].reshape(2, 3, 4)[1, 2], (mirrored if flipped[0] else x)[0].reshape(2, 3, 4)[1, 2])
