"""A separate process that works on the current instance, for crash and concurrency tests.

Run as ``python tests/support/child.py '<json spec>'``; it connects like a user's second
process would (same ``LAMIN_NB_HOME``), does what the spec says and prints one JSON line.
Fault points come from ``LAMIN_NB_FAULT`` in its environment; a ``kill`` fault ends it
with SIGKILL before it prints anything.

Specs:
  {"op": "save", "items": [[path, key or null], ...]}    one item: Artifact.save(); more: ln.save
  {"op": "delete", "uid": uid}                            permanent delete
  {"op": "deleter", "n": N}                              N permanent deletes of saved artifacts
  {"op": "writer", "files": [...], "keys": [...], "n": N, "seed": S}
      N saves; content and key walk through the lists from a seed-dependent start, so
      writers with different seeds overlap in both
"""

from __future__ import annotations

import json
import sys
import traceback
from typing import Any


def _save(spec: dict[str, Any]) -> dict[str, Any]:
    import lamin_nb as ln

    artifacts = [ln.Artifact(path, key=key) for path, key in spec["items"]]
    if len(artifacts) == 1:
        artifacts[0].save()
    else:
        ln.save(artifacts)
    return {"uids": [a.uid for a in artifacts]}


def _delete(spec: dict[str, Any]) -> dict[str, Any]:
    import lamin_nb as ln

    ln.Artifact.get(spec["uid"]).delete(permanent=True)
    return {"deleted": spec["uid"]}


def _deleter(spec: dict[str, Any]) -> dict[str, Any]:
    """Delete artifacts as they appear; losing a race to another deleter is fine."""
    import time

    import lamin_nb as ln

    deleted, errors = [], []
    deadline = time.monotonic() + 300
    while len(deleted) < spec["n"]:
        if time.monotonic() > deadline:
            errors.append(f"only {len(deleted)} of {spec['n']} deletes in 300 s")
            break
        candidates = ln.Artifact.filter().all()
        if len(candidates) < 5:  # let the writers get ahead
            time.sleep(0.05)
            continue
        artifact = candidates[len(deleted) * 7 % len(candidates)]
        try:
            artifact.delete(permanent=True)
            deleted.append(artifact.uid)
        except ln.NotFoundError:
            pass
        except Exception as exc:  # noqa: BLE001 - the test asserts there are none
            errors.append(f"{type(exc).__name__}: {exc}")
    return {"deleted": deleted, "errors": errors}


def _writer(spec: dict[str, Any]) -> dict[str, Any]:
    import lamin_nb as ln

    files, keys, seed = spec["files"], spec["keys"], spec["seed"]
    saved, errors = [], []
    for step in range(spec["n"]):
        path = files[(seed * 37 + step * 7) % len(files)]
        key = keys[(seed + step) % len(keys)]
        try:
            artifact = ln.Artifact(path, key=key).save()
            saved.append(
                {
                    "uid": artifact.uid,
                    "key": artifact.key,
                    "hash": artifact.hash,
                    "version": artifact.version,
                }
            )
        except Exception as exc:  # noqa: BLE001 - the test asserts there are none
            errors.append(f"{type(exc).__name__}: {exc}")
    return {"saved": saved, "errors": errors}


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    import lamin_nb as ln

    try:
        ln.connect()
        result = {"save": _save, "delete": _delete, "deleter": _deleter, "writer": _writer}[
            spec["op"]
        ](spec)
    except Exception as exc:  # noqa: BLE001 - reported to the parent as data
        print(
            json.dumps(
                {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
            )
        )
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
