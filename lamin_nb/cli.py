"""``lamin-nb``: init | connect | info | save | ls | check | repair | demo."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from .core.errors import LaminNbError, describe


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lamin-nb", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("init", help="create (or connect to) an instance")
    p.add_argument("--storage", required=True, help="local folder or s3://bucket/prefix")
    p.add_argument("--db", default=None, help="postgresql://... or sqlite:///... (default: SQLite)")
    p.add_argument("--name", default=None)
    p = sub.add_parser("connect", help="make an existing instance current")
    p.add_argument("name", nargs="?")
    sub.add_parser("info", help="show the current instance")
    p = sub.add_parser("save", help="save files (one alone, several in bulk)")
    p.add_argument("paths", nargs="+")
    p.add_argument("--key", default=None, help="key (one file) or key prefix (several)")
    p.add_argument("--description", default=None)
    p.add_argument("--atomic", action="store_true", help="all or nothing")
    p = sub.add_parser("ls", help="list artifacts")
    p.add_argument("--key", default=None, help="key prefix")
    p.add_argument("--limit", type=_at_least_one, default=50, help="newest N (at least 1)")
    p = sub.add_parser("check", help="compare database and storage (exit 1 if inconsistent)")
    p.add_argument("--deep", action="store_true", help="re-hash every object")
    p.add_argument(
        "--since-last",
        action="store_true",
        help="only what changed since the last full check (incremental)",
    )
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("repair", help="show (and with --apply run) the repair plan")
    p.add_argument("--apply", action="store_true")
    p.add_argument("--grace", type=float, default=3600.0, help="seconds (0: no writer is running)")
    p.add_argument("--mark-lost", action="store_true", help="mark rows whose object is missing")
    p.add_argument("--purge", action="store_true", help="delete quarantined orphans past retention")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("demo", help="save a file, an AnnData and a DataFrame, show a rollback")
    p.add_argument("--storage", default=None, help="default: a new temporary folder")
    for name, help_text in (
        ("bench", "measure speed (see benchmarks)"),
        ("selftest", "prove the guarantee on this backend"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("bench", "selftest"):
        # argparse.REMAINDER rejects a leading option (--runs 1): hand the rest over untouched
        args = argparse.Namespace(command=argv[0], args=argv[1:])
    else:
        args = _parser().parse_args(argv)
    try:
        return int(_COMMANDS[args.command](args) or 0)
    except (LaminNbError, OSError, ValueError, TypeError) as exc:
        print(f"lamin-nb {args.command}: {describe(exc)}", file=sys.stderr)
        return 2


def _init(args: argparse.Namespace) -> int:
    import lamin_nb as ln

    inst = ln.init(storage=args.storage, db=args.db, name=args.name)
    print(f"current instance: {inst!r}")
    return 0


def _connect(args: argparse.Namespace) -> int:
    import lamin_nb as ln

    print(f"current instance: {ln.connect(args.name)!r}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from .core.instance import current
    from .core.rows import count_by_status

    inst = current()
    with inst.db.read() as session:
        counts = count_by_status(session)
    print(repr(inst))
    print("rows by status: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"))
    for line in _local_usage():
        print(line)
    return 0


def _local_usage() -> list[str]:
    """Sizes of what lamin_nb keeps in the settings folder besides settings."""
    from .core.localfiles import CACHE_LIMIT_ENV, cache_limit, cache_root, usage
    from .core.settings import home

    staging, cache = usage(home() / "staging"), usage(cache_root())
    return [
        f"staging files: {staging.files} ({_human(staging.bytes)}) in {home() / 'staging'}",
        f"S3 read cache: {cache.files} files ({_human(cache.bytes)} of at most "
        f"{_human(cache_limit())}, {CACHE_LIMIT_ENV}) in {cache_root()}",
    ]


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _save(args: argparse.Namespace) -> int:
    from pathlib import Path

    import lamin_nb as ln

    from .core.callbacks import TextProgress
    from .core.validate import key_of_item

    many = len(args.paths) > 1
    artifacts = []
    for path in args.paths:
        # the core's rule: one path takes --key as its key (a folder's: its key prefix);
        # several paths, or a --key ending in '/', put each name under it
        key = key_of_item(args.key, Path(path).name, many)
        if Path(path).is_dir():
            artifacts += ln.Artifact.from_dir(path, key=key, description=args.description)
        else:
            artifacts.append(ln.Artifact(path, key=key, description=args.description))
    try:
        # a failed item is saved by running the same command again (the others dedup)
        ln.save(artifacts, atomic=args.atomic, callback=TextProgress(sys.stdout, retry_hint=False))
    except ln.SaveError:
        return 1
    return 0


def _ls(args: argparse.Namespace) -> int:
    import lamin_nb as ln

    query = ln.Artifact.filter(key__startswith=args.key) if args.key else ln.Artifact.filter()
    artifacts = query.all()
    for a in artifacts[-args.limit :]:
        print(
            f"{a.uid}  v{a.version}{'*' if a.is_latest else ' '} {a.size or 0:>12}  "
            f"{a.otype or '-':<9} {a.key or '-'}  {a.description or ''}".rstrip()
        )
    print(f"{len(artifacts)} artifact(s)")
    return 0


def _check(args: argparse.Namespace) -> int:
    import lamin_nb as ln

    report = ln.check(deep=args.deep, since="last" if args.since_last else None)
    print(json.dumps(report.to_dict(), default=str) if args.json else repr(report))
    return 0 if report.is_consistent else 1


def _repair(args: argparse.Namespace) -> int:
    import lamin_nb as ln

    plan = ln.repair(
        dry_run=not args.apply, grace_seconds=args.grace, mark_lost=args.mark_lost, purge=args.purge
    )
    print(json.dumps(plan.to_dict(), default=str) if args.json else repr(plan))
    if plan.after is not None:
        print(plan.after.summary())
    return 0 if all(a.error is None for a in plan.actions) else 1


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args.storage)


def _delegate(module: str) -> Any:
    def run(args: argparse.Namespace) -> int:
        from importlib import import_module

        return int(import_module(module).main(args.args) or 0)

    return run


_COMMANDS = {
    "init": _init,
    "connect": _connect,
    "info": _info,
    "save": _save,
    "ls": _ls,
    "check": _check,
    "repair": _repair,
    "demo": _demo,
    "bench": _delegate("lamin_nb.bench"),
    "selftest": _delegate("lamin_nb.selftest"),
}


if __name__ == "__main__":
    sys.exit(main())
