"""The progress panel's Cancel and Retry failed buttons, driven like a user in plain Python.

Real failures: a bucket policy denies one object's key, then is lifted; a real SIGINT stops a
large multipart upload to a real S3 server, and the page's "requested" message arrives after
it, as it does in a kernel (the shell channel is busy while the cell runs). The kernel and
browser versions are in test_cancel_kernel.py and tests/browser/test_panel_buttons_lab.py.
"""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import lamin_nb as ln
from lamin_nb.core.callbacks import ItemState
from lamin_nb.widgets import SaveProgress
from tests.jupyter.test_widgets import click, visible

UPDATE = "update"


def from_page(widget: Any, **state: Any) -> None:
    """Exactly the message the page sends when its front end sets ``state``."""
    data = {"method": UPDATE, "state": state, "buffer_paths": []}
    widget._handle_msg({"content": {"data": data}, "buffers": []})


def files(tmp_path: Path, n: int, size: int = 4096) -> list[Path]:
    folder = tmp_path / "src"
    folder.mkdir(exist_ok=True)
    paths = [folder / f"file{i}.bin" for i in range(n)]
    for path in paths:
        path.write_bytes(os.urandom(size))
    return paths


@pytest.fixture
def s3_instance(s3_server: Any) -> tuple[Any, str]:
    bucket = s3_server.new_bucket()
    ln.init(storage=f"s3://{bucket}/team")
    return s3_server, bucket


def denied_one(s3_instance: tuple[Any, str], tmp_path: Path, atomic: bool) -> Any:
    server, bucket = s3_instance
    artifacts = [ln.Artifact(p, key=f"run/{p.name}") for p in files(tmp_path, 4)]
    server.deny(bucket, "s3:PutObject", f"team/.lamindb/{artifacts[1].uid}")
    progress = SaveProgress()
    with pytest.raises(ln.SaveError):
        ln.save(artifacts, atomic=atomic, callback=progress)
    return progress


def test_retry_failed_saves_only_the_failed_item_after_the_cause_is_fixed(s3_instance, tmp_path):
    server, bucket = s3_instance
    progress = denied_one(s3_instance, tmp_path, atomic=False)
    assert ln.Artifact.filter().count() == 3
    assert visible(progress.retry_button) and not progress.retry_button.disabled
    assert progress.retry_button.description == "Retry failed (1)"
    text = repr(progress)
    assert "save only the failed item again: ln.retry_failed()" in text  # the text fallback
    assert not progress.cancel_button.running and not visible(progress.outcome_line)

    server.allow_all(bucket)  # the cause is fixed
    click(progress.retry_button)
    click(progress.retry_button)  # a double click: its second message comes after the retry
    (retry,) = progress.retries
    assert retry.report is not None and len(retry.report.saved) == 1, retry.report
    assert retry.counts == {"saved": 1}
    assert not visible(progress.retry_button) and not visible(retry.retry_button)
    assert ln.Artifact.filter().count() == 4 and ln.check().is_consistent
    assert "failed 1" in progress.header.value  # the first save's failure stays visible
    text = repr(progress)
    assert "ln.retry_failed()" not in text and "retrying the failed items" in text
    assert text.splitlines()[-1].strip().endswith("saved")


def test_a_retry_that_fails_again_offers_its_own_retry(s3_instance, tmp_path):
    server, bucket = s3_instance
    progress = denied_one(s3_instance, tmp_path, atomic=False)
    click(progress.retry_button)  # the cause is not fixed yet
    (retry,) = progress.retries
    assert retry.counts == {"failed": 1} and visible(retry.retry_button)
    server.allow_all(bucket)
    click(retry.retry_button)
    assert retry.retries[0].counts == {"saved": 1}
    assert ln.Artifact.filter().count() == 4 and ln.check().is_consistent


def test_retry_after_an_atomic_failure_saves_the_whole_batch(s3_instance, tmp_path):
    server, bucket = s3_instance
    progress = denied_one(s3_instance, tmp_path, atomic=True)
    assert ln.Artifact.filter().count() == 0
    assert progress.retry_button.description == "Retry failed (4)"  # all or nothing again
    server.allow_all(bucket)
    click(progress.retry_button)
    assert progress.retries[0].counts == {"saved": 4}
    assert ln.Artifact.filter().count() == 4 and ln.check().is_consistent


def test_the_text_fallback_names_the_one_line_retry(s3_instance, tmp_path):
    server, bucket = s3_instance
    artifacts = [ln.Artifact(p, key=f"run/{p.name}") for p in files(tmp_path, 3)]
    server.deny(bucket, "s3:PutObject", f"team/.lamindb/{artifacts[0].uid}")
    out = io.StringIO()
    with pytest.raises(ln.SaveError) as raised:
        ln.save(artifacts, callback=ln.TextProgress(out))
    hint = "after fixing the cause, save only the failed item again: ln.retry_failed()"
    assert out.getvalue().splitlines()[-1] == hint
    assert str(raised.value).splitlines()[-1] == hint
    server.allow_all(bucket)
    assert len(ln.retry_failed().saved) == 1
    with pytest.raises(ln.NotFoundError, match="nothing to retry"):
        ln.retry_failed()  # done: nothing is saved twice
    assert ln.Artifact.filter().count() == 3 and ln.check().is_consistent


class CtrlCWhileUploading(SaveProgress):
    """A real SIGINT to the main thread once some parts went up (what the kernel receives
    when the Cancel button asks the Jupyter server to interrupt it)."""

    sent = False

    def advance(self, index: int, nbytes: int) -> None:
        super().advance(index, nbytes)
        row = self._items[index]
        if not self.sent and row.state is ItemState.UPLOADING and row.done > 6 << 20:
            self.sent = True
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)


def test_cancel_rolls_back_and_discards_what_the_interrupt_kept(s3_instance, tmp_path):
    server, bucket = s3_instance
    (big,) = files(tmp_path, 1, size=20 << 20)  # parts: an interrupt keeps them for a resume
    progress = CtrlCWhileUploading()
    with pytest.raises(KeyboardInterrupt):
        ln.save([ln.Artifact(big, key="big.bin")], callback=progress)
    assert progress.sent and progress.report is not None and progress.report.cancelled
    assert "the parts sent are kept" in progress.header.value  # what Ctrl-C alone does
    assert not progress.cancel_button.running and not visible(progress.retry_button)
    assert not visible(progress.outcome_line)
    assert len(ln.uploads()) == 1  # kept by the interrupt, for a resume

    from_page(progress.cancel_button, requested=True)  # the click's message, after the cell
    assert ln.uploads() == [] and ln.Artifact.filter().count() == 0
    cancelled = "cancelled: nothing saved; discarded 1 interrupted upload(s)"
    assert cancelled in progress.header.value and "kept" not in progress.header.value
    assert repr(progress).startswith("saving: " + cancelled)
    client = server.client()
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert [k for k in server.keys(bucket, "team/.lamindb/") if "/_meta/" not in k] == []
    assert ln.check().is_consistent


def test_a_late_cancel_click_changes_nothing(local_instance, tmp_path):
    progress = SaveProgress()
    ln.save([ln.Artifact(p, key=p.name) for p in files(tmp_path, 2)], callback=progress)
    from_page(progress.cancel_button, requested=True)
    assert progress.outcome_line.value == "too late to cancel: the save had already ended"
    assert ln.Artifact.filter().count() == 2


def test_the_cancel_button_knows_no_kernel_here():
    progress = SaveProgress()
    assert progress.cancel_button.kernel_id == ""  # no kernel app: the page hides the button


def test_cancel_stops_a_save_that_runs_in_a_thread(s3_instance, tmp_path):
    """The kernel is free while a thread saves: the click's message arrives at once, and the
    panel's next progress event stops the save (a SIGINT would not reach that thread)."""
    server, bucket = s3_instance
    (big,) = files(tmp_path, 1, size=40 << 20)
    progress = SaveProgress()
    errors: list[BaseException] = []

    def save() -> None:
        try:
            ln.save([ln.Artifact(big, key="threaded.bin")], callback=progress)
        except BaseException as exc:  # noqa: BLE001 - what the thread ended with
            errors.append(exc)

    thread = threading.Thread(target=save)
    thread.start()
    deadline = time.monotonic() + 60
    while not any(r.state is ItemState.UPLOADING for r in progress.rows):
        assert time.monotonic() < deadline, progress.rows
        time.sleep(0.01)
    from_page(progress.cancel_button, requested=True)
    thread.join(120)
    assert len(errors) == 1 and isinstance(errors[0], KeyboardInterrupt), errors
    assert progress.report is not None and progress.report.cancelled
    assert "cancelled: nothing saved" in progress.header.value
    assert ln.uploads() == [] and ln.Artifact.filter().count() == 0 and ln.check().is_consistent
    assert [k for k in server.keys(bucket, "team/.lamindb/") if "/_meta/" not in k] == []
