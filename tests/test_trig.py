"""ntkfeat._trig: the float32 sine and cosine behind Sin, Rbf, Gabor, ExpNormalized and random Fourier features."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkfeat import _trig


@pytest.mark.parametrize("scale", [0.1, 1.0, 30.0, 2000.0])
def test_float32_sine_and_cosine_match_float64(scale):
    x = (np.random.default_rng(0).standard_normal(20000) * scale).astype(np.float32)
    x64 = x.astype(np.float64)
    s, c = jax.jit(_trig.sincos)(x)
    assert s.dtype == c.dtype == jnp.float32
    # Measured 6-7e-8 (XLA's own: 3e-8); a wrong quadrant or coefficient would be off by ~1.
    np.testing.assert_allclose(np.asarray(s, np.float64), np.sin(x64), rtol=0, atol=2e-7)
    np.testing.assert_allclose(np.asarray(c, np.float64), np.cos(x64), rtol=0, atol=2e-7)
    np.testing.assert_array_equal(np.asarray(jax.jit(_trig.sin)(x)), np.asarray(s))
    np.testing.assert_array_equal(np.asarray(jax.jit(_trig.cos)(x)), np.asarray(c))


def test_derivatives_large_inputs_nan_float64_and_vmap():
    x = np.linspace(-7, 7, 101, dtype=np.float32)
    np.testing.assert_allclose(jax.grad(lambda v: jnp.sum(_trig.sin(v)))(x), np.cos(x), atol=2e-7)
    np.testing.assert_allclose(jax.grad(lambda v: jnp.sum(_trig.cos(v)))(x), -np.sin(x), atol=2e-7)
    # Beyond the exact range reduction, the batch takes XLA's functions.
    big = np.float32([1e5, 3e7, 1.0])
    np.testing.assert_array_equal(np.asarray(_trig.sin(big)), np.asarray(jnp.sin(big)))
    assert np.isnan(np.asarray(_trig.sin(np.float32([np.nan, 1.0])))[0])
    with jax.enable_x64(True):
        x64 = np.linspace(-7, 7, 101)
        out = _trig.sin(x64)
        assert out.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(out), np.sin(x64), rtol=0, atol=1e-15)
    batch = np.random.default_rng(1).standard_normal((3, 50)).astype(np.float32)
    np.testing.assert_allclose(jax.vmap(_trig.sin)(batch), np.sin(batch.astype(np.float64)), atol=2e-7)
