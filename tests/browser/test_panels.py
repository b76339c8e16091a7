"""Every panel in every final state, in JupyterLab's light and dark theme (headless Chromium).

A notebook written here shows: a save that succeeded (short and very long keys), saves that
saved nothing because of a validation error, a real Ctrl-C and a database that refuses
connections, a consistency panel NOT consistent (with its repair plan) and one consistent,
an upload that worked and one that did not. For each theme the test takes a screenshot of
each panel (``test-artifacts/browser/panel-<state>-<theme>.png``) and checks that every
coloured status line has exactly the colour of the theme's variable (--jp-error-color1,
--jp-warn-color1, --jp-success-color1), that the item bars line up whatever the key's
length, and that the repair plan wraps between words.
"""

from __future__ import annotations

from typing import Any

import nbformat
import pytest

from tests.browser.conftest import SHOTS
from tests.browser.labpage import NotebookPage

pytestmark = pytest.mark.browser

NOTEBOOK = "panels-final-states.ipynb"
LONG_KEY = "a/very/long/key/that/goes/on/and/on/in/nested/folders/results-final-v2-2024.csv"

SETUP = """\
import os, secrets, shutil, signal, tempfile, threading
from pathlib import Path
import psycopg
from IPython.display import display
work = Path(tempfile.mkdtemp(prefix="lamin-panels-"))
os.environ["LAMIN_NB_HOME"] = str(work / "home")
admin = os.environ.get("LAMIN_NB_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
db = f"lamin_panels_{secrets.token_hex(4)}"
with psycopg.connect(admin, autocommit=True) as conn:
    conn.execute(f'CREATE DATABASE "{db}"')
import lamin_nb as ln
from lamin_nb.widgets import ConsistencyPanel, SaveProgress, UploadWidget
ln.init(storage=str(work / "storage"), db=admin.rsplit("/", 1)[0] + "/" + db)

def src(name, size=2048):
    path = work / "src" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(os.urandom(size))
    return path

def attempt(save):
    try:
        save()
    except BaseException as exc:  # the panel above says what happened
        print("stopped:", type(exc).__name__)

def shown(widget, name):
    widget.add_class("panel-" + name)
    display(widget)
    return widget

def outage(allowed):
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{db}" WITH ALLOW_CONNECTIONS {str(allowed).lower()}')
        if not allowed:
            conn.execute("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                         f" WHERE datname = '{db}' AND pid <> pg_backend_pid()")
"""

SAVED = f"""\
saved = shown(SaveProgress(title="saving"), "saved")
ln.save([ln.Artifact(src("a.csv"), key="a.csv"),
         ln.Artifact(src("b.csv", 300_000), key="{LONG_KEY}")], callback=saved)
"""

VALIDATION = """\
gone = ln.Artifact(src("gone.csv"), key="gone.csv")
os.remove(work / "src" / "gone.csv")
attempt(lambda: ln.save([gone], callback=shown(SaveProgress(), "validation")))
"""

INTERRUPT = """\
class CtrlC(SaveProgress):
    sent = False
    def advance(self, index, nbytes):
        super().advance(index, nbytes)
        if not self.sent:
            self.sent = True
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

big = ln.Artifact(src("big.bin", 8 << 20), key="big.bin")
attempt(lambda: ln.save([big], callback=shown(CtrlC(), "interrupt")))
"""

DATABASE_DOWN = """\
late = [ln.Artifact(src("c.csv"), key="c.csv"), ln.Artifact(src("d.csv"), key="d.csv")]
outage(False)
try:
    attempt(lambda: ln.save(late, callback=shown(SaveProgress(), "database-down")))
finally:
    outage(True)
"""

INCONSISTENT = """\
managed = Path(ln.core.instance.current().storage.managed)
(managed / "stray-object-left-by-someone.bin").write_bytes(b"x")
broken = shown(ConsistencyPanel(grace_seconds=0), "inconsistent")
broken.show_plan()
"""

CONSISTENT = """\
fixed = ConsistencyPanel(grace_seconds=0)
fixed.show_plan()
fixed.apply_plan()
shown(fixed, "consistent");
"""

UPLOAD = """\
def pick(widget, name, data):
    widget.picker.set_state({"value": [{"name": name, "type": "text/csv", "size": len(data),
                             "content": memoryview(data), "last_modified": 1700000000000}]})
    widget.save()

pick(shown(UploadWidget(key_prefix="uploads"), "upload-ok"), "up.csv", b"well,od\\nB7,0.6\\n")
pick(shown(UploadWidget(key_prefix="../outside"), "upload-error"), "x.csv", b"1")
"""

CLEANUP = """\
from lamin_nb.core import instance
instance.current().close()
with psycopg.connect(admin, autocommit=True) as conn:
    conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
shutil.rmtree(work, ignore_errors=True)
"""

# panel -> the tones its status lines must show
PANELS = {
    "saved": {"ok"},
    "validation": {"error"},
    "interrupt": {"error"},
    "database-down": {"error"},
    "inconsistent": {"error", "warn"},
    "consistent": {"ok"},
    "upload-ok": {"ok"},
    "upload-error": {"error"},
}

TONE_COLOURS = """(root) => {
  const vars = {error: '--jp-error-color1', warn: '--jp-warn-color1', ok: '--jp-success-color1'};
  const probe = document.createElement('span');
  document.body.appendChild(probe);
  const found = [];
  for (const el of root.querySelectorAll('[class*="lamin-tone-"]')) {
    if (!el.getClientRects().length) continue;  // hidden parts say nothing
    const tone = [...el.classList].find(c => c.startsWith('lamin-tone-')).slice(11);
    probe.style.color = `var(${vars[tone]})`;
    found.push({tone, colour: getComputedStyle(el).color, expected: getComputedStyle(probe).color,
                variable: getComputedStyle(document.body).getPropertyValue(vars[tone]).trim(),
                text: el.innerText.slice(0, 80)});
  }
  probe.remove();
  return found;
}"""

BAR_BOXES = """(root) => [...root.querySelectorAll('.lamin-item-row')].map(row => {
  const bar = row.querySelector('.lamin-item-bar').getBoundingClientRect();
  const name = row.querySelector('.lamin-item-name').getBoundingClientRect();
  return {left: Math.round(bar.left), width: Math.round(bar.width), nameRight: name.right,
          barLeft: bar.left};
})"""

PLAN_STYLE = """(root) => {
  const pre = root.querySelector('.lamin-repair-plan pre');
  const s = getComputedStyle(pre);
  const overflows = pre.scrollWidth > pre.clientWidth;
  return {whiteSpace: s.whiteSpace, wordBreak: s.wordBreak, overflows};
}"""

SET_THEME = """async (theme) => {
  await window.jupyterapp.commands.execute('apputils:change-theme', {theme});
}"""


def write_notebook(root: Any) -> None:
    sources = [SETUP, SAVED, VALIDATION, INTERRUPT, DATABASE_DOWN, INCONSISTENT, CONSISTENT]
    cells = [nbformat.v4.new_code_cell(s) for s in [*sources, UPLOAD]]
    cells.append(nbformat.v4.new_code_cell(CLEANUP, metadata={"tags": ["cleanup"]}))
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, root / NOTEBOOK)


def test_panels_in_each_final_state_in_light_and_dark(page, lab):
    write_notebook(lab.root)
    nb = NotebookPage(page, lab, NOTEBOOK).open()
    nb.run_until("cleanup")
    try:
        page.locator(".panel-upload-error .lamin-status-error").wait_for()
        for theme, label in (("JupyterLab Light", "light"), ("JupyterLab Dark", "dark")):
            page.evaluate(SET_THEME, theme)
            page.wait_for_function("(t) => document.body.dataset.jpThemeName === t", arg=theme)
            for name, tones in PANELS.items():
                panel = page.locator(f".panel-{name}").first
                panel.scroll_into_view_if_needed()
                panel.screenshot(path=str(SHOTS / f"panel-{name}-{label}.png"))
                found = panel.evaluate(TONE_COLOURS)
                assert {f["tone"] for f in found} == tones, (name, label, found)
                for line in found:
                    assert line["variable"], (name, label, line)  # the theme defines it
                    assert line["colour"] == line["expected"], (name, label, line)
            check_layout(page)
    finally:
        page.evaluate(SET_THEME, "JupyterLab Light")
    for name in ("validation", "interrupt", "database-down"):
        header = page.locator(f".panel-{name} .lamin-save-header").text_content()
        assert "nothing saved: " in header, (name, header)
    assert saved_text(page, "inconsistent")[0].startswith("storage and database are NOT")

    # a click in the page (no cell runs): the text Lab will save follows the panel too
    panel = page.locator(".panel-inconsistent").first
    panel.scroll_into_view_if_needed()
    panel.locator(".lamin-confirm-button").click()
    panel.locator(".lamin-consistency-status.lamin-consistent").wait_for()
    page.wait_for_function(SAVED_TEXT_STARTS, arg=["inconsistent", "storage and database are con"])
    nb.run_tagged("cleanup")


# the text/plain of a panel's output in Lab's notebook model: what Lab writes to the file
SAVED_TEXT = """(name) => {
  const nb = window.jupyterapp.shell.currentWidget.content;
  const cell = nb.widgets.find(c => c.node.querySelector('.panel-' + name));
  return cell.model.outputs.toJSON().map(o => (o.data || {})['text/plain']).filter(Boolean);
}"""
SAVED_TEXT_STARTS = "([name, start]) => (" + SAVED_TEXT + ")(name).some(t => t.startsWith(start))"


def saved_text(page: Any, name: str) -> list[str]:
    return list(page.evaluate(SAVED_TEXT, name))


def check_layout(page: Any) -> None:
    saved = page.locator(".panel-saved").first
    rows = saved.evaluate(BAR_BOXES)
    assert len(rows) == 2
    assert rows[0]["left"] == rows[1]["left"] and rows[0]["width"] == rows[1]["width"], rows
    assert all(r["nameRight"] <= r["barLeft"] + 1 for r in rows), rows  # a long key stays out
    assert LONG_KEY in saved.locator(".lamin-item-name span[title]").nth(1).get_attribute("title")
    plan = page.locator(".panel-inconsistent").first.evaluate(PLAN_STYLE)
    assert plan == {"whiteSpace": "pre-wrap", "wordBreak": "normal", "overflows": False}, plan
