"""One dataset interface for Iris, Wine, Digits, Fashion-MNIST / MNIST, the regression task and CSV files.

Every loader returns a `Dataset` with inputs scaled to [-1, 1] (the range of the input
voltages, volts) and, for classification, integer labels; targets for the outputs are made
by `Dataset.targets`. Splits are seeded so runs are reproducible, and stratified by class
for classification (each class has the same share of the train and test parts).
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass

import numpy as np

from aeqprop_circuits.errors import DatasetError

FMNIST_DIR = "/usr/share/datasets/fashion-mnist"
FMNIST_INSTALL = "sudo apt-get install dataset-fashion-mnist"


@dataclass(frozen=True, eq=False)
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int  # 0 for regression
    image_shape: tuple[int, ...] | None = None  # (H, W) or (C, H, W) of each flattened row; None if not images

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    def targets(self, labels: np.ndarray, n_outputs: int, amplitude: float = 1.0) -> np.ndarray:
        """Output targets (B, n_outputs): one-hot * amplitude for classes, the values for regression."""
        if self.n_classes == 0:
            return np.asarray(labels, dtype=float).reshape(len(labels), -1)
        if n_outputs < self.n_classes:
            raise DatasetError(f"{self.name} has {self.n_classes} classes but the model has only "
                               f"{n_outputs} outputs")
        out = np.zeros((len(labels), n_outputs))
        out[np.arange(len(labels)), labels] = amplitude
        return out


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
    return Dataset(f"{data.name}:validation", xtr, ytr, xva, yva, data.n_classes, data.image_shape)


def _sklearn(name: str, seed: int) -> Dataset:
    from sklearn import datasets as skd

    bunch = {"iris": skd.load_iris, "wine": skd.load_wine, "digits": skd.load_digits}[name]()
    x, y = bunch.data.astype(float), bunch.target.astype(int)
    xtr, ytr, xte, yte = _split(x, y, seed, stratify=True)
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
    than the papers' (docs/hopfield.md, "The authors' code against ours").
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


def load_csv(path: str, seed: int = 0) -> Dataset:
    """A CSV file: numeric feature columns, the last column the label (integers: classes)."""
    try:
        table = np.genfromtxt(path, delimiter=",", dtype=float, skip_header=0)
        if np.isnan(table[0]).any():  # a header line
            table = table[1:]
    except (OSError, ValueError) as err:
        raise DatasetError(f"{path}: cannot read CSV ({err})") from None
    if table.ndim != 2 or table.shape[1] < 2 or np.isnan(table).any():
        raise DatasetError(f"{path}: expected a numeric table with features then a label column")
    x, y = table[:, :-1], table[:, -1]
    classes = np.all(y == np.round(y)) and len(np.unique(y)) <= 50
    xtr, ytr, xte, yte = _split(x, y.astype(int) if classes else y[:, None], seed, stratify=bool(classes))
    xtr, xte = _scale(xtr, xte)
    return Dataset(os.path.basename(path), xtr, ytr, xte, yte, int(y.max() + 1) if classes else 0)


def load_dataset(name: str, seed: int = 0) -> Dataset:
    """iris | wine | digits | fmnist | mnist[:DIR] | regression | a .csv path.

    Classification splits (iris, wine, digits, CSV with integer labels) are stratified.
    `iris:validation` (also wine, digits) is the training part of `iris` split again into
    train and a stratified validation part, for choosing hyperparameters without the test set.
    """
    key = name.lower()
    if key in ("iris", "wine", "digits"):
        return _sklearn(key, seed)
    if key.partition(":")[0] in ("iris", "wine", "digits") and key.partition(":")[2] == "validation":
        return validation_split(_sklearn(key.partition(":")[0], seed), seed)
    if key in ("fmnist", "fashion-mnist"):
        return load_idx_dataset("fmnist", FMNIST_DIR, FMNIST_INSTALL)
    if key.startswith("mnist"):
        directory = name.split(":", 1)[1] if ":" in name else "/usr/share/datasets/mnist"
        return load_idx_dataset("mnist", directory, "pass the directory of the four MNIST IDX files "
                                "as --data mnist:DIR")
    if key == "regression":
        return regression_task(seed)
    if key.endswith(".csv"):
        if not os.path.exists(name):
            raise DatasetError(f"{name}: file not found")
        return load_csv(name, seed)
    raise DatasetError(f"unknown dataset '{name}'; expected iris, wine, digits (optionally :validation), "
                       "fmnist, mnist[:DIR], regression or a .csv file")
