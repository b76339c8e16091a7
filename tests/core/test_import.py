"""`import lamin_nb` stays light and Jupyter-free; the core never imports Jupyter code."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

HEAVY = [
    "IPython",
    "ipywidgets",
    "jupyter_server",
    "ipykernel",
    "anndata",
    "pandas",
    "s3fs",
    "sqlalchemy",
    "alembic",
]
JUPYTER = ("IPython", "ipywidgets", "jupyter_server", "ipykernel", "traitlets")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            code + "\nimport sys, json\n"
            "print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_import_loads_nothing_heavy():
    loaded = _modules_after("import lamin_nb")
    assert not loaded & set(HEAVY)


def test_using_the_core_loads_no_jupyter(tmp_path):
    code = (
        "import os; os.environ['LAMIN_NB_HOME'] = %r\n"
        "import lamin_nb as ln\n"
        "ln.init(storage=%r)\n"
        "open(%r, 'w').write('x')\n"
        "ln.Artifact(%r, key='a.txt').save(); ln.check(); ln.repair()\n"
    ) % (
        str(tmp_path / "home"),
        str(tmp_path / "s"),
        str(tmp_path / "a.txt"),
        str(tmp_path / "a.txt"),
    )
    loaded = _modules_after(code)
    assert not loaded & set(JUPYTER)


def test_core_sources_never_import_jupyter():
    core = Path(__file__).resolve().parents[2] / "lamin_nb" / "core"
    offenders = []
    for path in core.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in JUPYTER]
    assert offenders == []


def test_widgets_never_import_the_jupyter_layer():
    """Layers import downward only: ``jupyter`` (magics, server) uses ``widgets``, never back."""
    widgets = Path(__file__).resolve().parents[2] / "lamin_nb" / "widgets"
    offenders = []
    for path in widgets.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                absolute = node.module or ""
                if node.level == 2:  # from ..x import y, inside lamin_nb/widgets
                    absolute = f"lamin_nb.{absolute}"
                if absolute.startswith("lamin_nb.jupyter") or (
                    node.level == 2
                    and not node.module
                    and any(a.name == "jupyter" for a in node.names)
                ):
                    offenders.append(f"{path.name}: {absolute}")
            elif isinstance(node, ast.Import):
                offenders += [
                    f"{path.name}: {a.name}"
                    for a in node.names
                    if a.name.startswith("lamin_nb.jupyter")
                ]
    assert offenders == []


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str | None:
    """The instance's database: None (SQLite in the settings folder) or a scratch PostgreSQL."""
    if request.param == "sqlite":
        return None
    return str(request.getfixturevalue("pg_url"))


def test_connect_to_a_current_schema_runs_neither_alembic_nor_sqlalchemy(
    tmp_path, make_file, db_url
):
    """An up-to-date instance with nothing to recover is read with one plain query through
    the driver (sqlite3, psycopg): a fresh process's ``ln.connect()`` imports neither Alembic
    nor SQLAlchemy (they are what made a connect slow), and a save afterwards works as always."""
    import lamin_nb as ln

    ln.init(storage=str(tmp_path / "s"), db=db_url)
    ln.Artifact(make_file(), key="before.bin").save()
    loaded = _modules_after("import lamin_nb as ln\nln.connect()")
    assert "alembic" not in loaded and "sqlalchemy" not in loaded
    loaded = _modules_after(
        "import lamin_nb as ln\nln.connect()\n"
        f"ln.Artifact({str(make_file())!r}, key='after.bin').save()\n"
        "assert ln.Artifact.filter().count() == 2"
    )
    assert "sqlalchemy" in loaded  # a save uses the engine, made on first use


def test_connect_still_recovers_an_expired_row_in_a_fresh_process(tmp_path, make_file, db_url):
    """The cheap check on connect sees unfinished rows: an expired pending row (a writer that
    crashed) is still rolled back there, its object removed."""
    import lamin_nb as ln
    from lamin_nb.core.instance import current

    ln.init(storage=str(tmp_path / "s"), db=db_url)
    artifact = ln.Artifact(make_file(), key="crashed.bin").save()
    stored = current().storage.local_path(artifact.object_name)
    assert stored is not None and stored.exists()
    crash = (
        "UPDATE lamin_artifact SET status = 'pending', owner = 'elsewhere:1', "
        "lease_expires_at = '2000-01-01 00:00:00.000000' WHERE uid = {mark}"
    )
    db = current().db
    ln.disconnect()
    _run_sql(db, crash, (artifact.uid,))  # what a writer killed after its upload leaves
    _modules_after("import lamin_nb as ln\nln.connect()")  # only the fresh process recovers
    left = _run_sql(db, "SELECT count(*) FROM lamin_artifact", ())
    assert left == 0 and not stored.exists()


def _run_sql(db: Any, sql: str, params: tuple[Any, ...]) -> Any:
    """One statement through the driver alone, behind lamin_nb's back; its first value."""
    import sqlite3

    if db.file is not None:
        with sqlite3.connect(db.file) as conn:
            row = conn.execute(sql.format(mark="?"), params).fetchone()
    else:
        import psycopg

        from lamin_nb.core.db import libpq_url

        with psycopg.connect(libpq_url(db.url), autocommit=True) as conn:
            cur = conn.execute(sql.format(mark="%s"), params)
            row = cur.fetchone() if cur.description else None
    return row[0] if row else None
