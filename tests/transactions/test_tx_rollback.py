"""``ln.transaction()`` rolls back (DESIGN §10): an exception, a KeyboardInterrupt, a failed
upload, a delete that cannot happen or a conflict at the end undo everything of the block:
uploads removed, pending rows gone, trashed and deleted artifacts intact. Every backend
combination, with real failures.
"""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

import pytest

import lamin_nb as ln
from tests.support.crashes import assert_i1_i2_i3, object_names, rows_by_status, run_child


def _state() -> tuple[list[tuple[str, str, bool, bool]], set[str]]:
    """Every row (uid, status, trashed, latest) and every object: what a rollback restores."""
    found = [
        (r.uid, r.status, r.is_trashed, r.is_latest) for rs in rows_by_status().values() for r in rs
    ]
    return sorted(found), object_names()


@pytest.fixture
def stored(backend, make_file) -> dict[str, Any]:
    """Three artifacts the blocks below try to change."""
    return {
        "delete": ln.Artifact(make_file(), key="old/delete.csv").save(),
        "trash": ln.Artifact(make_file(), key="old/trash.csv").save(),
        "version": ln.Artifact(make_file(), key="runs/model.pt").save(),
    }


def _work(make_file: Any, stored: dict[str, Any]) -> list[ln.Artifact]:
    """Saves of every kind, a permanent delete and a trash, as a block would do them."""
    new = [ln.Artifact(make_file(), key="runs/model.pt").save()]  # a new version
    bulk = [ln.Artifact(make_file(), key=f"runs/fig{i}.png") for i in range(3)]
    ln.save(bulk)
    stored["delete"].delete(permanent=True)
    stored["trash"].delete()
    return new + bulk


def _assert_rolled_back(before: Any, stored: dict[str, Any], saved: list[ln.Artifact]) -> None:
    assert _state() == before
    assert all(a.status is None for a in saved)  # unsaved again: a retry saves them
    assert stored["delete"].status == "committed" and not stored["trash"].is_trashed
    assert ln.Artifact.get("old/delete.csv").cache().exists()
    assert ln.Artifact.get("runs/model.pt").uid == stored["version"].uid
    assert_i1_i2_i3()
    assert ln.check(deep=True).is_consistent


def test_an_exception_after_uploads_undoes_everything(backend, make_file, stored) -> None:
    before = _state()
    saved: list[ln.Artifact] = []
    with pytest.raises(ValueError, match="bad metrics"):
        with ln.transaction() as block:
            saved = _work(make_file, stored)
            raise ValueError("bad metrics")
    assert (
        block.outcome is not None and block.outcome.line == "rolled back: bad metrics (ValueError)"
    )
    _assert_rolled_back(before, stored, saved)
    # the same artifacts save fine afterwards
    with ln.transaction():
        ln.save(saved)
    assert all(a.status == "committed" for a in saved)
    assert_i1_i2_i3()


def test_ctrl_c_undoes_everything_and_a_second_one_waits(backend, make_file, stored) -> None:
    before = _state()
    saved: list[ln.Artifact] = []

    class SecondCtrlC(logging.Handler):
        """Presses Ctrl-C again as the undo starts: it must wait for the undo."""

        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("transaction rolled back"):
                os.kill(os.getpid(), signal.SIGINT)

    handler = SecondCtrlC()
    logging.getLogger("lamin_nb").addHandler(handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with ln.transaction():
                saved = _work(make_file, stored)
                os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C inside the block
                for _ in range(1000):
                    pass
    finally:
        logging.getLogger("lamin_nb").removeHandler(handler)
    _assert_rolled_back(before, stored, saved)


def test_a_second_ctrl_c_after_an_exception_still_lets_the_undo_finish(
    backend, make_file, stored
) -> None:
    before = _state()

    class CtrlC(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("transaction rolled back"):
                os.kill(os.getpid(), signal.SIGINT)

    handler = CtrlC()
    logging.getLogger("lamin_nb").addHandler(handler)
    saved: list[ln.Artifact] = []
    try:
        with pytest.raises(KeyboardInterrupt):  # raised once the undo is done
            with ln.transaction():
                saved = _work(make_file, stored)
                raise ValueError("stop")
    finally:
        logging.getLogger("lamin_nb").removeHandler(handler)
    _assert_rolled_back(before, stored, saved)


def test_a_failed_upload_in_the_block_rolls_back_the_earlier_saves(
    backend, make_file, stored
) -> None:
    before = _state()
    saved: list[ln.Artifact] = []
    with pytest.raises(ln.SaveError):
        with ln.transaction():
            saved = _work(make_file, stored)
            backend.deny_writes()  # for real: a bucket policy, an immutable folder
            try:
                ln.Artifact(make_file(), key="runs/late.csv").save()
            finally:
                backend.allow_writes()
    _assert_rolled_back(before, stored, saved)


def test_a_caught_failure_leaves_the_rest_of_the_block_to_commit(
    backend, make_file, stored
) -> None:
    with ln.transaction() as block:
        first = ln.Artifact(make_file(), key="a.csv").save()
        backend.deny_writes()
        with pytest.raises(ln.SaveError):
            ln.Artifact(make_file(), key="b.csv").save()
        backend.allow_writes()
        last = ln.Artifact(make_file(), key="c.csv").save()
    assert block.outcome is not None and block.outcome.line == "committed: 2 saved"
    assert first.status == last.status == "committed"
    assert ln.Artifact.filter(key="b.csv").count() == 0
    assert_i1_i2_i3()


def test_a_delete_that_cannot_happen_inside_the_block_rolls_back(
    backend, make_file, stored
) -> None:
    run_child({"op": "delete", "uid": stored["delete"].uid})  # another process deletes it
    before = _state()
    saved: list[ln.Artifact] = []
    with pytest.raises(ln.NotFoundError):
        with ln.transaction():
            saved = [ln.Artifact(make_file(), key="runs/new.csv").save()]
            stored["delete"].delete(permanent=True)
    assert _state() == before
    assert saved[0].status is None
    assert_i1_i2_i3()


@pytest.mark.parametrize("change", ["delete", "trash"])
def test_an_artifact_deleted_elsewhere_meanwhile_is_a_conflict(
    backend, make_file, stored, change
) -> None:
    saved: list[ln.Artifact] = []
    with pytest.raises(ln.TransactionConflict, match="another writer"):
        with ln.transaction():
            saved = [ln.Artifact(make_file(), key="runs/new.csv").save()]
            target = stored[change]
            target.delete(permanent=change == "delete")
            result = run_child({"op": "delete", "uid": target.uid})  # commits before the block
            assert result.returncode == 0, result.stderr
    assert saved[0].status is None
    assert ln.Artifact.filter(key="runs/new.csv").count() == 0
    assert ln.Artifact.filter(key=f"old/{change}.csv", is_trashed__in=[True, False]).count() == 0
    assert_i1_i2_i3()
