"""CIFAR-10 readers: the packed-JPEG npz (decoded with Pillow, cached) and `cifar-10-batches-py`.

Both give uint8 NHWC images (N, 32, 32, 3) in RGB and labels 0..9 (airplane, automobile, bird,
cat, deer, dog, frog, horse, ship, truck).

Packed JPEG (`cifar10_jpeg.npz`): `{split}_jpeg` holds the JPEG files back to back, image i being
`{split}_jpeg[{split}_offsets[i]:{split}_offsets[i + 1]]`, and `{split}_y` the labels, for split
in (train, test). Decoding all 60,000 images takes about 6 s, so the first load that needs most of
them decodes everything once and caches the uint8 arrays as `.npy` files (184 MB) in
`$NTKFEAT_CACHE` (default `$XDG_CACHE_HOME/ntkfeat` or `~/.cache/ntkfeat`). Later loads memory-map
the cache and read only the requested rows. A load of a small subset (at most a tenth of the
images) without a cache decodes just those rows and writes nothing.

Batches folder: the pickles `data_batch_1` .. `data_batch_5` and `test_batch` of the official
python release, each a dict with b'data' (uint8 (N, 3072), channel-major: all red, then green,
then blue, each row-major 32 x 32) and b'labels'. Unpickling runs code from the file: only read
folders you trust.
"""

from __future__ import annotations

import hashlib
import io
import os
import pathlib
import pickle
import tempfile
import warnings

import numpy as np

NPZ_NAME = "cifar10_jpeg.npz"
BATCHES_NAME = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
SPLITS = ("train", "test")

_CACHE_VERSION = 1
# Without a cache, subsets up to this fraction of all images are decoded directly.
_PARTIAL_DECODE_FRACTION = 0.1


def cache_dir() -> pathlib.Path:
    """Where decoded arrays are cached: $NTKFEAT_CACHE, else $XDG_CACHE_HOME/ntkfeat, else ~/.cache/ntkfeat."""
    if os.environ.get("NTKFEAT_CACHE"):
        return pathlib.Path(os.environ["NTKFEAT_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "ntkfeat"


# --------------------------------------------------------------------------- packed JPEG npz


class PackedJpeg:
    """A packed-JPEG CIFAR-10 npz, opened lazily: labels are read at once, images on `images(...)`."""

    def __init__(self, path: pathlib.Path):
        self.path = pathlib.Path(path)
        with np.load(self.path, allow_pickle=False) as f:
            for split in SPLITS:
                for key in (f"{split}_jpeg", f"{split}_offsets", f"{split}_y"):
                    if key not in f.files:
                        raise ValueError(f"{self.path}: missing key {key!r} (has {sorted(f.files)}); "
                                         f"expected a packed-JPEG CIFAR-10 npz")
            self.labels = {split: np.asarray(f[f"{split}_y"]) for split in SPLITS}
            self.offsets = {split: np.asarray(f[f"{split}_offsets"], np.int64) for split in SPLITS}
            sizes = {split: f[f"{split}_jpeg"].shape for split in SPLITS}
        for split in SPLITS:
            self._check_offsets(split, sizes[split])

    def _check_offsets(self, split: str, jpeg_shape: tuple) -> None:
        n, offsets = len(self.labels[split]), self.offsets[split]
        if len(jpeg_shape) != 1 or self.labels[split].ndim != 1:
            raise ValueError(f"{self.path}: {split}_jpeg and {split}_y must be 1-d, got shapes "
                             f"{jpeg_shape} and {self.labels[split].shape}")
        if offsets.shape != (n + 1,):
            raise ValueError(f"{self.path}: {split}_offsets has shape {offsets.shape}, expected ({n + 1},) "
                             f"for {n} labels in {split}_y")
        if offsets[0] < 0 or np.any(np.diff(offsets) <= 0) or offsets[-1] > jpeg_shape[0]:
            raise ValueError(f"{self.path}: {split}_offsets must increase strictly from >= 0 to at most "
                             f"len({split}_jpeg) = {jpeg_shape[0]}")

    def count(self, split: str) -> int:
        return len(self.labels[split])

    def cache_file(self, split: str) -> pathlib.Path:
        """The cache file of one split, named by a hash of this file's path, size and mtime."""
        stat = self.path.stat()
        ident = f"{self.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|v{_CACHE_VERSION}"
        digest = hashlib.sha256(ident.encode()).hexdigest()[:16]
        return cache_dir() / f"cifar10_jpeg-{digest}-{split}.npy"

    def _read_cache(self, split: str) -> np.ndarray | None:
        file = self.cache_file(split)
        if not file.exists():
            return None
        try:
            x = np.load(file, mmap_mode="r")
        except (OSError, ValueError):
            return None  # truncated or foreign file: decode again and overwrite it
        if x.dtype != np.uint8 or x.ndim != 4 or len(x) != self.count(split):
            return None
        return x

    def images(self, train_rows: np.ndarray, test_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 NHWC images of the given rows of the train and test parts.

        Args:
          train_rows, test_rows: int arrays of row indices into the train / test part.

        Returns:
          (x_train, x_test): uint8 (len(train_rows), H, W, 3), (len(test_rows), H, W, 3).
        """
        rows = {"train": np.asarray(train_rows), "test": np.asarray(test_rows)}
        cached = {split: self._read_cache(split) for split in SPLITS}
        requested = sum(len(r) for split, r in rows.items() if cached[split] is None)
        total = sum(self.count(split) for split in SPLITS if cached[split] is None)
        partial = requested <= _PARTIAL_DECODE_FRACTION * max(total, 1)
        with np.load(self.path, allow_pickle=False) as f:
            out = []
            for split in SPLITS:
                if cached[split] is not None:
                    out.append(np.ascontiguousarray(cached[split][rows[split]]))
                elif partial:
                    out.append(decode_jpegs(f[f"{split}_jpeg"], self.offsets[split], rows[split]))
                else:
                    x = decode_jpegs(f[f"{split}_jpeg"], self.offsets[split], np.arange(self.count(split)))
                    _write_cache(self.cache_file(split), x)
                    out.append(x[rows[split]])
        if out[0].shape[1:] != out[1].shape[1:] and len(out[0]) and len(out[1]):
            raise ValueError(f"{self.path}: train images are {out[0].shape[1:]} but test images "
                             f"are {out[1].shape[1:]}")
        return out[0], out[1]


def decode_jpegs(buffer: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Decodes images `rows` of a packed JPEG buffer to uint8 RGB.

    Args:
      buffer: uint8 (total_bytes,), the JPEG files back to back.
      offsets: int (N + 1,), image i is buffer[offsets[i]:offsets[i + 1]].
      rows: int (k,), which images.

    Returns:
      uint8 (k, H, W, 3); all images must share one H x W.
    """
    from PIL import Image  # Pillow is only needed here

    out = None
    for i, row in enumerate(np.asarray(rows)):
        data = buffer[offsets[row]:offsets[row + 1]].tobytes()
        with Image.open(io.BytesIO(data)) as image:
            pixels = np.asarray(image.convert("RGB"))
        if out is None:
            out = np.empty((len(rows),) + pixels.shape, np.uint8)
        elif pixels.shape != out.shape[1:]:
            raise ValueError(f"image {row} is {pixels.shape[:2]}, but earlier images are {out.shape[1:3]}")
        out[i] = pixels
    return out if out is not None else np.empty((0, 32, 32, 3), np.uint8)


def _write_cache(file: pathlib.Path, x: np.ndarray) -> None:
    """Saves x to file atomically (temp file in the same folder, then os.replace); warns on failure."""
    tmp = None
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.save(f, x)
        os.replace(tmp, file)
    except OSError as err:
        warnings.warn(f"could not cache decoded CIFAR-10 images in {file} ({err}); set NTKFEAT_CACHE to a "
                      f"writable folder to avoid decoding again", stacklevel=3)
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


# --------------------------------------------------------------------------- batches folder


def _unpickle(file: pathlib.Path) -> dict:
    if not file.is_file():
        raise FileNotFoundError(f"CIFAR-10 batch file {file} not found; a cifar-10-batches-py folder holds "
                                f"{', '.join(TRAIN_BATCHES)} and {TEST_BATCH}")
    with open(file, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    # The official pickles have bytes keys; copies re-pickled under Python 3 may have str keys.
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    for key in ("data", "labels"):
        if key not in batch:
            raise ValueError(f"{file}: the batch dict has no {key!r} entry (has {sorted(batch)})")
    return batch


def _batches(folder: pathlib.Path, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for name in names:
        batch = _unpickle(folder / name)
        data, labels = np.asarray(batch["data"], np.uint8), np.asarray(batch["labels"])
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != (len(data),):
            raise ValueError(f"{folder / name}: expected data (N, 3072) and labels (N,), got "
                             f"{data.shape} and {labels.shape}")
        # Channel-major rows: (N, C, H, W) to NHWC.
        xs.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(labels)
    return np.ascontiguousarray(np.concatenate(xs)), np.concatenate(ys)


def read_batches(folder: pathlib.Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Reads a `cifar-10-batches-py` folder.

    Returns:
      {'train': (x, y), 'test': (x, y)} with x uint8 (N, 32, 32, 3) NHWC RGB and y (N,) labels;
      N = 50,000 and 10,000 for the official release.
    """
    folder = pathlib.Path(folder)
    return {"train": _batches(folder, TRAIN_BATCHES), "test": _batches(folder, (TEST_BATCH,))}
