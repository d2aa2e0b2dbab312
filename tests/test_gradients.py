"""Gradients of feature maps: finite, equal to central differences, exact under rescaling.

Every check runs in float64 on a few rows of 3 features. A directional derivative from
`jax.jvp` and from `jax.grad` is compared with the central difference
(L(x + h v) - L(x - h v)) / 2h, h = 1e-5, of a fixed random linear functional L of the features.
Its truncation error is O(h^2) ~ 1e-10 and its rounding error ~ 1e-16 / h = 1e-11 (relative),
so the tolerance 1e-6 (relative to the functional's gradient scale) can only fail on a wrong
derivative. Random features of piecewise-linear activations (ReLU, ...) have kinks, but x +- h v
crosses one with probability ~ h: the fixed keys below do not.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntkfeat as nf

H = 1e-5
TOL = 1e-6

ACTIVATIONS = {
    "Relu": nf.Relu(), "LeakyRelu": nf.LeakyRelu(0.1), "ABRelu": nf.ABRelu(-0.5, 1.0), "Abs": nf.Abs(),
    "Sign": nf.Sign(), "RectifiedMonomial": nf.RectifiedMonomial(2), "Monomial": nf.Monomial(2),
    "Hermite": nf.Hermite(2), "ExpNormalized": nf.ExpNormalized(), "Erf": nf.Erf(), "Gelu": nf.Gelu(),
    "Sin": nf.Sin(), "Cos": nf.Cos(), "Exp": nf.Exp(), "Gaussian": nf.Gaussian(), "Rbf": nf.Rbf(),
    "Gabor": nf.Gabor(), "Polynomial": nf.Polynomial((0.5, 1.0, 0.3)),
    "ElementwiseNumerical": nf.ElementwiseNumerical(jnp.tanh, deg=25),
}
# Exp's features grow like exp(|x|): a smaller W_std keeps the series and its checks in range.
W_STD = {"Exp": 0.5}
# The one-shot Sketch at degree 8 rather than its automatic degree (32 at dim 256): the same rules
# on a tree of 12 sketch nodes instead of 80, so a check compiles in 4 s instead of 13.
METHODS = {
    "sketch": nf.Sketch(dim=256, degree=8),
    "sketch_layerwise": nf.Sketch(dim=256, mode="layerwise"),
    "random_features": nf.RandomFeatures(dim=256),
}
# Every activation under the default Sketch (one-shot for these stacks) and RandomFeatures; the
# layerwise Sketch shares its rules between activations of a kind (homogeneous, Mehler series),
# so two of each kind stand for the rest there (Erf, Gelu and Sin had NaN gradients).
CASES = [(name, method) for name in ACTIVATIONS for method in ("sketch", "random_features")] + [
    (name, "sketch_layerwise") for name in ("Relu", "Abs", "Erf", "Gelu", "Sin")]


def _inputs():
    return jax.random.normal(jax.random.PRNGKey(1), (3, 3))  # float64 inside enable_x64, else float32


def _map(act, method, bias: bool):
    w = W_STD.get(type(act).__name__, 1.0)
    layers = nf.serial(nf.Dense(1, W_std=w, b_std=0.3 if bias else None), act, nf.Dense(1, W_std=1.0))
    init_fn, feature_fn, _ = layers
    try:
        params = init_fn(jax.random.PRNGKey(0), (-1, 3), method)
    except NotImplementedError as e:  # an activation without a rule for this method
        pytest.skip(str(e))
    return lambda x: feature_fn(params, x)


def _check_directional(f, x, key=2, also=None):
    """jvp, grad and the central difference of L(x) = <r, f(x)> along a random v agree. `also`: a
    function of nothing compiled with them (one compilation per test); its value is returned."""
    out = jax.eval_shape(f, x)
    r = jax.random.normal(jax.random.PRNGKey(key), out.shape, jnp.float64)
    v = jax.random.normal(jax.random.PRNGKey(key + 1), x.shape, jnp.float64)

    def loss(z):
        return jnp.sum(r * f(z))

    @jax.jit  # one compilation for the four evaluations
    def derivatives(x):
        _, tangent = jax.jvp(loss, (x,), (v,))
        return jax.grad(loss)(x), tangent, (loss(x + H * v) - loss(x - H * v)) / (2 * H), also and also()

    grad, tangent, fd, extra = derivatives(x)
    assert np.all(np.isfinite(np.asarray(grad))), "NaN or inf gradient"
    scale = float(jnp.linalg.norm(grad) * jnp.linalg.norm(v)) + 1e-300
    assert abs(float(tangent) - float(fd)) <= TOL * scale, (float(tangent), float(fd))
    assert abs(float(jnp.vdot(grad, v)) - float(fd)) <= TOL * scale
    return extra


@pytest.mark.parametrize("name,method", CASES)
def test_gradient_matches_central_differences(name, method):
    with jax.enable_x64(True):
        f = _map(ACTIVATIONS[name], METHODS[method], bias=True)
        _check_directional(f, _inputs())


@pytest.mark.parametrize("method", ["sketch", "random_features"])
@pytest.mark.parametrize("name", ["Relu", "Abs", "Erf", "Gelu", "Sin"])
def test_bias_free_gradient_at_zero_row_is_the_limit(name, method):
    """A bias-free stack's kernel K(x, x) = |phi(x)|^2 is even in x (the pre-activations of -x
    are those of x, in law), so its gradient at x = 0 is exactly 0; other rows are unaffected."""
    with jax.enable_x64(True):
        f = _map(ACTIVATIONS[name], METHODS[method], bias=False)
        x = _inputs().at[0].set(0.0)
        grad = _check_directional(lambda z: f(jnp.concatenate([x[:1], z])), x[1:],
                                  also=lambda: jax.grad(lambda z: jnp.sum(f(z) ** 2))(x))
        assert np.all(np.isfinite(np.asarray(grad)))
        assert np.all(np.asarray(grad[0]) == 0.0)


@pytest.mark.parametrize("name", ["Relu", "Erf", "Gelu"])
def test_gradient_finite_at_tiny_rows(name):
    """Rows scaled by 1e-20 (squares 1e-40: below float32's range): finite gradients, in float32."""
    f = _map(ACTIVATIONS[name], METHODS["sketch"], bias=False)
    x = np.asarray(_inputs(), np.float32) * np.float32(1e-20)
    grad = jax.jit(jax.grad(lambda z: jnp.sum(f(z))))(jnp.asarray(x))
    assert np.all(np.isfinite(np.asarray(grad)))


@pytest.mark.parametrize("method", ["sketch", "random_features"])
def test_homogeneous_gradient_is_scale_exact(method):
    """phi(c x) = c phi(x) for a bias-free ReLU stack, so grad_x <r, phi>(c x) = grad <r, phi>(x)
    for c > 0: float32 from 1e-30 to 1e30, within 1e-4 relative (float32 rounding of the features)."""
    f = _map(nf.Relu(), METHODS[method], bias=False)
    x = jnp.asarray(_inputs(), jnp.float32)
    r = jax.random.normal(jax.random.PRNGKey(5), jax.eval_shape(f, x).shape, jnp.float32)
    gradient = jax.jit(jax.grad(lambda z: jnp.sum(r * f(z))))
    reference = np.asarray(gradient(x), np.float64)
    for c in (1e-30, 1e-20, 1e-10, 1e10, 1e20, 1e30):
        grad = np.asarray(gradient(x * np.float32(c)), np.float64)
        assert np.all(np.isfinite(grad)), c
        assert np.linalg.norm(grad - reference) <= 1e-4 * np.linalg.norm(reference), c


@pytest.mark.parametrize("readout", ["GlobalAvgPool", "Flatten"])
def test_conv_gradient_at_zero_image_is_the_limit(readout):
    """The convolutional Sketch renormalizes each sketched window (and Flatten's mix) by the exact
    patch norm, a square root of a sum of squares: at an all-zero image its gradient is 0 (K(x, x)
    is even in x), not NaN; the other images' directional derivatives equal central differences.
    (RandomFeatures apply the exact window map, with no norm to take.)"""
    layers = [nf.Conv(1, (3, 3), padding="SAME", W_std=1.4), nf.Relu()] * 2
    layers += [getattr(nf, readout)(), nf.Dense(1)]
    init_fn, feature_fn, _ = nf.serial(*layers)
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.PRNGKey(1), (3, 5, 5, 2)).at[0].set(0.0)
        params = init_fn(jax.random.PRNGKey(0), x.shape, nf.Sketch(dim=256))
        f = lambda z: feature_fn(params, z)  # noqa: E731
        at_zero = lambda: jax.grad(lambda z: jnp.sum(f(z) ** 2))(x)  # noqa: E731
        if readout == "GlobalAvgPool":  # one directional check: the two share the window rule
            grad = _check_directional(lambda z: f(jnp.concatenate([x[:1], z])), x[1:], also=at_zero)
        else:
            grad = jax.jit(at_zero)()
        assert np.all(np.isfinite(np.asarray(grad)))
        assert np.all(np.asarray(grad[0]) == 0.0)
