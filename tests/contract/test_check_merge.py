"""``ln.check`` as a merge of two name-ordered streams (DESIGN §12): names that interleave
with the rows' own, temporary uploads, reserved folders, nested prefixes, and the cap on
findings held."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

import lamin_nb as ln
from lamin_nb.core import consistency
from lamin_nb.core.instance import current
from lamin_nb.core.models import PENDING, ArtifactRow, utcnow
from tests.support.storage_ops import raw_put


def _mark_pending(uid: str) -> None:
    """A row back in ``pending`` with a live lease: an upload in progress, as check sees it."""
    with current().db.write() as session:
        session.execute(
            update(ArtifactRow)
            .where(ArtifactRow.uid == uid)
            .values(
                status=PENDING, owner="elsewhere", lease_expires_at=utcnow() + timedelta(hours=1)
            )
        )


def test_names_interleaving_with_rows(backend, make_file):
    saved = sorted(
        (ln.Artifact(make_file(), key=f"m/{i}.bin").save() for i in range(4)),
        key=lambda a: a.uid,
    )
    names = [a.uid + a.suffix for a in saved]
    first, second, third = names[0], names[1], names[2]
    strays = [
        first[:20],  # the uid alone: sorts just before its object
        first + "~",  # sorts just after it
        first + ".0badf00d.tmp",  # a committed row's leftover temporary upload
        second[:19],  # a shorter name that sorts before the second row
        third[:20] + "/inside.txt",  # a nested prefix named by a uid
        "!first-of-all",
        "~last-of-all",
        "_other/x.bin",  # not a reserved folder
        "sub/deeper/deepest.txt",
    ]
    for name in strays:
        raw_put(backend, f".lamindb/{name}", b"stray")
    raw_put(backend, ".lamindb/_quarantine/20260101T000000/old.bin", b"moved aside")
    raw_put(backend, ".lamindb/_meta/marker", b"ours")
    _mark_pending(saved[3].uid)
    live_temp = saved[3].uid + saved[3].suffix + ".cafebabe.tmp"
    raw_put(backend, f".lamindb/{live_temp}", b"an upload in progress")

    report = ln.check()

    assert sorted(o.name for o in report.orphans) == sorted(strays)
    assert report.n_ok == 3 and not report.missing and not report.mismatched
    assert [p.uid for p in report.pending] == [saved[3].uid]
    assert report.n_rows == 4
    assert report.n_objects == 4 + len(strays) + 1  # the live temp is listed, and claimed


def test_missing_and_orphans_alternate(backend, make_file):
    saved = [ln.Artifact(make_file(), key=f"alt/{i}.bin").save() for i in range(6)]
    gone = sorted(saved, key=lambda a: a.uid)[::2]
    for artifact in gone:
        name = artifact.uid + artifact.suffix
        current().storage.delete(name)
        raw_put(backend, f".lamindb/{name}x", b"a neighbour of the missing object")
    report = ln.check()
    assert sorted(m.uid for m in report.missing) == sorted(a.uid for a in gone)
    assert sorted(o.name for o in report.orphans) == sorted(a.uid + a.suffix + "x" for a in gone)
    assert report.n_ok == 3


def test_findings_are_capped_and_counted(local_instance, make_file, monkeypatch):
    monkeypatch.setattr(consistency, "LIMIT", 3)
    ln.Artifact(make_file()).save()
    for i in range(8):
        raw_put_local(local_instance, f"stray-{i}.bin")
    report = ln.check()
    assert len(report.orphans) == 3
    assert report.count("orphans") == 8 and report.not_listed == {"orphans": 5}
    assert report.truncated and not report.is_consistent
    assert "8 orphans" in report.summary()
    assert "... and 5 more" in repr(report)
    assert report.to_dict()["not_listed"] == {"orphans": 5}


def raw_put_local(inst, name: str) -> None:
    inst.storage.write_marker("x", b"")  # the managed folder exists
    path = inst.storage.local_path(name)
    path.write_bytes(b"stray")


@pytest.mark.parametrize("pg", [False, True])
def test_rows_stream_in_byte_order_whatever_the_collation(pg, request, tmp_path, make_file):
    """Uids mix cases; PostgreSQL's collation must not reorder them (the merge would see
    every object as an orphan and every row as missing)."""
    db = request.getfixturevalue("pg_url") if pg else None
    ln.init(storage=str(tmp_path / "storage"), db=db)
    for i in range(40):
        ln.Artifact(make_file(), key=f"o/{i}.bin").save()
    report = ln.check()
    assert report.is_consistent and report.n_ok == 40


def test_repair_works_through_more_findings_than_a_check_holds(
    local_instance, make_file, monkeypatch
):
    monkeypatch.setattr(consistency, "LIMIT", 3)
    ln.Artifact(make_file()).save()
    for i in range(8):
        raw_put_local(local_instance, f"stray-{i}.bin")
    plan = ln.repair(dry_run=False, grace_seconds=0)
    assert plan.after is not None and plan.after.is_consistent
    assert plan.rounds == 3 and plan.done_earlier == 6 and len(plan.actions) == 2
    assert "3 rounds, 6 done before the last" in plan.summary()
    assert len(ln.list_quarantined()) == 8
