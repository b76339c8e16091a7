"""A separate process that saves one file, as a user's re-run would (a new kernel, a new
``Artifact`` of the same file). Run as ``python -m tests.transfers.child_save PATH KEY``;
lamin_nb's log goes to stderr, the outcome as one JSON line to stdout."""

from __future__ import annotations

import json
import logging
import signal
import sys


def main(path: str, key: str) -> int:
    # a test started in the background has SIGINT ignored; a user's kernel does not
    signal.signal(signal.SIGINT, signal.default_int_handler)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    import lamin_nb as ln

    ln.connect()
    try:
        artifact = ln.Artifact(path, key=key).save()
    except BaseException as exc:  # noqa: BLE001 - reported to the parent as data
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return 1
    print(json.dumps({"uid": artifact.uid, "hash": artifact.hash}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
