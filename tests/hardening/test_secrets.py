"""No secret in any user-visible output.

A password is planted in the PostgreSQL URL (trust auth ignores it) and S3 secret keys in
the environment and in ``storage_options`` (moto accepts any). Then everything a user can
see is collected — reprs, ``str()`` and tracebacks of errors (a failing save, a failing
connect, a failing delete), log records at DEBUG from every library involved, CLI output,
widget HTML/state, REST responses — and scanned for the secrets.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import lamin_nb as ln
from lamin_nb import cli
from lamin_nb.core.callbacks import TextProgress
from tests.support.faults_env import allow_connections, count, terminate_lamin_backends
from tests.support.servers import MotoServer, s3_env

PG_PW = "pgpw-PLANTED-5b7e01"
S3_ENV_SECRET = "s3env-PLANTED-91c4aa"
S3_OPT_SECRET = "s3opt-PLANTED-2d8aff"
SECRETS = (PG_PW, S3_ENV_SECRET, S3_OPT_SECRET)
LOGGERS = (
    "lamin_nb",
    "sqlalchemy",
    "alembic",
    "psycopg",
    "botocore",
    "aiobotocore",
    "s3fs",
    "fsspec",
    "urllib3",
)


class Outputs:
    """Everything shown to the user during the test, labelled, scanned at the end."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, label: str, value: Any) -> None:
        self.items.append((label, value if isinstance(value, str) else repr(value)))

    def error(self, label: str, exc: BaseException) -> None:
        self.add(f"{label}: str", str(exc))
        self.add(f"{label}: repr", repr(exc))
        self.add(f"{label}: traceback", "".join(traceback.format_exception(exc)))
        report = getattr(exc, "report", None)
        if report is not None:
            self.add(f"{label}: report", report)
            self.add(f"{label}: report message", report.message())

    def cli(self, capsys: pytest.CaptureFixture[str], *argv: str) -> int:
        code = cli.main(list(argv))
        out, err = capsys.readouterr()
        self.add(f"lamin-nb {' '.join(argv)}: stdout", out)
        self.add(f"lamin-nb {' '.join(argv)}: stderr", err)
        return code

    def logs(self, caplog: pytest.LogCaptureFixture) -> None:
        formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
        for record in caplog.records:
            self.add(f"log {record.name}", formatter.format(record))

    def assert_no_secret(self) -> None:
        leaks = [
            (label, secret) for label, text in self.items for secret in SECRETS if secret in text
        ]
        count("secret scan: outputs checked", len(self.items))
        assert not leaks, leaks[:10]
        assert len(self.items) > 20


@pytest.fixture
def outputs(caplog: pytest.LogCaptureFixture) -> Iterator[Outputs]:
    caplog.set_level(logging.DEBUG)
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    found = Outputs()
    yield found


@pytest.fixture
def planted_s3(s3_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_ENV_SECRET)  # moto accepts any secret
    return s3_server


def pg_url_with_password(pg_url: str) -> str:
    assert "postgres@" in pg_url
    return pg_url.replace("postgres@", f"postgres:{PG_PW}@")


def test_no_secret_in_reprs_errors_logs_and_cli(
    tmp_path: Path,
    pg_url: str,
    planted_s3: MotoServer,
    outputs: Outputs,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bucket = planted_s3.new_bucket()
    db = pg_url_with_password(pg_url)
    inst = ln.init(
        storage=f"s3://{bucket}/team",
        db=db,
        storage_options={"key": "testing", "secret": S3_OPT_SECRET},
    )
    # the secrets are really in use (kept privately), so their absence below means something
    private = json.dumps(inst.settings.to_json())
    assert PG_PW in private and S3_OPT_SECRET in private
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == S3_ENV_SECRET
    for label, value in [
        ("instance", inst),
        ("settings", inst.settings),
        ("db", inst.db),
        ("storage", inst.storage),
        ("ln.settings", ln.settings),
        ("ln.settings.storage", ln.settings.storage),
        ("ln.settings.storage.root", ln.settings.storage.root),
        ("ln.settings.db", ln.settings.db),
        ("ln.settings.instance", ln.settings.instance),
        ("engine", inst.db.engine),
    ]:
        outputs.add(label, value)
        outputs.add(f"str {label}", str(value))

    _saves_and_failures(tmp_path, planted_s3, bucket, outputs)
    _reports(outputs)
    _cli(tmp_path, planted_s3, bucket, outputs, capsys)
    _failing_connects(tmp_path, pg_url, db, outputs)
    outputs.logs(caplog)
    assert any(label.startswith("log sqlalchemy") for label, _ in outputs.items)
    assert any(label.startswith("log botocore") for label, _ in outputs.items)
    outputs.assert_no_secret()


def _saves_and_failures(tmp_path: Path, s3: MotoServer, bucket: str, outputs: Outputs) -> None:
    import pandas as pd

    files = [tmp_path / f"f{i}.csv" for i in range(4)]
    for i, path in enumerate(files):
        path.write_text(f"a,b\n{i},{os.urandom(4).hex()}\n")
    saved = ln.Artifact(files[0], key="ok/first.csv", description="first").save()
    outputs.add("saved artifact", saved)
    outputs.add("from_df", ln.Artifact.from_df(pd.DataFrame({"x": [1]}), key="df.parquet").save())
    progress = io.StringIO()
    s3.deny(bucket, "s3:PutObject", "team/.lamindb/")
    try:
        with pytest.raises(ln.SaveError) as failed:
            ln.save(
                [ln.Artifact(p, key=f"bulk/{p.name}") for p in files[1:]],
                callback=TextProgress(progress),
            )
        outputs.error("failing bulk save", failed.value)
        with pytest.raises(ln.SaveError) as failed_one:
            ln.Artifact(files[1], key="single.csv").save()
        outputs.error("failing single save", failed_one.value)
    finally:
        s3.allow_all(bucket)
    outputs.add("text progress", progress.getvalue())
    s3.deny(bucket, "s3:DeleteObject", "team/.lamindb/")
    try:
        with pytest.raises(ln.StorageError) as failed_delete:
            ln.Artifact.get("ok/first.csv").delete(permanent=True)
        outputs.error("failing delete", failed_delete.value)
    finally:
        s3.allow_all(bucket)
    report = ln.save([ln.Artifact(p, key=f"bulk/{p.name}") for p in files[1:]])
    outputs.add("save report", report)
    outputs.add("save report summary", report.summary())


def _reports(outputs: Outputs) -> None:
    report = ln.check(deep=True)
    outputs.add("check", report)
    outputs.add("check dict", json.dumps(report.to_dict(), default=str))
    plan = ln.repair()
    outputs.add("repair plan", plan)
    outputs.add("repair dict", json.dumps(plan.to_dict(), default=str))
    applied = ln.repair(dry_run=False)
    outputs.add("repair applied", applied)
    outputs.add("artifacts", ln.Artifact.filter().all())
    outputs.add("query", ln.Artifact.filter())
    outputs.add("dataframe", ln.Artifact.filter().df().to_string())
    outputs.add("get", ln.Artifact.get("bulk/f1.csv"))
    outputs.add("cache path", ln.Artifact.get("bulk/f1.csv").cache())


def _cli(
    tmp_path: Path,
    s3: MotoServer,
    bucket: str,
    outputs: Outputs,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from lamin_nb.core.instance import current

    new_file = tmp_path / "cli.txt"
    new_file.write_text("from the command line")
    db, root = current().settings.db_url, current().settings.storage_root
    assert outputs.cli(capsys, "init", "--storage", root, "--db", db) == 0
    for argv in (
        ["info"],
        ["ls"],
        ["check"],
        ["check", "--json"],
        ["repair"],
        ["repair", "--json"],
        ["repair", "--apply", "--grace", "0"],
        ["save", str(new_file), "--key", "cli/new.txt"],
    ):
        assert outputs.cli(capsys, *argv) == 0, outputs.items[-1]
    s3.deny(bucket, "s3:PutObject", "team/.lamindb/")
    try:
        other = tmp_path / "cli2.txt"
        other.write_text("denied")
        assert outputs.cli(capsys, "save", str(other), "--key", "cli/denied.txt") == 1
    finally:
        s3.allow_all(bucket)
    refused = db.replace("127.0.0.1:5432", "127.0.0.1:1")
    assert outputs.cli(capsys, "init", "--storage", str(tmp_path / "x"), "--db", refused) != 0
    assert outputs.cli(capsys, "init", "--storage", root, "--db", refused) != 0
    env = {**os.environ, "LAMIN_NB_INSTANCE": current().name}
    child = subprocess.run(
        [sys.executable, "-m", "lamin_nb.cli", "info"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr
    outputs.add("lamin-nb info in a new process", child.stdout + child.stderr)


def _failing_connects(tmp_path: Path, pg_url: str, db: str, outputs: Outputs) -> None:
    from lamin_nb.core.instance import current

    name = current().name
    with pytest.raises(ln.InstanceError) as refused:
        ln.init(storage=str(tmp_path / "down"), db=db.replace(":5432/", ":1/"))
    outputs.error("connect to a closed port", refused.value)
    with pytest.raises(ln.InstanceError) as missing:
        ln.init(storage=str(tmp_path / "nodb"), db=db.rsplit("/", 1)[0] + "/no_such_database")
    outputs.error("connect to a missing database", missing.value)
    with pytest.raises(ln.ValidationError) as other:
        ln.init(storage=current().settings.storage_root, db=db + "_other", name=name)
    outputs.error("init with another database", other.value)
    allow_connections(pg_url, False)
    try:
        current().close()
        terminate_lamin_backends(pg_url)
        with pytest.raises(ln.InstanceError) as outage:
            ln.connect(name)
        outputs.error("connect during an outage", outage.value)
    finally:
        allow_connections(pg_url, True)
    ln.connect(name)


def test_no_secret_with_environment_credentials(
    tmp_path: Path, planted_s3: MotoServer, outputs: Outputs, caplog: pytest.LogCaptureFixture
) -> None:
    """The usual AWS set-up: the secret only in AWS_SECRET_ACCESS_KEY, SQLite metadata."""
    bucket = planted_s3.new_bucket()
    inst = ln.init(storage=f"s3://{bucket}/env")
    outputs.add("instance", inst)
    outputs.add("settings", inst.settings)
    source = tmp_path / "env.bin"
    source.write_bytes(os.urandom(64))
    planted_s3.deny(bucket, "s3:PutObject", "env/.lamindb/")
    with pytest.raises(ln.SaveError) as failed:
        ln.Artifact(source, key="env.bin").save()
    outputs.error("failing save", failed.value)
    planted_s3.allow_all(bucket)
    outputs.add("saved", ln.Artifact(source, key="env.bin").save())
    outputs.add("check", ln.check(deep=True))
    outputs.logs(caplog)
    outputs.assert_no_secret()


@pytest.mark.parametrize("password", ["p@ss:w/rd", "pass%word", "päss wörd", "a'b\"c;d"])
def test_special_character_passwords_are_masked(
    tmp_path: Path, pg_url: str, password: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Encoded (as a URL needs) or not (a user's mistake): neither form may show."""
    from urllib.parse import quote

    encoded = quote(password, safe="")
    shown: list[str] = []
    for pw in (encoded, password):
        url = pg_url.replace("postgres@", f"postgres:{pw}@").replace(":5432/", ":1/")
        try:
            ln.init(storage=str(tmp_path / "s"), db=url)
        except (ln.LaminNbError, ValueError) as exc:
            shown += [str(exc), "".join(traceback.format_exception(exc))]
        else:
            pytest.fail("a closed port must not connect")
        cli.main(["init", "--storage", str(tmp_path / "s"), "--db", url])
        shown += list(capsys.readouterr())
    tails = {password, encoded} | {t for t in (password[2:], encoded[3:]) if len(t) >= 4}
    assert not [t for t in tails for text in shown if t in text], shown


def test_credentials_in_the_storage_url_are_refused(tmp_path: Path) -> None:
    for root in (f"s3://AKIA:{S3_OPT_SECRET}@bucket/x", f"s3://{S3_OPT_SECRET}@bucket"):
        with pytest.raises(ln.ValidationError, match="credentials") as refused:
            ln.init(storage=root)
        assert S3_OPT_SECRET not in "".join(traceback.format_exception(refused.value))


def test_nested_storage_options_are_masked(tmp_path: Path, planted_s3: MotoServer) -> None:
    from lamin_nb.core.settings import mask_options

    bucket = planted_s3.new_bucket()
    inst = ln.init(
        storage=f"s3://{bucket}/nested",
        storage_options={
            "key": "testing",
            "secret": S3_OPT_SECRET,
            "config_kwargs": {"connect_timeout": 5},
        },
    )
    text = repr(inst.settings) + repr(ln.settings.instance) + str(ln.settings.storage.root)
    assert S3_OPT_SECRET not in text and "connect_timeout" in text  # only secrets are hidden
    nested = mask_options(
        {
            "client_kwargs": {
                "aws_secret_access_key": S3_OPT_SECRET,
                "aws_session_token": S3_ENV_SECRET,
                "endpoint_url": f"http://u:{PG_PW}@h",
            }
        }
    )
    assert not [s for s in SECRETS if s in repr(nested)], nested


# -- notebooks and widgets: executed in a real kernel, the whole .ipynb scanned -------------------

NOTEBOOK_CELLS = [
    # the secrets come from the environment, as they should: no cell source holds them
    """%load_ext lamin_nb
import os, boto3, lamin_nb as ln
ln.init(storage=os.environ["NB_STORAGE"], db=os.environ["NB_DB"],
        storage_options={"key": "testing", "secret": os.environ["NB_S3_SECRET"]})""",
    "ln.settings",
    "ln.settings.instance",
    "ln.settings.db",
    """for i in range(3):
    open(f"f{i}.csv", "w").write(f"a,b\\n{i},{os.urandom(4).hex()}\\n")""",
    "saved = %lamin_save f0.csv f1.csv --key nb/\nsaved",
    # a denied upload: the progress panel keeps the red row, the cell shows the SaveError
    """import json
bucket = os.environ["NB_BUCKET"]
policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Principal": "*",
          "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{bucket}/nb/.lamindb/*"}]}
boto3.client("s3").put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))""",
    "#raises\n%lamin_save f2.csv --key nb/denied.csv",
    "#raises\nln.save([ln.Artifact('f2.csv', key='nb/bulk-denied.csv'), ln.Artifact('f0.csv')])",
    "boto3.client('s3').delete_bucket_policy(Bucket=bucket)",
    "%lamin_ls",
    "%lamin_check",
    "%lamin_repair",
    "from lamin_nb.widgets import ConsistencyPanel, UploadWidget\nConsistencyPanel()",
    "UploadWidget(key_prefix='nb/uploads')",
    "ln.check(deep=True)",
    "ln.repair()",
    "#raises\nln.init(storage='./elsewhere', db=os.environ['NB_DB'].replace(':5432/', ':1/'))",
    "#raises\n%lamin_init --storage ./elsewhere2 --db {os.environ['NB_DB_CLOSED']}",
]


def test_no_secret_in_an_executed_notebook_or_its_widgets(
    tmp_path: Path, pg_url: str, planted_s3: MotoServer
) -> None:
    import nbformat

    from tests.support.notebooks import code_notebook, execute, kernel_env

    bucket = planted_s3.new_bucket()
    nb = code_notebook(*NOTEBOOK_CELLS)
    for cell in nb.cells:
        if cell.source.startswith("#raises"):
            cell.metadata["tags"] = ["raises-exception"]
    db = pg_url_with_password(pg_url)
    env = kernel_env(
        tmp_path,
        LAMIN_NB_HOME=str(tmp_path / "nb-home"),
        **{**s3_env(planted_s3.endpoint), "AWS_SECRET_ACCESS_KEY": S3_ENV_SECRET},
        NB_STORAGE=f"s3://{bucket}/nb",
        NB_DB=db,
        NB_DB_CLOSED=db.replace(":5432/", ":1/"),
        NB_S3_SECRET=S3_OPT_SECRET,
        NB_BUCKET=bucket,
    )
    (tmp_path / "work").mkdir()
    executed = execute(nb, tmp_path / "work", env, timeout=180)
    text = nbformat.writes(executed)
    errors = [o for c in executed.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert len(errors) == 3, [(e.get("ename"), e.get("evalue")[:80]) for e in errors]
    last = "".join(o.get("text", "") for o in executed.cells[-1].outputs)
    assert "UsageError: cannot create or upgrade the schema" in last and "***" in last, last
    assert "Forbidden" in text or "Access Denied" in text
    assert "application/vnd.jupyter.widget-state+json" in text  # widget state was stored
    leaks = [s for s in SECRETS if s in text]
    count("secret scan: outputs checked", sum(len(c.get("outputs", [])) for c in executed.cells))
    assert not leaks, [line for line in text.splitlines() if any(s in line for s in leaks)][:5]


def test_no_secret_in_the_team_setup_tutorial(tmp_path: Path, planted_s3: MotoServer) -> None:
    """The team tutorial (PostgreSQL + S3, two writers) run with a password in the server URL
    and a planted S3 secret: the executed notebook, widget state included, shows neither."""
    import nbformat

    from tests.support.notebooks import NOTEBOOKS, execute_file, kernel_env, pg_url

    server = pg_url()
    assert "postgres@" in server
    env = kernel_env(
        tmp_path,
        **{**s3_env(planted_s3.endpoint), "AWS_SECRET_ACCESS_KEY": S3_ENV_SECRET},
        LAMIN_NB_TEST_PG_URL=server.replace("postgres@", f"postgres:{PG_PW}@"),
    )
    executed = execute_file(NOTEBOOKS / "team-setup.ipynb", tmp_path, env, timeout=300)
    text = nbformat.writes(executed)
    count("secret scan: outputs checked", sum(len(c.get("outputs", [])) for c in executed.cells))
    assert "***" in text  # the URL was shown, masked
    leaks = [s for s in SECRETS if s in text]
    assert not leaks, [line for line in text.splitlines() if any(s in line for s in leaks)][:5]
