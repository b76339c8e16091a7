"""Crash a real child process at each fault point, then check, repair and check again.

A point *held* when: the child died at that point (SIGKILL), I1 and I2 held right after the
crash, repair ran without errors, I1-I3 held afterwards (deep check: every hash re-read), and
the artifact ended where the protocol says (an interrupted save is gone, a committed one is
complete, an interrupted delete is finished).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import describe
from .scratch import Scratch

SAVE_POINTS = ("after_reserve", "mid_upload", "after_upload", "before_commit", "after_commit")
DELETE_POINTS = ("mid_delete", "after_object_delete")
POINTS = SAVE_POINTS + DELETE_POINTS
FILE_SIZE = 64 * 1024
CHILD_TIMEOUT = 300


@dataclass
class Outcome:
    name: str
    held: bool
    detail: str
    problems: list[str] = field(default_factory=list)
    testable: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.name,
            "held": self.held,
            "testable": self.testable,
            "detail": self.detail,
            "problems": self.problems,
        }


def invariant_problems(report: Any, when: str) -> list[str]:
    """I1 and I2 as ``ln.check`` sees them (deep: sizes and hashes)."""
    found = []
    bad = [m.name for m in report.missing] + [f"{m.name} ({m.kind})" for m in report.mismatched]
    if bad:
        found.append(f"I1 violated {when}: committed row(s) without their object: {', '.join(bad)}")
    if report.orphans:
        names = ", ".join(o.name for o in report.orphans)
        found.append(f"I2 violated {when}: object(s) without a row: {names}")
    return found


def what_was_left(report: Any) -> str:
    parts = []
    for label, rows in (("pending", report.pending), ("deleting", report.deleting)):
        if rows:
            with_object = sum(1 for r in rows if r.object_present)
            parts.append(f"{len(rows)} {label} row(s), {with_object} with an object")
    return ", ".join(parts) or "no rows in flight"


def run_point(scratch: Scratch, point: str) -> Outcome:
    import lamin_nb as ln

    key = f"selftest/{point}.bin"
    source = scratch.work / f"{point}.bin"
    source.write_bytes(os.urandom(FILE_SIZE))
    if point in DELETE_POINTS:
        args = ["delete", ln.Artifact(source, key=key).save().uid]
    else:
        args = ["save", str(source), key]
    problems = _crash_child(scratch, point, args)
    before = ln.check(deep=True)
    problems += invariant_problems(before, "after the crash")
    plan = ln.repair(dry_run=False, grace_seconds=0)
    problems += [
        f"repair could not {a.kind} {a.target}: {a.error}" for a in plan.actions if a.error
    ]
    after = ln.check(deep=True)
    problems += invariant_problems(after, "after repair")
    if after.pending or after.deleting:
        problems.append(f"I3 violated: {what_was_left(after)} after repair")
    problems += _end_state(point, key, source)
    detail = f"crash left {what_was_left(before)}; {plan.summary()}"
    return Outcome(point, not problems, detail, problems)


def _crash_child(scratch: Scratch, point: str, args: list[str]) -> list[str]:
    env = scratch.child_env(LAMIN_NB_FAULT=f"{point}:kill")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "lamin_nb.benchlib.child", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        return [f"the child did not reach {point} within {CHILD_TIMEOUT} s"]
    if done.returncode == -signal.SIGKILL:
        return []
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return [f"the child was not killed at {point} (exit code {done.returncode}: {tail})"]


def _end_state(point: str, key: str, source: Path) -> list[str]:
    import lamin_nb as ln

    found = ln.Artifact.filter(key=key).all()
    if point == "after_commit":
        if len(found) != 1:
            return [f"the committed save is not visible ({len(found)} artifact(s) under {key})"]
        if Path(found[0].cache()).read_bytes() != source.read_bytes():
            return [f"the committed artifact {found[0].uid} does not hold the saved bytes"]
        return []
    if found:
        what = (
            "interrupted delete was not finished"
            if point in DELETE_POINTS
            else "interrupted save is visible"
        )
        return [f"the {what}: {found[0].uid} under {key}"]
    return []


def save_baseline(scratch: Scratch) -> list[tuple[str, bytes]]:
    """Artifacts that exist before any crash; they must come through every point unchanged."""
    import lamin_nb as ln

    kept = []
    for i in range(2):
        data = os.urandom(4096 + i)
        path = scratch.work / f"baseline{i}.bin"
        path.write_bytes(data)
        kept.append((ln.Artifact(path, key=f"selftest/baseline{i}.bin").save().uid, data))
    return kept


def check_baseline(baseline: list[tuple[str, bytes]]) -> Outcome:
    import lamin_nb as ln

    problems = []
    for uid, data in baseline:
        try:
            artifact = ln.Artifact.get(uid)
            if Path(artifact.cache()).read_bytes() != data:
                problems.append(f"{uid} changed")
        except Exception as exc:  # noqa: BLE001 - reported as a failed check
            problems.append(f"{uid}: {describe(exc)}")
    detail = f"{len(baseline) - len(problems)} of {len(baseline)} intact"
    return Outcome("earlier artifacts", not problems, detail, problems)
