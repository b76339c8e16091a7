"""Load: N processes x M saves on PostgreSQL + S3 with overlapping content and keys and random
failures injected; reports throughput and proves that I1-I3 hold and nothing committed was lost.

    .venv/bin/python benchmarks/load_test.py [--procs 8] [--saves 250] [--fault-rate 0.1]
                                             [--kill] [--s3 moto|seaweedfs] [--json]

Each worker is a separate process connected to one shared instance (PostgreSQL + an S3 server
started here: moto, or SeaweedFS, which keeps objects on disk as a real server does). A
worker's save is single or bulk (1-5 items), its content drawn from a shared pool and its key
from a shared pool, so workers race on the same content (dedup) and the same keys (versions).
Failures are real:
- fault points switched on at random for a save (``faults.configure('<point>:raise')``),
  including after_commit, where the save commits but an error follows;
- a bucket policy denying s3:PutObject for objects whose uid starts with some letters;
- with --kill, one worker is SIGKILLed mid-save (a crashed writer; its leases expire).
Each worker records every uid it saw committed. At the end (no writer running) repair runs,
and the report shows: throughput, every recorded uid present with its object, no duplicate
content, one latest version per key with strictly ordered versions, I1-I3.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FAULT_POINTS = ("after_reserve", "mid_upload", "after_upload", "before_commit", "after_commit")
KILL_POINTS = ("after_reserve", "mid_upload", "after_upload", "before_commit")
DENIED_FIRST_CHARS = "0Z"  # PutObject denied for objects whose uid starts with these
PG_ADMIN_URL = os.environ.get(
    "LAMIN_NB_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@dataclass
class Plan:
    """What the workers do; the same plan on every worker, with its own seed."""

    procs: int = 8
    saves: int = 250
    n_content: int = 0  # 0: one per planned save, so about half of the picks are new content
    n_keys: int = 60
    fault_rate: float = 0.1
    kill: bool = False
    seed: int = 7
    lease_seconds: int = 10


@dataclass
class Outcome:
    workers: int = 0
    calls: int = 0
    items: int = 0
    committed_items: int = 0
    failed_items: int = 0
    faults_configured: Counter[str] = field(default_factory=Counter)
    faults_failed_a_save: int = 0  # armed faults whose save reached the point and failed
    denied_failures: int = 0
    killed_workers: int = 0
    unexpected: list[str] = field(default_factory=list)
    committed_uids: set[str] = field(default_factory=set)
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds per save call

    def latency_ms(self, quantile: float) -> float:
        """A quantile of the save calls' wall time, in milliseconds (nearest rank)."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, round(quantile * (len(ordered) - 1)))]

    @property
    def faults_injected(self) -> int:
        """Fault points armed (a deduplicated save never reaches them), uploads denied by the
        bucket policy, workers killed."""
        return sum(self.faults_configured.values()) + self.denied_failures + self.killed_workers


# -- the parent ------------------------------------------------------------------------------


def make_pool(folder: Path, plan: Plan) -> list[str]:
    """Shared content: every worker picks from these files, so content overlaps."""
    rng = random.Random(plan.seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(plan.n_content or plan.procs * plan.saves):
        path = folder / f"content-{i:04d}.bin"
        path.write_bytes(rng.randbytes(rng.randrange(1024, 16 * 1024)))
        paths.append(str(path))
    return paths


def deny_first_chars(client: Any, bucket: str, managed_prefix: str) -> None:
    """A real bucket policy: PutObject denied under the managed prefix for some uid starts."""
    resources = [f"arn:aws:s3:::{bucket}/{managed_prefix}{c}*" for c in DENIED_FIRST_CHARS]
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": resources}
        ],
    }
    client.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))


def run_workers(plan: Plan, pool: list[str], workdir: Path, env: dict[str, str]) -> Outcome:
    """Start every worker at once, wait for all, and gather what they recorded."""
    workdir.mkdir(parents=True, exist_ok=True)
    keys = [f"shared/k{i:03d}.bin" for i in range(plan.n_keys)]
    procs = []
    started = time.monotonic()
    for w in range(plan.procs):
        spec = {
            "seed": plan.seed * 1000 + w,
            "saves": plan.saves,
            "pool": pool,
            "keys": keys,
            "fault_rate": plan.fault_rate,
            "record": str(workdir / f"worker-{w}.jsonl"),
            "kill_at": (plan.saves // 2 if plan.kill and w == 0 else None),
        }
        child_env = {**env, "LAMIN_NB_LEASE_SECONDS": str(plan.lease_seconds)}
        spec_file = workdir / f"worker-{w}.spec.json"  # the pool is too long for argv
        spec_file.write_text(json.dumps(spec))
        procs.append(
            subprocess.Popen(
                [sys.executable, __file__, "--worker", str(spec_file)],
                env=child_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outcome = Outcome(workers=plan.procs)
    for w, proc in enumerate(procs):
        out, err = proc.communicate(timeout=3600)
        if proc.returncode == -signal.SIGKILL:
            outcome.killed_workers += 1
        elif proc.returncode != 0:
            outcome.unexpected.append(f"worker {w} exited {proc.returncode}: {err[-2000:]}")
        _gather(outcome, Path(workdir / f"worker-{w}.jsonl"))
    outcome.seconds = time.monotonic() - started
    return outcome


def _gather(outcome: Outcome, record: Path) -> None:
    if not record.exists():
        return
    for line in record.read_text().splitlines():
        call = json.loads(line)
        outcome.calls += 1
        outcome.items += len(call["items"])
        outcome.latencies.append(call.get("seconds", 0.0))
        if call["fault"]:
            outcome.faults_configured[call["fault"]] += 1
            outcome.faults_failed_a_save += int(call["fired"])
        if call["unexpected"]:
            outcome.unexpected.append(call["unexpected"])
        for item in call["items"]:
            if item["status"] == "committed":
                outcome.committed_items += 1
                outcome.committed_uids.add(item["uid"])
            else:
                outcome.failed_items += 1
                outcome.denied_failures += int(item.get("denied", False))


def verify(committed_uids: set[str]) -> dict[str, Any]:
    """After every writer stopped: repair, then the invariants and the committed uids."""
    from sqlalchemy import func, select

    import lamin_nb as ln
    from lamin_nb.core.instance import current
    from lamin_nb.core.models import COMMITTED, ArtifactRow
    from lamin_nb.core.rows import count_by_status

    plan = ln.repair(dry_run=False, grace_seconds=0)
    report = ln.check(deep=True)
    inst = current()
    with inst.db.read() as session:
        statuses = count_by_status(session)
        rows = session.execute(
            select(
                ArtifactRow.uid,
                ArtifactRow.suffix,
                ArtifactRow.hash,
                ArtifactRow.key,
                ArtifactRow.version,
                ArtifactRow.is_latest,
                ArtifactRow.status,
            )
        ).all()
        dup_hashes = (
            session.execute(
                select(ArtifactRow.hash)
                .where(ArtifactRow.status == COMMITTED)
                .group_by(ArtifactRow.hash)
                .having(func.count() > 1)
            )
            .scalars()
            .all()
        )
    objects = {info.name for info in inst.storage.list_objects()}
    by_uid = {r.uid: r for r in rows}
    lost = sorted(
        u
        for u in committed_uids
        if u not in by_uid
        or by_uid[u].status != COMMITTED
        or f"{u}{by_uid[u].suffix}" not in objects
    )
    return {
        "repair": plan.summary(),
        "consistent": report.is_consistent,
        "check": report.summary(),
        "rows_by_status": statuses,
        "committed_rows": sum(1 for r in rows if r.status == COMMITTED),
        "lost": lost,
        "duplicate_content": list(dup_hashes),
        "version_problems": _version_problems(rows),
    }


def _version_problems(rows: list[Any]) -> list[str]:
    """Per key: distinct versions and exactly one latest, the highest committed one."""
    problems = []
    per_key: dict[str, list[Any]] = {}
    for r in rows:
        if r.key is not None:
            per_key.setdefault(r.key, []).append(r)
    for key, family in per_key.items():
        versions = [r.version for r in family]
        if len(versions) != len(set(versions)):
            problems.append(f"{key}: repeated versions {sorted(versions)}")
        latest = [r for r in family if r.is_latest]
        top = max(r.version for r in family)
        if len(latest) != 1 or latest[0].version != top:
            problems.append(f"{key}: latest {[r.version for r in latest]}, highest {top}")
    return problems


# -- a worker ---------------------------------------------------------------------------------


def worker(spec: dict[str, Any]) -> int:
    import lamin_nb as ln
    from lamin_nb.core import faults

    ln.connect()
    rng = random.Random(spec["seed"])
    pool, keys = spec["pool"], spec["keys"]
    with open(spec["record"], "w") as record:
        for n in range(spec["saves"]):
            picks = rng.sample(range(len(pool)), rng.choice([1, 1, 1, 2, 3, 5]))
            sources = [pool[c] for c in picks]
            point = rng.choice(FAULT_POINTS) if rng.random() < spec["fault_rate"] else None
            if spec["kill_at"] == n:
                # new content, so the save gets past dedup to the point where it dies
                fresh = Path(spec["record"]).with_suffix(".fresh.bin")
                fresh.write_bytes(rng.randbytes(4096))
                sources.append(str(fresh))
                point = rng.choice(KILL_POINTS)
                faults.configure(f"{point}:kill")
            else:
                faults.configure(f"{point}:raise" if point else None)
            artifacts = [
                ln.Artifact(s, key=rng.choice(keys) if rng.random() < 0.7 else None)
                for s in sources
            ]
            entry = _one_call(ln, artifacts)
            entry["fault"] = point
            faults.configure(None)
            record.write(json.dumps(entry) + "\n")
            record.flush()
    return 0


def _one_call(ln: Any, artifacts: list[Any]) -> dict[str, Any]:
    unexpected, errors = None, {}
    started = time.perf_counter()
    try:
        if len(artifacts) == 1:
            artifacts[0].save()
        else:
            ln.save(artifacts)
    except ln.SaveError as exc:
        if exc.report is not None:
            errors = {id(a): str(e) for a, e in exc.report.failed}
    except Exception as exc:  # noqa: BLE001 - anything but SaveError is a bug to report
        unexpected = f"{type(exc).__name__}: {exc}"[:500]
    items = []
    for a in artifacts:
        message = errors.get(id(a), "")
        items.append(
            {
                "uid": a.uid,
                "hash": a.hash,
                "key": a.key,
                "status": a.status,
                "denied": "Forbidden" in message or "Access Denied" in message,
            }
        )
    fired = any("injected fault" in message for message in errors.values())
    seconds = time.perf_counter() - started
    return {"items": items, "unexpected": unexpected, "fired": fired, "seconds": seconds}


# -- the stand-alone run ------------------------------------------------------------------------


def _start_moto(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    exe = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen(
        [str(exe), "-H", "127.0.0.1", "-p", str(port)],
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1).read()
            return proc, endpoint
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("moto did not start")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--procs", type=int, default=8)
    parser.add_argument("--saves", type=int, default=250)
    parser.add_argument("--fault-rate", type=float, default=0.1)
    parser.add_argument("--kill", action="store_true", help="SIGKILL one worker mid-save")
    parser.add_argument("--s3", choices=("moto", "seaweedfs"), default="moto")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.worker:
        return worker(json.loads(Path(args.worker).read_text()))
    plan = Plan(procs=args.procs, saves=args.saves, fault_rate=args.fault_rate, kill=args.kill)
    with tempfile.TemporaryDirectory(prefix="lamin-load-") as tmp:
        return _standalone(plan, Path(tmp), args.json, args.s3)


def _start_seaweed(tmp: Path) -> tuple[Any, str]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.support.seaweed import SeaweedServer

    server = SeaweedServer(tmp / "seaweed")
    server.start()
    return server, server.endpoint


def _standalone(plan: Plan, tmp: Path, as_json: bool, s3: str = "moto") -> int:
    import boto3
    import psycopg

    if s3 == "moto":
        moto, endpoint = _start_moto(tmp / "moto.log")
        stop = lambda: os.killpg(moto.pid, signal.SIGKILL)  # noqa: E731
    else:
        weed, endpoint = _start_seaweed(tmp)
        stop = weed.stop
    db_name = f"lamin_load_{secrets.token_hex(4)}"
    env = {
        **os.environ,
        "LAMIN_NB_HOME": str(tmp / "home"),
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",  # moto takes any; the SeaweedFS helper's identity
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    os.environ.update(env)
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    try:
        import lamin_nb as ln

        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        client.create_bucket(Bucket="load")
        inst = ln.init(storage="s3://load/team", db=PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + db_name)
        try:
            deny_first_chars(client, "load", "team/.lamindb/")
        except Exception as exc:  # noqa: BLE001 - a server without bucket policies
            print(f"(no denied uploads: the server refused a bucket policy: {exc})")
        env["LAMIN_NB_INSTANCE"] = inst.name
        pool = make_pool(tmp / "pool", plan)
        outcome = run_workers(plan, pool, tmp / "records", env)
        try:
            client.delete_bucket_policy(Bucket="load")
        except Exception:  # noqa: BLE001, S110 - none was set
            pass
        result = verify(outcome.committed_uids)
        inst.close()
    finally:
        stop()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
    return _report(plan, outcome, result, as_json)


def _report(plan: Plan, outcome: Outcome, result: dict[str, Any], as_json: bool) -> int:
    ok = (
        result["consistent"]
        and not result["lost"]
        and not result["duplicate_content"]
        and not result["version_problems"]
        and not outcome.unexpected
        and set(result["rows_by_status"]) <= {"committed"}
    )
    figures = {
        "plan": asdict(plan),
        "seconds": round(outcome.seconds, 2),
        "save_calls": outcome.calls,
        "items": outcome.items,
        "items_committed": outcome.committed_items,
        "items_failed": outcome.failed_items,
        "calls_per_second": round(outcome.calls / outcome.seconds, 1),
        "items_per_second": round(outcome.items / outcome.seconds, 1),
        "save_latency_p50_ms": round(outcome.latency_ms(0.5), 1),
        "save_latency_p99_ms": round(outcome.latency_ms(0.99), 1),
        "load_average": round(os.getloadavg()[0], 1),
        "faults_injected": outcome.faults_injected,
        "fault_points_armed": dict(outcome.faults_configured),
        "saves_failed_by_a_fault_point": outcome.faults_failed_a_save,
        "denied_uploads": outcome.denied_failures,
        "killed_workers": outcome.killed_workers,
        "unexpected_errors": outcome.unexpected[:5],
        "distinct_committed_uids": len(outcome.committed_uids),
        "lost": len(result["lost"]),
        **result,
        "ok": ok,
    }
    if as_json:
        print(json.dumps(figures, default=str))
    else:
        for name, value in figures.items():
            print(f"{name:>26}: {value}")
        print(
            f"\n{'OK' if ok else 'FAILED'}: {outcome.calls} save calls by {plan.procs} "
            f"processes in {outcome.seconds:.1f} s ({figures['items_per_second']} items/s, "
            f"p50 {figures['save_latency_p50_ms']} ms, p99 {figures['save_latency_p99_ms']} ms), "
            f"{outcome.faults_injected} faults injected, {len(result['lost'])} committed "
            "artifacts lost"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
