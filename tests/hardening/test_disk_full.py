"""Disk full: the storage (and, in one test, the SQLite database) on a 2 MiB tmpfs that fills
up in the middle of a save. The user gets a SaveError naming ENOSPC; nothing half-written
stays behind (no temporary file, no pending row, the free space is back); check is clean.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import lamin_nb as ln
from lamin_nb.core.storage import owner_of_temp
from tests.support.faults_env import assert_clean, count, repair_all, tiny_filesystem

KIB = 1024
NO_SPACE = "No space left on device"


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def blob(folder: Path, name: str, size: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(os.urandom(size))
    return path


@pytest.fixture
def tiny(tmp_path: Path) -> Iterator[Path]:
    with tiny_filesystem(tmp_path / "tiny", "2m") as mount:
        yield mount
        ln.disconnect()  # release the SQLite file before unmounting


def leftovers(managed: Path) -> list[str]:
    return [n for n in os.listdir(managed) if owner_of_temp(n) is not None]


@pytest.mark.parametrize("db", ["sqlite", "pg"])
def test_storage_fills_up_mid_save(
    tmp_path: Path, tiny: Path, db: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("pg_url") if db == "pg" else None
    ln.init(storage=str(tiny / "data"), db=url)
    managed = tiny / "data" / ".lamindb"
    src = tmp_path / "src"
    first = ln.Artifact(blob(src, "first.bin", 600 * KIB), key="first.bin").save()
    room = free_bytes(managed)

    # one item alone does not fit: it fails while its bytes are being written
    too_big = ln.Artifact(blob(src, "too-big.bin", 3 * 1024 * KIB), key="too-big.bin")
    with pytest.raises(ln.SaveError, match=NO_SPACE) as single:
        too_big.save()
    count("faults injected: disk full")
    assert "too-big.bin" in str(single.value)
    assert too_big.status is None
    assert leftovers(managed) == [] and free_bytes(managed) == room

    # a bulk save that fills the disk part-way: what fits is saved, the rest fails cleanly
    batch = [
        ln.Artifact(blob(src, f"part-{i}.bin", 500 * KIB), key=f"parts/{i}.bin") for i in range(4)
    ]
    with pytest.raises(ln.SaveError, match=NO_SPACE) as bulk:
        ln.save(batch, max_workers=1)
    count("faults injected: disk full")
    report = bulk.value.report
    assert report.saved and report.failed, report
    assert all(
        NO_SPACE in str(exc.__cause__ or exc) or NO_SPACE in str(exc) for _, exc in report.failed
    )
    assert leftovers(managed) == []
    assert_clean([first.uid] + [a.uid for a in report.saved])

    # all or nothing: every byte of the batch is given back
    room = free_bytes(managed)
    atomic = [
        ln.Artifact(blob(src, f"atomic-{i}.bin", 300 * KIB), key=f"atomic/{i}.bin")
        for i in range(3)
    ]
    with pytest.raises(ln.SaveError, match=NO_SPACE):
        ln.save(atomic, atomic=True, max_workers=1)
    count("faults injected: disk full")
    assert all(a.status is None for a in atomic)
    assert leftovers(managed) == [] and free_bytes(managed) == room
    assert ln.Artifact.filter(key__startswith="atomic/").count() == 0
    assert_clean([first.uid] + [a.uid for a in report.saved])

    # once there is room again, the same save succeeds
    first.delete(permanent=True)
    for artifact in report.saved:
        artifact.delete(permanent=True)
    ln.save(atomic, atomic=True)
    assert_clean([a.uid for a in atomic])


def fill(folder: Path) -> Path:
    """Take every free byte of the filesystem of ``folder`` (unbuffered: nothing is left to
    flush, and fail, on close)."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as fh:
        for chunk in (64 * KIB, 512, 1):
            try:
                while fh.write(b"\0" * chunk):
                    pass
            except OSError:
                pass
    return filler


def test_database_and_storage_on_a_full_disk(tmp_path: Path, tiny: Path) -> None:
    """The SQLite file shares the tiny filesystem with the objects and the disk fills up
    just before the rows are committed (another process's file, written from the progress
    callback). The commit fails, the upload is removed, no committed row points at a missing
    object, and once space is freed repair leaves a clean instance."""
    from lamin_nb.core.callbacks import ItemState, SaveCallback

    ln.init(storage=str(tiny / "data"), db=f"sqlite:///{tiny / 'lamin.db'}")
    managed = tiny / "data" / ".lamindb"
    src = tmp_path / "src"
    keep = ln.Artifact(blob(src, "keep.bin", 64 * KIB), key="keep.bin").save()

    class FillAtCommit(SaveCallback):
        filler: Path | None = None

        def state(self, index: int, state: ItemState, detail: str = "") -> None:
            if state == ItemState.COMMITTING and self.filler is None:
                self.filler = fill(tiny)

    artifacts = [
        ln.Artifact(blob(src, f"fits-{i}.bin", 128 * KIB), key=f"fits/{i}.bin") for i in range(3)
    ]
    callback = FillAtCommit()
    with pytest.raises(ln.SaveError) as failed:
        ln.save(artifacts, callback=callback)
    count("faults injected: disk full")
    assert callback.filler is not None
    message = str(failed.value)
    assert "database or disk is full" in message or NO_SPACE in message, message
    assert "could not commit" in message, message
    assert all(a.status is None for a in artifacts)
    report = ln.check()
    assert not report.missing and report.n_ok >= 1, repr(report)
    callback.filler.unlink()  # the operator frees space
    repair_all()
    assert_clean([keep.uid])
    assert leftovers(managed) == []
    ln.save(artifacts)
    assert_clean([keep.uid] + [a.uid for a in artifacts])
