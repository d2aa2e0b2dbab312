"""Preprocessing of a train/test split: checks, seeded splits and subsets, standardization.

Every statistic is computed on the training rows that are returned and applied unchanged to the
test rows, so nothing about the test set leaks into the features:

- tabular x: columns constant on the training rows are dropped, the rest become
  (x - mean_train) / std_train per column;
- images (NHWC): pixels are scaled to [0, 1] (uint8 / 255), then each channel becomes
  (x - mean_train[c]) / std_train[c], with mean and std over all training pixels of channel c;
- regression y: (y - mean_train) / std_train, so RMSE in original units is RMSE * std_train;
- optionally, ZCA whitening of images (`fit_zca`, `apply_zca`, `zca_whiten`): each image centred on
  its own mean and scaled to unit norm, then multiplied by W = U (S + eps mean(S))^(-1/2) U^T, where
  U S U^T is the second-moment matrix of the normalized training images.

Standard deviations are population ones (ddof = 0). Statistics are accumulated in float64 and the
results are float32.
"""

from __future__ import annotations

import dataclasses

import numpy as np

TASKS = ("regression", "classification")

# A column whose training std is below this fraction of its mean magnitude varies by less than one
# float32 ulp: it is constant up to rounding (naval's constant columns give std exactly 0).
_CONSTANT_RTOL = 1e-7
# Rows per chunk when standardizing images, so that float64 temporaries stay small.
_CHUNK_ROWS = 1024
# Task inference: integer-valued y with at most this many distinct values is a class label.
_MAX_INFERRED_CLASSES = 100


def check_finite(a: np.ndarray, what: str, where: str) -> None:
    """Raises ValueError naming how many rows of `a` hold NaN or inf (no-op for integer arrays)."""
    if not np.issubdtype(a.dtype, np.floating):
        return
    bad = ~np.isfinite(a.reshape(len(a), -1)).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(
            f"{where}: {what} has NaN or inf values in {rows.size} of {len(a)} rows "
            f"(first rows: {rows[:5].tolist()}); clean or drop them before loading")


def seeded_split(n: int, seed: int, test_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic random train/test split of range(n).

    The permutation comes from `np.random.default_rng(seed)`; its first n - round(test_fraction n)
    entries are the training rows, the rest the test rows (both at least 1).

    Returns:
      (train_rows, test_rows), int64 arrays of shapes (n_train,), (n_test,), in permuted order.
    """
    if n < 2:
        raise ValueError(f"a random train/test split needs at least 2 rows, got {n}")
    n_test = min(max(int(round(test_fraction * n)), 1), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    return perm[: n - n_test], perm[n - n_test:]


def subset_rows(available: int, k: int | None, seed: int, stream: int, what: str, shuffle: bool = False,
                where: str = "") -> np.ndarray:
    """Positions of a seeded random subset of `k` out of `available` rows.

    The subset is the first k entries of a permutation from
    `np.random.default_rng((seed, stream))`, so subsets for increasing k are nested, and the train
    (stream 1) and test (stream 2) subsets do not depend on each other's size.

    Args:
      available: number of rows to choose from.
      k: subset size, or None for all rows (in their order, or permuted if `shuffle`).
      seed, stream: the random stream.
      what: the argument name for error messages ('n_train' or 'n_test').
      shuffle: permute even when all rows are kept (for sources sorted by class).
      where: names the dataset in error messages.

    Returns:
      int64 array (k,) of distinct positions in [0, available).
    """
    if k is None:
        if not shuffle:
            return np.arange(available)
        k = available
    if k > available:
        raise ValueError(f"{what}={k} is larger than the {available} rows available{where}")
    return np.random.default_rng((seed, stream)).permutation(available)[:k]


def infer_task(y: np.ndarray) -> str:
    """'classification' if y is integer-valued with at most 100 distinct values, else 'regression'."""
    if np.issubdtype(y.dtype, np.bool_):
        return "classification"
    if np.issubdtype(y.dtype, np.floating) and not np.all(y == np.round(y)):
        return "regression"
    return "classification" if np.unique(y).size <= _MAX_INFERRED_CLASSES else "regression"


def class_values(y_all: np.ndarray, where: str) -> np.ndarray:
    """The sorted distinct labels of y_all; ValueError unless they are integer-valued."""
    classes = np.unique(y_all)
    if np.issubdtype(classes.dtype, np.floating) and not np.all(classes == np.round(classes)):
        raise ValueError(f"{where}: task='classification' needs integer-valued labels, but y has "
                         f"non-integer values such as {classes[classes != np.round(classes)][0]!r}")
    return classes


def encode_labels(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Labels as int64 indices into `classes` (identity when classes are 0..K-1)."""
    return np.searchsorted(classes, y).astype(np.int64)


def standardize_targets(y_train: np.ndarray, y_test: np.ndarray):
    """(y - mean) / std with the training mean and std.

    Returns:
      (y_train, y_test, mean, std, constant): float32 (n_train,), (n_test,), two floats, and
      whether the training targets were constant (std is then taken as 1).
    """
    y64 = y_train.astype(np.float64)
    mean, std = float(y64.mean()), float(y64.std())
    constant = std <= _CONSTANT_RTOL * abs(mean)
    if constant:
        std = 1.0

    def scale(y):
        return ((y.astype(np.float64) - mean) / std).astype(np.float32)

    return scale(y_train), scale(y_test), mean, std, constant


def constant_columns(x_train: np.ndarray) -> np.ndarray:
    """Boolean (d,) mask of the columns of x_train (n, d) that are constant up to float32 rounding."""
    x64 = x_train.astype(np.float64)
    mean, std = x64.mean(axis=0), x64.std(axis=0)
    return std <= _CONSTANT_RTOL * np.abs(mean)


def standardize_columns(x_train: np.ndarray, x_test: np.ndarray, where: str = ""):
    """Drops the columns constant on the training rows and standardizes the rest per column.

    Args:
      x_train: (n_train, d) training rows; x_test: (n_test, d).

    Returns:
      (x_train, x_test, mean, std, dropped): float32 (n_train, d'), (n_test, d'), float64 (d',)
      statistics of the kept columns, and the int list of dropped column indices (d' = d - len).
    """
    constant = constant_columns(x_train)
    dropped = np.flatnonzero(constant).tolist()
    if constant.all():
        raise ValueError(f"{where}: all {x_train.shape[1]} columns are constant on the "
                         f"{len(x_train)} training rows; nothing is left to learn from")
    keep = ~constant
    x64 = x_train[:, keep].astype(np.float64)
    mean, std = x64.mean(axis=0), x64.std(axis=0)

    def scale(x):
        return ((x[:, keep].astype(np.float64) - mean) / std).astype(np.float32)

    return scale(x_train), scale(x_test), mean, std, dropped


def channel_moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std over all pixels of NHWC images x, in float64.

    uint8 images go through a 256-bin histogram per channel (exact and one pass); other dtypes are
    accumulated by chunks of rows, so float64 temporaries stay small.

    Returns:
      (mean, std), float64 arrays (C,).
    """
    channels = x.shape[-1]
    if x.dtype == np.uint8:
        values = np.arange(256.0)
        counts = np.stack([np.bincount(x[..., c].ravel(), minlength=256) for c in range(channels)])
        count = counts.sum(axis=1)
        mean = counts @ values / count
        return mean, np.sqrt((counts * (values - mean[:, None]) ** 2).sum(axis=1) / count)
    total = np.zeros(channels)
    for start in range(0, len(x), _CHUNK_ROWS):
        total += x[start:start + _CHUNK_ROWS].sum(axis=(0, 1, 2), dtype=np.float64)
    count = x.size // channels
    mean = total / count
    squares = np.zeros_like(mean)
    for start in range(0, len(x), _CHUNK_ROWS):
        # Centered sums (two passes) avoid the cancellation of E[x^2] - E[x]^2.
        squares += ((x[start:start + _CHUNK_ROWS].astype(np.float64) - mean) ** 2).sum(axis=(0, 1, 2))
    return mean, np.sqrt(squares / count)


def _affine_images(x: np.ndarray, scale: float, shift: np.ndarray, div: np.ndarray) -> np.ndarray:
    """(x * scale - shift) / div per channel, as float32."""
    if x.dtype == np.uint8:
        # A 256-entry table per channel: one gather instead of float arithmetic on every pixel.
        table = ((np.arange(256.0)[:, None] * scale - shift) / div).astype(np.float32)
        out = np.empty(x.shape, np.float32)
        for c in range(x.shape[-1]):
            out[..., c] = table[x[..., c], c]
        return out
    out = np.empty(x.shape, np.float32)
    for start in range(0, len(x), _CHUNK_ROWS):
        chunk = x[start:start + _CHUNK_ROWS].astype(np.float64) * scale
        out[start:start + _CHUNK_ROWS] = (chunk - shift) / div
    return out


def preprocess_images(x_train: np.ndarray, x_test: np.ndarray, scale: float, standardize: bool):
    """Scales NHWC pixels by `scale` (1/255 for uint8) and standardizes each channel.

    Args:
      x_train: (n_train, H, W, C) images; x_test: (n_test, H, W, C).
      scale: pixel scale factor applied first.
      standardize: if False, only scale.

    Returns:
      (x_train, x_test, mean, std, constant_channels): float32 images, the float64 (C,) statistics
      of the scaled training pixels (None if not standardized), and the list of channels constant on
      the training images (left centered but not divided, since their std is 0).
    """
    channels = x_train.shape[-1]
    if not standardize:
        zero, one = np.zeros(channels), np.ones(channels)
        return _affine_images(x_train, scale, zero, one), _affine_images(x_test, scale, zero, one), None, None, []
    mean, std = channel_moments(x_train)
    mean, std = mean * scale, std * scale
    constant = std <= _CONSTANT_RTOL * np.abs(mean)
    div = np.where(constant, 1.0, std)
    return (_affine_images(x_train, scale, mean, div), _affine_images(x_test, scale, mean, div), mean, std,
            np.flatnonzero(constant).tolist())


def downsample_images(x: np.ndarray, factor: int) -> np.ndarray:
    """Average-pools NHWC images over non-overlapping `factor` x `factor` windows (float32).

    A (n, H, W, C) array becomes (n, H / factor, W / factor, C); H and W must be multiples of
    `factor`. Computed in chunks of rows, so a uint8 dataset is never held in float64 at once.
    """
    n, h, w, c = x.shape
    if h % factor or w % factor:
        raise ValueError(f"downsample={factor} needs image sides divisible by {factor}, got {h}x{w}")
    out = np.empty((n, h // factor, w // factor, c), np.float32)
    for start in range(0, n, _CHUNK_ROWS):
        part = np.asarray(x[start:start + _CHUNK_ROWS], np.float64)
        out[start:start + len(part)] = part.reshape(len(part), h // factor, factor, w // factor, factor, c).mean((2, 4))
    return out


# --------------------------------------------------------------------------- ZCA whitening
# Rows per chunk of the ZCA statistics and of its application: float64 temporaries of about
# 2048 x 3072 x 8 B = 50 MB for CIFAR-10, next to the (d, d) second-moment and whitening matrices.
_ZCA_CHUNK_ROWS = 2048


@dataclasses.dataclass(frozen=True, repr=False)
class Zca:
    """A ZCA whitening fitted on training images (`fit_zca`); apply it with `apply_zca`.

    Attributes:
      matrix: float64 (d, d), symmetric: W = U (S + shift)^(-1/2) U^T, d = H * W * C.
      regularization: eps, the shift relative to the mean eigenvalue.
      shift: the absolute shift eps * mean(S) = eps * trace(C) / d.
      eigenvalues: float64 (d,), the eigenvalues S of the training second-moment matrix C, ascending.
      image_shape: (H, W, C) of the images it applies to.
      flip_symmetric: whether C was symmetrized over horizontal flips (then W commutes with flips).
      n_fit: number of training images it was fitted on.
    """

    matrix: np.ndarray
    regularization: float
    shift: float
    eigenvalues: np.ndarray
    image_shape: tuple
    flip_symmetric: bool
    n_fit: int

    @property
    def output_variance(self) -> float:
        """Mean squared whitened pixel of the training images: mean(S / (S + shift))."""
        return float(np.mean(self.eigenvalues / (self.eigenvalues + self.shift)))

    def __repr__(self) -> str:
        return (f"Zca(eps={self.regularization:g}, shift={self.shift:.3g}, d={len(self.eigenvalues)}, "
                f"n_fit={self.n_fit}, flip_symmetric={self.flip_symmetric})")


def _check_images(x: np.ndarray, what: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{what} must be NHWC images (n, H, W, C), got shape {x.shape}")


def normalize_images(x: np.ndarray) -> np.ndarray:
    """Each image flattened, centred on its own mean and scaled to unit Euclidean norm, in float64.

    Args:
      x: (n, H, W, C) images (any real dtype).

    Returns:
      float64 (n, H * W * C); an image that is constant (zero norm once centred) becomes all zeros.
    """
    z = x.reshape(len(x), -1).astype(np.float64)
    z -= z.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    return np.divide(z, norms, out=np.zeros_like(z), where=norms > 0)


def flip_permutation(image_shape: tuple) -> np.ndarray:
    """The index permutation p with flatten(flip(x)) = flatten(x)[p] for (H, W, C) images,
    flip mirroring the W axis."""
    return np.arange(int(np.prod(image_shape))).reshape(image_shape)[:, ::-1, :].ravel()


def image_second_moment(x: np.ndarray, chunk_rows: int | None = _ZCA_CHUNK_ROWS) -> np.ndarray:
    """C = Z^T Z / n of the normalized images Z = normalize_images(x), accumulated in float64 over
    chunks of `chunk_rows` images (None: all at once), so memory stays O(chunk_rows d + d^2).

    Returns:
      float64 (d, d), symmetric.
    """
    _check_images(x, "x")
    n, d = len(x), int(np.prod(x.shape[1:]))
    if n == 0:
        raise ValueError("ZCA needs at least one training image")
    step = n if chunk_rows is None else chunk_rows
    c = np.zeros((d, d))
    for start in range(0, n, step):
        z = normalize_images(x[start:start + step])
        c += z.T @ z
    c /= n
    return (c + c.T) / 2  # exactly symmetric for eigh


def fit_zca(x_train: np.ndarray, regularization: float, *, flip_symmetric: bool = False,
            chunk_rows: int | None = _ZCA_CHUNK_ROWS) -> Zca:
    """Fits ZCA whitening on training images only.

    Convention (Shankar et al. 2020; the neural-tangents / Lee et al. 2020 and Han et al. 2022
    code): every image is flattened, centred on its own mean and scaled to unit norm
    (`normalize_images`); C = Z^T Z / n is the second-moment matrix of those rows (the mean image
    is not subtracted; per-image centring already puts every image, train or test, orthogonal
    to the constant direction); with C = U diag(S) U^T,
        W = U diag(S + eps * mean(S))^(-1/2) U^T,    mean(S) = trace(C) / d,
    and an image x is whitened as normalize_images(x) @ W, reshaped back to NHWC. No "rank
    control" (the public code leaves the directions beyond the n-th eigenvalue unscaled when
    n < d): here eps > 0 bounds the gain in every direction at (eps mean(S))^(-1/2).

    Args:
      x_train: (n, H, W, C) training images.
      regularization: eps > 0 (0.1 in Han et al. 2022's Myrtle code). It must be positive:
        per-image centring leaves C singular (the constant direction has eigenvalue 0).
      flip_symmetric: fit on C_sym = (C + P C P^T) / 2, P the horizontal flip of the pixels:
        exactly the second moment of the training set plus its mirror images, so W commutes with
        flips and whitening a flipped image gives the flip of the whitened image.
      chunk_rows: images per chunk of the streamed statistics (None: all at once).

    Returns:
      A Zca; statistics and the whitening matrix are float64.
    """
    reg = float(regularization)
    if not np.isfinite(reg) or reg <= 0:
        raise ValueError(f"the ZCA regularization must be a finite number > 0 (per-image centring leaves the "
                         f"second-moment matrix singular), got {regularization!r}")
    c = image_second_moment(x_train, chunk_rows)
    if flip_symmetric:
        p = flip_permutation(x_train.shape[1:])
        c = (c + c[np.ix_(p, p)]) / 2
    import scipy.linalg  # only needed here

    s, u = scipy.linalg.eigh(c, driver="evd", check_finite=False)
    s = np.maximum(s, 0.0)  # roundoff: C is positive semi-definite
    shift = reg * float(np.mean(s))
    if shift <= 0:
        raise ValueError(f"all {len(x_train)} training images are constant: nothing to whiten")
    w = (u / np.sqrt(s + shift)) @ u.T
    return Zca(matrix=(w + w.T) / 2, regularization=reg, shift=shift, eigenvalues=s,
               image_shape=tuple(x_train.shape[1:]), flip_symmetric=flip_symmetric, n_fit=len(x_train))


def apply_zca(zca: Zca, x: np.ndarray, *, chunk_rows: int | None = _ZCA_CHUNK_ROWS,
              out: np.ndarray | None = None) -> np.ndarray:
    """normalize_images(x) @ W, in float64 by chunks of images, as float32 NHWC.

    Args:
      zca: from `fit_zca`.
      x: (n, H, W, C) images of the fitted shape.
      chunk_rows: images per chunk (None: all at once).
      out: optional float32 array of x's shape to write into (may be x itself).

    Returns:
      float32 (n, H, W, C).
    """
    _check_images(x, "x")
    if tuple(x.shape[1:]) != zca.image_shape:
        raise ValueError(f"the ZCA was fitted on images of shape {zca.image_shape}, got {tuple(x.shape[1:])}")
    if out is None:
        out = np.empty(x.shape, np.float32)
    elif out.shape != x.shape or out.dtype != np.float32:
        raise ValueError(f"out must be float32 of shape {x.shape}, got {out.dtype} {out.shape}")
    step = len(x) if chunk_rows is None else chunk_rows
    for start in range(0, len(x), max(step, 1)):
        stop = min(start + step, len(x))
        out[start:stop] = (normalize_images(x[start:stop]) @ zca.matrix).reshape(x[start:stop].shape)
    return out


def zca_whiten(x_train: np.ndarray, x_test: np.ndarray, regularization: float, *, flip_symmetric: bool = False,
               chunk_rows: int | None = _ZCA_CHUNK_ROWS):
    """Fits ZCA on x_train only (`fit_zca`) and whitens x_train and x_test with it.

    Returns:
      (x_train, x_test, zca): float32 NHWC images and the fitted Zca.
    """
    zca = fit_zca(x_train, regularization, flip_symmetric=flip_symmetric, chunk_rows=chunk_rows)
    return apply_zca(zca, x_train, chunk_rows=chunk_rows), apply_zca(zca, x_test, chunk_rows=chunk_rows), zca


# --------------------------------------------------------------------------- random patches

# Options of `fit_random_patches` (data.patches in a config) and their defaults.
PATCH_DEFAULTS = {"count": 64, "size": 5, "zca": 0.1, "threshold": 0.25, "samples": 10000, "contrast_eps": 0.01,
                  "seed": 0}
_PATCH_CHUNK_ROWS = 256


@dataclasses.dataclass(frozen=True, repr=False)
class RandomPatches:
    """A random-patch input layer (Coates, Lee, Ng 2011) fitted on training images
    (`fit_random_patches`); apply it with `apply_random_patches`.

    An image's patch at position p (size x size x C, periodic boundaries) is contrast-normalized,
    u = (v - mean(v)) / sqrt(var(v) + contrast_eps), whitened, w = (u - mu) W, and filtered by the
    unit-norm whitened training patches F: z = F w. The output channels are the split soft
    threshold [max(0, z - threshold), max(0, -z - threshold)], 2 * count channels.

    Attributes:
      filters: float64 (count, d), d = size * size * C: unit-norm whitened training patches.
      whitening: float64 (d, d), W = U (S + zca * mean(S))^(-1/2) U^T of the normalized patches'
        covariance U S U^T.
      mean: float64 (d,), mu, the mean normalized patch.
      size, threshold, contrast_eps: as given.
      channels: C of the images it applies to.
      sources: int (count, 4): (training image, row, column, mirrored) of each filter's patch.
      n_fit: training images the patches were drawn from.
    """

    filters: np.ndarray
    whitening: np.ndarray
    mean: np.ndarray
    size: int
    threshold: float
    contrast_eps: float
    channels: int
    sources: np.ndarray
    n_fit: int

    def __repr__(self) -> str:
        return (f"RandomPatches(count={len(self.filters)}, size={self.size}, threshold={self.threshold:g}, "
                f"n_fit={self.n_fit})")


def check_patch_options(options) -> dict:
    """The options of `fit_random_patches` with defaults filled in; ValueError naming a bad key."""
    if not isinstance(options, dict):
        raise ValueError(f"patches must be a mapping of options ({', '.join(PATCH_DEFAULTS)}), got {options!r}")
    unknown = sorted(set(options) - set(PATCH_DEFAULTS))
    if unknown:
        raise ValueError(f"patches.{unknown[0]}: unknown option (options: {', '.join(PATCH_DEFAULTS)})")
    out = dict(PATCH_DEFAULTS, **options)
    for key in ("count", "size", "samples"):
        if isinstance(out[key], bool) or not isinstance(out[key], (int, np.integer)) or out[key] < 1:
            raise ValueError(f"patches.{key} must be an integer >= 1, got {out[key]!r}")
    if isinstance(out["seed"], bool) or not isinstance(out["seed"], (int, np.integer)) or out["seed"] < 0:
        raise ValueError(f"patches.seed must be an integer >= 0, got {out['seed']!r}")
    for key, low, strict in (("zca", 0.0, True), ("threshold", 0.0, False), ("contrast_eps", 0.0, False)):
        v = out[key]
        if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not np.isfinite(v) or v < low \
                or (strict and v == low):
            raise ValueError(f"patches.{key} must be a number {'>' if strict else '>='} {low:g}, got {v!r}")
    return out


def _patches_at(x: np.ndarray, size: int) -> np.ndarray:
    """Every size x size patch of NHWC images with periodic boundaries (the image wraps around,
    SAME's pad amounts, as Conv(padding='CIRCULAR')): (n, H, W, size * size * C), float64,
    flattened in (row, column, channel) order."""
    lo, hi = (size - 1) // 2, size // 2
    padded = np.pad(x.astype(np.float64), ((0, 0), (lo, hi), (lo, hi), (0, 0)), mode="wrap")
    views = np.lib.stride_tricks.sliding_window_view(padded, (size, size), axis=(1, 2))  # (n, H, W, C, s, s)
    return np.ascontiguousarray(views.transpose(0, 1, 2, 4, 5, 3)).reshape(x.shape[:3] + (-1,))


def _contrast_normalize(p: np.ndarray, eps: float) -> np.ndarray:
    p = p - p.mean(axis=-1, keepdims=True)
    return p / np.sqrt(np.mean(p * p, axis=-1, keepdims=True) + eps)


def fit_random_patches(x_train: np.ndarray, count: int = 64, size: int = 5, *, zca: float = 0.1,
                       threshold: float = 0.25, samples: int = 10000, contrast_eps: float = 0.01, seed: int = 0,
                       flip_symmetric: bool = False) -> RandomPatches:
    """Draws the random-patch filters and their whitening from training images only.

    `samples` patches (uniform training image, uniform position, periodic boundaries) are
    contrast-normalized; their covariance C = U S U^T gives the ZCA W = U (S + zca mean(S))^(-1/2)
    U^T (the same relative regularization as `fit_zca`; Coates et al. add 0.1 to S of patches
    with unit-variance coordinates, which is what contrast normalization gives); the first
    `count` of them, whitened and scaled to unit norm, are the filters. With `flip_symmetric`, the
    samples are the first half drawn plus their horizontal mirrors and the filters are count // 2
    drawn patches plus their mirrors (count must be even): the filter bank is closed under flips
    and W commutes with them, so the layer maps a mirrored image to the mirrored output with
    its channels permuted, which leaves every kernel of the output unchanged.

    Args:
      x_train: (n, H, W, C) training images (standardized).
      count: number of filters N (the output has 2N channels).
      size: patch side s.
      zca: whitening regularization, relative to the mean eigenvalue.
      threshold: alpha of the split soft threshold.
      samples: patches drawn to fit the whitening (at least count).
      contrast_eps: added to each patch's variance before dividing (flat patches stay small).
      seed: seeds NumPy's generator for the draws.
      flip_symmetric: see above.

    Returns:
      A RandomPatches; statistics in float64.
    """
    options = check_patch_options(dict(count=count, size=size, zca=zca, threshold=threshold, samples=samples,
                                       contrast_eps=contrast_eps, seed=seed))
    _check_images(x_train, "x_train")
    n, h, w, c = x_train.shape
    if n == 0:
        raise ValueError("random patches need at least one training image")
    if flip_symmetric and count % 2:
        raise ValueError(f"patches.count must be even with flips (each patch comes with its mirror), got {count}")
    samples = max(options["samples"], count)
    drawn = samples // 2 if flip_symmetric else samples
    rng = np.random.default_rng(seed)
    where = np.stack([rng.integers(0, n, drawn), rng.integers(0, h, drawn), rng.integers(0, w, drawn)], axis=1)
    lo = (size - 1) // 2
    rows = (where[:, 1:2] - lo + np.arange(size)) % h  # (drawn, s): periodic boundaries
    cols = (where[:, 2:3] - lo + np.arange(size)) % w
    p = x_train[where[:, 0, None, None], rows[:, :, None], cols[:, None, :]].astype(np.float64)  # (drawn, s, s, C)
    mirrored = np.zeros(drawn, bool)
    if flip_symmetric:
        k = count // 2
        p = np.concatenate([p[:k], p[:k, :, ::-1], p[k:], p[k:, :, ::-1]])
        where = np.concatenate([where[:k], where[:k], where[k:], where[k:]])
        mirrored = np.concatenate([np.zeros(k, bool), np.ones(k, bool), np.zeros(drawn - k, bool),
                                   np.ones(drawn - k, bool)])
    u = _contrast_normalize(p.reshape(len(p), -1), contrast_eps)
    mean = u.mean(axis=0)
    cov = (u - mean).T @ (u - mean) / len(u)
    s, vecs = np.linalg.eigh((cov + cov.T) / 2)
    s = np.maximum(s, 0.0)
    shift = zca * float(np.mean(s))
    if shift <= 0:
        raise ValueError("every sampled training patch is constant: nothing to whiten")
    whitening = (vecs / np.sqrt(s + shift)) @ vecs.T
    filters = (u[:count] - mean) @ whitening
    norms = np.linalg.norm(filters, axis=1, keepdims=True)
    filters = np.divide(filters, norms, out=np.zeros_like(filters), where=norms > 0)
    sources = np.concatenate([where[:count], mirrored[:count, None]], axis=1).astype(np.int64)
    return RandomPatches(filters=filters, whitening=(whitening + whitening.T) / 2, mean=mean, size=size,
                         threshold=float(threshold), contrast_eps=float(contrast_eps), channels=c, sources=sources,
                         n_fit=n)


def apply_random_patches(patches: RandomPatches, x: np.ndarray, *,
                         chunk_rows: int | None = _PATCH_CHUNK_ROWS) -> np.ndarray:
    """The random-patch layer's output: (n, H, W, C) images -> float32 (n, H, W, 2 * count).

    Periodic boundaries keep the spatial shape (so a later circular convolution sees a periodic
    image throughout). Computed in float64 by chunks of `chunk_rows` images."""
    _check_images(x, "x")
    if x.shape[-1] != patches.channels:
        raise ValueError(f"the patches were fitted on images with {patches.channels} channels, got {x.shape[-1]}")
    project = patches.whitening @ patches.filters.T  # (d, N): whitening and filtering in one product
    offset = patches.mean @ project
    n, h, w = x.shape[:3]
    out = np.empty((n, h, w, 2 * len(patches.filters)), np.float32)
    step = max(n if chunk_rows is None else chunk_rows, 1)
    for start in range(0, n, step):
        u = _contrast_normalize(_patches_at(x[start:start + step], patches.size), patches.contrast_eps)
        z = u @ project - offset
        out[start:start + step] = np.concatenate([np.maximum(z - patches.threshold, 0.0),
                                                  np.maximum(-z - patches.threshold, 0.0)], axis=-1)
    return out
