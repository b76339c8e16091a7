"""Concurrent writers in separate processes, with overlapping content and keys (DESIGN §4).

Each writer saves files chosen from a shared pool under keys from a shared list, so the same
content arrives from several processes at once (dedup) and every key gets new versions from
several processes (version order). Meanwhile this process runs ``check`` over and over: a
live check may see uploads in flight, but never a missing object or an orphan.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

import lamin_nb as ln
from lamin_nb.core.artifact import version_suffix
from lamin_nb.core.hashing import hash_file
from tests.support.crashes import (
    assert_i1_i2_i3,
    finish_child,
    rows_by_status,
    start_child,
)

N_FILES = 150
KEYS = [f"shared/k{i}.bin" for i in range(10)]


def _pool(tmp_path: Path) -> list[str]:
    folder = tmp_path / "pool"
    folder.mkdir()
    paths = []
    for i in range(N_FILES):
        path = folder / f"f{i}.bin"
        path.write_bytes(os.urandom(2048))
        paths.append(str(path))
    return paths


def _writers(files: list[str], writers: int, saves: int) -> list[dict[str, Any]]:
    return [
        {"op": "writer", "files": files, "keys": KEYS, "n": saves, "seed": w}
        for w in range(writers)
    ]


def _run(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Start every child at once; check over and over until all are done."""
    procs = [start_child(spec) for spec in specs]
    bad_reports, n_checks = [], 0
    while any(p.poll() is None for p in procs):
        report = ln.check()
        n_checks += 1
        if report.missing or report.orphans or report.mismatched:
            bad_reports.append(repr(report))
        time.sleep(0.1)  # leave the CPU to the writers
    results = [finish_child(p) for p in procs]
    for spec, result in zip(specs, results, strict=True):
        assert result.returncode == 0, result.output or result.stderr
        assert result.output["errors"] == []  # e.g. no "database is locked" reaches a user
        assert len(result.output.get("saved", result.output.get("deleted"))) == spec["n"]
    assert bad_reports == [] and n_checks > 1
    return [result.output for result in results]


def _assert_outcome(files: list[str], outputs: list[dict[str, Any]]) -> None:
    committed = rows_by_status()["committed"]
    hashes = [row.hash for row in committed]
    assert len(hashes) == len(set(hashes))  # no duplicate artifacts for the same content
    used = {s["hash"] for out in outputs for s in out["saved"]}
    assert used == set(hashes) and len(hashes) <= N_FILES  # the rest were deduplicated
    assert used <= {hash_file(Path(f))[0] for f in files}
    by_uid = {row.uid: row for row in committed}
    for out in outputs:  # every caller got the artifact that holds its content
        for saved in out["saved"]:
            assert by_uid[saved["uid"]].hash == saved["hash"]
    _assert_versions(committed)
    assert_i1_i2_i3()


def _assert_versions(committed: list[Any]) -> None:
    """Per key: versions strictly increase in reservation order, one uid stem, one latest."""
    for key in KEYS:
        family = sorted((row for row in committed if row.key == key), key=lambda r: r.id)
        if not family:  # every version deleted
            continue
        versions = [row.version for row in family]
        assert versions == sorted(set(versions))
        created = [row.created_at for row in family]
        assert created == sorted(created)
        assert [row.is_latest for row in family] == [False] * (len(family) - 1) + [True]
        assert len({row.uid[:16] for row in family}) == 1
        assert all(row.uid[16:] == version_suffix(row.version) for row in family)


@pytest.mark.parametrize("storage", ["local", "s3"])
def test_four_writers_on_postgresql(pg_url, tmp_path, request, storage):
    root = str(tmp_path / "storage")
    saves = 100
    if storage == "s3":
        root = f"s3://{request.getfixturevalue('s3_bucket')}/team"
        saves = 25  # moto serialises requests; the race is the same
    ln.init(storage=root, db=pg_url)
    files = _pool(tmp_path)
    outputs = _run(_writers(files, writers=4, saves=saves))
    _assert_outcome(files, outputs)
    assert len(rows_by_status()["committed"]) > len(KEYS)  # keys really got many versions


def test_two_writers_on_sqlite(tmp_path):
    ln.init(storage=str(tmp_path / "storage"))
    files = _pool(tmp_path)
    outputs = _run(_writers(files, writers=2, saves=100))
    _assert_outcome(files, outputs)


def test_writers_and_a_deleter_on_postgresql(pg_url, tmp_path):
    """Deletes race with saves, dedup and versioning; a live check never sees damage."""
    ln.init(storage=str(tmp_path / "storage"), db=pg_url)
    files = _pool(tmp_path)
    outputs = _run(_writers(files, writers=2, saves=60) + [{"op": "deleter", "n": 30}])
    committed = rows_by_status()["committed"]
    assert len({row.hash for row in committed}) == len(committed)
    assert len(outputs[-1]["deleted"]) == 30
    _assert_versions(committed)
    assert_i1_i2_i3()
    # a version number (and uid) freed by deleting the latest may be taken again: the bytes
    # under that name must then be the new content, never the deleted one
    assert ln.check(deep=True).is_consistent
