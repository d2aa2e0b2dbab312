"""The example notebooks (examples/*.ipynb) run end to end at small sizes and draw their plots.

Each notebook is executed with nbclient in a temporary folder, in a Jupyter kernel of this very
Python (a kernelspec written for the test, so no other `python3` kernel on the machine is picked
up), with NTKFEAT_NOTEBOOK_SMALL=1: every notebook reads it in its size cell. No cell may raise,
and each notebook must produce PNG images (inline matplotlib figures or displayed run plots).
"""

import json
import os
import pathlib
import sys
import time

import pytest

nbformat = pytest.importorskip("nbformat", reason="the dev extras (pip install -e '.[dev]') run the notebooks")
nbclient = pytest.importorskip("nbclient", reason="the dev extras (pip install -e '.[dev]') run the notebooks")
pytest.importorskip("ipykernel", reason="the dev extras (pip install -e '.[dev]') run the notebooks")

REPO = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
# Images each notebook draws at the least: tour (kernel error, RMSE), cntk_images (one figure),
# compare_runs (its own figure and the two plots of experiments.compare).
MIN_IMAGES = {"tour": 2, "cntk_images": 1, "compare_runs": 3}
CELL_TIMEOUT = 600  # seconds per cell; the longest small cell (two runner processes) takes about 75 s on 2 CPU cores
KERNEL = "ntkfeat-test-python"


def test_the_notebooks_are_there():
    assert {p.stem for p in NOTEBOOKS} >= set(MIN_IMAGES), f"missing notebooks in {EXAMPLES}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_stored_without_outputs_and_with_a_small_size(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{path.name} has no code cells"
    for cell in code:
        assert not cell.outputs and cell.execution_count is None, (
            f"{path.name} is stored with outputs: clear them before saving (keeps the repository small)")
    assert any("NTKFEAT_NOTEBOOK_SMALL" in c.source for c in code), f"{path.name} has no size cell"


def _kernel_manager(folder: pathlib.Path):
    """A kernel manager whose only kernelspec runs ipykernel on sys.executable."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    spec = folder / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"Python ({sys.executable})", "language": "python"}))
    specs = KernelSpecManager(kernel_dirs=[str(folder)], ensure_native_kernel=False)
    return AsyncKernelManager(kernel_name=KERNEL, kernel_spec_manager=specs)


def _images(nb) -> int:
    return sum("image/png" in out.get("data", {})
               for cell in nb.cells if cell.cell_type == "code"
               for out in cell.outputs if out.output_type in ("display_data", "execute_result"))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_small_and_draws(path, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("NTKFEAT_NOTEBOOK_SMALL", "1")
    # The kernel imports this checkout's ntkfeat and experiments (also without an editable install).
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, km=_kernel_manager(tmp_path / "kernels"), timeout=CELL_TIMEOUT,
                                     startup_timeout=120, resources={"metadata": {"path": str(work)}})
    start = time.perf_counter()
    try:
        client.execute(cleanup_kc=True)  # shuts the kernel down; a failing cell raises CellExecutionError
    finally:
        nbformat.write(nb, tmp_path / path.name)  # the executed notebook, to look at after a failure
    seconds = time.perf_counter() - start
    errors = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
              if out.output_type == "error"]
    assert not errors, f"{path.name}: {errors[0].ename}: {errors[0].evalue}"
    images = _images(nb)
    assert images >= MIN_IMAGES.get(path.stem, 1), f"{path.name} drew {images} images ({seconds:.0f} s)"
    print(f"{path.name}: {seconds:.0f} s, {images} images")
