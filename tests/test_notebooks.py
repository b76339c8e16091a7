"""The tutorial notebooks are the docs: each one runs top to bottom in a real kernel.

Every notebook in ``notebooks/`` is executed with nbclient against real S3 (moto) and
PostgreSQL; a failing cell (its asserts included) fails the test. The stored widget state
shows what the progress and consistency panels displayed when the cells finished.
Executed copies are kept under ``test-artifacts/notebooks/`` for inspection.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest

from tests.support.notebooks import NOTEBOOKS, REPO, execute_file, kernel_env

ALL = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
OUT = REPO / "test-artifacts" / "notebooks"


@pytest.fixture(scope="module")
def run_notebook(s3_server: Any, tmp_path_factory: pytest.TempPathFactory,
                 ) -> Callable[[str], Any]:
    """Execute a notebook once per test session; later calls get the executed notebook."""
    done: dict[str, Any] = {}

    def run(name: str) -> Any:
        if name not in done:
            tmp = tmp_path_factory.mktemp(name.removesuffix(".ipynb"))
            env = kernel_env(tmp)  # AWS_* point at the moto server (s3_server fixture)
            done[name] = execute_file(NOTEBOOKS / name, tmp, env)
            OUT.mkdir(parents=True, exist_ok=True)
            nbformat.write(done[name], OUT / name)
        return done[name]

    return run


def test_notebooks_are_committed_without_outputs():
    for name in ALL:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        assert nb.metadata.kernelspec.name == "python3", name
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, (name, cell.id)
        assert "widgets" not in nb.metadata, name


@pytest.mark.parametrize("name", ALL)
def test_notebook_runs_without_errors(run_notebook, name):
    nb = run_notebook(name)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors == []
    assert all(c.execution_count for c in nb.cells if c.cell_type == "code")


def test_notebooks_leave_no_files_in_the_repository():
    leftovers = [p for p in NOTEBOOKS.iterdir() if p.suffix != ".ipynb"]
    assert leftovers == [], "notebooks must work in their own temporary folders"


def _outputs_text(nb: Any) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", "") or out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def test_acid_shows_the_seed_errors(run_notebook):
    text = _outputs_text(run_notebook("acid.ipynb"))
    assert "SaveError: could not save Artifact(" in text and "Access Denied" in text
    assert "TypeError: item 1 is a str ('this is not a record')" in text
    assert "1 of 3 artifacts could not be saved" in text
    assert "roll back pending" in text


def test_executed_notebook_renders_as_html_docs(run_notebook):
    """What ``./scripts/docs`` writes for each notebook (it executes them the same way)."""
    from tests.support.docs import to_html

    page = to_html(run_notebook("acid.ipynb"), "acid.ipynb")
    assert "<title>acid</title>" in page
    assert "Will data &amp; metadata stay in sync?" in page
    assert "1 of 3 artifacts could not be saved" in page
