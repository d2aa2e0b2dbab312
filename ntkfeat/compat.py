"""Import neural-tangents on current JAX, without TensorFlow.

neural-tangents 0.6.5 (its last release) imports a few names that JAX has since moved
(`jax.core.Jaxpr` and friends, `jax.util`, `jax.interpreters.ad.zeros_like_p`) and imports
TensorFlow through `neural_tangents.experimental`. The moved names still live under
`jax._src`; aliasing them before the first import, and registering an empty
`neural_tangents.experimental`, is enough for `stax`, `nt.batch` and the empirical kernels.

`import ntkfeat` calls `patch_jax()`, so `import ntkfeat, neural_tangents` works in user code,
and `nf.stax` / `nf.nt` are neural-tangents' `stax` and package, imported after the patch.
Use `neural_tangents()` instead of `import neural_tangents` anywhere in this package: when
neural-tangents is missing it raises an ImportError that names the install command.

The other order, `import neural_tangents` first, fails inside neural-tangents ("No module named
'tensorflow'") before any ntkfeat code has run. `install_import_hook()` (in-process), or a `.pth`
file holding `PTH_LINE` in site-packages (`write_pth()` writes it, e.g.
`python -c "import ntkfeat.compat as c; print(c.write_pth())"`; every interpreter of that
environment reads it at startup), registers an import finder that
patches JAX on the first `import neural_tangents`, so that either order works.

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


# The finder, as source: a `.pth` file runs it at interpreter startup without importing ntkfeat
# (or JAX) then. It imports ntkfeat only when neural_tangents is first imported, and never makes
# an import fail that would have worked: an error of its own is dropped.
_HOOK_SOURCE = '''
import sys


class NtkfeatPatchesJaxForNeuralTangents:
    """Before the first `import neural_tangents`, imports ntkfeat, which patches JAX for it."""

    done = False

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name == "neural_tangents" and not cls.done:
            cls.done = True  # kept in sys.meta_path: the import system is iterating over that list
            try:
                import ntkfeat.compat
                ntkfeat.compat.patch_jax()
            except Exception:
                pass
        return None


if not any(getattr(f, "__name__", "") == NtkfeatPatchesJaxForNeuralTangents.__name__ for f in sys.meta_path):
    sys.meta_path.insert(0, NtkfeatPatchesJaxForNeuralTangents)
'''

PTH_NAME = "ntkfeat-neural-tangents.pth"
PTH_LINE = f"import sys; exec({_HOOK_SOURCE!r}, {{}})\n"  # site runs the .pth lines that start with `import`


def install_import_hook() -> None:
    """Makes a later `import neural_tangents` patch JAX first, in this interpreter (what the
    `.pth` line does at startup). Idempotent."""
    exec(_HOOK_SOURCE, {})


def write_pth(site_dir: str | None = None) -> str:
    """Writes `PTH_NAME` (holding `PTH_LINE`) into `site_dir` (default: this environment's
    site-packages), so that `import neural_tangents` works before `import ntkfeat` in every
    interpreter of the environment. Returns the file's path."""
    import os
    import sysconfig

    path = os.path.join(site_dir or sysconfig.get_path("purelib"), PTH_NAME)
    with open(path, "w") as f:
        f.write(PTH_LINE)
    return path


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
