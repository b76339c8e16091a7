"""Issue 2's numbers on the embedded default (SQLite + a local folder), each against a lower
bound measured in the same run:

- ``import lamin_nb`` in a fresh process (target: the import itself under 150 ms);
- 200 single saves of 10 KiB files (target: under 3 ms per save);
- one 1 GiB file saved (hashed in full) vs ``cp`` + fsync of the same file (target: <= 1.5x).

    python benchmarks/bench_core.py [--runs 5] [--size-gib 1] [--profile single|large]

Uses the scenarios of ``lamin-nb bench`` in a scratch instance that is removed afterwards.
``--profile`` prints a cProfile of lamin_nb's side of one scenario instead (top 30, cumulative).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
from pathlib import Path

from lamin_nb.benchlib.results import load, table
from lamin_nb.benchlib.scenarios import Context, Options, import_time, large_file, single_saves
from lamin_nb.benchlib.scratch import Scratch, resolve_target

TARGETS = {  # scenario prefix -> (what is compared, limit)
    "import": ("import_ms", 150.0),
    "200 single": ("median", 3.0),
    "one ": ("ratio", 1.5),
}


def verdicts(results: list) -> list[str]:
    lines = []
    for result in results:
        for prefix, (field, limit) in TARGETS.items():
            if result.scenario.startswith(prefix) and result.ok:
                value = (
                    result.extra.get(field)
                    if field in result.extra
                    else (result.ratio if field == "ratio" else statistics.median(result.values))
                )
                state = "met" if value <= limit else "MISSED"
                lines.append(
                    f"{result.scenario}: {field} {value:.2f} (target <= {limit:g}) {state}"
                )
    return lines


def profile(ctx: Context, which: str) -> None:
    import lamin_nb as ln

    if which == "single":
        paths = ctx.files(200, 10 * 1024)
        work = lambda: [ln.Artifact(p).save() for p in paths]  # noqa: E731
    else:
        source = ctx.scratch.work / "large.bin"
        from lamin_nb.benchlib.scenarios import _random_file

        _random_file(source, int(ctx.options.size_gib * (1 << 30)))
        work = lambda: ln.Artifact(source).save()  # noqa: E731
    profiler = cProfile.Profile()
    profiler.enable()
    work()
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(30)
    print(out.getvalue())


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size-gib", type=float, default=1.0)
    parser.add_argument("--storage", default=None, help="default: the temp directory")
    parser.add_argument("--profile", choices=("single", "large"), default=None)
    args = parser.parse_args()
    options = Options(runs=args.runs, single_n=200, file_kib=10, size_gib=args.size_gib)
    scratch = Scratch(resolve_target(args.storage, None, use_current=False), "bench")
    if not scratch.open_or_explain("bench_core"):
        return 2
    try:
        print(f"bench_core on {scratch.describe()}; load average {load():.2f}", flush=True)
        ctx = Context(scratch, options)
        if args.profile:
            profile(ctx, args.profile)
            return 0
        results = [import_time(ctx), single_saves(ctx), large_file(ctx)]
        ctx.bounds.drop()
    finally:
        scratch.close()
    print(table(results))
    print("\n".join(verdicts(results)))
    leftovers = scratch.leftovers() or "nothing"
    print(f"load average at end: {load():.2f}; scratch left behind: {leftovers}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
