"""A writer that is gone is recognised at once; a wait on a live one is never silent.

Writers are real second processes (``tests/support/child.py``) killed with SIGKILL or frozen
with SIGSTOP at a fault point, with the default 600 s lease. The save in this process is
bounded to a short wait (``WAIT_FOR_OTHERS_SECONDS``), so waiting on a dead writer shows up as
a failure instead of a ten-minute hang.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

import lamin_nb as ln
from lamin_nb.core import owners
from lamin_nb.core import save as save_protocol
from lamin_nb.core.callbacks import ItemState, RecordingCallback
from lamin_nb.core.instance import current
from lamin_nb.core.models import ArtifactRow, utcnow
from tests.support.crashes import (
    assert_i1_i2_i3,
    rows_by_status,
    run_child,
    start_child,
    wait_until_stopped,
)

KEY = "runs/table.csv"


@pytest.fixture
def short_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(save_protocol, "WAIT_FOR_OTHERS_SECONDS", 20.0)


def killed_writer(path: Path, point: str = "mid_upload") -> ArtifactRow:
    """A child that reserved ``path`` under ``KEY`` and was SIGKILLed; its pending row."""
    result = run_child({"op": "save", "items": [[str(path), KEY]]}, fault=f"{point}:kill")
    assert result.killed, result
    (row,) = rows_by_status()["pending"]
    return row


def set_owner(uid: str, owner: str, lease_seconds: float | None = None) -> None:
    values: dict[str, object] = {"owner": owner}
    if lease_seconds is not None:
        values["lease_expires_at"] = utcnow() + timedelta(seconds=lease_seconds)
    with current().db.write() as session:
        session.execute(update(ArtifactRow).where(ArtifactRow.uid == uid).values(**values))


@pytest.mark.parametrize("backend", ["sqlite-local", "pg-s3"], indirect=True)
def test_rerun_after_a_killed_writer_neither_waits_nor_leaves_its_rows(
    backend, make_file, short_wait
):
    path = make_file(b"a,b\n1,2\n")
    dead = killed_writer(path)
    assert owners.is_dead(dead.owner)
    report = ln.check()
    assert not report.is_consistent and report.pending[0].owner_alive is False
    assert "owner not alive" in repr(report)

    events = RecordingCallback()
    artifact = ln.Artifact(path, key=KEY).save(callback=events)
    assert artifact.status == "committed"
    assert ItemState.WAITING not in events.states_of(0)
    assert "pending" not in rows_by_status()  # the dead writer's reservation was rolled back
    assert_i1_i2_i3()


def test_a_reused_pid_is_not_taken_for_the_writer(local_instance, make_file, short_wait):
    """The dead writer's pid now belongs to another live process: its start time differs."""
    path = make_file(b"reused pid")
    dead = killed_writer(path)
    sleeper = subprocess.Popen(["sleep", "300"])
    try:
        who = owners.parse(dead.owner)
        assert who is not None and who.start
        impostor = str(dataclasses.replace(who, pid=sleeper.pid))
        set_owner(dead.uid, impostor)
        assert owners.liveness(impostor) is owners.Liveness.DEAD
        ln.Artifact(path, key=KEY).save()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert_i1_i2_i3()


class KillOnWait(RecordingCallback):
    """Records the wait, then ends the writer it waits on (SIGKILL)."""

    def __init__(self, pid: int) -> None:
        super().__init__()
        self.pid = pid

    def state(self, index: int, state: ItemState, detail: str = "") -> None:
        super().state(index, state, detail)
        if state is ItemState.WAITING:
            os.kill(self.pid, signal.SIGKILL)


def test_a_wait_on_a_live_writer_says_on_whom_and_ends_when_it_dies(
    local_instance, make_file, short_wait, caplog
):
    path = make_file(b"same content, two writers")
    child = start_child({"op": "save", "items": [[str(path), KEY]]}, fault="after_reserve:stop")
    try:
        wait_until_stopped(child.pid)
        (row,) = rows_by_status()["pending"]
        assert owners.liveness(row.owner) is owners.Liveness.ALIVE
        events = KillOnWait(child.pid)
        ln.save([ln.Artifact(path, key=KEY)], callback=events)
    finally:
        child.kill()
        child.communicate()
    waits = [d for _, s, d in events.events if s is ItemState.WAITING]
    assert len(waits) == 1, events.events
    assert f"process {child.pid} on " in waits[0]
    assert "at most 20 s" in waits[0] and "ln.repair(dry_run=False, grace_seconds=0)" in waits[0]
    assert events.states_of(0)[-1] is ItemState.SAVED
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any(f"process {child.pid}" in m for m in said), said  # also in a terminal or log
    assert_i1_i2_i3()


def test_a_writer_elsewhere_is_waited_for_until_its_lease_ends(
    local_instance, make_file, monkeypatch
):
    monkeypatch.setattr(save_protocol, "WAIT_FOR_OTHERS_SECONDS", 120.0)
    path = make_file(b"writer on another host")
    row = killed_writer(path)
    who = owners.parse(row.owner)
    assert who is not None
    set_owner(row.uid, str(dataclasses.replace(who, host="elsewhere")), lease_seconds=4)
    report = ln.check()
    assert report.pending[0].owner_alive is None  # unknown: its lease decides
    events = RecordingCallback()
    ln.Artifact(path, key=KEY).save(callback=events)
    waits = [d for _, s, d in events.events if s is ItemState.WAITING]
    assert waits and "on elsewhere" in waits[0]
    ln.repair(dry_run=False)  # the other host's expired row
    assert_i1_i2_i3()
