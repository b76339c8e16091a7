"""A second process started ahead of time, so killing a writer costs a save, not an import.

Run as ``python tests/model/warm_child.py``: it imports lamin_nb, prints ``ready`` and reads
one JSON line ``{"env": {...}, "fault": "point:kill" or null, "spec": {...}}`` from stdin; then
it sets the environment (the example's ``LAMIN_NB_HOME``), switches the fault point on and
does what ``tests/support/child.py`` does with ``spec`` (connect like a user's second process,
then save or delete), printing one JSON line unless the fault killed it first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()


def main() -> int:
    sys.path.insert(0, str(HERE.parents[2]))  # the checkout, for tests.support
    from lamin_nb.core import faults
    from lamin_nb.core import save as _warm  # noqa: F401 - imports the whole save path now
    from tests.support import child

    print("ready", flush=True)
    message = json.loads(sys.stdin.readline())
    os.environ.update(message["env"])
    faults.configure(message["fault"])
    return child.main([json.dumps(message["spec"])])


class WarmChildren:
    """One child always waiting; each ``run`` uses it and starts the next one."""

    def __init__(self) -> None:
        self.waiting: subprocess.Popen[str] | None = None

    def _start(self) -> subprocess.Popen[str]:
        from tests.support.crashes import child_env
        from tests.support.servers import die_with_parent

        return subprocess.Popen(
            [sys.executable, str(HERE)],
            env=child_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=die_with_parent,
        )

    def run(self, spec: dict[str, Any], fault: str | None, env: dict[str, str]) -> Any:
        from tests.support.crashes import finish_child

        proc = self.waiting or self._start()
        self.waiting = None
        assert proc.stdin is not None
        proc.stdin.write(json.dumps({"env": env, "fault": fault, "spec": spec}) + "\n")
        proc.stdin.flush()  # communicate() closes it
        result = finish_child(proc)
        self.waiting = self._start()
        return result

    def close(self) -> None:
        proc, self.waiting = self.waiting, None
        if proc is not None:
            proc.kill()
            proc.communicate(timeout=60)


if __name__ == "__main__":
    sys.exit(main())
