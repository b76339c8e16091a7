"""The progress panel's Cancel and Retry failed buttons, clicked in JupyterLab (headless Chromium).

Cancel: a 24 MiB save to S3 through a throttled link (2 MiB/s, a real TCP proxy) is cancelled
by a click while its parts go up: the page asks the Jupyter server to interrupt the kernel, the
save undoes itself, and once the cell has ended the click's message discards the parts the
interrupt kept. No row, no object, no multipart upload is left.

Retry failed: a bulk save in which a real bucket policy denies one object's key; the policy is
lifted (the cause fixed), a click on "Retry failed (1)" saves that item alone, in a panel below.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import nbformat
import pytest

from tests.browser.conftest import SHOTS
from tests.browser.labpage import CELL_DONE, NotebookPage
from tests.browser.test_panels import SAVED_TEXT_STARTS
from tests.support.proxy import CountingProxy

pytestmark = pytest.mark.browser
NOTEBOOK = "panel-buttons.ipynb"
MiB = 2**20

SETUP = """\
import json, os, tempfile
from pathlib import Path
import boto3
from IPython.display import display
work = Path(tempfile.mkdtemp(prefix="lamin-buttons-"))
os.environ["LAMIN_NB_HOME"] = str(work / "home")
os.environ["AWS_ENDPOINT_URL"] = {endpoint!r}  # through the throttled link
import lamin_nb as ln
from lamin_nb.widgets import SaveProgress
ln.init(storage="s3://{bucket}/team")

def src(name, size):
    path = work / name
    path.write_bytes(os.urandom(size))
    return path

def shown(widget, name):
    widget.add_class("panel-" + name)
    display(widget)
    return widget

def attempt(save):
    try:
        save()
    except BaseException as exc:  # the panel above says what happened
        print("stopped:", type(exc).__name__)

def deny_writes_of(artifact):  # a real bucket policy on this one object's key
    policy = {{"Version": "2012-10-17", "Statement": [{{"Effect": "Deny", "Principal": "*",
              "Action": "s3:PutObject",
              "Resource": f"arn:aws:s3:::{bucket}/team/.lamindb/{{artifact.uid}}*"}}]}}
    boto3.client("s3").put_bucket_policy(Bucket="{bucket}", Policy=json.dumps(policy))
"""

SLOW = """\
big = ln.Artifact(src("big.bin", 24 << 20), key="big.bin")
attempt(lambda: ln.save([big], callback=shown(SaveProgress(), "cancel")))
"""

RETRY = """\
three = [ln.Artifact(src(f"r{i}.csv", 4096), key=f"runs/r{i}.csv") for i in range(3)]
deny_writes_of(three[1])
attempt(lambda: ln.save(three, callback=shown(SaveProgress(), "retry")))
"""

FOREIGN = """\
foreign = SaveProgress()  # as if this kernel were not one the Jupyter server runs
foreign.cancel_button.kernel_id = "00000000-0000-0000-0000-000000000000"
shown(foreign, "foreign").start([])  # running: where a Cancel could work, it would show
"""

TRANSACTION = """\
%%lamin_transaction
ln.Artifact(src("tx-small.csv", 2048), key="tx/small.csv").save()
ln.save([ln.Artifact(src("tx-big.bin", 24 << 20), key="tx/big.bin")])
"""

CHECK = """\
assert foreign.cancel_button.mode == "unavailable", foreign.cancel_button.mode  # from the page
foreign.finish(ln.SaveReport())
assert ln.uploads() == [], ln.uploads()
assert sorted(a.key for a in ln.Artifact.filter().all()) == [f"runs/r{i}.csv" for i in range(3)]
assert ln.check().is_consistent
"""

CLEANUP = """\
import shutil
from lamin_nb.core import instance
instance.current().close()
shutil.rmtree(work, ignore_errors=True)
"""


@pytest.fixture
def slow_link(s3_server: Any) -> Iterator[CountingProxy]:
    target = urlparse(s3_server.endpoint)
    proxy = CountingProxy(target.hostname or "127.0.0.1", target.port or 80).start()
    proxy.rate = 2 * MiB  # the 24 MiB save takes about 12 s
    yield proxy
    proxy.stop()


def write_notebook(root: Any, endpoint: str, bucket: str) -> None:
    tagged = [("setup", SETUP.format(endpoint=endpoint, bucket=bucket)), ("slow", SLOW)]
    tagged += [("retry", RETRY), ("foreign", FOREIGN), ("transaction", TRANSACTION)]
    tagged += [("check", CHECK), ("cleanup", CLEANUP)]
    cells = [nbformat.v4.new_code_cell(code, metadata={"tags": [tag]}) for tag, code in tagged]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, root / NOTEBOOK)


def run_cell_without_waiting(nb: NotebookPage, tag: str) -> tuple[int, Any]:
    index = nb.first_tagged(tag)
    before = nb.cells()[index]["count"]
    nb._select(index)
    # not awaited: the command's promise resolves only when the cell has finished
    nb.page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-cell'); }")
    return index, before


def objects(s3_server: Any, bucket: str) -> list[str]:
    return [k for k in s3_server.keys(bucket, "team/.lamindb/") if "/_meta/" not in k]


def test_cancel_and_retry_failed_in_lab(page, lab, s3_server, slow_link):
    bucket = s3_server.new_bucket()
    write_notebook(lab.root, slow_link.endpoint, bucket)
    nb = NotebookPage(page, lab, NOTEBOOK).open()
    nb.run_tagged("setup")  # only it: "run all above" in Lab 4 runs the selected cell too

    # -- Cancel while the parts go up ---------------------------------------------------
    slow_link.reset()
    index, before = run_cell_without_waiting(nb, "slow")
    cancel = page.locator(".panel-cancel .lamin-save-cancel-button")
    cancel.wait_for(state="visible")
    deadline = time.monotonic() + 120
    while slow_link.upstream < 4 * MiB and time.monotonic() < deadline:
        time.sleep(0.1)
    assert slow_link.upstream >= 4 * MiB, "the upload did not start"
    cancel.click()
    page.wait_for_function(CELL_DONE, arg=[index, before], timeout=120_000)
    cancelled = "cancelled: nothing saved; discarded 1 interrupted upload(s)"
    header = page.locator(".panel-cancel .lamin-save-header")
    page.wait_for_function(
        "(t) => document.querySelector('.panel-cancel .lamin-save-header').textContent.includes(t)",
        arg=cancelled,
    )  # the click's message, read once the cell had ended
    assert "kept" not in header.text_content()
    page.wait_for_function(SAVED_TEXT_STARTS, arg=["cancel", "saving: " + cancelled])
    assert not cancel.is_visible()  # the save is over
    page.locator(".panel-cancel").first.screenshot(path=str(SHOTS / "panel-cancelled.png"))
    client = s3_server.client()
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert objects(s3_server, bucket) == []

    # -- Retry failed after the cause is fixed ---------------------------------------------
    nb.run_tagged("retry")
    retry = page.locator(".panel-retry .lamin-retry-button").first  # the retry's own is below
    retry.wait_for(state="visible")
    assert retry.text_content().strip() == "Retry failed (1)"
    assert len(objects(s3_server, bucket)) == 2
    s3_server.allow_all(bucket)
    retry.click()
    page.locator(".panel-retry .lamin-save-retries .lamin-save-progress.lamin-save-done").wait_for()
    again = page.locator(".panel-retry .lamin-save-retries .lamin-save-progress").first
    assert "lamin-save-failed" not in (again.get_attribute("class") or "")
    assert "1/1 items" in again.locator(".lamin-save-header").text_content()
    assert not retry.is_visible()
    assert not again.locator(".lamin-retry-button").is_visible()  # nothing left to retry
    assert len(objects(s3_server, bucket)) == 3
    page.locator(".panel-retry").first.screenshot(path=str(SHOTS / "panel-retried.png"))

    # -- no Cancel where no Jupyter server manages the kernel: hidden, not pretending -------
    nb.run_tagged("foreign")
    page.locator(".panel-foreign .lamin-save-cancel[data-mode='unavailable']").wait_for(
        state="attached"
    )
    assert not page.locator(".panel-foreign .lamin-save-cancel-button").is_visible()
    assert page.locator(".panel-cancel .lamin-save-cancel").get_attribute("data-mode") == (
        "interrupt"
    )

    # -- Cancel rolls back the whole %%lamin_transaction cell ---------------------------
    slow_link.reset()
    index, before = run_cell_without_waiting(nb, "transaction")
    panel = page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".lamin-save-progress")
    tx_cancel = panel.locator(".lamin-save-cancel-button")
    tx_cancel.wait_for(state="visible")
    deadline = time.monotonic() + 120
    while slow_link.upstream < 4 * MiB and time.monotonic() < deadline:  # small.csv is in
        time.sleep(0.1)
    assert slow_link.upstream >= 4 * MiB, "the upload did not start"
    tx_cancel.click()
    page.wait_for_function(CELL_DONE, arg=[index, before], timeout=120_000)
    panel.locator(".lamin-save-outcome").get_by_text("cancelled: nothing saved").wait_for()
    assert "rolled back" in panel.locator(".lamin-save-header").text_content()
    assert not tx_cancel.is_visible()
    panel.screenshot(path=str(SHOTS / "panel-transaction-cancelled.png"))
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert len(objects(s3_server, bucket)) == 3  # the retried save's three; none of the cell

    for tag in ("check", "cleanup"):  # run_tagged would object to the cancelled cell's error
        index, before = run_cell_without_waiting(nb, tag)
        page.wait_for_function(CELL_DONE, arg=[index, before], timeout=120_000)
        assert cell_errors(page, index) == [], tag


def cell_errors(page: Any, index: int) -> list[str]:
    return list(
        page.evaluate(
            "(i) => window.jupyterapp.shell.currentWidget.content.widgets[i].model.outputs"
            ".toJSON().filter(o => o.output_type === 'error').map(o => o.ename + ': ' + o.evalue)",
            index,
        )
    )
