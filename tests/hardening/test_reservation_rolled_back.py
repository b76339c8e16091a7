"""A writer whose reservation another process rolled back (``ln.repair(grace_seconds=0)`` run
while it uploads) is told exactly that, not ``FileNotFoundError: ...tmp``; on local storage it
notices at the next piece it copies, not after copying every byte into an unlinked file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import lamin_nb as ln
from lamin_nb.core.callbacks import ItemState, SaveCallback
from lamin_nb.core.storage import local as local_storage
from tests.support.crashes import assert_i1_i2_i3, child_env

REPAIR = (
    "import lamin_nb as ln; ln.connect(); "
    "plan = ln.repair(dry_run=False, grace_seconds=0); print(plan.summary())"
)


class RepairElsewhere(SaveCallback):
    """At the first piece uploaded, another process rolls the reservation back."""

    def __init__(self) -> None:
        self.current = ItemState.QUEUED
        self.uploaded = 0
        self.repair_output = ""

    def state(self, index: int, state: ItemState, detail: str = "") -> None:
        self.current = state

    def advance(self, index: int, nbytes: int) -> None:
        if self.current is not ItemState.UPLOADING:
            return
        self.uploaded += nbytes
        if not self.repair_output:
            done = subprocess.run(
                [sys.executable, "-c", REPAIR],
                env=child_env(),
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stderr
            self.repair_output = done.stdout


def test_a_writer_whose_reservation_was_rolled_back_is_told_so(
    local_instance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_storage, "COPY_STEP", 1 << 20)  # pieces of 1 MiB
    size = 16 << 20
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(size))
    callback = RepairElsewhere()
    with pytest.raises(ln.SaveError) as failed:
        ln.Artifact(source, key="big.bin").save(callback=callback)
    assert "roll back pending x1" in callback.repair_output, callback.repair_output
    message = str(failed.value)
    assert "your reservation expired and was rolled back" in message, message
    assert "FileNotFoundError" not in message and ".tmp" not in message, message
    assert callback.uploaded < size  # it stopped early
    assert_i1_i2_i3()
    ln.Artifact(source, key="big.bin").save()  # and saving again works
    assert_i1_i2_i3()
