"""Files dropped from the desktop onto the Lamin sidebar (headless Chromium, real JupyterLab).

A drop is a real ``drop`` event whose DataTransfer holds files from disk (picked through a
file input the test adds to the page, as the desktop hands them over); Resume after a reload
picks the file again with the file chooser, as a person does. Screenshots go to
``test-artifacts/browser/`` (the docs use a few of them: ``docs/images/``).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import SHOTS
from tests.browser.test_upload_browser import (
    HoldChunks,
    MiB,
    big_file,
    objects,
    rows,
    sha256,
    staged_files,
    staging,
)
from tests.support.jupyter import JupyterProcess, isolated_env

pytestmark = pytest.mark.browser
GiB = 1024 * MiB
INSTANCE = "drops"
SIDEBAR = "#lamin-sidebar"
ROW = ".lamin-upload"

DROP = """(target) => {
  const input = document.getElementById('test-desktop');
  const data = new DataTransfer();
  for (const file of input.files) data.items.add(file);
  input.remove();
  const node = document.querySelector(target);
  for (const type of ['dragenter', 'dragover', 'drop']) {
    node.dispatchEvent(new DragEvent(type, {bubbles: true, cancelable: true, dataTransfer: data}));
  }
}"""


@dataclass
class DropLab:
    server: JupyterProcess
    storage: Path


@pytest.fixture(scope="module")
def drop_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DropLab]:
    """JupyterLab whose server extension saves into a local instance ``drops``."""
    work = tmp_path_factory.mktemp("dropzone")
    root, jhome = work / "root", work / "jhome"
    root.mkdir()
    env = isolated_env(jhome, LAMIN_NB_HOME=str(work / "lamin-home"))
    env.pop("LAMIN_NB_INSTANCE", None)
    env.pop("LAMIN_NB_FAULT", None)
    init = ["init", "--storage", str(work / "storage"), "--name", INSTANCE]
    subprocess.run(
        [sys.executable, "-m", "lamin_nb.cli", *init], env=env, check=True, capture_output=True
    )
    server = JupyterProcess(root, jhome, env, lab=True, extra_args=["--LaminNb.check_interval=0"])
    server.start()
    yield DropLab(server, work / "storage")
    server.stop()
    assert server.leftovers == [], f"processes left behind by JupyterLab: {server.leftovers}"


def open_uploads(page: Any, lab: JupyterProcess) -> Any:
    page.goto(f"{lab.base}/lab?token={lab.token}&reset")
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell")
    page.locator('.jp-SideBar.jp-mod-left li[data-id="lamin-sidebar"]').click()
    page.wait_for_selector(f"{SIDEBAR} .lamin-instance-title")
    page.locator(f'{SIDEBAR} .lamin-tab[data-tab="uploads"]').click()
    return page.locator(SIDEBAR)


def drop(page: Any, paths: list[Path], onto: str = f"{SIDEBAR} .lamin-instance") -> None:
    """Files from disk dropped onto the sidebar: the DataTransfer is built in the page."""
    page.evaluate(
        "() => { const i = document.createElement('input'); i.type = 'file'; i.multiple = true;"
        " i.id = 'test-desktop'; i.hidden = true; document.body.append(i); }"
    )
    page.set_input_files("#test-desktop", [str(p) for p in paths])
    page.evaluate(DROP, onto)


def percent(row: Any) -> int:
    return int(row.locator(".lamin-bar").get_attribute("aria-valuenow"))


def wait_percent(page: Any, at_least: int) -> None:
    page.wait_for_function(
        "(p) => { const b = document.querySelector('#lamin-sidebar .lamin-upload .lamin-bar');"
        " return !!b && Number(b.getAttribute('aria-valuenow')) >= p; }",
        arg=at_least,
        timeout=300_000,
    )


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


class PeakRss:
    """The server's resident memory, sampled every 50 ms while the upload runs."""

    def __init__(self, pid: int) -> None:
        self.pid, self.start, self.peak = pid, rss_bytes(pid), 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)

    def sample(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, rss_bytes(self.pid))
            time.sleep(0.05)

    def __enter__(self) -> PeakRss:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def server_uploads(page: Any, lab: JupyterProcess) -> list[dict[str, Any]]:
    return page.evaluate(
        "async (url) => (await (await fetch(url)).json()).uploads",
        f"{lab.base}/lamin/api/uploads?token={lab.token}",
    )


@pytest.fixture
def files(tmp_path: Path) -> Path:
    return tmp_path


def test_a_1_gib_file_dropped_on_the_sidebar_is_saved_byte_exact(page, drop_lab, files):
    lab, storage = drop_lab.server, drop_lab.storage
    sidebar = open_uploads(page, lab)
    path, digest = big_file(files, "stack.tif", GiB)
    assert lab.proc is not None
    with PeakRss(lab.proc.pid) as memory:
        drop(page, [path])
        row = sidebar.locator(ROW).first
        row.wait_for()
        sidebar.locator(f"{ROW}[data-state='saved']").wait_for(timeout=600_000)
    sidebar.screenshot(path=str(SHOTS / "dropzone-saved.png"))
    grew = memory.peak - memory.start
    print(f"\nserver RSS {memory.start / MiB:.0f} MiB at start, +{grew / MiB:.0f} MiB at peak")
    assert grew < 200 * 10**6, f"the server's memory grew by {grew / MiB:.0f} MiB"
    assert row.get_attribute("data-key") == "stack.tif"
    (stored,) = objects(storage)
    assert stored.suffix == ".tif" and stored.stat().st_size == GiB
    assert sha256(stored) == digest
    assert staged_files(lab) == [] and server_uploads(page, lab) == []
    assert rows(lab, INSTANCE) == 1
    # the artifact list shows it
    page.locator(f'{SIDEBAR} .lamin-tab[data-tab="artifacts"]').click()
    page.wait_for_selector(f"{SIDEBAR} .lamin-row-key:text-is('stack.tif')")


def test_cancel_at_40_percent_leaves_no_row_no_object_no_staged_file(page, drop_lab, files):
    lab, storage = drop_lab.server, drop_lab.storage
    before_rows, before_objects = rows(lab, INSTANCE), objects(storage)
    sidebar = open_uploads(page, lab)
    path, _ = big_file(files, "cancelled.bin", 320 * MiB)
    hold = HoldChunks(page, at=128 * MiB)  # 40 %: chunks of 32 MiB
    drop(page, [path])
    hold.wait(page)
    row = sidebar.locator(ROW).first
    wait_percent(page, 40)
    assert percent(row) == 40 and row.get_attribute("data-state") == "sending"
    assert [p.stat().st_size for p in staged_files(lab)] == [128 * MiB]
    text = row.locator(".lamin-upload-state").inner_text()
    assert "128.0 MiB of 320.0 MiB (40 %)" in text and "/s · " in text and " left" in text, text
    sidebar.screenshot(path=str(SHOTS / "dropzone-uploading.png"))
    row.locator(".lamin-upload-cancel").click()
    row.wait_for(state="detached")
    hold.release()
    page.wait_for_function(
        "async (url) => (await (await fetch(url)).json()).uploads.length === 0",
        arg=f"{lab.base}/lamin/api/uploads?token={lab.token}",
    )
    assert staged_files(lab) == [] and list(staging(lab).glob("*/file")) == []
    assert objects(storage) == before_objects and rows(lab, INSTANCE) == before_rows


def test_a_reload_at_60_percent_lists_the_upload_and_resume_finishes_it(page, drop_lab, files):
    lab, storage = drop_lab.server, drop_lab.storage
    before_rows = rows(lab, INSTANCE)
    sidebar = open_uploads(page, lab)
    path, digest = big_file(files, "cells.h5ad", 320 * MiB)
    hold = HoldChunks(page, at=192 * MiB)  # 60 %
    sidebar.locator(".lamin-upload-prefix").fill("runs/7")
    drop(page, [path])
    hold.wait(page)
    wait_percent(page, 60)
    (staged,) = staged_files(lab)
    assert staged.stat().st_size == 192 * MiB
    page.reload()  # the held chunk never reaches the server: 60 % stay staged
    hold.at = 2**62  # (still routed, so the held chunk is not let go) the new page's go through
    sidebar = open_uploads(page, lab)
    paused = sidebar.locator(f"{ROW}[data-state='paused']")
    paused.wait_for()
    assert paused.get_attribute("data-key") == "runs/7/cells.h5ad"
    assert percent(paused) == 60
    assert "Uploads (1)" in sidebar.locator(".lamin-tab[data-tab='uploads']").inner_text()
    assert "paused: Resume and pick the same file" in paused.inner_text()
    sidebar.screenshot(path=str(SHOTS / "dropzone-resume.png"))
    with page.expect_file_chooser() as chooser:
        paused.locator(".lamin-upload-resume").click()
    chooser.value.set_files(str(path))
    sidebar.locator(f"{ROW}[data-state='saved']").wait_for(timeout=300_000)
    assert rows(lab, INSTANCE) == before_rows + 1
    saved = [p for p in objects(storage) if p.suffix == ".h5ad"]
    assert len(saved) == 1 and sha256(saved[0]) == digest
    assert staged_files(lab) == [] and server_uploads(page, lab) == []
    hold.release()  # the old page's chunk, held since the reload: nowhere to go now


def test_a_dropped_folder_keeps_its_paths_as_keys(page, drop_lab, files):
    """The Upload folder button (a folder picker): each file under its path in the folder."""
    lab = drop_lab.server
    sidebar = open_uploads(page, lab)
    folder = files / "plate1"
    (folder / "wells").mkdir(parents=True)
    (folder / "layout.csv").write_text("well,drug\nA1,none\n")
    (folder / "wells" / "A1.txt").write_text("A1 reads")
    with page.expect_file_chooser() as chooser:
        sidebar.locator(".lamin-upload-folder").click()
    chooser.value.set_files(str(folder))
    page.wait_for_function(
        "() => document.querySelectorAll(\"#lamin-sidebar .lamin-upload[data-state='saved']\")"
        ".length === 2",
        timeout=120_000,
    )
    keys = sorted(
        sidebar.locator(f"{ROW}[data-state='saved']").evaluate_all(
            "(rows) => rows.map(r => r.dataset.key)"
        )
    )
    assert keys == ["plate1/layout.csv", "plate1/wells/A1.txt"]
