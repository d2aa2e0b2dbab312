"""Enhanced CNTK pieces (docs/enhanced_cntk.md): circular padding, local average pooling (LAP)
and the random-patch input layer.

Circular Conv and the stride-1 circular AvgPool before Flatten (LAP) are checked against
neural-tangents' kernel under both methods, jitted, in float32 and float64. Tolerances are
2 to 5 times the errors measured on these 6 images at dim 4096, key 0 (stated beside each): the
features are random, a regression shows as an error several times that.
"""

import json
import pathlib

import jax
import numpy as np
import pytest
import yaml

import ntkfeat as nf
from ntkfeat.data import load_dataset
from ntkfeat.data.preprocess import _contrast_normalize, apply_random_patches, fit_random_patches

from conftest import rel_fro

W = 2**0.5


def _circular_stack(*head):
    return [nf.Conv(8, (3, 3), padding="CIRCULAR", W_std=W), nf.Relu(),
            nf.Conv(8, (3, 3), padding="CIRCULAR", W_std=W), nf.Relu(), *head]


NETWORKS = {
    # name: (layers, Sketch tolerance, RandomFeatures tolerance); measured errors in comments
    "circular-conv-gap": (_circular_stack(nf.GlobalAvgPool(), nf.Dense(1)), 0.08, 0.08),  # 0.030 / 0.028
    "lap-c1": (_circular_stack(nf.LocalAvgPool(1), nf.Flatten(), nf.Dense(1)), 0.08, 0.1),  # 0.031 / 0.045
    "circular-strided": ([nf.Conv(8, (2, 2), (2, 2), "CIRCULAR", W), nf.Relu(),
                          nf.AvgPool((2, 2), padding="CIRCULAR"), nf.SumPool((3, 3), (2, 2), "CIRCULAR"),
                          nf.Flatten(), nf.Dense(1)], 0.04, 0.04),  # 0.008 / 0.010
}


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).normal(size=(6, 7, 7, 3))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(NETWORKS))
def test_circular_layers_against_neural_tangents(images, name, dtype):
    layers, sketch_tol, rf_tol = NETWORKS[name]
    init_fn, feature_fn, kernel_fn = nf.serial(*layers)
    with jax.enable_x64(dtype == np.float64):
        x = images.astype(dtype)
        k = np.asarray(kernel_fn(x, x, "ntk"), np.float64)
        for method, tol in ((nf.Sketch(dim=4096), sketch_tol), (nf.RandomFeatures(dim=4096), rf_tol)):
            params = init_fn(jax.random.PRNGKey(0), x.shape, method)
            phi = jax.jit(feature_fn)(params, x)
            assert phi.dtype == dtype
            phi = np.asarray(phi, np.float64)
            err = rel_fro(phi @ phi.T, k)
            assert err < tol, (name, type(method).__name__, err)


def test_circular_padding_wraps_around(images):
    # On an image that is periodic with the image's own period, shifting it (np.roll) leaves a
    # circular network's GAP kernel unchanged; SAME padding (zeros at the border) does not.
    x = images[:2].astype(np.float32)
    shifted = np.roll(x, (2, 3), axis=(1, 2))
    for padding, invariant in (("CIRCULAR", True), ("SAME", False)):
        kernel_fn = nf.serial(nf.Conv(8, (3, 3), padding=padding, W_std=W), nf.Relu(), nf.GlobalAvgPool(),
                              nf.Dense(1))[2]
        a, b = np.asarray(kernel_fn(x, x)), np.asarray(kernel_fn(shifted, x))
        assert np.allclose(a, b, rtol=1e-5) == invariant, padding


def test_full_window_lap_is_global_average_pooling(images):
    # A window equal to the image (2c + 1 = 7 on 7 x 7 maps): every position holds the spatial mean,
    # so the kernel is GlobalAvgPool's (float rounding apart) and so are the features, position by
    # position (the pool has no parameters: the same key gives the same conv features).
    x = images.astype(np.float32)
    lap = nf.serial(*_circular_stack(nf.LocalAvgPool(3), nf.Flatten(), nf.Dense(1)))
    gap = nf.serial(*_circular_stack(nf.GlobalAvgPool(), nf.Dense(1)))
    np.testing.assert_allclose(np.asarray(lap[2](x, x)), np.asarray(gap[2](x, x)), rtol=2e-6)
    pooled = nf.serial(*_circular_stack(nf.LocalAvgPool(3)))
    mean = nf.serial(*_circular_stack(nf.GlobalAvgPool()))
    for method in (nf.Sketch(dim=512), nf.RandomFeatures(dim=512)):
        phi = np.asarray(pooled[1](pooled[0](jax.random.PRNGKey(3), x.shape, method), x))
        psi = np.asarray(mean[1](mean[0](jax.random.PRNGKey(3), x.shape, method), x))
        assert phi.shape[1:3] == (7, 7)
        np.testing.assert_allclose(phi, np.broadcast_to(psi[:, None, None], phi.shape), rtol=1e-4, atol=1e-5)
    assert nf.LocalAvgPool(0).window_shape == (1, 1)
    with pytest.raises(ValueError, match="LocalAvgPool.c"):
        nf.LocalAvgPool(-1)


def test_random_patches_come_from_training_images_only():
    rng = np.random.default_rng(0)
    x_train = rng.normal(size=(20, 8, 8, 2))
    fitted = fit_random_patches(x_train, 6, 3, samples=500, seed=1)
    assert fitted.filters.shape == (6, 18) and fitted.n_fit == 20
    # Each filter is the whitened, unit-norm patch of the training image it names.
    for f, (i, r, c, mirrored) in zip(fitted.filters, fitted.sources):
        assert not mirrored
        rows, cols = (r - 1 + np.arange(3)) % 8, (c - 1 + np.arange(3)) % 8
        u = _contrast_normalize(x_train[i][np.ix_(rows, cols)].reshape(1, -1), fitted.contrast_eps)[0]
        w = (u - fitted.mean) @ fitted.whitening
        np.testing.assert_allclose(f, w / np.linalg.norm(w), rtol=1e-10, atol=1e-12)
    out = apply_random_patches(fitted, x_train[:3])
    assert out.shape == (3, 8, 8, 12) and out.min() >= 0
    # Through load_dataset: the training rows' output does not depend on which test rows come
    # along (fitted on the training images only).
    opts = {"count": 4, "size": 3, "samples": 300}
    a = load_dataset("digits", n_train=200, n_test=40, images=True, patches=opts)
    b = load_dataset("digits", n_train=200, n_test=120, images=True, patches=opts)
    assert a.x_train.shape == (200, 8, 8, 8)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert a.info["patches"]["n_fit"] == 200
    with pytest.raises(ValueError, match="patches.size"):
        load_dataset("digits", n_train=50, n_test=10, images=True, patches={"size": 0})
    with pytest.raises(ValueError, match="needs image data"):
        load_dataset("diabetes", patches={})


def test_patches_with_flips_are_closed_under_mirroring():
    # With flips the filter bank holds each patch and its mirror, so the layer maps a mirrored
    # image to the mirrored output with its channels permuted: kernels of the output are unchanged.
    x = np.random.default_rng(2).normal(size=(5, 8, 8, 2))
    fitted = fit_random_patches(x, 6, 3, samples=400, flip_symmetric=True)
    out, out_flipped = apply_random_patches(fitted, x), apply_random_patches(fitted, x[:, :, ::-1])
    half = np.r_[np.arange(3, 6), np.arange(3)]  # filter k + 3 is the mirror of filter k
    perm = np.r_[half, half + 6]
    np.testing.assert_allclose(out_flipped, out[:, :, ::-1][..., perm], rtol=1e-5, atol=1e-6)


def test_enhanced_config_runs_from_yaml_with_patches(tmp_path):
    from experiments.run import main

    raw = {
        "name": "enhanced_tiny", "seed": 0,
        "data": {"name": "digits", "images": True, "n_train": 150, "n_test": 50,
                 "patches": {"count": 4, "size": 3, "samples": 500}},
        "architecture": [{"Conv": {"filter_shape": [3, 3], "padding": "CIRCULAR", "W_std": W}}, "Relu",
                         {"AvgPool": {"window_shape": [3, 3], "strides": [1, 1], "padding": "CIRCULAR"}},
                         "Flatten", {"Dense": {"W_std": 1.0}}],
        "methods": [{"method": "ntk_sketch", "dims": [256], "degree": 2}],
        "evaluation": {"kernel_error_rows": 30},
        "plots": False,
    }
    path = tmp_path / "enhanced_tiny.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert main([str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    assert result["config"]["data"][0]["patches"]["count"] == 4  # defaults filled in and recorded
    (record,) = result["records"]
    # 10 digit classes, 150 training images: chance is 0.1; measured 0.94, kernel error 0.065.
    assert record["test_accuracy"] > 0.5, record["test_accuracy"]
    assert record["kernel_rel_fro"] < 0.2, record["kernel_rel_fro"]


def test_enhanced_config_validates():
    from experiments import config as cfg

    path = pathlib.Path(__file__).resolve().parents[1] / "configs" / "cifar10_enhanced.yaml"
    resolved = cfg.load_config(path, ["data.patches={count: 8}", "architecture[2].AvgPool.window_shape=[3, 3]"])
    assert resolved["data"][0]["patches"] == {"count": 8, "size": 5, "zca": 0.1, "threshold": 0.25,
                                               "samples": 10000, "contrast_eps": 0.01, "seed": 0}
    layers = cfg.build_layers(resolved["architecture"])
    assert any(isinstance(l, nf.AvgPool) and l.padding == "CIRCULAR" and l.window_shape == (3, 3) for l in layers)
    with pytest.raises(cfg.ConfigError, match=r"data.patches.size"):
        cfg.load_config(path, ["data.patches={size: 0}"])
