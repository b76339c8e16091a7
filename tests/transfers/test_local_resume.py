"""A big local copy killed part-way resumes from its partial file (its prefix re-verified)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lamin_nb as ln
from lamin_nb.core.storage.local import COPY_STEP
from tests.transfers.conftest import LOCAL_SIZE, save_in_child


def _partials(storage: Path) -> list[Path]:
    return sorted((storage / ".lamindb").glob("*.tmp"))


def test_killed_local_copy_resumes_from_its_partial_file(
    tmp_path: Path, big_file: Callable[..., Path]
) -> None:
    storage = tmp_path / "storage"
    ln.init(storage=str(storage))
    path = big_file(LOCAL_SIZE)
    # killed right after the first step of the copy reached the partial file
    result, log = save_in_child(path, "big.bin", env={"LAMIN_NB_FAULT": "mid_upload:kill"})
    assert result == {}, (result, log)
    [partial] = _partials(storage)
    assert partial.stat().st_size == COPY_STEP
    [upload] = ln.uploads()
    assert upload.alive is False and upload.parts_total == -(-LOCAL_SIZE // COPY_STEP)
    inode = partial.stat().st_ino

    result, log = save_in_child(path, "big.bin")
    assert "uid" in result, (result, log)
    total = -(-LOCAL_SIZE // COPY_STEP)
    assert f"resuming: 1 of {total} parts already uploaded" in log, log
    stored = storage / ".lamindb" / f"{result['uid']}.bin"
    assert stored.stat().st_ino == inode  # the partial file itself was completed and renamed
    assert stored.read_bytes() == path.read_bytes()
    assert _partials(storage) == [] and ln.uploads() == []
    assert ln.check(deep=True).is_consistent


def test_partial_file_that_does_not_match_starts_over(
    tmp_path: Path, big_file: Callable[..., Path]
) -> None:
    storage = tmp_path / "storage"
    ln.init(storage=str(storage))
    path = big_file(LOCAL_SIZE)
    save_in_child(path, "big.bin", env={"LAMIN_NB_FAULT": "mid_upload:kill"})
    [partial] = _partials(storage)
    with open(partial, "r+b") as fh:  # the partial file got damaged: its prefix is re-checked
        fh.write(b"damaged")
    result, log = save_in_child(path, "big.bin")
    assert "uid" in result, (result, log)
    assert "starting over: the partial copy does not match the source" in log, log
    assert (storage / ".lamindb" / f"{result['uid']}.bin").read_bytes() == path.read_bytes()
    assert _partials(storage) == []
    assert ln.check(deep=True).is_consistent


def test_repair_keeps_an_interrupted_upload_until_the_grace_period(
    tmp_path: Path, big_file: Callable[..., Path]
) -> None:
    storage = tmp_path / "storage"
    ln.init(storage=str(storage))
    path = big_file(LOCAL_SIZE)
    save_in_child(path, "big.bin", env={"LAMIN_NB_FAULT": "mid_upload:kill"})
    report = ln.check()
    assert report.is_consistent, report  # an upload waiting to be resumed is no damage
    assert any("can be resumed" in w for w in report.warnings), report.warnings
    kept = ln.repair(dry_run=False)
    assert kept.freed_bytes == 0 and _partials(storage) != []
    assert "save it again to resume" in repr(kept)
    ln.connect()  # recovery on connect keeps it too
    assert len(ln.uploads()) == 1
    freed = ln.repair(dry_run=False, grace_seconds=0)
    assert freed.freed_bytes == COPY_STEP, freed
    assert "freed 32.0 MiB" in freed.summary()
    assert _partials(storage) == [] and ln.uploads() == []
    assert ln.check().is_consistent


def test_uploads_panel_resumes_and_discards(tmp_path: Path, big_file: Callable[..., Path]) -> None:
    from lamin_nb.widgets import UploadsPanel

    storage = tmp_path / "storage"
    ln.init(storage=str(storage))
    first, second = big_file(LOCAL_SIZE, "first.bin"), big_file(LOCAL_SIZE, "second.bin")
    for path in (first, second):
        save_in_child(path, path.name, env={"LAMIN_NB_FAULT": "mid_upload:kill"})
    panel = UploadsPanel()
    assert len(panel.uploads) == 2 and "2 resumable uploads" in repr(panel)
    assert "interrupted; kept" in repr(panel)
    by_key = {u.key: u for u in panel.uploads}
    panel.resume(by_key["first.bin"].uid)
    assert "saved first.bin" in repr(panel), repr(panel)
    panel.discard(by_key["second.bin"].uid)
    assert "discarded second.bin (freed 32.0 MiB)" in repr(panel), repr(panel)
    assert panel.uploads == [] and ln.uploads() == []
    assert ln.Artifact.get("first.bin").cache().read_bytes() == first.read_bytes()
    assert _partials(storage) == []
    assert ln.check().is_consistent


def test_consistency_panel_lists_interrupted_uploads_with_resume_and_discard(
    tmp_path: Path, big_file: Callable[..., Path]
) -> None:
    """The consistency panel shows the uploads waiting to be resumed (the same Resume and
    Discard as ``%lamin_uploads``), and checks again after either."""
    from lamin_nb.widgets import ConsistencyPanel

    storage = tmp_path / "storage"
    ln.init(storage=str(storage))
    first, second = big_file(LOCAL_SIZE, "first.bin"), big_file(LOCAL_SIZE, "second.bin")
    for path in (first, second):
        save_in_child(path, path.name, env={"LAMIN_NB_FAULT": "mid_upload:kill"})
    panel = ConsistencyPanel()
    try:
        assert len(panel.uploads.uploads) == 2
        assert "2 resumable uploads" in repr(panel) and "interrupted; kept" in repr(panel)
        assert panel.report.is_consistent  # waiting to be resumed is no damage
        by_key = {u.key: u for u in panel.uploads.uploads}
        before = panel.report.checked_at
        panel.uploads.discard(by_key["second.bin"].uid)
        assert "discarded second.bin (freed 32.0 MiB)" in repr(panel), repr(panel)
        assert panel.report.checked_at >= before  # checked again after the discard
        panel.uploads.resume(by_key["first.bin"].uid)
        assert "saved first.bin" in repr(panel), repr(panel)
        assert panel.uploads.uploads == [] and panel.report.is_consistent
        assert panel.report.n_ok == 1
    finally:
        panel.close()
    assert ln.Artifact.get("first.bin").cache().read_bytes() == first.read_bytes()
    assert _partials(storage) == []
