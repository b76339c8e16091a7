"""Fixtures shared by every test: a private settings folder, real PostgreSQL, real S3 (moto).

``instance`` is parametrised over the four backend combinations; contract tests use it so
the same assertions run on SQLite/PostgreSQL x local/S3.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import MotoServer, create_pg_database, drop_pg_database, s3_env

BACKENDS = ["sqlite-local", "sqlite-s3", "pg-local", "pg-s3"]


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C must raise KeyboardInterrupt even when the run was started in the background.

    A shell starts background jobs with SIGINT ignored and Python then keeps it ignored; the
    interrupt tests send real SIGINTs to this process.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def lamin_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own settings folder and no current instance."""
    import lamin_nb as ln
    from lamin_nb.core import faults

    home = tmp_path / "lamin-home"
    monkeypatch.setenv("LAMIN_NB_HOME", str(home))
    monkeypatch.delenv("LAMIN_NB_INSTANCE", raising=False)
    monkeypatch.delenv("LAMIN_NB_FAULT", raising=False)
    faults.configure(None)
    yield home
    faults.configure(None)
    ln.disconnect()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log")
    server.start()
    saved = {k: os.environ.get(k) for k in s3_env(server.endpoint)}
    os.environ.update(s3_env(server.endpoint))  # as a user would configure any S3 server
    yield server
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def s3_bucket(s3_server: MotoServer) -> str:
    return s3_server.new_bucket()


@pytest.fixture
def pg_url() -> Iterator[str]:
    url = create_pg_database()
    yield url
    import lamin_nb as ln

    ln.disconnect()  # release its connections: the database is dropped next
    drop_pg_database(url)


@dataclass
class Backend:
    """One backend combination, with handles to inject real failures."""

    name: str
    storage: str
    db: str | None
    s3: MotoServer | None = None
    bucket: str | None = None

    @property
    def is_s3(self) -> bool:
        return self.s3 is not None

    def object_names(self) -> list[str]:
        """Everything under the managed prefix, reserved folders excluded."""
        from lamin_nb.core.instance import current

        return sorted(info.name for info in current().storage.list_objects())

    def deny_writes(self, prefix: str = "") -> None:
        """Make object writes fail for real: a bucket policy on S3, an immutable folder locally."""
        if self.s3 is not None:
            assert self.bucket is not None
            managed = self.storage.removeprefix(f"s3://{self.bucket}").strip("/")
            self.s3.deny(self.bucket, "s3:PutObject", f"{managed}/.lamindb/{prefix}".lstrip("/"))
        else:
            set_immutable(Path(self.storage) / ".lamindb", True)

    def allow_writes(self) -> None:
        if self.s3 is not None:
            assert self.bucket is not None
            self.s3.allow_all(self.bucket)
        else:
            set_immutable(Path(self.storage) / ".lamindb", False)


def set_immutable(path: Path, on: bool) -> None:
    """chattr +i: even root cannot create files in the folder (a real EPERM)."""
    import subprocess

    subprocess.run(["chattr", "+i" if on else "-i", str(path)], check=True)


def make_backend(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> Backend:
    db_kind, storage_kind = name.split("-")
    db = request.getfixturevalue("pg_url") if db_kind == "pg" else None
    if storage_kind == "s3":
        server: MotoServer = request.getfixturevalue("s3_server")
        bucket = server.new_bucket()
        return Backend(name, f"s3://{bucket}/team", db, server, bucket)
    return Backend(name, str(tmp_path / "storage"), db)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """An initialised instance on each backend combination."""
    import lamin_nb as ln

    b = make_backend(request.param, tmp_path, request)
    ln.init(storage=b.storage, db=b.db)
    yield b
    if not b.is_s3 and (Path(b.storage) / ".lamindb").exists():
        set_immutable(Path(b.storage) / ".lamindb", False)


@pytest.fixture
def local_instance(tmp_path: Path) -> Any:
    """SQLite + a local folder: the embedded default."""
    import lamin_nb as ln

    return ln.init(storage=str(tmp_path / "storage"))


@pytest.fixture
def make_file(tmp_path: Path) -> Any:
    """Write a file with random (or given) content; returns its path."""
    counter = {"n": 0}

    def make(content: bytes | None = None, name: str | None = None, size: int = 1024) -> Path:
        counter["n"] += 1
        path = tmp_path / "files" / (name or f"file{counter['n']}.bin")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if content is not None else os.urandom(size))
        return path

    return make
