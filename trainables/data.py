"""Bundled scikit-learn datasets as fixed, fingerprinted train/validation splits.

Nothing is ever downloaded: `digits`, `breast_cancer`, `wine` (classification) and `diabetes`
(regression) ship inside scikit-learn.

    >>> from trainables.data import load
    >>> ds = load("digits")
    >>> ds.x_train.shape, ds.x_val.shape, ds.n_classes
    ((1437, 64), (360, 64), 10)
    >>> ds.fingerprint            # sha256 of the exact arrays a trial trains and validates on
    '...'

Choices:
- The split is stratified and seeded by a constant (`SPLIT_SEED`), never by the trial's seed:
  every trial of every sweep must be scored on the same validation set, or configs would be
  compared on different data.
- Standardisation statistics come from the training part only, so nothing about the
  validation set leaks into training.
- Digits pixels share one unit (intensity 0..16), so they get ONE mean/std over all training
  pixels; per-pixel scaling would blow rare border strokes up by 100x and break the spatial
  structure a CNN relies on. Tabular sets (breast cancer, wine) mix units, so they are scaled
  per feature.
- `fingerprint` hashes dtype, shape and bytes of the four arrays, so an experiment record can
  prove two runs saw identical data (a scikit-learn upgrade that changed a dataset, or a
  different split, changes the hash).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SPLIT_SEED = 20240611
VAL_FRACTION = 0.2

_LOADERS = {
    # name: (sklearn loader, bundled file, header rows, scaling, image shape or None, description)
    "digits": ("load_digits", "digits.csv.gz", 0, "global", (1, 8, 8),
               "scikit-learn digits: 1797 8x8 grey images, 10 classes"),
    "breast_cancer": ("load_breast_cancer", "breast_cancer.csv", 1, "feature", None,
                      "scikit-learn breast cancer Wisconsin: 569 samples, 30 features, 2 classes"),
    "wine": ("load_wine", "wine_data.csv", 1, "feature", None,
             "scikit-learn wine: 178 samples, 13 features, 3 classes"),
    # Regression: the target is standardised on the training part too (losses near 1, not 5000).
    "diabetes": ("load_diabetes", "diabetes_data_raw.csv.gz", 0, "feature", None,
                 "scikit-learn diabetes: 442 samples, 10 features, regression target"),
}
REGRESSION = frozenset({"diabetes"})

DATASETS: tuple[str, ...] = tuple(_LOADERS)


@dataclass(frozen=True)
class Dataset:
    """A fixed train/validation split; features float32 (standardised), labels int64."""

    name: str
    x_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    x_val: np.ndarray = field(repr=False)
    y_val: np.ndarray = field(repr=False)
    n_classes: int
    image_shape: tuple[int, ...] | None  # (C, H, W) for image data: how a CNN reshapes a row
    description: str
    fingerprint: str
    task: str = "classification"  # or "regression" (float32 targets, n_classes 0)

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    def info(self) -> dict:
        """What an experiment record stores about the data (see `TorchTrainable.data_fingerprint`)."""
        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "description": (f"{self.description}; stratified split seed {SPLIT_SEED}, "
                            f"{len(self.y_train)} train / {len(self.y_val)} validation, "
                            "standardised on train"),
        }


def fingerprint(*arrays: np.ndarray) -> str:
    """sha256 over dtype, shape and raw bytes of each array, in order."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def stratified_split(y: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val): each class contributes round(val_fraction * its count) to validation.

    Written out (rather than sklearn's `train_test_split`) so the split depends only on numpy's
    PCG64 stream, which is stable across library versions.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    rng = np.random.Generator(np.random.PCG64(seed))
    train, val = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(len(idx))]
        n_val = min(max(1, int(round(val_fraction * len(idx)))), len(idx) - 1)
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    # Sorted so the stored order does not depend on class iteration; the trainer shuffles anyway.
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def _bundled_file(filename: str) -> Path | None:
    """Path of a data file shipped in scikit-learn, found WITHOUT importing scikit-learn."""
    spec = importlib.util.find_spec("sklearn")
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root, "datasets", "data", filename)
        if path.is_file():
            return path
    return None


def read_raw(name: str, via_sklearn: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Unsplit (features float64, labels int64) of a bundled dataset.

    Reads scikit-learn's bundled CSV directly when it is where scikit-learn keeps it: importing
    `sklearn.datasets` costs seconds, and every Ray trial process would pay it. The result is
    the same arrays `sklearn.datasets.load_*` returns (a test checks this), and the fingerprint
    would expose any difference. `via_sklearn=True` forces the official loader.
    """
    loader, filename, header, *_ = _LOADERS[name]
    path = None if via_sklearn else _bundled_file(filename)
    if path is not None and name == "diabetes":  # features and target ship as two files
        target = _bundled_file("diabetes_target.csv.gz")
        if target is not None:
            x = np.loadtxt(path, dtype=np.float64)
            return np.ascontiguousarray(x), np.loadtxt(target, dtype=np.float64)
    elif path is not None:
        table = np.loadtxt(path, delimiter=",", skiprows=header, dtype=np.float64)
        return np.ascontiguousarray(table[:, :-1]), table[:, -1].astype(np.int64)
    import sklearn.datasets

    raw = getattr(sklearn.datasets, loader)(**({"scaled": False} if name == "diabetes" else {}))
    dtype = np.float64 if name in REGRESSION else np.int64
    return np.asarray(raw.data, dtype=np.float64), np.asarray(raw.target, dtype=dtype)


@functools.lru_cache(maxsize=None)
def load(name: str = "digits", val_fraction: float = VAL_FRACTION) -> Dataset:
    """The named dataset, split and standardised (cached per process; arrays are read-only)."""
    if name not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    loader, filename, header, scaling, image_shape, description = _LOADERS[name]
    x, y = read_raw(name)
    regression = name in REGRESSION
    # Regression targets are stratified by quintile, so validation spans the whole range.
    strata = np.searchsorted(np.quantile(y, [0.2, 0.4, 0.6, 0.8]), y) if regression else y
    tr, va = stratified_split(strata, val_fraction, SPLIT_SEED)
    x_tr, x_va = x[tr], x[va]
    if scaling == "global":
        mean, std = x_tr.mean(), x_tr.std()
    else:
        mean, std = x_tr.mean(axis=0), x_tr.std(axis=0)
        std = np.where(std > 0, std, 1.0)  # a constant feature stays constant instead of dividing by 0
    x_tr = ((x_tr - mean) / std).astype(np.float32)
    x_va = ((x_va - mean) / std).astype(np.float32)
    y_tr, y_va = y[tr], y[va]
    if regression:
        y_mean, y_std = y_tr.mean(), y_tr.std()
        y_tr, y_va = ((y_tr - y_mean) / y_std).astype(np.float32), ((y_va - y_mean) / y_std).astype(np.float32)
    for a in (x_tr, x_va, y_tr, y_va):
        a.setflags(write=False)  # shared through the cache: nobody may mutate them
    return Dataset(
        name=name, x_train=x_tr, y_train=y_tr, x_val=x_va, y_val=y_va,
        n_classes=0 if regression else int(y.max()) + 1, image_shape=image_shape, description=description,
        fingerprint=fingerprint(x_tr, y_tr, x_va, y_va), task="regression" if regression else "classification",
    )


def as_tensors(ds: Dataset, device: "str | torch.device" = "cpu") -> tuple:
    """(x_train, y_train, x_val, y_val) as torch tensors on `device` (copies; the cache stays intact)."""
    import torch

    return tuple(torch.tensor(np.array(a), device=device) for a in (ds.x_train, ds.y_train, ds.x_val, ds.y_val))
