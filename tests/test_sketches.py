"""Sketch primitives: unbiasedness and variance by Monte-Carlo over fixed keys.

Tolerances: a mean over K independent sketches is compared with the exact value within 5
standard errors (estimated from the same draws); with fixed keys the outcome is deterministic,
and a correct sketch fails such a check with probability below 1e-6.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkfeat import sketches as sk

RNG = np.random.RandomState(0)


def _unit(d):
    v = RNG.randn(d)
    return (v / np.linalg.norm(v)).astype(np.float32)


def _keys(n, seed=0):
    return [jax.random.PRNGKey(seed * 100_003 + i) for i in range(n)]


def _draws(estimate, n, seed=0):
    """estimate(key) (a scalar, or a dict of them) for the n keys `_keys(n, seed)`, drawn by one
    compiled vmap over the keys: the same draws as a loop of eager calls, to float rounding."""
    out = jax.jit(jax.vmap(estimate))(jnp.stack(_keys(n, seed)))
    return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), out)


def _check_mean(estimates, exact, sigmas=5.0):
    estimates = np.asarray(estimates, np.float64)
    se = estimates.std(ddof=1) / np.sqrt(len(estimates))
    assert abs(estimates.mean() - exact) < sigmas * se + 1e-7, (estimates.mean(), exact, se)


def test_srht_unbiased_and_variance_falls_like_one_over_m():
    x, y = _unit(512), _unit(512)
    exact = float(x @ y)
    variances = {}
    for k in (8, 32):
        est = _draws(lambda key: sk.srht(p := sk.srht_init(key, 512, k), x) @ sk.srht(p, y), 400, k)
        _check_mean(est, exact)
        variances[k] = np.var(est)
    # variance ~ 1/k (finite-population correction is 1 - 32/512 here); 400 draws estimate a
    # variance to about +-10%, so the ratio of 4 is checked within [2.8, 5.5].
    assert 2.8 < variances[8] / variances[32] < 5.5


def test_tensor_srht_unbiased_and_variance_falls():
    x1, x2, y1, y2 = _unit(64), _unit(48), _unit(64), _unit(48)
    exact = float((x1 @ y1) * (x2 @ y2))
    variances = {}
    for k in (16, 64):
        est = _draws(lambda key: sk.tensor_srht(p := sk.tensor_srht_init(key, 64, 48, k), x1, x2)
                     @ sk.tensor_srht(p, y1, y2), 400, k)
        _check_mean(est, exact)
        variances[k] = np.var(est)
    assert 2.8 < variances[16] / variances[64] < 5.5


def test_tensor_srht_is_exact_at_full_width():
    # Stratified rows: with k = d1 * d2 every row pair is used once, so the sketch is an
    # orthogonal transform of x (x) y for every key.
    x1, x2, y1, y2 = _unit(5), _unit(7), _unit(5), _unit(7)
    for key in _keys(5):
        p = sk.tensor_srht_init(key, 5, 7, 35)
        got = sk.tensor_srht(p, x1, x2) @ sk.tensor_srht(p, y1, y2)
        assert float(got) == pytest.approx(float((x1 @ y1) * (x2 @ y2)), abs=1e-5)


def test_srht_accepts_any_length_and_batches():
    x = RNG.randn(3, 11).astype(np.float32)
    n = sk.fft_length(11)  # zero-padded to a 7-smooth length: 12
    assert n == 12
    p = sk.srht_init(jax.random.PRNGKey(0), 11, n)
    z = sk.srht(p, x)
    assert z.shape == (3, n)
    np.testing.assert_allclose(z @ z.T, x @ x.T, rtol=1e-4, atol=1e-4)  # full width: exact
    np.testing.assert_allclose(jax.jit(sk.srht)(p, x), z, atol=1e-6)


@pytest.mark.parametrize("degree", [1, 2, 3, 5, 6])
def test_poly_sketch_every_degree_unbiased(degree):
    x, y = _unit(6), _unit(6)

    def estimate(key):
        p = sk.poly_sketch_init(key, 6, degree, 16)
        sx, sy = sk.poly_sketch(p, x), sk.poly_sketch(p, y)
        return {j: sx[j] @ sy[j] for j in range(1, degree + 1)}

    est = _draws(estimate, 300, degree)
    assert sorted(est) == list(range(1, degree + 1))
    for j, values in est.items():
        _check_mean(values, float(x @ y) ** j)


def test_poly_sketch_shares_one_tree():
    p = sk.poly_sketch_init(jax.random.PRNGKey(0), 50, 8, 32)
    # 4 + 2 + 1 full nodes; partial nodes only where a degree needs them; no node per degree
    # beyond those: far fewer than 8 separate trees (28 TensorSRHTs).
    assert len(p.nodes) < 20
    out = sk.poly_sketch(p, _unit(50))
    assert sorted(out) == list(range(1, 9))
    assert all(v.shape == (32,) or j == 1 for j, v in out.items())


def test_tensor_sketch_unbiased():
    x, y = _unit(20), _unit(20)
    est = _draws(lambda key: sk.tensor_sketch(p := sk.tensor_sketch_init(key, 20, 3, 32), x) @ sk.tensor_sketch(p, y),
                 400)
    _check_mean(est, float(x @ y) ** 3)


@pytest.mark.parametrize("degree", [1, 2, 3, 4, 6])
def test_monomial_features_exact(degree):
    x, y = RNG.randn(7), RNG.randn(7)
    p = sk.monomial_features_init(7, degree, jnp.float32)
    fx, fy = sk.monomial_features(p, x), sk.monomial_features(p, y)
    assert fx.shape == (sk.num_monomials(7, degree),)
    assert float(fx @ fy) == pytest.approx(float(x @ y) ** degree, rel=1e-4)


def test_dot_product_features_unbiased_and_exact_when_cheap():
    coeffs = np.array([0.3, 0.5, 0.2, 0.0, 0.1, 0.05])
    x, y = _unit(4), _unit(4)
    exact = float(np.polyval(coeffs[::-1], x @ y))
    # d = 4: every degree is cheap to write exactly in 512 features: zero variance.
    p = sk.dot_product_features_init(jax.random.PRNGKey(0), 4, coeffs, 512)
    assert p.sketch_dims == ()
    got = sk.dot_product_features(p, x) @ sk.dot_product_features(p, y)
    assert float(got) == pytest.approx(exact, rel=1e-5)
    # d = 64: high degrees are sketched; unbiased over keys.
    x, y = _unit(64), _unit(64)
    exact = float(np.polyval(coeffs[::-1], x @ y))
    est = _draws(lambda key: sk.dot_product_features(p := sk.dot_product_features_init(key, 64, coeffs, 256), x)
                 @ sk.dot_product_features(p, y), 200)
    assert sk.dot_product_features_init(jax.random.PRNGKey(0), 64, coeffs, 256).sketch_dims != ()
    _check_mean(est, exact)


def test_renormalized_dot_product_features():
    # Each sketched degree-j block has norm sqrt(c_j) |x|^j exactly; exact blocks are untouched.
    coeffs = np.array([0.3, 0.5, 0.2, 0.0, 0.1, 0.05])
    p = sk.dot_product_features_init(jax.random.PRNGKey(0), 64, coeffs, 256)
    x = 2.5 * _unit(64)
    plain, renorm = (np.asarray(sk.dot_product_features(p, x, renormalize=r)) for r in (False, True))
    start = p.head_exact_dim(0)
    np.testing.assert_array_equal(renorm[:start], plain[:start])
    assert len(p.sketch_dims) == 3
    for j, m in p.sketch_dims:
        np.testing.assert_allclose(np.linalg.norm(renorm[start : start + m]), np.sqrt(coeffs[j]) * 2.5**j, rtol=1e-5)
        start += m
    # At correlation 0.95 the ratio estimate errs far less than the unbiased one (RMSE over 100
    # keys measured 0.015 vs 0.104), at a bias of order 1/m (measured 0.15% of the value).
    rng = np.random.RandomState(1)
    x, z = rng.randn(2, 64)
    x /= np.linalg.norm(x)
    z -= (z @ x) * x
    y = 0.95 * x + np.sqrt(1 - 0.95**2) * z / np.linalg.norm(z)
    exact = float(np.polyval(coeffs[::-1], x @ y))
    x, y = x.astype(np.float32), y.astype(np.float32)

    def estimate(key):
        p = sk.dot_product_features_init(key, 64, coeffs, 256)
        return {r: sk.dot_product_features(p, x, renormalize=r) @ sk.dot_product_features(p, y, renormalize=r)
                for r in (False, True)}

    est = _draws(estimate, 100)
    rmse = {r: np.sqrt(np.mean((np.asarray(e) - exact) ** 2)) for r, e in est.items()}
    assert rmse[True] < 0.5 * rmse[False], rmse
    assert abs(np.mean(est[True]) - exact) < 0.01 * exact


def test_dot_product_features_rejects_impossible_dimensions():
    with pytest.raises(ValueError, match="too small"):
        sk.dot_product_features_init(jax.random.PRNGKey(0), 100, np.ones(9), 20)
    with pytest.raises(ValueError):
        sk.dot_product_features_init(jax.random.PRNGKey(0), 4, np.array([0.5, -0.1]), 64)


def test_sketches_check_input_width():
    p = sk.srht_init(jax.random.PRNGKey(0), 8, 4)
    with pytest.raises(ValueError, match="last axis"):
        sk.srht(p, np.ones(9, np.float32))


def _product_exact(x, xp, y, yp, c):
    return float(x @ xp) * (c**2 + float(y @ yp))


def test_offset_product_exact_at_full_width_with_blocks_and_a_borrowed_transform():
    # Stratified rows at full width give the whole transform (Parseval), so the sketch is exact;
    # the second block borrows another sketch's transform of its (normalized) vector.
    a, b, y = RNG.randn(2, 5), RNG.randn(2, 6), RNG.randn(2, 3)
    c = 0.7
    transform = sk.srht_init(jax.random.PRNGKey(3), 6, 4)
    p, width = sk.offset_product_init(jax.random.PRNGKey(0), (5, 6), 3, c, 1000, borrowed=(None, transform))
    assert width == p.out_dim == 11 + (5 + 6) * 3  # the exact c x block + every row pair
    norm = np.linalg.norm(b, axis=1)
    u = jnp.asarray(b / norm[:, None], jnp.float32)
    f = np.asarray(
        sk.offset_product(p, (jnp.asarray(a, jnp.float32), None), jnp.asarray(y, jnp.float32),
                          (None, (transform, u, jnp.asarray(norm, jnp.float32)))), np.float64)
    x = np.concatenate([a, b], axis=1)
    np.testing.assert_allclose(f[0] @ f[1], _product_exact(x[0], x[1], y[0], y[1], c), rtol=1e-4)


@pytest.mark.parametrize("blocks", [(48,), (20, 28)])
def test_offset_product_unbiased_with_blocks_and_borrowing(blocks):
    x, xp, y, yp = _unit(48), _unit(48), _unit(16), _unit(16)
    c = 0.6
    exact = _product_exact(x, xp, y, yp, c)

    def estimate(key):
        k_t, k_p = jax.random.split(key)
        transform = sk.srht_init(k_t, blocks[-1], 8)
        borrowed = (None,) * (len(blocks) - 1) + (transform,)
        p, _ = sk.offset_product_init(k_p, blocks, 16, c, 64, borrowed=borrowed)

        def feats(v, w):
            last = jnp.asarray(v[-blocks[-1]:])
            norm = jnp.linalg.norm(last, keepdims=False)
            parts = tuple(jnp.asarray(v[:blocks[0]]) for _ in blocks[:-1]) + (None,)
            src = (None,) * (len(blocks) - 1) + ((transform, last / norm, norm),)
            return sk.offset_product(p, parts, jnp.asarray(w), src)

        return feats(x, y) @ feats(xp, yp)

    _check_mean(_draws(estimate, 300, len(blocks)), exact)


@pytest.mark.parametrize("n", [8, 9, 30])
def test_real_dft_is_orthonormal(n):
    from ntkfeat.sketches.srht import real_dft

    q = np.asarray(real_dft(jnp.eye(n, dtype=jnp.float32), n), np.float64)
    np.testing.assert_allclose(q @ q.T, np.eye(n), atol=1e-5)
    # zero-padding keeps inner products: a width-5 input padded to 8
    a, b = RNG.randn(5).astype(np.float32), RNG.randn(5).astype(np.float32)
    assert float(real_dft(a, 8) @ real_dft(b, 8)) == pytest.approx(float(a @ b), rel=1e-5)


@pytest.mark.parametrize("blocks", [(48,), (20, 28)])
def test_offset_product_unbiased_with_a_borrowed_spectrum(blocks):
    # The last block comes with its spectrum rfft(D x) (a Spectrum), as random features pass
    # their projection's first rotation: its Hartley rows are unbiased.
    from ntkfeat.sketches.product import Spectrum

    x, xp, y, yp = _unit(48), _unit(48), _unit(16), _unit(16)
    c = 0.6
    exact = _product_exact(x, xp, y, yp, c)
    n = 50  # >= the block's width; not a power of two

    def estimate(key):
        k_s, k_p = jax.random.split(key)
        signs = jax.random.rademacher(k_s, (blocks[-1],), jnp.float32)
        borrowed = (None,) * (len(blocks) - 1) + (n,)
        p, _ = sk.offset_product_init(k_p, blocks, 16, c, 64, borrowed=borrowed)

        def feats(v, w):
            last = jnp.asarray(v[-blocks[-1]:])
            parts = tuple(jnp.asarray(v[:blocks[0]]) for _ in blocks[:-1]) + (None,)
            src = (None,) * (len(blocks) - 1) + (Spectrum(jnp.fft.rfft(last * signs, n=n), last),)
            return sk.offset_product(p, parts, jnp.asarray(w), src)

        return feats(x, y) @ feats(xp, yp)

    _check_mean(_draws(estimate, 300, 7 + len(blocks)), exact)


def test_monomial_products_match_their_definition():
    from ntkfeat.sketches.monomials import monomial_products

    x = RNG.randn(3, 6)
    chain = monomial_products(jnp.asarray(x), 4)
    for j, got in enumerate(chain, start=1):
        index = np.asarray(sk.monomial_features_init(6, j).index)
        np.testing.assert_allclose(np.asarray(got), np.prod(x[:, index], axis=-1), rtol=1e-5)


def test_split_proportional():
    from ntkfeat.sketches.srht import split_proportional

    parts = split_proportional(100, [1, 2, 3], minimum=8)
    assert sum(parts) == 100 and min(parts) >= 8 and parts == sorted(parts)
    assert split_proportional(10, [1, 1], caps=[3, 100]) == [3, 7]
    assert split_proportional(5, [1, 1], caps=[1, 2]) == [1, 2]  # the caps sum to less
    with pytest.raises(ValueError, match="cannot split"):
        split_proportional(10, [1, 1, 1], minimum=4)


def test_fold_sketch_unbiased_with_the_variance_of_its_bucket_pairs():
    d, m = 300, 37  # 9 folds, the last one partial
    x, y = _unit(d), _unit(d)
    x[:5] *= 8.0  # heavy leading coordinates, as random features have (constant, linear block)
    y[:5] *= 8.0
    exact = float(x @ y)
    est = _draws(lambda key: sk.fold_sketch(s := sk.fold_sketch_init(key, d, m, head=0, tail=0), x) @ sk.fold_sketch(s, y),
                 600, 7)
    _check_mean(est, exact)
    bucket = np.arange(d) % m
    same = (bucket[:, None] == bucket[None, :]) & ~np.eye(d, dtype=bool)
    predicted = float(np.sum(same * (np.outer(x * x, y * y) + np.outer(x * y, x * y))))
    # 600 draws estimate a variance to about +-6% (1 standard error, kurtosis near Gaussian), so
    # 0.75-1.3 is over 4 standard errors wide.
    assert 0.75 < est.var() / predicted < 1.3
    # Coordinates in different buckets never meet: mass on them alone is sketched exactly.
    z = np.zeros(d, np.float32)
    z[[0, 1, 2, 40]] = [3.0, -2.0, 1.5, 0.5]
    s = sk.fold_sketch_init(jax.random.PRNGKey(3), d, m, head=0, tail=0)
    np.testing.assert_allclose(float(sk.fold_sketch(s, z) @ sk.fold_sketch(s, z)), float(z @ z), rtol=1e-6)


def test_fold_sketch_keeps_head_and_tail_and_stays_unbiased():
    d, m = 300, 40
    x, y = _unit(d), _unit(d)
    s = sk.fold_sketch_init(jax.random.PRNGKey(0), d, m, head=4, tail=1)
    assert (s.head, s.tail, s.out_dim) == (4, 1, m)
    out = np.asarray(sk.fold_sketch(s, x))
    np.testing.assert_array_equal(out[:4], x[:4])
    np.testing.assert_array_equal(out[-1:], x[-1:])
    # The default keeps at most a quarter of the output exact.
    small = sk.fold_sketch_init(jax.random.PRNGKey(0), d, 8)
    assert small.head + small.tail == 2 and small.out_dim == 8
    est = _draws(lambda key: sk.fold_sketch(p := sk.fold_sketch_init(key, d, m, head=4, tail=1), x) @ sk.fold_sketch(p, y),
                 400, 8)
    _check_mean(est, float(x @ y))


def test_fold_sketch_batches_and_checks_widths():
    s = sk.fold_sketch_init(jax.random.PRNGKey(0), 100, 30, head=0, tail=0)
    x = RNG.randn(2, 3, 100).astype(np.float32)
    batched = sk.fold_sketch(s, x)
    assert batched.shape == (2, 3, 30)
    np.testing.assert_allclose(batched[1, 2], sk.fold_sketch(s, x[1, 2]), rtol=1e-6)
    jitted = jax.jit(sk.fold_sketch)(sk.fold_sketch_init(jax.random.PRNGKey(1), 100, 30), x)
    assert jitted.shape == (2, 3, 30)
    with pytest.raises(ValueError, match="outside"):
        sk.fold_sketch(s, np.ones(121, np.float32))
    with pytest.raises(ValueError, match="outside"):
        sk.fold_sketch(s, np.ones(90, np.float32))
    with pytest.raises(ValueError, match="out_dim <= in_dim"):
        sk.fold_sketch_init(jax.random.PRNGKey(0), 10, 11)
