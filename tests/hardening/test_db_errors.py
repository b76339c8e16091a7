"""With the database down or the S3 endpoint gone, every public call raises a lamin_nb error
(``ln.DatabaseError`` / ``ln.StorageError``) that says what state the data is in and what to
run, never a raw ``sqlalchemy`` or ``botocore`` exception.

The outage is real and limited to the test's own database: ``ALTER DATABASE ... WITH
ALLOW_CONNECTIONS false`` plus ``pg_terminate_backend`` of lamin_nb's connections. The S3
endpoint is a moto server of the test's own, killed so its port is closed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

import lamin_nb as ln
from lamin_nb.core.instance import current
from tests.support.faults_env import (
    allow_connections,
    assert_clean,
    terminate_lamin_backends,
)
from tests.support.servers import MotoServer, free_port

REFUSED = "is not currently accepting connections"


@pytest.fixture
def saved(tmp_path: Path, pg_url: str) -> Iterator[tuple[str, ln.Artifact, Path]]:
    ln.init(storage=str(tmp_path / "storage"), db=pg_url)
    source = tmp_path / "table.csv"
    source.write_text("a,b\n1,2\n")
    artifact = ln.Artifact(source, key="runs/table.csv").save()
    other = tmp_path / "other.csv"
    other.write_text("a,b\n3,4\n")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "table.csv").write_text("a,b\n1,2\n")
    yield pg_url, artifact, other


@contextmanager
def database_down(url: str) -> Iterator[None]:
    allow_connections(url, False)
    terminate_lamin_backends(url)
    try:
        yield
    finally:
        allow_connections(url, True)


CALLS: dict[str, Callable[[ln.Artifact, Path], Any]] = {
    "Artifact(path, key=...)": lambda a, f: ln.Artifact(f, key=a.key),
    "from_dir": lambda a, f: ln.Artifact.from_dir(f.parent / "folder", key="runs"),
    "filter().all()": lambda a, f: ln.Artifact.filter(key=a.key).all(),
    "filter().first()": lambda a, f: ln.Artifact.filter().first(),
    "filter().count()": lambda a, f: ln.Artifact.filter().count(),
    "get": lambda a, f: ln.Artifact.get(a.key),
    "delete()": lambda a, f: a.delete(),
    "restore()": lambda a, f: a.restore(),
    "delete(permanent=True)": lambda a, f: a.delete(permanent=True),
    "check": lambda a, f: ln.check(),
    "repair": lambda a, f: ln.repair(),
    "repair(dry_run=False)": lambda a, f: ln.repair(dry_run=False),
}


@pytest.mark.parametrize("call", list(CALLS))
def test_database_down_gives_a_database_error(saved, call):
    url, artifact, other = saved
    with database_down(url), pytest.raises(ln.DatabaseError) as failed:
        CALLS[call](artifact, other)
    message = str(failed.value)
    assert isinstance(failed.value, ln.LaminNbError)
    assert REFUSED in message and "[SQL:" not in message, message
    assert "nothing was changed" in message or "nothing was saved" in message, message
    assert "once the database is reachable" in message, message
    assert ln.Artifact.get(artifact.uid).load().read_text() == "a,b\n1,2\n"  # unchanged
    assert_clean([artifact.uid])


def test_a_save_with_the_database_down_fails_with_a_database_error_inside(saved):
    url, _, other = saved
    with database_down(url), pytest.raises(ln.SaveError) as failed:
        ln.save([ln.Artifact(other)])
    (_, cause), *_ = failed.value.report.failed
    assert isinstance(cause, ln.DatabaseError), repr(cause)
    assert REFUSED in str(failed.value) and "[SQL:" not in str(failed.value)


def test_permanent_delete_that_loses_the_database_at_the_end_says_so(saved):
    """The object is gone; the row delete is refused: the user must not believe the artifact
    is intact. ``ln.repair()`` finishes the delete (its writer no longer runs)."""
    url, artifact, _ = saved
    armed = {"on": True}

    def outage(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        if armed["on"] and sql.lstrip().startswith("DELETE FROM lamin_artifact"):
            armed["on"] = False
            allow_connections(url, False)
            terminate_lamin_backends(url)

    engine = current().db.engine
    event.listen(engine, "before_cursor_execute", outage)
    try:
        with pytest.raises(ln.DatabaseError) as failed:
            artifact.delete(permanent=True)
    finally:
        event.remove(engine, "before_cursor_execute", outage)
        allow_connections(url, True)
    message = str(failed.value)
    assert "object deleted, row left for repair; run ln.repair()" in message, message
    assert ln.Artifact.filter().count() == 0  # hidden meanwhile
    ln.repair(dry_run=False)
    assert_clean()


# -- the S3 endpoint is gone --------------------------------------------------------------


@pytest.fixture
def own_s3(tmp_path: Path, s3_server: MotoServer) -> Iterator[MotoServer]:
    """A moto server of this test's own (the session's one keeps serving other tests)."""
    server = MotoServer(tmp_path / "moto.log")
    server.start()
    yield server
    server.stop()


def test_unreachable_s3_endpoint_gives_storage_errors(tmp_path, own_s3):
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ln.StorageError) as refused:
        ln.init(
            storage=f"s3://{own_s3.new_bucket()}/x",
            name="nowhere",
            storage_options={"client_kwargs": {"endpoint_url": closed}},
        )
    assert "Could not connect to the endpoint" in str(refused.value), refused.value

    bucket = own_s3.new_bucket()
    ln.init(
        storage=f"s3://{bucket}/team",
        storage_options={"client_kwargs": {"endpoint_url": own_s3.endpoint}},
    )
    source = tmp_path / "data.bin"
    source.write_bytes(b"on a server that goes away")
    artifact = ln.Artifact(source, key="data.bin").save()
    own_s3.stop()
    with pytest.raises(ln.StorageError) as gone:
        artifact.load()
    message = str(gone.value)
    assert "Could not connect to the endpoint" in message and "unchanged" in message, message
