"""The magics in a real IPython shell (and once in a real kernel), typed as a user types them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError

import lamin_nb as ln
from tests.conftest import set_immutable


@pytest.fixture(scope="module")
def shell() -> Any:
    from IPython.testing.globalipapp import get_ipython, start_ipython

    ip = start_ipython() or get_ipython()  # one global test shell per pytest process
    ip.extension_manager.load_extension("lamin_nb")
    return ip


@pytest.fixture
def ip(shell: Any) -> Any:
    """The shell, with the variables a test defines removed afterwards."""
    before = set(shell.user_ns)
    yield shell
    for name in set(shell.user_ns) - before:
        del shell.user_ns[name]


@pytest.fixture
def src(tmp_path: Path) -> Path:
    folder = tmp_path / "src"
    folder.mkdir()
    for name in ("a.csv", "b.csv", "c.csv"):
        (folder / name).write_bytes(os.urandom(512))
    return folder


def usage_error(ip: Any, capsys: pytest.CaptureFixture[str], line: str) -> str:
    """Run ``line`` like a cell; it must fail with one short UsageError line, no traceback."""
    result = ip.run_cell(line)
    out = capsys.readouterr()
    assert isinstance(result.error_in_exec, UsageError), result.error_in_exec
    message = str(result.error_in_exec)
    assert "\n" not in message and "Traceback" not in out.out + out.err
    assert f"UsageError: {message}" in out.err
    return message


# -- user mistakes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line, expected",
    [
        ("%lamin_save", "the following arguments are required: NAME_OR_PATH"),
        ("%lamin_save --bogus {src}/a.csv", "unrecognized arguments: --bogus"),
        ("%lamin_save {src}/a.csv --kye k.csv", "--kye k.csv; did you mean --key?"),
        ("%lamin_ls --limt=3", "did you mean --limit?"),
        (
            "%lamin_save not_defined",
            "'not_defined' is neither a variable of this notebook nor a file",
        ),
        ("%lamin_save {src}/missing.csv", "no such file"),
        ("%lamin_save {src}/*.parquet", "no files match"),
        ("%lamin_save {src}", "is a folder"),
        ("%lamin_save number", "number is a int; %lamin_save saves an AnnData"),
        ("%lamin_save {src}/a.csv --key ../up.csv", "'..' path segment"),
        ("%lamin_save {src}/a.csv {src}/b.csv --key /abs", "must be a relative path"),
        ("%lamin_save art --key k.csv", "art is an Artifact already"),
        ("%lamin_ls --limit 0", "--limit must be at least 1"),
        ("%lamin_ls --limit many", "invalid int value: 'many'"),
        ("%lamin_check --auto 0", "--auto must be a number of seconds > 0"),
        ("%lamin_repair --grace -1", "grace_seconds must be a number >= 0"),
        ("%lamin_init", "the following arguments are required: --storage"),
        ("%lamin_init --storage {src}/st --db mysql://u:hunter2@h/db", "unsupported database URL"),
        ("%lamin_connect nope", "no instance named 'nope'"),
        ("%lamin_save 'unterminated", "cannot parse"),
    ],
)
def test_user_mistakes_are_one_line_usage_errors(ip, capsys, local_instance, src, line, expected):
    ip.user_ns["number"] = 5
    ip.user_ns["art"] = ln.Artifact(src / "c.csv")
    message = usage_error(ip, capsys, line.format(src=src))
    assert expected in message and "hunter2" not in message
    assert ln.Artifact.filter().count() == 0 and ln.check().n_objects == 0


@pytest.mark.parametrize(
    "line",
    ["%lamin_save {src}/a.csv", "%lamin_ls", "%lamin_check", "%lamin_repair", "%lamin_connect"],
)
def test_without_an_instance_every_magic_says_so(ip, capsys, src, line):
    message = usage_error(ip, capsys, line.format(src=src))
    assert "no lamin_nb instance" in message


# -- saving --------------------------------------------------------------------------------


def test_save_one_file_returns_the_artifact(ip, capsys, local_instance, src):
    result = ip.run_cell(f"a = %lamin_save {src}/a.csv --key data/a.csv --description first")
    assert result.success
    artifact = ip.user_ns["a"]
    assert isinstance(artifact, ln.Artifact) and artifact.status == "committed"
    assert (artifact.key, artifact.description) == ("data/a.csv", "first")
    out = capsys.readouterr().out  # outside a kernel, progress is text
    assert "[1/1] data/a.csv saved" in out


def test_save_a_glob_in_bulk_under_a_key_prefix(ip, local_instance, src):
    assert ip.run_cell(f"files = %lamin_save {src}/*.csv --key runs/today --atomic").success
    saved = ip.user_ns["files"]
    assert [a.key for a in saved] == ["runs/today/a.csv", "runs/today/b.csv", "runs/today/c.csv"]
    assert all(a.status == "committed" for a in saved)
    # one match of a glob is still a list: code that loops over it keeps working
    assert ip.run_cell(f"one = %lamin_save {src}/a*.csv").success
    assert isinstance(ip.user_ns["one"], list) and len(ip.user_ns["one"]) == 1


def test_quoted_arguments_are_shell_words(ip, local_instance, src):
    spaced = src / "with space.csv"
    spaced.write_bytes(b"x")
    line = f"q = %lamin_save '{spaced}' --key 'my data/x.csv' --description \"QC per cell type\""
    assert ip.run_cell(line).success
    assert (ip.user_ns["q"].key, ip.user_ns["q"].description) == (
        "my data/x.csv",
        "QC per cell type",
    )


def test_save_notebook_variables(ip, local_instance, src):
    import anndata
    import numpy as np
    import pandas as pd
    from upath import UPath

    ip.user_ns.update(
        adata=anndata.AnnData(np.eye(3, dtype="float32")),
        df=pd.DataFrame({"gene": ["a", "b"], "n": [1, 2]}),
        path=src / "a.csv",
        upath=UPath(src / "b.csv"),
        text=str(src / "c.csv"),
    )
    assert ip.run_cell("out = %lamin_save adata df path upath text --description vars").success
    out = ip.user_ns["out"]
    assert [a.key for a in out] == ["adata.h5ad", "df.parquet", None, None, None]
    assert [a.otype for a in out[:2]] == ["AnnData", "DataFrame"]
    assert all(a.description == "vars" for a in out)
    assert (ln.Artifact.get("adata.h5ad").load().X == np.eye(3)).all()
    ip.user_ns["df"] = pd.DataFrame({"gene": ["c"], "n": [3]})
    assert ip.run_cell("t = %lamin_save df --key tables/").success  # a prefix for one item
    assert ip.user_ns["t"].key == "tables/df.parquet"
    ip.user_ns["art"] = ln.Artifact(src / "a.csv", key="as-is.csv")
    assert ip.run_cell("same = %lamin_save art").success
    assert ip.user_ns["same"] is ip.user_ns["art"]


def test_a_failed_save_raises_a_short_save_error_naming_the_items(ip, capsys, local_instance, src):
    ln.Artifact(src / "a.csv", key="a.csv").save()
    managed = Path(local_instance.storage.managed)
    set_immutable(managed, True)
    try:
        result = ip.run_cell(f"%lamin_save {src}/a.csv {src}/b.csv --key batch")
    finally:
        set_immutable(managed, False)
    error = result.error_in_exec
    assert isinstance(error, ln.SaveError) and isinstance(error, RuntimeError)
    assert error.report is not None and len(error.report.failed) == 1
    assert len(error.report.deduplicated) == 1
    shown = capsys.readouterr()
    assert "Traceback" not in shown.out + shown.err
    assert "SaveError: 1 of 1 artifacts could not be saved" in shown.out
    assert "batch/b.csv" in shown.out and "Access Denied" in shown.out
    assert "[2/2] batch/b.csv failed: Access Denied" in shown.out  # the text progress
    assert ln.Artifact.filter().count() == 1 and ln.check().is_consistent


# -- listing, checking, repairing ------------------------------------------------------------


def test_ls_is_a_table_newest_first(ip, local_instance, src):
    assert ip.run_cell(f"%lamin_save {src}/*.csv --key t").success
    ln.Artifact(src / "a.csv", key="other/a2.csv")  # not saved: never listed
    assert ip.run_cell("table = %lamin_ls --key t/ --limit 2").success
    table = ip.user_ns["table"]
    assert list(table["key"]) == ["t/c.csv", "t/b.csv"]
    assert {"uid", "key", "version", "size", "created_at"} <= set(table.columns)
    assert ip.run_cell("everything = %lamin_ls").success and len(ip.user_ns["everything"]) == 3


def test_check_returns_the_panel_and_repair_shows_then_applies(ip, capsys, local_instance, src):
    assert ip.run_cell(f"%lamin_save {src}/a.csv").success
    (Path(local_instance.storage.managed) / "stray.bin").write_bytes(b"orphan")
    assert ip.run_cell("panel = %lamin_check").success
    panel = ip.user_ns["panel"]
    assert len(panel.report.orphans) == 1 and "lamin-consistency-panel" in panel._dom_classes
    assert ip.run_cell("plan = %lamin_repair").success
    assert ip.user_ns["plan"].dry_run and ip.user_ns["plan"].is_empty  # the orphan is 0 s old
    capsys.readouterr()
    assert ip.run_cell("plan = %lamin_repair --apply --grace 0").success
    assert "storage and database are consistent" in capsys.readouterr().out
    assert ip.user_ns["plan"].applied and ln.check().is_consistent


def test_help_and_other_magics(ip, capsys, local_instance, pg_url, tmp_path):
    ip.run_cell("%lamin_save?")
    help_text = capsys.readouterr().out
    for part in ("NAME_OR_PATH", "--atomic", "AnnData", "a = %lamin_save adata", "SaveError"):
        assert part in help_text
    assert "::" not in help_text  # reST markup is not help a user reads
    assert "Docstring:\n%lamin_save [--key KEY]" in help_text
    assert ip.run_cell("up = %lamin_upload --key uploads").success
    assert ip.user_ns["up"].key_field.value == "uploads"
    url = pg_url.replace("postgres@", "postgres:s3cr3t-pw@")  # trust auth ignores it
    assert ip.run_cell(f"%lamin_init --storage {tmp_path}/pg --db {url} --name pgi").success
    assert ip.run_cell("%lamin_connect").success
    out = capsys.readouterr().out
    assert "current instance: Instance(name='pgi'" in out and "s3cr3t" not in out
    assert out.count("postgresql+psycopg://postgres:***@") == 2


# -- in a real kernel ----------------------------------------------------------------------


def test_in_a_kernel_the_progress_widget_renders_and_a_failure_is_short(tmp_path, src, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    storage = tmp_path / "storage"
    managed = storage / ".lamindb"
    cells = [
        "%load_ext lamin_nb",
        f"%lamin_init --storage {storage}",
        f"ok = %lamin_save {src}/a.csv {src}/b.csv --key ok",
        f"import subprocess; subprocess.run(['chattr', '+i', '{managed}'], check=True)",
        f"%lamin_save {src}/c.csv --key bad.csv",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    try:
        NotebookClient(
            nb, timeout=120, kernel_name="python3", allow_errors=True, store_widget_state=True
        ).execute()
    finally:
        if managed.exists():
            set_immutable(managed, False)
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]

    def model(ref: str) -> dict[str, Any]:
        return state[ref.removeprefix("IPY_MODEL_")]["state"]

    panels = [
        m["state"]
        for m in state.values()
        if "lamin-save-progress" in m["state"].get("_dom_classes", [])
    ]
    assert len(panels) == 2
    good, bad = ({m["_dom_classes"][0]: m for m in map(model, p["children"])} for p in panels)
    assert good["lamin-save-overall"]["bar_style"] == "success"
    assert good["lamin-save-overall"]["value"] == 2
    assert bad["lamin-save-overall"]["bar_style"] == "danger"
    (row,) = (model(r) for r in bad["lamin-item-rows"]["children"])
    assert "lamin-item-failed" in row["_dom_classes"]
    assert "Access Denied" in model(row["children"][2])["value"]
    (error,) = [o for o in nb.cells[4].outputs if o["output_type"] == "error"]
    assert error["ename"] == "SaveError" and "Access Denied" in error["evalue"]
    assert len(error["traceback"]) == 1 and error["traceback"][0].startswith("SaveError: ")
