"""The tutorial notebooks are the docs: each one runs top to bottom in a real kernel.

Every notebook in ``notebooks/`` is executed with nbclient against real S3 (moto) and
PostgreSQL; a failing cell (its asserts included) fails the test. The stored widget state
shows what the progress and consistency panels displayed when the cells finished.
Executed copies are kept under ``test-artifacts/notebooks/`` for inspection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import nbformat
import pytest

from tests.support.notebooks import (
    NOTEBOOKS,
    REPO,
    descendants,
    displayed_models,
    execute_file,
    kernel_env,
    with_class,
)

ALL = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
OUT = REPO / "test-artifacts" / "notebooks"


@pytest.fixture(scope="module")
def run_notebook(
    s3_server: Any,
    tmp_path_factory: pytest.TempPathFactory,
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


# -- what the panels showed: the stored widget state of the executed notebooks ------------


def _panel(nb: Any, tag: str, css_class: str) -> dict[str, Any]:
    (panel,) = [
        m for m in displayed_models(nb, tag) if css_class in m["state"].get("_dom_classes", [])
    ]
    return panel


def _one(nb: Any, root: dict[str, Any], css_class: str) -> dict[str, Any]:
    (model,) = with_class(nb, css_class, root)
    return model["state"]


def _rows(nb: Any, progress: dict[str, Any], final: str) -> list[dict[str, Any]]:
    return [
        r
        for r in with_class(nb, "lamin-item-row", progress)
        if f"lamin-item-{final}" in r["state"]["_dom_classes"]
    ]


def test_bulk_upload_progress_panel_shows_the_failed_item_in_red(run_notebook):
    nb = run_notebook("bulk-upload.ipynb")
    progress = _panel(nb, "first-save", "lamin-save-progress")
    overall = _one(nb, progress, "lamin-save-overall")
    assert overall["value"] == overall["max"] == 12 and overall["bar_style"] == "danger"
    assert len(_rows(nb, progress, "saved")) == 11
    (failed,) = _rows(nb, progress, "failed")
    assert _one(nb, failed, "lamin-item-bar")["bar_style"] == "danger"
    assert "well_03.tiff" in _one(nb, failed, "lamin-item-name")["value"]
    state = _one(nb, failed, "lamin-item-state")["value"]
    assert state.startswith("failed: ") and "Access Denied" in state
    assert "11" in _one(nb, progress, "lamin-save-header")["value"]


def test_bulk_upload_rerun_saves_only_the_failed_item(run_notebook):
    nb = run_notebook("bulk-upload.ipynb")
    progress = _panel(nb, "second-save", "lamin-save-progress")
    overall = _one(nb, progress, "lamin-save-overall")
    assert overall["value"] == overall["max"] == 12 and overall["bar_style"] == "success"
    (saved,) = _rows(nb, progress, "saved")
    assert "well_03.tiff" in _one(nb, saved, "lamin-item-name")["value"]
    assert len(_rows(nb, progress, "already-saved")) == 11
    assert _rows(nb, progress, "failed") == []


def test_upload_widget_saved_the_picked_file(run_notebook):
    nb = run_notebook("bulk-upload.ipynb")
    upload = _panel(nb, "upload-widget", "lamin-upload-widget")
    status = _one(nb, upload, "lamin-upload-status")
    assert "lamin-status-ok" in status["_dom_classes"] and "saved 1 file(s)" in status["value"]
    (row,) = _rows(nb, upload, "saved")
    assert "uploads/manual/picked.csv" in _one(nb, row, "lamin-item-name")["value"]


def test_consistency_snapshot_shows_the_orphan_and_the_missing_object(run_notebook):
    nb = run_notebook("consistency.ipynb")
    snapshot = _panel(nb, "snapshot", "lamin-consistency-panel")
    status = _one(nb, snapshot, "lamin-consistency-status")
    assert "lamin-inconsistent" in status["_dom_classes"] and "NOT consistent" in status["value"]
    counts = _one(nb, snapshot, "lamin-consistency-counts")["value"]
    for shown in ("ok: 24", "missing: 1", "orphans: 1", "pending: 0"):
        assert shown in counts
    lists = " ".join(
        m["state"]["value"]
        for m in with_class(nb, "lamin-consistency-details", snapshot)
        for m in descendants(nb, m)
        if m["model_name"] == "HTMLModel"
    )
    assert "Zs9xQ2rT7uVw1yB30000.csv" in lists and "incoming/reading07.csv" in lists


def test_consistency_panel_after_repair_and_confirm_is_consistent(run_notebook):
    nb = run_notebook("consistency.ipynb")
    live = _panel(nb, "live-panel", "lamin-consistency-panel")
    status = _one(nb, live, "lamin-consistency-status")
    assert "lamin-consistent" in status["_dom_classes"] and "are consistent" in status["value"]
    counts = _one(nb, live, "lamin-consistency-counts")["value"]
    for shown in ("ok: 24", "missing: 0", "orphans: 0", "lost: 1"):
        assert shown in counts
    plan = _one(nb, live, "lamin-repair-plan")["value"]
    assert "quarantine orphan" in plan and "mark lost" in plan and "done" in plan
    confirm = _one(nb, live, "lamin-confirm-button")
    assert (
        confirm["layout"] and _layout(nb, confirm)["display"] == "none"
    )  # nothing left to confirm


def _layout(nb: Any, state: dict[str, Any]) -> dict[str, Any]:
    from tests.support.notebooks import widget_models

    return widget_models(nb)[state["layout"].removeprefix("IPY_MODEL_")]["state"]
