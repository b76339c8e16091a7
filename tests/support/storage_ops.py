"""Going behind lamin_nb's back: raw object writes/deletes, and a save paused mid-flight."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lamin_nb.core.callbacks import ItemState, SaveCallback


def _s3_key(backend: Any, rel: str) -> str:
    prefix = backend.storage.removeprefix(f"s3://{backend.bucket}").strip("/")
    return f"{prefix}/{rel}".lstrip("/")


def raw_put(backend: Any, rel: str, data: bytes) -> None:
    """Write ``rel`` (relative to the storage root) without lamin_nb."""
    if backend.is_s3:
        backend.s3.client().put_object(Bucket=backend.bucket, Key=_s3_key(backend, rel), Body=data)
    else:
        path = Path(backend.storage, rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def raw_put_bucket_root(backend: Any, key: str, data: bytes) -> None:
    """Outside the storage root entirely: the bucket root (S3) or the folder above (local)."""
    if backend.is_s3:
        backend.s3.client().put_object(Bucket=backend.bucket, Key=key, Body=data)
    else:
        Path(backend.storage).parent.joinpath(key).write_bytes(data)


def raw_exists_bucket_root(backend: Any, key: str) -> bool:
    if backend.is_s3:
        return key in backend.s3.keys(backend.bucket, key)
    return Path(backend.storage).parent.joinpath(key).exists()


def raw_delete(backend: Any, rel: str) -> None:
    if backend.is_s3:
        backend.s3.client().delete_object(Bucket=backend.bucket, Key=_s3_key(backend, rel))
    else:
        Path(backend.storage, rel).unlink()


def raw_read(backend: Any, rel: str) -> bytes | None:
    if backend.is_s3:
        client = backend.s3.client()
        try:
            found = client.get_object(Bucket=backend.bucket, Key=_s3_key(backend, rel))
        except client.exceptions.NoSuchKey:
            return None
        return found["Body"].read()
    path = Path(backend.storage, rel)
    return path.read_bytes() if path.exists() else None


class _PauseBeforeCommit(SaveCallback):
    def __init__(self) -> None:
        self.reached = threading.Event()
        self.release = threading.Event()

    def state(self, index: int, state: ItemState, detail: str = "") -> None:
        if state == ItemState.COMMITTING:
            self.reached.set()
            self.release.wait(120)


@contextmanager
def paused_save(artifacts: list[Any]) -> Iterator[dict[str, Any]]:
    """A live save in another thread, held after its upload and before its commit.

    Yields a dict that holds ``report`` (or ``error``) once the save has finished after the
    block exits.
    """
    import lamin_nb as ln

    pause = _PauseBeforeCommit()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["report"] = ln.save(artifacts, callback=pause)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert pause.reached.wait(60), "the save never reached its commit"
        yield outcome
    finally:
        pause.release.set()
        thread.join(120)
