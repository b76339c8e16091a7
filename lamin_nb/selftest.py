"""``lamin-nb selftest``: does the guarantee hold on this backend?

In a scratch instance (a prefix ``lamin-nb-selftest-<token>`` under the storage root, a scratch
database or schema on the same server, a private settings folder), for each fault point of the
save and delete protocols a child process is killed (SIGKILL) at that point; then check, repair
(grace 0) and a deep check must show I1-I3. A save under denied writes (bucket policy on S3,
an immutable folder locally) must fail and leave nothing behind. Everything is removed at the
end. Exit code 0 only if every check held.

Without --storage and --db: the current instance's storage root and database (its data is
never touched: the scratch prefix and database sit beside it), else SQLite + a temp folder.
With only one of them, the other is the embedded default (a temp folder or a SQLite file).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING

from .core.errors import describe

if TYPE_CHECKING:
    from .benchlib.faultpoints import Outcome
    from .benchlib.scratch import Scratch


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lamin-nb selftest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--storage", default=None, help="local folder or s3://bucket/prefix")
    p.add_argument("--db", default=None, help="postgresql://... or sqlite:///...")
    p.add_argument("--json", action="store_true", help="also print the results as one JSON line")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(argv) if argv is not None else None)
    from .benchlib.faultpoints import Outcome
    from .benchlib.scratch import Scratch, resolve_target

    target = resolve_target(args.storage, args.db, use_current=True)
    print(f"lamin-nb selftest on {target.label} ({target.origin})", flush=True)
    scratch = Scratch(target, "selftest")
    if not scratch.open_or_explain("selftest"):
        return 2
    try:
        print(f"scratch: {scratch.describe()}", flush=True)
        outcomes = run_checks(scratch)
    except Exception as exc:  # noqa: BLE001 - e.g. the first save fails: report, then clean up
        outcomes = [Outcome("set-up", False, "error", [describe(exc)])]
    finally:
        scratch.close()
    left = scratch.leftovers()
    outcomes.append(
        Outcome(
            "cleanup",
            not left,
            "scratch area removed" if not left else "left behind: " + "; ".join(left),
            left,
        )
    )
    for outcome in outcomes:
        _show(outcome)
    print(verdict(outcomes, target.label))
    if args.json:
        print(json.dumps({"backend": target.label, "checks": [o.to_dict() for o in outcomes]}))
    return 0 if all(o.held for o in outcomes) else 1


def run_checks(scratch: Scratch) -> list[Outcome]:
    from .benchlib.deny import run_denied_write
    from .benchlib.faultpoints import POINTS, check_baseline, run_point, save_baseline

    baseline = save_baseline(scratch)
    outcomes = [_guarded(p, partial(run_point, scratch, p)) for p in POINTS]
    outcomes.append(_guarded("denied write", partial(run_denied_write, scratch)))
    outcomes.append(check_baseline(baseline))
    return outcomes


def _guarded(name: str, run: Callable[[], Outcome]) -> Outcome:
    from .benchlib.faultpoints import Outcome

    print(f"  {name} ...", file=sys.stderr, flush=True)
    try:
        return run()
    except Exception as exc:  # noqa: BLE001 - an error in one check fails that check only
        return Outcome(name, False, "error", [describe(exc)])


def _show(outcome: Outcome) -> None:
    state = "n/a" if not outcome.testable else "held" if outcome.held else "FAILED"
    print(f"  {outcome.name:<20} {state:<7} {outcome.detail}")
    for problem in outcome.problems:
        print(f"  {'':<20} {'':<7} - {problem}")


def verdict(outcomes: list[Outcome], label: str) -> str:
    failed = [o.name for o in outcomes if not o.held]
    untested = [o.name for o in outcomes if not o.testable]
    if failed:
        return (
            f"selftest FAILED on {label}: {len(failed)} of {len(outcomes)} checks did not "
            f"hold: {', '.join(failed)}"
        )
    note = f" ({', '.join(untested)}: not testable here)" if untested else ""
    return f"selftest PASSED on {label}: all {len(outcomes)} checks held (I1-I3){note}"
