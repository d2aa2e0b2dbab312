"""Built-in configs by name: `ntkfeat run quickstart` is `ntkfeat run configs/quickstart.yaml`.

The repository's top-level `configs/` folder is the source of truth. A clone (also one installed
with `pip install -e .`) reads it directly; a wheel ships a copy as package data,
`ntkfeat/configs/*.yaml` (setup.py), read through `importlib.resources`.
"""

from __future__ import annotations

import importlib.resources
import pathlib

# ntkfeat/runs/builtin.py -> the clone's configs/ folder (absent when installed from a wheel)
_CLONE_CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "configs"


def _folder() -> pathlib.Path | None:
    """The folder of built-in configs: the clone's `configs/`, else the installed package data."""
    if (_CLONE_CONFIGS.parent / "ntkfeat" / "runs").is_dir() and _CLONE_CONFIGS.is_dir():
        return _CLONE_CONFIGS
    shipped = importlib.resources.files("ntkfeat").joinpath("configs")
    # A wheel installs as plain files, so the traversable is a real folder; a zipped install
    # (not produced by this project's build) would have none to hand to the YAML reader.
    if shipped.is_dir() and isinstance(shipped, pathlib.Path):
        return shipped
    return None


def names() -> list[str]:
    """Names of the built-in configs (file names without `.yaml`), sorted."""
    folder = _folder()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder is not None else []


def resolve(config: str | pathlib.Path) -> pathlib.Path:
    """Returns `config` itself when it is a file, else the built-in config of that name.

    `quickstart`, `quickstart.yaml` and `configs/quickstart.yaml` (run from another folder) all
    name the built-in `quickstart`. Raises FileNotFoundError listing the built-in names otherwise.
    """
    path = pathlib.Path(config)
    if path.is_file():
        return path
    folder = _folder()
    stem = path.name[:-len(".yaml")] if path.name.endswith(".yaml") else path.name
    # Only a bare name or configs/NAME(.yaml): any other folder in the argument means a file was meant.
    if folder is not None and str(path.parent) in (".", "configs"):
        candidate = folder / f"{stem}.yaml"
        if candidate.is_file():
            return candidate
    available = ", ".join(names()) or "none found"
    raise FileNotFoundError(f"{config}: no such config file, and no built-in config of that name "
                            f"(built-in configs: {available})")
