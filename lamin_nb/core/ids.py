"""Identifiers: random base62 strings and the 4-character version suffix of a uid."""

from __future__ import annotations

import secrets

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def random_base62(n: int) -> str:
    # one draw, uniform over all 62**n strings; 5x faster than n secrets.choice calls, which
    # shows when from_dir builds thousands of artifacts
    value, out = secrets.randbelow(62**n), []
    for _ in range(n):
        value, digit = divmod(value, 62)
        out.append(BASE62[digit])
    return "".join(out)


def version_suffix(version: int) -> str:
    """The last 4 characters of a uid: version 1 is ``0000``, then ``0001``, ... in base62."""
    n, out = max(version - 1, 0), ""
    for _ in range(4):
        n, r = divmod(n, 62)
        out = BASE62[r] + out
    return out
