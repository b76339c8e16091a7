"""Incremental checks (``ln.check(since=...)``, DESIGN §12) and the counts the status bar
reads (kept by database triggers)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import update

import lamin_nb as ln
from lamin_nb.core import incremental
from lamin_nb.core.browse import status_counts
from lamin_nb.core.instance import current
from lamin_nb.core.models import ArtifactRow, SettingRow, utcnow
from lamin_nb.core.owners import process_owner
from lamin_nb.core.rows import count_by_status
from tests.support.proxy import CountingProxy
from tests.support.servers import s3_env
from tests.support.storage_ops import raw_delete, raw_put


def obj(artifact: ln.Artifact) -> str:
    return f".lamindb/{artifact.uid}{artifact.suffix}"


def test_since_last_finds_a_new_missing_object_and_leaves_strays_to_a_full_check(
    backend, make_file
):
    ln.Artifact(make_file(), key="s/old.bin").save()
    full = ln.check()
    assert full.is_consistent and full.since is None and full.not_looked_for is None
    assert incremental.last_full_check(current()) == full.checked_at

    fresh = ln.Artifact(make_file(), key="s/new.bin").save()
    raw_delete(backend, obj(fresh))
    raw_put(backend, ".lamindb/stray-after-the-check.bin", b"nobody's")
    report = ln.check(since="last")

    assert report.since == full.checked_at
    assert [m.uid for m in report.missing] == [fresh.uid]
    # no listing: an object written outside lamin_nb is not looked for, and the report says so
    assert report.orphans == []
    assert report.not_looked_for and "outside lamin_nb" in report.not_looked_for
    assert f"{full.checked_at:%Y-%m-%d %H:%M:%S}" in report.not_looked_for
    assert "note: objects written outside lamin_nb" in repr(report)
    assert not report.is_consistent
    assert "changes since" in report.summary()
    # an incremental check does not move the mark: the next one looks back as far
    assert incremental.last_full_check(current()) == full.checked_at
    assert ln.check(since="last").count("missing") == 1
    # the full check, the ground truth, finds the stray
    assert [o.name for o in ln.check().orphans] == ["stray-after-the-check.bin"]


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
    assert report.n_objects == 1  # only its object: nothing listed
    assert report.is_consistent
    assert new.uid not in {m.uid for m in report.missing}


def test_a_deleting_rows_temporary_is_an_orphan_a_pending_rows_is_not(local_instance, make_file):
    """Local uploads go through ``<name>.<token>.tmp``: the incremental check finds those of
    in-flight rows (a deleting row's are left over, a pending row's are its upload)."""
    leaving, uploading = (ln.Artifact(make_file()).save() for _ in range(2))
    ln.check()
    folder = local_instance.storage.local_path("")
    for artifact in (leaving, uploading):
        (folder / f"{artifact.uid}{artifact.suffix}.0badcafe.tmp").write_bytes(b"partial")
    hour = utcnow() + timedelta(hours=1)
    with current().db.write() as session:
        for artifact, status in ((leaving, "deleting"), (uploading, "pending")):
            session.execute(
                update(ArtifactRow)
                .where(ArtifactRow.uid == artifact.uid)
                .values(status=status, owner=process_owner(), lease_expires_at=hour)
            )
    report = ln.check(since="last")
    assert [o.name for o in report.orphans] == [f"{leaving.uid}{leaving.suffix}.0badcafe.tmp"]
    assert [p.uid for p in report.pending] == [uploading.uid]
    assert [d.uid for d in report.deleting] == [leaving.uid]


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

    saved = ln.Artifact(make_file()).save()
    assert cli.main(["check"]) == 0
    local_instance.storage.write_marker("x", b"")
    local_instance.storage.local_path("late-stray.bin").write_bytes(b"x")
    local_instance.storage.local_path(saved.uid + saved.suffix).unlink()
    capsys.readouterr()
    assert cli.main(["check", "--since-last", "--json"]) == 1
    found = json.loads(capsys.readouterr().out)
    assert found["since"] is not None and [m["uid"] for m in found["missing"]] == [saved.uid]
    assert found["orphans"] == [] and "outside lamin_nb" in found["not_looked_for"]
    assert cli.main(["check", "--since-last"]) == 1
    assert "note: objects written outside lamin_nb" in capsys.readouterr().out
    assert cli.main(["check"]) == 1  # the full check finds the stray
    assert "late-stray.bin" in capsys.readouterr().out


@pytest.fixture
def s3_behind_proxy(s3_server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An S3 instance on moto reached through the counting proxy: the requests it logs are
    the ones that really reach the server."""
    import s3fs

    host, port = s3_server.endpoint.removeprefix("http://").split(":")
    proxy = CountingProxy(host, int(port)).start()
    for name, value in s3_env(proxy.endpoint).items():
        monkeypatch.setenv(name, value)
    s3fs.S3FileSystem.clear_instance_cache()  # a cached one would bypass the proxy
    bucket = s3_server.new_bucket()
    ln.init(storage=f"s3://{bucket}/team")
    yield SimpleNamespace(proxy=proxy, bucket=bucket, client=s3_server.client())
    ln.disconnect()
    proxy.stop()
    s3fs.S3FileSystem.clear_instance_cache()


def test_incremental_check_sends_no_list_request_on_s3(s3_behind_proxy, make_file):
    """The storage holds thousands of objects (several LIST pages): the full check lists them
    all; the incremental one sends a HEAD per changed or in-flight row and no LIST at all."""
    env = s3_behind_proxy
    for i in range(2500):  # written straight to the server, not through the proxy
        env.client.put_object(Bucket=env.bucket, Key=f"team/.lamindb/zz-bulk-{i:05}.bin", Body=b"")
    kept = ln.Artifact(make_file(), key="s/kept.bin").save()
    env.proxy.reset()
    full = ln.check()
    assert len(env.proxy.list_requests(env.bucket)) >= 3  # 2,500 objects: three pages at least
    assert full.n_objects == 2501 and full.count("orphans") == 2500

    gone, uploading = (ln.Artifact(make_file(), key=f"s/new{i}.bin").save() for i in range(2))
    env.client.delete_object(Bucket=env.bucket, Key=f"team/.lamindb/{gone.uid}{gone.suffix}")
    with current().db.write() as session:
        session.execute(
            update(ArtifactRow)
            .where(ArtifactRow.uid == uploading.uid)
            .values(status="pending", owner=process_owner(), lease_expires_at=utcnow())
        )
    env.proxy.reset()
    report = ln.check(since="last")

    assert env.proxy.list_requests(env.bucket) == []
    heads = [line for line in env.proxy.requests if line.startswith("HEAD ")]
    # one per row changed since the full check (within the clock-skew margin: all three),
    # and one more for the missing object, looked at again before it is reported
    assert len(heads) == 4, env.proxy.requests
    assert [m.uid for m in report.missing] == [gone.uid]
    assert [p.uid for p in report.pending] == [uploading.uid]
    assert report.orphans == [] and report.not_looked_for
    assert kept.uid not in {m.uid for m in report.missing}


def test_a_periodic_refresh_is_full_once_the_last_full_check_is_old(local_instance, make_file):
    """The status bar's refresh: incremental, but full when no full check ran within the
    interval (only a full check finds objects written outside lamin_nb)."""
    ln.Artifact(make_file()).save()
    assert incremental.refresh_since(local_instance, 3600) is None  # never ran
    ln.check()
    assert incremental.refresh_since(local_instance, 3600) == "last"
    assert incremental.refresh_since(local_instance, 0) is None
    with current().db.write() as session:  # as if the last full check ran two hours ago
        session.execute(
            update(SettingRow)
            .where(SettingRow.key == incremental.LAST_FULL_CHECK)
            .values(value=(utcnow() - timedelta(hours=2)).isoformat())
        )
    assert incremental.refresh_since(local_instance, 3600) is None
