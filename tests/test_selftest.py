"""``lamin-nb selftest`` on every backend combination, as a user runs it: a real subprocess that
kills its own children at every fault point. It must pass, and leave the user's instance, the
storage and the database server exactly as it found them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import lamin_nb as ln
from tests.support.servers import pg_admin

VERDICT = re.compile(
    r"^selftest PASSED on (SQLite|PostgreSQL) \+ (local|S3): all \d+ checks held \(I1-I3\)$", re.M
)
TOKEN = re.compile(r"lamin-nb-selftest-([0-9a-f]{8})")
EXPECTED_CHECKS = {
    "after_reserve",
    "mid_upload",
    "after_upload",
    "before_commit",
    "after_commit",
    "mid_delete",
    "after_object_delete",
    "denied write",
    "earlier artifacts",
    "cleanup",
}
USER_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "UserRule",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:DeleteObject",
            "Resource": "arn:aws:s3:::BUCKET/locked/*",
        }
    ],
}


def lamin_nb_cli(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("lamin-nb")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "lamin_nb.cli"]
    return subprocess.run(command + list(args), capture_output=True, text=True, timeout=600)


def storage_snapshot(backend) -> list[str]:
    """Every object under the bucket, or every file under the storage folder's parent."""
    if backend.is_s3:
        return sorted(backend.s3.keys(backend.bucket))
    base = Path(backend.storage).parent
    return sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file())


def pg_names(pattern: str) -> list[str]:
    with pg_admin() as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", (pattern,)
            )
        ]


def test_selftest_passes_and_leaves_everything_as_it_was(backend, make_file, lamin_home):
    contents = {}
    for i in range(2):
        artifact = ln.Artifact(make_file(), key=f"user/{i}.bin").save()
        contents[artifact.uid] = Path(artifact.cache()).read_bytes()
    if backend.is_s3:
        policy = json.dumps(USER_POLICY).replace("BUCKET", backend.bucket)
        backend.s3.client().put_bucket_policy(Bucket=backend.bucket, Policy=policy)
    files_before = storage_snapshot(backend)
    settings_before = sorted(p.name for p in lamin_home.rglob("*"))

    done = lamin_nb_cli("selftest", "--json")  # no arguments: the current instance's backend

    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert VERDICT.search(done.stdout), output
    label = (
        ("PostgreSQL" if backend.db else "SQLite") + " + " + ("S3" if backend.is_s3 else "local")
    )
    assert f"on {label}" in done.stdout
    checks = {c["check"]: c for c in json.loads(done.stdout.strip().splitlines()[-1])["checks"]}
    assert set(checks) == EXPECTED_CHECKS
    assert all(c["held"] and c["testable"] for c in checks.values()), checks
    # the scratch area is gone: storage prefix, scratch database, settings
    token = TOKEN.search(done.stdout).group(1)
    assert storage_snapshot(backend) == files_before
    assert pg_names(f"lamin_nb_selftest_{token}") == []
    assert sorted(p.name for p in lamin_home.rglob("*")) == settings_before
    # the user's instance is untouched
    assert {a.uid for a in ln.Artifact.filter().all()} == set(contents)
    for uid, data in contents.items():
        assert Path(ln.Artifact.get(uid).cache()).read_bytes() == data
    assert ln.check(deep=True).is_consistent
    if backend.is_s3:
        now = backend.s3.client().get_bucket_policy(Bucket=backend.bucket)["Policy"]
        assert json.loads(now) == json.loads(policy)


def test_selftest_without_an_instance_uses_a_temporary_backend(tmp_path):
    done = lamin_nb_cli("selftest")
    assert done.returncode == 0, done.stdout + done.stderr
    assert VERDICT.search(done.stdout)
    assert "SQLite + local (temporary SQLite + local folder)" in done.stdout
    root = re.search(r"scratch: storage (\S+),", done.stdout).group(1)
    assert not Path(root).exists()


def test_selftest_reports_an_unreachable_database_without_a_traceback():
    done = lamin_nb_cli("selftest", "--db", "postgresql://nobody:s3cret@127.0.0.1:1/none")
    assert done.returncode == 2
    assert "cannot set up a scratch instance on PostgreSQL + local" in done.stderr
    assert "Traceback" not in done.stderr and "s3cret" not in done.stdout + done.stderr
