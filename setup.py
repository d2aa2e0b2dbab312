"""Build steps that pyproject.toml cannot express; all metadata lives in pyproject.toml.

`build_py` adds two things to the build root, so that both land in the wheel:

- `ntkfeat/configs/*.yaml`: the repository's top-level `configs/` folder (the source of truth,
  kept where the clone's commands expect it), shipped as package data so that an installed
  `ntkfeat run quickstart` finds the built-in configs by name (`ntkfeat.runs.builtin`).
- `ntkfeat-neural-tangents.pth` at the top of site-packages, holding `ntkfeat.compat.PTH_LINE`:
  the interpreter runs it at startup, so `import neural_tangents` works before `import ntkfeat`.
"""

import importlib.util
import pathlib
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = pathlib.Path(__file__).resolve().parent


def _compat():
    # compat.py by path: importing the `ntkfeat` package would import JAX, which the build
    # environment does not have. compat itself imports only the standard library at module level.
    spec = importlib.util.spec_from_file_location("_ntkfeat_compat_for_build", ROOT / "ntkfeat" / "compat.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildPy(build_py):
    def run(self):
        super().run()
        build = pathlib.Path(self.build_lib)
        configs = build / "ntkfeat" / "configs"
        configs.mkdir(parents=True, exist_ok=True)
        for path in sorted((ROOT / "configs").glob("*.yaml")):
            shutil.copyfile(path, configs / path.name)
        compat = _compat()
        (build / compat.PTH_NAME).write_text(compat.PTH_LINE)

    def get_outputs(self, include_bytecode=True):  # so that install records list the added files
        build = pathlib.Path(self.build_lib)
        extra = [str(build / "ntkfeat" / "configs" / p.name) for p in sorted((ROOT / "configs").glob("*.yaml"))]
        return super().get_outputs(include_bytecode) + extra + [str(build / _compat().PTH_NAME)]


setup(cmdclass={"build_py": BuildPy})
