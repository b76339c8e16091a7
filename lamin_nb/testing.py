"""Local stand-ins for a team's servers, for tutorials and your own experiments.

The tutorials need an S3 bucket and a PostgreSQL database. On a machine where none is
configured they start their own, the way LaminDB's FAQ starts a local PostgreSQL, and say so
in one line; where one is configured, it is used as before. Everything a helper creates is
removed when ``close()`` is called or the Python process exits, whatever happened before, so a
tutorial that stops half-way leaves nothing behind.

    from lamin_nb.testing import local_postgres, local_s3, scratch_dir

    workdir = scratch_dir("lamin-demo")  # a private LAMIN_NB_HOME and working folder
    s3 = local_s3()  # the configured S3 endpoint, or a local moto server
    bucket = s3.new_bucket()
    pg = local_postgres()  # a fresh database, or None (and SQLite) when no server answers

This module imports no Jupyter code; it needs ``moto[server]`` only when no S3 is configured
(``pip install 'lamin_nb[tutorials]'``).
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from lamin_nb.core.errors import InstanceError, StorageError

__all__ = ["LocalPostgres", "LocalS3", "local_postgres", "local_s3", "scratch_dir"]

PG_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
_AWS_VARS = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when this process dies, however it dies."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _s3_configured() -> bool:
    """True when boto3 would find an endpoint or credentials without our help."""
    if os.environ.get("AWS_ENDPOINT_URL"):
        return True
    import boto3

    return boto3.session.Session().get_credentials() is not None


class LocalS3:
    """An S3 endpoint for a tutorial: the configured one, or moto's server on a loopback port.

    Parameters
    ----------
    start_server
        Start moto's S3 server and point the ``AWS_*`` environment variables of this process
        (and of the processes it starts) at it.

    Examples
    --------
    >>> with LocalS3(start_server=True) as s3:  # doctest: +SKIP
    ...     bucket = s3.new_bucket()
    """

    def __init__(self, start_server: bool) -> None:
        self.endpoint: str | None = os.environ.get("AWS_ENDPOINT_URL")
        self.started = start_server
        self._proc: subprocess.Popen[bytes] | None = None
        self._buckets: list[str] = []
        self._saved_env: dict[str, str | None] = {}
        if start_server:
            self._start()
        atexit.register(self.close)

    def _start(self) -> None:
        try:
            import moto.server  # noqa: F401  (only to fail early with an install hint)
        except ImportError as error:
            raise StorageError(
                "no S3 endpoint is configured and moto's server is not installed: "
                "pip install 'lamin_nb[tutorials]', or set AWS_ENDPOINT_URL and credentials"
            ) from error
        port = _free_port()
        self.endpoint = f"http://127.0.0.1:{port}"
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        self._wait_until_up()
        env = {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        for name, value in env.items():
            self._saved_env[name] = os.environ.get(name)
            os.environ[name] = value

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1).read()
                return
            except OSError:
                time.sleep(0.1)
        self.close()
        raise StorageError(f"the local S3 server did not start on {self.endpoint}")

    def client(self) -> Any:
        """A boto3 S3 client for this endpoint.

        Returns
        -------
        botocore.client.S3
            A client reading the same configuration as lamin_nb does.
        """
        import boto3

        return boto3.client("s3")

    def new_bucket(self, prefix: str = "lamin-tutorial") -> str:
        """Create a bucket with a unique name; it is deleted with its objects by ``close()``.

        Parameters
        ----------
        prefix
            The start of the bucket's name.

        Returns
        -------
        str
            The bucket's name.
        """
        name = f"{prefix}-{secrets.token_hex(4)}"
        self.client().create_bucket(Bucket=name)
        self._buckets.append(name)
        return name

    def close(self) -> None:
        """Remove the buckets made here, stop a started server and restore the environment."""
        if self._proc is None:
            self._delete_buckets()
        else:
            if self._proc.poll() is None:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait(timeout=10)
            self._proc = None
        self._buckets = []
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env = {}

    def _delete_buckets(self) -> None:
        if not self._buckets:
            return
        client = self.client()
        for bucket in self._buckets:
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for page in pages:
                for obj in page.get("Contents", []):
                    client.delete_object(Bucket=bucket, Key=obj["Key"])
            client.delete_bucket(Bucket=bucket)

    def __enter__(self) -> LocalS3:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def local_s3(*, quiet: bool = False) -> LocalS3:
    """The configured S3 endpoint, or a local S3 server started for this process.

    Parameters
    ----------
    quiet
        Do not print the one line that says which endpoint is used.

    Returns
    -------
    LocalS3
        Its ``new_bucket()`` makes buckets that ``close()`` (or the process's exit) removes.

    Raises
    ------
    StorageError
        No S3 is configured and moto's server is not installed or does not start.

    Examples
    --------
    >>> s3 = local_s3()  # doctest: +SKIP
    S3: no endpoint configured; started a local S3 server (moto) at http://127.0.0.1:41235
    """
    configured = _s3_configured()
    s3 = LocalS3(start_server=not configured)
    if not quiet:
        if configured:
            print(f"S3: using the configured endpoint ({s3.endpoint or 'AWS'})")
        else:
            print(f"S3: no endpoint configured; started a local S3 server (moto) at {s3.endpoint}")
    return s3


class LocalPostgres:
    """A fresh database on a PostgreSQL server, dropped by ``close()`` or at exit.

    Parameters
    ----------
    server
        URL of a database on the server to connect to for ``CREATE DATABASE``.
    """

    def __init__(self, server: str) -> None:
        self.server = server
        self.name = f"lamin_tutorial_{secrets.token_hex(4)}"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        self.url: str | None = f"{server.rsplit('/', 1)[0]}/{self.name}"
        atexit.register(self.close)

    def _admin(self) -> Any:
        import psycopg

        return psycopg.connect(self.server, autocommit=True, connect_timeout=5)

    def close(self) -> None:
        """Drop the database (closing any connection still open to it)."""
        if self.url is None:
            return
        self.url = None
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def __enter__(self) -> LocalPostgres:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def local_postgres(*, quiet: bool = False) -> LocalPostgres | None:
    """A fresh PostgreSQL database, or None (use SQLite) when no server answers.

    The server is ``LAMIN_NB_TEST_PG_URL`` if set, else the local one on 127.0.0.1:5432.

    Parameters
    ----------
    quiet
        Do not print the one line that says what is used.

    Returns
    -------
    LocalPostgres or None
        ``.url`` is the database to pass as ``ln.init(db=...)``; None when no server answers.

    Examples
    --------
    >>> pg = local_postgres()  # doctest: +SKIP
    PostgreSQL: a fresh database lamin_tutorial_1a2b3c4d on 127.0.0.1:5432, dropped at exit
    """
    from lamin_nb.core.settings import mask_url

    server = os.environ.get("LAMIN_NB_TEST_PG_URL", PG_SERVER)
    try:
        pg = LocalPostgres(server)
    except ImportError as error:
        raise InstanceError("PostgreSQL needs psycopg: pip install 'lamin_nb[postgres]'") from error
    except Exception as error:  # any failure to reach the server: fall back, and say so
        if not quiet:
            print(
                f"PostgreSQL: no server answers at {mask_url(server)} ({type(error).__name__}); "
                "using SQLite instead. Set LAMIN_NB_TEST_PG_URL or start PostgreSQL to use it."
            )
        return None
    if not quiet:
        host = server.split("@")[-1].rsplit("/", 1)[0]
        print(f"PostgreSQL: a fresh database {pg.name} on {host}, dropped at exit")
    return pg


def scratch_dir(prefix: str = "lamin-") -> Path:
    """A private working folder with its own settings folder, removed at exit.

    Changes into the folder and points ``LAMIN_NB_HOME`` inside it, so an experiment leaves
    your own instances alone; at exit the current instance is closed, the previous working
    directory restored and the folder removed.

    Parameters
    ----------
    prefix
        The start of the folder's name.

    Returns
    -------
    pathlib.Path
        The folder, which is now the working directory.
    """
    start = os.getcwd()
    previous_home = os.environ.get("LAMIN_NB_HOME")
    work = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ["LAMIN_NB_HOME"] = str(work / "lamin-home")
    os.chdir(work)

    def clean_up() -> None:
        from lamin_nb.core import instance

        instance.disconnect()
        os.chdir(start)
        if previous_home is None:
            os.environ.pop("LAMIN_NB_HOME", None)
        else:
            os.environ["LAMIN_NB_HOME"] = previous_home
        shutil.rmtree(work, ignore_errors=True)

    atexit.register(clean_up)
    return work
