"""Datasets: seeded stratified splits, validation carved from the training part, CSV files read strictly."""

import json

import numpy as np
import pytest

from aeqprop_circuits.data.datasets import DatasetWarning, _split, load_dataset, random_hflip, validation_split
from aeqprop_circuits.errors import DatasetError


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


# ------------------------------------------------------------------------------ CSV files


def write(tmp_path, text: str, name: str = "data.csv") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_csv_labels_map_through_their_sorted_values(tmp_path):
    rows = "".join(f"{k},{k % 5},{label}\n" for k, label in enumerate([-1, 0, 1] * 10))
    with pytest.warns(DatasetWarning, match="taken as classes"):
        data = load_dataset(write(tmp_path, rows), seed=0)
    assert data.n_classes == 3 and data.classes == (-1, 0, 1)
    assert data.class_map == {"-1": 0, "0": 1, "1": 2}
    assert json.loads(json.dumps(data.class_map)) == data.class_map
    assert set(np.concatenate([data.y_train, data.y_test]).tolist()) == {0, 1, 2}


def test_csv_header_only_when_no_cell_of_the_first_row_is_a_number(tmp_path):
    text = "a,b,label\n" + "".join(f"{k},{2 * k},{k % 2}\n" for k in range(10))
    data = load_dataset(write(tmp_path, text), task="classification")
    assert len(data.y_train) + len(data.y_test) == 10
    with pytest.raises(DatasetError, match=r"data.csv:1:2: column 2: expected a finite number, got 'nan'"):
        load_dataset(write(tmp_path, "1,nan,0\n2,3,1\n3,4,0\n"), task="classification")


def test_csv_text_labels_are_classes_and_header_names_columns(tmp_path):
    text = "x,y,species\n" + "".join(f"{k},{k},{'ab'[k % 2]}\n" for k in range(10))
    data = load_dataset(write(tmp_path, text))
    assert data.classes == ("a", "b") and data.class_map == {"a": 0, "b": 1}
    bad = "x,y,species\n1,2,a\n3,oops,b\n5,6,a\n"
    with pytest.raises(DatasetError, match=r"data.csv:3:2: y: expected a finite number, got 'oops'"):
        load_dataset(write(tmp_path, bad))


def test_csv_task_decides_between_classes_and_values(tmp_path):
    integers = "".join(f"{k},{k % 3}\n" for k in range(12))
    path = write(tmp_path, integers)
    assert load_dataset(path, task="regression").n_classes == 0
    assert load_dataset(path, task="classification").n_classes == 3
    fractions = write(tmp_path, "".join(f"{k},{k / 4}\n" for k in range(12)), "values.csv")
    data = load_dataset(fractions)  # non-integer labels: regression, nothing to announce
    assert data.n_classes == 0 and data.y_train.shape[1] == 1 and data.class_map is None
    with pytest.raises(DatasetError, match=r"values.csv:2:2: column 2: label '0.25' is not a class"):
        load_dataset(fractions, task="classification")
    with pytest.raises(DatasetError, match="expected classification or regression"):
        load_dataset(path, task="clustering")


def test_csv_test_fraction_is_honoured_and_checked(tmp_path):
    path = write(tmp_path, "".join(f"{k},{k % 2}\n" for k in range(20)))
    assert len(load_dataset(path, task="classification", test_fraction=0.5).y_test) == 10
    with pytest.raises(DatasetError, match="leaves no test sample"):
        load_dataset(path, task="classification", test_fraction=0.01)
    with pytest.raises(DatasetError, match="strictly between 0 and 1"):
        load_dataset(path, task="classification", test_fraction=1.5)
    with pytest.raises(DatasetError, match="comes with its own test set"):
        load_dataset("xor", test_fraction=0.5)


@pytest.mark.parametrize("text, message", [
    ("", "empty file"),
    ("\n\n", "empty file"),
    ("a,b\n", "only a header row"),
    ("1,0\n", "only one data row (line 1)"),
    ("1\n2\n", "data.csv:1: expected feature columns then a label column, got one column"),
    ("1,2,0\n3,4\n", "data.csv:2: expected 3 cells (as on line 1), got 2"),
    ("1,2,0\n3,,1\n", "data.csv:2:2: column 2: expected a finite number, got an empty cell"),
    ("1,2,0\n3,4,\n", "data.csv:2:3: column 3: missing label"),
    ("1,2,0\n3,4,inf\n", "data.csv:2:3: column 3: expected a finite number, got 'inf'"),
    ("1,2,7\n3,4,7\n", "every label is '7'"),
])
def test_bad_csv_files_are_clear_errors(tmp_path, text, message):
    with pytest.raises(DatasetError) as info:
        load_dataset(write(tmp_path, text), task="classification")
    assert message in str(info.value)


def test_two_classes_on_one_output_take_signed_targets_and_are_read_by_sign():
    data = load_dataset("xor")
    assert data.n_classes == 2 and data.n_features == 2
    assert np.array_equal(data.x_train, data.x_test)
    targets = data.targets(data.y_train, 1, amplitude=0.5)
    assert targets.ravel().tolist() == [-0.5, 0.5, 0.5, -0.5]
    assert data.predict(targets).tolist() == data.y_train.tolist()
    assert data.accuracy(-targets, data.y_train) == 0.0
    assert data.predict(np.array([[0.1, 0.3], [0.5, -1.0]])).tolist() == [1, 0]  # two outputs: the larger
    with pytest.raises(DatasetError, match="3 classes but the model has only 1 output"):
        load_dataset("iris").targets(np.array([0]), 1)


def test_task_of_a_named_data_set_is_checked():
    with pytest.raises(DatasetError, match="iris is a classification task, not regression"):
        load_dataset("iris", task="regression")
    assert load_dataset("iris", task="classification").class_map == {"0": 0, "1": 1, "2": 2}
