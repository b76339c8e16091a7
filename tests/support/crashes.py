"""Helpers for tests with real second processes: run a child, then check I1-I3 from outside."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHILD = Path(__file__).with_name("child.py")
REPO = Path(__file__).resolve().parents[2]


@dataclass
class ChildResult:
    returncode: int
    output: dict[str, Any]
    stderr: str

    @property
    def killed(self) -> bool:
        return self.returncode == -signal.SIGKILL


def child_env(fault: str | None = None, lease_seconds: float | None = None) -> dict[str, str]:
    env = dict(os.environ)  # LAMIN_NB_HOME and the AWS settings of the test
    env.pop("LAMIN_NB_FAULT", None)
    # the checkout under test, whatever the venv's editable install points at right now
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    if fault is not None:
        env["LAMIN_NB_FAULT"] = fault
    if lease_seconds is not None:
        env["LAMIN_NB_LEASE_SECONDS"] = str(lease_seconds)
    return env


def start_child(
    spec: dict[str, Any], fault: str | None = None, lease_seconds: float | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), json.dumps(spec)],
        env=child_env(fault, lease_seconds),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish_child(proc: subprocess.Popen[str], timeout: float = 240) -> ChildResult:
    out, err = proc.communicate(timeout=timeout)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    return ChildResult(proc.returncode, json.loads(lines[-1]) if lines else {}, err)


def run_child(
    spec: dict[str, Any], fault: str | None = None, lease_seconds: float | None = None
) -> ChildResult:
    return finish_child(start_child(spec, fault, lease_seconds))


def wait_until_stopped(pid: int) -> None:
    """A child froze itself at a ``stop`` fault point (state T in /proc)."""
    import time

    for _ in range(1200):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat[stat.rindex(")") + 2] == "T":
            return
        time.sleep(0.1)
    raise AssertionError(f"child {pid} never reached its fault point")


def rows_by_status() -> dict[str, list[Any]]:
    """Every artifact row of the current instance, grouped by status (read directly)."""
    from sqlalchemy import select

    from lamin_nb.core.instance import current
    from lamin_nb.core.models import ArtifactRow

    grouped: dict[str, list[Any]] = {}
    with current().db.read() as session:
        for row in session.scalars(select(ArtifactRow).order_by(ArtifactRow.id)):
            grouped.setdefault(row.status, []).append(row)
    return grouped


def object_names() -> set[str]:
    from lamin_nb.core.instance import current

    return {info.name for info in current().storage.list_objects()}


def assert_i1_i2_i3() -> None:
    """No pending or deleting rows; committed rows and managed objects match one to one."""
    import lamin_nb as ln

    grouped = rows_by_status()
    assert set(grouped) <= {"committed", "lost"}, {k: len(v) for k, v in grouped.items()}
    committed = {f"{r.uid}{r.suffix}" for r in grouped.get("committed", [])}
    assert object_names() == committed
    report = ln.check()
    assert report.is_consistent, repr(report)
    assert not (report.pending or report.deleting or report.missing or report.orphans)
    assert report.n_ok == len(committed)
    assert_one_latest_per_key()


def assert_one_latest_per_key() -> None:
    """Exactly one latest per key: the highest committed, untrashed version."""
    by_key: dict[str, list[Any]] = {}
    for row in rows_by_status().get("committed", []):
        if row.key is not None and not row.is_trashed:
            by_key.setdefault(row.key, []).append(row)
    for key, versions in by_key.items():
        latest = [r.version for r in versions if r.is_latest]
        assert latest == [max(r.version for r in versions)], (key, latest)


def assert_damage_contained(report: Any) -> None:
    """After a crash: only pending/deleting rows and objects they account for (I1, I2 hold)."""
    assert report.missing == [], report.missing
    assert report.mismatched == [], report.mismatched
    assert report.orphans == [], report.orphans
