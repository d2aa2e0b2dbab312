"""ntkfeat: random features and sketches of neural tangent kernels, in JAX.

    import ntkfeat as nf
    init_fn, feature_fn, kernel_fn = nf.serial(
        nf.Dense(512, W_std=2**0.5), nf.Relu(), nf.Dense(512, W_std=2**0.5), nf.Relu(), nf.Dense(1))
    params = init_fn(key, (-1, d), nf.Sketch(dim=8192, degree=8))
    phi = feature_fn(params, x)      # phi @ phi.T ~ kernel_fn(x, x, 'ntk')

Layers have neural-tangents 0.6.5's names and signatures (`nf.Dense(out_dim, W_std, b_std)`,
`nf.Conv(out_chan, filter_shape, strides, padding, W_std, b_std)`, every activation of its
`stax`, `nf.FanOut`, `nf.parallel`, `nf.FanInSum`, `nf.FanInProd`, `nf.Dropout`, ...): a
neural-tangents architecture ports by changing the module name.
"""

from ntkfeat import compat as _compat

_compat.patch_jax()  # before anything imports neural-tangents, here or in user code (cheap: aliases only)

from ntkfeat._version import __version__  # noqa: E402
from ntkfeat.layers import *  # noqa: E402,F403 (every layer, combinator and method)
from ntkfeat.layers import __all__ as _layer_names  # noqa: E402
from ntkfeat.network import FeatureMap, check_inputs, describe, finite_network, iterate_features  # noqa: E402
from ntkfeat.features.oneshot_general import SketchAccuracyWarning  # noqa: E402
from ntkfeat import baselines, batching, data, distributed, exact, metrics, polynomials, sketches, solvers  # noqa: E402
from ntkfeat import finite_width  # noqa: E402 (trains finite networks: the NTK's change with width)

__all__ = list(_layer_names) + [
    "FeatureMap", "SketchAccuracyWarning", "check_inputs", "describe", "finite_network", "iterate_features",
    "baselines", "batching", "data", "distributed", "exact", "metrics", "polynomials", "sketches", "solvers",
]


# neural-tangents layers with no feature map here (yet): a port that uses one gets an error naming
# the layer and the exact-kernel route, not a bare AttributeError.
MISSING_LAYERS = ("GlobalSelfAttention", "ConvTranspose", "ConvLocal", "Index", "ImageResize", "DotGeneral")


def __getattr__(name):
    # Loaded on first use, so that `import ntkfeat` imports neither scikit-learn nor neural-tangents.
    if name == "sklearn":
        import importlib

        return importlib.import_module("ntkfeat.sklearn")
    if name in ("nt", "stax"):  # neural-tangents, imported after ntkfeat has patched JAX for it
        nt = _compat.neural_tangents()
        return nt if name == "nt" else nt.stax
    if name in MISSING_LAYERS:
        raise AttributeError(f"ntkfeat has no layer {name!r}: neural-tangents' stax.{name} has no feature map in "
                             f"ntkfeat (nf.stax.{name} gives its exact kernel, without features); see the README's "
                             "porting section for the supported layers")
    raise AttributeError(f"module 'ntkfeat' has no attribute {name!r}")
