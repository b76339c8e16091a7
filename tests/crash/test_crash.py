"""A saving or deleting process is killed (SIGKILL) at each fault point (DESIGN §4, I1-I3).

The child is a real second process on the same instance. After the kill, ``check`` must show
only pending/deleting rows and objects they account for; after ``repair`` (leases expired)
the instance is clean. Every point, single and bulk, on every backend combination.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import lamin_nb as ln
from tests.conftest import BACKENDS
from tests.support.crashes import (
    assert_damage_contained,
    assert_i1_i2_i3,
    object_names,
    rows_by_status,
    run_child,
)

SAVE_POINTS = ["after_reserve", "mid_upload", "after_upload", "before_commit", "after_commit"]
DELETE_POINTS = ["mid_delete", "after_object_delete"]
KEY = "runs/table.csv"


def _cases() -> list[tuple[str, str, str]]:
    cases = []
    for combo in BACKENDS:
        cases += [(combo, p, mode) for p in SAVE_POINTS for mode in ("single", "bulk")]
        cases += [(combo, p, "delete") for p in DELETE_POINTS]
    return cases


def _ids(case: tuple[str, str, str]) -> str:
    return "-".join(case)


@pytest.mark.parametrize(
    ("backend", "point", "mode"), _cases(), ids=map(_ids, _cases()), indirect=["backend"]
)
def test_killed_process_leaves_repairable_state(backend, make_file, point, mode):
    v1 = ln.Artifact(make_file(b"version one"), key=KEY).save()
    if mode == "delete":
        _kill_delete(make_file, point, v1)
    else:
        _kill_save(backend, make_file, point, mode, v1)
    plan = ln.repair(dry_run=False)  # leases (0 s in the child) are expired; default grace
    assert all(a.done and a.error is None for a in plan.actions), repr(plan)
    assert_i1_i2_i3()


def _kill_save(backend, make_file, point: str, mode: str, v1: ln.Artifact) -> None:
    items = [[str(make_file(size=64 * 1024)), KEY]]
    if mode == "bulk":
        items += [
            [str(make_file(size=64 * 1024)), "runs/other.bin"],
            [str(make_file(size=1024)), None],
        ]
    result = run_child({"op": "save", "items": items}, fault=f"{point}:kill", lease_seconds=0)
    assert result.killed, (result.returncode, result.stderr)
    report = ln.check()
    assert_damage_contained(report)
    latest = ln.Artifact.get(KEY)
    if point == "after_commit":
        assert report.is_consistent and not report.pending
        assert latest.version == 2 and ln.Artifact.filter().count() == len(items) + 1
        assert ln.Artifact.get(v1.uid).is_latest is False
    else:
        # the new version never harms the old one: still latest, still there
        assert latest.uid == v1.uid and latest.is_latest
        assert Path(latest.cache()).read_bytes() == b"version one"
        assert ln.Artifact.filter().count() == 1
        assert {p.uid for p in report.pending} == {
            r.uid for r in rows_by_status().get("pending", [])
        }
        assert report.pending and all(p.expired for p in report.pending)
        assert not report.is_consistent  # expired leftovers wait for repair
        leftovers = _leftovers_belong_to_pending_rows(report)
        if point == "mid_upload" and not backend.is_s3:
            assert any(name.endswith(".tmp") for name in leftovers)  # a half-written upload
        if point in ("after_upload", "before_commit"):
            assert all(p.object_present for p in report.pending)


def _leftovers_belong_to_pending_rows(report) -> set[str]:
    from lamin_nb.core.storage import owner_of_temp

    pending = {p.name for p in report.pending}
    committed = {f"{r.uid}{r.suffix}" for r in rows_by_status().get("committed", [])}
    leftovers = object_names() - committed
    for name in leftovers:
        assert (owner_of_temp(name) or name) in pending, name
    return leftovers


def _kill_delete(make_file, point: str, v1: ln.Artifact) -> None:
    v2 = ln.Artifact(make_file(b"version two"), key=KEY).save()
    result = run_child({"op": "delete", "uid": v2.uid}, fault=f"{point}:kill", lease_seconds=0)
    assert result.killed, (result.returncode, result.stderr)
    report = ln.check()
    assert_damage_contained(report)  # never a committed row without its object
    assert [d.uid for d in report.deleting] == [v2.uid]
    assert report.deleting[0].object_present is (point == "mid_delete")
    latest = ln.Artifact.get(KEY)
    assert latest.uid == v1.uid and latest.is_latest  # the previous version took over
    assert ln.Artifact.filter().count() == 1
    with pytest.raises(ln.NotFoundError):
        ln.Artifact.get(v2.uid)


@pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True)
def test_live_lease_is_never_touched(backend, make_file):
    """A writer on another host whose lease still runs may be uploading: repair leaves it.

    (On this host a killed writer is known to be gone at once; on another host only its lease
    tells, so the killed writer's row is made to name another host.)
    """
    v1 = ln.Artifact(make_file(b"version one"), key=KEY).save()
    items = [[str(make_file(size=4096)), KEY]]
    result = run_child({"op": "save", "items": items}, fault="after_upload:kill", lease_seconds=600)
    assert result.killed
    _move_owners_to_another_host()
    report = ln.check()
    assert [p.expired for p in report.pending] == [False]
    assert report.is_consistent and report.pending[0].object_present
    before = object_names()
    ln.connect()  # recovery on connect handles expired leases only
    plan = ln.repair(dry_run=False)
    assert not plan.actions and [a.kind for a in plan.skipped] == ["roll back pending"]
    assert object_names() == before and len(rows_by_status()["pending"]) == 1
    # the operator knows no writer runs: grace 0 treats every lease as expired
    ln.repair(dry_run=False, grace_seconds=0)
    assert_i1_i2_i3()
    assert ln.Artifact.get(KEY).uid == v1.uid


def _move_owners_to_another_host() -> None:
    import dataclasses

    from sqlalchemy import select, update

    from lamin_nb.core import owners
    from lamin_nb.core.instance import current
    from lamin_nb.core.models import PENDING, ArtifactRow

    with current().db.write() as session:
        for row in session.scalars(select(ArtifactRow).where(ArtifactRow.status == PENDING)):
            who = owners.parse(row.owner)
            assert who is not None
            elsewhere = str(dataclasses.replace(who, host="elsewhere"))
            session.execute(
                update(ArtifactRow).where(ArtifactRow.uid == row.uid).values(owner=elsewhere)
            )


@pytest.mark.parametrize("backend", ["pg-local"], indirect=True)
def test_expired_lease_is_recovered_on_connect(backend, make_file):
    """No explicit repair: the next process that connects finishes an expired crash."""
    import time

    items = [[str(make_file(size=4096)), "a.bin"], [str(make_file(size=4096)), "b.bin"]]
    result = run_child({"op": "save", "items": items}, fault="after_upload:kill", lease_seconds=1)
    assert result.killed
    deadline = time.monotonic() + 30
    while not all(p.expired for p in ln.check().pending) and time.monotonic() < deadline:
        time.sleep(0.2)
    ln.connect()
    assert_i1_i2_i3()
    assert ln.Artifact.filter().count() == 0
