"""Chunked browser uploads (DESIGN section 11), staged on the Jupyter host's disk.

- ``POST uploads`` ``{name, size, key?, description?, instance?}``: 201 ``{id, chunk_size,
  received, ...}``; the size is checked against the free disk space first.
- ``GET uploads``: this user's unfinished uploads (what a reloaded page offers to resume).
- ``PUT uploads/{id}?offset=N`` with the raw bytes (``Content-Length`` required): written at
  ``N``, streamed to disk as it arrives. ``N`` is ``received``, or a later multiple of
  ``chunk_size`` (several chunks in flight); any other ``N`` is 409 with the server's
  ``received``, which stays the prefix that arrived without a gap.
- ``GET uploads/{id}``: ``{id, name, size, received, state}``.
- ``POST uploads/{id}/commit`` ``{instance?}``: saves it through the save protocol, 201
  ``{artifact, deduplicated}`` (200 with the same answer when it was saved before).
- ``DELETE uploads/{id}``: cancels; the staged bytes are removed.

The rules live in ``lamin_nb.core.staged``; this module maps HTTP onto them. Auth and XSRF are
Jupyter's (``APIHandler.prepare``), checked before a single body byte is read. An upload
belongs to the user who started it when the server knows users apart (JupyterHub, a custom
``IdentityProvider``); with Jupyter's own token or password login every caller is the one
owner of the server.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any

from jupyter_server.base.handlers import APIHandler
from tornado import web

from lamin_nb.core import staged

FLUSH_BYTES = 4 * 2**20  # bytes kept in memory before they are written (in a thread)
READ_BYTES = 2**20  # one read from the socket
DRAIN_LIMIT = 2 * staged.CHUNK_SIZE  # a refused chunk up to this size is read, then answered
SINGLE_OWNER = "the-server-owner"
STOCK_PROVIDERS = "jupyter_server.auth"
CREATE_FIELDS = frozenset({"name", "size", "key", "description", "instance"})


class Refused(Exception):
    """An answer other than 2xx, with the JSON fields to send along."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.extra = status, extra


def refusal(exc: BaseException) -> Refused:
    """The HTTP answer for an exception of the core (or of the request's parameters)."""
    from lamin_nb.core.errors import (
        InstanceError,
        LaminNbError,
        NotFoundError,
        ValidationError,
        describe,
    )
    from lamin_nb.core.settings import mask_url

    from .handlers import BadRequest

    message = mask_url(describe(exc))
    if isinstance(exc, Refused):
        return exc
    if isinstance(exc, staged.OffsetConflict):
        return Refused(409, message, received=exc.received)
    if isinstance(exc, staged.UploadBusy):
        return Refused(409, message, retry=True)  # the lock goes with the other request
    if isinstance(exc, (staged.IncompleteUpload, InstanceError)):
        return Refused(409, message)
    if isinstance(exc, staged.NotYourUpload):
        return Refused(403, message)
    if isinstance(exc, staged.NoSpace):
        return Refused(413, message)
    if isinstance(exc, (BadRequest, ValidationError, TypeError)):
        return Refused(400, message)
    if isinstance(exc, NotFoundError):
        return Refused(404, message)
    if isinstance(exc, (LaminNbError, OSError)):
        return Refused(503, message)
    return Refused(500, message)


class UploadBase(APIHandler):
    @property
    def owner(self) -> str:
        provider = self.identity_provider
        if type(provider).__module__.startswith(STOCK_PROVIDERS):
            return SINGLE_OWNER  # one token or password: every caller is the same person
        user = self.current_user
        return str(getattr(user, "username", None) or user)

    def answer(self, status: int, body: dict[str, Any]) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def refuse(self, exc: BaseException) -> None:
        refused = refusal(exc)
        if refused.status == 500:
            self.log.error("lamin_nb upload error", exc_info=exc)
        message = str(refused)
        self.answer(refused.status, {"error": message, "message": message, **refused.extra})

    async def run(self, work: Callable[[], Any], status: int = 200) -> None:
        """``work`` in a thread (it touches the disk); its dict is the answer."""
        try:
            result = await asyncio.get_running_loop().run_in_executor(None, work)
        except Exception as exc:  # noqa: BLE001 - every failure gets a JSON reason
            return self.refuse(exc)
        if isinstance(result, tuple):
            status, result = result
        self.answer(status, result)

    def json_body(self, allowed: frozenset[str]) -> dict[str, Any]:
        from .handlers import json_object

        return json_object(self.request.body, allowed)

    def no_query(self, allowed: frozenset[str] = frozenset()) -> None:
        from .handlers import BadRequest, query_names

        unknown = sorted(query_names(self.request) - allowed)
        if unknown:
            raise BadRequest(f"unknown parameter(s) {', '.join(unknown)}")


class UploadsHandler(UploadBase):
    @web.authenticated
    async def get(self) -> None:
        try:
            self.no_query()
        except Exception as exc:  # noqa: BLE001
            return self.refuse(exc)
        owner = self.owner
        await self.run(lambda: {"uploads": [u.status() for u in staged.mine(owner)]})

    @web.authenticated
    async def post(self) -> None:
        try:
            self.no_query()
            body = self.json_body(CREATE_FIELDS)
        except Exception as exc:  # noqa: BLE001
            return self.refuse(exc)
        state = self.settings["lamin_nb"]
        await self.run(functools.partial(start, state.registry, body, self.owner), 201)


class UploadHandler(UploadBase):
    """One upload: its status, its chunks (streamed to disk), its cancellation."""

    writer: staged.ChunkWriter | None = None
    refused: Refused | None = None
    flushing: asyncio.Future[Any] | None = None

    async def prepare(self) -> None:  # type: ignore[override]
        self.pending: list[bytes] = []
        self.buffered = 0
        await super().prepare()  # auth and XSRF, before any byte of the body is read
        if self.request.method == "PUT":
            self.open_chunk(self.path_args[0])

    def open_chunk(self, upload_id: str) -> None:
        from .handlers import BadRequest, parse_int

        length = None
        try:
            self.no_query(frozenset({"offset"}))
            raw_length = self.request.headers.get("Content-Length")
            if raw_length is None:
                raise Refused(411, "send each chunk with a Content-Length header")
            length = parse_int("Content-Length", raw_length, 0, staged.MAX_SIZE)
            raw_offset = self.get_query_argument("offset", None)
            if raw_offset is None:
                raise BadRequest("offset is required: PUT uploads/{id}?offset=N")
            offset = parse_int("offset", raw_offset, 0, staged.MAX_SIZE)
            upload = staged.load(upload_id, self.owner)
            self.writer = staged.ChunkWriter(upload, offset, length)
        except Exception as exc:  # noqa: BLE001
            self.refused = refusal(exc)
            if length is None or length > DRAIN_LIMIT:
                return self.refuse(self.refused)  # answered now; tornado drops the body
        connection: Any = self.request.connection
        connection.set_max_body_size(length)
        if self.writer is not None:
            # reads of 1 MiB instead of tornado's 64 KiB: a sixteenth of the Python calls per
            # byte, which is most of this server's CPU during an upload (memory: a few MiB)
            connection.params.chunk_size = READ_BYTES
            connection.stream.read_chunk_size = READ_BYTES

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        """Called per socket read: plain (no coroutine) unless a buffer is handed to the disk."""
        if self.writer is None:
            return None  # refused: the body is read and dropped, then answered
        self.pending.append(chunk)
        self.buffered += len(chunk)
        if self.buffered >= FLUSH_BYTES:
            return self.write_pending(wait=False)
        return None

    async def write_pending(self, wait: bool = True) -> None:
        """Hand the buffered bytes to a thread; the network keeps reading while the disk writes
        (one write in flight at most: memory stays at two buffers per request)."""
        if self.flushing is not None:
            await self.flushing
        pending, self.pending, self.buffered = self.pending, [], 0
        writer = self.writer
        assert writer is not None
        self.flushing = asyncio.get_running_loop().run_in_executor(None, writer.write_many, pending)
        if wait:
            await self.flushing

    @web.authenticated
    async def put(self, upload_id: str) -> None:
        if self.refused is not None:
            return self.refuse(self.refused)
        writer = self.writer
        assert writer is not None
        try:
            await self.write_pending()
            self.flushing = None
            received = writer.finish()
        except Exception as exc:  # noqa: BLE001 - the chunk is cut off again; say why
            writer.abort()
            return self.refuse(exc)
        upload = writer.upload
        self.answer(200, {"id": upload.id, "received": received, "size": upload.size})

    def on_connection_close(self) -> None:
        """The browser went away mid-chunk: keep what arrived (a correct prefix)."""
        writer, flushing = self.writer, self.flushing
        if writer is not None:
            if flushing is not None:
                flushing.add_done_callback(lambda _: writer.keep())
            else:
                writer.keep()
        super().on_connection_close()

    def on_finish(self) -> None:
        writer, flushing = self.writer, self.flushing
        if writer is not None:
            if flushing is not None and not flushing.done():
                flushing.add_done_callback(lambda _: writer.keep())
            else:
                writer.keep()

    @web.authenticated
    async def get(self, upload_id: str) -> None:
        try:
            self.no_query()
        except Exception as exc:  # noqa: BLE001
            return self.refuse(exc)
        owner = self.owner
        await self.run(lambda: staged.load(upload_id, owner).status())

    @web.authenticated
    async def delete(self, upload_id: str) -> None:
        try:
            self.no_query()
        except Exception as exc:  # noqa: BLE001
            return self.refuse(exc)
        owner = self.owner
        await self.run(lambda: {**staged.discard(upload_id, owner).status(), "state": "cancelled"})


class CommitHandler(UploadBase):
    @web.authenticated
    async def post(self, upload_id: str) -> None:
        from .handlers import _WRITES, parse_name

        try:
            self.no_query()
            name = parse_name(self.json_body(frozenset({"instance"})).get("instance"))
        except Exception as exc:  # noqa: BLE001
            return self.refuse(exc)
        registry, owner = self.settings["lamin_nb"].registry, self.owner
        work = functools.partial(commit, registry, name, upload_id, owner)
        try:
            status, result = await asyncio.get_running_loop().run_in_executor(_WRITES, work)
        except Exception as exc:  # noqa: BLE001
            return self.refuse(exc)
        self.answer(status, result)


# -- what the routes do (worker threads) --------------------------------------------------


def start(registry: Any, body: dict[str, Any], owner: str) -> dict[str, Any]:
    """Register an upload; abandoned ones are swept first (their space counts as free)."""
    from .handlers import parse_name

    staged.sweep()
    name = parse_name(body.get("instance"))
    local_root = None
    if name is not None:  # asked for: it must exist; its local storage needs room as well
        settings = registry.get(name).settings
        if not settings.storage_root.startswith("s3://"):
            local_root = _existing(settings.storage_root)
    upload = staged.create(
        body.get("name"),
        body.get("size"),
        owner,
        key=body.get("key"),
        description=body.get("description"),
        instance=name or registry.pin(),
        also_on=local_root,
    )
    return upload.status()


def commit(registry: Any, name: str | None, upload_id: str, owner: str) -> tuple[int, Any]:
    from lamin_nb.core.instance import bound
    from lamin_nb.core.models import ARTIFACT_FIELDS

    from .api import NO_INSTANCE

    upload = staged.load(upload_id, owner)
    name = name or upload.instance or registry.pin()
    if name is None:
        from lamin_nb.core.errors import InstanceError

        raise InstanceError(NO_INSTANCE)
    from lamin_nb.core.staged_save import save_staged

    with bound(registry.get(name)):
        artifact, report = save_staged(upload_id, owner)
        fields = {field: getattr(artifact, field) for field in ARTIFACT_FIELDS}
    deduplicated = report is not None and bool(report.deduplicated)
    body = {
        "artifact": json.loads(json.dumps(fields, default=str)),
        "deduplicated": deduplicated,
        "instance": name,
        "upload": staged.load(upload_id, owner).status(),
    }
    return (201 if report is not None else 200), body


def _existing(root: str) -> Any:
    from pathlib import Path

    path = Path(root).expanduser()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


UPLOAD_ID = r"([A-Za-z0-9]{1,64})"
UPLOAD_ROUTES: list[tuple[str, type[APIHandler]]] = [
    ("uploads", UploadsHandler),
    (f"uploads/{UPLOAD_ID}", web.stream_request_body(UploadHandler)),
    (f"uploads/{UPLOAD_ID}/commit", CommitHandler),
]
