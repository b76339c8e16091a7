"""Execute notebooks with nbclient in a kernel of this environment, and read widget state."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
VIEW = "application/vnd.jupyter.widget-view+json"
STATE = "application/vnd.jupyter.widget-state+json"


def kernel_env(home: Path, **extra: str) -> dict[str, str]:
    """The kernel's environment: a private IPython folder, no faults, no S3 configuration.

    A tutorial must run where nothing is configured, so no ``AWS_*`` variable reaches it
    (the tutorials start their own local S3 server); ``extra`` adds variables back.
    """
    (home / "ipython").mkdir(parents=True, exist_ok=True)
    env = dict(
        os.environ,
        IPYTHONDIR=str(home / "ipython"),
        JUPYTER_PLATFORM_DIRS="1",
        PYTHONUNBUFFERED="1",
        LAMIN_NB_TEST_PG_URL=pg_url(),
    )
    for name in ("LAMIN_NB_FAULT", "LAMIN_NB_INSTANCE", "LAMIN_NB_NO_AUTOLOAD"):
        env.pop(name, None)
    for name in [n for n in env if n.startswith("AWS_")]:
        env.pop(name)
    env.update(extra)
    return env


def pg_url() -> str:
    from tests.support.servers import PG_URL

    return PG_URL


def execute(nb: Any, cwd: Path, env: dict[str, str], timeout: int = 300) -> Any:
    """Run every cell (an error raises ``CellExecutionError``); widget state is stored."""
    from nbclient import NotebookClient

    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        store_widget_state=True,
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute(env=env, cwd=str(cwd))
    return nb


def execute_file(path: Path, cwd: Path, env: dict[str, str], timeout: int = 300) -> Any:
    import nbformat

    return execute(nbformat.read(path, as_version=4), cwd, env, timeout)


def code_notebook(*sources: str) -> Any:
    import nbformat

    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])


def widget_models(nb: Any) -> dict[str, Any]:
    return dict(nb.metadata.get("widgets", {}).get(STATE, {}).get("state", {}))


def displayed_models(nb: Any, cell_tag: str | None = None) -> Iterator[dict[str, Any]]:
    """The stored state of each widget displayed as an output (optionally of tagged cells)."""
    models = widget_models(nb)
    for cell in nb.cells:
        if cell_tag is not None and cell_tag not in cell.get("metadata", {}).get("tags", []):
            continue
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(VIEW)
            if view and view["model_id"] in models:
                yield models[view["model_id"]]


def descendants(nb: Any, model: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every model reachable from ``model`` through children (boxes, panels, outputs)."""
    models = widget_models(nb)
    stack, seen = [model], set()
    while stack:
        current = stack.pop()
        yield current
        for ref in _refs(current.get("state", {})):
            if ref in models and ref not in seen:
                seen.add(ref)
                stack.append(models[ref])


def _refs(value: Any) -> Iterator[str]:
    if isinstance(value, str) and value.startswith("IPY_MODEL_"):
        yield value[len("IPY_MODEL_") :]
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _refs(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _refs(item)


def with_class(
    nb: Any,
    css_class: str,
    root: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Stored widget models carrying a CSS class (``widget.add_class``)."""
    pool = descendants(nb, root) if root is not None else widget_models(nb).values()
    return [m for m in pool if css_class in m.get("state", {}).get("_dom_classes", [])]


def stream_text(nb: Any) -> str:
    return "".join(
        o.get("text", "")
        for c in nb.cells
        for o in c.get("outputs", [])
        if o.get("output_type") == "stream"
    )
