"""What a saved notebook keeps: a real kernel runs saves that succeed, fail validation, are
interrupted (a real SIGINT) and meet a database that refuses connections, plus a consistency
panel repaired and an upload made in later cells. The executed notebook is written to disk
and read back, and the ``text/plain`` of every lamin output (what GitHub, nbviewer, nbconvert
without widget state and a text diff show) must be each panel's final state, like its saved
widget state. A kernel without ipywidgets still saves, with text progress.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import nbformat
import pytest

from tests.support.faults_env import allow_connections
from tests.support.notebooks import (
    VIEW,
    code_notebook,
    execute,
    kernel_env,
    stream_text,
    with_class,
)
from tests.support.servers import PG_URL

RAISES = "raises-exception"


def cell(source: str, *tags: str) -> Any:
    return nbformat.v4.new_code_cell(source, metadata={"tags": list(tags)})


def lamin_outputs(nb: Any) -> list[tuple[int, str]]:
    """(cell index, text/plain) of every widget output of the notebook."""
    return [
        (index, out["data"]["text/plain"])
        for index, c in enumerate(nb.cells)
        for out in c.get("outputs", [])
        if VIEW in out.get("data", {})
    ]


def panel_cells(storage: Path, pg_url: str, src: Path) -> list[Any]:
    admin = PG_URL
    db = pg_url.rsplit("/", 1)[1]
    return [
        cell("%load_ext lamin_nb"),
        cell(f"%lamin_init --storage {storage} --db {pg_url}"),
        cell(f"ok = %lamin_save {src}/a.csv --key ok.csv"),  # 2: saved
        cell(  # 3: invalid at save time (the file went away after the artifact was made)
            f"import os, lamin_nb as ln\ngone = ln.Artifact('{src}/b.csv', key='gone.csv')\n"
            f"os.remove('{src}/b.csv')"
        ),
        cell("%lamin_save gone", RAISES),  # 4: nothing saved: validation
        cell(  # 5: a real Ctrl-C while the bytes go through
            "import signal, threading\n"
            "from IPython.display import display\n"
            "from lamin_nb.widgets import SaveProgress\n"
            "class CtrlC(SaveProgress):\n"
            "    sent = False\n"
            "    def advance(self, index, nbytes):\n"
            "        super().advance(index, nbytes)\n"
            "        if not self.sent:\n"
            "            self.sent = True\n"
            "            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)\n"
            "progress = CtrlC()\n"
            "display(progress)\n"
            f"ln.save([ln.Artifact('{src}/big.bin', key='big.bin')], callback=progress)",
            RAISES,
        ),
        cell(  # 6: the database goes down (after the artifact was made)
            f"late = ln.Artifact('{src}/c.csv', key='down.csv')\n"
            "import psycopg\n"
            f"with psycopg.connect({admin!r}, autocommit=True) as admin:\n"
            f"    admin.execute('ALTER DATABASE \"{db}\" WITH ALLOW_CONNECTIONS false')\n"
            '    admin.execute("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity'
            f" WHERE datname = '{db}' AND pid <> pg_backend_pid()\")"
        ),
        cell("%lamin_save late", RAISES),  # 7: nothing saved: the database is down
        cell(
            "with psycopg.connect(%r, autocommit=True) as admin:\n"
            "    admin.execute('ALTER DATABASE \"%s\" WITH ALLOW_CONNECTIONS true')" % (admin, db)
        ),
        cell(f"open('{storage}/.lamindb/stray.bin', 'wb').write(b'orphan')"),
        cell("%lamin_check"),  # 10: shown NOT consistent ...
        cell(  # ... then repaired by later cells: its saved text follows
            "panel = _\npanel.parts.grace.value = 0\npanel.show_plan()\npanel.apply_plan()"
        ),
        cell("%lamin_upload --key uploads"),  # 12: a picker, then files picked and saved
        cell(
            "up = _\nup.picker.set_state({'value': [{'name': 'u.csv', 'type': 'text/csv',"
            " 'size': 3, 'content': memoryview(b'1,2'), 'last_modified': 1700000000000}]})\n"
            "up.save()"
        ),
    ]


@pytest.fixture
def src(tmp_path: Path) -> Path:
    folder = tmp_path / "src"
    folder.mkdir()
    for name in ("a.csv", "b.csv", "c.csv"):
        (folder / name).write_bytes(os.urandom(512))
    (folder / "big.bin").write_bytes(os.urandom(8 << 20))
    return folder


def test_saved_notebook_shows_every_panel_in_its_final_state(tmp_path, src, pg_url):
    nb = nbformat.v4.new_notebook(cells=panel_cells(tmp_path / "storage", pg_url, src))
    try:
        execute(nb, tmp_path, kernel_env(tmp_path), timeout=180)
    finally:
        allow_connections(pg_url, True)
    path = tmp_path / "saved.ipynb"
    nbformat.write(nb, path)
    nb = nbformat.read(path, as_version=4)  # what GitHub and nbviewer get

    texts = dict(lamin_outputs(nb))
    assert sorted(texts) == [2, 4, 5, 7, 10, 12]
    for index, text in texts.items():
        assert "waiting to start" not in text and "(running)" not in text, (index, text)
    assert texts[2].startswith("saving 100%|") and "(done): saved 1" in texts[2]
    assert texts[4].startswith("saving: nothing saved: item 0 (gone.csv): file ")
    assert texts[5].startswith("saving: nothing saved: save interrupted (KeyboardInterrupt)")
    assert "big.bin  8.0 MiB  failed: KeyboardInterrupt" in texts[5]
    assert texts[7].startswith("saving: nothing saved: ")
    assert "not currently accepting connections" in texts[7]
    assert texts[10].startswith("storage and database are consistent")
    assert "repair applied: quarantine orphan x1" in texts[10] and "stray.bin" in texts[10]
    assert "saved 1 file(s)" in texts[12] and "uploads/u.csv" in texts[12]

    # the saved widget state says the same as the text
    for index in (4, 5, 7):
        (panel,) = _models_of(nb, index)
        (header,) = with_class(nb, "lamin-save-header", panel)
        assert "nothing saved: " in header["state"]["value"]
        assert "var(--jp-error-color1" in header["state"]["value"]
        (overall,) = with_class(nb, "lamin-save-overall", panel)
        assert overall["state"]["bar_style"] == "danger"
    (status,) = with_class(nb, "lamin-consistency-status", _models_of(nb, 10)[0])
    assert "lamin-consistent" in status["state"]["_dom_classes"]
    assert "var(--jp-success-color1" in status["state"]["value"]


def _models_of(nb: Any, index: int) -> list[dict[str, Any]]:
    from tests.support.notebooks import widget_models

    models = widget_models(nb)
    return [
        models[out["data"][VIEW]["model_id"]]
        for out in nb.cells[index].get("outputs", [])
        if VIEW in out.get("data", {})
    ]


def test_a_kernel_without_ipywidgets_saves_with_text_progress(tmp_path, src):
    nb = code_notebook(
        "import sys; sys.modules['ipywidgets'] = None  # as if it were not installed",
        "%load_ext lamin_nb",
        f"%lamin_init --storage {tmp_path / 'storage'}",
        f"a = %lamin_save {src}/a.csv --key a.csv",
        "assert a.status == 'committed', a.status",
    )
    execute(nb, tmp_path, kernel_env(tmp_path), timeout=120)
    text = stream_text(nb)
    assert "[1/1] a.csv saved" in text and "progress shown as text" in text
    assert "pip install 'lamin_nb[jupyter]'" in text
    assert lamin_outputs(nb) == []
