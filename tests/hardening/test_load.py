"""Concurrent writers under random real failures, scaled down from benchmarks/load_test.py:
4 processes x 25 saves on PostgreSQL + S3 (moto), overlapping content and keys, fault points
raised at random (after_commit included), a bucket policy denying some uploads, and one
writer SIGKILLed mid-save. Afterwards: every uid a writer saw committed is there with its
object, no content is stored twice, versions are ordered, and I1-I3 hold after repair.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import lamin_nb as ln
from tests.support.faults_env import assert_clean, count, note
from tests.support.servers import MotoServer

LOAD_TEST = Path(__file__).resolve().parents[2] / "benchmarks" / "load_test.py"


def load_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lamin_load_test", LOAD_TEST)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def test_concurrent_writers_with_random_failures_lose_nothing(
    tmp_path: Path, pg_url: str, s3_server: MotoServer
) -> None:
    load = load_module()
    bucket = s3_server.new_bucket()
    inst = ln.init(storage=f"s3://{bucket}/team", db=pg_url)
    load.deny_first_chars(s3_server.client(), bucket, "team/.lamindb/")
    plan = load.Plan(
        procs=4,
        saves=25,
        n_content=100,
        n_keys=12,
        fault_rate=0.15,
        kill=True,
        seed=11,
        lease_seconds=4,
    )
    pool = load.make_pool(tmp_path / "pool", plan)
    env = {**os.environ, "LAMIN_NB_INSTANCE": inst.name}
    outcome = load.run_workers(plan, pool, tmp_path / "records", env)
    s3_server.allow_all(bucket)

    assert outcome.unexpected == []  # every failure a user saw was a SaveError
    assert outcome.killed_workers == 1
    assert outcome.committed_items > 0 and outcome.failed_items > 0
    assert outcome.faults_injected >= 5 and outcome.faults_failed_a_save >= 1
    assert len(outcome.latencies) == outcome.calls
    assert 0 < outcome.latency_ms(0.5) <= outcome.latency_ms(0.99)
    result = load.verify(outcome.committed_uids)
    assert result["lost"] == [] and result["consistent"], result
    assert result["duplicate_content"] == [] and result["version_problems"] == [], result
    assert_clean(outcome.committed_uids)
    committed = ln.Artifact.filter().all()
    assert {a.uid for a in committed} >= outcome.committed_uids
    count("load test: save calls", outcome.calls)
    count("load test: faults injected", outcome.faults_injected)
    count("load test: committed artifacts lost", len(result["lost"]))
    note(
        "load test (4 processes x 25 saves, PostgreSQL + S3)",
        f"{outcome.items / outcome.seconds:.1f} items/s, {outcome.calls} calls, "
        f"{outcome.committed_items} items committed, {outcome.failed_items} failed, "
        f"{outcome.faults_injected} faults, lost {len(result['lost'])}",
    )
