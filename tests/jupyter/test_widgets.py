"""The notebook widgets driven like a user would, in plain Python (ipywidgets needs no kernel).

Real saves, real failures (an S3 bucket policy, an immutable folder), real objects dropped into
and deleted from the managed folder, a real second process saving while a panel refreshes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import comm
import pytest
from comm.base_comm import BaseComm

import lamin_nb as ln
from lamin_nb.core.instance import current
from lamin_nb.widgets import ConsistencyPanel, SaveProgress, UploadWidget
from tests.conftest import set_immutable

CLICK = {"content": {"data": {"method": "custom", "content": {"event": "click"}}}, "buffers": []}


def click(button: Any) -> None:
    """Exactly the message the browser sends when a button is clicked."""
    button._handle_msg(CLICK)


def visible(widget: Any) -> bool:
    return widget.layout.display != "none"


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


# -- SaveProgress --------------------------------------------------------------------------


def test_bulk_save_shows_each_item_and_keeps_the_failure_red(s3_instance, tmp_path):
    server, bucket = s3_instance
    artifacts = [ln.Artifact(p, key=f"run/{p.name}") for p in files(tmp_path, 5)]
    server.deny(bucket, "s3:PutObject", f"team/.lamindb/{artifacts[2].uid}")  # one object only
    progress = SaveProgress()
    with pytest.raises(ln.SaveError):
        ln.save(artifacts, callback=progress)
    for index, artifact in enumerate(artifacts):
        view = progress.row_view(index)
        assert view is not None and view.box in progress.rows_box.children
        if index == 2:
            assert view.bar.bar_style == "danger"
            assert "lamin-item-failed" in view.box._dom_classes
            assert view.state.value.startswith("failed: ") and "Access Denied" in view.state.value
            assert artifact.status is None
        else:
            assert view.bar.bar_style == "success" and view.bar.value == view.bar.max
            assert "lamin-item-saved" in view.box._dom_classes
            assert view.state.value == "saved" and artifact.status == "committed"
    assert progress.overall.bar_style == "danger" and progress.overall.value == 5
    assert "saved 4, failed 1" in progress.header.value
    text = repr(progress)
    assert "5/5 items" in text and "run/file2.bin  4.0 KiB  failed: " in text
    assert "lamin-save-progress" in progress._dom_classes
    server.allow_all(bucket)
    assert ln.Artifact.filter().count() == 4 and ln.check().is_consistent


def test_large_atomic_save_collapses_finished_rows_and_rolls_back(s3_instance, tmp_path):
    server, bucket = s3_instance
    artifacts = [ln.Artifact(p, key=f"big/{p.name}") for p in files(tmp_path, 12, size=1024)]
    server.deny(bucket, "s3:PutObject", f"team/.lamindb/{artifacts[7].uid}")
    progress = SaveProgress(max_rows=5, active_rows=3)
    with pytest.raises(ln.SaveError):
        ln.save(artifacts, atomic=True, callback=progress)
    assert progress.rows_box.children == () and progress.active.value == ""  # none active
    (failed_row,) = progress.failed_box.children
    assert "lamin-item-failed" in failed_row._dom_classes
    assert failed_row.children[1].bar_style == "danger"
    assert progress.row_view(7).box is failed_row
    states = [row.state.value for row in progress.rows]
    assert states[7] == "failed" and states.count("rolled back") == 11
    assert {row.bar_style for row in progress.rows} == {"danger", "warning"}
    assert progress.overall.bar_style == "danger"
    assert progress.finished.titles == ("finished (12)",)
    listing = progress.finished_list.value
    assert listing.count("lamin-finished-item") == 12
    assert listing.index("lamin-item-failed") < listing.index("lamin-item-rolled-back")
    server.allow_all(bucket)
    assert ln.Artifact.filter().count() == 0 and ln.check().is_consistent


class CountingComm(BaseComm):
    """A comm that counts what would go to the front end (no kernel needed)."""

    sent: list[str] = []

    def publish_msg(
        self,
        msg_type: str,
        data: Any = None,
        metadata: Any = None,
        buffers: Any = None,
        **keys: Any,
    ) -> None:
        CountingComm.sent.append(msg_type)


@pytest.fixture
def counting_comm(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    CountingComm.sent = []
    monkeypatch.setattr(comm, "create_comm", lambda *a, **k: CountingComm(*a, **k))
    return CountingComm.sent


def test_events_are_rendered_by_ticks_not_one_message_each(counting_comm):
    """50 000 events send no message until a render; finish renders every final state."""
    from lamin_nb.core.callbacks import ItemInfo, ItemState

    progress = SaveProgress(interval=3600)  # no tick during this test: only start and finish
    progress.start([ItemInfo(i, f"item{i}", 1000) for i in range(5)])
    before = len(counting_comm)
    for _ in range(10_000):
        for i in range(5):
            progress.advance(i, 0)
    for i in range(5):
        progress.state(i, ItemState.UPLOADING)
    assert len(counting_comm) == before
    progress.state(3, ItemState.FAILED, "disk full")
    progress.state(3, ItemState.SAVED)  # a failure is never overwritten
    for i in (0, 1, 2, 4):
        progress.state(i, ItemState.SAVED)
    progress.finish(ln.SaveReport())
    assert len(counting_comm) > before
    assert [progress.row_view(i).state.value for i in range(5)] == [
        "saved",
        "saved",
        "saved",
        "failed: disk full",
        "saved",
    ]
    assert progress.row_view(3).bar.bar_style == "danger"
    assert progress.overall.bar_style == "danger"


def test_ticks_update_rows_while_the_save_runs():
    from lamin_nb.core.callbacks import ItemInfo, ItemState

    progress = SaveProgress(interval=0.01)
    progress.start([ItemInfo(0, "big.bin", 10_000)])
    progress.state(0, ItemState.UPLOADING)
    progress.advance(0, 5_000)
    view = progress.row_view(0)
    deadline = time.monotonic() + 30
    while view.bar.value != 500 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert view.bar.value == 500 and view.state.value == "uploading 4.9 KiB/9.8 KiB"
    progress.finish(ln.SaveReport())
    assert not progress.running


def test_a_large_save_shows_only_the_active_items_while_it_runs():
    from lamin_nb.core.callbacks import ItemInfo, ItemState

    progress = SaveProgress(interval=0.01, max_rows=20, active_rows=3)
    progress.start([ItemInfo(i, f"item{i}", 100) for i in range(30)])
    assert progress.rows_box.children == ()  # no widget row per item
    for i in (4, 5, 6, 7):
        progress.state(i, ItemState.UPLOADING)
    progress.advance(6, 50)
    deadline = time.monotonic() + 30
    while progress.active.value.count("lamin-item-row") != 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    shown = progress.active.value
    assert shown.count('class="lamin-item-row lamin-item-uploading"') == 3
    assert "item4" in shown and "uploading 50 B/100 B" in shown and "item7" not in shown
    progress.finish(ln.SaveReport())


# -- UploadWidget --------------------------------------------------------------------------


def picked(*named: tuple[str, bytes]) -> dict[str, Any]:
    """What the browser sends after the user picked files (ipywidgets 8 FileUpload)."""
    return {
        "value": [
            {
                "name": name,
                "type": "application/octet-stream",
                "size": len(data),
                "content": memoryview(data),
                "last_modified": 1_700_000_000_000,
            }
            for name, data in named
        ]
    }


def staging_left(home: Path) -> list[Path]:
    return [p for p in (home / "staging").glob("upload-*")] if (home / "staging").exists() else []


def test_upload_widget_saves_the_picked_files(local_instance, lamin_home):
    upload = UploadWidget()
    upload.picker.set_state(
        picked(("a.csv", b"x,y\n1,2\n"), ("b.txt", b"hello"), ("../../evil.txt", b"ha"))
    )
    upload.key_field.value = "uploads/today"
    upload.description_field.value = "from the browser"
    click(upload.save_button)
    keys = sorted(a.key for a in upload.artifacts)
    assert keys == ["uploads/today/a.csv", "uploads/today/b.txt", "uploads/today/evil.txt"]
    stored = ln.Artifact.get("uploads/today/a.csv")
    assert Path(stored.load()).read_bytes() == b"x,y\n1,2\n"
    assert stored.description == "from the browser"
    assert "lamin-status-ok" in upload.status._dom_classes
    assert upload.picker.value == ()  # a second click must not save them again
    (progress,) = upload.progress_box.children
    assert progress.overall.bar_style == "success"
    assert all("lamin-item-saved" in progress.row_view(i).box._dom_classes for i in range(3))
    assert staging_left(lamin_home) == []
    assert upload.message == "saved 3 file(s)" and "saved 3 file(s)" in repr(upload)


def test_upload_failure_is_shown_per_file_and_nothing_is_half_saved(local_instance, lamin_home):
    managed = Path(local_instance.storage.managed)
    upload = UploadWidget()
    upload.picker.set_state(picked(("one.bin", os.urandom(2048)), ("two.bin", os.urandom(2048))))
    set_immutable(managed, True)
    try:
        click(upload.save_button)
    finally:
        set_immutable(managed, False)
    assert "lamin-status-error" in upload.status._dom_classes
    assert "one.bin" in upload.status.value and "two.bin" in upload.status.value
    progress = upload.progress
    for index in (0, 1):
        view = progress.row_view(index)
        assert view.bar.bar_style == "danger" and "Access Denied" in view.state.value
    assert upload.artifacts == [] and ln.Artifact.filter().count() == 0
    report = ln.check()
    assert report.is_consistent and not report.pending and report.n_objects == 0
    assert staging_left(lamin_home) == []
    assert len(upload.picker.value) == 2  # kept, so the user can retry
    click(upload.save_button)
    assert sorted(a.key for a in upload.artifacts) == ["one.bin", "two.bin"]


def test_upload_with_a_bad_key_prefix_writes_nothing(local_instance, lamin_home):
    upload = UploadWidget(key_prefix="../outside")
    upload.picker.set_state(picked(("a.csv", b"1")))
    click(upload.save_button)
    assert (
        "nothing saved: " in upload.status.value
        and "lamin-status-error" in upload.status._dom_classes
    )
    assert upload.progress is None and ln.check().n_objects == 0
    assert staging_left(lamin_home) == []
    empty = UploadWidget()
    click(empty.save_button)
    assert "pick one or more files first" in empty.status.value


# -- ConsistencyPanel ----------------------------------------------------------------------


def broken_instance(tmp_path: Path) -> tuple[Path, str]:
    """Three saved artifacts, one object deleted behind the database's back, one orphan."""
    artifacts = [ln.Artifact(p, key=f"k/{p.name}") for p in files(tmp_path, 3)]
    ln.save(artifacts)
    managed = Path(current().storage.managed)
    (managed / f"{artifacts[0].uid}.bin").unlink()
    (managed / "stray.bin").write_bytes(b"nobody owns me")
    return managed, artifacts[0].uid


def test_panel_repair_shows_the_plan_and_applies_only_after_confirm(local_instance, tmp_path):
    managed, missing_uid = broken_instance(tmp_path)
    panel = ConsistencyPanel()
    parts = panel.parts
    assert "lamin-inconsistent" in parts.status._dom_classes
    assert 'lamin-count-missing">missing: 1' in parts.counts.value
    assert 'lamin-count-orphans">orphans: 1' in parts.counts.value
    assert 'lamin-count-ok">ok: 2' in parts.counts.value
    assert parts.details.titles[:2] == ("missing objects (1)", "orphans (1)")
    assert "stray.bin" in parts.lists[1].value and "k/file0.bin" in parts.lists[0].value

    click(parts.repair_button)  # safe defaults: a fresh orphan and a missing object stay
    assert panel.plan is not None and panel.plan.is_empty
    assert not visible(parts.confirm_button) and "left alone" in parts.plan.value

    parts.grace.value = 0
    parts.mark_lost.value = True
    click(parts.repair_button)
    assert visible(parts.confirm_button) and "quarantine orphan" in parts.plan.value
    assert "mark lost" in parts.plan.value
    assert (managed / "stray.bin").exists() and not ln.check().is_consistent  # not yet

    click(parts.confirm_button)
    assert panel.plan.applied and all(a.done for a in panel.plan.actions)
    assert "lamin-consistent" in parts.status._dom_classes
    assert not visible(parts.confirm_button)
    assert ln.check().is_consistent
    assert not (managed / "stray.bin").exists() and ln.list_quarantined()
    assert ln.Artifact.filter().count() == 2
    assert "storage and database are consistent" in repr(panel)


def test_confirm_refuses_a_plan_that_changed_meanwhile(local_instance, tmp_path):
    managed, _ = broken_instance(tmp_path)
    panel = ConsistencyPanel(grace_seconds=0, mark_lost=True)
    click(panel.parts.repair_button)
    (managed / "second-stray.bin").write_bytes(b"appeared after the plan was shown")
    click(panel.parts.confirm_button)
    assert not panel.plan.applied and "plan changed" in panel.parts.plan.value
    assert (managed / "stray.bin").exists()  # nothing was applied
    assert "second-stray.bin" in panel.parts.plan.value
    click(panel.parts.confirm_button)
    assert panel.plan.applied and ln.check().is_consistent


def test_auto_refresh_shows_a_save_from_another_process_and_stops(local_instance, tmp_path):
    panel = ConsistencyPanel()
    assert panel.report.n_ok == 0
    panel.parts.interval.value = 0.2
    panel.parts.auto_toggle.value = True  # what the toggle button does
    assert panel.auto_refreshing
    source = files(tmp_path, 1)[0]
    code = (
        "import sys, lamin_nb as ln; ln.connect(); ln.Artifact(sys.argv[1], key='live.bin').save()"
    )
    subprocess.run([sys.executable, "-c", code, str(source)], check=True, env=dict(os.environ))
    deadline = time.monotonic() + 60
    while panel.report.n_ok == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert panel.report.n_ok == 1 and 'lamin-count-ok">ok: 1' in panel.parts.counts.value
    # the auto-refresh is incremental: what changed since the panel's first (full) check
    assert panel.report.since is not None and "changes since" in panel.parts.status.value
    assert "outside lamin_nb" in panel.parts.status.value  # what it did not look for
    thread = panel._thread
    panel.parts.auto_toggle.value = False
    assert thread is not None and not thread.is_alive() and not panel.auto_refreshing
    other = ConsistencyPanel(auto_refresh=True, interval=0.2)
    assert other.auto_refreshing
    ConsistencyPanel.stop_all()
    assert not other.auto_refreshing and other.parts.auto_toggle.value is False


def test_panel_lists_what_a_killed_writer_left_with_its_age(local_instance, tmp_path):
    source = files(tmp_path, 1)[0]
    code = (
        "import sys, lamin_nb as ln; ln.connect(); ln.Artifact(sys.argv[1], key='stuck.bin').save()"
    )
    env = dict(os.environ, LAMIN_NB_FAULT="after_upload:kill")  # SIGKILL after the upload
    killed = subprocess.run([sys.executable, "-c", code, str(source)], env=env)
    assert killed.returncode == -9
    panel = ConsistencyPanel()
    assert 'lamin-count-pending">pending: 1' in panel.parts.counts.value
    assert panel.parts.details.titles[3] == "pending rows (1)"
    entry = panel.parts.lists[3].value
    assert "stuck.bin" in entry and "age " in entry and "owner " in entry


def test_list_and_plan_say_ages_the_same_way(local_instance, tmp_path):
    managed, _ = broken_instance(tmp_path)
    two_days_ago = time.time() - 2 * 86400 - 60
    os.utime(managed / "stray.bin", (two_days_ago, two_days_ago))
    panel = ConsistencyPanel()
    assert "2.0 d old" in panel.parts.lists[1].value
    click(panel.parts.repair_button)
    plan = panel.parts.plan.value
    assert "quarantine orphan: stray.bin (14 bytes, 2.0 d old)" in plan and " s old" not in plan
    assert "white-space: pre-wrap; word-break: normal" in plan  # wraps between words
    assert "2.0 d old" in repr(panel.plan) and "2.0 d old" in repr(panel.report)
