"""Where each dataset's arrays come from: the data root, file readers and the chosen train/test split.

A reader returns a `Source`: the rows of its train and test parts chosen by the split, every label
(for task inference and the class list), and a `fetch(train_rows, test_rows)` that materializes
only the requested rows, so that a subset of CIFAR-10 is decoded without decoding everything.
Readers validate keys, shapes, indices and finiteness before any heavy work.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import zipfile
from typing import Callable

import numpy as np

from ntkfeat.data import cifar10, preprocess

UCI_NAMES = ("boston", "concrete", "energy", "kin8nm", "naval", "power", "protein", "wine_red", "wine_white",
             "yacht")
SKLEARN_NAMES = ("diabetes", "digits")
IMAGE_NAMES = ("mnist", "cifar10")
DATASET_NAMES = SKLEARN_NAMES + UCI_NAMES + IMAGE_NAMES + ("npz",)

# The repository root is the parent of the `ntkfeat` package directory.
_REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
_ENV = "NTKFEAT_DATA"

# (train_rows, test_rows) -> (x_train, y_train, x_test, y_test), rows indexing the source's train and
# test arrays (for a single-array file with a split, both index that array).
Fetch = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]


def _default_roots() -> list[pathlib.Path]:
    return [_REPO_ROOT.parent / "shared" / "data", pathlib.Path.cwd() / "shared" / "data"]


def data_root(root: str | os.PathLike | None = None) -> pathlib.Path:
    """The folder holding the benchmark data (`uci/`, `mnist/`, `cifar10/`).

    Resolution: the `root` argument, else $NTKFEAT_DATA, else the first existing of
    `<repository root>/../shared/data` and `./shared/data`.

    Raises:
      FileNotFoundError: if the chosen folder does not exist, or no default exists.
    """
    if root is not None:
        chosen, origin = pathlib.Path(root).expanduser(), "the root argument"
    elif os.environ.get(_ENV):
        chosen, origin = pathlib.Path(os.environ[_ENV]).expanduser(), f"${_ENV}"
    else:
        candidates = _default_roots()
        for candidate in candidates:
            if candidate.is_dir():
                return candidate
        raise FileNotFoundError(
            f"no data folder found: set {_ENV} (or pass root=) to the folder holding uci/, mnist/ and "
            f"cifar10/; looked in {', '.join(str(c) for c in candidates)}")
    if not chosen.is_dir():
        raise FileNotFoundError(f"data folder {chosen} (from {origin}) does not exist; set {_ENV} or pass "
                                f"root= to the folder holding uci/, mnist/ and cifar10/")
    return chosen


@dataclasses.dataclass
class Source:
    """One dataset with its train/test split chosen, before subsetting and preprocessing."""

    train_index: np.ndarray  # (n_train_available,) rows of the source that form the train part
    test_index: np.ndarray  # (n_test_available,)
    y_all: np.ndarray  # every label or target of the file (train and test), for task inference
    fetch: Fetch
    task: str | None  # None: infer from y_all
    images: bool  # x is NHWC
    pixel_scale: float  # applied to images before standardization (1/255 for uint8)
    info: dict
    flat_by_default: bool = False  # digits: returned as (n, 64) unless images=True
    shuffle: bool = False  # rows sorted by class: shuffle even when all are kept
    num_classes: int | None = None  # fixed class count (images); else from y_all


def _missing(path: pathlib.Path, what: str) -> FileNotFoundError:
    return FileNotFoundError(f"{what} not found at {path}; set {_ENV} or pass root= (the folder holding "
                             f"uci/, mnist/, cifar10/) or path= (this file)")


def _take(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> Fetch:
    """A fetch over in-memory arrays."""

    def fetch(train_rows, test_rows):
        return x_train[train_rows], y_train[train_rows], x_test[test_rows], y_test[test_rows]

    return fetch


def _check_no_split(name: str, split: int) -> None:
    if split != 0:
        raise ValueError(f"{name} has one train/test split, so split must be 0, got split={split} "
                         f"(for a different random split of diabetes, digits or an npz without splits, "
                         f"change seed=)")


def _check_xy(x: np.ndarray, y: np.ndarray, where: str) -> np.ndarray:
    """Validates x (n, d) or NHWC and y (n,) or (n, 1); returns y as (n,)."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"{where}: y must have shape (n,), got {y.shape}")
    if x.ndim not in (2, 4):
        raise ValueError(f"{where}: x must be tabular (n, d) or images (n, H, W, C), got shape {x.shape}")
    if len(x) != len(y):
        raise ValueError(f"{where}: x has {len(x)} rows but y has {len(y)} (shapes {x.shape} and {y.shape})")
    if np.issubdtype(x.dtype, np.complexfloating) or not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"{where}: x must be a real numeric array, got dtype {x.dtype}")
    preprocess.check_finite(x, "x", where)
    if np.issubdtype(y.dtype, np.number) or np.issubdtype(y.dtype, np.bool_):
        preprocess.check_finite(y, "y", where)
    else:
        raise ValueError(f"{where}: y must be numeric, got dtype {y.dtype}")
    return y


def _load_npz(path: pathlib.Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The arrays of an npz file; ValueError naming a missing key (None for optional keys below)."""
    if not zipfile.is_zipfile(path):  # np.load would take other bytes for a pickle and say so
        raise ValueError(f"{path}: not an npz file (np.savez writes a zip archive of .npy arrays)")
    with np.load(path, allow_pickle=False) as f:
        for key in keys:
            if key not in f.files:
                raise ValueError(f"{path}: missing key {key!r} (the file has {sorted(f.files)})")
        return {key: np.asarray(f[key]) for key in f.files}


# --------------------------------------------------------------------------- split selection


def _index_split(arrays: dict, n: int, split: int, where: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Train and test rows from `train_idx` / `test_idx` (n_splits, n_part), row `split`."""
    for key, other in (("train_idx", "test_idx"), ("test_idx", "train_idx")):
        if other not in arrays:
            raise ValueError(f"{where}: has {key!r} but no {other!r}; give both (one row per split)")
    parts = []
    for key in ("train_idx", "test_idx"):
        idx = arrays[key]
        if idx.ndim == 1:
            idx = idx[None]  # one split
        if idx.ndim != 2 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"{where}: {key} must be an integer array (n_splits, n_rows), got "
                             f"{idx.dtype} {arrays[key].shape}")
        parts.append(idx)
    if len(parts[0]) != len(parts[1]):
        raise ValueError(f"{where}: train_idx has {len(parts[0])} splits but test_idx has {len(parts[1])}")
    if not 0 <= split < len(parts[0]):
        raise ValueError(f"{where}: split={split} is out of range; the file has {len(parts[0])} splits "
                         f"(0..{len(parts[0]) - 1})")
    train, test = (p[split].astype(np.int64) for p in parts)
    for key, idx in (("train_idx", train), ("test_idx", test)):
        bad = (idx < 0) | (idx >= n)
        if bad.any():
            raise ValueError(f"{where}: {key}[{split}] has {int(bad.sum())} indices outside [0, {n}), "
                             f"e.g. {int(idx[bad][0])}; indices must be 0-based rows of x")
        if len(idx) == 0:
            raise ValueError(f"{where}: {key}[{split}] is empty")
    overlap = np.intersect1d(train, test).size
    if overlap:
        raise ValueError(f"{where}: train_idx[{split}] and test_idx[{split}] share {overlap} rows")
    return train, test, f"train_idx/test_idx row {split} of {len(parts[0])}"


def _mask_split(mask: np.ndarray, n: int, split: int, where: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Train and test rows from a boolean `test_mask` (n, n_splits), column `split`."""
    if mask.ndim == 1:
        mask = mask[:, None]
    if mask.ndim != 2 or mask.shape[0] != n:
        raise ValueError(f"{where}: test_mask must have shape (n, n_splits) with n = {n} rows, "
                         f"got {mask.shape}")
    if mask.dtype != np.bool_:
        if not (np.issubdtype(mask.dtype, np.integer) and np.isin(mask, (0, 1)).all()):
            raise ValueError(f"{where}: test_mask must be boolean (or 0/1), got dtype {mask.dtype}")
        mask = mask.astype(bool)
    if not 0 <= split < mask.shape[1]:
        raise ValueError(f"{where}: split={split} is out of range; test_mask has {mask.shape[1]} split "
                         f"columns (0..{mask.shape[1] - 1})")
    test = np.flatnonzero(mask[:, split])
    train = np.flatnonzero(~mask[:, split])
    if len(train) == 0 or len(test) == 0:
        raise ValueError(f"{where}: test_mask[:, {split}] leaves {len(train)} train and {len(test)} test rows")
    return train, test, f"test_mask column {split} of {mask.shape[1]}"


# --------------------------------------------------------------------------- readers


def npz_source(path: pathlib.Path, split: int, seed: int, *, task: str | None = None,
               require_split: bool = False) -> Source:
    """An npz with `x` (n, d) or (n, H, W, C) and `y` (n,), split by `train_idx`/`test_idx`
    (n_splits, n_part), by `test_mask` (n, n_splits), or else randomly 80/20 from `seed`."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise _missing(path, "npz file")
    required = ("x", "y", "train_idx", "test_idx") if require_split else ("x", "y")
    arrays = _load_npz(path, required)
    where = str(path)
    x, y = arrays["x"], _check_xy(arrays["x"], arrays["y"], where)
    if "train_idx" in arrays or "test_idx" in arrays:
        train, test, rule = _index_split(arrays, len(x), split, where)
    elif "test_mask" in arrays:
        train, test, rule = _mask_split(arrays["test_mask"], len(x), split, where)
    else:
        _check_no_split(f"{path} (no train_idx/test_idx or test_mask)", split)
        train, test = preprocess.seeded_split(len(x), seed)
        rule = f"random 80/20 split from np.random.default_rng({seed})"
    images = x.ndim == 4
    return Source(
        train_index=train, test_index=test, y_all=y, fetch=_take(x, y, x, y), task=task,
        images=images, pixel_scale=1 / 255 if images and x.dtype == np.uint8 else 1.0,
        info={"source": str(path), "split": split, "split_rule": rule, "original_shape": x.shape})


def uci_source(name: str, root, path, split: int) -> Source:
    """`<root>/uci/<name>.npz`: x (n, d), y (n,), train_idx / test_idx (n_splits, n_part)."""
    path = pathlib.Path(path) if path is not None else data_root(root) / "uci" / f"{name}.npz"
    if not path.is_file():
        raise _missing(path, f"UCI dataset {name!r}")
    return npz_source(path, split, 0, task="regression", require_split=True)


def sklearn_source(name: str, split: int, seed: int) -> Source:
    """scikit-learn's bundled diabetes (raw, unscaled features) or digits (8 x 8 images, 0..16)."""
    _check_no_split(name, split)
    import sklearn.datasets  # slow import, only when needed

    if name == "diabetes":
        bunch = sklearn.datasets.load_diabetes(scaled=False)
        x, y = bunch.data, bunch.target
    else:
        bunch = sklearn.datasets.load_digits()
        x, y = bunch.images[..., None], bunch.target
    train, test = preprocess.seeded_split(len(x), seed)
    images = name == "digits"
    return Source(
        train_index=train, test_index=test, y_all=y, fetch=_take(x, y, x, y),
        task="classification" if images else "regression", images=images,
        pixel_scale=1 / 16 if images else 1.0,  # digits pixels are counts 0..16
        flat_by_default=images, num_classes=10 if images else None,
        info={"source": f"sklearn.datasets.load_{name}", "split": 0, "original_shape": x.shape,
              "split_rule": f"random 80/20 split from np.random.default_rng({seed})"})


def mnist_source(root, path, split: int) -> Source:
    """`<root>/mnist/mnist_{train,test}.npz`, each with x uint8 (N, 28, 28) and y (N,)."""
    _check_no_split("mnist", split)
    folder = pathlib.Path(path) if path is not None else data_root(root) / "mnist"
    parts = {}
    for part in ("train", "test"):
        file = folder / f"mnist_{part}.npz"
        if not file.is_file():
            raise _missing(file, f"MNIST {part} file")
        arrays = _load_npz(file, ("x", "y"))
        x = arrays["x"]
        if x.ndim != 3:
            raise ValueError(f"{file}: x must be (N, 28, 28) grayscale images, got {x.shape}")
        parts[part] = (x[..., None], _check_xy(x[..., None], arrays["y"], str(file)))
    (x_tr, y_tr), (x_te, y_te) = parts["train"], parts["test"]
    return Source(
        train_index=np.arange(len(x_tr)), test_index=np.arange(len(x_te)), y_all=np.concatenate([y_tr, y_te]),
        fetch=_take(x_tr, y_tr, x_te, y_te),
        task="classification", images=True, pixel_scale=1 / 255 if x_tr.dtype == np.uint8 else 1.0,
        num_classes=10,
        info={"source": str(folder), "split": 0, "split_rule": "fixed train/test files",
              "original_shape": {"train": x_tr.shape, "test": x_te.shape}})


def _find_cifar(root, path) -> pathlib.Path:
    """The packed npz or batches folder: `path` (either, or a folder holding either), else under root."""
    if path is not None:
        base = pathlib.Path(path).expanduser()
        if base.is_file() or (base / "data_batch_1").is_file():
            return base
        candidates = [base / cifar10.NPZ_NAME, base / cifar10.BATCHES_NAME]
    else:
        base = data_root(root)
        candidates = [base / "cifar10" / cifar10.NPZ_NAME, base / "cifar10" / cifar10.BATCHES_NAME,
                      base / cifar10.BATCHES_NAME]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise FileNotFoundError(
        f"CIFAR-10 not found: looked for {' and '.join(str(c) for c in candidates)}; set {_ENV} or pass "
        f"root= (the data folder) or path= (the {cifar10.NPZ_NAME} file or the {cifar10.BATCHES_NAME} folder)")


def cifar10_source(root, path, split: int) -> Source:
    """CIFAR-10 from the packed-JPEG npz (rows sorted by class, shuffled) or a batches folder."""
    _check_no_split("cifar10", split)
    found = _find_cifar(root, path)
    info = {"source": str(found), "split": 0, "split_rule": "fixed train/test parts"}
    if found.is_dir():
        parts = cifar10.read_batches(found)
        (x_tr, y_tr), (x_te, y_te) = parts["train"], parts["test"]
        y_all = np.concatenate([y_tr, y_te])
        info["original_shape"] = {"train": x_tr.shape, "test": x_te.shape}
        fetch, shuffle = _take(x_tr, y_tr, x_te, y_te), False
    else:
        packed = cifar10.PackedJpeg(found)
        y_tr, y_te = packed.labels["train"], packed.labels["test"]
        y_all = np.concatenate([y_tr, y_te])
        info["original_shape"] = {"train": (packed.count("train"),), "test": (packed.count("test"),)}

        def fetch(train_rows, test_rows):
            x_train, x_test = packed.images(train_rows, test_rows)
            return x_train, y_tr[train_rows], x_test, y_te[test_rows]

        shuffle = True
    for what, y in (("train labels", y_tr), ("test labels", y_te)):
        if len(y) and (y.min() < 0 or y.max() > 9):
            raise ValueError(f"{found}: CIFAR-10 {what} must be in 0..9, got {y.min()}..{y.max()}")
    return Source(train_index=np.arange(len(y_tr)), test_index=np.arange(len(y_te)), y_all=y_all, fetch=fetch,
                  task="classification", images=True, pixel_scale=1 / 255, num_classes=10, shuffle=shuffle,
                  info=info)
