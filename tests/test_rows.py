"""Row streaming of convolutional stacks on large images (ntkfeat.features.rows)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntkfeat as nf
from ntkfeat import network
from ntkfeat.features import rows


def _stack(pool, filters=(3, 2, 4), padding="VALID"):
    layers = []
    for f in filters:
        layers += [nf.Conv(filter_shape=(f, f), W_std=2**0.5, b_std=0.1, padding=padding), nf.Relu()]
    return layers + [pool, nf.Dense(W_std=1.0)]


def _images(n=3, h=23, w=17):
    return jnp.asarray(np.random.default_rng(0).standard_normal((n, h, w, 3)).astype(np.float32))


@pytest.fixture
def count_streams(monkeypatch):
    """Counts calls of the streamed path (at trace time)."""
    calls = []
    real = rows.stream_pooled

    def spy(*args, **kwargs):
        calls.append(args[4])  # the chunk
        return real(*args, **kwargs)

    monkeypatch.setattr(rows, "stream_pooled", spy)
    return calls


def _features(params, x, get):
    # a fresh trace: the budget is read when tracing
    return jax.jit(lambda p, x: network.apply_feature_map(p, x, get))(params, x)


@pytest.mark.parametrize("method, pool, gets", [
    (nf.Sketch(dim=256, degree=2), nf.GlobalAvgPool(), ("ntk", "nngp")),
    (nf.RandomFeatures(dim=256), nf.GlobalSumPool(), ("ntk",)),
], ids=["sketch-avg", "rf-sum"])
def test_streamed_features_equal_whole_image_features(method, pool, gets, monkeypatch, count_streams):
    # 23 rows, receptive field 7: 17 output rows; budgets that give 1 row per step, and a chunk
    # that does not divide them (the first step then takes the 2 or 1 rows left over).
    init_fn, _, _ = nf.serial(*_stack(pool))
    x = _images()
    params = init_fn(jax.random.PRNGKey(1), (-1,) + x.shape[1:], method)
    specs = params.params.specs
    for get in gets:
        monkeypatch.setattr(network, "DEFAULT_BATCH_BYTES", 1 << 40)
        whole = _features(params, x, get)
        assert not count_streams
        chunks = []
        for budget in (1 << 16, 1 << 22):
            monkeypatch.setattr(network, "DEFAULT_BATCH_BYTES", budget)
            chunk = rows.chunk_rows(specs[:7], 3, budget // rows.STEP_FRACTION, 4)
            assert chunk is not None
            chunks.append(chunk)
            streamed = _features(params, x, get)
            assert count_streams[-1] == chunk
            # float32 rounding of sums taken in another order: ~1e-7 of the largest entry
            np.testing.assert_allclose(streamed, whole, rtol=0, atol=1e-5 * float(jnp.max(jnp.abs(whole))))
        count_streams.clear()
        assert chunks[0] == 1 and 17 % chunks[1]  # one row per step; a short first step


def test_streaming_through_feature_fn_and_its_batches(monkeypatch, count_streams):
    # The public path (batches, padding of the last batch, jit) streams too and agrees.
    init_fn, feature_fn, _ = nf.serial(*_stack(nf.GlobalAvgPool()))
    x = _images(n=5)
    params = init_fn(jax.random.PRNGKey(2), (-1,) + x.shape[1:], nf.Sketch(dim=256, degree=2))
    monkeypatch.setattr(network, "DEFAULT_BATCH_BYTES", 1 << 40)
    whole = feature_fn(params, x, batch_size=2)
    jax.clear_caches()  # the budget is read at trace time
    monkeypatch.setattr(network, "DEFAULT_BATCH_BYTES", 1 << 18)
    streamed = feature_fn(params, x, batch_size=2)
    assert count_streams
    np.testing.assert_allclose(streamed, whole, rtol=0, atol=1e-5 * float(jnp.max(jnp.abs(whole))))


def test_what_streams():
    conv = nf.Conv(filter_shape=(3, 3))
    assert rows.streamable_prefix([conv, nf.Relu(), nf.Identity(), nf.GlobalAvgPool(), nf.Dense()]) == 3
    assert rows.streamable_prefix([conv, nf.Erf(), conv, nf.GlobalSumPool()]) == 3
    # not local row by row, or no pool to sum into, or nothing to stream
    assert rows.streamable_prefix([nf.Conv(filter_shape=(3, 3), padding="SAME"), nf.GlobalAvgPool()]) is None
    assert rows.streamable_prefix([nf.Conv(filter_shape=(3, 3), strides=2), nf.GlobalAvgPool()]) is None
    assert rows.streamable_prefix([conv, nf.AvgPool((2, 2)), nf.GlobalAvgPool()]) is None
    assert rows.streamable_prefix([conv, nf.Relu(), nf.Flatten(), nf.Dense()]) is None
    assert rows.streamable_prefix([nf.Relu(), nf.GlobalAvgPool()]) is None


def test_small_images_and_reports_do_not_stream(monkeypatch, count_streams):
    init_fn, feature_fn, _ = nf.serial(*_stack(nf.GlobalAvgPool()))
    x = _images(n=2)
    params = init_fn(jax.random.PRNGKey(3), (-1,) + x.shape[1:], nf.Sketch(dim=256, degree=2))
    feature_fn(params, x)  # the default budget holds these images whole
    assert not count_streams
    monkeypatch.setattr(network, "DEFAULT_BATCH_BYTES", 1 << 16)
    report = nf.describe(params, x)  # reports come from whole images
    assert report and not count_streams
