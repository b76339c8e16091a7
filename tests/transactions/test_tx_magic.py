"""``%%lamin_transaction``: a notebook cell is one transaction; its panel shows every item of
the cell, then one "committed" or "rolled back: <reason>". In a real kernel (nbclient) and in
an IPython shell (text progress).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import lamin_nb as ln
from tests.support.crashes import assert_i1_i2_i3


@pytest.fixture(scope="module")
def shell() -> Any:
    from IPython.testing.globalipapp import get_ipython, start_ipython

    ip = start_ipython() or get_ipython()
    ip.extension_manager.load_extension("lamin_nb")
    return ip


def _files(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"f{i}.csv" for i in range(n)]
    for path in paths:
        path.write_bytes(os.urandom(256))
    return paths


def test_the_cell_commits_or_rolls_back_as_one(shell, local_instance, tmp_path, capsys) -> None:
    a, b, c = _files(tmp_path / "src", 3)
    shell.user_ns.update(a=a, b=b, c=c)
    result = shell.run_cell(
        "%%lamin_transaction\n"
        "import lamin_nb as ln\n"
        "x = ln.Artifact(a, key='x.csv').save()\n"
        "ln.save([ln.Artifact(b, key='y.csv')])\n"
    )
    assert result.success, result.error_in_exec
    out = capsys.readouterr().out
    assert "committed: 2 saved" in out
    assert sorted(x.key for x in ln.Artifact.filter()) == ["x.csv", "y.csv"]
    result = shell.run_cell(
        "%%lamin_transaction\n"
        "ln.Artifact(c, key='z.csv').save()\n"
        "x.delete(permanent=True)\n"
        "raise ValueError('bad metrics')\n"
    )
    assert isinstance(result.error_in_exec, ln.TransactionError)
    assert "the cell raised bad metrics (ValueError)" in str(result.error_in_exec)
    assert "rolled back: bad metrics (ValueError)" in capsys.readouterr().out
    assert sorted(x.key for x in ln.Artifact.filter()) == ["x.csv", "y.csv"]
    assert_i1_i2_i3()
    result = shell.run_cell("%%lamin_transaction --bogus\npass\n")
    assert "unrecognized arguments: --bogus" in str(result.error_in_exec)


def test_in_a_kernel_the_panel_shows_every_item_then_the_outcome(tmp_path, monkeypatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    storage = tmp_path / "storage"
    src = _files(tmp_path / "src", 5)
    cells = [
        "%load_ext lamin_nb",
        f"%lamin_init --storage {storage}",
        f"import lamin_nb as ln\nold = ln.Artifact({str(src[0])!r}, key='runs/6/model.pt').save()",
        "%%lamin_transaction\n"
        f"ln.Artifact({str(src[1])!r}, key='runs/7/model.pt').save()\n"
        f"ln.save([ln.Artifact(p, key=f'runs/7/fig{{i}}.csv') for i, p in "
        f"enumerate({[str(p) for p in src[2:4]]!r})])\n"
        "old.delete(permanent=True)",
        "%%lamin_transaction\n"
        f"ln.Artifact({str(src[4])!r}, key='runs/8/model.pt').save()\n"
        "raise ValueError('bad metrics')",
        "print(sorted(a.key for a in ln.Artifact.filter()), ln.check().is_consistent)",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(
        nb, timeout=180, kernel_name="python3", allow_errors=True, store_widget_state=True
    ).execute()
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]

    def model(ref: str) -> dict[str, Any]:
        return state[ref.removeprefix("IPY_MODEL_")]["state"]

    panels = [
        m["state"]
        for m in state.values()
        if "lamin-save-progress" in m["state"].get("_dom_classes", [])
    ]
    assert len(panels) == 2
    committed, rolled_back = sorted(
        panels, key=lambda p: "lamin-transaction-committed" not in p["_dom_classes"]
    )
    assert "lamin-transaction-committed" in committed["_dom_classes"]
    assert "lamin-transaction-rolled-back" in rolled_back["_dom_classes"]
    parts = [{m["_dom_classes"][0]: m for m in map(model, p["children"])} for p in panels]
    parts = parts if panels[0] is committed else parts[::-1]
    header = parts[0]["lamin-save-header"]["value"]
    assert "committed: 3 saved, 1 deleted (4 items)" in header, header
    rows = [model(r) for r in parts[0]["lamin-item-rows"]["children"]]
    assert len(rows) == 4  # every item of the cell: three saves and the delete
    assert all("lamin-item-saved" in r["_dom_classes"] for r in rows)
    texts = [model(r["children"][2])["value"] for r in rows]
    assert texts.count("saved") == 3 and texts[-1] == "deleted"
    header = parts[1]["lamin-save-header"]["value"]
    assert "rolled back: bad metrics (ValueError) (1 items)" in header, header
    (row,) = (model(r) for r in parts[1]["lamin-item-rows"]["children"])
    assert "lamin-item-rolled-back" in row["_dom_classes"]
    errors = [o for o in nb.cells[4].outputs if o["output_type"] == "error"]
    assert [e["ename"] for e in errors] == ["ValueError", "TransactionError"]
    assert len(errors[1]["traceback"]) == 1  # one short line below the cell's own traceback
    (printed,) = [o for o in nb.cells[5].outputs if o["output_type"] == "stream"]
    assert "['runs/7/fig0.csv', 'runs/7/fig1.csv', 'runs/7/model.pt'] True" in printed["text"]
