"""Every progress panel ends in a final state, whatever stopped the save: a validation error,
a real Ctrl-C (SIGINT to the main thread), a PostgreSQL database that refuses connections.

The panel says "nothing saved: <reason>" in the error colour, its overall bar is full and
red, and its text (what a saved notebook keeps) says the same.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

import lamin_nb as ln
from lamin_nb.widgets import SaveProgress
from tests.support.faults_env import allow_connections, terminate_lamin_backends

ERROR_COLOUR = "var(--jp-error-color1"


def assert_nothing_saved(progress: SaveProgress, reason: str) -> None:
    header = progress.header.value
    assert "nothing saved: " in header and reason in header, header
    assert ERROR_COLOUR in header and "lamin-tone-error" in header
    assert progress.overall.bar_style == "danger"
    assert progress.overall.value == progress.overall.max  # a full bar: red is visible
    assert {"lamin-save-failed", "lamin-save-done"} <= set(progress._dom_classes)
    assert not progress.running
    text = repr(progress)
    assert text.startswith("saving: nothing saved: ") and reason in text
    assert "waiting to start" not in text and "(running)" not in text
    assert progress.finished.layout.display == "none"  # no empty accordion on a small save


def sources(tmp_path: Path, n: int, size: int = 1024) -> list[Path]:
    folder = tmp_path / "src"
    folder.mkdir(exist_ok=True)
    paths = [folder / f"f{i}.bin" for i in range(n)]
    for path in paths:
        path.write_bytes(os.urandom(size))
    return paths


def test_validation_error_ends_the_panel(local_instance, tmp_path):
    first, second = sources(tmp_path, 2)
    artifacts = [ln.Artifact(first, key="a.bin"), ln.Artifact(second, key="b.bin")]
    second.unlink()  # changed after the artifact was built: caught before anything is written
    progress = SaveProgress()
    assert "waiting to start" in progress.header.value
    with pytest.raises(ln.ValidationError, match="does not exist"):
        ln.save(artifacts, callback=progress)
    assert_nothing_saved(progress, "item 1 (b.bin): file")
    assert "nothing was saved" not in progress.header.value  # said once
    assert progress.report is not None and progress.report.error is not None
    assert ln.Artifact.filter().count() == 0


def test_no_instance_ends_the_panel(tmp_path):
    (path,) = sources(tmp_path, 1)
    progress = SaveProgress()
    with pytest.raises(ln.LaminNbError, match="no lamin_nb instance"):
        ln.Artifact(path).save(callback=progress)
    assert_nothing_saved(progress, "no lamin_nb instance")


class CtrlC(SaveProgress):
    """The user presses Ctrl-C while the bytes go through: a real SIGINT to the main thread."""

    sent = False

    def advance(self, index: int, nbytes: int) -> None:
        super().advance(index, nbytes)
        if not self.sent:
            self.sent = True
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)


def test_interrupt_ends_the_panel(local_instance, tmp_path):
    artifacts = [ln.Artifact(p, key=p.name) for p in sources(tmp_path, 3, size=4 << 20)]
    progress = CtrlC()
    with pytest.raises(KeyboardInterrupt):
        ln.save(artifacts, atomic=True, callback=progress)
    assert progress.sent
    assert_nothing_saved(progress, "interrupted")
    assert all(row.state.value == "failed" for row in progress.rows)
    for index in range(3):
        view = progress.row_view(index)
        assert "lamin-item-failed" in view.box._dom_classes and view.bar.bar_style == "danger"
        assert view.state.value == "failed: KeyboardInterrupt"
    assert ln.Artifact.filter().count() == 0 and ln.check().is_consistent


def test_database_down_ends_the_panel(pg_url, tmp_path):
    ln.init(storage=str(tmp_path / "storage"), db=pg_url)
    ln.Artifact(sources(tmp_path, 1)[0], key="before.bin").save()  # connected and working
    artifacts = [ln.Artifact(p, key=f"down/{p.name}") for p in sources(tmp_path, 2)]
    allow_connections(pg_url, False)  # an outage: no new connection, the open ones killed
    try:
        terminate_lamin_backends(pg_url)
        progress = SaveProgress()
        with pytest.raises(ln.LaminNbError):
            ln.save(artifacts, callback=progress)
    finally:
        allow_connections(pg_url, True)
    assert_nothing_saved(progress, "not currently accepting connections")
    assert all(row.state.value == "failed" for row in progress.rows)
    assert ln.Artifact.filter().count() == 1
