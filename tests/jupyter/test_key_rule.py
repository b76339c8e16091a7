"""One key rule for every edge: ``--key`` of the CLI and of ``%lamin_save``, the UploadWidget's
key prefix and the REST ``key_prefix`` all go through ``core.validate`` (``key_of_item``,
``key_under``), so the same input gives the same keys everywhere.

The rule: with several files, or a key ending in ``/``, the key is a prefix and each file is
keyed ``<prefix>/<file name>`` (trailing slashes of the prefix do not matter); otherwise it is
the key of the one file. An invalid prefix is refused, never repaired.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import lamin_nb as ln
from lamin_nb import cli
from lamin_nb.core.validate import key_of_item, key_under
from tests.jupyter.test_magics import shell  # noqa: F401 - the fixture
from tests.jupyter.test_widgets import click, picked

CASES = [
    # (file names, --key, expected keys)
    (["a.txt"], None, [None]),
    (["a.txt"], "runs/a.txt", ["runs/a.txt"]),
    (["a.txt"], "runs/", ["runs/a.txt"]),  # a prefix for one file
    (["a.txt"], "runs//", ["runs/a.txt"]),
    (["a.txt", "b.txt"], "runs", ["runs/a.txt", "runs/b.txt"]),
    (["a.txt", "b.txt"], "runs/", ["runs/a.txt", "runs/b.txt"]),
    (["a.txt", "b.txt"], "deep/runs/", ["deep/runs/a.txt", "deep/runs/b.txt"]),
    (["a.txt", "b.txt"], None, [None, None]),
]
REFUSED = [
    (["a.txt"], "/abs/", "must be a relative path"),
    (["a.txt", "b.txt"], "/abs", "must be a relative path"),
    (["a.txt", "b.txt"], "../up", "'..' path segment"),
    (["a.txt"], "/", "has no folder name"),
    (["a.txt", "b.txt"], " runs", "whitespace"),
]


def _files(tmp_path: Path, names: list[str]) -> list[Path]:
    folder = tmp_path / "src"
    folder.mkdir(exist_ok=True)
    paths = [folder / name for name in names]
    for path in paths:
        path.write_bytes(os.urandom(64))
    return paths


def _saved_keys() -> list[str | None]:
    return sorted((a.key for a in ln.Artifact.filter().all()), key=lambda k: k or "")


@pytest.mark.parametrize("names, key, expected", CASES)
def test_the_core_rule(names: list[str], key: str | None, expected: list[str | None]) -> None:
    many = len(names) > 1
    assert [key_of_item(key, name, many) for name in names] == expected


@pytest.mark.parametrize("names, key, expected", CASES)
def test_cli(
    names: list[str], key: str | None, expected: list[str | None], local_instance: Any, tmp_path
) -> None:
    paths = [str(p) for p in _files(tmp_path, names)]
    assert cli.main(["save", *paths, *(["--key", key] if key is not None else [])]) == 0
    assert _saved_keys() == expected


@pytest.mark.parametrize("names, key, expected", CASES)
def test_magic(
    names: list[str],
    key: str | None,
    expected: list[str | None],
    local_instance: Any,
    tmp_path: Path,
    shell: Any,  # noqa: F811 - the fixture
) -> None:
    paths = " ".join(str(p) for p in _files(tmp_path, names))
    line = f"%lamin_save {paths} --no-progress" + (f" --key '{key}'" if key is not None else "")
    result = shell.run_cell(line)
    assert result.success, result.error_in_exec
    assert _saved_keys() == expected


@pytest.mark.parametrize("names, key, message", REFUSED)
def test_cli_and_magic_refuse_the_same_keys(
    names: list[str],
    key: str,
    message: str,
    local_instance: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    shell: Any,  # noqa: F811 - the fixture
) -> None:
    paths = [str(p) for p in _files(tmp_path, names)]
    assert cli.main(["save", *paths, "--key", key]) == 2
    assert message in capsys.readouterr().err
    result = shell.run_cell(f"%lamin_save {' '.join(paths)} --no-progress --key '{key}'")
    assert message in str(result.error_in_exec)
    assert _saved_keys() == [] and ln.check().n_objects == 0


@pytest.mark.parametrize(
    "prefix, expected",
    [("", "a.txt"), ("runs", "runs/a.txt"), ("runs/", "runs/a.txt"), (" runs/ ", "runs/a.txt")],
)
def test_upload_widget_prefix(prefix: str, expected: str, local_instance: Any) -> None:
    """The widget trims its text field, then applies the same rule."""
    from lamin_nb.widgets import UploadWidget

    upload = UploadWidget(key_prefix=prefix)
    upload.picker.set_state(picked(("a.txt", b"hello")))
    click(upload.save_button)
    assert [a.key for a in upload.artifacts] == [expected] == [key_under(prefix.strip(), "a.txt")]
