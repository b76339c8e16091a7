"""A clock far off the server's: the save says by how much, and nothing is saved.

SeaweedFS checks the request time of every signed request (moto does not); the child runs
under libfaketime (Debian's ``faketime``), its clock an hour behind.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import lamin_nb as ln
from tests.support.seaweed import SeaweedServer
from tests.support.servers import s3_env
from tests.transfers.conftest import CHILD, PART, ROOT, MiB


@pytest.mark.parametrize("size", [1 * MiB, 12 * MiB], ids=["single-put", "multipart"])
def test_clock_skew_says_how_far_off_the_clock_is(
    seaweed_server: SeaweedServer,
    big_file: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    size: int,
) -> None:
    import s3fs

    for name, value in s3_env(seaweed_server.endpoint).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LAMIN_NB_PART_SIZE", str(PART))
    s3fs.S3FileSystem.clear_instance_cache()
    ln.init(storage=f"s3://{seaweed_server.new_bucket()}/team")
    path = big_file(size)
    done = subprocess.run(
        ["faketime", "-f", "-1h", sys.executable, str(CHILD), str(path), "big.bin"],
        cwd=ROOT,
        env=os.environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr[-3000:]
    error = done.stdout.strip().splitlines()[-1]
    found = re.search(r"your clock is (\d+) s (ahead|behind)", error)
    assert found, error
    assert abs(int(found.group(1)) - 3600) <= 60 and found.group(2) == "behind", error
    assert "correct the system time" in error
    assert list(ln.Artifact.filter()) == []  # nothing saved
    # its undo could not reach the server either (same clock): the pending row it left is
    # finished by recovery once a process with a right clock connects
    ln.connect()
    report = ln.check()
    assert report.is_consistent and report.n_ok == 0, report
