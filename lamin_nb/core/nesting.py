"""Storage roots never nest through a managed prefix.

A root inside another instance's ``<root>/.lamindb`` puts its objects and marker where the other
instance's check and repair treat them as orphans; a root whose own ``.lamindb`` already holds
another instance's does the same the other way round. Roots elsewhere inside another root
(``outer/sub``) are fine: their managed prefixes are disjoint.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import ValidationError
from .storage import MANAGED, Storage, open_storage

SCHEME = "s3://"


def check_not_nested(root: str, options: dict[str, Any]) -> None:
    """Refuse ``root`` if it lies inside a managed prefix or its managed prefix holds one."""
    head, path = (SCHEME, root[len(SCHEME) :]) if root.startswith(SCHEME) else ("", root)
    parts = path.split("/")
    if MANAGED in parts:
        outer = head + "/".join(parts[: parts.index(MANAGED)])
        raise ValidationError(
            f"storage {root!r} lies inside {outer + '/' + MANAGED!r}, the managed prefix of "
            f"{_described(outer, options)}; lamin_nb owns everything in it. Choose a folder "
            "outside it"
        )
    storage = open_storage(root, options)
    inner = _nested_prefix(storage)  # storage errors: ln.init maps them (_storage_errors)
    if inner is not None:
        inner_root = inner[: -len(MANAGED) - 1]
        raise ValidationError(
            f"storage {root!r} cannot be used: its managed prefix {storage.managed!r} holds "
            f"{inner!r}, the managed prefix of {_described(inner_root, options)}, whose objects "
            f"would look like orphans to {root!r}. Move that instance's storage out first"
        )


def _nested_prefix(storage: Storage) -> str | None:
    """The first managed prefix below ``storage``'s own, or None.

    Only a prefix no instance has claimed yet is listed (once, when its instance is created):
    a claimed one is either this instance's (a second user joining it) or refused anyway.
    """
    if storage.read_marker("instance.json") is not None:
        return None
    return storage.find_folder(MANAGED)


def _described(root: str, options: dict[str, Any]) -> str:
    """``instance 'name' (storage 'root')``, naming the instance from its marker if it has one."""
    try:
        raw = open_storage(root, options).read_marker("instance.json")
        name = json.loads(raw).get("name") if raw is not None else None
    except (OSError, ValueError):
        name = None
    who = f"instance {name!r}" if name else "another instance"
    return f"{who} (storage {root!r})"
