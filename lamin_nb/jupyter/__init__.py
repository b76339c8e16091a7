"""Jupyter integration: the IPython extension (magics), kernel detection, the server extension.

Nothing here imports IPython, ipywidgets or jupyter_server at module level: ``%load_ext
lamin_nb`` imports the magics only when it runs, and the server extension lives in
``lamin_nb.jupyter.server``.
"""

from __future__ import annotations

import sys
from typing import Any


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%lamin_init``, ``%lamin_save`` and friends on ``ipython``."""
    from .magics import LaminMagics

    ipython.register_magics(LaminMagics)


def unload_ipython_extension(ipython: Any) -> None:
    """Nothing to undo: the magics hold no state between calls."""


def in_kernel() -> bool:
    """True inside a Jupyter kernel (where widgets render), False in a terminal or a script.

    Checked like ``tqdm.autonotebook``: never imports IPython if nothing else did.
    """
    if "ipykernel.zmqshell" not in sys.modules or "IPython" not in sys.modules:
        return False
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None
