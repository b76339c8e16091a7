"""A process never waits for itself: reservations its own undo could not remove are reclaimed.

The undo is made impossible for real: PostgreSQL refuses connections (``ALLOW_CONNECTIONS
false`` plus terminated backends, for this test's database only) when the save commits, so
its pending rows stay behind, owned by this very process. Once the database is back, ``check``
calls them abandoned and the same cell, run again, finishes them instead of waiting.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import lamin_nb as ln
from lamin_nb.core import save as save_protocol
from lamin_nb.core.callbacks import ItemState, RecordingCallback
from tests.hardening.test_db_faults import OnState, artifacts, make_files
from tests.support.faults_env import allow_connections, assert_clean, terminate_lamin_backends


@pytest.fixture
def pg_local(tmp_path: Path, pg_url: str) -> str:
    ln.init(storage=str(tmp_path / "storage"), db=pg_url)
    return pg_url


def test_own_abandoned_reservations_are_reclaimed_not_waited_for(
    tmp_path: Path, pg_local: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(save_protocol, "WAIT_FOR_OTHERS_SECONDS", 20.0)  # a wait fails, never hangs
    paths = make_files(tmp_path / "during", 4, "during")

    def outage() -> None:
        allow_connections(pg_local, False)
        terminate_lamin_backends(pg_local)

    try:
        with pytest.raises(ln.SaveError):
            ln.save(artifacts(paths, "during"), callback=OnState(ItemState.COMMITTING, outage))
    finally:
        allow_connections(pg_local, True)

    report = ln.check()
    assert len(report.pending) == 4 and not report.is_consistent, repr(report)
    assert all(p.owner_alive is False for p in report.pending)
    assert "owner not alive" in repr(report)
    plan = ln.repair()  # within the grace period, yet planned: nobody will finish them
    assert [a.kind for a in plan.actions] == ["roll back pending"] * 4, repr(plan)

    events = RecordingCallback()  # the same cell again: new artifacts, same files and keys
    again = artifacts(paths, "during")
    ln.save(again, callback=events)
    assert not any(state is ItemState.WAITING for _, state, _ in events.events)
    assert [a.version for a in again] == [1] * 4  # the abandoned versions were rolled back
    assert_clean([a.uid for a in again])
