"""Nested storage roots: a root inside another instance's managed prefix (``<root>/.lamindb``),
or one whose managed prefix would hold another instance's, is refused by ``ln.init``: the outer
instance's check and repair would see the inner instance's objects and marker as orphans.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import lamin_nb as ln


def roots(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if kind == "s3":
        return f"s3://{request.getfixturevalue('s3_bucket')}"
    return str(tmp_path)


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_a_root_inside_a_managed_prefix_is_refused(tmp_path, make_file, kind, request):
    base = roots(kind, tmp_path, request)
    ln.init(storage=f"{base}/outer")
    ln.Artifact(make_file(b"outer"), key="o.txt").save()
    for inner in (f"{base}/outer/.lamindb/inner", f"{base}/outer/.lamindb"):
        with pytest.raises(ln.ValidationError) as error:
            ln.init(storage=inner, name="inner")
        message = str(error.value)
        assert f"{inner!r}" in message and f"'{base}/outer/.lamindb'" in message
        assert "instance 'outer'" in message
    ln.connect("outer")
    assert ln.check().is_consistent


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_a_root_whose_managed_prefix_holds_another_instance_is_refused(
    tmp_path, make_file, kind, request
):
    base = roots(kind, tmp_path, request)
    ln.init(storage=f"{base}/inner")
    ln.Artifact(make_file(b"inner"), key="i.txt").save()
    ln.disconnect()
    _move(f"{base}/inner", f"{base}/outer/.lamindb/inner", kind)  # a folder moved by hand
    with pytest.raises(ln.ValidationError) as error:
        ln.init(storage=f"{base}/outer")
    message = str(error.value)
    assert f"'{base}/outer'" in message and f"'{base}/outer/.lamindb/inner/.lamindb'" in message
    assert "instance 'inner'" in message


def test_siblings_and_roots_outside_managed_prefixes_are_fine(tmp_path):
    ln.init(storage=str(tmp_path / "outer"))
    ln.init(storage=str(tmp_path / "outer" / "sub"))  # its own prefix: outer/sub/.lamindb
    ln.init(storage=str(tmp_path / "sibling"))


def _move(source: str, target: str, kind: str) -> None:
    if kind == "local":
        Path(target).parent.mkdir(parents=True)
        shutil.move(source, target)
        return
    from lamin_nb.core.storage import open_storage

    fs = open_storage(source).fs
    for path in fs.find(source):
        fs.mv(path, target + path.removeprefix(source.removeprefix("s3://")))
