"""`load_dataset`: one call from a dataset name to standardized float32 train/test arrays.

    ds = load_dataset("protein", split=0)            # UCI benchmark split 0, x (41157, 9)
    ds = load_dataset("cifar10", n_train=5000, seed=1)
    rmse = np.sqrt(np.mean((pred - ds.y_test) ** 2)) * ds.y_std   # in original units

Randomness is NumPy's, from `seed` only: the random 80/20 split of sets without a stored split is
`np.random.default_rng(seed).permutation(n)`, and the `n_train` / `n_test` subsets are prefixes of
permutations from `np.random.default_rng((seed, 1))` and `((seed, 2))`. Same arguments, same
arrays, on every machine. Preprocessing is described in `ntkfeat.data.preprocess`.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from ntkfeat.data import flips, preprocess, sources
from ntkfeat.data.sources import DATASET_NAMES, SKLEARN_NAMES, UCI_NAMES, data_root

__all__ = ["DATASET_NAMES", "Dataset", "data_root", "load_dataset"]


@dataclasses.dataclass(repr=False)
class Dataset:
    """A preprocessed train/test split.

    Attributes:
      name: the dataset name given to `load_dataset`.
      x_train, x_test: float32, (n, d) tabular or (n, H, W, C) NHWC images.
      y_train, y_test: regression: float32 (n,), standardized with the training mean and std;
        classification: int64 (n,) labels in 0..num_classes-1.
      task: 'regression' or 'classification'.
      num_classes: number of classes (None for regression).
      y_mean, y_std: the training statistics used to standardize y (0.0 / 1.0 for classification
        or without standardization): y_original = y * y_std + y_mean.
      info: where the data came from and what was done to it (see `load_dataset`).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    task: str
    num_classes: int | None
    y_mean: float
    y_std: float
    info: dict

    def unstandardize_y(self, y: np.ndarray) -> np.ndarray:
        """Targets or predictions back in original units: y * y_std + y_mean."""
        return np.asarray(y) * self.y_std + self.y_mean

    def __repr__(self) -> str:
        classes = f", num_classes={self.num_classes}" if self.num_classes is not None else ""
        return (f"Dataset({self.name!r}, {self.task}{classes}, x_train {self.x_train.shape}, "
                f"x_test {self.x_test.shape})")


def _check_int(value, what: str, minimum: int, optional: bool) -> None:
    if value is None and optional:
        return
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        allowed = "None or an integer" if optional else "an integer"
        raise ValueError(f"{what} must be {allowed} >= {minimum}, got {value!r}")


def _check_arguments(name, split, n_train, n_test, seed, task, images, zca, flip, downsample) -> str:
    if not isinstance(name, str) or name.lower() not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r}; valid names are: {', '.join(DATASET_NAMES)}")
    _check_int(split, "split", 0, optional=False)
    _check_int(seed, "seed", 0, optional=False)
    _check_int(n_train, "n_train", 1, optional=True)
    _check_int(n_test, "n_test", 0, optional=True)
    if task is not None and task not in preprocess.TASKS:
        raise ValueError(f"task must be None, 'regression' or 'classification', got {task!r}")
    if images not in (None, True, False):
        raise ValueError(f"images must be None, True or False, got {images!r}")
    if zca is not None and (isinstance(zca, (bool, np.bool_)) or not isinstance(zca, (int, float, np.number))
                            or not np.isfinite(zca) or zca <= 0):
        raise ValueError(f"zca must be None or a regularization > 0 (e.g. 0.1), got {zca!r}")
    if flip is not None and flip not in flips.FLIP_MODES:
        raise ValueError(f"flip must be None, 'augment' or 'average', got {flip!r}")
    _check_int(downsample, "downsample", 1, optional=True)
    return name.lower()


def _open(name: str, root, path, split: int, seed: int, task: str | None) -> sources.Source:
    if name in SKLEARN_NAMES:
        return sources.sklearn_source(name, split, seed)
    if name in UCI_NAMES:
        return sources.uci_source(name, root, path, split)
    if name == "mnist":
        return sources.mnist_source(root, path, split)
    if name == "cifar10":
        return sources.cifar10_source(root, path, split)
    if path is None:
        raise ValueError("dataset 'npz' needs path= pointing at an npz file with keys 'x' and 'y'")
    return sources.npz_source(path, split, seed, task=task)


def load_dataset(name: str, *, root: str | None = None, path: str | None = None, split: int = 0,
                 n_train: int | None = None, n_test: int | None = None, seed: int = 0,
                 standardize: bool = True, task: str | None = None, images: bool | None = None,
                 zca: float | None = None, flip: str | None = None, patches: dict | None = None,
                 downsample: int | None = None) -> Dataset:
    """Loads, splits, subsets and standardizes a dataset.

    Names: 'diabetes', 'digits' (scikit-learn, no files needed); the UCI regression sets 'boston',
    'concrete', 'energy', 'kin8nm', 'naval', 'power', 'protein', 'wine_red', 'wine_white', 'yacht'
    (`<root>/uci/<name>.npz`, standard splits); 'mnist' (`<root>/mnist/`); 'cifar10' (packed JPEG
    npz or a `cifar-10-batches-py` folder under `<root>/cifar10/`); 'npz' (any npz at `path` with
    `x`, `y` and optionally `train_idx`/`test_idx` or `test_mask`).

    Preprocessing (`standardize=True`): tabular x loses the columns constant on the training rows,
    then each column is standardized with the training mean and std; images are scaled to [0, 1]
    (uint8 / 255; digits / 16) and standardized per channel with training statistics; regression
    y is standardized with the training mean and std (kept in `y_mean`, `y_std`). With
    `standardize=False`, x is returned as stored (images still scaled to [0, 1]) and y raw.
    "Training" means the returned training rows, i.e. after `n_train` subsetting.

    Image options, in this order: `downsample=k` average-pools every image over non-overlapping
    k x k windows (32x32 CIFAR-10 images become 8x8 with k = 4: a cheaper exact CNTK); `flip='augment'` puts the mirror image (W axis reversed) of
    every training image right after it (rows x0, flip(x0), x1, flip(x1), ...; labels repeated;
    test rows unchanged), so there are 2 n_train training rows; then pixels are scaled and
    standardized per channel; then `zca=eps` whitens every image with a ZCA fitted on the training
    images only (`preprocess.fit_zca`: each image centred on its own mean and scaled to unit norm,
    W = U (S + eps mean(S))^(-1/2) U^T from the training second-moment matrix U S U^T, float64
    statistics streamed in chunks). With any flip option the ZCA is fitted on the training
    images together with their mirror images (for 'augment' that is the training set as
    returned), so whitening commutes with flips. `flip='average'` changes no rows: it asks for
    flip-averaged features (phi(x) + phi(flip x)) / sqrt 2, which the feature pipeline applies
    (`ntkfeat.data.flips.flip_averaged`; `info['flip']` says so) and needs NHWC images. Last,
    `patches={...}` replaces every image by the output of a random-patch layer (Coates, Lee, Ng
    2011) fitted on the training images only (`preprocess.fit_random_patches`; with any flip
    option the filter bank is closed under flips).

    Args:
      name: one of DATASET_NAMES (case-insensitive).
      root: data folder; default `data_root()` ($NTKFEAT_DATA or `../shared/data`).
      path: the file (UCI, 'npz', cifar10 npz) or folder (mnist, cifar10 batches) to read instead.
      split: which stored split (row of train_idx, column of test_mask); 0 for sets with one split.
      n_train, n_test: seeded random subsets of the split's train / test parts (None: all rows).
      seed: seeds the 80/20 split of sets without a stored split and the subsets.
      standardize: see above.
      task: 'regression' or 'classification'; default: the dataset's own, inferred for 'npz'
        (classification if y is integer-valued with at most 100 distinct values).
      images: True: NHWC (n, H, W, C), an error for tabular data; False: flattened to (n, H*W*C);
        None: NHWC except digits, which is flat (n, 64) by default.
      zca: None, or the ZCA regularization eps > 0 (images only; e.g. 0.1, Han et al. 2022).
      flip: None, 'augment' or 'average' (images only; see above).
      downsample: None, or an integer k >= 1 dividing the image sides (images only; see above).
      patches: None, or the options of `preprocess.fit_random_patches` (count, size, zca,
        threshold, samples, contrast_eps, seed; missing ones take `preprocess.PATCH_DEFAULTS`).

    Returns:
      A Dataset. `info` holds: source, split, split_rule, original_shape, n_train_available,
      n_test_available, train_rows / test_rows (the rows of the source file, or of its train and
      test files for mnist / cifar10, in the returned order), seed, layout, standardized,
      dropped_columns, x_mean / x_std (per kept column or per channel), pixel_scale, classes
      (original label values), flip (the flip option), train_flipped (bool per training row:
      a mirror image; None without augmentation), zca (None, or a dict: regularization, shift,
      mean_eigenvalue, output_variance, n_fit (images fitted on, mirrors not counted),
      flip_symmetric, seconds), preprocessing (a list of the steps applied, in words).

    Raises:
      ValueError: unknown name, bad argument, missing npz key, shape mismatch, NaN/inf, bad or
        out-of-range indices or split, n_train / n_test larger than available.
      FileNotFoundError: missing data folder or file.
    """
    name = _check_arguments(name, split, n_train, n_test, seed, task, images, zca, flip, downsample)
    if patches is not None:
        patches = preprocess.check_patch_options(patches)
    source = _open(name, root, path, split, seed, task)
    where = f"{name} (split {split})"
    for option, value in (("images", images), ("zca", zca), ("flip", flip), ("patches", patches),
                          ("downsample", downsample)):
        if value and not source.images:
            raise ValueError(f"{option}={value!r} needs image data, but {name} is tabular with shape "
                             f"{source.info['original_shape']}")
    flat = source.images and (images is False or (images is None and source.flat_by_default))
    if patches is not None and flat:
        raise ValueError(f"patches need NHWC images, but {name} would be flattened (images={images!r}): "
                         "pass images=True")
    if flip == "average" and flat:
        raise ValueError(f"flip='average' flips images inside the feature map and needs them in NHWC, but "
                         f"{name} would be flattened (images={images!r}): pass images=True")
    task = task or source.task or preprocess.infer_task(source.y_all)
    classes = None
    if task == "classification":
        classes = preprocess.class_values(source.y_all, where)
        if source.num_classes is not None and classes.min() >= 0 and classes.max() < source.num_classes:
            classes = np.arange(source.num_classes)  # a fixed label set, even if a subset lacks a class
        elif source.num_classes is None and len(classes) > preprocess._MAX_INFERRED_CLASSES:
            # Integer-valued targets with this many values are counts or measurements (one such
            # set ran as 214 classes at accuracy 0.0): the bound that infers the task decides.
            raise ValueError(f"{where}: task='classification' but y has {len(classes)} distinct values (more than "
                             f"{preprocess._MAX_INFERRED_CLASSES}): it looks like a regression target; use "
                             "task='regression', or bin the labels into classes first")

    n_train_available, n_test_available = len(source.train_index), len(source.test_index)
    train_rows = source.train_index[preprocess.subset_rows(
        n_train_available, n_train, seed, 1, "n_train", source.shuffle, f" in the training part of {where}")]
    test_rows = source.test_index[preprocess.subset_rows(
        n_test_available, n_test, seed, 2, "n_test", source.shuffle, f" in the test part of {where}")]
    info = dict(source.info, seed=seed, n_train_available=n_train_available, n_test_available=n_test_available,
                train_rows=train_rows, test_rows=test_rows, standardized=standardize, dropped_columns=[],
                x_mean=None, x_std=None, pixel_scale=None, classes=classes, flip=flip, train_flipped=None,
                zca=None, patches=None, preprocessing=[])
    if n_train is not None or source.shuffle:
        info["preprocessing"].append(f"train rows: {len(train_rows)} of {n_train_available}, seeded random order")
    if n_test is not None or source.shuffle:
        info["preprocessing"].append(f"test rows: {len(test_rows)} of {n_test_available}, seeded random order")

    x_train, y_train, x_test, y_test = source.fetch(train_rows, test_rows)
    if downsample is not None and downsample > 1:
        side = x_train.shape[1:3]
        x_train, x_test = preprocess.downsample_images(x_train, downsample), preprocess.downsample_images(x_test, downsample)
        info["preprocessing"].append(f"images average-pooled over {downsample}x{downsample} windows "
                                     f"({side[0]}x{side[1]} -> {x_train.shape[1]}x{x_train.shape[2]})")
    if flip == "augment":
        x_train, y_train = flips.augment_flips(x_train, y_train)
        info.update(train_rows=np.repeat(train_rows, 2), train_flipped=np.tile([False, True], len(train_rows)))
        info["preprocessing"].append(f"flip augmentation: each of the {len(train_rows)} training images followed "
                                     f"by its mirror image ({len(x_train)} training rows; test rows unchanged)")
    if source.images:
        x_train, x_test = _prepare_images(x_train, x_test, source.pixel_scale, standardize, flat, zca, flip, info)
        if patches is not None:
            x_train, x_test = _random_patches(x_train, x_test, patches, flip, info)
    else:
        x_train, x_test = _prepare_tabular(x_train, x_test, standardize, where, info)
    y_train, y_test, y_mean, y_std = _prepare_targets(y_train, y_test, classes, standardize, info)
    return Dataset(name=name, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, task=task,
                   num_classes=None if classes is None else len(classes), y_mean=y_mean, y_std=y_std, info=info)


def _prepare_images(x_train, x_test, pixel_scale: float, standardize: bool, flat: bool, zca, flip, info: dict):
    """Scaled, standardized, whitened (and flattened) float32 images; records the steps in info."""
    x_train, x_test, mean, std, constant = preprocess.preprocess_images(x_train, x_test, pixel_scale, standardize)
    info.update(pixel_scale=pixel_scale, x_mean=mean, x_std=std, layout="flattened NHWC" if flat else "NHWC")
    steps = info["preprocessing"]
    if pixel_scale != 1.0:
        steps.append(f"pixels scaled by 1/{round(1 / pixel_scale)}")
    if standardize:
        steps.append("per-channel standardization with training mean/std")
        if constant:
            steps.append(f"channels {constant} constant on training images: centered, not scaled")
    if zca is not None:
        _whiten(x_train, x_test, zca, flip, info)
    if flat:
        x_train, x_test = x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)
        steps.append("images flattened to (n, H*W*C)")
    return x_train, x_test


def _whiten(x_train, x_test, zca: float, flip, info: dict) -> None:
    """ZCA whitening fitted on the training images, in place; records it in info."""
    t0 = time.perf_counter()
    # The augmented rows are the images and their mirrors, whose second moment is exactly the
    # flip-symmetrized one of the images alone: fit on those, at half the cost.
    fit_rows = x_train[0::2] if flip == "augment" else x_train
    fitted = preprocess.fit_zca(fit_rows, zca, flip_symmetric=flip is not None)
    preprocess.apply_zca(fitted, x_train, out=x_train)
    preprocess.apply_zca(fitted, x_test, out=x_test)
    info["zca"] = dict(regularization=fitted.regularization, shift=fitted.shift,
                       mean_eigenvalue=float(np.mean(fitted.eigenvalues)), output_variance=fitted.output_variance,
                       n_fit=fitted.n_fit, flip_symmetric=fitted.flip_symmetric,
                       seconds=time.perf_counter() - t0)
    mirrors = " and their mirror images" if flip is not None else ""
    info["preprocessing"].append(
        f"ZCA whitening fitted on the {len(fit_rows)} training images{mirrors}: each image centred on its own "
        f"mean and scaled to unit norm, W = U (S + {zca:g} mean(S))^(-1/2) U^T from their second moment U S U^T")


def _random_patches(x_train, x_test, options: dict, flip, info: dict):
    """Both splits through a random-patch layer fitted on the training images; records it in info."""
    t0 = time.perf_counter()
    # Augmented rows hold each image and its mirror: draw from the images alone (the filter bank
    # gets the mirrors anyway), so that no patch is drawn twice.
    fit_rows = x_train[0::2] if flip == "augment" else x_train
    fitted = preprocess.fit_random_patches(fit_rows, **options, flip_symmetric=flip is not None)
    x_train = preprocess.apply_random_patches(fitted, x_train)
    x_test = preprocess.apply_random_patches(fitted, x_test)
    info["patches"] = dict(options, n_fit=fitted.n_fit, flip_symmetric=flip is not None,
                           sources=fitted.sources, seconds=time.perf_counter() - t0)
    mirrors = " (and their mirrors)" if flip is not None else ""
    info["preprocessing"].append(
        f"random-patch layer: {options['count']} contrast-normalized, ZCA-whitened {options['size']}x{options['size']} "
        f"patches{mirrors} drawn from the {len(fit_rows)} training images as filters (periodic boundaries), split "
        f"soft threshold {options['threshold']:g}: {x_train.shape[-1]} channels")
    return x_train, x_test


def _prepare_tabular(x_train, x_test, standardize: bool, where: str, info: dict):
    """float32 columns, without the constant ones and standardized if asked; records the steps in info."""
    info["layout"] = "tabular"
    if not standardize:
        return x_train.astype(np.float32), x_test.astype(np.float32)
    x_train, x_test, mean, std, dropped = preprocess.standardize_columns(x_train, x_test, where)
    info.update(x_mean=mean, x_std=std, dropped_columns=dropped)
    if dropped:
        info["preprocessing"].append(f"dropped columns {dropped} (constant on the training rows)")
    info["preprocessing"].append("per-column standardization with training mean/std")
    return x_train, x_test


def _prepare_targets(y_train, y_test, classes, standardize: bool, info: dict):
    """int64 labels (classes given) or float32 targets, standardized if asked.

    Returns:
      (y_train, y_test, y_mean, y_std), with y_mean = 0, y_std = 1 unless regression targets were
      standardized.
    """
    steps = info["preprocessing"]
    if classes is not None:
        if not np.array_equal(classes, np.arange(len(classes))):
            steps.append(f"labels {classes.tolist()} mapped to 0..{len(classes) - 1}")
        return preprocess.encode_labels(y_train, classes), preprocess.encode_labels(y_test, classes), 0.0, 1.0
    if not standardize:
        return y_train.astype(np.float32), y_test.astype(np.float32), 0.0, 1.0
    y_train, y_test, y_mean, y_std, constant = preprocess.standardize_targets(y_train, y_test)
    steps.append("y standardized with training mean/std")
    if constant:
        steps.append("y constant on the training rows: centered, not scaled")
    return y_train, y_test, y_mean, y_std
