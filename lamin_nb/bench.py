"""``lamin-nb bench``: is it fast here? Each scenario against a lower bound, same run, same backend.

Runs in a scratch instance (see ``lamin_nb.benchlib.scratch``) that is created for the run and
removed afterwards: a prefix ``lamin-nb-bench-<token>`` under ``--storage``, a scratch database
(or schema) on the server of ``--db``, and a private settings folder. Without arguments it
measures the embedded default: SQLite + a local folder in the temporary directory.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections.abc import Sequence
from typing import Any

from .core.errors import describe
from .core.settings import mask_url

ALL = ("import", "single", "bulk", "large", "anndata", "check", "progress")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lamin-nb bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--storage",
        default=None,
        help="local folder or s3://bucket/prefix "
        "(a scratch prefix is created under it); default: the temp directory",
    )
    p.add_argument(
        "--db",
        default=None,
        help="postgresql://... (a scratch database is created "
        "on that server, or a scratch schema without CREATEDB) or sqlite:///...; "
        "default: a temporary SQLite file",
    )
    p.add_argument(
        "--scenarios",
        nargs="+",
        default=list(ALL),
        metavar="NAME",
        help=f"any of: {' '.join(ALL)} (comma or space separated; default: all)",
    )
    p.add_argument("--json", action="store_true", help="also print one JSON line per scenario")
    p.add_argument("--runs", type=int, default=3, help="runs per scenario (default 3)")
    p.add_argument("--size-gib", type=float, default=1.0, help="large file size (default 1)")
    p.add_argument(
        "--check-n",
        type=int,
        default=None,
        help="artifacts for the check scenario (default 100000 local, 2000 on S3)",
    )
    p.add_argument(
        "--scale",
        type=int,
        default=None,
        metavar="N",
        help="instead of the scenarios: build N artifacts through ln.save in bulk and report "
        "ln.check() time, peak memory and LIST requests",
    )
    p.add_argument(
        "--scale-batch", type=int, default=10_000, help="files per bulk save for --scale"
    )
    p.add_argument("--single-n", type=int, default=200, help="single saves (default 200)")
    p.add_argument("--bulk-n", type=int, default=1000, help="files in a bulk save (default 1000)")
    p.add_argument("--file-kib", type=int, default=10, help="small file size (default 10 KiB)")
    p.add_argument("--anndata-mb", type=float, default=160.0, help="AnnData size (default 160)")
    return p


def _scenarios(names: Sequence[str]) -> list[str]:
    wanted = [n.strip() for name in names for n in name.split(",") if n.strip()]
    unknown = sorted(set(wanted) - set(ALL))
    if unknown:
        raise SystemExit(
            f"lamin-nb bench: unknown scenario(s) {', '.join(unknown)}; "
            f"choose from {', '.join(ALL)}"
        )
    return [n for n in ALL if n in wanted]


def _options(args: argparse.Namespace) -> Any:
    from .benchlib.scenarios import Options

    for name in ("runs", "single_n", "bulk_n", "file_kib"):
        if getattr(args, name) < 1:
            raise SystemExit(f"lamin-nb bench: --{name.replace('_', '-')} must be at least 1")
    if (
        args.size_gib <= 0
        or args.anndata_mb <= 0
        or (args.check_n is not None and args.check_n < 1)
    ):
        raise SystemExit("lamin-nb bench: sizes and counts must be positive")
    return Options(
        runs=args.runs,
        single_n=args.single_n,
        bulk_n=args.bulk_n,
        file_kib=args.file_kib,
        size_gib=args.size_gib,
        anndata_mb=args.anndata_mb,
        check_n=args.check_n,
    )


def environment(target: Any, scratch: Any) -> dict[str, Any]:
    from .benchlib.results import load

    return {
        "backend": target.label,
        "storage": scratch.root,
        "db": mask_url(scratch.db_url) if scratch.db_url else "SQLite (private temp folder)",
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_avg_start": load(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(argv) if argv is not None else None)
    names, options = _scenarios(args.scenarios), _options(args)
    from .benchlib.results import json_lines, load, table
    from .benchlib.scenarios import SCENARIOS, Context
    from .benchlib.scratch import Scratch, resolve_target

    target = resolve_target(args.storage, args.db, use_current=False)
    scratch = Scratch(target, "bench")
    if not scratch.open_or_explain("bench"):
        return 2
    try:
        env = environment(target, scratch)
        print(f"lamin-nb bench on {target.label}: {scratch.describe()}", flush=True)
        print(
            f"python {env['python']}, {env['cpus']} CPU(s), load average "
            f"{env['load_avg_start']:.2f}, {options.runs} run(s) per scenario",
            flush=True,
        )
        if args.scale is not None:
            return _scale(scratch, args)
        ctx = Context(scratch, options)
        results = [_run(name, SCENARIOS[name], ctx) for name in names]
        ctx.bounds.drop()
    finally:
        scratch.close()
    env["load_avg_end"] = load()
    print()
    print(table(results))
    print(f"\nload average: {env['load_avg_start']:.2f} at start, {env['load_avg_end']:.2f} at end")
    left = scratch.leftovers()
    print("scratch area removed" if not left else "WARNING: left behind: " + "; ".join(left))
    if args.json:
        print(json_lines(results, env))
    return (
        0
        if all(r.status == "ok" or r.status.startswith("n/a") for r in results) and not left
        else 1
    )


def _scale(scratch: Any, args: argparse.Namespace) -> int:
    import json

    from .benchlib import scalebench

    if args.scale < 1 or args.scale_batch < 1:
        raise SystemExit("lamin-nb bench: --scale and --scale-batch must be at least 1")
    result = scalebench.run(scratch, args.scale, args.runs, args.scale_batch)
    if args.json:
        print(json.dumps(result))
    return 0


def _run(name: str, scenario: Any, ctx: Any) -> Any:
    from .benchlib.results import Result

    print(f"  running {name} ...", file=sys.stderr, flush=True)
    try:
        return scenario(ctx)
    except Exception as exc:  # noqa: BLE001 - one failing scenario must not hide the others
        return Result(name, "", "", status=f"error: {describe(exc)}"[:200])
