"""Authenticated REST handlers of the server extension (imported only by a running server).

Routes under ``{base_url}/lamin/api/``:

- ``GET artifacts?limit=&offset=&key_prefix=``: committed artifacts, oldest first, paged.
- ``GET consistency?deep=``: ``ln.check()`` as JSON.
- ``POST repair`` with a JSON body ``{"apply": false, "grace_seconds": 3600, "mark_lost": false}``
  (or the same names as query parameters): the repair plan; applied only with ``apply``.

Every route needs the server's token or its login cookie (403 otherwise); POST additionally
needs the XSRF token when authenticated by cookie, as for every Jupyter API.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_PREFIX = 1024
AUTH_PARAMS = frozenset({"token", "_xsrf"})
TRUE, FALSE = frozenset({"true", "1", "yes"}), frozenset({"false", "0", "no"})

# One worker: lamin_nb keeps one current instance per process, and check/repair on S3 block,
# so they run off the event loop but never concurrently with each other.
_EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lamin-nb-api")


class BadRequest(Exception):
    """A parameter the caller must fix (400)."""

    def __init__(self, message: str) -> None:
        # messages quote the caller's value: a 10,000-character value must not come back whole
        super().__init__(message if len(message) <= 300 else message[:300] + "... (cut)")


# -- what the routes do (plain functions; run in the worker thread) ------------------------


def bound_instance() -> Any:
    """The server process's current instance, following ``ln.init`` elsewhere on this machine."""
    from lamin_nb.core.errors import InstanceError
    from lamin_nb.core.instance import connect, current
    from lamin_nb.core.settings import current_name

    name = current_name()
    if name is None:
        raise InstanceError(
            "no lamin_nb instance: run ln.init(storage=...) in this environment "
            "(LAMIN_NB_HOME of the Jupyter server)"
        )
    inst = current()
    return inst if inst.name == name else connect(name)


def list_artifacts(limit: int, offset: int, key_prefix: str | None) -> dict[str, Any]:
    from sqlalchemy import func, select

    from lamin_nb.core.models import ARTIFACT_FIELDS, COMMITTED, ArtifactRow

    inst = bound_instance()
    where = [ArtifactRow.status == COMMITTED, ArtifactRow.is_trashed.is_(False)]
    if key_prefix:
        where.append(ArtifactRow.key.startswith(key_prefix, autoescape=True))
    page = select(ArtifactRow).where(*where).order_by(ArtifactRow.id).limit(limit).offset(offset)
    with inst.db.read() as session:
        total = session.scalar(select(func.count()).select_from(ArtifactRow).where(*where))
        rows = session.scalars(page).all()
        artifacts = [{f: getattr(row, f) for f in ARTIFACT_FIELDS} for row in rows]
    return {
        "instance": inst.name,
        "total": int(total or 0),
        "limit": limit,
        "offset": offset,
        "key_prefix": key_prefix,
        "artifacts": artifacts,
    }


def consistency(deep: bool) -> dict[str, Any]:
    from lamin_nb.core.consistency import check

    inst = bound_instance()
    return {"instance": inst.name, **check(deep=deep, instance=inst).to_dict()}


def repair(apply: bool, grace_seconds: float, mark_lost: bool) -> dict[str, Any]:
    from lamin_nb.core.repair import repair as run_repair

    inst = bound_instance()
    plan = run_repair(dry_run=not apply, grace_seconds=grace_seconds, mark_lost=mark_lost)
    after = plan.after.to_dict() if plan.after is not None else None
    return {"instance": inst.name, **plan.to_dict(), "after": after}


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


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat() + ("Z" if value.tzinfo is None else "")
    return str(value)


# -- tornado handlers --------------------------------------------------------------------


class LaminHandler(APIHandler):
    allowed: frozenset[str] = frozenset()

    def query_params(self) -> dict[str, str]:
        """The query arguments, refusing unknown names so that a typo is not silently ignored."""
        names = set(self.request.query_arguments) - AUTH_PARAMS
        unknown = sorted(names - self.allowed)
        if unknown:
            allowed = ", ".join(sorted(self.allowed)) or "none"
            raise BadRequest(f"unknown parameter(s) {', '.join(unknown)}; allowed: {allowed}")
        return {name: self.get_query_argument(name) for name in names}

    async def respond(self, work: Callable[[], dict[str, Any]]) -> None:
        """Run ``work`` off the event loop; map lamin_nb errors to HTTP statuses with a reason."""
        from lamin_nb.core.errors import InstanceError, LaminNbError, ValidationError, describe
        from lamin_nb.core.settings import mask_url

        try:
            result = await asyncio.get_running_loop().run_in_executor(_EXECUTOR, work)
        except (BadRequest, ValidationError, TypeError) as exc:
            return self.fail(400, mask_url(str(exc)))
        except InstanceError as exc:
            return self.fail(409, mask_url(describe(exc)))
        except (LaminNbError, OSError) as exc:
            return self.fail(503, mask_url(describe(exc)))
        except Exception as exc:  # noqa: BLE001 - a JSON reason beats an HTML traceback page
            self.log.exception("lamin_nb API error")
            return self.fail(500, mask_url(describe(exc)))
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(result, default=_jsonable))

    def fail(self, status: int, message: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"message": message, "reason": None}))


class ArtifactsHandler(LaminHandler):
    allowed = frozenset({"limit", "offset", "key_prefix"})

    @web.authenticated
    async def get(self) -> None:
        try:
            params = self.query_params()
            limit = parse_int("limit", params.get("limit", DEFAULT_LIMIT), 1, MAX_LIMIT)
            offset = parse_int("offset", params.get("offset", 0), 0, 2**62)
            prefix = parse_prefix(params.get("key_prefix"))
        except BadRequest as exc:
            return self.fail(400, str(exc))
        await self.respond(functools.partial(list_artifacts, limit, offset, prefix))


class ConsistencyHandler(LaminHandler):
    allowed = frozenset({"deep"})

    @web.authenticated
    async def get(self) -> None:
        try:
            deep = parse_bool("deep", self.query_params().get("deep", False))
        except BadRequest as exc:
            return self.fail(400, str(exc))
        await self.respond(functools.partial(consistency, deep))


class RepairHandler(LaminHandler):
    allowed = frozenset({"apply", "grace_seconds", "mark_lost"})

    @web.authenticated
    async def post(self) -> None:
        try:
            params = {**self.query_params(), **self.body_params()}
            apply = parse_bool("apply", params.get("apply", False))
            grace = parse_seconds("grace_seconds", params.get("grace_seconds", 3600))
            mark_lost = parse_bool("mark_lost", params.get("mark_lost", False))
        except BadRequest as exc:
            return self.fail(400, str(exc))
        await self.respond(functools.partial(repair, apply, grace, mark_lost))

    def body_params(self) -> dict[str, Any]:
        if not self.request.body.strip():
            return {}
        try:
            body = json.loads(self.request.body)
        except ValueError:
            raise BadRequest("the request body must be a JSON object") from None
        if not isinstance(body, dict):
            raise BadRequest("the request body must be a JSON object")
        unknown = sorted(set(body) - self.allowed)
        if unknown:
            raise BadRequest(
                f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(self.allowed))}"
            )
        return body


ROUTES = {"artifacts": ArtifactsHandler, "consistency": ConsistencyHandler, "repair": RepairHandler}


def setup_handlers(web_app: Any) -> list[str]:
    base = url_path_join(web_app.settings["base_url"], "lamin", "api")
    handlers = [(url_path_join(base, name), handler) for name, handler in ROUTES.items()]
    web_app.add_handlers(".*$", handlers)
    return [route for route, _ in handlers]
