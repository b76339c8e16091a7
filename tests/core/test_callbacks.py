"""The progress protocol at its edges: the text rendering (in-process and through the CLI),
a broken display, worker settings, and the worker pool under a real Ctrl-C."""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import lamin_nb as ln
from lamin_nb.core.callbacks import ItemState, RecordingCallback, TextProgress
from lamin_nb.core.workers import run_parallel
from tests.conftest import set_immutable


def test_text_progress_lines(local_instance, make_file):
    out = io.StringIO()
    a = ln.Artifact(make_file(b"one"), key="run/a.txt")
    b = ln.Artifact(make_file(b"one"), key="run/b.txt")
    c = ln.Artifact(make_file(b"\x1b[31m"), key="run/c.txt")
    with pytest.warns(ln.KeyNotSavedWarning):
        ln.save([a, b, c], callback=TextProgress(out))
    lines = out.getvalue().splitlines()
    assert lines[0] == "saving 3 item(s), 11 B"
    assert lines[-1] == "saved 2, deduplicated 1, keys not saved 1 (see .key_conflicts)"
    assert sorted(line.split("] ", 1)[1] for line in lines[1:4]) == [
        "run/a.txt saved",
        f"run/b.txt deduplicated: key 'run/b.txt' not saved: same content is stored as {a.uid} "
        "(key 'run/a.txt')",
        "run/c.txt saved",
    ]
    assert sorted(line.split("]")[0] for line in lines[1:4]) == ["[1/3", "[2/3", "[3/3"]


def test_text_progress_never_prints_raw_control_characters(local_instance, tmp_path):
    evil = tmp_path / "\x1b[2Jname\u202e.txt"
    evil.write_bytes(b"data")
    out = io.StringIO()
    ln.save([ln.Artifact(evil)], callback=TextProgress(out))
    assert "\x1b" not in out.getvalue() and "\u202e" not in out.getvalue()
    assert "\\x1b[2Jname\\u202e.txt" in out.getvalue()


def test_broken_display_does_not_fail_the_save(local_instance, make_file, caplog):
    class Broken(RecordingCallback):
        def state(self, index, state, detail=""):
            super().state(index, state, detail)
            raise ValueError("widget bug")

    callback = Broken()
    with caplog.at_level(logging.WARNING, logger="lamin_nb"):
        report = ln.save([ln.Artifact(make_file()), ln.Artifact(make_file())], callback=callback)
    assert len(report.saved) == 2 and callback.report is report
    assert [r.message for r in caplog.records].count(
        "progress callback state failed: widget bug (ValueError)"
    ) == 1
    assert ln.check().is_consistent


def test_max_workers_setting(local_instance, make_file, monkeypatch):
    files = [ln.Artifact(make_file()) for _ in range(3)]
    with pytest.raises(ln.ValidationError, match="max_workers"):
        ln.save(files, max_workers=0)
    monkeypatch.setenv("LAMIN_NB_MAX_WORKERS", "many")
    with pytest.raises(ln.ValidationError, match="LAMIN_NB_MAX_WORKERS"):
        ln.save(files)
    assert ln.Artifact.filter().count() == 0 and not ln.check().n_objects
    monkeypatch.setenv("LAMIN_NB_MAX_WORKERS", "1")
    calls = RecordingCallback()
    assert len(ln.save(files, callback=calls).saved) == 3
    # one worker: items are uploaded one after the other, in order
    uploads = [i for i, s, _ in calls.events if s == ItemState.UPLOADING]
    assert uploads == [0, 1, 2]
    assert len(ln.save([ln.Artifact(make_file()) for _ in range(5)], max_workers=3).saved) == 5


def test_workers_return_only_after_calls_in_flight_end():
    """A real SIGINT to the main thread while workers run: nothing new starts, and the caller
    sees KeyboardInterrupt only once every started call has finished."""
    started, finished = [], []
    lock = threading.Lock()
    stop = threading.Event()

    def work(i: int) -> None:
        with lock:
            started.append(i)
        if i == 2:
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        stop.wait(0.05)  # the calls in flight stay busy while the interrupt lands
        with lock:
            finished.append(i)

    with pytest.raises(KeyboardInterrupt):
        run_parallel(list(range(200)), work, 4, stop)
    assert stop.is_set()
    assert sorted(started) == sorted(finished)
    assert len(started) < 200


def test_worker_error_reaches_the_caller():
    def work(i: int) -> None:
        if i == 3:
            raise LookupError("bug in a worker")

    with pytest.raises(LookupError, match="bug in a worker"):
        run_parallel(list(range(10)), work, 3, threading.Event())


# -- the CLI ----------------------------------------------------------------------------


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("lamin-nb")
    env = {**os.environ, "LAMIN_NB_HOME": str(home)}
    return subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, timeout=120)


def test_cli_save_renders_progress(tmp_path):
    home, storage = tmp_path / "home", tmp_path / "storage"
    files = []
    for name, content in (("a.csv", b"1"), ("b.csv", b"2"), ("same.csv", b"1")):
        (tmp_path / name).write_bytes(content)
        files.append(str(tmp_path / name))
    assert _cli("init", "--storage", str(storage), home=home).returncode == 0
    ok = _cli("save", *files, "--key", "run1", home=home)
    assert ok.returncode == 0, ok.stderr
    lines = ok.stdout.splitlines()
    assert lines[0] == "saving 3 item(s), 3 B"
    assert sorted(line.split("] ", 1)[1].split(":")[0] for line in lines[1:4]) == [
        "run1/a.csv saved",
        "run1/b.csv saved",
        "run1/same.csv deduplicated",
    ]
    assert lines[-1] == "saved 2, deduplicated 1, keys not saved 1 (see .key_conflicts)"
    assert "KeyNotSavedWarning" in ok.stderr and "'run1/same.csv' not saved" in ok.stderr
    (tmp_path / "c.csv").write_bytes(b"3")
    set_immutable(storage / ".lamindb", True)  # a real EPERM on the upload
    try:
        denied = _cli("save", str(tmp_path / "c.csv"), files[0], home=home)
    finally:
        set_immutable(storage / ".lamindb", False)
    assert denied.returncode == 1
    assert any(
        line.endswith("a.csv deduplicated: same content as " + line.split()[-1])
        for line in denied.stdout.splitlines()
    )
    [failed] = [line for line in denied.stdout.splitlines() if "c.csv failed" in line]
    assert "Access Denied" in failed
    assert denied.stdout.splitlines()[-1] == "saved 0, deduplicated 1, failed 1"
    check = _cli("check", home=home)
    assert check.returncode == 0, check.stdout
