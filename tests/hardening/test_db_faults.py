"""Real faults during a bulk save: the PostgreSQL connection is killed (pg_terminate_backend
from another connection, found by application_name 'lamin_nb' and database name), the
database refuses connections for a while, and the S3 endpoint goes away mid-upload.

In every case the user gets a SaveError naming the cause; once the fault is gone,
``ln.repair()`` leaves I1-I3 holding, every artifact committed before or during the fault is
there with its object, and re-running the same save finishes the job.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

import lamin_nb as ln
from lamin_nb.core.callbacks import ItemState, SaveCallback
from lamin_nb.core.instance import current
from tests.support.faults_env import (
    allow_connections,
    assert_clean,
    count,
    repair_all,
    terminate_lamin_backends,
)
from tests.support.seaweed import SeaweedServer

CONNECTION_LOST = (
    "terminating connection due to administrator command",
    "server closed the connection unexpectedly",
)


def make_files(folder: Path, n: int, tag: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"{tag}-{i}.csv"
        path.write_text(f"{tag},{i}\n" * 50)
        paths.append(path)
    return paths


def artifacts(paths: list[Path], prefix: str) -> list[ln.Artifact]:
    return [ln.Artifact(p, key=f"{prefix}/{p.name}") for p in paths]


class OnState(SaveCallback):
    """Runs ``action`` once, the first time any item reaches ``state`` (``index`` if given)."""

    def __init__(self, state: ItemState, action: Any, index: int | None = None) -> None:
        self.wanted, self.action, self.index = state, action, index
        self.fired = threading.Event()

    def state(self, index: int, state: ItemState, detail: str = "") -> None:
        if state == self.wanted and (self.index in (None, index)) and not self.fired.is_set():
            self.fired.set()
            self.action()


@pytest.fixture
def pg_local(tmp_path: Path, pg_url: str) -> Iterator[str]:
    ln.init(storage=str(tmp_path / "storage"), db=pg_url)
    yield pg_url


def committed_first(tmp_path: Path) -> list[str]:
    """A batch committed before any fault: it must survive whatever follows."""
    batch = artifacts(make_files(tmp_path / "before", 4, "before"), "before")
    ln.save(batch)
    return [a.uid for a in batch]


@pytest.mark.parametrize("moment", ["reserve", "commit"])
def test_backend_terminated_inside_a_transaction(
    tmp_path: Path, pg_local: str, moment: str
) -> None:
    """The connection dies while the save's own transaction is open on it."""
    before = committed_first(tmp_path)
    statement = {
        "reserve": "INSERT INTO lamin_artifact",
        "commit": "UPDATE lamin_artifact SET status",
    }[moment]
    armed = {"on": True}

    def kill_own_backend(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        if armed["on"] and sql.lstrip().startswith(statement):
            armed["on"] = False
            assert terminate_lamin_backends(pg_local) >= 1
            count("faults injected: pg_terminate_backend")

    engine = current().db.engine
    event.listen(engine, "before_cursor_execute", kill_own_backend)
    try:
        batch = artifacts(make_files(tmp_path / "during", 5, "during"), "during")
        with pytest.raises(ln.SaveError) as failed:
            ln.save(batch)
    finally:
        event.remove(engine, "before_cursor_execute", kill_own_backend)
    assert not armed["on"], "the fault never fired"
    message = str(failed.value)
    assert any(cause in message for cause in CONNECTION_LOST), message
    assert "[SQL:" not in message  # the cause, not the statement and its parameters
    assert all(a.status is None for a in batch)  # none of the batch was committed
    repair_all()
    assert_clean(before)
    ln.save(batch)  # the same call again, once the database is reachable
    assert_clean(before + [a.uid for a in batch])


def test_backends_terminated_between_steps_are_reconnected(tmp_path: Path, pg_local: str) -> None:
    """Killed while idle in the pool (mid-upload): the next step reconnects, nothing fails."""
    before = committed_first(tmp_path)
    callback = OnState(
        ItemState.UPLOADING,
        lambda: count(
            "faults injected: pg_terminate_backend", terminate_lamin_backends(pg_local) or 1
        ),
    )
    batch = artifacts(make_files(tmp_path / "during", 5, "during"), "during")
    ln.save(batch, callback=callback)
    assert callback.fired.is_set()
    assert all(a.status == "committed" for a in batch)
    assert_clean(before + [a.uid for a in batch])


def test_database_outage_during_commit(tmp_path: Path, pg_local: str) -> None:
    """Connections killed and refused at commit time: the uploads and pending rows stay for
    recovery (nothing can be checked), and repair finishes them once the database is back."""
    before = committed_first(tmp_path)

    def outage() -> None:
        allow_connections(pg_local, False)
        terminate_lamin_backends(pg_local)
        count("faults injected: database outage")

    batch = artifacts(make_files(tmp_path / "during", 5, "during"), "during")
    try:
        with pytest.raises(ln.SaveError) as failed:
            ln.save(batch, callback=OnState(ItemState.COMMITTING, outage))
    finally:
        allow_connections(pg_local, True)
    message = str(failed.value)
    assert "is not currently accepting connections" in message and "[SQL:" not in message, message
    assert all(a.status is None for a in batch)
    report = ln.check()
    assert not report.orphans and not report.missing, repr(report)  # uploads are recorded
    repair_all()
    assert_clean(before)
    ln.save(batch)
    assert_clean(before + [a.uid for a in batch])


# -- the storage endpoint goes away ---------------------------------------------------------


@pytest.fixture
def seaweed(tmp_path: Path) -> Iterator[SeaweedServer]:
    server = SeaweedServer(tmp_path / "seaweed")
    server.start()
    yield server
    server.stop()


def test_s3_endpoint_goes_away_mid_upload(
    tmp_path: Path, pg_url: str, seaweed: SeaweedServer
) -> None:
    """The S3 server is killed while a bulk save uploads (from its progress callback), then
    restarted with its data. Items uploaded before the cut are committed and stay; the rest
    fail with the cause named; repair and a re-run leave everything saved and consistent."""
    bucket = seaweed.new_bucket()
    ln.init(storage=f"s3://{bucket}/team", db=pg_url, storage_options=seaweed.storage_options())
    before = committed_first(tmp_path)

    def endpoint_gone() -> None:
        seaweed.stop()
        count("faults injected: S3 server killed mid-upload")

    batch = artifacts(make_files(tmp_path / "during", 5, "during"), "during")
    with pytest.raises(ln.SaveError) as failed:
        ln.save(batch, max_workers=1, callback=OnState(ItemState.UPLOADING, endpoint_gone, 2))
    report = failed.value.report
    saved = [a.uid for a in report.saved]
    assert saved == [a.uid for a in batch[:2]], report  # uploaded before the cut: committed
    assert len(report.failed) == 3
    message = str(failed.value)
    assert "Could not connect to the endpoint" in message, message
    assert all(a.uid in message for a in report.saved)  # the error lists what was saved

    seaweed.start()  # the outage ends; the server comes back with its data
    assert_clean_after_repair(before + saved)
    ln.save(batch)  # the same call again saves only what failed
    assert_clean(before + [a.uid for a in batch])
    assert ln.check(deep=True).is_consistent
    managed = {
        k.rsplit("/", 1)[1]
        for k in seaweed.keys(bucket)
        if "/.lamindb/" in k and "/_meta/" not in k
    }
    assert managed == {f"{a.uid}{a.suffix}" for a in ln.Artifact.filter().all()}


def assert_clean_after_repair(committed: list[str]) -> None:
    report = ln.check()
    assert not report.missing and not report.orphans, repr(report)
    repair_all()
    assert_clean(committed)
