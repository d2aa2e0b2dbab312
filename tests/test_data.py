"""Data loading: splits, subsets, standardization, file formats and error messages.

Synthetic files (npz, a tiny `cifar-10-batches-py` folder, a packed-JPEG npz) are written to
pytest's tmp_path, so every format is checked on any machine. Tests on the real benchmark files
skip when no data folder is found.
"""

import io
import pathlib
import pickle
import re

import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_digits

import ntkfeat
from ntkfeat.data import DATASET_NAMES, Dataset, data_root, load_dataset
from ntkfeat.data import cifar10, flips, preprocess, sources

try:
    REAL_ROOT = data_root()
except FileNotFoundError:
    REAL_ROOT = None


def _needs(*parts):
    """Skips unless REAL_ROOT/parts exists; returns that path."""
    if REAL_ROOT is None or not REAL_ROOT.joinpath(*parts).exists():
        pytest.skip(f"real data {'/'.join(parts)} not available (set NTKFEAT_DATA)")
    return REAL_ROOT.joinpath(*parts)


def _npz(tmp_path, name="data.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def _tabular(n=40, d=3, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, d)) * [1.0, 10.0, 0.1][:d] + 5).astype(np.float32), rng.normal(size=n)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Keeps decoded-image caches of synthetic files out of the user's cache."""
    monkeypatch.setenv("NTKFEAT_CACHE", str(tmp_path / "cache"))


# --------------------------------------------------------------------------- scikit-learn sets


def test_names():
    assert {"diabetes", "digits", "protein", "naval", "mnist", "cifar10", "npz"} <= set(DATASET_NAMES)
    assert len(set(DATASET_NAMES)) == len(DATASET_NAMES) == 15


def test_diabetes_shapes_and_train_statistics():
    ds = load_dataset("diabetes")
    assert isinstance(ds, Dataset) and ds.task == "regression" and ds.num_classes is None
    assert ds.x_train.shape == (354, 10) and ds.x_test.shape == (88, 10)
    assert ds.x_train.dtype == ds.x_test.dtype == ds.y_train.dtype == np.float32
    np.testing.assert_allclose(ds.x_train.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(ds.x_train.std(0), 1, atol=1e-5)
    np.testing.assert_allclose([ds.y_train.mean(), ds.y_train.std()], [0, 1], atol=1e-5)
    # Test rows are scaled with the training statistics, so theirs are off.
    assert np.abs(ds.x_test.mean(0)).max() > 0.05
    assert abs(ds.y_test.mean()) > 1e-3
    # Disjoint and covering: a real 80/20 split of the 442 rows.
    rows = np.concatenate([ds.info["train_rows"], ds.info["test_rows"]])
    assert np.array_equal(np.sort(rows), np.arange(442))


def test_diabetes_original_units_and_raw():
    raw = load_diabetes(scaled=False)
    ds = load_dataset("diabetes", seed=3)
    train, test = ds.info["train_rows"], ds.info["test_rows"]
    np.testing.assert_allclose(ds.unstandardize_y(ds.y_train), raw.target[train], rtol=1e-5)
    np.testing.assert_allclose(ds.unstandardize_y(ds.y_test), raw.target[test], rtol=1e-5)
    assert ds.y_mean == pytest.approx(raw.target[train].mean())
    assert ds.y_std == pytest.approx(raw.target[train].std())
    np.testing.assert_allclose(ds.x_test, (raw.data[test] - raw.data[train].mean(0)) / raw.data[train].std(0),
                               rtol=1e-4, atol=1e-5)

    plain = load_dataset("diabetes", seed=3, standardize=False)
    np.testing.assert_allclose(plain.x_train, raw.data[train], rtol=1e-6)
    np.testing.assert_allclose(plain.y_test, raw.target[test], rtol=1e-6)
    assert (plain.y_mean, plain.y_std) == (0.0, 1.0)


def test_seed_determinism_and_nested_subsets():
    a, b, c = load_dataset("diabetes", seed=7), load_dataset("diabetes", seed=7), load_dataset("diabetes", seed=8)
    for field in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.info["train_rows"], c.info["train_rows"])

    small = load_dataset("diabetes", seed=7, n_train=50, n_test=10)
    large = load_dataset("diabetes", seed=7, n_train=100, n_test=20)
    assert small.x_train.shape == (50, 10) and small.x_test.shape == (10, 10)
    assert np.isin(large.info["train_rows"], a.info["train_rows"]).all()
    assert np.isin(large.info["test_rows"], a.info["test_rows"]).all()
    assert np.array_equal(small.info["train_rows"], large.info["train_rows"][:50])
    # The test subset does not depend on n_train.
    other = load_dataset("diabetes", seed=7, n_train=60, n_test=10)
    assert np.array_equal(other.info["test_rows"], small.info["test_rows"])
    # Statistics come from the returned training rows.
    np.testing.assert_allclose(small.x_train.mean(0), 0, atol=1e-5)


def test_digits_flat_and_images():
    flat = load_dataset("digits")
    nhwc = load_dataset("digits", images=True)
    assert flat.task == "classification" and flat.num_classes == 10
    assert flat.x_train.shape == (1438, 64) and flat.x_test.shape == (359, 64)
    assert nhwc.x_train.shape == (1438, 8, 8, 1) and nhwc.x_test.shape == (359, 8, 8, 1)
    np.testing.assert_array_equal(flat.x_train, nhwc.x_train.reshape(1438, 64))
    assert flat.y_train.dtype == np.int64 and set(np.unique(flat.y_train)) == set(range(10))
    # One channel: standardized over all training pixels together.
    assert abs(nhwc.x_train.mean()) < 1e-5 and nhwc.x_train.std() == pytest.approx(1, abs=1e-5)

    raw = load_digits()
    plain = load_dataset("digits", images=True, standardize=False)
    rows = plain.info["train_rows"]
    np.testing.assert_allclose(plain.x_train[..., 0], raw.images[rows] / 16, rtol=1e-6)
    np.testing.assert_array_equal(plain.y_train, raw.target[rows])


# --------------------------------------------------------------------------- npz files


def test_npz_with_train_idx(tmp_path):
    x, y = _tabular()
    train_idx = np.array([np.arange(0, 30), np.arange(10, 40)])
    test_idx = np.array([np.arange(30, 40), np.arange(0, 10)])
    path = _npz(tmp_path, x=x, y=y, train_idx=train_idx, test_idx=test_idx)
    ds = load_dataset("npz", path=path, split=1, standardize=False)
    np.testing.assert_array_equal(ds.x_train, x[10:40])
    np.testing.assert_array_equal(ds.x_test, x[:10])
    assert ds.task == "regression" and ds.info["split"] == 1
    ds = load_dataset("npz", path=path, split=0)
    np.testing.assert_allclose(ds.x_test, (x[30:] - x[:30].mean(0)) / x[:30].std(0), rtol=1e-4, atol=1e-5)


def test_npz_with_test_mask(tmp_path):
    x, y = _tabular()
    mask = np.zeros((40, 3), bool)
    mask[::4, 0], mask[1::4, 1], mask[:5, 2] = True, True, True
    ds = load_dataset("npz", path=_npz(tmp_path, x=x, y=y, test_mask=mask), split=2, standardize=False)
    np.testing.assert_array_equal(ds.x_test, x[:5])
    np.testing.assert_array_equal(ds.x_train, x[5:])
    np.testing.assert_allclose(ds.y_train, y[5:], rtol=1e-6)


def test_npz_without_split_is_seeded_80_20(tmp_path):
    x, y = _tabular(n=50)
    path = _npz(tmp_path, x=x, y=y)
    a, b = load_dataset("npz", path=path, seed=1), load_dataset("npz", path=path, seed=1)
    assert a.x_train.shape == (40, 3) and a.x_test.shape == (10, 3)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    rows = np.concatenate([a.info["train_rows"], a.info["test_rows"]])
    assert np.array_equal(np.sort(rows), np.arange(50))
    assert not np.array_equal(load_dataset("npz", path=path, seed=2).info["test_rows"], a.info["test_rows"])


def test_constant_columns_on_train_rows_are_dropped(tmp_path):
    x, y = _tabular(d=3)
    x = np.insert(x, 1, 2.5, axis=1)  # column 1 constant on the train rows ...
    x[35:, 1] = [1, 2, 3, 4, 5]  # ... but not on the test rows
    path = _npz(tmp_path, x=x, y=y, train_idx=np.arange(35)[None], test_idx=np.arange(35, 40)[None])
    ds = load_dataset("npz", path=path)
    assert ds.info["dropped_columns"] == [1]
    assert ds.x_train.shape == (35, 3) and ds.x_test.shape == (5, 3)
    assert np.isfinite(ds.x_test).all()
    np.testing.assert_allclose(ds.x_train.std(0), 1, atol=1e-5)
    kept = x[:, [0, 2, 3]]
    np.testing.assert_allclose(ds.x_test, (kept[35:] - kept[:35].mean(0)) / kept[:35].std(0), rtol=1e-4, atol=1e-5)
    # standardize=False keeps every column as stored.
    assert load_dataset("npz", path=path, standardize=False).x_train.shape == (35, 4)


def test_task_inference_and_labels(tmp_path):
    x, _ = _tabular()
    labels = np.where(np.arange(40) % 3 == 0, -1, 1)
    ds = load_dataset("npz", path=_npz(tmp_path, "c.npz", x=x, y=labels))
    assert ds.task == "classification" and ds.num_classes == 2 and ds.y_train.dtype == np.int64
    assert ds.info["classes"].tolist() == [-1, 1]
    np.testing.assert_array_equal(ds.y_train, (labels[ds.info["train_rows"]] + 1) // 2)
    assert (ds.y_mean, ds.y_std) == (0.0, 1.0)

    forced = load_dataset("npz", path=_npz(tmp_path, "c.npz", x=x, y=labels), task="regression")
    assert forced.task == "regression" and forced.y_train.dtype == np.float32
    forty_values = np.arange(40) * 3  # integer-valued with at most 100 distinct values: labels
    assert load_dataset("npz", path=_npz(tmp_path, "m.npz", x=x, y=forty_values)).task == "classification"
    x_big, _ = _tabular(n=200)
    assert load_dataset("npz", path=_npz(tmp_path, "r.npz", x=x_big, y=np.arange(200.0))).task == "regression"
    assert load_dataset("npz", path=_npz(tmp_path, "f.npz", x=x, y=np.linspace(0, 1, 40))).task == "regression"


def test_npz_images_per_channel(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(30, 6, 5, 3)).astype(np.uint8)
    x[..., 2] //= 4  # channels on different scales
    y = np.arange(30) % 4
    path = _npz(tmp_path, x=x, y=y)
    ds = load_dataset("npz", path=path)
    assert ds.x_train.shape == (24, 6, 5, 3) and ds.info["pixel_scale"] == pytest.approx(1 / 255)
    np.testing.assert_allclose(ds.x_train.mean(axis=(0, 1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(ds.x_train.std(axis=(0, 1, 2)), 1, atol=1e-5)
    train = x[ds.info["train_rows"]] / 255
    mean, std = train.mean(axis=(0, 1, 2)), train.std(axis=(0, 1, 2))
    np.testing.assert_allclose(ds.x_test, (x[ds.info["test_rows"]] / 255 - mean) / std, rtol=1e-4, atol=1e-5)
    plain = load_dataset("npz", path=path, standardize=False, images=False)
    np.testing.assert_allclose(plain.x_train, train.reshape(24, -1), rtol=1e-6)


# --------------------------------------------------------------------------- errors


def test_error_unknown_name_and_bad_arguments():
    with pytest.raises(ValueError, match="unknown dataset 'mnsit'.*diabetes.*cifar10"):
        load_dataset("mnsit")
    with pytest.raises(ValueError, match="needs path="):
        load_dataset("npz")
    with pytest.raises(ValueError, match="task must be"):
        load_dataset("diabetes", task="ranking")
    with pytest.raises(ValueError, match="images=True needs image data"):
        load_dataset("diabetes", images=True)
    with pytest.raises(ValueError, match="n_train must be"):
        load_dataset("diabetes", n_train=0)
    with pytest.raises(ValueError, match="split must be 0"):
        load_dataset("diabetes", split=1)


def test_error_classification_needs_integer_labels(tmp_path):
    x, y = _tabular()
    with pytest.raises(ValueError, match="integer-valued labels"):
        load_dataset("npz", path=_npz(tmp_path, x=x, y=y), task="classification")


def test_error_subset_too_large():
    with pytest.raises(ValueError, match="n_train=400 is larger than the 354 rows"):
        load_dataset("diabetes", n_train=400)
    with pytest.raises(ValueError, match="n_test=89 is larger than the 88 rows"):
        load_dataset("diabetes", n_test=89)


def test_error_missing_file_and_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz.*NTKFEAT_DATA"):
        load_dataset("npz", path=tmp_path / "nope.npz")
    with pytest.raises(FileNotFoundError, match=r"uci.*boston\.npz.*NTKFEAT_DATA"):
        load_dataset("boston", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="mnist_train.npz"):
        load_dataset("mnist", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="CIFAR-10 not found.*NTKFEAT_DATA"):
        load_dataset("cifar10", root=tmp_path)
    path = _npz(tmp_path, "noy.npz", x=np.zeros((5, 2)), labels=np.zeros(5))
    with pytest.raises(ValueError, match="noy.npz: missing key 'y'"):
        load_dataset("npz", path=path)
    x, y = _tabular()
    with pytest.raises(ValueError, match="has 'train_idx' but no 'test_idx'"):
        load_dataset("npz", path=_npz(tmp_path, x=x, y=y, train_idx=np.arange(30)[None]))
    uci_like = _npz(tmp_path, "uci.npz", x=x, y=y)
    with pytest.raises(ValueError, match="missing key 'train_idx'"):
        load_dataset("boston", path=uci_like)


def test_error_shapes_and_nonfinite(tmp_path):
    with pytest.raises(ValueError, match="x has 10 rows but y has 9"):
        load_dataset("npz", path=_npz(tmp_path, x=np.zeros((10, 2)), y=np.zeros(9)))
    x, y = _tabular()
    x[[3, 17], 1] = np.nan
    with pytest.raises(ValueError, match="x has NaN or inf values in 2 of 40 rows"):
        load_dataset("npz", path=_npz(tmp_path, x=x, y=y))
    x, y = _tabular()
    y[5] = np.inf
    with pytest.raises(ValueError, match="y has NaN or inf values in 1 of 40 rows"):
        load_dataset("npz", path=_npz(tmp_path, x=x, y=y))
    with pytest.raises(ValueError, match=r"x must be tabular \(n, d\) or images"):
        load_dataset("npz", path=_npz(tmp_path, x=np.zeros(10), y=np.zeros(10)))


def test_error_splits_and_indices(tmp_path):
    x, y = _tabular()
    idx = dict(train_idx=np.array([np.arange(30), np.arange(10, 40)]), test_idx=np.array([np.arange(30, 40),
                                                                                          np.arange(10)]))
    with pytest.raises(ValueError, match="split=2 is out of range; the file has 2 splits"):
        load_dataset("npz", path=_npz(tmp_path, x=x, y=y, **idx), split=2)
    bad = dict(idx, test_idx=np.array([np.arange(31, 41), np.arange(10)]))
    with pytest.raises(ValueError, match=r"test_idx\[0\] has 1 indices outside \[0, 40\)"):
        load_dataset("npz", path=_npz(tmp_path, x=x, y=y, **bad))
    negative = dict(idx, train_idx=np.array([np.arange(-1, 29), np.arange(10, 40)]))
    with pytest.raises(ValueError, match="outside"):
        load_dataset("npz", path=_npz(tmp_path, x=x, y=y, **negative))
    overlap = dict(idx, test_idx=np.array([np.arange(25, 35), np.arange(10)]))
    with pytest.raises(ValueError, match="share 5 rows"):
        load_dataset("npz", path=_npz(tmp_path, x=x, y=y, **overlap))
    with pytest.raises(ValueError, match="must be an integer array"):
        load_dataset("npz", path=_npz(tmp_path, x=x, y=y, **dict(idx, train_idx=idx["train_idx"] * 1.0)))
    mask = np.zeros((40, 2), bool)
    mask[:8] = True
    with pytest.raises(ValueError, match="split=2 is out of range; test_mask has 2"):
        load_dataset("npz", path=_npz(tmp_path, x=x, y=y, test_mask=mask), split=2)
    with pytest.raises(ValueError, match=r"test_mask must have shape \(n, n_splits\)"):
        load_dataset("npz", path=_npz(tmp_path, x=x, y=y, test_mask=mask.T))
    with pytest.raises(ValueError, match="split must be 0"):
        load_dataset("npz", path=_npz(tmp_path, x=x, y=y), split=1)


# --------------------------------------------------------------------------- data root


def test_data_root_resolution(tmp_path, monkeypatch):
    explicit, env = tmp_path / "explicit", tmp_path / "env"
    explicit.mkdir()
    env.mkdir()
    monkeypatch.setenv("NTKFEAT_DATA", str(env))
    assert data_root(explicit) == explicit
    assert data_root() == env
    monkeypatch.setenv("NTKFEAT_DATA", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="missing.*NTKFEAT_DATA"):
        data_root()

    # Defaults: <repository>/../shared/data first, then ./shared/data.
    monkeypatch.delenv("NTKFEAT_DATA")
    assert sources._REPO_ROOT == pathlib.Path(ntkfeat.__file__).resolve().parent.parent
    repo = tmp_path / "work" / "repo"
    repo.mkdir(parents=True)
    monkeypatch.setattr(sources, "_REPO_ROOT", repo)
    cwd = tmp_path / "cwd"
    (cwd / "shared" / "data").mkdir(parents=True)
    monkeypatch.chdir(cwd)
    assert data_root() == cwd / "shared" / "data"
    (tmp_path / "work" / "shared" / "data").mkdir(parents=True)
    assert data_root() == tmp_path / "work" / "shared" / "data"


def test_no_data_root_only_fails_when_files_are_needed(tmp_path, monkeypatch):
    monkeypatch.delenv("NTKFEAT_DATA", raising=False)
    monkeypatch.setattr(sources, "_REPO_ROOT", tmp_path / "repo")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="no data folder found: set NTKFEAT_DATA"):
        data_root()
    with pytest.raises(FileNotFoundError, match="NTKFEAT_DATA"):
        load_dataset("protein")
    assert load_dataset("diabetes", n_train=10).x_train.shape == (10, 10)
    x, y = _tabular()
    assert load_dataset("npz", path=_npz(tmp_path, x=x, y=y)).x_train.shape == (32, 3)


# --------------------------------------------------------------------------- CIFAR-10 formats


def _plant(data, image, h, w, c, value):
    data[image, c * 1024 + h * 32 + w] = value  # the batches are channel-major, row-major


def _write_batches(folder, sizes=(2, 2, 2, 2, 2, 3)):
    folder.mkdir()
    rng = np.random.default_rng(0)
    planted = []
    for i, (name, n) in enumerate(zip(cifar10.TRAIN_BATCHES + (cifar10.TEST_BATCH,), sizes)):
        data = rng.integers(0, 100, size=(n, 3072), dtype=np.uint8)
        _plant(data, 1, 5, 7, 2, 200 + i)
        _plant(data, 1, 7, 5, 0, 150 + i)
        planted.append(data)
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"data": data, b"labels": [i] * n}, f)
    return planted


def test_cifar10_batches_folder_layout(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    _write_batches(folder)
    ds = load_dataset("cifar10", path=folder, standardize=False)
    assert ds.x_train.shape == (10, 32, 32, 3) and ds.x_test.shape == (3, 32, 32, 3)
    assert ds.num_classes == 10 and ds.y_train.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert ds.y_test.tolist() == [5, 5, 5]
    # Image 1 of batch 3 is training row 5; pixel (h=5, w=7) blue and (h=7, w=5) red were planted.
    assert ds.x_train[5, 5, 7, 2] * 255 == pytest.approx(202)
    assert ds.x_train[5, 7, 5, 0] * 255 == pytest.approx(152)
    assert ds.x_test[1, 5, 7, 2] * 255 == pytest.approx(205)
    # Found under a data root too, and standardized per channel.
    root = tmp_path / "root"
    (root / "cifar10").mkdir(parents=True)
    folder.rename(root / "cifar10" / "cifar-10-batches-py")
    std = load_dataset("cifar10", root=root, n_train=6)
    np.testing.assert_allclose(std.x_train.mean(axis=(0, 1, 2)), 0, atol=1e-5)
    (root / "cifar10" / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_4"):
        load_dataset("cifar10", root=root)


def _write_packed(path, n_train, n_test, size=32):
    """A packed-JPEG npz of two-color images (top half, bottom half); returns the colors and labels."""
    from PIL import Image

    rng = np.random.default_rng(1)
    out, truth = {}, {}
    for split, n in (("train", n_train), ("test", n_test)):
        colors = rng.integers(20, 236, size=(n, 2, 3))
        labels = np.sort(rng.integers(0, 10, size=n)).astype(np.uint8)  # sorted by class, like the real file
        files = []
        for top, bottom in colors:
            pixels = np.empty((size, size, 3), np.uint8)
            pixels[: size // 2], pixels[size // 2:] = top, bottom
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
            files.append(np.frombuffer(buffer.getvalue(), np.uint8))
        out[f"{split}_jpeg"] = np.concatenate(files)
        out[f"{split}_offsets"] = np.concatenate([[0], np.cumsum([len(f) for f in files])]).astype(np.int64)
        out[f"{split}_y"] = labels
        truth[split] = (colors, labels)
    np.savez(path, **out)
    return truth


def _check_colors(x, colors, labels, y, rows):
    assert np.array_equal(y, labels[rows])
    # Away from the edge between the halves, JPEG q95 is within a few levels of the color.
    np.testing.assert_allclose(x[:, 2, 2] * 255, colors[rows, 0], atol=6)
    np.testing.assert_allclose(x[:, -3, -3] * 255, colors[rows, 1], atol=6)


def test_cifar10_packed_jpeg_decode_and_cache(tmp_path, monkeypatch):
    path = tmp_path / "cifar10_jpeg.npz"
    truth = _write_packed(path, n_train=4, n_test=2)
    ds = load_dataset("cifar10", path=path, standardize=False)
    assert ds.x_train.shape == (4, 32, 32, 3) and ds.x_test.shape == (2, 32, 32, 3)
    _check_colors(ds.x_train, *truth["train"], ds.y_train, ds.info["train_rows"])
    _check_colors(ds.x_test, *truth["test"], ds.y_test, ds.info["test_rows"])
    assert sorted(ds.info["train_rows"].tolist()) == [0, 1, 2, 3]  # all rows, shuffled

    cache = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(cache) == 2 and all(name.endswith(("-train.npy", "-test.npy")) for name in cache)

    def no_decoding(*args):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(cifar10, "decode_jpegs", no_decoding)
    again = load_dataset("cifar10", path=path, standardize=False)
    np.testing.assert_array_equal(again.x_train, ds.x_train)
    # A truncated cache file is ignored and rewritten.
    monkeypatch.undo()
    monkeypatch.setenv("NTKFEAT_CACHE", str(tmp_path / "cache"))
    train_cache = next((tmp_path / "cache").glob("*-train.npy"))
    train_cache.write_bytes(train_cache.read_bytes()[:200])
    np.testing.assert_array_equal(load_dataset("cifar10", path=path, standardize=False).x_train, ds.x_train)
    assert np.load(train_cache).shape == (4, 32, 32, 3)


def test_cifar10_small_subset_decodes_only_its_rows(tmp_path):
    path = tmp_path / "cifar10_jpeg.npz"
    truth = _write_packed(path, n_train=20, n_test=10, size=8)
    subset = load_dataset("cifar10", path=path, n_train=2, n_test=1, seed=4, standardize=False)
    assert not (tmp_path / "cache").exists()
    _check_colors(subset.x_train, *truth["train"], subset.y_train, subset.info["train_rows"])
    full = load_dataset("cifar10", path=path, n_train=20, n_test=10, seed=4, standardize=False)
    np.testing.assert_array_equal(subset.x_train, full.x_train[:2])
    np.testing.assert_array_equal(subset.x_test, full.x_test[:1])
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2
    # The file is sorted by class, so even a full load comes back in a seeded random order.
    everything = load_dataset("cifar10", path=path, seed=4, standardize=False)
    assert sorted(everything.info["train_rows"].tolist()) == list(range(20))
    assert not np.array_equal(everything.info["train_rows"], np.arange(20))
    _check_colors(everything.x_train, *truth["train"], everything.y_train, everything.info["train_rows"])


def test_cifar10_packed_errors(tmp_path):
    path = tmp_path / "cifar10_jpeg.npz"
    _write_packed(path, n_train=2, n_test=1, size=8)
    arrays = dict(np.load(path))
    np.savez(path, **{k: v for k, v in arrays.items() if k != "test_offsets"})
    with pytest.raises(ValueError, match="missing key 'test_offsets'"):
        load_dataset("cifar10", path=path)
    np.savez(path, **dict(arrays, train_offsets=arrays["train_offsets"][:-1]))
    with pytest.raises(ValueError, match="train_offsets has shape"):
        load_dataset("cifar10", path=path)


# --------------------------------------------------------------------------- real files (skip if absent)

UCI_SIZES = {  # name: (n_train, n_test, d, n_splits), from the data README
    "boston": (455, 51, 13, 20), "concrete": (927, 103, 8, 20), "energy": (691, 77, 8, 20),
    "kin8nm": (7373, 819, 8, 20), "naval": (10741, 1193, 14, 20), "power": (8611, 957, 4, 20),
    "protein": (41157, 4573, 9, 5), "wine_red": (1439, 160, 11, 20), "wine_white": (4408, 490, 11, 20),
    "yacht": (277, 31, 6, 20),
}


@pytest.mark.parametrize("name", sorted(UCI_SIZES))
def test_uci_real(name):
    file = _needs("uci", f"{name}.npz")
    n_train, n_test, d, n_splits = UCI_SIZES[name]
    ds = load_dataset(name, split=n_splits - 1)
    assert ds.x_train.shape == (n_train, d) and ds.x_test.shape == (n_test, d) and ds.task == "regression"
    np.testing.assert_allclose(ds.x_train.mean(0), 0, atol=1e-4)
    raw = np.load(file)
    np.testing.assert_allclose(ds.unstandardize_y(ds.y_test), raw["y"][raw["test_idx"][n_splits - 1]],
                               rtol=1e-4, atol=1e-4 * np.abs(raw["y"]).max())
    with pytest.raises(ValueError, match=f"split={n_splits} is out of range"):
        load_dataset(name, split=n_splits)


def test_naval_constant_columns_dropped():
    _needs("uci", "naval.npz")
    # The README names column 8; column 11 (0.998 everywhere) is constant as well.
    assert load_dataset("naval").info["dropped_columns"] == [8, 11]


def test_mnist_real():
    _needs("mnist", "mnist_train.npz")
    ds = load_dataset("mnist")
    assert ds.x_train.shape == (60000, 28, 28, 1) and ds.x_test.shape == (10000, 28, 28, 1)
    assert ds.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert ds.y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert ds.info["x_mean"][0] * 255 == pytest.approx(33.318, abs=1e-3)
    assert ds.info["x_std"][0] == pytest.approx(0.3081, abs=1e-4)
    assert abs(ds.x_train.mean(dtype=np.float64)) < 1e-6
    assert np.sqrt(np.mean(ds.x_train.astype(np.float64) ** 2)) == pytest.approx(1, abs=1e-6)
    sub = load_dataset("mnist", n_train=100, n_test=10, images=False)
    assert sub.x_train.shape == (100, 784) and sub.num_classes == 10


def test_cifar10_real_subset():
    _needs("cifar10")
    ds = load_dataset("cifar10", n_train=300, n_test=50, seed=0)
    assert ds.x_train.shape == (300, 32, 32, 3) and ds.x_test.shape == (50, 32, 32, 3)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64 and ds.num_classes == 10
    # Rows are sorted by class on disk: a shuffled subset holds every class.
    assert set(ds.y_train.tolist()) == set(range(10))
    np.testing.assert_allclose(ds.x_train.mean(axis=(0, 1, 2)), 0, atol=1e-5)
    # Close to the README's decoded train statistics (125.27, 122.93, 113.86) / 255.
    np.testing.assert_allclose(ds.info["x_mean"] * 255, [125.27, 122.93, 113.86], atol=8)


# --------------------------------------------------------------------------- ZCA whitening and flips


def _correlated_images(n=300, shape=(4, 4, 3), seed=0):
    """Images with correlated pixels and a per-image offset and scale (which normalization removes)."""
    rng = np.random.default_rng(seed)
    d = int(np.prod(shape))
    mixing = rng.normal(size=(d, d)) / np.sqrt(d) + np.eye(d)
    x = rng.normal(size=(n, d)) @ mixing * rng.uniform(0.5, 2, size=(n, 1)) + rng.normal(size=(n, 1))
    return x.reshape((n,) + shape)


def _reference_zca(x_train, eps):
    """The published recipe written out directly (Lee et al. 2020 / Han et al. 2022): unit-norm
    centred rows, second moment, SVD, relative regularization."""
    z = x_train.reshape(len(x_train), -1).astype(np.float64)
    z = z - z.mean(axis=1, keepdims=True)
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    cov = z.T @ z / len(z)
    u, s, _ = np.linalg.svd(cov + eps * np.trace(cov) / cov.shape[0] * np.eye(cov.shape[0]))
    return u @ np.diag(s ** -0.5) @ u.T


def test_zca_whitened_training_second_moment_is_identity_up_to_regularization():
    x = _correlated_images()
    d = x[0].size
    c = preprocess.image_second_moment(x)
    moments = {}
    for eps in (1e-6, 0.1):
        white, _, zca = preprocess.zca_whiten(x, x[:3], eps)
        assert white.shape == x.shape and white.dtype == np.float32  # NHWC in, NHWC out
        w = white.reshape(len(x), -1).astype(np.float64)
        moments[eps] = moment = w.T @ w / len(x)
        s = zca.eigenvalues
        assert s.mean() == pytest.approx(1 / d) and zca.shift == pytest.approx(eps / d)  # unit-norm rows
        # Exactly W C W = U diag(S / (S + eps mean(S))) U^T ...
        np.testing.assert_allclose(moment, zca.matrix @ c @ zca.matrix, atol=2e-6)
        np.testing.assert_allclose(np.linalg.eigvalsh(moment), np.sort(s / (s + zca.shift)), atol=2e-6)
        assert zca.output_variance == pytest.approx(np.trace(moment) / d, rel=1e-5)
    # ... so with a tiny eps it is the identity on images with zero mean (per-image centring removes
    # the constant direction, whose eigenvalue is 0), and eps = 0.1 shrinks it.
    centring = np.eye(d) - np.full((d, d), 1 / d)
    np.testing.assert_allclose(moments[1e-6], centring, atol=1e-3)
    assert 0.5 < np.trace(moments[0.1]) / (d - 1) < 0.99


def test_zca_matches_the_published_recipe_and_streams():
    x = _correlated_images(n=257)
    reference = _reference_zca(x, 0.1)
    in_memory = preprocess.fit_zca(x, 0.1, chunk_rows=None)
    streamed = preprocess.fit_zca(x, 0.1, chunk_rows=7)  # 36 full chunks and one of 5
    np.testing.assert_allclose(in_memory.matrix, reference, rtol=1e-9, atol=1e-9 * np.abs(reference).max())
    np.testing.assert_allclose(streamed.matrix, in_memory.matrix, rtol=1e-10, atol=1e-10 * np.abs(reference).max())
    np.testing.assert_allclose(preprocess.image_second_moment(x, chunk_rows=7),
                               preprocess.image_second_moment(x, chunk_rows=None), rtol=1e-12, atol=1e-15)
    a = preprocess.apply_zca(in_memory, x, chunk_rows=None)
    np.testing.assert_array_equal(preprocess.apply_zca(in_memory, x, chunk_rows=10), a)
    z = x.reshape(len(x), -1) - x.reshape(len(x), -1).mean(1, keepdims=True)
    direct = (z / np.linalg.norm(z, axis=1, keepdims=True)) @ reference
    np.testing.assert_allclose(a.reshape(len(x), -1), direct, rtol=1e-5, atol=1e-5)
    # in place (how load_dataset saves memory)
    inplace = x.astype(np.float32)
    preprocess.apply_zca(in_memory, inplace, out=inplace)
    np.testing.assert_allclose(inplace, a, rtol=1e-5, atol=1e-6)
    # Scale and offset of an image do not matter; a constant image becomes zeros.
    np.testing.assert_allclose(preprocess.apply_zca(in_memory, 3 * x[:4] + 7), a[:4], rtol=1e-4, atol=1e-5)
    assert not preprocess.apply_zca(in_memory, np.full((1, 4, 4, 3), 2.0)).any()


def test_zca_fit_uses_training_images_only(tmp_path):
    x = _correlated_images(n=200)
    train_a, test_a, zca_a = preprocess.zca_whiten(x[:150], x[150:], 0.1)
    train_b, test_b, zca_b = preprocess.zca_whiten(x[:150], 5 * x[150:] ** 3, 0.1)
    np.testing.assert_array_equal(train_a, train_b)
    np.testing.assert_array_equal(zca_a.matrix, zca_b.matrix)
    np.testing.assert_array_equal(test_a, preprocess.apply_zca(preprocess.fit_zca(x[:150], 0.1), x[150:]))
    assert zca_a.n_fit == 150

    # Through load_dataset: changing the test images changes nothing about the training rows.
    mask = np.zeros(len(x), bool)
    mask[150:] = True
    y = np.arange(len(x)) % 3
    changed = x.copy()
    changed[150:] = changed[150:] * 10 - 4
    one = load_dataset("npz", path=_npz(tmp_path, "a.npz", x=x, y=y, test_mask=mask[:, None]), zca=0.1)
    two = load_dataset("npz", path=_npz(tmp_path, "b.npz", x=changed, y=y, test_mask=mask[:, None]), zca=0.1)
    np.testing.assert_array_equal(one.x_train, two.x_train)
    assert not np.allclose(one.x_test, two.x_test)
    assert one.info["zca"]["n_fit"] == 150 and one.info["zca"]["regularization"] == 0.1
    assert any(step.startswith("ZCA whitening fitted on the 150 training images") for step in one.info["preprocessing"])
    # ZCA follows the per-channel standardization, whose statistics are the training rows' too.
    std = load_dataset("npz", path=tmp_path / "a.npz")
    np.testing.assert_allclose(one.x_train, preprocess.zca_whiten(std.x_train, std.x_test, 0.1)[0], atol=1e-5)


def test_zca_flip_symmetric_commutes_with_flips():
    x = _correlated_images(n=120, shape=(4, 6, 2))
    plain = preprocess.fit_zca(x, 0.1)
    sym = preprocess.fit_zca(x, 0.1, flip_symmetric=True)
    # The flip-symmetrized fit is the fit on the images and their mirror images.
    augmented, _ = flips.augment_flips(x, np.zeros(len(x)))
    np.testing.assert_allclose(sym.matrix, preprocess.fit_zca(augmented, 0.1).matrix, rtol=1e-9,
                               atol=1e-9 * np.abs(sym.matrix).max())
    white = preprocess.apply_zca(sym, x)
    np.testing.assert_allclose(preprocess.apply_zca(sym, flips.flip_images(x)), flips.flip_images(white), atol=1e-5)
    assert not np.allclose(preprocess.apply_zca(plain, flips.flip_images(x)),
                           flips.flip_images(preprocess.apply_zca(plain, x)), atol=1e-3)


def test_zca_errors():
    x = _correlated_images(n=20)
    for eps in (0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="ZCA regularization must be a finite number > 0"):
            preprocess.fit_zca(x, eps)
    with pytest.raises(ValueError, match="NHWC images"):
        preprocess.fit_zca(x.reshape(20, -1), 0.1)
    with pytest.raises(ValueError, match="all 3 training images are constant"):
        preprocess.fit_zca(np.ones((3, 2, 2, 1)), 0.1)
    with pytest.raises(ValueError, match=r"fitted on images of shape \(4, 4, 3\), got \(4, 4, 1\)"):
        preprocess.apply_zca(preprocess.fit_zca(x, 0.1), np.zeros((2, 4, 4, 1)))
    with pytest.raises(ValueError, match="zca must be None or a regularization > 0"):
        load_dataset("digits", images=True, zca=0.0)
    with pytest.raises(ValueError, match="zca must be None or a regularization > 0"):
        load_dataset("digits", images=True, zca=True)
    with pytest.raises(ValueError, match="zca=0.1 needs image data, but diabetes is tabular"):
        load_dataset("diabetes", zca=0.1)


def test_flip_augment_doubles_training_rows_with_mirror_images():
    plain = load_dataset("digits", images=True, n_train=30, n_test=10, seed=3)
    aug = load_dataset("digits", images=True, n_train=30, n_test=10, seed=3, flip="augment")
    assert aug.x_train.shape == (60, 8, 8, 1) and aug.x_test.shape == (10, 8, 8, 1)
    # Per-channel statistics do not change under flips, so the originals are as without flips.
    np.testing.assert_allclose(aug.x_train[0::2], plain.x_train, atol=1e-6)
    np.testing.assert_array_equal(aug.x_train[1::2], aug.x_train[0::2][:, :, ::-1, :])
    assert not np.array_equal(aug.x_train[1::2], aug.x_train[0::2])
    np.testing.assert_array_equal(aug.y_train, np.repeat(plain.y_train, 2))
    np.testing.assert_array_equal(aug.x_test, plain.x_test)
    np.testing.assert_array_equal(aug.y_test, plain.y_test)
    np.testing.assert_array_equal(aug.info["train_rows"], np.repeat(plain.info["train_rows"], 2))
    assert aug.info["train_flipped"].tolist() == [False, True] * 30 and aug.info["flip"] == "augment"
    assert plain.info["train_flipped"] is None and plain.info["flip"] is None
    # Flattened after flipping.
    flat = load_dataset("digits", n_train=30, n_test=10, seed=3, flip="augment")
    np.testing.assert_array_equal(flat.x_train, aug.x_train.reshape(60, 64))
    # With ZCA (fitted on the images and their mirrors): the mirror rows stay mirror images.
    white = load_dataset("digits", images=True, n_train=30, n_test=10, seed=3, flip="augment", zca=0.1)
    np.testing.assert_allclose(white.x_train[1::2], white.x_train[0::2][:, :, ::-1, :], atol=1e-5)
    assert white.info["zca"]["flip_symmetric"] and white.info["zca"]["n_fit"] == 30


def test_flip_helpers_and_errors():
    x = np.arange(2 * 3 * 4 * 2).reshape(2, 3, 4, 2)
    f = flips.flip_images(x)
    assert f[0, 1, 0, 1] == x[0, 1, 3, 1] and f.flags.c_contiguous
    np.testing.assert_array_equal(flips.flip_images(f), x)
    import jax.numpy as jnp

    np.testing.assert_array_equal(np.asarray(flips.flip_images(jnp.asarray(x))), f)
    assert np.array_equal(x.reshape(2, -1)[:, preprocess.flip_permutation(x.shape[1:])], f.reshape(2, -1))
    with pytest.raises(ValueError, match="needs images"):
        flips.flip_images(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="flip must be None, 'augment' or 'average', got 'mirror'"):
        load_dataset("digits", images=True, flip="mirror")
    with pytest.raises(ValueError, match="flip='augment' needs image data, but diabetes is tabular"):
        load_dataset("diabetes", flip="augment")
    with pytest.raises(ValueError, match="flip='average' flips images inside the feature map and needs them in NHWC"):
        load_dataset("digits", flip="average")  # digits are flat by default
    avg = load_dataset("digits", images=True, n_train=10, flip="average")
    assert avg.x_train.shape == (10, 8, 8, 1) and avg.info["flip"] == "average"


def _small_cnn():
    return ntkfeat.serial(ntkfeat.Conv(8, (3, 3), padding="SAME", W_std=1.4), ntkfeat.Relu(),
                          ntkfeat.GlobalAvgPool(), ntkfeat.Dense(1))


def test_flip_averaged_features_are_flip_invariant():
    import jax

    init_fn, feature_fn, kernel_fn = _small_cnn()
    x = np.random.default_rng(0).normal(size=(6, 8, 8, 3)).astype(np.float32)
    params = init_fn(jax.random.PRNGKey(0), x.shape, ntkfeat.Sketch(dim=512))
    apply = lambda p, xb: feature_fn(p, xb)  # noqa: E731
    averaged = flips.flip_averaged(apply)
    phi = np.asarray(averaged(params, x))
    assert phi.shape == (6, 512)
    np.testing.assert_allclose(np.asarray(averaged(params, flips.flip_images(x))), phi, rtol=1e-6, atol=1e-6)
    assert not np.allclose(np.asarray(apply(params, flips.flip_images(x))), np.asarray(apply(params, x)), atol=1e-3)

    # Their kernel is the flip-averaged exact kernel, which is K(x, y) + K(x, fy) for this
    # flip-equivariant architecture (3 x 3 SAME convolutions pad symmetrically).
    kernel = lambda a, b: kernel_fn(a, b, "ntk")  # noqa: E731
    k_avg = flips.flip_averaged_kernel(kernel, x)
    k = np.asarray(kernel(x, None), np.float64)
    np.testing.assert_allclose(k_avg, k + np.asarray(kernel(x, flips.flip_images(x)), np.float64), rtol=1e-5)
    np.testing.assert_allclose(flips.flip_averaged_kernel(kernel, x, x), k_avg, rtol=1e-5)
    gram = phi.astype(np.float64) @ phi.T.astype(np.float64)
    assert np.linalg.norm(gram - k_avg) / np.linalg.norm(k_avg) < 0.05


# --------------------------------------------------------------------------- the config keys and the runner


def test_config_data_zca_and_flip_keys(tmp_path, capsys):
    import yaml

    from experiments import config as cfg
    from experiments.run import main

    def config(**data):
        raw = {"name": "t", "data": dict({"name": "digits", "images": True, "n_train": 40, "n_test": 20}, **data),
               "architecture": [{"Conv": {"out_chan": 8, "filter_shape": [3, 3], "padding": "SAME", "W_std": 1.4}},
                                "Relu", "GlobalAvgPool", "Dense"],
               "methods": [{"method": "exact"}, {"method": "ntk_sketch", "dims": [256], "degree": 2}],
               "solver": {"selection": "holdout"}, "evaluation": {"kernel_error_rows": 12}, "plots": False}
        path = tmp_path / f"c{len(list(tmp_path.glob('c*.yaml')))}.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return path

    resolved = cfg.load_config(config())
    assert resolved["data"][0]["zca"] is None and resolved["data"][0]["flip"] is None
    resolved = cfg.load_config(config(zca="1e-2", flip="average"))
    assert resolved["data"][0]["zca"] == 0.01 and resolved["data"][0]["flip"] == "average"
    for data, message in [
        (dict(zca=0), "data.zca: expected a finite number > 0, got 0"),
        (dict(zca="lots"), "data.zca: expected a finite number > 0, got 'lots'"),
        (dict(flip="mirror"), "data.flip: expected one of 'augment', 'average', got 'mirror'"),
        (dict(flip="averge"), "(did you mean 'average'?)"),
        (dict(flip=True), "data.flip: expected one of 'augment', 'average', got True"),
    ]:
        with pytest.raises(cfg.ConfigError, match=re.escape(message)):
            cfg.load_config(config(**data))
    # Data-dependent errors name the dataset entry.
    capsys.readouterr()
    assert main([str(config(name="diabetes", images=None, zca=0.1)), "--check"]) == 2
    assert "data (diabetes): zca=0.1 needs image data" in capsys.readouterr().err
    assert main([str(config(images=False, flip="average")), "--check"]) == 2
    assert "data (digits): flip='average' flips images inside the feature map" in capsys.readouterr().err


def test_runner_flip_average_and_zca_end_to_end(tmp_path):
    import json

    import yaml

    from experiments.run import main

    raw = {"name": "flips", "data": {"name": "digits", "images": True, "n_train": 24, "n_test": 12, "zca": 0.1,
                                     "flip": "average"},
           "architecture": [{"Conv": {"out_chan": 8, "filter_shape": [3, 3], "padding": "SAME", "W_std": 1.4}},
                            "Relu", "GlobalAvgPool", "Dense"],
           "methods": [{"method": "exact"}, {"method": "ntk_sketch", "dims": [256], "degree": 2}],
           "solver": {"selection": "holdout"}, "evaluation": {"kernel_error_rows": 12}, "plots": False}
    path = tmp_path / "flips.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert main([str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    exact, sketch = result["records"]
    assert exact["n_train"] == 24 and 0 < sketch["out_dim"] <= 256
    for r in (exact, sketch):
        assert 0 <= r["test_accuracy"] <= 1
    # The reference kernel (exact's, flip-averaged) and the flip-averaged features agree.
    assert 0 < sketch["kernel_rel_fro"] < 0.1
    steps = result["datasets"][0]["preprocessing"]
    assert any(s.startswith("ZCA whitening fitted on the 24 training images and their mirror") for s in steps)


def test_downsample_average_pools_images_before_standardization(tmp_path):
    rng = np.random.RandomState(3)
    x = rng.randint(0, 256, size=(30, 8, 12, 3)).astype(np.uint8)
    y = np.arange(30) % 3
    mask = np.zeros((30, 1), bool)
    mask[20:] = True
    path = _npz(tmp_path, "d.npz", x=x, y=y, test_mask=mask)
    raw = load_dataset("npz", path=path, standardize=False, downsample=4)
    # Each output pixel is the mean of its 4x4 window of the [0, 1]-scaled image.
    want = x[:20].astype(np.float64).reshape(20, 2, 4, 3, 4, 3).mean((2, 4)) / 255
    assert raw.x_train.shape == (20, 2, 3, 3) and raw.x_test.shape == (10, 2, 3, 3)
    np.testing.assert_allclose(raw.x_train, want, rtol=1e-6)
    assert any("average-pooled over 4x4 windows (8x12 -> 2x3)" in step for step in raw.info["preprocessing"])
    # Standardization uses the pooled training pixels' statistics.
    std = load_dataset("npz", path=path, downsample=4)
    np.testing.assert_allclose(std.x_train.mean((0, 1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(std.x_train.std((0, 1, 2)), 1, rtol=1e-4)
    np.testing.assert_array_equal(load_dataset("npz", path=path, downsample=1).x_train, load_dataset("npz", path=path).x_train)
    with pytest.raises(ValueError, match="downsample=5 needs image sides divisible by 5, got 8x12"):
        load_dataset("npz", path=path, downsample=5)
    with pytest.raises(ValueError, match="downsample must be None or an integer >= 1, got 0"):
        load_dataset("npz", path=path, downsample=0)
    with pytest.raises(ValueError, match="downsample=2 needs image data"):
        load_dataset("diabetes", downsample=2)
