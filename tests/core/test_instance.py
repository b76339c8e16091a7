"""Instances: init, connect from a new process, settings folder, schema, secrets masked."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from sqlalchemy import text

import lamin_nb as ln
from lamin_nb.core.instance import current
from lamin_nb.core.models import SCHEMA_VERSION
from lamin_nb.core.settings import mask_url, normalize_db_url


def test_init_defaults(tmp_path, lamin_home):
    inst = ln.init(storage=str(tmp_path / "my-data"))
    assert inst.name == "my-data"
    assert str(ln.settings.storage.root) == str(tmp_path / "my-data")
    db_file = lamin_home / "instances" / "my-data" / "lamin.db"
    assert db_file.exists()  # in the settings folder, never inside the storage root
    assert not list((tmp_path / "my-data").rglob("*.db"))
    with current().db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
        assert (
            conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == SCHEMA_VERSION
        )


def test_init_is_idempotent_and_connect_works_in_a_new_process(tmp_path, lamin_home, make_file):
    storage = str(tmp_path / "shared")
    ln.init(storage=storage)
    artifact = ln.Artifact(make_file(b"abc"), key="a.txt").save()
    assert ln.init(storage=storage).name == "shared"  # same instance again
    assert ln.Artifact.get("a.txt").uid == artifact.uid
    code = "import lamin_nb as ln; ln.connect(); print(ln.Artifact.get('a.txt').uid)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "LAMIN_NB_HOME": str(lamin_home)},
    )
    assert out.stdout.strip() == artifact.uid, out.stderr


def test_lamin_nb_home_is_read_at_init_time(tmp_path, monkeypatch):
    monkeypatch.setenv("LAMIN_NB_HOME", str(tmp_path / "elsewhere"))
    ln.init(storage=str(tmp_path / "s"))
    assert (tmp_path / "elsewhere" / "instances" / "s" / "instance.json").exists()


def test_settings_file_is_private(tmp_path, lamin_home):
    ln.init(storage=str(tmp_path / "s"))
    mode = (lamin_home / "instances" / "s" / "instance.json").stat().st_mode & 0o777
    assert mode == 0o600


def test_same_name_other_storage_is_refused(tmp_path):
    ln.init(storage=str(tmp_path / "a" / "data"))
    with pytest.raises(ln.ValidationError, match="already exists with storage"):
        ln.init(storage=str(tmp_path / "b" / "data"))


def test_storage_of_another_instance_is_refused(tmp_path, monkeypatch):
    storage = str(tmp_path / "data")
    ln.init(storage=storage)
    monkeypatch.setenv("LAMIN_NB_HOME", str(tmp_path / "other-home"))
    with pytest.raises(ln.ValidationError, match="managed by another instance"):
        ln.init(storage=storage)


def test_connect_without_instance(tmp_path):
    with pytest.raises(ln.InstanceError, match="ln.init"):
        ln.connect()
    with pytest.raises(ln.InstanceError, match="no instance named"):
        ln.connect("nope")


@pytest.mark.parametrize("db", ["mysql://u:p@h/db", "postgresql:/x", "http://h"])
def test_unsupported_db_urls(tmp_path, db):
    with pytest.raises(ln.ValidationError, match="unsupported database URL"):
        ln.init(storage=str(tmp_path / "s"), db=db)


def test_unsupported_storage(tmp_path):
    with pytest.raises(ln.ValidationError, match="unsupported storage"):
        ln.init(storage="gs://bucket/x")
    with pytest.raises(TypeError):
        ln.init(storage=42)


def test_postgres_urls_use_psycopg3():
    assert normalize_db_url("postgresql://u:pw@h:5432/d") == "postgresql+psycopg://u:pw@h:5432/d"
    assert normalize_db_url("postgres://u@h/d") == "postgresql+psycopg://u@h/d"


def test_passwords_are_masked_everywhere(tmp_path, pg_url, capsys):
    """A password in the URL never shows in repr, settings, errors or CLI output."""
    secret = "s3cr3t-pw-123"
    url_with_pw = pg_url.replace("postgres@", f"postgres:{secret}@")
    inst = ln.init(storage=str(tmp_path / "s"), db=url_with_pw)  # trust auth ignores it
    shown = [
        repr(inst),
        repr(inst.settings),
        repr(inst.db),
        repr(ln.settings),
        ln.settings.db,
        mask_url(url_with_pw),
    ]
    with pytest.raises(ln.ValidationError) as error:
        ln.init(storage=str(tmp_path / "s"), db=url_with_pw.replace("/lamin", "/other"))
    shown.append(str(error.value))
    cli = subprocess.run(
        [sys.executable, "-m", "lamin_nb.cli", "info"],
        capture_output=True,
        text=True,
        env={**os.environ},
    )
    shown += [cli.stdout, cli.stderr]
    assert "***" in repr(inst)
    assert all(secret not in text_ for text_ in shown), shown
    stored = json.loads((tmp_path / "lamin-home" / "instances" / "s" / "instance.json").read_text())
    assert secret in stored["db_url"]  # kept (privately) so connect() works


def test_postgres_instance_shared_by_two_users(tmp_path, pg_url, monkeypatch, make_file):
    """A second settings folder (another user) connects to the same database and storage."""
    storage = str(tmp_path / "team")
    ln.init(storage=storage, db=pg_url)
    artifact = ln.Artifact(make_file(b"shared"), key="s.txt").save()
    monkeypatch.setenv("LAMIN_NB_HOME", str(tmp_path / "second-user"))
    ln.init(storage=storage, db=pg_url)
    assert ln.Artifact.get("s.txt").uid == artifact.uid


def test_migrations_run_once_and_are_recorded(tmp_path, pg_url):
    ln.init(storage=str(tmp_path / "s"), db=pg_url)
    with current().db.engine.connect() as conn:
        assert (
            conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == SCHEMA_VERSION
        )
    assert current().db.schema_version() == SCHEMA_VERSION
    current().db.migrate()  # a no-op at head


def test_disconnect_drops_the_current_instance_in_this_process(tmp_path, make_file):
    from lamin_nb.core import instance

    ln.init(storage=str(tmp_path / "s"))
    saved = ln.Artifact(make_file(b"kept"), key="k.txt").save()
    ln.disconnect()
    assert instance.current_or_none() is None
    ln.disconnect()  # nothing to drop: a no-op
    # the settings folder still names it: the next call connects again
    assert ln.Artifact.get("k.txt").uid == saved.uid
