"""Deny writes to the scratch managed prefix for real, then check a save leaves nothing behind.

S3: a bucket policy statement denying ``s3:PutObject`` on the scratch prefix, added to any
policy the bucket already has (so nothing the owner set is weakened meanwhile) and replaced by
exactly that original policy afterwards. Local: ``chattr +i`` on the managed folder when running
as root (root ignores permission bits), else ``chmod a-w``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..core.errors import describe
from .faultpoints import Outcome
from .scratch import Scratch

SID = "LaminNbSelftestDenyWrites"


class NotTestable(Exception):
    """This backend (or these credentials) cannot deny writes for the test."""


@contextmanager
def denied_writes(scratch: Scratch, problems: list[str]) -> Iterator[str]:
    """Yield a description of how writes are denied; restoration problems go to ``problems``."""
    manager = _bucket_policy if scratch.target.is_s3 else _frozen_folder
    with manager(scratch, problems) as how:
        yield how


@contextmanager
def _frozen_folder(scratch: Scratch, problems: list[str]) -> Iterator[str]:
    folder = Path(scratch.managed)
    use_chattr = os.geteuid() == 0 and shutil.which("chattr") is not None
    if use_chattr:
        done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
        if done.returncode != 0:
            raise NotTestable(f"chattr +i failed: {done.stderr.strip()}")
        how = "chattr +i on the managed folder"
    else:
        os.chmod(folder, 0o555)
        how = "chmod a-w on the managed folder"
    try:
        if _writable(folder):
            raise NotTestable(f"{how} did not stop writes here")
        yield how
    finally:
        if use_chattr:
            subprocess.run(["chattr", "-i", str(folder)], capture_output=True, check=False)
        os.chmod(folder, 0o755)
        if not _writable(folder):
            problems.append(f"could not make {folder} writable again")


def _writable(folder: Path) -> bool:
    probe = folder / ".selftest-probe"
    try:
        probe.write_bytes(b"")
    except OSError:
        return False
    probe.unlink()
    return True


def _split(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    return bucket, prefix


def _get_policy(fs: Any, bucket: str) -> str | None:
    try:
        return fs.call_s3("get_bucket_policy", Bucket=bucket)["Policy"]
    except FileNotFoundError:  # NoSuchBucketPolicy
        return None


@contextmanager
def _bucket_policy(scratch: Scratch, problems: list[str]) -> Iterator[str]:
    fs = scratch.instance.storage.fs
    bucket, prefix = _split(scratch.managed)
    try:
        original = _get_policy(fs, bucket)
    except OSError as exc:
        raise NotTestable(f"cannot read the bucket policy: {describe(exc)}") from exc
    policy = json.loads(original) if original else {"Version": "2012-10-17", "Statement": []}
    statements = policy.get("Statement", [])
    policy["Statement"] = ([statements] if isinstance(statements, dict) else list(statements)) + [
        {
            "Sid": SID,
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:PutObject",
            "Resource": f"arn:aws:s3:::{bucket}/{prefix}/*",
        }
    ]
    try:
        fs.call_s3("put_bucket_policy", Bucket=bucket, Policy=json.dumps(policy))
    except OSError as exc:
        raise NotTestable(f"cannot set a bucket policy: {describe(exc)}") from exc
    try:
        _require_denied(fs, f"{scratch.managed}/selftest-probe")
        yield f"bucket policy denying s3:PutObject on s3://{bucket}/{prefix}/"
    finally:
        problems.extend(_restore_policy(fs, bucket, original))


def _require_denied(fs: Any, probe: str) -> None:
    try:
        fs.pipe_file(probe, b"")
    except PermissionError:
        return
    fs.rm_file(probe)
    raise NotTestable("the server accepted a write the bucket policy denies")


def _restore_policy(fs: Any, bucket: str, original: str | None) -> list[str]:
    try:
        if original is None:
            fs.call_s3("delete_bucket_policy", Bucket=bucket)
        else:
            fs.call_s3("put_bucket_policy", Bucket=bucket, Policy=original)
        now = _get_policy(fs, bucket)
    except OSError as exc:
        return [f"could not restore the policy of bucket {bucket}: {describe(exc)}"]
    same = now == original or (now and original and json.loads(now) == json.loads(original))
    return [] if same else [f"the policy of bucket {bucket} differs from before the selftest"]


def run_denied_write(scratch: Scratch) -> Outcome:
    """A denied save and a denied bulk save fail with SaveError and leave nothing behind."""
    import lamin_nb as ln

    sources = []
    for i in range(3):
        path = scratch.work / f"denied{i}.bin"
        path.write_bytes(os.urandom(8192))
        sources.append(path)
    artifacts = [ln.Artifact(p, key=f"selftest/denied/{p.name}") for p in sources]
    problems: list[str] = []
    errors: list[str] = []
    try:
        with denied_writes(scratch, problems) as how:
            for attempt in (lambda: artifacts[0].save(), lambda: ln.save(artifacts[1:])):
                try:
                    attempt()
                    problems.append("a save succeeded although writes were denied")
                except ln.SaveError as exc:
                    errors.append(_root_cause(exc))
    except NotTestable as exc:
        return Outcome("denied write", True, f"not testable here: {exc}", testable=False)
    problems += _leftovers(scratch, [a.uid for a in artifacts])
    detail = f"{how}: SaveError ({errors[0] if errors else 'none'}); "
    detail += "nothing left behind" if not problems else "something was left behind"
    return Outcome("denied write", not problems, detail, problems)


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = describe(exc)
    return text if len(text) <= 100 else text[:97] + "..."


def _leftovers(scratch: Scratch, uids: list[str]) -> list[str]:
    import lamin_nb as ln

    from ..core import rows

    found = []
    with scratch.instance.db.read() as session:
        left_rows = rows.statuses(session, uids)
    if left_rows:
        found.append(f"rows left: {left_rows}")
    names = [info.name for info in scratch.instance.storage.list_objects()]
    objects = [n for n in names if any(n.startswith(uid) for uid in uids)]
    if objects:
        found.append(f"objects left: {', '.join(objects)}")
    report = ln.check()
    if not report.is_consistent or report.pending:
        found.append(report.summary())
    return found
