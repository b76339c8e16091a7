"""The tutorial notebooks are the docs: each one runs top to bottom in a real kernel.

Every notebook in ``notebooks/`` is executed with nbclient in a kernel with no S3
configuration at all, as on a fresh machine: the notebooks start their own local S3 server and
use the local PostgreSQL; a failing cell (its asserts included) fails the test. The stored
widget state shows what the progress and consistency panels displayed when the cells finished.
Executed copies are kept under ``test-artifacts/notebooks/`` for inspection.
"""

from __future__ import annotations

import os
import urllib.request
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
def run_notebook(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Any]:
    """Execute a notebook once per test session; later calls get the executed notebook."""
    done: dict[str, Any] = {}

    def run(name: str) -> Any:
        if name not in done:
            tmp = tmp_path_factory.mktemp(name.removesuffix(".ipynb"))
            env = kernel_env(tmp)  # no AWS_* at all
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


def test_docs_site_builds_offline_from_the_executed_notebooks(run_notebook):
    """``./scripts/docs``: Sphinx with warnings as errors, no CDN, every internal link works."""
    from tests.support.docs import BUILD, build

    problems = build({name: run_notebook(name) for name in ALL})
    assert problems == []
    acid = (BUILD / "tutorials" / "acid.html").read_text()
    assert "Will data &amp; metadata stay in sync?" in acid
    assert "1 of 3 artifacts could not be saved" in acid
    panels = (BUILD / "tutorials" / "consistency.html").read_text()
    assert "application/vnd.jupyter.widget-state+json" in panels  # rendered from saved state
    assert "_static/widgets/embed-amd.js" in panels  # by the renderer shipped with the site
    api = (BUILD / "generated" / "api.html").read_text()
    assert "lamin_nb.Artifact" in api and "Parameters" in api
    for page in ("tutorials.html", "design.html", "performance.html", "generated/cli.html"):
        assert (BUILD / page).is_file(), page


def test_a_tutorial_stopped_half_way_leaves_nothing_behind(tmp_path):
    """Setup as the tutorials do it, then a failing cell: the kernel's exit cleans up."""
    import psycopg

    from tests.support.notebooks import code_notebook, execute
    from tests.support.servers import PG_URL

    nb = code_notebook(
        "from lamin_nb.testing import local_postgres, local_s3, scratch_dir\n"
        "workdir = scratch_dir('lamin-halfway-')\n"
        "server = local_s3()\n"
        "bucket = server.new_bucket()\n"
        "pg = local_postgres()\n"
        "import lamin_nb as ln\n"
        "ln.init(storage=f's3://{bucket}/x', db=pg.url)\n"
        "print('STATE', workdir, pg.name, server.endpoint)",
        "raise RuntimeError('the tutorial stops here')",
    )
    nb.cells[1].metadata["tags"] = ["raises-exception"]
    executed = execute(nb, tmp_path, kernel_env(tmp_path), timeout=120)
    state = next(o["text"] for o in executed.cells[0].outputs if "STATE" in o.get("text", ""))
    workdir, database, endpoint = state.split("STATE ", 1)[1].split()
    assert (
        "no endpoint configured; started a local S3 server" in executed.cells[0].outputs[0]["text"]
    )
    assert not os.path.exists(workdir)
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        rows = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
        assert rows.fetchall() == []
    with pytest.raises(OSError):
        urllib.request.urlopen(endpoint + "/moto-api/", timeout=2)


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
