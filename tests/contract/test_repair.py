"""``ln.repair`` and ``lamin-nb repair`` on every backend combination (DESIGN §4, I3)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import lamin_nb as ln
from lamin_nb import cli
from tests.support.crashes import assert_i1_i2_i3, rows_by_status
from tests.support.storage_ops import (
    paused_save,
    raw_delete,
    raw_exists_bucket_root,
    raw_put,
    raw_put_bucket_root,
    raw_read,
)

ORPHAN = ".lamindb/orphan.bin"


def obj(artifact: ln.Artifact) -> str:
    return f".lamindb/{artifact.uid}{artifact.suffix}"


def test_dry_run_by_default_changes_nothing(backend, make_file):
    lost = ln.Artifact(make_file()).save()
    raw_delete(backend, obj(lost))
    raw_put(backend, ORPHAN, b"orphan")
    plan = ln.repair(grace_seconds=0)
    assert plan.dry_run and not plan.applied and plan.after is None
    assert [(a.kind, a.target) for a in plan.actions] == [("quarantine orphan", "orphan.bin")]
    assert [(s.kind, s.target) for s in plan.skipped] == [("missing object", lost.uid)]
    assert plan.summary().startswith("repair plan (dry run): quarantine orphan x1")
    assert raw_read(backend, ORPHAN) == b"orphan" and ln.list_quarantined() == []
    assert rows_by_status()["committed"][0].uid == lost.uid


def test_orphans_younger_than_grace_are_left_alone(backend, make_file):
    ln.Artifact(make_file()).save()
    raw_put(backend, ORPHAN, b"maybe someone's upload")
    plan = ln.repair(dry_run=False)  # default grace: one hour
    assert plan.actions == [] and [s.kind for s in plan.skipped] == ["quarantine orphan"]
    assert raw_read(backend, ORPHAN) == b"maybe someone's upload"
    assert [o.name for o in plan.after.orphans] == ["orphan.bin"]


def test_quarantine_then_restore(backend, make_file):
    artifact = ln.Artifact(make_file(b"real")).save()
    raw_put(backend, ORPHAN, b"orphan")
    plan = ln.repair(dry_run=False, grace_seconds=0)
    assert plan.applied and [a.done for a in plan.actions] == [True]
    assert raw_read(backend, ORPHAN) is None
    assert [name.rsplit("/", 1)[-1] for name in ln.list_quarantined()] == ["orphan.bin"]
    assert_i1_i2_i3()  # the quarantine is not part of the managed objects
    assert ln.restore_quarantined("orphan.bin") == ["orphan.bin"]
    assert raw_read(backend, ORPHAN) == b"orphan" and ln.list_quarantined() == []
    assert [o.name for o in ln.check().orphans] == ["orphan.bin"]
    assert Path(ln.Artifact.get(artifact.uid).load()).read_bytes() == b"real"


def test_purge_only_after_retention(backend):
    raw_put(backend, ORPHAN, b"orphan")
    ln.repair(dry_run=False, grace_seconds=0)
    plan = ln.repair(dry_run=False, purge=True)  # default retention: a week
    assert plan.actions == [] and len(ln.list_quarantined()) == 1
    plan = ln.repair(dry_run=False, purge=True, retention_seconds=0)
    assert [a.kind for a in plan.actions] == ["purge quarantined"] and plan.actions[0].done
    assert ln.list_quarantined() == []
    with pytest.raises(ln.ValidationError):
        ln.repair(grace_seconds=-1)


def test_missing_objects_are_marked_lost_only_on_request(backend, make_file):
    v1 = ln.Artifact(make_file(b"one"), key="r/m.txt").save()
    v2 = ln.Artifact(make_file(b"two"), key="r/m.txt").save()
    raw_delete(backend, obj(v2))
    plan = ln.repair(dry_run=False, grace_seconds=0)
    assert plan.actions == [] and [s.target for s in plan.skipped] == [v2.uid]
    assert "mark_lost=True" in repr(plan)
    assert ln.Artifact.get("r/m.txt").uid == v2.uid  # reported, never silently dropped
    plan = ln.repair(dry_run=False, mark_lost=True)
    assert [(a.kind, a.target, a.done) for a in plan.actions] == [("mark lost", v2.uid, True)]
    assert [r.uid for r in rows_by_status()["lost"]] == [v2.uid]  # the record is kept
    assert ln.Artifact.get("r/m.txt").uid == v1.uid and ln.Artifact.get(v1.uid).is_latest
    report = ln.check()
    assert report.is_consistent and [lost.uid for lost in report.lost] == [v2.uid]
    assert_i1_i2_i3()


def test_repair_never_deletes_outside_the_managed_prefix(backend, make_file):
    ln.Artifact(make_file()).save()
    outside = {
        "beside.txt": b"user file",
        ".lamindb-old/x.bin": b"similar name",
        ".lamindbx": b"similar name",
        "nested/.lamindb/y.bin": b"not our prefix",
    }
    for rel, data in outside.items():
        raw_put(backend, rel, data)
    raw_put_bucket_root(backend, "at-the-root.txt", b"root")
    raw_put(backend, ORPHAN, b"orphan")
    marker = raw_read(backend, ".lamindb/_meta/instance.json")
    for _ in range(2):  # quarantine, then purge
        plan = ln.repair(dry_run=False, grace_seconds=0, purge=True, retention_seconds=0)
        assert all(a.error is None for a in plan.actions)
    assert raw_read(backend, ORPHAN) is None and ln.list_quarantined() == []
    for rel, data in outside.items():
        assert raw_read(backend, rel) == data, rel
    assert raw_exists_bucket_root(backend, "at-the-root.txt")
    assert raw_read(backend, ".lamindb/_meta/instance.json") == marker
    assert_i1_i2_i3()


def test_pending_row_with_live_lease_is_never_touched(backend, make_file):
    artifact = ln.Artifact(make_file(), key="r/live.bin")
    with paused_save([artifact]):
        plan = ln.repair(dry_run=False)
        assert plan.actions == []
        assert [(s.kind, s.target) for s in plan.skipped] == [("roll back pending", artifact.uid)]
        assert raw_read(backend, obj(artifact)) is not None
    assert artifact.status == "committed" and ln.Artifact.get("r/live.bin").uid == artifact.uid
    assert_i1_i2_i3()


@pytest.mark.parametrize("backend", ["sqlite-local", "pg-local"], indirect=True)
def test_old_orphans_go_with_the_default_grace(backend, make_file):
    raw_put(backend, ORPHAN, b"old")
    raw_put(backend, ".lamindb/new.bin", b"new")
    old = time.time() - 2 * 3600
    os.utime(Path(backend.storage, ORPHAN), (old, old))
    plan = ln.repair(dry_run=False)
    assert [a.target for a in plan.actions] == ["orphan.bin"]
    assert [s.target for s in plan.skipped] == ["new.bin"]
    assert raw_read(backend, ".lamindb/new.bin") == b"new"


def test_cli_repair(backend, make_file, capsys):
    ln.Artifact(make_file()).save()
    raw_put(backend, ORPHAN, b"orphan")
    assert cli.main(["repair"]) == 0
    out = capsys.readouterr().out
    assert "nothing to repair (1 left alone)" in out and "quarantine orphan: orphan.bin" in out
    assert cli.main(["repair", "--grace", "0"]) == 0
    assert "repair plan (dry run): quarantine orphan x1" in capsys.readouterr().out
    assert raw_read(backend, ORPHAN) == b"orphan"
    assert cli.main(["repair", "--apply", "--grace", "0"]) == 0
    out = capsys.readouterr().out
    assert "repair applied: quarantine orphan x1" in out and "are consistent" in out
    assert raw_read(backend, ORPHAN) is None
    assert cli.main(["check"]) == 0


@pytest.mark.parametrize("backend", ["sqlite-s3", "pg-s3"], indirect=True)
def test_incomplete_s3_uploads_are_aborted(backend):
    """A writer killed inside a multipart upload leaves invisible, billed parts: repair aborts."""
    client, bucket = backend.s3.client(), backend.bucket
    inside, outside = "team/.lamindb/ABCDEFGHIJKLMNOP0000.bin", "elsewhere/big.bin"
    for key in (inside, outside):
        upload = client.create_multipart_upload(Bucket=bucket, Key=key)
        client.upload_part(
            Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=b"x" * 1024
        )
    plan = ln.repair(grace_seconds=0)
    assert [(a.kind, a.target) for a in plan.actions] == [
        ("abort incomplete upload", "ABCDEFGHIJKLMNOP0000.bin")
    ]
    ln.repair(dry_run=False, grace_seconds=0)
    left = [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]
    assert left == [outside]  # outside the managed prefix: never touched


def test_leftover_temp_beside_a_committed_object_is_removed(backend, make_file):
    """I3: a temporary upload left beside a committed object is an orphan for check and repair."""
    artifact = ln.Artifact(make_file(b"kept")).save()
    leftover = f"{artifact.uid}{artifact.suffix}.0badc0de.tmp"
    raw_put(backend, f".lamindb/{leftover}", b"half an upload")
    assert [o.name for o in ln.check().orphans] == [leftover]
    plan = ln.repair(dry_run=False, grace_seconds=0)
    assert [(a.kind, a.target, a.done) for a in plan.actions] == [
        ("quarantine orphan", leftover, True)
    ]
    assert plan.after is not None and plan.after.is_consistent, repr(plan.after)
    assert raw_read(backend, f".lamindb/{leftover}") is None
    assert Path(artifact.cache()).read_bytes() == b"kept"


def test_repair_plan_and_check_show_human_ages(backend):
    raw_put(backend, ORPHAN, b"old")
    if not backend.is_s3:
        old = time.time() - 2 * 86400
        os.utime(Path(backend.storage, ORPHAN), (old, old))
    plan_text, report_text = repr(ln.repair()), repr(ln.check())
    age = "2.0 d old" if not backend.is_s3 else " s old"
    assert "orphan.bin (3 bytes, " in plan_text and age in plan_text, plan_text
    assert age in report_text, report_text
