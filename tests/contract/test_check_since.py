"""Incremental checks (``ln.check(since=...)``, DESIGN §12) and the counts the status bar
reads (kept by database triggers)."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import update

import lamin_nb as ln
from lamin_nb.core import incremental
from lamin_nb.core.browse import status_counts
from lamin_nb.core.instance import current
from lamin_nb.core.models import ArtifactRow, utcnow
from lamin_nb.core.rows import count_by_status
from tests.support.storage_ops import raw_delete, raw_put


def obj(artifact: ln.Artifact) -> str:
    return f".lamindb/{artifact.uid}{artifact.suffix}"


def test_since_last_finds_a_new_orphan_and_a_new_missing_object(backend, make_file):
    ln.Artifact(make_file(), key="s/old.bin").save()
    full = ln.check()
    assert full.is_consistent and full.since is None
    assert incremental.last_full_check(current()) == full.checked_at

    fresh = ln.Artifact(make_file(), key="s/new.bin").save()
    raw_delete(backend, obj(fresh))
    raw_put(backend, ".lamindb/stray-after-the-check.bin", b"nobody's")
    report = ln.check(since="last")

    assert report.since == full.checked_at
    assert [m.uid for m in report.missing] == [fresh.uid]
    assert [o.name for o in report.orphans] == ["stray-after-the-check.bin"]
    assert not report.is_consistent
    assert "changes since" in report.summary()
    # an incremental check does not move the mark: the next one looks back as far
    assert incremental.last_full_check(current()) == full.checked_at
    assert ln.check(since="last").count("orphans") == 1


def test_unchanged_rows_and_old_objects_are_not_looked_at(local_instance, make_file):
    saved = [ln.Artifact(make_file(), key=f"s/{i}.bin").save() for i in range(5)]
    hour_ago = utcnow() - timedelta(hours=1)
    with current().db.write() as session:  # as if saved an hour ago
        session.execute(update(ArtifactRow).values(updated_at=hour_ago))
    old = hour_ago.replace(tzinfo=timezone.utc).timestamp()
    for artifact in saved:
        os.utime(current().storage.local_path(artifact.uid + artifact.suffix), (old, old))
    new = ln.Artifact(make_file(), key="s/new.bin").save()

    report = ln.check(since=datetime.now(timezone.utc) - timedelta(minutes=1))
    assert report.n_rows == 1 and report.n_ok == 1  # only the new row
    assert report.n_objects == 6  # one listing pass, nothing kept
    assert report.is_consistent
    assert new.uid not in {m.uid for m in report.missing}


def test_since_last_without_a_full_check_runs_a_full_one(local_instance, make_file):
    ln.Artifact(make_file()).save()
    assert incremental.last_full_check(current()) is None
    report = ln.check(since="last")
    assert report.since is None and report.n_rows == 1
    assert incremental.last_full_check(current()) == report.checked_at


def test_since_must_be_a_time_or_last(local_instance):
    with pytest.raises(TypeError, match="since must be"):
        ln.check(since=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="since must be"):
        ln.check(since="yesterday")


def test_status_counts_are_kept_by_the_database(backend, make_file):
    saved = [ln.Artifact(make_file(), key=f"k/{i}.bin").save() for i in range(4)]
    ln.save([ln.Artifact(make_file()) for _ in range(3)])
    saved[0].delete()  # trash
    saved[1].delete(permanent=True)
    with current().db.write() as session:
        session.execute(
            update(ArtifactRow).where(ArtifactRow.uid == saved[2].uid).values(status="lost")
        )
    counts = status_counts(current())
    with current().db.read() as session:
        truth = count_by_status(session)
    assert counts["committed"] + counts["trashed"] == truth["committed"] == 5
    assert (counts["trashed"], counts["lost"], counts["pending"]) == (1, 1, 0)


def test_cli_check_since_last(local_instance, make_file, capsys):
    from lamin_nb import cli

    ln.Artifact(make_file()).save()
    assert cli.main(["check"]) == 0
    local_instance.storage.write_marker("x", b"")
    local_instance.storage.local_path("late-stray.bin").write_bytes(b"x")
    capsys.readouterr()
    assert cli.main(["check", "--since-last", "--json"]) == 1
    found = json.loads(capsys.readouterr().out)
    assert found["since"] is not None and [o["name"] for o in found["orphans"]] == [
        "late-stray.bin"
    ]
