"""``ln.check`` and ``lamin-nb check`` on every backend combination (DESIGN §4, I1 and I2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import lamin_nb as ln
from lamin_nb import cli
from tests.support.crashes import child_env, run_child, start_child, wait_until_stopped
from tests.support.storage_ops import paused_save, raw_delete, raw_put, raw_put_bucket_root

STRAY_UID = "Zz" * 10  # looks like an uid, but no row has it


def obj(artifact: ln.Artifact) -> str:
    return f".lamindb/{artifact.uid}{artifact.suffix}"


def test_consistent_instance(backend, make_file):
    saved = [ln.Artifact(make_file(), key=f"c/{i}.bin").save() for i in range(3)]
    saved[0].delete()  # a trashed artifact keeps its object: still consistent
    report = ln.check()
    assert report.is_consistent
    assert (report.n_ok, report.n_rows, report.n_objects) == (3, 3, 3)
    assert not (report.missing or report.orphans or report.mismatched or report.pending)
    assert "storage and database are consistent: 3 ok" in report.summary()


def test_missing_object(backend, make_file):
    keep = ln.Artifact(make_file(), key="c/keep.bin").save()
    lost = ln.Artifact(make_file(), key="c/lost.bin").save()
    raw_delete(backend, obj(lost))
    report = ln.check()
    assert not report.is_consistent
    assert [(m.uid, m.key) for m in report.missing] == [(lost.uid, "c/lost.bin")]
    assert report.n_ok == 1 and "1 missing" in report.summary()
    assert ln.Artifact.get(keep.uid).status == "committed"  # check changes nothing


def test_orphans_inside_the_managed_prefix_only(backend, make_file):
    ln.Artifact(make_file()).save()
    raw_put(backend, ".lamindb/stray.bin", b"nobody's")
    raw_put(backend, f".lamindb/{STRAY_UID}.bin.0badf00d.tmp", b"an upload whose row is gone")
    raw_put(backend, ".lamindb/sub/deeper.txt", b"nested")
    raw_put(backend, "beside-the-managed-prefix.txt", b"user data")
    raw_put(backend, ".lamindb-old/x.bin", b"a sibling folder with a similar name")
    raw_put_bucket_root(backend, "outside-root.txt", b"not ours")
    report = ln.check()
    assert not report.is_consistent
    assert sorted(o.name for o in report.orphans) == sorted(
        ["stray.bin", f"{STRAY_UID}.bin.0badf00d.tmp", "sub/deeper.txt"]
    )
    assert all(o.age_seconds >= 0 and o.size > 0 for o in report.orphans)
    assert report.n_ok == 1


def test_size_mismatch(backend, make_file):
    artifact = ln.Artifact(make_file(b"12345")).save()
    raw_put(backend, obj(artifact), b"123456")
    report = ln.check()
    assert [(m.uid, m.kind, m.expected, m.actual) for m in report.mismatched] == [
        (artifact.uid, "size", 5, 6)
    ]
    assert not report.is_consistent


def test_hash_mismatch_needs_deep(backend, make_file):
    artifact = ln.Artifact(make_file(b"abcdef")).save()
    other = ln.Artifact(make_file(b"untouched")).save()
    raw_put(backend, obj(artifact), b"abcdeX")  # same size, other bytes
    assert ln.check().is_consistent
    deep = ln.check(deep=True)
    assert [(m.uid, m.kind) for m in deep.mismatched] == [(artifact.uid, "hash")]
    assert deep.n_ok == 1 and deep.deep and not deep.is_consistent
    assert other.uid not in {m.uid for m in deep.mismatched}


def test_pending_in_flight_is_not_an_inconsistency(backend, make_file):
    artifact = ln.Artifact(make_file(), key="c/live.bin")
    with paused_save([artifact]) as outcome:
        report = ln.check()
        assert [(p.uid, p.expired, p.object_present) for p in report.pending] == [
            (artifact.uid, False, True)
        ]
        assert report.is_consistent and report.orphans == []
    assert "error" not in outcome
    assert ln.check().is_consistent and ln.check().n_ok == 1


def test_expired_pending_and_deleting_rows(backend, make_file):
    victim = ln.Artifact(make_file(), key="c/victim.bin").save()
    # a live deleter (frozen mid-delete), then a saver killed with its lease already over (in
    # this order: a process that connects finishes the leftovers of dead ones)
    live_delete = start_child({"op": "delete", "uid": victim.uid}, fault="mid_delete:stop")
    try:
        wait_until_stopped(live_delete.pid)
        killed = run_child(
            {"op": "save", "items": [[str(make_file()), "c/new.bin"]]},
            fault="after_upload:kill",
            lease_seconds=0,
        )
        assert killed.killed
        report = ln.check()
    finally:
        live_delete.kill()
        live_delete.communicate()
    assert [(p.key, p.expired, p.object_present) for p in report.pending] == [
        ("c/new.bin", True, True)
    ]
    assert [(d.uid, d.expired, d.object_present, d.owner_alive) for d in report.deleting] == [
        (victim.uid, False, True, True)
    ]
    assert not report.is_consistent and not report.missing and not report.orphans
    assert "1 pending" in report.summary()


def test_cli_check_exit_codes_and_json(backend, make_file, capsys):
    artifact = ln.Artifact(make_file(b"abcdef")).save()
    assert cli.main(["check"]) == 0
    assert "consistent: 1 ok" in capsys.readouterr().out
    raw_put(backend, obj(artifact), b"abcdeX")
    assert cli.main(["check", "--json"]) == 0
    assert cli.main(["check", "--deep", "--json"]) == 1
    outputs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["is_consistent"] for o in outputs] == [True, False]
    assert outputs[1]["mismatched"][0]["kind"] == "hash"
    raw_put(backend, ".lamindb/stray.bin", b"x")
    assert cli.main(["check"]) == 1
    assert "orphans: stray.bin" in capsys.readouterr().out


def test_check_argument(backend):
    with pytest.raises(TypeError):
        ln.check(deep="yes")


@pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True)
def test_lamin_nb_check_command(backend, make_file):
    """The installed console script, in its own process, as a user or a cron job runs it."""
    command = [str(Path(sys.executable).with_name("lamin-nb")), "check", "--json"]
    ln.Artifact(make_file()).save()
    done = subprocess.run(command, env=child_env(), capture_output=True, text=True)
    assert done.returncode == 0 and json.loads(done.stdout)["n_ok"] == 1
    raw_put(backend, ".lamindb/stray.bin", b"x")
    done = subprocess.run(command, env=child_env(), capture_output=True, text=True)
    assert done.returncode == 1 and json.loads(done.stdout)["orphans"][0]["name"] == "stray.bin"
