"""A process dies inside ``ln.transaction()``, or its database connection does during COMMIT
(DESIGN §10). Real second processes: SIGKILL at a fault point, ``pg_terminate_backend`` of a
connection inside its COMMIT, and two writers racing for one key's next version.

- killed before the commit: the block's pending rows are rolled back (never forward): repair
  removes their objects and rows; what the block trashed or deleted is intact;
- killed after the commit: everything is committed; repair finishes the deletes;
- connection killed during COMMIT: resolved by reading back, the rows removed only once the
  read-back shows the commit did not happen;
- COMMIT applied by the server but its reply lost (a proxy cuts the client right after
  forwarding it): read back as committed, the saves kept, the delete finished.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import lamin_nb as ln
from lamin_nb.core.instance import current
from tests.support.crashes import (
    assert_i1_i2_i3,
    finish_child,
    rows_by_status,
    run_child,
    start_child,
    wait_until_stopped,
)
from tests.support.faults_env import db_name, pg_admin
from tests.support.pg_proxy import CommitReplyLostProxy

PG_BACKENDS = ["pg-local", "pg-s3"]


@pytest.fixture
def stored(backend, make_file) -> dict[str, Any]:
    return {
        "delete": ln.Artifact(make_file(), key="old/delete.csv").save(),
        "trash": ln.Artifact(make_file(), key="old/trash.csv").save(),
        "version": ln.Artifact(make_file(), key="runs/model.pt").save(),
    }


def _steps(make_file: Any, stored: dict[str, Any]) -> list[list[Any]]:
    return [
        ["save", str(make_file()), "runs/model.pt"],
        ["save_many", [[str(make_file()), f"runs/fig{i}.png"] for i in range(3)]],
        ["delete", stored["delete"].uid],
        ["trash", stored["trash"].uid],
    ]


def _visible() -> list[str]:
    return sorted(a.key or a.uid for a in ln.Artifact.filter())


BEFORE = ["old/delete.csv", "old/trash.csv", "runs/model.pt"]


@pytest.mark.parametrize("point", ["after_upload", "tx_end", "tx_before_commit"])
def test_killed_before_the_commit_repair_rolls_the_block_back(
    backend, make_file, stored, point
) -> None:
    result = run_child(
        {"op": "transaction", "steps": _steps(make_file, stored)}, fault=f"{point}:kill"
    )
    assert result.killed, result
    assert _visible() == BEFORE  # nothing of the block, the delete and the trash undone
    report = ln.check()
    assert report.pending and not report.deleting and not report.missing
    assert all(p.transaction and p.owner_alive is False for p in report.pending)
    assert "uncommitted transaction: repair rolls it back" in repr(report)
    plan = ln.repair()  # recognised at once (its process is gone), no grace to wait out
    assert {a.kind for a in plan.actions} == {"roll back pending"}, plan
    assert all("uncommitted transaction" in a.detail for a in plan.actions)
    ln.repair(dry_run=False)
    assert_i1_i2_i3()
    assert ln.check(deep=True).is_consistent
    assert _visible() == BEFORE
    assert ln.Artifact.get("runs/model.pt").uid == stored["version"].uid
    assert ln.Artifact.get("old/delete.csv").cache().exists()


def test_killed_after_the_commit_repair_finishes_the_deletes(backend, make_file, stored) -> None:
    result = run_child(
        {"op": "transaction", "steps": _steps(make_file, stored)}, fault="tx_after_commit:kill"
    )
    assert result.killed, result
    after = ["runs/fig0.png", "runs/fig1.png", "runs/fig2.png", "runs/model.pt", "runs/model.pt"]
    assert _visible() == after
    report = ln.check()
    assert [d.uid for d in report.deleting] == [stored["delete"].uid]
    assert not report.pending and not report.missing
    assert "committed transaction: repair finishes the delete" in repr(report)
    ln.repair(dry_run=False)
    assert_i1_i2_i3()
    assert ln.check(deep=True).is_consistent
    assert _visible() == after
    assert ln.Artifact.get("runs/model.pt").version == 2


def _terminate_backend_in_commit(url: str) -> int:
    """Kill the lamin_nb connection that holds an open transaction (the stopped child's)."""
    with pg_admin() as conn:
        found = conn.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
            "WHERE application_name = 'lamin_nb' AND datname = %s "
            "AND state LIKE 'idle in transaction%%' AND pid <> pg_backend_pid()",
            (db_name(url),),
        ).fetchall()
    return sum(1 for (ok,) in found if ok)


@pytest.fixture(params=PG_BACKENDS)
def pg_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    from tests.conftest import make_backend

    b = make_backend(request.param, tmp_path, request)
    ln.init(storage=b.storage, db=b.db)
    return b


def test_connection_killed_during_commit_is_resolved_by_reading_back(pg_backend, make_file) -> None:
    stored = {
        "delete": ln.Artifact(make_file(), key="old/delete.csv").save(),
        "trash": ln.Artifact(make_file(), key="old/trash.csv").save(),
        "version": ln.Artifact(make_file(), key="runs/model.pt").save(),
    }
    child = start_child(
        {"op": "transaction", "steps": _steps(make_file, stored)}, fault="tx_before_commit:stop"
    )
    wait_until_stopped(child.pid)  # every row change written, the COMMIT not yet sent
    assert _terminate_backend_in_commit(pg_backend.db) == 1
    os.kill(child.pid, signal.SIGCONT)
    result = finish_child(child)
    assert result.returncode == 0, result.stderr
    assert result.output["committed"] is False
    assert "read back: not committed" in result.output["error"]
    assert "rolled back" in result.output["error"]
    assert _visible() == BEFORE
    assert_i1_i2_i3()  # the child removed its own uploads and rows: nothing for repair


def _version_writer(make_file: Any, key: str) -> dict[str, Any]:
    return {"op": "transaction", "steps": [["save", str(make_file()), key]]}


@pytest.mark.parametrize("pg_backend", ["pg-local"], indirect=True)
def test_two_transactions_on_one_key_never_share_a_version(pg_backend, make_file) -> None:
    key = "runs/model.pt"
    ln.Artifact(make_file(), key=key).save()
    # A reserves version 2 and waits at the end of its block; B reserves 3 and commits
    first = start_child(_version_writer(make_file, key), fault="tx_end:stop")
    wait_until_stopped(first.pid)
    second = run_child(_version_writer(make_file, key))
    assert second.returncode == 0, second.stderr
    assert [s["version"] for s in second.output["saved"]] == [3]
    os.kill(first.pid, signal.SIGCONT)
    lost = finish_child(first)
    assert lost.returncode == 0, lost.stderr
    assert lost.output["error"].startswith("TransactionConflict")
    assert "another writer committed version 3" in lost.output["error"]
    assert [a.version for a in ln.Artifact.filter(key=key)] == [1, 3]
    assert ln.Artifact.get(key).version == 3
    assert_i1_i2_i3()
    # in commit order, both are saved: the second to commit has the higher version
    a = start_child(_version_writer(make_file, key), fault="tx_end:stop")
    wait_until_stopped(a.pid)
    b = start_child(_version_writer(make_file, key), fault="tx_end:stop")
    wait_until_stopped(b.pid)
    os.kill(a.pid, signal.SIGCONT)
    assert finish_child(a).output["saved"][0]["version"] == 4
    os.kill(b.pid, signal.SIGCONT)
    assert finish_child(b).output["saved"][0]["version"] == 5
    versions = [r.version for r in rows_by_status()["committed"] if r.key == key]
    assert sorted(versions) == [1, 3, 4, 5] and len(set(versions)) == len(versions)
    assert ln.Artifact.get(key).version == 5
    assert_i1_i2_i3()


@pytest.mark.parametrize("pg_backend", ["pg-local"], indirect=True)
def test_an_outcome_that_cannot_be_read_back_is_left_to_repair(pg_backend, make_file) -> None:
    from tests.support.faults_env import allow_connections

    stored = {
        "delete": ln.Artifact(make_file(), key="old/delete.csv").save(),
        "trash": ln.Artifact(make_file(), key="old/trash.csv").save(),
        "version": ln.Artifact(make_file(), key="runs/model.pt").save(),
    }
    ln.disconnect()  # the parent's pooled connections would be cut below as well
    child = start_child(
        {"op": "transaction", "steps": _steps(make_file, stored)}, fault="tx_before_commit:stop"
    )
    wait_until_stopped(child.pid)
    allow_connections(pg_backend.db, False)  # an outage: no new connection, the old one cut
    try:
        assert _terminate_backend_in_commit(pg_backend.db) == 1
        os.kill(child.pid, signal.SIGCONT)
        result = finish_child(child)
    finally:
        allow_connections(pg_backend.db, True)
    assert result.returncode == 0, result.stderr
    assert result.output["committed"] is None
    error = result.output["error"]
    assert "outcome unknown" in error and "nothing was deleted" in error
    assert "ln.repair(dry_run=False)" in error
    # it had not committed: its rows stayed pending under a writer that is gone now, so the
    # recovery that runs on connect already rolled them back
    ln.connect()
    assert _visible() == BEFORE
    assert_i1_i2_i3()
    assert _visible() == BEFORE


@pytest.fixture
def lost_reply_proxy(pg_url: str) -> Iterator[CommitReplyLostProxy]:
    """PostgreSQL behind a proxy that can lose the reply to one COMMIT."""
    from sqlalchemy.engine import make_url

    target = make_url(pg_url)
    proxy = CommitReplyLostProxy(target.host or "127.0.0.1", target.port or 5432).start()
    yield proxy
    ln.disconnect()  # its pooled connections go through the proxy
    proxy.stop()


def _plain_rows(url: str) -> tuple[dict[str, tuple[str, str, bool]], list[tuple[int, int]]]:
    """Artifact rows (key -> uid+suffix, status, latest) and transaction markers, read over a
    connection of its own, not lamin_nb's."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        artifacts = conn.execute(
            "SELECT key, uid || suffix, status, is_latest FROM lamin_artifact"
        ).fetchall()
        markers = conn.execute("SELECT n_saved, n_deleted FROM lamin_transaction").fetchall()
    return {k: (name, status, latest) for k, name, status, latest in artifacts}, markers


@pytest.mark.parametrize("name", PG_BACKENDS)
def test_commit_applied_but_its_reply_lost_reads_back_committed(
    name, tmp_path, request, lost_reply_proxy, make_file, caplog
) -> None:
    from tests.conftest import make_backend

    b = make_backend(name, tmp_path, request)
    ln.init(storage=b.storage, db=lost_reply_proxy.url(b.db or ""))
    inst = current()
    old = ln.Artifact(make_file(), key="old/delete.bin").save()
    kept = ln.Artifact(make_file(), key="old/kept.bin").save()
    old_name, kept_bytes = f"{old.uid}{old.suffix}", Path(kept.cache()).read_bytes()
    sources = {"runs/model.bin": make_file(), "runs/metrics.bin": make_file()}
    lost_reply_proxy.arm()  # the COMMIT after the block's marker insert loses its reply
    with caplog.at_level(logging.INFO, logger="lamin_nb"), ln.transaction() as block:
        for key, path in sources.items():
            ln.Artifact(path, key=key).save()
        ln.Artifact.get("old/delete.bin").delete(permanent=True)
    # the server applied the COMMIT; lamin_nb saw its connection drop, read the marker back
    assert lost_reply_proxy.cut.is_set() and lost_reply_proxy.applied.wait(10)
    assert lost_reply_proxy.replies == ["COMMIT"]
    assert "lost during COMMIT; read back: committed" in caplog.text
    assert block.outcome is not None and block.outcome.committed is True
    assert (block.outcome.saved, block.outcome.deleted) == (2, 1)
    stored, markers = _plain_rows(b.db or "")
    assert markers == [(2, 1)]
    assert set(stored) == {"old/kept.bin", *sources}  # the delete's row is gone too
    assert all(status == "committed" and latest for _, status, latest in stored.values())
    assert not inst.storage.exists(old_name)
    for key, path in sources.items():
        with inst.storage.open(stored[key][0]) as f:
            assert f.read() == path.read_bytes()
        assert Path(ln.Artifact.get(key).cache()).read_bytes() == path.read_bytes()
    with inst.storage.open(stored["old/kept.bin"][0]) as f:
        assert f.read() == kept_bytes
    assert ln.check(deep=True).is_consistent
    assert_i1_i2_i3()
