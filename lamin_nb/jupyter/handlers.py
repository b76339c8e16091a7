"""Authenticated REST handlers of the server extension (imported only by a running server).

Routes under ``{base_url}/lamin/api/`` (DESIGN section 11). Every route takes ``instance=NAME``
(a known instance of the server's settings folder); without it, the server's default: the
``LaminNb.instance`` setting, else the instance that was current when the server first looked.

- ``GET instance``: the shown instance (storage, database kind, secrets masked), the known ones.
- ``GET status``: row counts (one grouped query) and the last full check: the status bar.
- ``GET artifacts?key_prefix=&limit=&offset=&trashed=``: newest first, with ``total``.
- ``GET artifacts/{uid}``: one artifact and its version history.
- ``POST artifacts/{uid}/trash`` and ``.../restore``.
- ``GET consistency?deep=``: ``ln.check()`` as JSON.
- ``POST repair`` ``{"apply": false, "grace_seconds": 3600, "mark_lost": false}``.
- ``POST saves`` ``{"paths": [...], "key_prefix", "description", "atomic"}``: 202 with a job;
  ``GET saves`` and ``GET saves/{id}``: per-item progress.
- ``GET transfers``: ``ln.uploads()``, the large uploads started and not finished, each with
  ``can_resume`` and ``can_discard`` (the core's rule).
- ``POST transfers/{uid}/resume``: 202 with a save job (as ``POST saves``) that saves the
  upload's recorded source under its key: only the missing parts are sent.
- ``POST transfers/{uid}/discard``: aborts it now (its parts and pending row go):
  ``{uid, key, freed_bytes}``. An upload whose writer is at work on it: 409 with why.

Every route needs the server's token or its login cookie (403 otherwise); POST additionally
needs the XSRF token when authenticated by cookie, as for every Jupyter API. Errors are JSON
``{"error": reason}`` (also as ``message``, the key Jupyter's own API errors use).
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

from .uploads import UPLOAD_ROUTES

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_PREFIX = 1024
AUTH_PARAMS = frozenset({"token", "_xsrf"})
TRUE, FALSE = frozenset({"true", "1", "yes"}), frozenset({"false", "0", "no"})

# Reads take their instance explicitly and run side by side; writes (save, trash, restore,
# repair) act on the current instance inside bound(), so one worker runs them in turn; the
# status bar's slow check has its own worker so that it never delays a click.
_READS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="lamin-nb-read")
_WRITES = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lamin-nb-write")
_CHECKS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lamin-nb-check")
DEFAULT_CHECK_INTERVAL = 300.0
DEFAULT_FULL_CHECK_INTERVAL = 3600.0  # the status bar's refreshes are incremental in between


FAILED = object()  # what ``LaminHandler.attempt`` returns once it answered an error


class BadRequest(Exception):
    """A parameter the caller must fix (400)."""

    def __init__(self, message: str) -> None:
        # messages quote the caller's value: a 10,000-character value must not come back whole
        super().__init__(message if len(message) <= 300 else message[:300] + "... (cut)")


# -- parameter parsing -------------------------------------------------------------------


def parse_int(name: str, raw: Any, low: int, high: int) -> int:
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise BadRequest(f"{name} must be an integer, not {raw!r}")
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, not {raw!r}") from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high}, not {value}")
    return value


def parse_bool(name: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.lower() in TRUE | FALSE:
        return raw.lower() in TRUE
    raise BadRequest(f"{name} must be true or false, not {raw!r}")


def parse_seconds(name: str, raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise BadRequest(f"{name} must be a number of seconds, not {raw!r}")
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a number of seconds, not {raw!r}") from None
    if not math.isfinite(value) or value < 0:
        raise BadRequest(f"{name} must be a number >= 0, not {raw!r}")
    return value


def parse_prefix(raw: str | None) -> str | None:
    if raw is None or raw == "":
        return None
    if len(raw) > MAX_PREFIX or "\x00" in raw:
        raise BadRequest(f"key_prefix must be at most {MAX_PREFIX} characters without NUL")
    return raw


def parse_save_prefix(raw: str | None) -> str | None:
    """The key prefix of a save: the core's rule (``check_key_prefix``), refused with 400."""
    from lamin_nb.core.errors import ValidationError
    from lamin_nb.core.validate import check_key_prefix

    try:
        return check_key_prefix(parse_prefix(raw))
    except ValidationError as exc:
        raise BadRequest(str(exc)) from None


def parse_name(raw: str | None) -> str | None:
    if raw is None or raw == "":
        return None
    from lamin_nb.core.settings import validate_name

    try:
        return validate_name(raw)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat() + ("Z" if value.tzinfo is None else "")
    return str(value)


# -- tornado handlers --------------------------------------------------------------------


class ServerState:
    """What the routes share: the instances shown, the checks' cache, the save jobs."""

    def __init__(
        self,
        configured: str | None,
        check_interval: float,
        root_dir: str,
        full_check_interval: float = DEFAULT_FULL_CHECK_INTERVAL,
    ) -> None:
        from .api import Checks, Registry
        from .saves import Jobs

        self.registry = Registry(configured)
        self.checks = Checks(check_interval, full_check_interval)
        self.jobs = Jobs()
        self.root_dir = root_dir


def query_names(request: Any) -> set[str]:
    """The query arguments a route must know: not the auth ones, and not the cache-busting
    ``?<timestamp>`` that JupyterLab's ServerConnection appends to every GET."""
    return {n for n in request.query_arguments if not n.isdigit()} - AUTH_PARAMS


def json_object(raw: bytes, allowed: frozenset[str]) -> dict[str, Any]:
    """A request body: empty, or a JSON object with only the ``allowed`` fields (a typo is
    refused, not ignored)."""
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise BadRequest("the request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        shown = ", ".join(sorted(allowed))
        raise BadRequest(f"unknown field(s) {', '.join(unknown)}; allowed: {shown}")
    return body


class LaminHandler(APIHandler):
    allowed: frozenset[str] = frozenset()

    @property
    def lamin(self) -> ServerState:
        return self.settings["lamin_nb"]

    def query_params(self) -> dict[str, str]:
        """The query arguments, refusing unknown names so that a typo is not silently ignored."""
        names = query_names(self.request)
        unknown = sorted(names - self.allowed - {"instance"})
        if unknown:
            allowed = ", ".join(sorted(self.allowed | {"instance"}))
            raise BadRequest(f"unknown parameter(s) {', '.join(unknown)}; allowed: {allowed}")
        return {name: self.get_query_argument(name) for name in names}

    def body_params(self, allowed: frozenset[str]) -> dict[str, Any]:
        return json_object(self.request.body, allowed | {"instance"})

    async def attempt(self, work: Callable[[], Any], executor: ThreadPoolExecutor) -> Any:
        """Run ``work`` off the event loop: its result, or ``FAILED`` once the error is
        answered (lamin_nb errors mapped to HTTP statuses, with a reason)."""
        from lamin_nb.core.errors import (
            InstanceError,
            LaminNbError,
            NotFoundError,
            ValidationError,
            describe,
        )
        from lamin_nb.core.settings import mask_url

        try:
            return await asyncio.get_running_loop().run_in_executor(executor, work)
        except (BadRequest, ValidationError, TypeError) as exc:
            self.fail(400, mask_url(str(exc)))
        except NotFoundError as exc:
            self.fail(404, mask_url(describe(exc)))
        except InstanceError as exc:
            self.fail(409, mask_url(describe(exc)))
        except (LaminNbError, OSError) as exc:
            from lamin_nb.core.transfers import TransferConflict

            # an upload its writer is at work on is a conflict with the state, not an outage
            self.fail(409 if isinstance(exc, TransferConflict) else 503, mask_url(describe(exc)))
        except Exception as exc:  # noqa: BLE001 - a JSON reason beats an HTML traceback page
            self.log.exception("lamin_nb API error")
            self.fail(500, mask_url(describe(exc)))
        return FAILED

    async def respond(
        self,
        work: Callable[[], dict[str, Any]],
        executor: ThreadPoolExecutor = _READS,
        status: int = 200,
    ) -> None:
        """Run ``work`` off the event loop and answer its result as JSON."""
        result = await self.attempt(work, executor)
        if result is FAILED:
            return
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(result, default=_jsonable))

    def fail(self, status: int, message: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": message, "message": message, "reason": None}))


class InstanceHandler(LaminHandler):
    @web.authenticated
    async def get(self) -> None:
        from .api import instance_info

        try:
            name = parse_name(self.query_params().get("instance"))
        except BadRequest as exc:
            return self.fail(400, str(exc))
        await self.respond(functools.partial(instance_info, self.lamin.registry, name))


class StatusHandler(LaminHandler):
    @web.authenticated
    async def get(self) -> None:
        from .api import status

        try:
            name = parse_name(self.query_params().get("instance"))
        except BadRequest as exc:
            return self.fail(400, str(exc))
        lamin = self.lamin
        self.schedule_slow_check(name)  # first, so that the answer says a check is running
        await self.respond(functools.partial(status, lamin.registry, lamin.checks, name))

    def schedule_slow_check(self, name: str | None) -> None:
        """At most one check per interval and instance, in the background: incremental
        (what changed since the last full check), so that it stays cheap on a large instance,
        and a full one once the last is ``full_check_interval`` seconds old."""
        from lamin_nb.core.settings import known_names

        lamin = self.lamin
        shown = name or lamin.registry.pin()
        if shown is None or shown not in known_names() or not lamin.checks.due(shown):
            return
        future = _CHECKS.submit(lamin.checks.run, lamin.registry, shown, False, "last")
        future.add_done_callback(self._log_failed_check)

    def _log_failed_check(self, future: Any) -> None:
        if future.exception() is not None:
            from lamin_nb.core.errors import describe

            self.log.warning("lamin_nb status check failed: %s", describe(future.exception()))


class ArtifactsHandler(LaminHandler):
    allowed = frozenset({"limit", "offset", "key_prefix", "trashed"})

    @web.authenticated
    async def get(self) -> None:
        from .api import list_artifacts

        try:
            params = self.query_params()
            name = parse_name(params.get("instance"))
            limit = parse_int("limit", params.get("limit", DEFAULT_LIMIT), 1, MAX_LIMIT)
            offset = parse_int("offset", params.get("offset", 0), 0, 2**62)
            prefix = parse_prefix(params.get("key_prefix"))
            trashed = parse_bool("trashed", params.get("trashed", False))
        except BadRequest as exc:
            return self.fail(400, str(exc))
        registry = self.lamin.registry
        await self.respond(
            functools.partial(list_artifacts, registry, name, limit, offset, prefix, trashed)
        )


class ArtifactHandler(LaminHandler):
    @web.authenticated
    async def get(self, uid: str) -> None:
        from .api import artifact_detail

        try:
            name = parse_name(self.query_params().get("instance"))
        except BadRequest as exc:
            return self.fail(400, str(exc))
        await self.respond(functools.partial(artifact_detail, self.lamin.registry, name, uid))


class TrashHandler(LaminHandler):
    @web.authenticated
    async def post(self, uid: str, action: str) -> None:
        from .api import set_trashed

        try:
            params = {**self.query_params(), **self.body_params(frozenset())}
            name = parse_name(params.get("instance"))
        except BadRequest as exc:
            return self.fail(400, str(exc))
        work = functools.partial(set_trashed, self.lamin.registry, name, uid, action == "trash")
        await self.respond(work, _WRITES)


class ConsistencyHandler(LaminHandler):
    allowed = frozenset({"deep"})

    @web.authenticated
    async def get(self) -> None:
        try:
            params = self.query_params()
            name = parse_name(params.get("instance"))
            deep = parse_bool("deep", params.get("deep", False))
        except BadRequest as exc:
            return self.fail(400, str(exc))
        lamin = self.lamin
        await self.respond(functools.partial(lamin.checks.run, lamin.registry, name, deep))


class RepairHandler(LaminHandler):
    allowed = frozenset({"apply", "grace_seconds", "mark_lost"})

    @web.authenticated
    async def post(self) -> None:
        from .api import repair

        try:
            params = {**self.query_params(), **self.body_params(self.allowed)}
            name = parse_name(params.get("instance"))
            apply = parse_bool("apply", params.get("apply", False))
            grace = parse_seconds("grace_seconds", params.get("grace_seconds", 3600))
            mark_lost = parse_bool("mark_lost", params.get("mark_lost", False))
        except BadRequest as exc:
            return self.fail(400, str(exc))
        lamin = self.lamin
        work = functools.partial(
            repair, lamin.registry, lamin.checks, name, apply, grace, mark_lost
        )
        await self.respond(work, _WRITES)


class SavesHandler(LaminHandler):
    fields = frozenset({"paths", "key_prefix", "description", "atomic"})

    @web.authenticated
    async def get(self) -> None:
        try:
            self.query_params()
        except BadRequest as exc:
            return self.fail(400, str(exc))
        jobs = [job.snapshot() for job in self.lamin.jobs.all()]
        self.finish(json.dumps({"saves": jobs}, default=_jsonable))

    @web.authenticated
    async def post(self) -> None:
        from .saves import PathRefused, SaveJob, run, targets_of

        lamin = self.lamin
        try:
            body = {**self.query_params(), **self.body_params(self.fields)}
            name = parse_name(body.get("instance")) or lamin.registry.pin()
            atomic = parse_bool("atomic", body.get("atomic", False))
            prefix, description = body.get("key_prefix"), body.get("description")
            for label, value in (("key_prefix", prefix), ("description", description)):
                if value is not None and not isinstance(value, str):
                    raise BadRequest(f"{label} must be a string, not {value!r}")
            prefix = parse_save_prefix(prefix)
            allow_hidden = bool(getattr(self.contents_manager, "allow_hidden", False))
            targets = targets_of(body.get("paths"), lamin.root_dir, allow_hidden)
        except (BadRequest, PathRefused) as exc:
            return self.fail(400, str(exc))
        if name is None:
            from .api import NO_INSTANCE

            return self.fail(409, NO_INSTANCE)
        paths = [str(p.relative_to(Path(lamin.root_dir).resolve())) for p in targets]
        job = lamin.jobs.add(SaveJob(name, paths, prefix, description, atomic))
        _WRITES.submit(run, job, lamin.registry, targets)
        self.set_status(202)
        self.finish(json.dumps(job.snapshot(), default=_jsonable))


class SaveHandler(LaminHandler):
    @web.authenticated
    async def get(self, job_id: str) -> None:
        job = self.lamin.jobs.get(job_id)
        if job is None:
            return self.fail(404, f"no save job {job_id[:40]!r} on this server")
        self.finish(json.dumps(job.snapshot(), default=_jsonable))


class TransfersHandler(LaminHandler):
    """``GET transfers``: ``ln.uploads()`` (not ``uploads``: the browser's chunked uploads)."""

    @web.authenticated
    async def get(self) -> None:
        """``ln.uploads()`` of the instance: ``{instance, transfers: [{uid, key, size,
        bytes_done, parts_done, parts_total, started_at, owner, alive, source,
        resumable_for, can_resume, can_discard}]}``, oldest first."""
        from .api import list_transfers

        try:
            name = parse_name(self.query_params().get("instance"))
        except BadRequest as exc:
            return self.fail(400, str(exc))
        await self.respond(functools.partial(list_transfers, self.lamin.registry, name))


class TransferHandler(LaminHandler):
    """``POST transfers/{uid}/resume`` (202, a save job) and ``.../discard``."""

    @web.authenticated
    async def post(self, uid: str, action: str) -> None:
        """``resume``: 202 with a save job (follow it with ``GET saves/{id}``) that saves the
        upload's recorded source under its key; only the missing parts are sent. The source
        must be inside the server root. ``discard``: aborts the upload now (its parts and its
        pending row go): ``{uid, key, freed_bytes}``. An unknown uid is 404; an upload whose
        writer is at work on it, or whose source is gone, is 409 with why."""
        from .api import discard_transfer

        try:
            params = {**self.query_params(), **self.body_params(frozenset())}
            name = parse_name(params.get("instance"))
        except BadRequest as exc:
            return self.fail(400, str(exc))
        if action == "resume":
            return await self.resume(name, uid)
        work = functools.partial(discard_transfer, self.lamin.registry, name, uid)
        await self.respond(work, _WRITES)

    async def resume(self, name: str | None, uid: str) -> None:
        """Queue a save of the upload's source under its key, as ``POST saves`` does: the
        save takes the interrupted upload over and sends only the missing parts."""
        from .api import resume_check
        from .saves import PathRefused, SaveJob, inside_root, run_resume

        lamin = self.lamin
        checked = await self.attempt(
            functools.partial(resume_check, lamin.registry, name, uid), _READS
        )
        if checked is FAILED:
            return
        shown, key, source = checked
        allow_hidden = bool(getattr(self.contents_manager, "allow_hidden", False))
        try:  # the server reads only what it may serve, as for POST saves
            inside_root(lamin.root_dir, source, allow_hidden)
        except PathRefused as exc:
            return self.fail(
                409,
                f"the upload of {key or uid} is not resumed by the Jupyter server: its source "
                f"{exc}; resume it in a notebook: ln.Artifact({str(source)!r}, "
                f"key={key!r}).save()",
            )
        job = lamin.jobs.add(SaveJob(shown, [key or uid], None, None, False, resume_of=uid))
        _WRITES.submit(run_resume, job, lamin.registry, uid)
        self.set_status(202)
        self.finish(json.dumps(job.snapshot(), default=_jsonable))


UID = r"([A-Za-z0-9]{1,40})"
ROUTES: list[tuple[str, type[APIHandler]]] = [
    ("instance", InstanceHandler),
    ("status", StatusHandler),
    ("artifacts", ArtifactsHandler),
    (f"artifacts/{UID}", ArtifactHandler),
    (f"artifacts/{UID}/(trash|restore)", TrashHandler),
    ("consistency", ConsistencyHandler),
    ("repair", RepairHandler),
    ("saves", SavesHandler),
    (r"saves/([0-9]{1,20})", SaveHandler),
    ("transfers", TransfersHandler),
    (f"transfers/{UID}/(resume|discard)", TransferHandler),
    *UPLOAD_ROUTES,  # chunked browser uploads: uploads.py
]


def setup_handlers(
    web_app: Any,
    instance: str | None = None,
    check_interval: float = DEFAULT_CHECK_INTERVAL,
    root_dir: str = ".",
    full_check_interval: float = DEFAULT_FULL_CHECK_INTERVAL,
) -> list[str]:
    state = ServerState(instance, check_interval, root_dir, full_check_interval)
    state.registry.pin()  # the default is what was current now, not what a kernel inits later
    web_app.settings["lamin_nb"] = state
    base = url_path_join(web_app.settings["base_url"], "lamin", "api")
    handlers = [(url_path_join(base, route), handler) for route, handler in ROUTES]
    web_app.add_handlers(".*$", handlers)
    return [route for route, _ in handlers]
