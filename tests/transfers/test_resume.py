"""A killed, interrupted or disconnected save costs only the missing parts (DESIGN §9).

Bytes are counted by a TCP proxy between lamin_nb and the server, never by lamin_nb itself.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import lamin_nb as ln
from tests.transfers.conftest import (
    PART,
    S3_SIZE,
    Child,
    S3Target,
    save_in_child,
    wait_all,
)

# what a request adds to its body (headers, signatures, the checksum trailer), generously
OVERHEAD_PER_PART = 16 * 1024
FIXED_OVERHEAD = 256 * 1024


@pytest.fixture(params=["one-read", "hash-first"])
def row_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both kinds of interrupted rows: a new large file is hashed while it is sent (its row
    has no hash until the commit), or hashed first (``LAMIN_NB_ONE_READ_BYTES=0``)."""
    if request.param == "hash-first":
        monkeypatch.setenv("LAMIN_NB_ONE_READ_BYTES", "0")  # for the children too
    return str(request.param)


def _row_hash(uid: str) -> str | None:
    from sqlalchemy import select

    from lamin_nb.core import rows
    from lamin_nb.core.instance import current

    with current().db.read_rows() as session:
        found = session.execute(select(rows.TABLE.c.hash).where(rows.TABLE.c.uid == uid))
        return found.scalar_one()  # type: ignore[no-any-return]


def _check_kind(uid: str, row_kind: str) -> None:
    assert (_row_hash(uid) is None) == (row_kind == "one-read")


def _interrupted_upload(s3: S3Target) -> tuple[str, str, int]:
    """(uid, upload id, bytes the server holds) of the one interrupted upload, once the
    server has finished the requests whose bodies reached it before the kill."""
    [upload] = ln.uploads()
    assert upload.alive is False, upload
    [on_server] = s3.uploads()
    assert on_server["Key"] == s3.key_of(upload.uid)
    held, before, sent = s3.parts_bytes(upload.uid, on_server["UploadId"]), -1, -1
    # the proxy may still forward what the child wrote into its sockets before it died, and
    # the server may still be storing a part whose body arrived (moto on a loaded machine
    # takes seconds): counted once both are done
    while held != before or s3.proxy.upstream != sent:
        sent = s3.proxy.upstream
        time.sleep(2.0)
        held, before = s3.parts_bytes(upload.uid, on_server["UploadId"]), held
    return upload.uid, on_server["UploadId"], held


def _resume_and_check(s3: S3Target, path: Path, held: int) -> str:
    """Re-run the save in a new process: only the missing parts go over the wire."""
    s3.proxy.reset()
    result, log = save_in_child(path, "big.bin")
    assert "uid" in result, (result, log)
    missing = path.stat().st_size - held
    parts = -(-path.stat().st_size // PART)
    assert missing <= s3.proxy.upstream <= missing + parts * OVERHEAD_PER_PART + FIXED_OVERHEAD, (
        held,
        log,
    )
    if held:
        assert "resuming: " in log and "parts already uploaded" in log, log
    assert s3.object_bytes(result["uid"]) == path.read_bytes()
    assert s3.uploads() == []
    report = ln.check(deep=True)
    assert report.is_consistent and report.n_ok == 1, report
    assert ln.uploads() == []
    return log


@pytest.mark.parametrize("fraction", [0.3, 0.7, 0.99])
def test_killed_save_resumes_with_only_the_missing_parts(
    s3: S3Target, big_file: Callable[..., Path], fraction: float, row_kind: str
) -> None:
    path = big_file(S3_SIZE)
    child = Child(path, "big.bin")
    killed = child.kill_when(lambda: s3.proxy.upstream >= fraction * S3_SIZE)
    child.proc.wait()
    if not killed:  # finished before the kill: nothing to resume
        pytest.fail("the save finished before it could be killed")
    uid, _upload, held = _interrupted_upload(s3)
    _check_kind(uid, row_kind)
    if fraction >= 0.7:
        assert held > 0  # parts finished before the kill are kept
    _resume_and_check(s3, path, held)


def test_sigint_keeps_the_parts(s3: S3Target, big_file: Callable[..., Path]) -> None:
    path = big_file(S3_SIZE)
    child = Child(path, "big.bin")
    assert child.kill_when(lambda: s3.proxy.upstream >= 0.6 * S3_SIZE, signal.SIGINT)
    result, log = child.wait()
    assert "KeyboardInterrupt" in result.get("error", "") or "interrupted" in str(result), result
    assert "save the same content again to resume" in log, log
    _uid, _upload, held = _interrupted_upload(s3)
    assert held > 0
    _resume_and_check(s3, path, held)


def test_dropped_connection_keeps_the_parts_and_the_same_process_resumes(
    s3: S3Target, big_file: Callable[..., Path]
) -> None:
    """The network drops mid-part and stays down: the save fails, the parts stay; once it
    is back, saving the same file again in the same process sends only what is missing."""
    path = big_file(S3_SIZE)
    s3.proxy.cut_at = int(0.6 * S3_SIZE)
    with pytest.raises(ln.SaveError, match="save it again to resume"):
        ln.Artifact(path, key="big.bin").save()
    s3.proxy.come_up()
    [upload] = ln.uploads()
    assert upload.alive is False and upload.parts_total == -(-S3_SIZE // PART)
    [on_server] = s3.uploads()
    held = s3.parts_bytes(upload.uid, on_server["UploadId"])
    assert held > 0
    s3.proxy.reset()
    messages: list[str] = []

    class Details(ln.SaveCallback):
        def state(self, index: int, state: object, detail: str = "") -> None:
            messages.append(detail)

    artifact = ln.Artifact(path, key="big.bin").save(callback=Details())
    assert artifact.uid == upload.uid  # the interrupted reservation was taken over
    missing = S3_SIZE - held
    assert missing <= s3.proxy.upstream <= missing + 64 * OVERHEAD_PER_PART + FIXED_OVERHEAD
    assert any(m.startswith("resuming: ") and "left)" in m for m in messages), messages
    assert s3.object_bytes(artifact.uid) == path.read_bytes()
    assert ln.check(deep=True).is_consistent


def test_changed_source_starts_over_and_says_why(
    s3: S3Target, big_file: Callable[..., Path]
) -> None:
    path = big_file(S3_SIZE)
    child = Child(path, "big.bin")
    assert child.kill_when(lambda: s3.proxy.upstream >= 0.7 * S3_SIZE)
    child.proc.wait()
    old_uid, _, _ = _interrupted_upload(s3)
    with open(path, "r+b") as fh:  # same size, other bytes in the middle
        fh.seek(S3_SIZE // 2)
        fh.write(b"changed" * 1000)
    s3.proxy.reset()
    result, log = save_in_child(path, "big.bin")
    assert "uid" in result and result["uid"] != old_uid, (result, log)
    assert "starting over: big.bin changed since its interrupted upload" in log, log
    assert s3.proxy.upstream >= S3_SIZE  # every byte went again
    assert s3.object_bytes(result["uid"]) == path.read_bytes()
    assert s3.uploads() == []  # the old parts were freed at once
    assert ln.uploads() == []
    assert ln.check(deep=True).is_consistent


def test_two_processes_resuming_at_once_never_send_a_part_twice(
    s3: S3Target, big_file: Callable[..., Path], row_kind: str
) -> None:
    path = big_file(S3_SIZE)
    child = Child(path, "big.bin")
    assert child.kill_when(lambda: s3.proxy.upstream >= 0.5 * S3_SIZE)
    child.proc.wait()
    uid, _upload, held = _interrupted_upload(s3)
    _check_kind(uid, row_kind)
    s3.proxy.reset()
    results = wait_all([Child(path, "big.bin") for _ in range(2)])
    uids = {r["uid"] for r, _ in results}
    assert len(uids) == 1 and None not in uids, results
    missing = S3_SIZE - held
    parts = -(-S3_SIZE // PART)
    # one of them sent the missing parts; the other waited and found the artifact saved
    assert s3.proxy.upstream <= missing + 2 * parts * OVERHEAD_PER_PART + FIXED_OVERHEAD
    assert ln.Artifact.filter().count() == 1
    assert s3.object_bytes(uids.pop()) == path.read_bytes()  # type: ignore[arg-type]
    assert s3.uploads() == []
    assert ln.check(deep=True).is_consistent
