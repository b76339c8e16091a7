"""``ln.transaction()`` commits (DESIGN §10): everything of a block becomes visible in one
commit at its end; inside, the block sees its own changes; a nested block joins. Every backend
combination.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

import lamin_nb as ln
from lamin_nb.core.callbacks import ItemState, RecordingCallback
from tests.support.crashes import assert_i1_i2_i3, finish_child, start_child


def _keys(**fields: Any) -> list[str]:
    return sorted(a.key or a.uid for a in ln.Artifact.filter(**fields))


def test_everything_of_a_block_is_committed_together(backend, make_file) -> None:
    old = ln.Artifact(make_file(), key="runs/6/model.pt").save()
    retired = ln.Artifact(make_file(), key="runs/6/metrics.csv").save()
    binned = ln.Artifact(make_file(), key="runs/6/plot.png").save()
    binned.delete()
    recording = RecordingCallback()
    with ln.transaction(callback=recording) as block:
        model = ln.Artifact(make_file(), key="runs/6/model.pt").save()  # a new version
        figures = [ln.Artifact(make_file(), key=f"runs/7/fig{i}.png") for i in range(3)]
        ln.save(figures)
        retired.delete(permanent=True)
        old.delete()  # trash the previous version
        binned.restore()
    assert block.outcome is not None and block.outcome.committed
    assert block.outcome.line == "committed: 4 saved, 1 deleted, 1 trashed, 1 restored"
    assert model.status == "committed" and model.version == 2 and model.is_latest
    assert _keys() == sorted(
        ["runs/6/model.pt", "runs/6/plot.png"] + [f"runs/7/fig{i}.png" for i in range(3)]
    )
    assert ln.Artifact.get("runs/6/model.pt").uid == model.uid
    assert _keys(is_trashed=True) == ["runs/6/model.pt"]
    assert ln.Artifact.filter(key="runs/6/metrics.csv").count() == 0
    assert all(f.status == "committed" for f in figures)
    assert_i1_i2_i3()
    assert ln.check(deep=True).is_consistent
    # the display showed every item of the block, then one final line
    assert len(recording.items) == 7
    assert recording.outcome is not None and recording.outcome.committed
    finals = [s for _, s, _ in recording.events if s.is_final]
    assert finals.count(ItemState.SAVED) == 7


def test_other_processes_see_nothing_until_the_end(backend, make_file, tmp_path: Path) -> None:
    kept = ln.Artifact(make_file(), key="keep.csv").save()
    gone = ln.Artifact(make_file(), key="gone.csv").save()
    before = [sorted([kept.uid, gone.uid]), []]
    stop, out = tmp_path / "stop", tmp_path / "views.json"
    poller = start_child({"op": "poll", "stop": str(stop), "out": str(out)})
    _wait_for(lambda: out.exists())
    with ln.transaction():
        a = ln.Artifact(make_file(), key="a.csv").save()
        time.sleep(0.5)  # the poller reads meanwhile
        ln.save([ln.Artifact(make_file(), key=f"b{i}.csv") for i in range(3)])
        gone.delete(permanent=True)
        time.sleep(0.5)
        kept.delete()
        time.sleep(0.5)
        assert json.loads(out.read_text()) == [before]  # nothing of the block, so far
    stop.touch()
    result = finish_child(poller)
    views = result.output["views"]
    after = [sorted(x.uid for x in ln.Artifact.filter()), [kept.uid]]
    assert a.uid in after[0] and gone.uid not in after[0]
    assert views == [before, after], views  # never a half-committed block
    assert_i1_i2_i3()


def _wait_for(condition: Any, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_reads_inside_the_block_see_its_own_changes(backend, make_file) -> None:
    v1 = ln.Artifact(make_file(b"one"), key="runs/table.csv").save()
    other = ln.Artifact(make_file(), key="other.csv").save()
    nokey = ln.Artifact(make_file(), description="no key").save()
    with ln.transaction():
        v2 = ln.Artifact(make_file(b"two"), key="runs/table.csv").save()
        assert v2.status == "pending"  # committed only at the end of the block
        assert ln.Artifact.get("runs/table.csv").uid == v2.uid
        latest = ln.Artifact.filter(key="runs/table.csv", is_latest=True).all()
        assert [a.uid for a in latest] == [v2.uid]
        assert ln.Artifact.filter(key="runs/table.csv").latest_version().first().uid == v2.uid  # type: ignore[union-attr]
        assert ln.Artifact.get(v2.uid).load().read_bytes() == b"two"
        assert ln.Artifact.filter(key="runs/table.csv").count() == 2
        other.delete(permanent=True)
        assert ln.Artifact.filter(key="other.csv").count() == 0
        with pytest.raises(ln.NotFoundError):
            ln.Artifact.get("other.csv")
        nokey.delete()
        assert ln.Artifact.filter(description="no key").count() == 0
        assert [a.uid for a in ln.Artifact.filter(is_trashed=True)] == [nokey.uid]
        v2.delete()  # trash the new version: the old one is the latest again, in the block
        assert ln.Artifact.get("runs/table.csv").uid == v1.uid
        v2.restore()
        assert ln.Artifact.get("runs/table.csv").uid == v2.uid
    assert ln.Artifact.get("runs/table.csv").uid == v2.uid and v2.is_latest
    assert not ln.Artifact.get(v1.uid).is_latest
    assert ln.Artifact.filter(is_trashed=True).first().uid == nokey.uid  # type: ignore[union-attr]
    assert_i1_i2_i3()


def test_nested_blocks_join_the_outer_one(backend, make_file) -> None:
    with ln.transaction() as outer:
        a = ln.Artifact(make_file(), key="a.csv").save()
        with ln.transaction() as inner:
            b = ln.Artifact(make_file(), key="b.csv").save()
        assert inner.outcome is None  # nothing committed at the inner end
        assert b.status == "pending"
    assert outer.outcome is not None and outer.outcome.committed
    assert a.status == b.status == "committed"
    assert _keys() == ["a.csv", "b.csv"]
    # an exception in the inner block, caught in the outer: the outer rolls back all
    with pytest.raises(ln.TransactionError, match="rolled back: a nested block raised"):
        with ln.transaction():
            c = ln.Artifact(make_file(), key="c.csv").save()
            try:
                with ln.transaction():
                    ln.Artifact(make_file(), key="d.csv").save()
                    raise ValueError("inner")
            except ValueError:
                pass
    assert c.status is None
    assert _keys() == ["a.csv", "b.csv"]
    assert_i1_i2_i3()


def test_versions_and_same_content_inside_a_block(backend, make_file) -> None:
    with ln.transaction():
        v1 = ln.Artifact(make_file(b"1"), key="k.csv").save()
        v2 = ln.Artifact(make_file(b"2"), key="k.csv").save()
        same = ln.Artifact(make_file(b"2", name="copy.bin"), key="k.csv").save()
        assert same.uid == v2.uid  # deduplicated onto the block's own save, no waiting
        v2.delete(permanent=True)
        v3 = ln.Artifact(make_file(b"3"), key="k.csv").save()
    assert (v1.version, v3.version) == (1, 3)
    assert v1.status == v3.status == "committed" and v3.is_latest and not v1.is_latest
    assert [a.version for a in ln.Artifact.filter(key="k.csv")] == [1, 3]
    assert_i1_i2_i3()
