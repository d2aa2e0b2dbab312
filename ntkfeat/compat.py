"""Import neural-tangents on current JAX, without TensorFlow.

neural-tangents 0.6.5 (its last release) imports a few names that JAX has since moved
(`jax.core.Jaxpr` and friends, `jax.util`, `jax.interpreters.ad.zeros_like_p`) and imports
TensorFlow through `neural_tangents.experimental`. The moved names still live under
`jax._src`; aliasing them before the first import, and registering an empty
`neural_tangents.experimental`, is enough for `stax`, `nt.batch` and the empirical kernels.

`import ntkfeat` calls `patch_jax()`, so `import ntkfeat, neural_tangents` works in user code.
Use `neural_tangents()` instead of `import neural_tangents` anywhere in this package: when
neural-tangents is missing it raises an ImportError that names the install command.

neural-tangents is not a dependency of the ntkfeat distribution (its metadata pulls in
TensorFlow); it is installed in one step, without its dependencies: `NT_INSTALL`.
"""

from __future__ import annotations

import importlib
import sys
import types

_CORE_NAMES = (
    "AbstractValue",
    "Jaxpr",
    "JaxprEqn",
    "Literal",
    "Primitive",
    "ShapedArray",
    "Value",
    "Var",
    "eval_context",
)

NT_VERSION = "0.6.5"
NT_INSTALL = f"pip install --no-deps neural-tangents=={NT_VERSION} frozendict"

_patched = False


def patch_jax() -> None:
    """Aliases the JAX names neural-tangents 0.6.5 imports. Idempotent; adds names only."""
    global _patched
    if _patched:
        return
    import jax
    import jax.core
    import jax.interpreters.ad as ad

    core_src = importlib.import_module("jax._src.core")
    for name in _CORE_NAMES:
        if not hasattr(jax.core, name) and hasattr(core_src, name):
            setattr(jax.core, name, getattr(core_src, name))

    if "jax.util" not in sys.modules:
        try:
            importlib.import_module("jax.util")
        except ImportError:
            util_src = importlib.import_module("jax._src.util")
            sys.modules["jax.util"] = util_src
            jax.util = util_src  # type: ignore[attr-defined]

    if not hasattr(ad, "zeros_like_p"):
        ad.zeros_like_p = importlib.import_module("jax._src.ad_util").zeros_like_p

    # `neural_tangents/__init__.py` imports `experimental`, which imports TensorFlow. Nothing
    # in ntkfeat needs it, so an empty module stands in for it.
    if "neural_tangents.experimental" not in sys.modules:
        stub = types.ModuleType("neural_tangents.experimental")
        stub.__doc__ = "Stand-in registered by ntkfeat.compat; the real module needs TensorFlow."
        sys.modules["neural_tangents.experimental"] = stub
    _patched = True


def neural_tangents():
    """Returns the `neural_tangents` module, importing it on current JAX if needed."""
    patch_jax()
    try:
        import neural_tangents as nt
    except ModuleNotFoundError as e:
        if e.name not in ("neural_tangents", "frozendict"):
            raise
        raise ImportError(
            f"ntkfeat needs neural-tangents {NT_VERSION} for exact kernels (kernel_fn, Nystrom, gradient "
            f"features), but {e.name} is not installed. Install it without its TensorFlow dependency:\n"
            f"    {NT_INSTALL}") from e
    return nt


def stax():
    """Returns `neural_tangents.stax`."""
    return neural_tangents().stax
