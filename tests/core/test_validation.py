"""Bad input gets a clear error naming the item and the cause, and writes nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest

import lamin_nb as ln
from tests.support.servers import without_dac_override


@pytest.fixture
def stored(local_instance, tmp_path):
    """Asserts after the test that nothing reached the database or the storage."""
    yield
    managed = tmp_path / "storage" / ".lamindb"
    assert sorted(p.name for p in managed.iterdir() if p.name != "_meta") == []
    assert ln.Artifact.filter().count() == 0


@pytest.mark.parametrize(
    "key, cause",
    [
        ("../escape.txt", "'..'"),
        ("a/../../b", "'..'"),
        ("/etc/passwd", "relative"),
        ("C:/windows/x", "relative"),
        ("s3://other/x", "relative"),
        ("a\\..\\b", "backslash"),
        ("a\x00b", "NUL"),
        ("a\nb", "control"),
        ("a//b", "empty"),
        ("./a", "'.'"),
        ("x" * 1025, "longer than 1024"),
        (" padded", "whitespace"),
        ("\uff0e\uff0e/x", "'..'"),  # fullwidth dots normalise to '..'
        ("", "empty"),
    ],
)
def test_unsafe_keys_are_refused(stored, make_file, key, cause):
    with pytest.raises(ln.ValidationError, match=cause):
        ln.Artifact(make_file(), key=key)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"key": 3}, TypeError, "key must be a string"),
        ({"description": ["x"]}, TypeError, "description must be a string"),
        ({"description": "x" * 10_001}, ln.ValidationError, "longer than"),
    ],
)
def test_wrong_argument_types(stored, make_file, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        ln.Artifact(make_file(), **kwargs)


def test_missing_file(stored, tmp_path):
    with pytest.raises(ln.ValidationError, match="does not exist"):
        ln.Artifact(tmp_path / "nope.csv")


def test_folder_instead_of_file(stored, tmp_path):
    (tmp_path / "folder").mkdir()
    with pytest.raises(ln.ValidationError, match="is a folder"):
        ln.Artifact(tmp_path / "folder")


@pytest.mark.parametrize("value", [None, 3, b"bytes", ["a"]])
def test_path_of_wrong_type(stored, value):
    with pytest.raises(TypeError, match="path must be"):
        ln.Artifact(value)


def test_from_anndata_and_from_df_check_types(stored):
    with pytest.raises(TypeError, match="anndata.AnnData"):
        ln.Artifact.from_anndata({"X": 1})
    with pytest.raises(TypeError, match="pandas.DataFrame"):
        ln.Artifact.from_df([1, 2])


def test_dataframe_that_parquet_cannot_store(stored):
    import pandas as pd

    df = pd.DataFrame({"a": [object()]})
    with pytest.raises(ln.ValidationError, match="parquet"):
        ln.Artifact.from_df(df)


def test_source_removed_before_save(stored, make_file):
    path = make_file()
    artifact = ln.Artifact(path)
    path.unlink()
    with pytest.raises(ln.ValidationError, match="does not exist"):
        artifact.save()


def test_source_changed_after_hashing_saves_the_new_content(local_instance, make_file):
    path = make_file(b"first")
    artifact = ln.Artifact(path)
    first_hash = artifact.hash
    path.write_bytes(b"second, longer")
    artifact.save()
    assert artifact.hash != first_hash
    assert open(artifact.load(), "rb").read() == b"second, longer"
    assert ln.check(deep=True).is_consistent


def test_source_changed_while_uploading_is_rolled_back(stored, make_file):
    """Another program still writing the file: the copy's hash differs, nothing is kept."""
    path = make_file(b"a" * 4096)

    class Rewrite(ln.SaveCallback):
        def state(self, index, state, detail=""):
            if state.value == "uploading":
                path.write_bytes(b"b" * 4096)

    with pytest.raises(ln.SaveError, match="changed after it was hashed"):
        ln.Artifact(path).save(callback=Rewrite())


def test_save_flags_are_checked(stored, make_file):
    with pytest.raises(TypeError, match="atomic"):
        ln.save([ln.Artifact(make_file())], atomic="yes")
    with pytest.raises(TypeError, match="list of artifacts"):
        ln.save("not a list")


def test_filter_on_unknown_field(local_instance):
    with pytest.raises(ln.ValidationError, match="cannot filter on 'colour'"):
        ln.Artifact.filter(colour="red").all()


def test_get_missing(local_instance):
    with pytest.raises(ln.NotFoundError, match="no artifact"):
        ln.Artifact.get("nothing/here")
    with pytest.raises(LookupError):
        ln.Artifact.get("0123456789abcdefghij")


def test_unreadable_file(tmp_path):
    """chmod 000 refused up front, in a child without root's permission override (setpriv)."""
    path = tmp_path / "private.bin"
    path.write_bytes(b"x")
    path.chmod(0)
    code = (
        "import lamin_nb as ln\n"
        "try:\n    ln.Artifact(%r)\nexcept ln.ValidationError as e:\n    print('refused:', e)\n"
    ) % str(path)
    out = subprocess.run(
        without_dac_override([sys.executable, "-c", code]), capture_output=True, text=True
    )
    assert "refused:" in out.stdout and "cannot be read" in out.stdout, out.stderr
