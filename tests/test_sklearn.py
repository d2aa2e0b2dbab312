"""nf.sklearn.NTKFeatures: scikit-learn's estimator contract, on the diabetes data."""

import subprocess
import sys

import numpy as np
import pytest

import ntkfeat as nf

sklearn = pytest.importorskip("sklearn")
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_diabetes  # noqa: E402
from sklearn.linear_model import Ridge, RidgeCV  # noqa: E402
from sklearn.model_selection import GridSearchCV, train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

NET = [nf.Dense(512, W_std=2**0.5, b_std=0.1), nf.Relu(), nf.Dense(1)]
# One batch size and one method for most tests: every transform then runs the same compiled
# program (rows are padded to whole batches), which keeps this file to seconds of compiling.
BS = 128
RF = nf.RandomFeatures(dim=128)


@pytest.fixture(scope="module")
def diabetes():
    x, y = load_diabetes(return_X_y=True)
    return train_test_split(x, y, test_size=0.25, random_state=0)


def test_import_ntkfeat_does_not_import_sklearn():
    code = "import ntkfeat, sys; print('sklearn' in sys.modules); ntkfeat.sklearn; print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]


def test_init_stores_arguments_only():
    method = nf.Sketch(dim=256)
    est = nf.sklearn.NTKFeatures(NET, method, key=3, dim=None)
    params = est.get_params()
    assert params["architecture"] is NET and params["method"] is method and params["key"] == 3
    assert not hasattr(est, "params_")
    bad = nf.sklearn.NTKFeatures("not a network")  # no checks in __init__ ...
    with pytest.raises(TypeError, match="architecture must be"):  # ... they come in fit
        bad.fit(np.zeros((4, 3)))


def test_pipeline_with_ridgecv_fits_and_scores(diabetes):
    x_train, x_test, y_train, y_test = diabetes
    model = make_pipeline(StandardScaler(), nf.sklearn.NTKFeatures(NET, nf.Sketch(dim=256), batch_size=BS),
                          RidgeCV(alphas=np.logspace(-2, 3, 11)))
    model.fit(x_train, y_train)
    # Linear ridge on standardized diabetes gives test R^2 ~ 0.36 on this split; the NTK
    # features measured 0.35. 0.25 fails a broken map (random features score ~0 or below).
    assert model.score(x_test, y_test) > 0.25
    z = model[:-1].transform(x_test)
    assert z.shape == (len(x_test), model[1].n_features_out_) and z.dtype == np.float32
    assert isinstance(z, np.ndarray)
    assert list(model[1].get_feature_names_out()[:2]) == ["ntkfeatures0", "ntkfeatures1"]


def test_predictions_equal_the_library_ridge(diabetes):
    x_train, x_test, y_train, _ = diabetes
    lam = 10.0
    model = make_pipeline(StandardScaler(), nf.sklearn.NTKFeatures(NET, RF, key=1, batch_size=BS),
                          Ridge(alpha=lam, fit_intercept=False, solver="cholesky")).fit(x_train, y_train)
    features = model[:-1]
    ours = nf.solvers.predict(nf.solvers.fit_ridge(features.transform(x_train), y_train, lam),
                              features.transform(x_test))
    # The same objective ||Z w - y||^2 + lam ||w||^2; scikit-learn solves it in float32 (the
    # features' dtype), the library in float64: measured 7e-7 relative, tolerance 1e-4.
    np.testing.assert_allclose(model.predict(x_test), ours, rtol=1e-4, atol=1e-4 * np.abs(ours).max())


def test_fixed_key_clone_and_rows_reshaped_to_images():
    x = np.random.RandomState(0).randn(10, 16)
    est = nf.sklearn.NTKFeatures(NET, RF, key=5, batch_size=BS)
    z = est.fit_transform(x)
    again = clone(est)
    assert not hasattr(again, "params_") and again.get_params()["key"] == 5
    np.testing.assert_array_equal(again.fit(x).transform(x), z)  # the same key: the same features
    np.testing.assert_array_equal(est.transform(x[:3]), z[:3])  # rows are independent of padding
    other = nf.sklearn.NTKFeatures(NET, RF, key=6, batch_size=BS).fit_transform(x)
    assert not np.allclose(other, z)
    with pytest.raises(ValueError, match="X has 5 features, but NTKFeatures is expecting 16"):
        est.transform(x[:, :5])

    cnn = [nf.Conv(8, (3, 3), padding="SAME"), nf.Relu(), nf.Flatten(), nf.Dense(1)]
    img = nf.sklearn.NTKFeatures(cnn, RF, input_shape=(4, 4, 1), batch_size=BS).fit(x)
    assert img.params_.input_shape == (4, 4, 1)
    images = x.reshape(10, 4, 4, 1)
    direct = nf.sklearn.NTKFeatures(cnn, RF, batch_size=BS).fit(images)  # images given as they are
    np.testing.assert_array_equal(img.transform(x), direct.transform(images))


def test_grid_search_over_dim(diabetes):
    x_train, _, y_train, _ = diabetes
    model = make_pipeline(StandardScaler(), nf.sklearn.NTKFeatures(NET, RF, batch_size=BS), Ridge(alpha=10.0))
    search = GridSearchCV(model, {"ntkfeatures__dim": [32, 128]}, cv=2).fit(x_train, y_train)
    assert search.best_params_["ntkfeatures__dim"] in (32, 128)
    assert search.best_estimator_[1].params_.method.dim == search.best_params_["ntkfeatures__dim"]
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))


@pytest.mark.filterwarnings("ignore:Skipping check check_array_api_input")  # needs SCIPY_ARRAY_API
def test_passes_sklearn_estimator_checks():
    # scikit-learn's own contract checks (clone, get_params, n_features_in_, idempotent fit,
    # read-only inputs, dtypes, pickling, ...); raises on the first that fails. A small map and
    # one batch size keep its ~40 fits to a few compiled programs.
    from sklearn.utils.estimator_checks import check_estimator

    check_estimator(nf.sklearn.NTKFeatures([nf.Dense(64), nf.Relu(), nf.Dense(1)], nf.RandomFeatures(dim=16),
                                           batch_size=32))
