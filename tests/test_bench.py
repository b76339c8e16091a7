"""``lamin-nb bench`` smoke runs with tiny sizes: the table and JSON a user reads, and a scratch
area that is gone afterwards. No timing is asserted (figures come from benchmark runs)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.support.servers import pg_admin
from tests.test_selftest import lamin_nb_cli

SCENARIO_KEYS = {"scenario", "status", "unit", "runs", "target", "load_avg"}
MEASURED_KEYS = {"median", "min", "max", "values", "bound", "bound_median", "bound_values", "ratio"}


def json_records(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def table_rows(stdout: str) -> list[list[str]]:
    rows = [line for line in stdout.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in rows]


def test_bench_embedded_default_prints_table_and_json(tmp_path):
    done = lamin_nb_cli(
        "bench",
        "--runs",
        "1",
        "--size-gib",
        "0.002",
        "--check-n",
        "300",
        "--single-n",
        "5",
        "--bulk-n",
        "20",
        "--anndata-mb",
        "1",
        "--json",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "lamin-nb bench on SQLite + local" in done.stdout
    header, *rows = table_rows(done.stdout)
    assert header[:4] == ["scenario", "lamin_nb median (min-max)", "lower bound (median)", "ratio"]
    assert len(rows) == 7
    records = json_records(done.stdout)
    assert records[0]["kind"] == "environment" and records[0]["backend"] == "SQLite + local"
    scenarios = records[1:]
    assert len(scenarios) == 7
    for record in scenarios:
        assert SCENARIO_KEYS <= set(record), record
        if record["scenario"].endswith("with progress panel") and record["status"].startswith(
            "n/a"
        ):
            continue  # the notebook panel is optional for this command
        assert record["status"] == "ok", record
        assert MEASURED_KEYS <= set(record) and record["runs"] >= 1
        assert record["min"] <= record["median"] <= record["max"] and record["ratio"] > 0
    check = next(r for r in scenarios if r["scenario"].startswith("ln.check()"))
    assert "300 artifacts" in check["scenario"] and check["rss_peak_mb"] > 0
    bulk = next(r for r in scenarios if r["scenario"] == "bulk save 20 x 10 KiB")
    assert bulk["ratio_no_fsync"] > 0
    assert "scratch area removed" in done.stdout
    root = re.search(r"storage (\S+),", done.stdout).group(1)
    assert not Path(root).exists()


def test_bench_on_postgres_and_s3_uses_and_removes_scratch_areas(s3_server, s3_bucket, pg_url):
    done = lamin_nb_cli(
        "bench",
        "--storage",
        f"s3://{s3_bucket}/team",
        "--db",
        pg_url,
        "--scenarios",
        "single,bulk",
        "check",
        "--runs",
        "1",
        "--single-n",
        "3",
        "--bulk-n",
        "10",
        "--check-n",
        "40",
        "--json",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "lamin-nb bench on PostgreSQL + S3" in done.stdout
    scenarios = json_records(done.stdout)[1:]
    assert [r["scenario"] for r in scenarios] == [
        "3 single saves of 10 KiB",
        "bulk save 10 x 10 KiB",
        "ln.check() on 40 artifacts",
    ]
    assert all(r["status"] == "ok" for r in scenarios)
    token = re.search(r"lamin-nb-bench-([0-9a-f]{8})", done.stdout).group(1)
    assert s3_server.keys(s3_bucket) == []
    with pg_admin() as conn:
        assert (
            conn.execute(
                "SELECT count(*) FROM pg_database WHERE datname = %s", (f"lamin_nb_bench_{token}",)
            ).fetchone()[0]
            == 0
        )
    # the database named by --db only served to reach the server: no table was created in it
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()[0]
    assert tables == 0


def test_bench_without_createdb_uses_a_scratch_schema_and_drops_it(pg_url):
    """A role that may not create databases gets a scratch schema in its own database."""
    import secrets

    import psycopg

    role = f"lamin_nb_nocreatedb_{secrets.token_hex(3)}"
    database = pg_url.rsplit("/", 1)[1]
    with pg_admin() as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN NOCREATEDB')
        conn.execute(f'GRANT CREATE ON DATABASE "{database}" TO "{role}"')
    role_url = pg_url.replace("://postgres@", f"://{role}@")
    try:
        done = lamin_nb_cli(
            "bench", "--db", role_url, "--scenarios", "single", "--runs", "1", "--single-n", "2"
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "(scratch schema)" in done.stdout
        token = re.search(r"lamin-nb-bench-([0-9a-f]{8})", done.stdout).group(1)
        with psycopg.connect(pg_url, autocommit=True) as conn:
            schemas = conn.execute(
                "SELECT schema_name FROM information_schema.schemata "
                "WHERE schema_name LIKE 'lamin_nb_%'"
            ).fetchall()
            tables = conn.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
            ).fetchone()[0]
        assert schemas == [] and tables == 0, f"left behind for {token}: {schemas}, {tables}"
    finally:
        with pg_admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_bench_rejects_unknown_scenarios():
    done = lamin_nb_cli("bench", "--scenarios", "warp")
    assert done.returncode != 0
    assert "unknown scenario(s) warp" in done.stderr


def test_bench_scale_builds_through_the_public_api_and_reports_the_check(s3_server, s3_bucket):
    done = lamin_nb_cli(
        "bench",
        "--storage",
        f"s3://{s3_bucket}/scale",
        "--scale",
        "60",
        "--scale-batch",
        "25",
        "--runs",
        "1",
        "--json",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "scale: 60 artifacts built through ln.save in bulk saves of 25" in done.stdout
    assert "LIST requests per check: 1" in done.stdout  # a small prefix: one page
    record = json_records(done.stdout)[-1]
    assert record["n"] == 60 and record["list_requests"] == 1
    assert record["check_rss_peak_mb"] > 0 and record["bulk_save_rss_peak_mb"] > 0
    assert record["load_avg"] >= 0
