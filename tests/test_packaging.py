"""Packaging: one version, license and citation metadata, the progress-bar helper."""

import io
import pathlib
import sys

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
