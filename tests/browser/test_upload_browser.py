"""Large uploads from the browser (headless Chromium, real JupyterLab, real files).

The notebook's UploadWidget picks a file like a user (the file chooser), the page sends it in
chunks to the Jupyter server, the kernel saves it; cancel and a page reload midway; and the
server's memory while 1 GiB streams through it. Screenshots: ``test-artifacts/browser/``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import psutil
import pytest

from tests.browser.conftest import SHOTS
from tests.browser.labpage import NotebookPage
from tests.support.jupyter import JupyterProcess

pytestmark = pytest.mark.browser
MiB = 2**20
PICKER = ".lamin-upload-widget .lamin-picker"


def widget_notebook(lab: JupyterProcess, name: str, storage: Path) -> str:
    """A notebook whose kernel saves into its own instance (the server keeps its own)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell(
            f"import lamin_nb as ln\nln.init(storage={str(storage)!r}, name={name!r})\n"
            "from lamin_nb.widgets import UploadWidget"
        ),
        nbformat.v4.new_code_cell('upload = UploadWidget(key_prefix="big")\nupload'),
    ]
    nbformat.write(nb, lab.root / f"{name}.ipynb")
    return f"{name}.ipynb"


def big_file(folder: Path, name: str, size: int) -> tuple[Path, str]:
    """A file of random-looking bytes (1 MiB of randomness, each MiB stamped with its index)."""
    path = folder / name
    with open(path, "wb") as out:
        digest = stamped(os.urandom(MiB), size, out.write)
    return path, digest


def stamped(seed: bytes, size: int, sink: Any = None) -> str:
    """The bytes ``GENERATE`` makes in the page from ``seed``: their SHA-256."""
    block, digest = bytearray(seed), hashlib.sha256()
    for index in range(size // MiB):
        block[:8] = index.to_bytes(8, "little")
        digest.update(block)
        if sink is not None:
            sink(block)
    return digest.hexdigest()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(8 * MiB):
            digest.update(chunk)
    return digest.hexdigest()


def staging(lab: JupyterProcess) -> Path:
    return Path(lab.env["LAMIN_NB_HOME"]) / "uploads"


def staged_files(lab: JupyterProcess) -> list[Path]:
    return [p for p in staging(lab).glob("*/file/*")] if staging(lab).exists() else []


def objects(storage: Path) -> list[Path]:
    managed = storage / ".lamindb"
    return [p for p in managed.iterdir() if p.is_file()] if managed.exists() else []


def rows(lab: JupyterProcess, name: str) -> int:
    """Every row of the kernel's instance, whatever its state (pending included)."""
    code = (
        "import lamin_nb as ln\n"
        "from lamin_nb.core.instance import current\n"
        "from lamin_nb.core.models import ArtifactRow\n"
        "from sqlalchemy import func, select\n"
        f"ln.connect({name!r})\n"
        "with current().db.read() as s: print(s.scalar(select(func.count(ArtifactRow.id))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=lab.env, capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip().splitlines()[-1])


def open_widget(page: Any, lab: JupyterProcess, notebook: str) -> Any:
    nb = NotebookPage(page, lab, notebook).open()
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    picker = page.locator(PICKER).first
    picker.wait_for()
    page.locator(f"{PICKER}[data-mode='chunked']").wait_for()  # the server route was found
    nb.assert_no_errors()
    return page.locator(".lamin-upload-widget").first


def pick(page: Any, widget: Any, path: Path) -> None:
    with page.expect_file_chooser() as chooser:
        widget.locator(".lamin-picker-button").click()
    chooser.value.set_files(str(path))


class HoldChunks:
    """Holds the chunk PUT at or past ``at`` bytes in the browser, so a test acts midway.

    (Playwright's request interception; the chunk's bytes stay in Chromium.)
    """

    def __init__(self, page: Any, at: int) -> None:
        self.at, self.held = at, []
        page.route("**/lamin/api/uploads/*?offset=*", self.handle)

    def handle(self, route: Any) -> None:
        offset = int(route.request.url.rsplit("offset=", 1)[1])
        if route.request.method == "PUT" and offset >= self.at:
            self.held.append(route)
        else:
            route.continue_()

    def wait(self, page: Any) -> None:
        while not self.held:
            page.wait_for_timeout(100)

    def release(self) -> None:
        for route in self.held:
            try:
                route.continue_()
            except Exception:  # noqa: BLE001 - the page cancelled or left meanwhile
                pass


def fraction(widget: Any) -> float:
    return float(widget.locator(".lamin-picker-bar").first.evaluate("(b) => b.value"))


@pytest.fixture
def files(tmp_path: Path) -> Iterator[Path]:
    """A folder for the big files and the notebook's storage, removed afterwards (pytest keeps
    the last runs' temporary folders: hundreds of MB each)."""
    folder = tmp_path / "big"
    folder.mkdir()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_the_widget_saves_a_300_mb_file_byte_exact(page, lab, files):
    storage = files / "nb-storage"
    widget = open_widget(page, lab, widget_notebook(lab, "upload300", storage))
    path, digest = big_file(files, "cells.h5ad", 300 * MiB)
    pick(page, widget, path)
    widget.locator(".lamin-picker-file.lamin-picker-complete").wait_for(timeout=300_000)
    widget.locator(".lamin-save-button").click()
    status = widget.locator(".lamin-upload-status.lamin-status-ok")
    status.wait_for(timeout=300_000)
    assert "saved 1 file(s)" in status.inner_text()
    widget.locator(".lamin-item-row.lamin-item-saved").wait_for()
    widget.screenshot(path=str(SHOTS / "upload-300mb-saved.png"))
    (stored,) = objects(storage)
    assert stored.suffix == ".h5ad" and stored.stat().st_size == 300 * MiB
    assert sha256(stored) == digest
    assert staged_files(lab) == []  # the staged bytes are gone once saved
    assert rows(lab, "upload300") == 1


def test_cancel_at_40_percent_leaves_nothing(page, lab, files):
    storage = files / "nb-storage"
    widget = open_widget(page, lab, widget_notebook(lab, "cancel40", storage))
    path, _ = big_file(files, "cancelled.bin", 320 * MiB)
    hold = HoldChunks(page, at=128 * MiB)  # 40 %: chunks of 64 MiB
    pick(page, widget, path)
    hold.wait(page)
    row = widget.locator(".lamin-picker-file").first
    page.wait_for_function(
        "() => document.querySelector('.lamin-upload-widget .lamin-picker-bar').value >= 0.4"
    )
    assert fraction(widget) == 0.4
    assert [p.stat().st_size for p in staged_files(lab)] == [128 * MiB]
    widget.screenshot(path=str(SHOTS / "upload-cancel-at-40.png"))
    row.locator(".lamin-picker-cancel").click()
    widget.locator(".lamin-picker-file").wait_for(state="detached")
    hold.release()
    page.wait_for_function(
        "async (api) => (await (await fetch(api, {credentials: 'same-origin'})).json())"
        ".uploads.length === 0",
        arg=f"{lab.base}/lamin/api/uploads",
    )
    assert staged_files(lab) == [] and list(staging(lab).glob("*/file")) == []
    assert objects(storage) == [] and rows(lab, "cancel40") == 0
    assert "Pick files (0)" in widget.locator(".lamin-picker-button").inner_text()


def test_a_page_reload_at_60_percent_resumes_and_finishes(page, lab, files):
    storage = files / "nb-storage"
    notebook = widget_notebook(lab, "reload60", storage)
    widget = open_widget(page, lab, notebook)
    path, digest = big_file(files, "resumed.bin", 320 * MiB)
    hold = HoldChunks(page, at=192 * MiB)  # 60 %
    pick(page, widget, path)
    hold.wait(page)
    page.wait_for_function(
        "() => document.querySelector('.lamin-upload-widget .lamin-picker-bar').value >= 0.6"
    )
    (staged,) = staged_files(lab)
    assert staged.stat().st_size == 192 * MiB
    page.evaluate("window.jupyterapp.commands.execute('docmanager:save')")
    page.unroute("**/lamin/api/uploads/*?offset=*")

    NotebookPage(page, lab, notebook).open()  # a reload: the kernel and its widgets live on
    widget = page.locator(".lamin-upload-widget").first
    paused = widget.locator(".lamin-picker-file.lamin-picker-receiving")
    paused.wait_for()
    assert "pick the same file to resume" in paused.inner_text()
    widget.screenshot(path=str(SHOTS / "upload-reloaded-at-60.png"))
    page.locator(f"{PICKER}[data-mode='chunked']").wait_for()
    pick(page, widget, path)
    widget.locator(".lamin-picker-file.lamin-picker-complete").wait_for(timeout=300_000)
    assert staged_files(lab) == [staged]  # the same upload, resumed: not started again
    widget.locator(".lamin-save-button").click()
    widget.locator(".lamin-upload-status.lamin-status-ok").wait_for(timeout=300_000)
    (stored,) = objects(storage)
    assert sha256(stored) == digest
    assert staged_files(lab) == [] and rows(lab, "reload60") == 1


# The page generates 1 GiB chunk by chunk (never the whole file at once) and sends it through
# the REST protocol with its login cookie and XSRF token, as the picker does.
GENERATE_AND_UPLOAD = """async ([seed, size, name]) => {
  const MiB = 1024 * 1024;
  const base = Uint8Array.from(atob(seed), (c) => c.charCodeAt(0));
  const api = window.jupyterapp.serviceManager.serverSettings.baseUrl + 'lamin/api/';
  const xsrf = decodeURIComponent(document.cookie.split('; ')
      .find((c) => c.startsWith('_xsrf=')).slice(6));
  const headers = {'X-XSRFToken': xsrf};
  let r = await fetch(api + 'uploads', {method: 'POST', headers, credentials: 'same-origin',
                                        body: JSON.stringify({name, size})});
  const upload = await r.json();
  let offset = 0;
  while (offset < size) {
    const parts = [];
    for (let k = offset / MiB; k < Math.min(offset + upload.chunk_size, size) / MiB; k++) {
      const block = base.slice();
      new DataView(block.buffer).setBigUint64(0, BigInt(k), true);
      parts.push(block);
    }
    r = await fetch(api + `uploads/${upload.id}?offset=${offset}`,
                    {method: 'PUT', headers, credentials: 'same-origin', body: new Blob(parts)});
    if (!r.ok) return [r.status, await r.text()];
    offset = (await r.json()).received;
  }
  r = await fetch(api + `uploads/${upload.id}/commit`,
                  {method: 'POST', headers, credentials: 'same-origin'});
  return [r.status, await r.json()];
}"""


class PeakRss(threading.Thread):
    """The largest resident set of a process, sampled every 20 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.start_rss = self.peak = self.process.memory_info().rss
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.02):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def stop(self) -> int:
        self.stopped.set()
        self.join()
        return self.peak - self.start_rss


def test_server_memory_stays_flat_during_a_1_gib_upload(page, lab):
    assert lab.proc is not None
    page.goto(f"{lab.base}/lab?token={lab.token}&reset")
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.serviceManager")
    seed = os.urandom(MiB)
    size = 1024 * MiB
    rss = PeakRss(lab.proc.pid)
    rss.start()
    status, body = page.evaluate(
        GENERATE_AND_UPLOAD, [base64.b64encode(seed).decode(), size, "one-gib.bin"]
    )
    grew = rss.stop()
    assert status == 201, body
    artifact = body["artifact"]
    assert artifact["size"] == size and artifact["key"] == "one-gib.bin"
    stored = lab.home / "storage" / ".lamindb" / f"{artifact['uid']}.bin"
    assert sha256(stored) == stamped(seed, size)
    assert grew < 200 * MiB, f"the server grew by {grew / MiB:.0f} MiB"
    print(f"server RSS: {rss.start_rss / MiB:.0f} MiB at start, +{grew / MiB:.1f} MiB at peak")
    # the server's instance by name: the notebooks' kernels made theirs current meanwhile
    uid, name = artifact["uid"], body["instance"]
    delete = f"import lamin_nb as ln; ln.connect({name!r}); ln.Artifact.get({uid!r}).delete(True)"
    subprocess.run([sys.executable, "-c", delete], env=lab.env, check=True)  # 1 GiB less on disk
    assert not stored.exists()
