"""``POST saves``: files and folders already on the Jupyter host, saved through the core.

A save is a job: the request answers at once with its id, the save runs in the server's write
worker, and ``GET saves/{id}`` shows per-item progress (the core's progress protocol, recorded
here) until the job is done. Paths are relative to the server root and never leave it.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lamin_nb.core.callbacks import ItemInfo, ItemState, SaveCallback

if TYPE_CHECKING:
    from lamin_nb.core.artifact import Artifact

    from .api import Registry

MAX_PATHS = 1000
KEPT_JOBS = 50
_ids = itertools.count(1)


class PathRefused(ValueError):
    """A path the caller may not save from (400)."""


def resolve(root: str, relative: Any, allow_hidden: bool) -> Path:
    """``relative`` inside the server root, symlinks resolved; anything else is refused."""
    if not isinstance(relative, str) or not relative.strip() or "\x00" in relative:
        raise PathRefused(f"paths must be non-empty strings, not {str(relative)[:80]!r}")
    target = inside_root(root, Path(root) / relative.lstrip("/"), allow_hidden, relative)
    if not target.exists():
        raise PathRefused(f"{relative[:200]!r} does not exist on the Jupyter host")
    if not (target.is_file() or target.is_dir()):
        raise PathRefused(f"{relative[:200]!r} is neither a file nor a folder")
    return target


def inside_root(root: str, path: Path, allow_hidden: bool, shown: str | None = None) -> Path:
    """``path`` with symlinks resolved, if it is inside the server root (and not hidden
    unless the contents manager allows hidden files); refused otherwise."""
    shown = (str(path) if shown is None else shown)[:200]
    base = Path(root).resolve()
    target = path.resolve()
    if target != base and base not in target.parents:
        raise PathRefused(f"{shown!r} is outside the server root")
    parts = target.relative_to(base).parts
    if not allow_hidden and any(part.startswith(".") for part in parts):
        raise PathRefused(f"{shown!r} is hidden (ContentsManager.allow_hidden is off)")
    return target


@dataclass
class Item:
    index: int
    label: str
    size: int | None
    state: str = ItemState.QUEUED.value
    detail: str = ""
    bytes: int = 0


@dataclass
class SaveJob(SaveCallback):
    """One ``POST saves``: its request, its items' progress and its outcome (thread-safe)."""

    instance: str
    paths: list[str]
    key_prefix: str | None
    description: str | None
    atomic: bool
    resume_of: str | None = None  # the uid of the interrupted upload this job resumes
    id: str = field(default_factory=lambda: str(next(_ids)))
    status: str = "queued"  # queued -> running -> done | failed
    items: list[Item] = field(default_factory=list)
    summary: str = ""
    error: str | None = None
    created_at: str = field(default_factory=lambda: _now())
    finished_at: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # -- the core's progress protocol ------------------------------------------------------

    def start(self, items: list[ItemInfo]) -> None:
        with self.lock:
            self.items = [Item(i.index, i.label, i.size) for i in items]

    def state_of(self, index: int) -> Item | None:
        return self.items[index] if 0 <= index < len(self.items) else None

    def state(self, index: int, state: ItemState, detail: str = "") -> None:
        with self.lock:
            item = self.state_of(index)
            if item is not None:
                item.state, item.detail = state.value, detail
                if state in (ItemState.UPLOADING, ItemState.HASHING):
                    item.bytes = 0

    def advance(self, index: int, nbytes: int) -> None:
        with self.lock:
            item = self.state_of(index)
            if item is not None:
                item.bytes += nbytes

    def finish(self, report: Any) -> None:
        with self.lock:
            self.summary = report.summary()

    # -- what the routes return --------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            items = [vars(item).copy() for item in self.items]
            counts: dict[str, int] = {}
            for item in items:
                counts[item["state"]] = counts.get(item["state"], 0) + 1
            return {
                "id": self.id,
                "instance": self.instance,
                "paths": self.paths,
                "key_prefix": self.key_prefix,
                "atomic": self.atomic,
                "resume_of": self.resume_of,
                "status": self.status,
                "summary": self.summary,
                "error": self.error,
                "created_at": self.created_at,
                "finished_at": self.finished_at,
                "counts": counts,
                "items": items,
            }


def _now() -> str:
    return datetime.now(timezone.utc).replace(tzinfo=None).isoformat() + "Z"


class Jobs:
    """The save jobs of this server process, newest kept (older finished ones forgotten)."""

    def __init__(self) -> None:
        self._jobs: dict[str, SaveJob] = {}
        self._lock = threading.Lock()

    def add(self, job: SaveJob) -> SaveJob:
        with self._lock:
            self._jobs[job.id] = job
            finished = [j for j in self._jobs.values() if j.status in ("done", "failed")]
            for old in finished[: max(0, len(self._jobs) - KEPT_JOBS)]:
                del self._jobs[old.id]
        return job

    def get(self, job_id: str) -> SaveJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def all(self) -> list[SaveJob]:
        with self._lock:
            return list(reversed(self._jobs.values()))


def run(job: SaveJob, registry: Registry, targets: list[Path]) -> None:
    """The job's body (write worker): artifacts from the paths, one ``ln.save`` call."""
    from lamin_nb.core.artifact import Artifact
    from lamin_nb.core.validate import key_under

    def build() -> list[Artifact]:
        artifacts: list[Artifact] = []
        for target in targets:
            key = key_under(job.key_prefix, target.name)
            if target.is_dir():
                artifacts += Artifact.from_dir(target, key=key, description=job.description)
            else:
                artifacts.append(Artifact(target, key=key, description=job.description))
        return artifacts

    _run(job, registry, build)


def run_resume(job: SaveJob, registry: Registry, uid: str) -> None:
    """The body of a Resume (write worker): the interrupted upload's source saved again under
    its key; the save takes the upload over and sends only the missing parts."""
    from lamin_nb.core.artifact import Artifact
    from lamin_nb.core.transfers import resume_source

    def build() -> list[Artifact]:
        source, key = resume_source(uid)  # asked again: it may have changed since the POST
        return [Artifact(source, key=key)]

    _run(job, registry, build)


def _run(job: SaveJob, registry: Registry, build: Callable[[], list[Artifact]]) -> None:
    from lamin_nb.core.errors import SaveError, describe
    from lamin_nb.core.instance import bound
    from lamin_nb.core.save import save

    job.status = "running"
    try:
        inst = registry.get(job.instance)
        # built inside bound(): a new version of a key takes its family's uid stem from the
        # instance, as in a kernel
        with bound(inst):
            save(build(), atomic=job.atomic, callback=job)
        job.status = "done"
    except SaveError as exc:
        job.error = describe(exc).splitlines()[0]
        job.status = "failed"
    except Exception as exc:  # noqa: BLE001 - the job reports why; the server keeps serving
        job.error = describe(exc)
        job.status = "failed"
    finally:
        job.finished_at = _now()


def targets_of(paths: Any, root: str, allow_hidden: bool) -> list[Path]:
    if not isinstance(paths, list) or not paths:
        raise PathRefused("paths must be a non-empty list of paths relative to the server root")
    if len(paths) > MAX_PATHS:
        raise PathRefused(f"at most {MAX_PATHS} paths per save, not {len(paths)}")
    return [resolve(root, p, allow_hidden) for p in paths]
