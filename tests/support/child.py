"""A separate process that works on the current instance, for crash and concurrency tests.

Run as ``python tests/support/child.py '<json spec>'``; it connects like a user's second
process would (same ``LAMIN_NB_HOME``), does what the spec says and prints one JSON line.
Fault points come from ``LAMIN_NB_FAULT`` in its environment; a ``kill`` fault ends it
with SIGKILL before it prints anything.

Specs:
  {"op": "save", "items": [[path, key or null], ...]}    one item: Artifact.save(); more: ln.save
  {"op": "delete", "uid": uid}                            permanent delete
  {"op": "deleter", "n": N}                              N permanent deletes of saved artifacts
  {"op": "transaction", "steps": [["save", path, key], ["save_many", [[path, key], ...]],
                                  ["delete", uid], ["trash", uid], ["restore", uid],
                                  ["raise"]]}
      one ``ln.transaction()`` block doing the steps; prints the uids saved and the outcome
  {"op": "poll", "stop": path, "out": path}
      reads the visible artifacts until the file ``stop`` exists; writes each distinct view
      (sorted uids of committed, untrashed and of trashed artifacts) to ``out`` as JSON
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


def _transaction(spec: dict[str, Any]) -> dict[str, Any]:
    import lamin_nb as ln

    saved: list[dict[str, Any]] = []
    result: dict[str, Any] = {"saved": saved}
    try:
        with ln.transaction() as block:
            for step in spec["steps"]:
                _tx_step(step, saved)
    except ln.TransactionError as exc:
        result.update(error=f"{type(exc).__name__}: {exc}", committed=exc.committed)
    else:
        result["outcome"] = block.outcome.line if block.outcome is not None else None
    result["saved"] = [{"uid": a["a"].uid, "version": a["a"].version} for a in saved]
    return result


def _tx_step(step: list[Any], saved: list[dict[str, Any]]) -> None:
    import lamin_nb as ln

    kind = step[0]
    if kind == "save":
        saved.append({"a": ln.Artifact(step[1], key=step[2]).save()})
    elif kind == "save_many":
        artifacts = [ln.Artifact(path, key=key) for path, key in step[1]]
        ln.save(artifacts)
        saved.extend({"a": a} for a in artifacts)
    elif kind in ("delete", "trash"):
        ln.Artifact.filter(uid=step[1]).first().delete(permanent=kind == "delete")  # type: ignore[union-attr]
    elif kind == "restore":
        ln.Artifact.filter(uid=step[1], is_trashed=True).first().restore()  # type: ignore[union-attr]
    elif kind == "raise":
        raise RuntimeError("the block failed on purpose")


def _poll(spec: dict[str, Any]) -> dict[str, Any]:
    import os
    import time

    import lamin_nb as ln

    views: list[list[list[str]]] = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        stopping = os.path.exists(spec["stop"])
        every = ln.Artifact.filter(is_trashed__in=[False, True]).all()  # one read: one view
        view = [
            sorted(a.uid for a in every if not a.is_trashed),
            sorted(a.uid for a in every if a.is_trashed),
        ]
        if not views or views[-1] != view:
            views.append(view)
            with open(spec["out"], "w") as out:
                json.dump(views, out)
        if stopping:
            break
        time.sleep(0.01)
    return {"views": views}


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    import lamin_nb as ln

    try:
        ln.connect()
        ops = {
            "save": _save,
            "delete": _delete,
            "deleter": _deleter,
            "writer": _writer,
            "transaction": _transaction,
            "poll": _poll,
        }
        result = ops[spec["op"]](spec)
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
