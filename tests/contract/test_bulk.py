"""Bulk save (issue 6) on every backend combination: the seed's scenarios 2 and 3 with real
failures, atomic mode, dedup, interrupts, the progress protocol and ``Artifact.from_dir``."""

from __future__ import annotations

import shutil
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

import lamin_nb as ln
from lamin_nb.core.callbacks import ItemInfo, ItemState, SaveCallback

S = ItemState
FINAL = {S.SAVED, S.DEDUPLICATED, S.ALREADY_SAVED, S.FAILED, S.ROLLED_BACK}
# The state machine documented in lamin_nb/core/callbacks.py, written out independently.
NEXT = {
    None: {S.QUEUED},
    S.QUEUED: {S.HASHING, S.UPLOADING, S.DEDUPLICATED, S.ALREADY_SAVED, S.FAILED, S.ROLLED_BACK},
    S.HASHING: {S.UPLOADING, S.DEDUPLICATED, S.ALREADY_SAVED, S.FAILED, S.ROLLED_BACK},
    S.UPLOADING: {S.COMMITTING, S.FAILED, S.ROLLED_BACK},
    S.COMMITTING: {S.SAVED, S.FAILED, S.ROLLED_BACK},
}


class EventLog(SaveCallback):
    """Keeps every call in arrival order (thread-safe) and checks it against the protocol."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.lock = threading.Lock()

    def start(self, items: list[ItemInfo]) -> None:
        self._log("start", list(items))

    def state(self, index: int, state: ItemState, detail: str = "") -> None:
        self._log("state", index, state, detail)

    def advance(self, index: int, nbytes: int) -> None:
        self._log("advance", index, nbytes)

    def finish(self, report: Any) -> None:
        self._log("finish", report)

    def _log(self, *call: Any) -> None:
        with self.lock:
            self.calls.append(call)

    def final_states(self) -> dict[int, ItemState]:
        return {c[1]: c[2] for c in self.calls if c[0] == "state" and c[2] in FINAL}

    def states_of(self, index: int) -> list[ItemState]:
        return [c[2] for c in self.calls if c[0] == "state" and c[1] == index]

    def validate(self, artifacts: list[ln.Artifact]) -> None:
        assert self.calls[0][0] == "start" and self.calls[-1][0] == "finish"
        assert [c[0] for c in self.calls].count("start") == 1
        assert [c[0] for c in self.calls].count("finish") == 1
        items = self.calls[0][1]
        assert [i.index for i in items] == list(range(len(artifacts)))
        state: dict[int, ItemState | None] = {i.index: None for i in items}
        phase_bytes: dict[tuple[int, ItemState], int] = {}
        for call in self.calls[1:-1]:
            kind, index = call[0], call[1]
            assert kind in ("state", "advance"), call
            if kind == "advance":
                assert state[index] in (S.HASHING, S.UPLOADING), (call, state[index])
                key = (index, state[index])
                phase_bytes[key] = phase_bytes.get(key, 0) + call[2]
                continue
            new, detail = call[2], call[3]
            assert new in NEXT.get(state[index], set()), f"item {index}: {state[index]} -> {new}"
            if new == S.FAILED:
                assert detail, f"item {index} failed without a reason"
            state[index] = new
        assert all(s in FINAL for s in state.values()), state
        report = self.calls[-1][1]
        expected = {
            S.SAVED: report.saved,
            S.DEDUPLICATED: report.deduplicated,
            S.ALREADY_SAVED: report.already_saved,
            S.ROLLED_BACK: report.rolled_back,
            S.FAILED: [a for a, _ in report.failed],
        }
        for index, final in state.items():
            assert any(a is artifacts[index] for a in expected[final]), (index, final)
        for (index, phase), n in phase_bytes.items():
            assert n <= items[index].size, (index, phase, n)
            if phase == S.UPLOADING and state[index] == S.SAVED:
                assert n == items[index].size


# -- helpers ---------------------------------------------------------------------------


def all_rows() -> dict[str, tuple[Any, ...]]:
    """Every row, whatever its status, as comparable tuples."""
    from sqlalchemy import select

    from lamin_nb.core.instance import current
    from lamin_nb.core.models import ArtifactRow

    with current().db.read() as session:
        found = session.scalars(select(ArtifactRow)).all()
        return {
            r.uid: (r.status, r.key, r.size, r.hash, r.version, r.is_latest, r.updated_at, r.owner)
            for r in found
        }


def statuses() -> dict[str, int]:
    from lamin_nb.core.instance import current
    from lamin_nb.core.rows import count_by_status

    with current().db.read() as session:
        return count_by_status(session)


def object_state(name: str) -> tuple[Any, ...]:
    from lamin_nb.core.instance import current

    storage = current().storage
    info = storage.info(name)
    assert info is not None, f"{name} is gone"
    with storage.open(name) as fh:
        return info.size, info.mtime, fh.read()


def deny_object(backend: Any, artifact: ln.Artifact) -> None:
    """Make the upload of exactly this artifact fail for real."""
    if backend.is_s3:
        backend.deny_writes(prefix=artifact.object_name)  # bucket policy on its one key
    else:  # a folder where the object must go: the final rename fails (EISDIR)
        (Path(backend.storage) / ".lamindb" / artifact.object_name).mkdir()


def allow_object(backend: Any, artifact: ln.Artifact) -> None:
    if backend.is_s3:
        backend.allow_writes()
    else:
        (Path(backend.storage) / ".lamindb" / artifact.object_name).rmdir()


def assert_consistent() -> None:
    report = ln.check()
    assert report.is_consistent and not report.pending, report


@pytest.fixture
def five(make_file):
    return [ln.Artifact(make_file(size=2048 + i), description=f"file {i}") for i in range(5)]


@pytest.fixture
def old(make_file):
    """An artifact saved before the bulk save, with its row and object as they were."""
    artifact = ln.Artifact(make_file(b"saved before"), key="old.txt").save()
    return artifact, all_rows()[artifact.uid], object_state(artifact.object_name)


@pytest.fixture
def dup(make_file, old):
    """A new artifact with the content of ``old``: dedup resolves it to the existing record."""
    return ln.Artifact(make_file(b"saved before"), description="same bytes as old")


def assert_untouched(old: tuple[ln.Artifact, Any, Any]) -> None:
    artifact, row, obj = old
    assert all_rows()[artifact.uid] == row
    assert object_state(artifact.object_name) == obj


# -- the seed's second scenario and other up-front checks -----------------------------------


def test_non_record_in_list_saves_nothing(backend, make_file):
    artifact = ln.Artifact(make_file(), description="My image")
    with pytest.raises(TypeError) as error:
        ln.save([artifact, "this is not a record"])
    assert "item 1" in str(error.value) and "str" in str(error.value)
    assert len(ln.Artifact.filter().all()) == 0
    assert all_rows() == {} and backend.object_names() == []
    assert artifact.status is None


def test_per_item_problems_are_found_before_any_write(backend, make_file):
    good = ln.Artifact(make_file())
    gone = ln.Artifact(make_file())
    gone.source.unlink()
    with pytest.raises(ln.ValidationError, match="does not exist"):
        ln.save([good, gone])
    unsafe = ln.Artifact(make_file())
    unsafe.key = "../outside.txt"
    with pytest.raises(ln.ValidationError, match=r"\.\."):
        ln.save([good, unsafe])
    assert all_rows() == {} and backend.object_names() == []


# -- the seed's third scenario with a real failure ------------------------------------------


def test_failed_upload_keeps_the_others(backend, five, old, dup):
    """Default mode: every item atomic on its own; the error lists what was saved."""
    batch = five[:3] + [old[0], dup] + five[3:]
    deny_object(backend, five[2])
    log = EventLog()
    with pytest.raises(RuntimeError) as error:
        ln.save(batch, callback=log)
    err = error.value
    assert isinstance(err, ln.SaveError)
    report = err.report
    others = [a for a in five if a is not five[2]]
    assert report.saved == others and report.already_saved == [old[0]]
    assert report.deduplicated == [dup] and dup.uid == old[0].uid
    [(failed, exc)] = report.failed
    assert failed is five[2] and isinstance(exc, ln.StorageError)
    assert isinstance(exc.__cause__, OSError)  # PermissionError on S3, IsADirectoryError locally
    assert err.__cause__ is exc
    assert all(a.uid in str(err) for a in others) and "could not be saved" in str(err)
    log.validate(batch)
    assert {a.uid for a in ln.Artifact.filter().all()} == {a.uid for a in others + [old[0]]}
    assert all(a.status == "committed" for a in others) and five[2].status is None
    assert_untouched(old)
    allow_object(backend, five[2])
    assert sorted(backend.object_names()) == sorted(a.object_name for a in others + [old[0]])
    assert statuses() == {"committed": 5}
    assert_consistent()
    # re-running the same call saves only what failed, with the uid it had
    uid = five[2].uid
    again = ln.save(batch)
    assert again.saved == [five[2]] and five[2].uid == uid
    assert set(map(id, again.already_saved)) == set(map(id, others + [old[0], dup]))
    assert ln.Artifact.filter().count() == 6 and len(backend.object_names()) == 6
    assert_consistent()


def test_atomic_failure_leaves_nothing(backend, five, old, dup):
    batch = five[:3] + [old[0], dup] + five[3:]
    deny_object(backend, five[2])
    log = EventLog()
    with pytest.raises(ln.SaveError) as error:
        ln.save(batch, atomic=True, callback=log)
    report = error.value.report
    assert report.saved == [] and [a for a, _ in report.failed] == [five[2]]
    assert report.rolled_back == [a for a in five if a is not five[2]]
    assert report.already_saved == [old[0]] and report.deduplicated == [dup]
    log.validate(batch)
    assert [a.uid for a in ln.Artifact.filter().all()] == [old[0].uid]
    assert list(all_rows()) == [old[0].uid]
    assert_untouched(old)
    allow_object(backend, five[2])
    assert backend.object_names() == [old[0].object_name]
    assert all(a.status is None for a in five)
    assert_consistent()
    assert len(ln.save(batch, atomic=True).saved) == 5
    assert ln.Artifact.filter().count() == 6
    assert_consistent()


# -- dedup ----------------------------------------------------------------------------------


def test_dedup_in_batch_and_against_stored(backend, make_file):
    stored = ln.Artifact(make_file(b"stored content"), key="stored.txt").save()
    first = ln.Artifact(make_file(b"twice in this batch"), key="a.txt")
    twin = ln.Artifact(make_file(b"twice in this batch"), key="b.txt")
    known = ln.Artifact(make_file(b"stored content"), key="c.txt")
    fresh = ln.Artifact(make_file(b"new"), key="d.txt")
    batch = [first, twin, known, fresh]
    log = EventLog()
    report = ln.save(batch, callback=log)
    log.validate(batch)
    assert report.saved == [first, fresh] and report.deduplicated == [twin, known]
    assert twin.uid == first.uid and known.uid == stored.uid
    assert S.UPLOADING not in log.states_of(1) + log.states_of(2)  # never uploaded twice
    assert len(backend.object_names()) == 3 and ln.Artifact.filter().count() == 3
    assert statuses() == {"committed": 3}
    again = ln.save(
        [ln.Artifact(make_file(b"new")), ln.Artifact(make_file(b"twice in this batch"))]
    )
    assert len(again.deduplicated) == 2 and not again.saved
    assert len(backend.object_names()) == 3
    assert_consistent()


# -- interrupts -----------------------------------------------------------------------------


class InterruptAt(EventLog):
    """Ctrl-C, for real, when item ``index`` reaches ``when``: a SIGINT to the main thread
    (``how="signal"``), or a KeyboardInterrupt raised by the hook itself (``how="raise"``, from
    the item's first byte count in that state: a worker thread, or fsspec's event loop on S3)."""

    def __init__(self, index: int, when: ItemState, how: str = "signal") -> None:
        super().__init__()
        self.index, self.when, self.how = index, when, how
        self.now: dict[int, ItemState] = {}
        self.sent = False

    def state(self, index: int, state: ItemState, detail: str = "") -> None:
        super().state(index, state, detail)
        self.now[index] = state
        if self.how == "signal" and index == self.index and state == self.when:
            self._fire()

    def advance(self, index: int, nbytes: int) -> None:
        super().advance(index, nbytes)
        if self.how == "raise" and index == self.index and self.now.get(index) == self.when:
            self._fire()

    def _fire(self) -> None:
        if self.sent:
            return
        self.sent = True
        if self.how == "signal":
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        else:
            raise KeyboardInterrupt


@pytest.mark.parametrize("how", ["signal", "raise"])
def test_interrupt_during_uploads_rolls_back_in_flight(backend, make_file, old, how):
    new = [ln.Artifact(make_file(size=4096)) for _ in range(6)]
    batch = [old[0]] + new
    log = InterruptAt(3, S.UPLOADING, how)
    with pytest.raises(KeyboardInterrupt):
        ln.save(batch, callback=log, max_workers=4)
    assert log.sent
    log.validate(batch)
    assert statuses() == {"committed": 1}  # no pending row is left behind
    assert backend.object_names() == [old[0].object_name]
    assert_untouched(old)
    assert all(a.status is None for a in new)
    assert_consistent()
    assert len(ln.save(batch).saved) == 6  # and the same call can simply be re-run
    assert_consistent()


def test_interrupt_before_commit_cleans_up_a_failed_item_too(backend, five):
    """Ctrl-C between the uploads (one of them denied) and the commit: nothing stays."""
    deny_object(backend, five[1])
    log = InterruptAt(0, S.COMMITTING)
    with pytest.raises(KeyboardInterrupt):
        ln.save(five[:3], callback=log)
    log.validate(five[:3])
    assert log.final_states()[1] == S.FAILED
    allow_object(backend, five[1])
    assert statuses() == {} and backend.object_names() == []
    assert_consistent()


def test_interrupt_after_commit_keeps_committed(backend, make_file):
    batch = [ln.Artifact(make_file()) for _ in range(4)]
    log = InterruptAt(1, S.SAVED)
    with pytest.raises(KeyboardInterrupt):
        ln.save(batch, callback=log)
    log.validate(batch)
    assert statuses() == {"committed": 4}
    assert all(a.status == "committed" for a in batch)
    assert len(backend.object_names()) == 4
    assert_consistent()
    assert len(ln.save(batch).already_saved) == 4


# -- Artifact.from_dir ----------------------------------------------------------------------


def test_from_dir(backend, tmp_path):
    folder = tmp_path / "run7"
    (folder / "plots" / "deep").mkdir(parents=True)
    (folder / "plots" / "deep" / "a.png").write_bytes(b"png")
    (folder / "table.csv").write_bytes(b"x,y\n1,2\n")
    (folder / ".DS_Store").write_bytes(b"hidden")
    (folder / ".git").mkdir()
    (folder / ".git" / "config").write_bytes(b"hidden too")
    artifacts = ln.Artifact.from_dir(folder)
    assert [a.key for a in artifacts] == ["run7/plots/deep/a.png", "run7/table.csv"]
    assert [a.key for a in ln.Artifact.from_dir(folder, key="results/x")] == [
        "results/x/plots/deep/a.png",
        "results/x/table.csv",
    ]
    report = ln.save(artifacts)
    assert len(report.saved) == 2
    assert ln.Artifact.get("run7/table.csv").load().read_bytes() == b"x,y\n1,2\n"
    (folder / "table.csv").write_bytes(b"x,y\n3,4\n")
    second = ln.save(ln.Artifact.from_dir(folder))
    assert [a.key for a in second.saved] == ["run7/table.csv"] and second.saved[0].version == 2
    assert len(second.deduplicated) == 1
    with pytest.raises(ln.ValidationError, match="not a folder"):
        ln.Artifact.from_dir(tmp_path / "missing")
    with pytest.raises(ln.ValidationError, match="not a folder"):
        ln.Artifact.from_dir(folder / "table.csv")
    shutil.rmtree(folder)
    assert_consistent()
