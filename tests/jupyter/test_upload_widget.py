"""The UploadWidget's chunked path, kernel side: files the page staged on the Jupyter host.

The page's part (chunks over REST) is covered by tests/jupyter/test_uploads.py and the
browser tests; here the picker's state is set exactly as the page sets it, and the staged
files are made through the same core module the REST routes use.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lamin_nb as ln
from lamin_nb.core import staged
from lamin_nb.widgets import UploadWidget
from lamin_nb.widgets.picker import KERNEL_MESSAGE_LIMIT

CLICK = {"content": {"data": {"method": "custom", "content": {"event": "click"}}}, "buffers": []}


def click(button: Any) -> None:
    button._handle_msg(CLICK)


def stage(name: str, data: bytes, complete: bool = True) -> dict[str, Any]:
    """What the page did: POST uploads, then PUT chunks; returns its entry in ``staged``."""
    upload = staged.create(name, len(data), owner="the-server-owner")
    sent = data if complete else data[: len(data) // 2]
    writer = staged.ChunkWriter(upload, 0, len(sent))
    writer.write(sent)
    writer.finish()
    return {
        "id": upload.id,
        "name": name,
        "size": len(data),
        "received": len(sent),
        "state": "complete" if complete else "receiving",
        "path": str(upload.path),
    }


def test_staged_files_are_saved_and_their_bytes_removed(local_instance, lamin_home):
    big, small = os.urandom(3 * 2**20), b"a,b\n1,2\n"
    entries = [stage("big.h5ad", big), stage("small.csv", small)]
    upload = UploadWidget(key_prefix="from/page", description="dropped")
    upload.picker.set_state({"staged": entries, "mode": "chunked"})
    assert "2 file(s) picked (big.h5ad, small.csv)" in repr(upload)
    click(upload.save_button)
    assert sorted(a.key for a in upload.artifacts) == ["from/page/big.h5ad", "from/page/small.csv"]
    saved = ln.Artifact.get("from/page/big.h5ad")
    assert Path(saved.load()).read_bytes() == big and saved.description == "dropped"
    assert "saved 2 file(s)" in upload.message and upload.picker.staged == []
    for entry in entries:  # only the record is left, naming the artifact
        record = staged.load(entry["id"], owner=None)
        assert record.state == "committed" and not Path(entry["path"]).exists()
    assert ln.check().is_consistent


def test_save_waits_for_the_chunks_still_moving(local_instance, lamin_home):
    entry = stage("late.bin", b"x" * 1000)
    upload = UploadWidget()
    upload.picker.set_state({"busy": True, "staged": [{**entry, "state": "receiving"}]})
    click(upload.save_button)
    assert "saved as soon as every byte arrived" in upload.message
    classes = upload.status._dom_classes  # a note, neither success nor failure yet
    assert "lamin-status-ok" not in classes and "lamin-status-error" not in classes
    assert ln.Artifact.filter().count() == 0
    upload.picker.set_state({"staged": [entry]})
    upload.picker.set_state({"busy": False})  # the page says: the last chunk arrived
    assert [a.key for a in upload.artifacts] == ["late.bin"]


def test_an_unfinished_upload_is_not_saved(local_instance, lamin_home):
    entry = stage("half.bin", os.urandom(1000), complete=False)
    upload = UploadWidget()
    upload.picker.set_state({"staged": [entry]})
    click(upload.save_button)
    assert "not finished: pick it again to resume" in upload.message
    # a page that claims it is complete while the bytes on disk say otherwise
    upload.picker.set_state({"staged": [{**entry, "state": "complete"}]})
    click(upload.save_button)
    assert "nothing saved" in upload.message and "not complete" in upload.message
    assert ln.Artifact.filter().count() == 0
    assert Path(entry["path"]).stat().st_size == 500  # kept, to resume


def test_a_path_that_is_not_a_staged_upload_is_refused(local_instance, lamin_home, tmp_path):
    secret = tmp_path / "not-staged.txt"
    secret.write_text("private")
    upload = UploadWidget()
    fake = {"id": "A" * 24, "name": "x", "size": 7, "received": 7, "state": "complete"}
    upload.picker.set_state({"staged": [{**fake, "path": str(secret)}]})
    click(upload.save_button)
    assert "nothing saved" in upload.message and "not a staged upload" in upload.message
    assert ln.Artifact.filter().count() == 0 and secret.exists()


def test_a_failed_save_keeps_the_staged_file_for_a_retry(local_instance, lamin_home):
    from tests.conftest import set_immutable

    entry = stage("retry.bin", os.urandom(4096))
    upload = UploadWidget()
    upload.picker.set_state({"staged": [entry]})
    managed = Path(local_instance.storage.managed)
    set_immutable(managed, True)
    try:
        click(upload.save_button)
    finally:
        set_immutable(managed, False)
    assert "could not save retry.bin" in upload.message
    assert Path(entry["path"]).exists() and len(upload.picker.staged) == 1
    click(upload.save_button)
    assert [a.key for a in upload.artifacts] == ["retry.bin"] and upload.picker.staged == []


def test_a_file_the_page_refused_is_said_so(local_instance, lamin_home):
    upload = UploadWidget()
    assert upload.picker.max_message_bytes == KERNEL_MESSAGE_LIMIT == 10 * 2**20
    reason = "big.bin (50.0 MiB) not picked: without the lamin_nb Jupyter server extension ..."
    upload.picker.set_state({"error": reason, "mode": "kernel"})
    assert upload.message == reason and "lamin-status-error" in upload.status._dom_classes
