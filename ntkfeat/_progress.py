"""Progress bars through `tqdm.auto`: a text bar on terminals, a widget bar in Jupyter, none in logs.

    for x in progress(batches, total=n, desc="features", unit="batch"):
        ...
    bar = progress(total=len(runs), desc="runs", unit="run")   # a bar to update() by hand
"""

from __future__ import annotations

import sys


def in_notebook() -> bool:
    """Whether this code runs inside an IPython kernel (Jupyter, JupyterLab, VS Code, Colab).

    IPython is never imported here: a kernel has imported it already, so if it is not in
    `sys.modules` this is no kernel.
    """
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # noqa: BLE001 - any failure means no kernel to draw in
        return False
    if shell is None:
        return False
    if type(shell).__name__ == "ZMQInteractiveShell":
        return True
    try:
        return "IPKernelApp" in shell.config
    except Exception:  # noqa: BLE001
        return False


def _stderr_is_terminal() -> bool:
    try:
        return bool(sys.stderr is not None and sys.stderr.isatty())
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def _secondary_process() -> bool:
    """A process other than the first of a multi-process JAX run (`ntkfeat.distributed`)."""
    import jax

    return jax.distributed.is_initialized() and jax.process_index() > 0  # no backend started otherwise


def enabled_by_default() -> bool:
    """Bars are shown when stderr is a terminal or inside an IPython kernel, never in logs, and in a
    multi-process run on process 0 only."""
    return (_stderr_is_terminal() or in_notebook()) and not _secondary_process()


def progress(iterable=None, total: int | None = None, desc: str | None = None, enabled: bool | None = None,
             unit: str = "it", leave: bool = False, **kwargs):
    """`iterable` wrapped in a `tqdm.auto` bar, or `iterable` itself when no bar is wanted.

    Args:
      iterable: what to iterate over; None for a bar advanced by hand with `update()`.
      total: the number of items (default: len(iterable) where it has one).
      desc: the bar's label.
      enabled: True: always a bar; False: never; None: when stderr is a terminal or the code runs
        in an IPython kernel (Jupyter), where `tqdm.auto` draws a widget.
      unit: the name of one item.
      leave: keep the finished bar on screen.
      **kwargs: passed to tqdm.

    Without a bar the iterable is returned as it is; with `iterable=None` a disabled bar is
    returned, whose `update`, `set_postfix_str` and `close` do nothing.
    """
    if enabled is None:
        enabled = enabled_by_default()
    if not enabled and iterable is not None:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, disable=not enabled, **kwargs)
