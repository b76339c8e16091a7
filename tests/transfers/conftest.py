"""Real S3 servers behind a counting proxy, and a child process that saves one file.

Sizes stay small by default (the machine is shared); ``LAMIN_NB_LONG_TESTS=1`` runs the
sizes of the issue (512 MiB to S3, 1 GiB locally).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.proxy import CountingProxy
from tests.support.seaweed import SeaweedServer
from tests.support.servers import MotoServer, s3_env

LONG = os.environ.get("LAMIN_NB_LONG_TESTS") == "1"
MiB = 1024 * 1024
S3_SIZE = 512 * MiB if LONG else 64 * MiB
LOCAL_SIZE = 1024 * MiB if LONG else 160 * MiB
PART = 5 * MiB  # many parts even for the small default size (S3's smallest part)
CHILD = Path(__file__).with_name("child_save.py")
ROOT = Path(__file__).parents[2]


@pytest.fixture(autouse=True)
def _fresh_s3_file_systems() -> Iterator[None]:
    """s3fs caches a file system per set of arguments, and the endpoint and credentials come
    from the environment: one a test leaves behind would serve the next test's init with a
    stopped server or a credential process that is gone."""
    yield
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


@dataclass
class S3Target:
    """A real S3 server, the proxy in front of it, and a bucket."""

    name: str
    client: Any
    proxy: CountingProxy
    bucket: str

    def key_of(self, uid: str, suffix: str = ".bin") -> str:
        return f"team/.lamindb/{uid}{suffix}"

    def object_bytes(self, uid: str) -> bytes:
        body = self.client.get_object(Bucket=self.bucket, Key=self.key_of(uid))["Body"]
        return bytes(body.read())

    def uploads(self) -> list[dict[str, Any]]:
        found = self.client.list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])
        return list(found)

    def parts_bytes(self, uid: str, upload_id: str) -> int:
        parts = self.client.list_parts(
            Bucket=self.bucket, Key=self.key_of(uid), UploadId=upload_id
        ).get("Parts", [])
        return sum(int(p["Size"]) for p in parts)


@pytest.fixture(scope="module")
def seaweed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    server = SeaweedServer(tmp_path_factory.mktemp("seaweed"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["moto", "seaweedfs"])
def s3(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Target]:
    """An instance on a fresh bucket, reached through the counting proxy (by this process and
    by its children, as a user configures any S3 server: AWS_ENDPOINT_URL)."""
    import lamin_nb as ln

    server: MotoServer | SeaweedServer
    if request.param == "moto":
        server = request.getfixturevalue("s3_server")
    else:
        server = request.getfixturevalue("seaweed_server")
    host, port = server.endpoint.removeprefix("http://").split(":")
    proxy = CountingProxy(host, int(port)).start()
    for name, value in s3_env(proxy.endpoint).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LAMIN_NB_PART_SIZE", str(PART))
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()  # one cached per process would keep the old proxy
    bucket = server.new_bucket()
    ln.init(storage=f"s3://{bucket}/team")
    yield S3Target(request.param, server.client(), proxy, bucket)
    ln.disconnect()
    proxy.stop()


@pytest.fixture
def big_file(tmp_path: Path) -> Callable[[int], Path]:
    def make(size: int, name: str = "big.bin") -> Path:
        path = tmp_path / name
        with open(path, "wb") as out:
            left = size
            while left:
                n = min(left, 8 * MiB)
                out.write(os.urandom(n))
                left -= n
        return path

    return make


class Child:
    """``child_save.py`` saving one file in its own process."""

    def __init__(self, path: Path, key: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), str(path), key],
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait(self, timeout: float = 600) -> tuple[dict[str, Any], str]:
        out, err = self.proc.communicate(timeout=timeout)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        return (json.loads(lines[-1]) if lines else {}), err

    def kill_when(self, reached: Callable[[], bool], sig: int = signal.SIGKILL) -> bool:
        """Send ``sig`` once ``reached()`` is true; False if the child ended first."""
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if reached():
                self.proc.send_signal(sig)
                return True
            time.sleep(0.005)
        raise TimeoutError("the child made no progress")


def wait_all(children: list[Child]) -> list[tuple[dict[str, Any], str]]:
    """Every child's result, each read in its own thread (a child blocked on a full pipe would
    otherwise stall the others)."""
    results: list[tuple[dict[str, Any], str]] = [({}, "")] * len(children)

    def collect(i: int) -> None:
        results[i] = children[i].wait()

    threads = [threading.Thread(target=collect, args=(i,)) for i in range(len(children))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def save_in_child(path: Path, key: str, **kwargs: Any) -> tuple[dict[str, Any], str]:
    return Child(path, key, **kwargs).wait()
