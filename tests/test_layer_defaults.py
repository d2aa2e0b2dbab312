"""Every layer's defaults mean what neural-tangents 0.6.5's mean.

A neural-tangents architecture ports by renaming `stax.` to `nf.`, so each supported layer is
built with its required arguments only, then with one more positional argument at a time (the
values below, each different from the default), as `nf.<Layer>(*args)` and `stax.<Layer>(*args)`.
Inside the same small network, nf's kernel_fn must equal neural-tangents' (the same computation
when the arguments are passed on as meant: float tolerance), and both feature maps (Sketch,
RandomFeatures) must have neural-tangents' output spatial shape. This is the check that catches
a default with another meaning, e.g. AvgPool's strides=None (neural-tangents: (1, 1); not
jax.example_libraries.stax's stride = window).
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntkfeat as nf
from ntkfeat import compat

def _erf_nngp(cov12, var1, var2):
    """E[erf(u) erf(v)] in closed form (neural-tangents' Elementwise example)."""
    return jnp.arcsin(2 * cov12 / jnp.sqrt((1 + 2 * var1) * (1 + 2 * var2))) * 2 / jnp.pi


def _erf_d_nngp(cov12, var1, var2):
    """E[erf'(u) erf'(v)] = (4 / pi) / sqrt(det(I + 2 Sigma))."""
    return 4 / jnp.pi / jnp.sqrt((1 + 2 * var1) * (1 + 2 * var2) - 4 * cov12**2)


# name: (required arguments, then the further positional arguments in signature order). Arguments
# that accept only their default (batch_axis, channel_axis, parameterization, s, ...) are given it.
POSITIONAL = {
    "Dense": ([8], [1.5, 0.1, 0, -1, "ntk", (1, 1)]),
    "Conv": ([8, (3, 2)], [(2, 1), "SAME", 1.3, 0.2, ("NHWC", "HWIO", "NHWC"), "ntk", (1, 1)]),
    "AvgPool": ([(3, 2)], [(2, 1), "SAME", True, 0, -1]),
    "SumPool": ([(2, 3)], [(1, 2), "CIRCULAR", 0, -1]),
    "GlobalAvgPool": ([], [0, -1]),
    "GlobalSumPool": ([], [0, -1]),
    "Flatten": ([], [0, 0]),
    "Identity": ([], []),
    "LayerNorm": ([], [-1, 1e-3, 0, -1]),
    "Relu": ([], [True]),
    "LeakyRelu": ([0.1], [True]),
    "ABRelu": ([-0.5, 1.0], [True]),
    "Abs": ([], [True]),
    "Sign": ([], []),
    "Erf": ([], [0.7, 1.3, 0.1]),
    "Sigmoid_like": ([], []),
    "Gelu": ([], [True]),
    "Sin": ([], [0.7, 1.3, 0.1]),
    "Cos": ([], [0.7, 1.3, 0.1]),
    "Exp": ([], [0.7, 0.4]),
    "Gaussian": ([], [0.7, -0.5]),
    "ExpNormalized": ([], [0.5, -0.5, True]),
    "Rbf": ([], [0.5]),
    "Gabor": ([], []),
    "Hermite": ([2], []),
    "Monomial": ([2], []),
    "RectifiedMonomial": ([1], []),
    "Polynomial": ([(0.2, 1.0, -0.3)], []),
    "ElementwiseNumerical": ([jnp.tanh, 12], [lambda x: 1 - jnp.tanh(x) ** 2]),
    # fn and nngp_fn are optional in neural-tangents' signature, but its kernel needs nngp_fn and
    # the features need fn (Elementwise() raises; tests/test_new_layers.py).
    "Elementwise": ([jax.scipy.special.erf, _erf_nngp], [_erf_d_nngp]),
    "Dropout": ([0.8], ["test"]),
}
# Layers whose defaults have a kernel but no feature map: the message init_fn raises.
NO_FEATURES_BY_DEFAULT = {"Dropout": "mode='test'"}  # neural-tangents' default mode is 'train
# Aggregate is left out: its kernel needs a graph, and its to_dense default is None here where
# neural-tangents' is the identity function (the same map); tests/test_architectures.py checks it.
IMAGE_LAYERS = {"Conv", "AvgPool", "SumPool", "GlobalAvgPool", "GlobalSumPool", "Flatten", "Identity"}
METHODS = (nf.Sketch(dim=128, degree=3),  # odd degree: Sign's dual is odd
           nf.RandomFeatures(dim=128))


def test_every_supported_layer_is_listed():
    covered = set(POSITIONAL) | {"Aggregate"}
    assert covered == set(nf.layers.ACTIVATIONS) | set(nf.layers.LINEAR)


def _variants(name):
    required, more = POSITIONAL[name]
    return [(name, k) for k in range(len(more) + 1)]


CASES = [case for name in POSITIONAL for case in _variants(name)]


def _network(module, name, args):
    """(the layer at the end of a small network of `module` (nf or stax), the same network with a
    Flatten after image layers, the inputs)."""
    layer = getattr(module, name)(*args)
    rng = np.random.default_rng(0)
    if name in IMAGE_LAYERS:
        x = rng.normal(size=(3, 7, 6, 2)).astype(np.float32)
        head = (module.Conv(4, (2, 2), W_std=1.5), layer)
        # Flatten for the kernel: neural-tangents then keeps only matching positions (eager, the
        # full spatial covariance of these tiny images took a minute per case on 2 cores).
        tail = () if name in ("Flatten", "GlobalAvgPool", "GlobalSumPool") else (module.Flatten(),)
        return module.serial(*head), module.serial(*head, *tail), x
    x = rng.normal(size=(3, 5)).astype(np.float32)
    if name == "Dense":
        net = module.serial(layer)
        return net, net, x
    # A readout after the layer: Sign's NTK is zero right after it (its derivative is 0), which a
    # Sketch cannot fit.
    net = module.serial(module.Dense(8, W_std=1.2, b_std=0.1), layer, module.Dense(1))
    return net, net, x


def _kernel(kernel_fn, x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with jax.default_matmul_precision("highest"):  # nf's kernel_fn runs at 'highest'
            return np.asarray(kernel_fn(x, x, "ntk"), np.float64)


@pytest.mark.parametrize("name,k", CASES, ids=[f"{n}-{k}" for n, k in CASES])
def test_arguments_mean_what_neural_tangents_means(name, k):
    # nf's layer, its arguments normalized (defaults filled in), handed to neural-tangents, against
    # neural-tangents' layer of the same call: the same eager computation, so equal to rounding.
    required, more = POSITIONAL[name]
    args = required + more[:k]
    _, ours, x = _network(nf, name, args)
    _, theirs, _ = _network(compat.stax(), name, args)
    k_ours = _kernel(ours.stax(readout=True)[2], x)
    k_theirs = _kernel(theirs[2], x)
    assert k_ours.shape == k_theirs.shape
    np.testing.assert_allclose(k_ours, k_theirs, rtol=1e-6, atol=1e-7 * np.nanmax(np.abs(k_theirs)))


@pytest.mark.parametrize("name", list(POSITIONAL))
def test_defaults_kernel_fn_and_feature_shapes(name):
    # The public views of the layer with its defaults: kernel_fn (jitted; neural-tangents runs
    # eagerly here: up to 2e-5 apart in float32, 1.1e-4 on Abs's diagonal, where its dual's
    # arcsin is steep; a default with another meaning moves the kernel by percents or changes its
    # shape) and both feature maps' shapes after the layer.
    required, _ = POSITIONAL[name]
    ours, ours_flat, x = _network(nf, name, required)
    theirs, theirs_flat, _ = _network(compat.stax(), name, required)
    k_theirs = _kernel(theirs_flat[2], x)
    np.testing.assert_allclose(_kernel(ours_flat[2], x), k_theirs, rtol=5e-4, atol=1e-5 * np.nanmax(np.abs(k_theirs)))
    out_shape, _ = theirs[0](jax.random.PRNGKey(0), x.shape)
    for method in METHODS:
        if name in NO_FEATURES_BY_DEFAULT:
            with pytest.raises(ValueError, match=NO_FEATURES_BY_DEFAULT[name]):
                ours[0](jax.random.PRNGKey(0), x.shape, method)
            continue
        params = ours[0](jax.random.PRNGKey(0), x.shape, method)
        phi = jax.eval_shape(ours[1], params, x)
        assert phi.shape[:-1] == tuple(out_shape[:-1]), (type(method).__name__, phi.shape, out_shape)


def test_pool_strides_default_to_one_as_in_neural_tangents():
    # The porting trap this file guards: a ported CNN with AvgPool((2, 2)) must keep 7 x 7 outputs
    # on 8 x 8 inputs (stride 1), not 4 x 4 (stride = window).
    x = np.random.default_rng(1).normal(size=(2, 8, 8, 3)).astype(np.float32)
    for name in ("AvgPool", "SumPool"):
        layer = getattr(nf, name)((2, 2))
        assert layer.strides == (1, 1)
        init_fn, feature_fn, _ = nf.serial(nf.Conv(4, (1, 1)), layer)
        phi = jax.eval_shape(feature_fn, init_fn(jax.random.PRNGKey(0), x.shape, METHODS[0]), x)
        assert phi.shape[1:3] == (7, 7), (name, phi.shape)


def test_fan_in_prod_kernel_and_shapes_as_in_neural_tangents():
    # FanInProd takes no arguments; its network against neural-tangents' network of the same calls
    # (the same computation: float tolerance), and both feature maps' output shapes.
    # tests/test_new_layers.py checks the features' kernels, convolutional products included.
    x = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    ours, theirs = [module.serial(module.Dense(4, W_std=1.5, b_std=0.1), module.FanOut(2),
                                  module.parallel(module.Dense(4), module.serial(module.Relu(), module.Dense(4))),
                                  module.FanInProd(), module.Dense(1))
                    for module in (nf, compat.stax())]
    k_theirs = _kernel(theirs[2], x)
    np.testing.assert_allclose(_kernel(ours[2], x), k_theirs, rtol=5e-4, atol=1e-5 * np.abs(k_theirs).max())
    for method in METHODS:
        phi = jax.eval_shape(ours[1], ours[0](jax.random.PRNGKey(0), x.shape, method), x)
        assert phi.shape == (3, method.dim), (type(method).__name__, phi.shape)


@pytest.mark.parametrize("name", nf.MISSING_LAYERS)
def test_missing_neural_tangents_layers_raise_an_error_that_names_them(name):
    with pytest.raises(AttributeError, match=f"no layer '{name}'.*nf.stax.{name}"):
        getattr(nf, name)
