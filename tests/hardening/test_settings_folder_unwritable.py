"""A settings folder that cannot be written (read-only mount, full disk): ``ln.connect`` says so
with an ``InstanceError`` and leaves the previous state alone, instead of a raw ``OSError``
after it already switched instances (and skipped the recovery that connect runs)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import lamin_nb as ln
from lamin_nb.core import instance as core_instance
from tests.support.faults_env import tiny_filesystem


def _instance_outside(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An instance whose storage and database live outside the settings folder."""
    monkeypatch.setenv("LAMIN_NB_HOME", str(home))
    ln.init(storage=str(tmp_path / "data"), db=f"sqlite:///{tmp_path / 'meta.db'}", name="lab")
    (tmp_path / "a.txt").write_text("kept")
    ln.Artifact(str(tmp_path / "a.txt"), key="a.txt").save()
    ln.disconnect()


def test_connect_with_a_read_only_settings_folder(tmp_path, monkeypatch):
    with tiny_filesystem(tmp_path / "home", "2m") as home:
        _instance_outside(tmp_path, home, monkeypatch)
        subprocess.run(["mount", "-o", "remount,ro", str(home)], check=True)
        with pytest.raises(ln.InstanceError, match="cannot write the settings folder") as info:
            ln.connect("lab")
        assert "Read-only file system" in str(info.value)
        assert "was not made current" in str(info.value)
        assert core_instance.current_or_none() is None  # nothing half-switched
        subprocess.run(["mount", "-o", "remount,rw", str(home)], check=True)
        assert ln.connect("lab").name == "lab"
        assert ln.Artifact.get("a.txt").load().read_text() == "kept"
        ln.disconnect()


def test_connect_with_a_full_settings_folder(tmp_path, monkeypatch):
    with tiny_filesystem(tmp_path / "home", "1m") as home:
        _instance_outside(tmp_path, home, monkeypatch)
        filler = home / "filler"
        with open(filler, "wb") as fh:  # fill the disk to the last byte
            try:
                while True:
                    fh.write(b"\0" * 65536)
                    fh.flush()
            except OSError:
                pass
        with pytest.raises(ln.InstanceError, match="No space left on device"):
            ln.connect("lab")
        assert core_instance.current_or_none() is None
        filler.unlink()
        assert ln.connect("lab").name == "lab"
        ln.disconnect()
