"""The settings folder does not fill up: staging files of artifacts built but never saved go
when their process does, and the S3 read cache stays within its limit (least recently used
first). ``lamin-nb info`` shows both."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import lamin_nb as ln
from lamin_nb.core.instance import current
from lamin_nb.core.localfiles import sweep_staging

BUILD_FRAMES = """
import sys, lamin_nb as ln, pandas as pd
ln.connect()
frames = [ln.Artifact.from_df(pd.DataFrame({"x": range(i, i + 50_000)})) for i in range(3)]
print(frames[0].source.parent, flush=True)
if sys.argv[1] == "crash":
    import os, signal
    os.kill(os.getpid(), signal.SIGKILL)  # a kernel that dies: nothing runs at exit
elif sys.argv[1] == "wait":
    sys.stdin.readline()
"""


def child(mode: str) -> tuple[subprocess.Popen[str], Path]:
    proc = subprocess.Popen(
        [sys.executable, "-c", BUILD_FRAMES, mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    assert proc.stdout is not None
    return proc, Path(proc.stdout.readline().strip())


def info() -> str:
    out = subprocess.run(
        [sys.executable, "-m", "lamin_nb.cli", "info"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_staging_of_processes_that_are_gone_is_swept(local_instance):
    live, live_dir = child("wait")
    exited, exited_dir = child("exit")
    exited.wait()
    crashed, crashed_dir = child("crash")  # last: each child's connect sweeps too
    crashed.wait()
    assert crashed.returncode == -signal.SIGKILL
    try:
        assert len(list(crashed_dir.iterdir())) == 3  # what a dead kernel leaves
        assert not exited_dir.exists() or not list(exited_dir.iterdir())  # a normal exit: none
        ln.connect()  # every connect sweeps
        assert not crashed_dir.exists()
        assert len(list(live_dir.iterdir())) == 3  # its owner still runs
        assert "staging files: 3 " in info()
    finally:
        live.kill()
        live.wait()
    assert live_dir.name in sweep_staging()
    assert "staging files: 0 " in info()


def test_an_unsaved_artifact_dropped_takes_its_staging_file_along(local_instance):
    import pandas as pd  # a dev dependency: never skipped

    kept = ln.Artifact.from_df(pd.DataFrame({"a": [1]}), key="kept.parquet")
    dropped = ln.Artifact.from_df(pd.DataFrame({"a": [2]}))
    path = dropped.source
    assert path is not None and path.exists()
    del dropped
    gc.collect()
    assert not path.exists()
    kept.save()
    assert kept.source is None and ln.Artifact.get("kept.parquet").load().a.tolist() == [1]


def test_the_s3_cache_is_bounded_least_recently_used_first(
    s3_bucket, tmp_path, make_file, monkeypatch
):
    monkeypatch.setenv("LAMIN_NB_CACHE_MAX_BYTES", "250K")  # room for two 100 KiB objects
    ln.init(storage=f"s3://{s3_bucket}/cached")
    a, b, c = (ln.Artifact(make_file(size=100 * 1024)).save() for _ in range(3))
    cache = current().settings.cache_dir

    def cached() -> set[str]:
        return {p.name for p in cache.rglob("*") if p.is_file()}

    a.load(), b.load()
    assert cached() == {a.object_name, b.object_name}
    a.load()  # a hit makes a the most recently used
    c.load()
    assert cached() == {a.object_name, c.object_name}
    assert Path(b.load()).read_bytes() == Path(b.load()).read_bytes()  # b comes back
    assert len(cached()) == 2

    frame = ln.Artifact.from_df(_frame(), key="t.parquet").save()  # its staging file is cached
    assert frame.object_name in cached()
    assert sum(p.stat().st_size for p in cache.rglob("*") if p.is_file()) <= 250 * 1024
    shown = info()
    assert "S3 read cache: 3 files" in shown and "250.0 KiB" in shown, shown


def test_a_bad_cache_limit_is_named(s3_bucket, make_file, monkeypatch):
    ln.init(storage=f"s3://{s3_bucket}/cached")
    saved = ln.Artifact(make_file(size=10)).save()
    monkeypatch.setenv("LAMIN_NB_CACHE_MAX_BYTES", "lots")
    with pytest.raises(ln.ValidationError, match="LAMIN_NB_CACHE_MAX_BYTES"):
        saved.load()


def _frame():
    import pandas as pd

    return pd.DataFrame({"a": list(range(10))})


def test_a_staged_frame_becomes_the_local_object_without_a_copy(tmp_path):
    """``from_df`` stages a file lamin_nb owns; a local save links it into place (the same
    inode, no second write of the bytes), verified and read-only, and the staging name goes."""
    import pandas as pd

    ln.init(storage=str(tmp_path / "s"))
    df = pd.DataFrame({"x": range(1000)})
    artifact = ln.Artifact.from_df(df, key="frame.parquet")
    staged = artifact.source
    assert staged is not None
    inode = staged.stat().st_ino
    artifact.save()
    stored = current().storage.local_path(artifact.object_name)
    assert stored is not None and stored.stat().st_ino == inode
    assert not staged.exists()
    assert stored.stat().st_mode & 0o777 == 0o444
    assert ln.Artifact.get("frame.parquet").load().equals(df)
    assert ln.check(deep=True).is_consistent
