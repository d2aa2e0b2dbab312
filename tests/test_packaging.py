"""Packaging: one version, license and citation metadata, the progress-bar helper; the wheel (its files,
and the `ntkfeat` command and `import neural_tangents, ntkfeat` from an install of it); the clone's aliases."""

import io
import json
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import pytest
import yaml

import ntkfeat as nf
from ntkfeat import _progress

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_version_in_one_place():
    from ntkfeat._version import __version__

    assert nf.__version__ == __version__
    pyproject = (REPO / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and '"ntkfeat._version.__version__"' in pyproject
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert str(citation["version"]) == __version__


def test_license_and_citation():
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text
    assert "Copyright 2026 The ntkfeat authors" in text
    pyproject = (REPO / "pyproject.toml").read_text()
    assert 'license = "Apache-2.0"' in pyproject and 'license-files = ["LICENSE"]' in pyproject
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["title"] == "ntkfeat"
    assert citation["license"] == "Apache-2.0" and citation["authors"] == [{"name": "The ntkfeat authors"}]
    arxiv = {ref["identifiers"][0]["value"] for ref in citation["references"]}
    assert arxiv == {"arXiv:2106.07880", "arXiv:2104.01351", "arXiv:2209.04121", "arXiv:1912.02803"}
    for ref in citation["references"]:
        assert ref["title"] and ref["year"] and all("family-names" in a for a in ref["authors"])


def test_progress_helper():
    items = [1, 2, 3]
    assert _progress.progress(items, enabled=False) is items  # no bar: the iterable itself
    bar = _progress.progress(items, enabled=True, desc="x", file=io.StringIO())
    assert list(bar) == items and type(bar).__module__.startswith("tqdm")
    manual = _progress.progress(total=3, enabled=False)  # a disabled bar still takes update() and close()
    manual.update()
    manual.set_postfix_str("x")
    manual.close()
    # Under pytest stderr is captured (no terminal) and no IPython kernel runs: no bar by default.
    if "IPython" not in sys.modules:
        assert not _progress.in_notebook()


def test_progress_detects_a_notebook_kernel_without_importing_ipython(monkeypatch):
    import types

    class ZMQInteractiveShell:  # what get_ipython() returns inside a Jupyter kernel
        config = {"IPKernelApp": {}}

    fake = types.ModuleType("IPython")
    fake.get_ipython = lambda: ZMQInteractiveShell()
    monkeypatch.setitem(sys.modules, "IPython", fake)
    assert _progress.in_notebook() and _progress.enabled_by_default()
    fake.get_ipython = lambda: None  # IPython imported, but a plain interpreter
    assert not _progress.in_notebook()


def test_clone_aliases_are_the_package_modules():
    # experiments.X is ntkfeat.runs.X itself, so a monkeypatch on either name reaches the code that runs.
    import importlib

    for name in ("run", "config", "fitting", "methods", "report", "compare", "replot"):
        assert importlib.import_module(f"experiments.{name}") is importlib.import_module(f"ntkfeat.runs.{name}")
    from experiments import run

    assert run.main.__module__ == "ntkfeat.runs.run"


def test_cli_and_builtin_config_names(capsys):
    from ntkfeat import cli
    from ntkfeat.runs import builtin

    assert cli.main(["bogus"]) == 2 and "unknown command 'bogus'" in capsys.readouterr().err
    assert cli.main(["configs"]) == 0 and "quickstart" in capsys.readouterr().out.split()
    assert builtin.resolve("quickstart") == REPO / "configs" / "quickstart.yaml"  # the clone: configs/ itself
    quickstart = builtin.resolve("quickstart").resolve()
    for spelling in ("quickstart.yaml", "configs/quickstart.yaml"):
        assert builtin.resolve(spelling).resolve() == quickstart
    with pytest.raises(FileNotFoundError, match="built-in configs: .*quickstart"):
        builtin.resolve("no_such_config")
    with pytest.raises(FileNotFoundError):  # a folder that is not configs/ means a file was meant
        builtin.resolve("elsewhere/quickstart.yaml")


def test_notebooks_use_the_package_not_the_clone():
    # examples/*.ipynb must run from a non-editable install, where the clone's experiments/ does not exist.
    for path in sorted((REPO / "examples").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        assert "experiments" not in code and "pip install -e" not in code, path.name


# --- The wheel, built from a copy of the sources and installed into a fresh environment ---------------------------

_SOURCES = ("pyproject.toml", "setup.py", "README.md", "LICENSE", "configs", "ntkfeat")


def _setuptools_builds_here() -> bool:
    # pyproject's build-system asks for setuptools>=77 (SPDX license); with it in this environment the build needs
    # no download (--no-build-isolation), otherwise pip fetches it into an isolated build environment.
    try:
        from importlib.metadata import version

        return int(version("setuptools").split(".")[0]) >= 77
    except Exception:
        return False


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """Builds the wheel from a copy of the sources (no build/ or egg-info in the shared checkout)."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in _SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(REPO / name, src / name)
    isolation = ["--no-build-isolation"] if _setuptools_builds_here() else []
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", *isolation,
                           "-w", str(root / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    (path,) = (root / "dist").glob("ntkfeat-*.whl")
    return path


def test_wheel_files(wheel):
    from ntkfeat import compat

    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        tops = {n.split("/")[0] for n in names}
        assert not any(t == "experiments" for t in tops), "the clone's experiments/ must not be installed"
        assert {t for t in tops if not t.endswith(".dist-info")} == {"ntkfeat", compat.PTH_NAME}
        configs = {n.split("/")[-1] for n in names if n.startswith("ntkfeat/configs/")}
        assert configs == {p.name for p in (REPO / "configs").glob("*.yaml")}  # all of configs/, nothing else
        assert "ntkfeat/py.typed" in names and "ntkfeat/runs/run.py" in names and "ntkfeat/cli.py" in names
        assert z.read(compat.PTH_NAME).decode() == compat.PTH_LINE
        assert z.read("ntkfeat/configs/quickstart.yaml") == (REPO / "configs" / "quickstart.yaml").read_bytes()
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        assert "ntkfeat = ntkfeat.cli:main" in z.read(entry_points).decode()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = z.read(metadata).decode()
        assert "Requires-Dist: jax<0.12,>=0.10" in meta and "Provides-Extra: notebooks" in meta
        assert "ipywidgets" in meta


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory):
    """A fresh venv with the wheel installed (--no-deps); its dependencies come from this environment's
    site-packages as a plain path entry, whose .pth files (this checkout's editable install) are not run."""
    root = tmp_path_factory.mktemp("venv")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    pathlib.Path(site, "zz-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                           "--no-index", str(wheel)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    work = root / "work"  # an empty folder holding the user's own experiments/ package
    (work / "experiments").mkdir(parents=True)
    (work / "experiments" / "__init__.py").write_text("raise ImportError('the user experiments package ran')\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return venv, pathlib.Path(site), work, env


def test_installed_wheel_runs_quickstart_by_name(installed, tmp_path):
    venv, site, work, env = installed
    assert (site / "ntkfeat-neural-tangents.pth").is_file()  # the .pth lands in site-packages itself
    assert (site / "ntkfeat" / "configs" / "quickstart.yaml").is_file()
    out = tmp_path / "quick"
    small = ["--set", "data.n_train=60", "--set", "data.n_test=40", "--set", "evaluation.kernel_error_rows=30",
             "--set", "methods=[{method: exact}, {method: ntk_sketch, dims: [64]}]", "--set", "plots=false"]
    command = [str(venv / "bin" / "ntkfeat"), "run", "quickstart", "--out", str(out), "--quiet", *small]
    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "finished" and len(results["records"]) == 2
    assert pathlib.Path(results["config_file"]).resolve().is_relative_to(site.resolve())  # the shipped config
    assert results["git"] is None  # installed: no clone's commit is recorded
    # An unknown name lists the built-in ones.
    done = subprocess.run([str(venv / "bin" / "ntkfeat"), "run", "no_such_config"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "built-in configs:" in done.stderr and "quickstart" in done.stderr


def test_installed_wheel_imports_neural_tangents_first(installed):
    venv, site, work, env = installed
    code = ("import neural_tangents, ntkfeat, pathlib; from neural_tangents import stax; "
            "print(pathlib.Path(ntkfeat.__file__).resolve()); print(stax.Relu.__name__)")
    done = subprocess.run([str(venv / "bin" / "python"), "-c", code], cwd=work, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert pathlib.Path(done.stdout.split()[0]).is_relative_to(site.resolve())  # the wheel's ntkfeat, not the clone's
