"""A non-atomic bulk save runs in chunks (issue 21): each chunk reserved, uploaded and
committed before the next, one progress display over all of them, and a failure or an
interrupt in a later chunk leaves the earlier chunks committed and consistent."""

from __future__ import annotations

from typing import Any

import pytest

import lamin_nb as ln
from lamin_nb.core import save as save_module
from lamin_nb.core.callbacks import ItemState
from tests.contract.test_bulk import (
    EventLog,
    InterruptAt,
    all_rows,
    allow_object,
    assert_consistent,
    deny_object,
    statuses,
)

S = ItemState
CHUNK = 3


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(save_module, "CHUNK_ITEMS", CHUNK)


@pytest.fixture
def eight(make_file: Any) -> list[ln.Artifact]:
    return [ln.Artifact(make_file(size=1024 + i), description=f"file {i}") for i in range(8)]


class DenyAfterFirstChunk(EventLog):
    """Denies every write to storage, for real, once the first chunk's last item is saved."""

    def __init__(self, backend: Any) -> None:
        super().__init__()
        self.backend = backend

    def state(self, index: int, state: ItemState, detail: str = "") -> None:
        super().state(index, state, detail)
        if index == CHUNK - 1 and state == S.SAVED:
            self.backend.deny_writes()


def test_chunks_are_each_committed_under_one_progress_display(backend, make_file, eight):
    old = ln.Artifact(make_file(b"saved before")).save()
    dup = ln.Artifact(make_file(b"saved before"))  # same content: dedup across chunks
    batch = [*eight[:4], old, dup, *eight[4:]]
    log = EventLog()
    report = ln.save(batch, callback=log)
    log.validate(batch)  # one start with every item, one finish, indexes of the whole batch
    assert report.saved == eight and report.already_saved == [old]
    assert report.deduplicated == [dup] and dup.uid == old.uid
    assert statuses() == {"committed": 9}
    assert_consistent()


def test_a_failed_item_in_a_later_chunk_fails_alone(backend, eight):
    deny_object(backend, eight[4])  # the second chunk
    with pytest.raises(ln.SaveError) as error:
        ln.save(eight)
    report = error.value.report
    assert [a for a, _ in report.failed] == [eight[4]]
    assert report.saved == eight[:4] + eight[5:]
    assert statuses() == {"committed": 7}
    allow_object(backend, eight[4])
    assert_consistent()
    assert ln.retry_failed().saved == [eight[4]]
    assert_consistent()


def test_later_chunks_failing_leave_the_first_committed(backend, eight):
    log = DenyAfterFirstChunk(backend)
    with pytest.raises(ln.SaveError) as error:
        ln.save(eight, callback=log)
    backend.allow_writes()
    log.validate(eight)
    report = error.value.report
    assert report.saved == eight[:CHUNK]
    assert [a for a, _ in report.failed] == eight[CHUNK:]
    assert all(a.status == "committed" for a in eight[:CHUNK])
    assert all(a.status is None for a in eight[CHUNK:])
    assert statuses() == {"committed": CHUNK}  # no pending row of the failed chunks is left
    assert set(all_rows()) == {a.uid for a in eight[:CHUNK]}
    assert_consistent()
    assert ln.retry_failed(report).saved == eight[CHUNK:]
    assert_consistent()


def test_an_interrupt_in_a_later_chunk_keeps_the_earlier_ones(backend, eight):
    log = InterruptAt(CHUNK + 1, S.UPLOADING)  # the second chunk
    with pytest.raises(KeyboardInterrupt):
        ln.save(eight, callback=log)
    log.validate(eight)
    report = log.calls[-1][1]
    assert report.cancelled and report.saved == eight[:CHUNK]
    assert [a for a, _ in report.failed] == eight[CHUNK:]
    not_started = report.failed[CHUNK:]  # the third chunk's: after the second's undone ones
    assert [a for a, _ in not_started] == eight[2 * CHUNK :]
    assert all("before this item's chunk started" in str(exc) for _, exc in not_started)
    assert statuses() == {"committed": CHUNK}
    assert_consistent()
    assert len(ln.save(eight).saved) == len(eight) - CHUNK
    assert_consistent()


def test_atomic_saves_stay_one_commit(backend, eight):
    deny_object(backend, eight[-1])
    with pytest.raises(ln.SaveError) as error:
        ln.save(eight, atomic=True)
    report = error.value.report
    assert report.saved == [] and len(report.rolled_back) == len(eight) - 1
    assert statuses() == {}
