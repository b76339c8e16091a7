"""The JupyterLab extension as a person uses it: the Lamin sidebar, the status bar, Save to Lamin.

One JupyterLab for the module, on a settings folder with three instances made the way a user
would (in a separate process): ``lab`` (the default; a few files, one saved twice), ``big``
(10,000 artifacts) and ``s3lab`` (moto, with a bucket policy that denies one file's upload).
Screenshots go to ``test-artifacts/browser/``; the sidebar's first-render time with 10,000
artifacts is written to ``test-artifacts/browser/sidebar-render.json``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import SHOTS
from tests.support.jupyter import NO_NEWS, JupyterProcess, isolated_env

pytestmark = pytest.mark.browser

N_BIG = 10_000
N_PLATE = 50
DENIED = "well_17.denied"
ROW = ".lamin-sidebar .lamin-panel:not([hidden]) .lamin-row:not(.lamin-row-loading)"


def _setup_instances(home: Path, work: Path, bucket: str) -> None:
    """Runs in its own process, as a user's session would."""
    code = textwrap.dedent(f"""
        import os, lamin_nb as ln
        work = {str(work)!r}
        os.makedirs(os.path.join(work, "big"))
        for i in range({N_BIG}):
            with open(os.path.join(work, "big", "f%05d.txt" % i), "w") as fh:
                fh.write("artifact %d" % i)
        ln.init(storage=f"s3://{bucket}/lab", name="s3lab")
        ln.init(storage=os.path.join(work, "big-storage"), name="big")
        ln.save(ln.Artifact.from_dir(os.path.join(work, "big"), key="bulk"))
        ln.init(storage=os.path.join(work, "storage"), name="lab")
        for name, key, text in [
            ("a.csv", "raw/a.csv", "x,y\\n1,2\\n"),
            ("b.csv", "raw/b.csv", "x,y\\n3,4\\n"),
            ("summary.txt", "results/summary.txt", "all good"),
            ("a2.csv", "raw/a.csv", "x,y\\n1,2\\n5,6\\n"),
        ]:
            path = os.path.join(work, name)
            open(path, "w").write(text)
            ln.Artifact(path, key=key, description="from the setup").save()
    """)
    env = isolated_env(work / "setup-jupyter", LAMIN_NB_HOME=str(home))
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)


@pytest.fixture(scope="module")
def lab_ext(s3_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("labext")
    root, home, jhome = work / "root", work / "lamin-home", work / "jhome"
    bucket = s3_server.new_bucket()
    s3_server.client().put_bucket_policy(
        Bucket=bucket,
        Policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "s3:PutObject",
                        "Resource": f"arn:aws:s3:::{bucket}/lab/.lamindb/*.denied*",
                    }
                ],
            }
        ),
    )
    _setup_instances(home, work, bucket)
    plates = root / "plates"
    plates.mkdir(parents=True)
    for i in range(N_PLATE):
        name = DENIED if i == 17 else f"well_{i:02d}.txt"
        (plates / name).write_bytes(b"well %d " % i * (i + 1))
    import nbformat

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("")])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(notebook, root / "load.ipynb")
    env = isolated_env(jhome, LAMIN_NB_HOME=str(home))
    env.pop("LAMIN_NB_INSTANCE", None)
    env.pop("LAMIN_NB_FAULT", None)
    overrides = {**NO_NEWS, "@lamin-nb/jupyterlab:plugin": {"statusInterval": 2}}
    (jhome / "config" / "labconfig" / "default_setting_overrides.json").write_text(
        json.dumps(overrides)
    )
    # every status poll may start the server's background check (default: every 300 s), and
    # each one is a full check (default: incremental, full once an hour): the tests plant
    # objects behind lamin_nb's back, which only a full check finds
    extra = ["--LaminNb.check_interval=0", "--LaminNb.full_check_interval=0"]
    server = JupyterProcess(root, jhome, env, lab=True, extra_args=extra)
    server.start()
    yield {"server": server, "root": root, "home": home, "work": work, "bucket": bucket}
    server.stop()
    assert server.leftovers == [], f"processes left behind by JupyterLab: {server.leftovers}"


class Lab:
    """JupyterLab in the page, driven by clicks and keys (``window.jupyterapp`` only to wait)."""

    def __init__(self, page: Any, lab_ext: dict[str, Any]) -> None:
        self.page, self.ext = page, lab_ext
        self.errors: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

    def open(self, path: str = "") -> Lab:
        server = self.ext["server"]
        url = f"{server.base}/lab/tree/{path}" if path else f"{server.base}/lab"
        self.page.goto(f"{url}?token={server.token}&reset")
        self.page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell")
        self.page.wait_for_selector(".lamin-status")
        return self

    def sidebar(self) -> Any:
        tab = self.page.locator('.jp-SideBar.jp-mod-left li[data-id="lamin-sidebar"]')
        if "lm-mod-current" not in (tab.get_attribute("class") or ""):
            tab.click()
        self.page.wait_for_selector("#lamin-sidebar .lamin-instance-title")
        return self.page.locator("#lamin-sidebar")

    def tab(self, name: str) -> None:
        self.page.locator(f'#lamin-sidebar .lamin-tab[data-tab="{name}"]').click()

    def keys(self) -> list[str]:
        return self.page.locator(f"{ROW} .lamin-row-key").all_inner_texts()

    def wait_keys(self, expected: list[str]) -> None:
        self.page.wait_for_function(
            """([sel, want]) => JSON.stringify([...document.querySelectorAll(sel)]
                 .map(e => e.textContent)) === JSON.stringify(want)""",
            arg=[f"{ROW} .lamin-row-key", expected],
        )

    def status_text(self) -> str:
        return self.page.locator(".lamin-status").inner_text()

    def wait_status(self, prefix: str) -> str:
        self.page.wait_for_function(
            "(p) => document.querySelector('.lamin-status').textContent.startsWith(p)",
            arg=prefix,
            timeout=60_000,
        )
        return self.status_text()

    def pick_instance(self, name: str) -> None:
        self.page.locator("#lamin-sidebar .lamin-instance-picker").select_option(name)
        self.page.wait_for_function(
            "(n) => document.querySelector('.lamin-instance-picker').value === n", arg=name
        )

    def our_errors(self) -> list[str]:
        return [e for e in self.errors if "lamin" in e.lower()]


def _brightness(css_color: str) -> float:
    inside = css_color[css_color.index("(") + 1 : css_color.index(")")]
    return sum(float(c) for c in inside.split(",")[:3]) / 3


@pytest.fixture
def lab(page: Any, lab_ext: dict[str, Any]) -> Lab:
    return Lab(page, lab_ext)


def test_sidebar_lists_filters_and_shows_details(lab, page):
    lab.open()
    sidebar = lab.sidebar()
    card = sidebar.locator(".lamin-instance").inner_text()
    assert "lab (default)" in sidebar.locator(".lamin-instance-picker").inner_text()
    assert "local folder" in card and "SQLite" in card
    # newest first: raw/a.csv was saved again last
    lab.wait_keys(["raw/a.csv", "results/summary.txt", "raw/b.csv", "raw/a.csv"])
    assert sidebar.locator(".lamin-summary").first.inner_text() == "4 artifacts"
    lab.wait_status("lamin ✓")
    page.screenshot(path=str(SHOTS / "labext-sidebar.png"))  # the docs' first picture

    search = sidebar.locator(".lamin-panel:not([hidden]) .lamin-search")
    search.fill("raw/")
    lab.wait_keys(["raw/a.csv", "raw/b.csv", "raw/a.csv"])
    assert "3 artifacts under “raw/”" in sidebar.locator(".lamin-summary").first.inner_text()

    # keyboard: from the search box down into the list, Enter opens the detail
    search.press("ArrowDown")
    page.keyboard.press("Enter")
    detail = sidebar.locator(".lamin-detail")
    detail.locator(".lamin-versions li").nth(1).wait_for()
    text = detail.inner_text()
    assert "raw/a.csv" in text and "from the setup" in text and "blake3:" in text
    assert [li.split(" ")[0] for li in detail.locator(".lamin-versions li").all_inner_texts()] == [
        "v2",
        "v1",
    ]
    detail.locator(".lamin-versions button", has_text="v1").click()
    page.wait_for_function(
        "() => (document.querySelector('.lamin-versions .lamin-mod-current')"
        " || {textContent: ''}).textContent.startsWith('v1')"  # none while the detail reloads
    )
    detail.locator(".lamin-copy").click()
    assert detail.locator(".lamin-message").inner_text().startswith("copied ")
    sidebar.screenshot(path=str(SHOTS / "labext-detail.png"))
    assert lab.our_errors() == []


def test_trash_and_restore_ask_first(lab, page):
    lab.open()
    sidebar = lab.sidebar()
    lab.wait_keys(["raw/a.csv", "results/summary.txt", "raw/b.csv", "raw/a.csv"])
    sidebar.locator(ROW.replace(".lamin-sidebar ", ""), has_text="results/summary.txt").click()
    detail = sidebar.locator(".lamin-detail")
    detail.locator(".lamin-trash").click()
    dialog = page.locator(".jp-Dialog")
    assert "object stays in storage" in dialog.inner_text()
    dialog.locator("button", has_text="Cancel").click()  # nothing happens
    detail.locator(".lamin-trash").click()
    page.locator(".jp-Dialog button", has_text="Move to trash").click()
    detail.locator(".lamin-restore").wait_for()
    assert "moved results/summary.txt to the trash" in detail.locator(".lamin-message").inner_text()
    detail.locator(".lamin-back").click()
    lab.wait_keys(["raw/a.csv", "raw/b.csv", "raw/a.csv"])

    lab.tab("trash")
    lab.wait_keys(["results/summary.txt"])
    sidebar.locator(ROW.replace(".lamin-sidebar ", "")).first.click()
    detail.locator(".lamin-restore").click()
    page.locator(".jp-Dialog button", has_text="Restore").click()
    detail.locator(".lamin-trash").wait_for()
    detail.locator(".lamin-back").click()
    lab.wait_keys([])
    lab.tab("artifacts")
    lab.wait_keys(["raw/a.csv", "results/summary.txt", "raw/b.csv", "raw/a.csv"])
    assert lab.our_errors() == []


def test_insert_load_code_runs_in_the_notebook(lab, page):
    lab.open("load.ipynb")
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell")
    page.wait_for_function(
        "() => { const w = window.jupyterapp.shell.currentWidget;"
        " const k = w && w.sessionContext.session && w.sessionContext.session.kernel;"
        " return !!k && k.status === 'idle'; }"
    )
    sidebar = lab.sidebar()
    lab.wait_keys(["raw/a.csv", "results/summary.txt", "raw/b.csv", "raw/a.csv"])
    sidebar.locator(ROW.replace(".lamin-sidebar ", "")).first.click()
    sidebar.locator(".lamin-insert").click()
    assert "inserted" in sidebar.locator(".lamin-detail .lamin-message").inner_text()
    cell = page.locator(".jp-NotebookPanel .jp-CodeCell").first
    source = cell.locator(".cm-content").inner_text()
    assert 'ln.connect("lab")' in source and "ln.Artifact.get(" in source
    cell.click()
    page.keyboard.press("Shift+Enter")
    output = cell.locator(".jp-OutputArea-output")
    output.wait_for(timeout=120_000)
    page.wait_for_function(
        "() => document.querySelector('.jp-CodeCell .jp-OutputArea-output')"
        ".textContent.includes('.lamindb')"
    )
    text = output.inner_text()
    assert "Error" not in text and str(lab.ext["work"] / "storage" / ".lamindb") in text
    assert lab.our_errors() == []


def test_status_bar_turns_red_on_an_orphan_and_green_after_repair(lab, page):
    lab.open()
    assert lab.wait_status("lamin ✓") == "lamin ✓ 4"
    orphan = lab.ext["work"] / "storage" / ".lamindb" / "ZZZZorphanZZZZZZ0000.bin"
    orphan.write_bytes(b"written behind the database's back")
    # one refresh: the next poll starts a check, the poll after it (1 s) shows its result
    assert lab.wait_status("lamin ✗") == "lamin ✗ 1 orphan"
    assert page.locator(".lamin-status").get_attribute("data-level") == "error"
    page.locator(".lamin-status").click()
    sidebar = page.locator("#lamin-sidebar")
    sidebar.locator(".lamin-verdict.lamin-bad").wait_for()
    assert "orphans (1)" in sidebar.locator(".lamin-report").inner_text()
    sidebar.locator(".lamin-all-leases").check()
    sidebar.locator(".lamin-repair").click()
    plan = sidebar.locator(".lamin-plan")
    plan.locator(".lamin-confirm").wait_for()
    assert f"quarantine orphan: {orphan.name}" in plan.inner_text()
    assert orphan.exists()  # the plan changed nothing
    sidebar.screenshot(path=str(SHOTS / "labext-repair-plan.png"))
    plan.locator(".lamin-confirm").click()
    sidebar.locator(".lamin-verdict.lamin-ok").wait_for()
    assert not orphan.exists()
    assert lab.wait_status("lamin ✓") == "lamin ✓ 4"
    assert lab.our_errors() == []


def test_save_to_lamin_from_the_file_browser_shows_each_file(lab, page):
    lab.open()
    lab.sidebar()
    lab.pick_instance("s3lab")
    page.locator(".jp-SideBar.jp-mod-left li[data-id='filebrowser']").click()
    folder = page.locator(".jp-DirListing-item", has_text="plates")
    folder.click(button="right")
    page.locator(".lm-Menu-item", has_text="Save to Lamin…").click()
    dialog = page.locator(".jp-Dialog")
    assert "“s3lab”" in dialog.inner_text()
    dialog.locator(".lamin-save-prefix").fill("screens/run1")
    dialog.screenshot(path=str(SHOTS / "labext-save-dialog.png"))
    dialog.locator("button", has_text="Save").click()
    sidebar = lab.sidebar()
    job = sidebar.locator(".lamin-job").first
    page.wait_for_function(
        "() => { const j = document.querySelector('.lamin-job');"
        " return !!j && /lamin-job-(done|failed)/.test(j.className); }",
        timeout=180_000,
    )
    items = job.locator(".lamin-item")
    assert items.count() == N_PLATE
    assert job.locator(".lamin-item[data-state='saved']").count() == N_PLATE - 1
    failed = job.locator(".lamin-item[data-state='failed']")
    assert failed.count() == 1
    text = failed.inner_text()
    assert f"screens/run1/plates/{DENIED}" in text and "Access Denied" in text
    color = failed.evaluate("(e) => getComputedStyle(e).color")
    r, g, b = (float(c) for c in color[color.index("(") + 1 : color.index(")")].split(",")[:3])
    assert r > 150 and g < 120 and b < 120, f"the failed item is not red: {color}"
    assert "lamin-bad" in job.locator(".lamin-bar").get_attribute("class")
    job.screenshot(path=str(SHOTS / "labext-save-progress.png"))
    lab.tab("artifacts")
    page.wait_for_function(
        "() => document.querySelector('.lamin-panel:not([hidden]) .lamin-summary')"
        f".textContent === '{N_PLATE - 1} artifacts'"
    )
    assert lab.our_errors() == []


def test_ten_thousand_artifacts_render_at_once_and_scroll(lab, page):
    lab.open()
    sidebar = lab.sidebar()
    lab.wait_keys(["raw/a.csv", "results/summary.txt", "raw/b.csv", "raw/a.csv"])
    started = page.evaluate("() => performance.now()")
    lab.pick_instance("big")
    page.wait_for_function(
        "() => document.querySelector('.lamin-panel:not([hidden]) .lamin-summary')"
        ".textContent === '10,000 artifacts'"
    )
    first_row = page.evaluate("() => performance.now()")
    render_ms = float(
        sidebar.locator(".lamin-panel:not([hidden]) .lamin-artifacts").get_attribute(
            "data-render-ms"
        )
    )
    assert lab.keys()[0] == "bulk/f09999.txt"
    # a virtual list: a screenful of rows in the DOM, not 10,000
    assert 5 <= page.locator(f"{ROW}").count() <= 80
    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS / "sidebar-render.json").write_text(
        json.dumps(
            {
                "artifacts": N_BIG,
                "first_render_ms": round(render_ms, 1),
                "instance_switch_to_rows_ms": round(first_row - started, 1),
            }
        )
    )
    print(f"\nsidebar first render with {N_BIG} artifacts: {render_ms:.0f} ms")
    # the end of the list loads when scrolled to
    list_ = sidebar.locator(".lamin-panel:not([hidden]) .lamin-list")
    list_.evaluate("(e) => { e.scrollTop = e.scrollHeight; }")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.lamin-row-key')]"
        ".some(e => e.textContent === 'bulk/f00000.txt')"
    )
    lab.pick_instance("lab")
    assert lab.our_errors() == []


def test_dark_theme(lab, page):
    lab.open()
    sidebar = lab.sidebar()
    lab.wait_keys(["raw/a.csv", "results/summary.txt", "raw/b.csv", "raw/a.csv"])
    page.evaluate(
        "() => window.jupyterapp.commands.execute('apputils:change-theme',"
        " {theme: 'JupyterLab Dark'})"
    )
    # the theme's stylesheet applies after its attribute: wait for the sidebar to turn dark
    page.wait_for_function(
        "() => { const [r, g, b] = getComputedStyle(document.querySelector('#lamin-sidebar'))"
        ".backgroundColor.match(/\\d+/g).map(Number); return r + g + b < 240; }"
    )
    text = sidebar.locator(".lamin-row-key").first.evaluate("(e) => getComputedStyle(e).color")
    assert _brightness(text) > 150, text
    page.screenshot(path=str(SHOTS / "labext-dark.png"))
    page.evaluate(
        "() => window.jupyterapp.commands.execute('apputils:change-theme',"
        " {theme: 'JupyterLab Light'})"
    )
    assert lab.our_errors() == []
