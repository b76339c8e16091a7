"""Step 1 of the save protocol: validate everything first; and what a save runs on (its
instance, its number of workers). Nothing is written before these checks pass."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from typing import Any

from .errors import ValidationError
from .instance import Instance, current
from .record import ArtifactRecord, item_label
from .validate import MAX_WORKERS, check_description, check_key, check_workers

WORKERS_ENV = "LAMIN_NB_MAX_WORKERS"


def check_records(records: Any) -> list[ArtifactRecord]:
    """Everything is validated before anything is written; a non-artifact is a TypeError."""
    if isinstance(records, ArtifactRecord):
        records = [records]
    if isinstance(records, (str, bytes)) or not isinstance(records, Iterable):
        raise TypeError(f"ln.save expects a list of artifacts, not {type(records).__name__}")
    artifacts: list[ArtifactRecord] = []
    seen: set[int] = set()
    for index, record in enumerate(records):
        if not isinstance(record, ArtifactRecord):
            raise TypeError(
                f"item {index} is a {type(record).__name__} ({_short(record)}), not an Artifact; "
                "nothing was saved"
            )
        if id(record) not in seen:
            seen.add(id(record))
            artifacts.append(record)
    for index, artifact in enumerate(artifacts):
        if not artifact.is_saved:
            try:
                _check_unsaved(artifact)
            except ValidationError as exc:
                raise ValidationError(
                    f"item {index} ({item_label(artifact)}): {exc}; nothing was saved"
                ) from exc
    return artifacts


def _check_unsaved(artifact: ArtifactRecord) -> None:
    """What may have changed since the artifact was built: its fields, and its source file."""
    artifact.key = check_key(artifact.key)
    check_description(artifact.description)
    if artifact.source is None:
        raise ValidationError("it has no content to save")
    try:
        # one open + fstat: the full checks ran at construction and the path is resolved
        fd = os.open(artifact.source, os.O_RDONLY)
        try:
            mode = os.fstat(fd).st_mode
        finally:
            os.close(fd)
    except FileNotFoundError as exc:
        raise ValidationError(f"file {str(artifact.source)!r} does not exist") from exc
    except OSError as exc:
        raise ValidationError(
            f"file {str(artifact.source)!r} cannot be read: {exc.strerror}"
        ) from exc
    if not stat.S_ISREG(mode):
        raise ValidationError(f"{str(artifact.source)!r} is no longer a regular file")


def target_instance(artifacts: list[ArtifactRecord]) -> Instance:
    """The current instance; for artifacts that are all saved in one instance, that one (a
    saved artifact acts on its own instance, even after another became current)."""
    homes = {h.settings.uid: h for h in (a.home() for a in artifacts if a.is_saved)}
    if len(homes) == 1 and all(a.is_saved for a in artifacts):
        return next(iter(homes.values()))
    return current()


def _short(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not hide the real error
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."


def default_workers(inst: Instance) -> int:
    """``LAMIN_NB_MAX_WORKERS`` if set; else enough threads to overlap local flushes, and
    more for S3, where each worker mostly waits on the network."""
    configured = os.environ.get(WORKERS_ENV, "").strip()
    if configured:
        try:
            return check_workers(int(configured)) or 1
        except ValueError as exc:
            raise ValidationError(
                f"{WORKERS_ENV} must be a whole number between 1 and "
                f"{MAX_WORKERS}, not {configured!r}"
            ) from exc
    return inst.storage.default_workers
