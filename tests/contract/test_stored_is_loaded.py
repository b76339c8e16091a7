"""What you store is what you load, on every backend pair (issues: edge reliability 1 and 2)."""

from __future__ import annotations

import base64
import os
import warnings
import zlib
from pathlib import Path

import pytest

import lamin_nb as ln
from lamin_nb.core.callbacks import ItemState, RecordingCallback
from lamin_nb.core.storage import multipart
from tests.conftest import Backend, make_backend

PART = 5 * 1024 * 1024  # the smallest part S3 accepts


class RewriteWhileUploading(ln.SaveCallback):
    """Another program rewrites the file (same size) as its upload starts (``start``), or once
    its first bytes were sent (``mid``)."""

    def __init__(self, path: Path, content: bytes, when: str) -> None:
        self.path, self.content, self.when = path, content, when
        self.uploading = False
        self.done = False

    def state(self, index: int, state: ItemState, detail: str = "") -> None:
        self.uploading = state == ItemState.UPLOADING
        if self.uploading and self.when == "start":
            self.rewrite()

    def advance(self, index: int, nbytes: int) -> None:
        if self.uploading and self.when == "mid":
            self.rewrite()

    def rewrite(self) -> None:
        if not self.done:
            self.done = True
            self.path.write_bytes(self.content)


@pytest.mark.parametrize("when", ["start", "mid"])
def test_file_rewritten_during_upload_never_stores_wrong_bytes(
    backend, make_file, monkeypatch, when
):
    # one part in flight: the next part is read only after the first one was sent
    monkeypatch.setattr(multipart, "PART_SIZE", PART)
    monkeypatch.setattr(multipart, "PARTS_IN_FLIGHT", 1)
    old, new = os.urandom(2 * PART + 1000), os.urandom(2 * PART + 1000)
    path = make_file(old, name="rewritten.bin")
    artifact = ln.Artifact(path, key="data/rewritten.bin")
    callback = RewriteWhileUploading(path, new, when)
    try:
        artifact.save(callback=callback)
    except ln.SaveError as exc:
        assert "changed after it was hashed" in str(exc)
        assert ln.Artifact.filter().count() == 0
        assert backend.object_names() == []
    else:
        # a local copy of this size is taken in one kernel call before the first progress
        # tick, and its copy is what was hashed: the stored bytes are the old ones
        assert when == "mid" and not backend.is_s3, "a rewritten upload must fail"
        assert Path(artifact.load()).read_bytes() == old
    assert callback.done
    report = ln.check(deep=True)
    assert report.is_consistent and not report.pending, repr(report)
    # the same content saved again later loads exactly those bytes, never the rewrite
    with warnings.catch_warnings():  # deduplicated onto the first save when that succeeded
        warnings.simplefilter("ignore", ln.KeyNotSavedWarning)
        again = ln.Artifact(make_file(old, name="again.bin"), key="data/again.bin").save()
    assert Path(again.cache()).read_bytes() == old
    now = ln.Artifact(path, key="data/rewritten.bin").save()
    assert Path(now.cache()).read_bytes() == new
    assert ln.check(deep=True).is_consistent


@pytest.fixture
def s3_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    backend = make_backend("sqlite-s3", tmp_path, request)
    ln.init(storage=backend.storage)
    return backend


@pytest.mark.parametrize("size", [1000, 2 * PART + 7])
def test_s3_requests_carry_a_checksum(s3_backend, make_file, monkeypatch, size):
    """Each PUT (and each part) carries a CRC32 the server checks and stores with the object."""
    backend = s3_backend
    monkeypatch.setattr(multipart, "PART_SIZE", PART)
    content = os.urandom(size)
    artifact = ln.Artifact(make_file(content)).save()
    assert backend.s3 is not None
    head = backend.s3.client().head_object(
        Bucket=backend.bucket,
        Key=f"team/.lamindb/{artifact.uid}{artifact.suffix}",
        ChecksumMode="ENABLED",
    )
    assert head["ContentLength"] == size
    checksum = head.get("ChecksumCRC32")
    assert checksum, head
    if size <= PART:
        assert checksum == base64.b64encode(zlib.crc32(content).to_bytes(4, "big")).decode()
    assert Path(artifact.load()).read_bytes() == content


def test_dedup_onto_another_key_is_said_where_the_user_looks(backend, make_file):
    first = ln.Artifact(make_file(b"same bytes"), key="a.bin").save()
    recorder = RecordingCallback()
    with pytest.warns(ln.KeyNotSavedWarning, match=r"key 'b.bin' not saved.*key 'a.bin'"):
        report = ln.save([ln.Artifact(make_file(b"same bytes"), key="b.bin")], callback=recorder)
    [conflict] = report.key_conflicts
    assert (conflict.requested_key, conflict.kept_key, conflict.uid) == (
        "b.bin",
        "a.bin",
        first.uid,
    )
    assert conflict.artifact.uid == first.uid and report.deduplicated == [conflict.artifact]
    [(_, state, detail)] = [e for e in recorder.events if e[1].is_final]
    assert state == ItemState.DEDUPLICATED and "'b.bin'" in detail and "'a.bin'" in detail
    assert "keys not saved 1" in report.summary()
    # same key, or no key asked for: nothing was lost, nothing to say
    with warnings.catch_warnings():
        warnings.simplefilter("error", ln.KeyNotSavedWarning)
        assert ln.Artifact(make_file(b"same bytes"), key="a.bin").save().uid == first.uid
        assert ln.Artifact(make_file(b"same bytes")).save().uid == first.uid


def test_from_dir_with_identical_files_names_every_key_not_saved(backend, tmp_path):
    folder = tmp_path / "runs"
    for run in ("r1", "r2", "r3"):
        (folder / run).mkdir(parents=True)
        (folder / run / "DONE").write_bytes(b"")
        (folder / run / "params.json").write_text('{"lr": 0.1}')
        (folder / run / "result.txt").write_text(f"result of {run}")
    with pytest.warns(ln.KeyNotSavedWarning) as caught:
        report = ln.save(ln.Artifact.from_dir(folder, key="runs"))
    pairs = {(c.requested_key, c.kept_key) for c in report.key_conflicts}
    assert pairs == {
        ("runs/r2/DONE", "runs/r1/DONE"),
        ("runs/r3/DONE", "runs/r1/DONE"),
        ("runs/r2/params.json", "runs/r1/params.json"),
        ("runs/r3/params.json", "runs/r1/params.json"),
    }
    message = str(caught[0].message)
    assert all(k in message for pair in pairs for k in pair), message
    assert len(report.saved) == 5 and len(report.deduplicated) == 4
    assert ln.check().is_consistent


def test_same_content_as_a_trashed_artifact_gives_a_visible_one(backend, make_file):
    content = b"thrown away, then wanted again"
    trashed = ln.Artifact(make_file(content), key="keep/me.txt").save()
    trashed.delete()
    again = ln.Artifact(make_file(content), key="keep/me.txt").save()
    assert again.status == "committed" and not again.is_trashed and again.is_latest
    assert again.key == "keep/me.txt" and again.uid != trashed.uid
    assert [a.uid for a in ln.Artifact.filter(key="keep/me.txt")] == [again.uid]
    assert ln.Artifact.get("keep/me.txt").uid == again.uid
    assert Path(ln.Artifact.get("keep/me.txt").cache()).read_bytes() == content
    # under another key too: visible under the key asked for
    other = ln.Artifact(make_file(b"also trashed"), key="x/old.txt").save()
    other.delete()
    moved = ln.Artifact(make_file(b"also trashed"), key="x/new.txt").save()
    assert ln.Artifact.get("x/new.txt").uid == moved.uid and not moved.is_trashed
    trashed.restore()  # both stay loadable
    assert Path(trashed.cache()).read_bytes() == content
    assert ln.check(deep=True).is_consistent


def test_a_uid_and_version_are_never_issued_twice(backend, make_file):
    v1 = ln.Artifact(make_file(b"one"), key="run/model.bin").save()
    v2 = ln.Artifact(make_file(b"two"), key="run/model.bin").save()
    recorded, stale = v2.uid, ln.Artifact.get(v2.uid)
    v2.delete(permanent=True)
    v3 = ln.Artifact(make_file(b"three"), key="run/model.bin").save()
    assert (v3.version, v3.uid[:16]) == (3, v1.uid[:16]) and v3.uid != recorded
    with pytest.raises(ln.NotFoundError):
        ln.Artifact.get(recorded)
    with pytest.raises(ln.NotFoundError, match=f"{recorded}.*deleted permanently"):
        stale.load()
    # even with the whole family gone, the versions go on
    for artifact in ln.Artifact.filter(key="run/model.bin"):
        artifact.delete(permanent=True)
    v4 = ln.Artifact(make_file(b"four"), key="run/model.bin").save()
    assert v4.version == 4 and v4.uid not in {v1.uid, recorded, v3.uid}
    assert Path(ln.Artifact.get("run/model.bin").cache()).read_bytes() == b"four"
    # a failed save gives its version back: the retry keeps its uid
    backend.deny_writes()
    retry = ln.Artifact(make_file(b"five"), key="run/model.bin")
    with pytest.raises(ln.SaveError):
        retry.save()
    uid = retry.uid
    backend.allow_writes()
    assert retry.save().uid == uid and retry.version == 5
    assert ln.check(deep=True).is_consistent


def test_new_version_keeps_the_description(backend, make_file):
    key = "tables/t.csv"
    v1 = ln.Artifact(make_file(b"1"), key=key, description="counts per gene").save()
    v2 = ln.Artifact(make_file(b"2"), key=key).save()
    assert (v1.description, v2.description) == ("counts per gene", "counts per gene")
    v3 = ln.Artifact(make_file(b"3"), key=key, description="normalised").save()
    v4 = ln.Artifact(make_file(b"4"), key=key).save()
    assert (v3.description, v4.description) == ("normalised", "normalised")
    assert ln.Artifact.get(key).description == "normalised"


def test_filter_first_is_the_latest_version(backend, make_file):
    key = "runs/metrics.json"
    versions = [ln.Artifact(make_file(bytes([i])), key=key).save() for i in range(3)]
    assert ln.Artifact.filter(key=key).first().uid == versions[-1].uid
    assert [a.uid for a in ln.Artifact.filter(key=key).all()] == [a.uid for a in versions]
    assert [a.uid for a in ln.Artifact.filter(key=key).latest_version()] == [versions[-1].uid]
    versions[-1].delete()  # trashed: the previous version is the one under the key
    assert ln.Artifact.filter(key=key).first().uid == versions[1].uid


def test_keys_are_one_spelling_in_unicode(backend, make_file):
    composed, decomposed = "caf\u00e9/t.txt", "cafe\u0301/t.txt"
    assert composed != decomposed
    v1 = ln.Artifact(make_file(b"1"), key=composed).save()
    v2 = ln.Artifact(make_file(b"2"), key=decomposed).save()
    assert v1.key == v2.key == composed and (v1.version, v2.version) == (1, 2)
    assert ln.Artifact.get(decomposed).uid == v2.uid
    assert ln.Artifact.filter(key=decomposed).count() == 2
    assert ln.Artifact.filter(key__startswith="cafe\u0301/").count() == 2
    assert ln.Artifact.filter(key__in=[decomposed], is_latest=True).first().uid == v2.uid
    for space in ("\u00a0", "\u2003", "\u3000", "\u202f"):
        key = f"my{space}data/x.txt"
        with pytest.raises(ln.ValidationError, match=f"U\\+{ord(space):04X}") as error:
            ln.Artifact(make_file(b"3"), key=key)
        assert repr(key) in str(error.value)
    with pytest.raises(ln.ValidationError, match="U\\+00A0"):
        ln.Artifact.from_dir(make_file(b"4").parent, key="a\u00a0b")
    assert ln.Artifact(make_file(b"5"), key="my data/x.txt").key == "my data/x.txt"


def test_stored_files_are_read_only(backend, make_file):
    """Editing what ``load()`` returns in place would change an artifact unseen; copy first."""
    import shutil
    import subprocess
    import sys

    from tests.support.servers import without_dac_override

    artifact = ln.Artifact(make_file(b"precious"), key="ro/data.txt").save()
    path = Path(artifact.load())
    assert path.stat().st_mode & 0o222 == 0, oct(path.stat().st_mode)
    edit = [sys.executable, "-c", f"open({str(path)!r}, 'r+b').write(b'X')"]
    denied = subprocess.run(without_dac_override(edit), capture_output=True, text=True)
    assert denied.returncode != 0 and "Permission denied" in denied.stderr
    editable = make_file(b"", name="editable.txt")
    shutil.copyfile(path, editable)  # what the README says: an editable copy
    editable.write_bytes(editable.read_bytes() + b" edited")
    assert Path(ln.Artifact.get("ro/data.txt").load()).read_bytes() == b"precious"
    artifact.delete(permanent=True)  # delete (and repair) still remove read-only objects
    assert backend.object_names() == [] and ln.check().is_consistent


def test_cli_ls_limit_and_save_folder(backend, tmp_path, capsys):
    from lamin_nb import cli

    folder = tmp_path / "results"
    (folder / "plots").mkdir(parents=True)
    (folder / "table.csv").write_text("a,b\n1,2\n")
    (folder / "plots" / "fig.svg").write_text("<svg/>")
    assert cli.main(["save", str(folder)]) == 0
    assert sorted(a.key for a in ln.Artifact.filter()) == [
        "results/plots/fig.svg",
        "results/table.csv",
    ]
    more = tmp_path / "more"
    (more / "sub").mkdir(parents=True)
    (more / "sub" / "a.txt").write_text("a")
    (tmp_path / "b.txt").write_text("b")
    assert cli.main(["save", str(more / "sub"), str(tmp_path / "b.txt"), "--key", "k"]) == 0
    assert {a.key for a in ln.Artifact.filter(key__startswith="k/")} == {"k/sub/a.txt", "k/b.txt"}
    capsys.readouterr()
    for bad in ("-1", "0"):
        with pytest.raises(SystemExit) as exited:
            cli.main(["ls", "--limit", bad])
        assert exited.value.code == 2
        assert "--limit" in capsys.readouterr().err
    assert cli.main(["ls", "--limit", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[-1] == "4 artifact(s)"


@pytest.mark.parametrize("backend", ["sqlite-local", "pg-local"], indirect=True)
def test_object_replaced_by_a_folder_fails_load(backend):
    import pandas as pd

    artifact = ln.Artifact.from_df(pd.DataFrame({"x": [1, 2]}), key="t.parquet").save()
    stored = Path(artifact.cache())
    stored.unlink()
    stored.mkdir()
    with pytest.raises(ln.IntegrityError, match="is a folder"):
        ln.Artifact.get("t.parquet").load()
    assert ln.check().mismatched or ln.check().missing or not ln.check().is_consistent
