"""Real interrupted uploads for the tests of the edges (REST, JupyterLab): a child process
saving one file to S3 is killed once a share of the file's bytes reached the server, counted
by a TCP proxy between the child and the server (not by lamin_nb); or it is frozen right after
its upload was journaled (a live writer that makes no progress).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.proxy import CountingProxy
from tests.support.servers import s3_env

REPO = Path(__file__).resolve().parents[2]
CHILD = REPO / "tests" / "transfers" / "child_save.py"


def _child(path: Path, key: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), str(path), key],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def killed_save(
    path: Path, key: str, env: dict[str, str], s3_endpoint: str, fraction: float = 0.85
) -> None:
    """Save ``path`` under ``key`` in a child and SIGKILL it once ``fraction`` of the file's
    bytes went to the server: the multipart upload stays, with the parts that arrived."""
    host, port = s3_endpoint.removeprefix("http://").split(":")
    proxy = CountingProxy(host, int(port)).start()
    try:
        child = _child(path, key, {**env, **s3_env(proxy.endpoint)})
        size, deadline = path.stat().st_size, time.monotonic() + 300
        while proxy.upstream < fraction * size:
            if child.poll() is not None:
                raise AssertionError(f"the save of {key} ended before it could be killed")
            if time.monotonic() > deadline:
                child.kill()
                raise AssertionError(f"the save of {key} made no progress")
            time.sleep(0.002)
        child.send_signal(signal.SIGKILL)
        child.wait()
    finally:
        proxy.stop()


def frozen_save(
    path: Path, key: str, env: dict[str, str], journaled: Callable[[], bool]
) -> subprocess.Popen[bytes]:
    """Save ``path`` under ``key`` in a child frozen (SIGSTOP) after its first part went out;
    returned once ``journaled()`` sees its upload. The caller kills it."""
    child = _child(path, key, {**env, "LAMIN_NB_FAULT": "mid_upload:stop"})
    for _ in range(1200):
        if journaled():
            return child
        time.sleep(0.1)
    child.kill()
    raise AssertionError(f"the save of {key} never journaled its upload")


def random_file(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path
