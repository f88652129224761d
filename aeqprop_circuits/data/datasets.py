"""One dataset interface for Iris, Wine, Digits, Fashion-MNIST / MNIST, the regression task, XOR and CSV files.

Every loader returns a `Dataset` with inputs scaled to [-1, 1] (the range of the input
voltages, volts) and, for classification, integer labels 0..K-1; targets for the outputs are
made by `Dataset.targets` and outputs are read back as labels by `Dataset.predict`. Splits are
seeded so runs are reproducible, and stratified by class for classification (each class has
the same share of the train and test parts).
"""

from __future__ import annotations

import csv
import gzip
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from aeqprop_circuits.errors import DatasetError

FMNIST_DIR = "/usr/share/datasets/fashion-mnist"
FMNIST_INSTALL = "sudo apt-get install dataset-fashion-mnist"
TASKS = ("classification", "regression")
DEFAULT_TEST_FRACTION = 0.2
MAX_GUESSED_CLASSES = 50  # integer labels with more distinct values are guessed to be regression targets


class DatasetWarning(UserWarning):
    """Something a user should know about how a data file was read (e.g. the guessed task)."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """Inputs (B, n_features) and labels: class indices 0..n_classes-1, or (B, 1) values for regression.

    `classes` holds the original label of each class index (the CSV's own values, e.g. -1, 0, 1 or
    'setosa'), so that `class_map` can be printed and kept with a run.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int  # 0 for regression
    image_shape: tuple[int, ...] | None = None  # (H, W) or (C, H, W) of each flattened row; None if not images
    classes: tuple | None = None  # original label of each class index; None: the indices themselves

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    @property
    def task(self) -> str:
        return "classification" if self.n_classes else "regression"

    @property
    def class_map(self) -> dict[str, int] | None:
        """{original label: class index}, JSON-serialisable (labels as text); None for regression."""
        if not self.n_classes:
            return None
        labels = self.classes if self.classes is not None else range(self.n_classes)
        return {_label_text(label): index for index, label in enumerate(labels)}

    def check_outputs(self, n_outputs: int) -> None:
        """DatasetError unless a model with `n_outputs` outputs can be trained on these labels."""
        if n_outputs < self.n_classes and not (self.n_classes == 2 and n_outputs == 1):
            raise DatasetError(f"{self.name} has {self.n_classes} classes but the model has only "
                               f"{n_outputs} output{'s' if n_outputs != 1 else ''}")

    def targets(self, labels: np.ndarray, n_outputs: int, amplitude: float = 1.0) -> np.ndarray:
        """Output targets (B, n_outputs), volts: the values for regression; for classes, one-hot * amplitude.

        Two classes on a single output (a binary classifier with one node or differential pair)
        take -amplitude for class 0 and +amplitude for class 1: symmetric about 0 V, so that
        `predict` reads the sign and neither class sits on the output's rest potential.
        """
        if self.n_classes == 0:
            return np.asarray(labels, dtype=float).reshape(len(labels), -1)
        self.check_outputs(n_outputs)
        labels = np.asarray(labels, dtype=np.int64)
        if n_outputs == 1 and self.n_classes == 2:
            return np.where(labels == 1, amplitude, -amplitude).astype(float)[:, None]
        out = np.zeros((len(labels), n_outputs))
        out[np.arange(len(labels)), labels] = amplitude
        return out

    def predict(self, outputs: np.ndarray) -> np.ndarray:
        """Class indices (B,) read from outputs (B, n_outputs): the largest of the first n_classes outputs,
        or, for two classes on one output, class 1 where the output is positive."""
        if not self.n_classes:
            raise DatasetError(f"{self.name} is a regression task: its outputs are values, not classes")
        outputs = np.asarray(outputs)
        self.check_outputs(outputs.shape[1])
        if outputs.shape[1] == 1 and self.n_classes == 2:
            return (outputs[:, 0] > 0).astype(np.int64)
        return outputs[:, :self.n_classes].argmax(axis=1)

    def accuracy(self, outputs: np.ndarray, labels: np.ndarray) -> float:
        """Share of samples whose predicted class is their label (nan for regression)."""
        if not self.n_classes:
            return math.nan
        return float(np.mean(self.predict(outputs) == np.asarray(labels)))


def _label_text(label) -> str:
    if isinstance(label, (float, np.floating)) and float(label).is_integer():
        return str(int(label))
    return str(label.item() if isinstance(label, np.generic) else label)


def _scale(train: np.ndarray, test: np.ndarray):
    """Affine map of each feature to [-1, 1] fitted on the training split."""
    lo, hi = train.min(axis=0), train.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return 2 * (train - lo) / span - 1, np.clip(2 * (test - lo) / span - 1, -1.5, 1.5)


def _split(x, y, seed: int, test_fraction: float = 0.2, stratify: bool = False):
    """Seeded train/test split; `stratify` keeps each class's share the same in both parts.

    Stratified (what scikit-learn's train_test_split(stratify=y) does): round(fraction * n)
    test samples, divided among the classes in proportion to their sizes (largest remainders
    take the leftover samples), each class's test samples drawn by a seeded permutation.
    """
    rng = np.random.default_rng(seed)
    n_test = int(round(test_fraction * len(x)))
    if not stratify:
        order = rng.permutation(len(x))
        test, train = order[:n_test], order[n_test:]
        return x[train], y[train], x[test], y[test]
    classes, counts = np.unique(y, return_counts=True)
    share = test_fraction * counts
    per_class = np.floor(share).astype(int)
    leftover = n_test - int(per_class.sum())
    per_class[np.argsort(-(share - per_class), kind="stable")[:leftover]] += 1
    test_parts, train_parts = [], []
    for label, k in zip(classes, per_class):
        members = rng.permutation(np.flatnonzero(y == label))
        test_parts.append(members[:k])
        train_parts.append(members[k:])
    test = rng.permutation(np.concatenate(test_parts))
    train = rng.permutation(np.concatenate(train_parts))
    return x[train], y[train], x[test], y[test]


def validation_split(data: Dataset, seed: int = 0, fraction: float = 0.2) -> Dataset:
    """A Dataset whose test part is a stratified validation split carved from `data`'s training
    part (the test part is never touched): choose hyperparameters on this, then report test."""
    stratify = data.n_classes > 0
    xtr, ytr, xva, yva = _split(data.x_train, data.y_train, seed, fraction, stratify=stratify)
    return Dataset(f"{data.name}:validation", xtr, ytr, xva, yva, data.n_classes, data.image_shape, data.classes)


def _check_fraction(name: str, test_fraction: float, n_samples: int) -> None:
    """A test fraction that leaves at least one sample in each part."""
    if not (isinstance(test_fraction, (int, float)) and 0 < test_fraction < 1):
        raise DatasetError(f"{name}: test fraction must lie strictly between 0 and 1, got {test_fraction!r}")
    n_test = int(round(test_fraction * n_samples))
    if not 0 < n_test < n_samples:
        part = "test" if n_test == 0 else "training"
        raise DatasetError(f"{name}: a test fraction of {test_fraction:g} of {n_samples} samples leaves no "
                           f"{part} sample")


def _sklearn(name: str, seed: int, test_fraction: float = DEFAULT_TEST_FRACTION) -> Dataset:
    from sklearn import datasets as skd

    bunch = {"iris": skd.load_iris, "wine": skd.load_wine, "digits": skd.load_digits}[name]()
    x, y = bunch.data.astype(float), bunch.target.astype(int)
    _check_fraction(name, test_fraction, len(x))
    xtr, ytr, xte, yte = _split(x, y, seed, test_fraction, stratify=True)
    xtr, xte = _scale(xtr, xte)
    return Dataset(name, xtr, ytr, xte, yte, int(y.max() + 1))


def read_idx(path: str) -> np.ndarray:
    """An IDX file (MNIST format), gzipped or not."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DatasetError(f"{path}: not an IDX file")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find(directory: str, stem: str) -> str:
    for name in (stem, stem + ".gz"):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return path
    raise DatasetError(f"{stem} not found in {directory}")


def load_idx_dataset(name: str, directory: str, install_hint: str) -> Dataset:
    """Fashion-MNIST / MNIST from the four standard IDX files; pixels scaled to [0, 1]."""
    if not os.path.isdir(directory):
        raise DatasetError(f"{name}: directory {directory} not found; install it with: {install_hint}")
    try:
        xtr = read_idx(_find(directory, "train-images-idx3-ubyte"))
        ytr = read_idx(_find(directory, "train-labels-idx1-ubyte"))
        xte = read_idx(_find(directory, "t10k-images-idx3-ubyte"))
        yte = read_idx(_find(directory, "t10k-labels-idx1-ubyte"))
    except DatasetError as err:
        raise DatasetError(f"{name}: {err}; install it with: {install_hint}") from None
    flat = lambda a: a.reshape(len(a), -1).astype(np.float32) / 255.0  # noqa: E731
    return Dataset(name, flat(xtr), ytr.astype(int), flat(xte), yte.astype(int), 10, xtr.shape[1:])


def random_hflip(x: np.ndarray, image_shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Each image of the batch mirrored left-right with probability 1/2 (rows are flattened images).

    The Fashion-MNIST training-set augmentation of the papers' code (Aeqprop, the DRN scripts)
    and of the EBL study (App. D); without it our runs fitted the training set far more closely
    than the papers' (docs/results/aeqprop.md).
    """
    mirrored = x.reshape(len(x), -1, image_shape[-1])[..., ::-1].reshape(x.shape)
    return np.where(rng.random((len(x), 1)) < 0.5, mirrored, x)


def regression_task(seed: int = 0, n_train: int = 1000, n_test: int = 200, degree: int = 10) -> Dataset:
    """The Aeqprop paper's 1-D regression (Sec. 5.2): a random Legendre polynomial of degree 10.

    f(z) = sum_i w_i L_i(z), w_i ~ N(0, 1), z uniform in [-1, 1]; the test split is a fixed grid.
    """
    rng = np.random.default_rng(seed)
    weights = rng.standard_normal(degree + 1)
    f = np.polynomial.legendre.Legendre(weights)
    z = rng.uniform(-1, 1, n_train)
    grid = np.linspace(-1, 1, n_test)
    return Dataset("regression", z[:, None], f(z)[:, None], grid[:, None], f(grid)[:, None], 0)


def fourier_features(z: np.ndarray, frequencies: int = 10) -> np.ndarray:
    """phi_1 = 1, phi_2i = sin(i pi z), phi_2i+1 = cos(i pi z), i = 1..frequencies: (B, 2 frequencies + 1)."""
    z = np.asarray(z, dtype=np.float64).reshape(-1)
    angles = np.pi * z[:, None] * np.arange(1, frequencies + 1)[None, :]
    phi = np.empty((len(z), 2 * frequencies + 1))
    phi[:, 0] = 1.0
    phi[:, 1::2] = np.sin(angles)
    phi[:, 2::2] = np.cos(angles)
    return phi


def fourier_regression_task(seed: int = 0, points: int = 2001) -> Dataset:
    """`regression_task` as the Fourier circuit takes it (netlists/regression_fourier.cir): features, scaled targets.

    Inputs are the 21 Fourier features of z (volts on the circuit's input pairs); targets are
    kappa f(z) with kappa = 1 / |c*|_1, c* the least-squares Fourier coefficients of f on
    `points` grid points, so that the best fit needs weights of 1-norm 1, half of what the
    circuit reaches (experiments/reproduce/circuit_regression.py).
    """
    task = regression_task(seed)
    grid = regression_task(seed, n_train=1, n_test=points)
    kappa = 1.0 / np.abs(np.linalg.lstsq(fourier_features(grid.x_test), grid.y_test[:, 0], rcond=None)[0]).sum()
    return Dataset("regression:fourier", fourier_features(task.x_train), kappa * task.y_train,
                   fourier_features(task.x_test), kappa * task.y_test, 0)


def xor_task() -> Dataset:
    """XOR on inputs of -1 V and +1 V: class 1 where exactly one input is high.

    The task is to fit the four points, so the test part is the training part: test accuracy
    is the share of the four points learnt.
    """
    x = np.array([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
    y = np.array([0, 1, 1, 0])
    return Dataset("xor", x, y, x.copy(), y.copy(), 2)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _read_rows(path: str) -> list[tuple[int, list[str]]]:
    """(line number, cells) of every non-blank CSV row."""
    rows = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            line = 1
            for row in reader:
                if any(cell.strip() for cell in row):
                    rows.append((line, [cell.strip() for cell in row]))
                line = reader.line_num + 1
    except OSError as err:
        raise DatasetError(f"{path}: cannot read the file ({err.strerror or err})") from None
    except UnicodeDecodeError:
        raise DatasetError(f"{path}: not a UTF-8 text file (expected comma-separated numbers)") from None
    except csv.Error as err:
        raise DatasetError(f"{path}:{line}: {err}") from None
    return rows


def _numbers(path: str, rows, column_names, first_column: int = 0) -> np.ndarray:
    """The cells of `rows` as a float array; a cell that is not a finite number is an error naming it."""
    try:
        table = np.array([cells for _, cells in rows], dtype=float)
    except ValueError:
        table = None
    if table is not None and np.isfinite(table).all():
        return table
    for line, cells in rows:
        for k, cell in enumerate(cells):
            if not (_is_number(cell) and math.isfinite(float(cell))):
                column = first_column + k
                got = f"'{cell}'" if cell else "an empty cell"
                raise DatasetError(f"{path}:{line}:{column + 1}: {column_names[column]}: expected a finite "
                                   f"number, got {got}")
    raise DatasetError(f"{path}: cannot read the table as numbers")  # pragma: no cover - found above


def _labels(path: str, rows, name: str, task: str | None, log) -> tuple[np.ndarray, tuple | None]:
    """Label column -> (class indices, original labels) for classification, ((B, 1) values, None) for regression."""
    column = len(rows[0][1])
    cells = [cells[-1] for _, cells in rows]
    for (line, _), cell in zip(rows, cells):
        if not cell:
            raise DatasetError(f"{path}:{line}:{column}: {name}: missing label")
    numeric = all(_is_number(cell) for cell in cells)
    if not numeric:
        if task == "regression":
            line, cell = next((line, c) for (line, _), c in zip(rows, cells) if not _is_number(c))
            raise DatasetError(f"{path}:{line}:{column}: {name}: expected a number for regression, got '{cell}'")
        task = "classification"
        values = np.array(cells, dtype=object)
    else:
        values = np.array([float(cell) for cell in cells])
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            line = rows[bad[0]][0]
            raise DatasetError(f"{path}:{line}:{column}: {name}: expected a finite number, got '{cells[bad[0]]}'")
        integral = np.all(values == np.round(values))
        if task == "classification" and not integral:
            k = int(np.flatnonzero(values != np.round(values))[0])
            raise DatasetError(f"{path}:{rows[k][0]}:{column}: {name}: label '{cells[k]}' is not a class: "
                               "classification needs integer or text labels")
        if task is None and integral:
            distinct = len(np.unique(values))
            task = "classification" if distinct <= MAX_GUESSED_CLASSES else "regression"
            shown = "classes" if task == "classification" else "values to fit (regression)"
            log(f"{path}: the labels are integers with {distinct} distinct values, taken as {shown}; "
                "give the task (classification or regression) to choose")
        task = task or "regression"
    if task == "regression":
        return values[:, None], None
    classes, index = np.unique(values, return_inverse=True)
    if len(classes) < 2:
        raise DatasetError(f"{path}: every label is '{cells[0]}': classification needs at least two classes")
    if numeric and np.all(classes == np.round(classes)):
        return index.astype(np.int64), tuple(int(c) for c in classes)
    return index.astype(np.int64), tuple(c.item() if isinstance(c, np.generic) else c for c in classes)


def load_csv(path: str, seed: int = 0, *, task: str | None = None, test_fraction: float = DEFAULT_TEST_FRACTION,
             log: Callable[[str], None] | None = None) -> Dataset:
    """A CSV file: numeric feature columns, the last column the label; an optional header row.

    The first row is a header only if none of its cells is a number. Labels that are text, or
    integers with at most 50 distinct values, are classes (the guess is announced through `log`,
    a `DatasetWarning` by default); class k is the k-th smallest label, so labels -1, 0, 1 become
    classes 0, 1, 2 and `Dataset.class_map` records it. `task` ("classification" or
    "regression") overrides the guess. Every bad cell is an error naming file:line:column.
    """
    if task not in (None, *TASKS):
        raise DatasetError(f"task '{task}': expected classification or regression")
    log = log or (lambda text: warnings.warn(text, DatasetWarning, stacklevel=4))
    rows = _read_rows(path)
    if not rows:
        raise DatasetError(f"{path}: empty file: expected rows of numeric features followed by a label")
    header = None
    if not any(_is_number(cell) for cell in rows[0][1]):
        header, rows = rows[0][1], rows[1:]
        if not rows:
            raise DatasetError(f"{path}: only a header row: no data rows after it")
    width_line, width = (1, len(header)) if header else (rows[0][0], len(rows[0][1]))
    if width < 2:
        raise DatasetError(f"{path}:{width_line}: expected feature columns then a label column, got one column")
    for line, cells in rows:
        if len(cells) != width:
            raise DatasetError(f"{path}:{line}: expected {width} cells (as on line {width_line}), got {len(cells)}")
    if len(rows) < 2:
        raise DatasetError(f"{path}: only one data row (line {rows[0][0]}): need at least two, one to train "
                           "on and one to test on")
    names = header or [f"column {k + 1}" for k in range(width)]
    x = _numbers(path, [(line, cells[:-1]) for line, cells in rows], names)
    y, classes = _labels(path, rows, names[-1], task, log)
    _check_fraction(path, test_fraction, len(x))
    xtr, ytr, xte, yte = _split(x, y, seed, test_fraction, stratify=classes is not None)
    xtr, xte = _scale(xtr, xte)
    n_classes = len(classes) if classes is not None else 0
    return Dataset(os.path.basename(path), xtr, ytr, xte, yte, n_classes, classes=classes)


FIXED_SPLITS = ("fmnist", "fashion-mnist", "mnist", "regression", "xor")


def load_dataset(name: str, seed: int = 0, *, task: str | None = None, test_fraction: float | None = None,
                 log: Callable[[str], None] | None = None) -> Dataset:
    """iris | wine | digits | fmnist | mnist[:DIR] | regression | regression:fourier | xor | a .csv path.

    Classification splits (iris, wine, digits, CSV files with classes) are stratified and hold
    out `test_fraction` (default 0.2) for testing; fmnist, mnist, regression and xor come with
    their own test part. `task` ("classification" | "regression" | None: the data's own) is
    checked against the data set, and chooses for a CSV file whose integer labels could be
    either. `iris:validation` (also wine, digits, fmnist) is the training part of `iris` split again
    into train and a stratified validation part, for choosing hyperparameters without the test set.
    """
    if task not in (None, *TASKS):
        raise DatasetError(f"task '{task}': expected classification or regression")
    key = name.lower()
    base = key.partition(":")[0]
    if test_fraction is not None and base in FIXED_SPLITS:
        raise DatasetError(f"{name} comes with its own test set: a test fraction applies to iris, wine, digits "
                           "and CSV files")
    fraction = DEFAULT_TEST_FRACTION if test_fraction is None else test_fraction
    if key.endswith(".csv"):
        if not os.path.exists(name):
            raise DatasetError(f"{name}: file not found")
        return load_csv(name, seed, task=task, test_fraction=fraction, log=log)
    if key in ("iris", "wine", "digits"):
        data = _sklearn(key, seed, fraction)
    elif base in ("iris", "wine", "digits") and key.partition(":")[2] == "validation":
        data = validation_split(_sklearn(base, seed, fraction), seed)
    elif base in ("fmnist", "fashion-mnist") and key.partition(":")[2] in ("", "validation"):
        data = load_idx_dataset("fmnist", FMNIST_DIR, FMNIST_INSTALL)
        if key.endswith(":validation"):
            data = validation_split(data, seed)
    elif key.startswith("mnist"):
        directory = name.split(":", 1)[1] if ":" in name else "/usr/share/datasets/mnist"
        data = load_idx_dataset("mnist", directory, "pass the directory of the four MNIST IDX files "
                                "as --data mnist:DIR")
    elif key == "regression":
        data = regression_task(seed)
    elif key == "regression:fourier":
        data = fourier_regression_task(seed)
    elif key == "xor":
        data = xor_task()
    else:
        raise DatasetError(f"unknown dataset '{name}'; expected iris, wine, digits, fmnist (each optionally "
                           ":validation), mnist[:DIR], regression, regression:fourier, xor or a .csv file")
    if task is not None and task != data.task:
        raise DatasetError(f"{name} is a {data.task} task, not {task}")
    return data
