"""What the REST routes do, as plain functions run in worker threads (no tornado here).

The server shows one instance by default and any known one on request: ``Registry`` opens
instances without making them current, so ``ln.init`` of another instance in a kernel that
shares the settings folder never changes what the server reports. Protocols that act on "the
current instance" (save, trash, restore, repair) run inside ``bound(instance)``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lamin_nb.core.errors import InstanceError

if TYPE_CHECKING:
    from lamin_nb.core.instance import Instance

NO_INSTANCE = (
    "no lamin_nb instance: run ln.init(storage=...) in this environment "
    "(LAMIN_NB_HOME of the Jupyter server)"
)


class Registry:
    """The instances this server shows: a default (configured, else pinned) and any known one."""

    def __init__(self, configured: str | None = None) -> None:
        self.configured = configured or None
        self.pinned: str | None = None
        self._open: dict[str, tuple[float, Instance]] = {}
        self._lock = threading.Lock()

    def pin(self) -> str | None:
        """The default: the configured name, else the current instance when first seen."""
        from lamin_nb.core.settings import current_name

        if self.configured:
            return self.configured
        if self.pinned is None:
            self.pinned = current_name()
        return self.pinned

    def get(self, name: str | None = None) -> Instance:
        from lamin_nb.core.instance import open_instance
        from lamin_nb.core.settings import home, validate_name

        name = name or self.pin()
        if name is None:
            raise InstanceError(NO_INSTANCE)
        path = home() / "instances" / validate_name(name) / "instance.json"
        try:
            stamp = path.stat().st_mtime
        except FileNotFoundError:
            raise InstanceError(
                f"no instance named {name!r} in this server's settings folder; "
                "run ln.init(storage=..., name=...) or pick a known instance"
            ) from None
        with self._lock:
            cached = self._open.get(name)
            if cached is not None and cached[0] == stamp:
                return cached[1]
            instance = open_instance(name)
            self._open[name] = (stamp, instance)
            if cached is not None:
                cached[1].close()
            return instance

    def close(self) -> None:
        with self._lock:
            for _, instance in self._open.values():
                instance.close()
            self._open.clear()


def instance_info(registry: Registry, name: str | None) -> dict[str, Any]:
    """The shown instance (or an empty state with the line to run) and the known ones."""
    from lamin_nb.core.browse import describe_instance
    from lamin_nb.core.settings import current_name, known_names

    default = registry.pin()
    known = known_names()
    if not (name or default):
        return {"instance": None, "default": None, "known": known, "hint": NO_INSTANCE}
    inst = registry.get(name)
    return {
        "instance": describe_instance(inst.settings),
        "default": default,
        "known": known,
        "current_in_kernels": current_name(),
    }


def list_artifacts(
    registry: Registry,
    name: str | None,
    limit: int,
    offset: int,
    key_prefix: str | None,
    trashed: bool = False,
) -> dict[str, Any]:
    from lamin_nb.core.browse import page

    inst = registry.get(name)
    total, rows = page(inst, key_prefix, limit, offset, trashed)
    return {
        "instance": inst.name,
        "total": total,
        "limit": limit,
        "offset": offset,
        "key_prefix": key_prefix,
        "trashed": trashed,
        "artifacts": rows,
    }


def artifact_detail(registry: Registry, name: str | None, uid: str) -> dict[str, Any]:
    from lamin_nb.core.browse import versions

    inst = registry.get(name)
    found = versions(inst, uid)
    (artifact,) = [row for row in found if row["uid"] == uid]
    return {"instance": inst.name, "artifact": artifact, "versions": found}


def set_trashed(registry: Registry, name: str | None, uid: str, trashed: bool) -> dict[str, Any]:
    """Trash or restore through the core's delete protocol, on the shown instance."""
    from lamin_nb.core.artifact import Artifact
    from lamin_nb.core.errors import NotFoundError
    from lamin_nb.core.instance import bound

    inst = registry.get(name)
    with bound(inst):
        artifact = Artifact.filter(uid=uid, is_trashed=not trashed).first()
        if artifact is None:
            where = "outside the trash" if trashed else "in the trash"
            raise NotFoundError(f"no saved artifact {uid[:40]!r} {where}")
        if trashed:
            artifact.delete(permanent=False)
        else:
            artifact.restore()
    return artifact_detail(registry, name, uid)


@dataclass
class CheckState:
    """The last full check of one instance, reused by the status bar between checks."""

    summary: dict[str, Any] | None = None
    at: float = 0.0  # time.monotonic() when it finished
    tried: float | None = None  # time.monotonic() when the last one started (failed ones too)
    running: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class Checks:
    """Full checks on demand, and at most one per ``interval`` seconds for the status bar."""

    def __init__(self, interval: float, full_every: float = 3600.0) -> None:
        self.interval = interval
        self.full_every = full_every  # background refreshes are incremental in between
        self._states: dict[str, CheckState] = {}
        self._lock = threading.Lock()

    def state(self, name: str) -> CheckState:
        with self._lock:
            return self._states.setdefault(name, CheckState())

    def record(self, name: str, report: Any) -> None:
        state = self.state(name)
        summary = {
            "checked_at": report.checked_at.isoformat() + "Z",
            "deep": report.deep,
            "is_consistent": report.is_consistent,
            "n_ok": report.n_ok,
            "missing": report.count("missing"),
            "orphans": report.count("orphans"),
            "mismatched": report.count("mismatched"),
            "since": None if report.since is None else report.since.isoformat() + "Z",
            "not_looked_for": report.not_looked_for,
            "stuck": sum(1 for r in report.pending + report.deleting if r.expired),
        }
        with state.lock:
            state.summary, state.at = summary, time.monotonic()

    def due(self, name: str) -> bool:
        """True (and marks it running) when the status bar's slow check should run now."""
        state = self.state(name)
        with state.lock:
            now = time.monotonic()
            stale = state.tried is None or now - state.tried >= self.interval
            if state.running or not stale:
                return False
            state.running, state.tried = True, now
            return True

    def run(
        self, registry: Registry, name: str | None, deep: bool, since: str | None = None
    ) -> dict[str, Any]:
        """A check now: full, or with ``since="last"`` only what changed since the last full
        one (what the status bar's background refresh runs)."""
        from lamin_nb.core import incremental
        from lamin_nb.core.consistency import check

        inst = registry.get(name)
        if since == "last":  # only a full check finds objects written outside lamin_nb
            since = incremental.refresh_since(inst, self.full_every)
        state = self.state(inst.name)
        with state.lock:
            state.running, state.tried = True, time.monotonic()
        try:
            report = check(deep=deep, instance=inst, since=since)
        finally:
            with state.lock:
                state.running = False
        self.record(inst.name, report)
        return {"instance": inst.name, **report.to_dict()}


def status(registry: Registry, checks: Checks, name: str | None) -> dict[str, Any]:
    """One grouped count query plus the last full check's summary: what the status bar polls."""
    from lamin_nb.core.browse import status_counts

    inst = registry.get(name)
    state = checks.state(inst.name)
    with state.lock:
        summary, running = state.summary, state.running
    return {
        "instance": inst.name,
        "counts": status_counts(inst),
        "check": summary,
        "check_running": running,
    }


def repair(
    registry: Registry,
    checks: Checks,
    name: str | None,
    apply: bool,
    grace_seconds: float,
    mark_lost: bool,
) -> dict[str, Any]:
    from lamin_nb.core.instance import bound
    from lamin_nb.core.repair import repair as run_repair

    inst = registry.get(name)
    with bound(inst):
        plan = run_repair(dry_run=not apply, grace_seconds=grace_seconds, mark_lost=mark_lost)
    checks.record(inst.name, plan.after if plan.after is not None else plan.report)
    after = plan.after.to_dict() if plan.after is not None else None
    return {"instance": inst.name, **plan.to_dict(), "after": after}


def list_transfers(registry: Registry, name: str | None) -> dict[str, Any]:
    """``ln.uploads()`` of the shown instance: the large uploads started and not finished,
    each with ``can_resume`` and ``can_discard`` (the core's rule)."""
    from lamin_nb.core.transfers import uploads

    inst = registry.get(name)
    return {"instance": inst.name, "transfers": [u.to_dict() for u in uploads(inst)]}


def resume_check(registry: Registry, name: str | None, uid: str) -> tuple[str, str | None, Path]:
    """Before a Resume job is queued: the instance's name, the upload's key and its source
    file, or why it cannot be resumed now (the core's errors)."""
    from lamin_nb.core.transfers import resume_source

    inst = registry.get(name)
    source, key = resume_source(uid, inst)
    return inst.name, key, source


def discard_transfer(registry: Registry, name: str | None, uid: str) -> dict[str, Any]:
    """Abort one interrupted upload now (``discard_upload``): its parts and pending row go."""
    from lamin_nb.core.transfers import discard_upload, find_upload

    inst = registry.get(name)
    key = find_upload(uid, inst).key
    freed = discard_upload(uid, inst)
    return {"instance": inst.name, "uid": uid, "key": key, "freed_bytes": freed}
