"""How a save's cost depends on the history of its key: ms per save at version ~10 and
~1,000 of one key (SQLite + a local folder, tiny files, so the database work dominates).

    python scripts/bench_history.py [--versions 1000] [--window 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--versions", type=int, default=1000)
    parser.add_argument("--window", type=int, default=20, help="saves timed at each point")
    parser.add_argument(
        "--dir", default=None, help="where to work (e.g. /dev/shm: no disk flushes in the way)"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        os.environ["LAMIN_NB_HOME"] = str(Path(tmp, "home"))
        import lamin_nb as ln

        ln.init(storage=str(Path(tmp, "storage")))
        source = Path(tmp, "v.txt")
        wall: dict[int, float] = {}
        cpu: dict[int, float] = {}
        for version in range(1, args.versions + args.window + 1):
            source.write_text(f"version {version}\n")
            start, start_cpu = time.perf_counter(), time.process_time()
            ln.Artifact(source, key="history/v.txt").save()
            wall[version] = (time.perf_counter() - start) * 1000
            cpu[version] = (time.process_time() - start_cpu) * 1000
        for at in (10, args.versions):
            span = range(at, at + args.window)
            print(
                f"version {at:>5}: {statistics.median(wall[v] for v in span):.2f} ms/save wall, "
                f"{statistics.median(cpu[v] for v in span):.2f} ms CPU (medians of {len(span)})"
            )
    print(f"lamin_nb from {Path(ln.__file__).parent}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
