"""UploadWidget: pick files in the browser, click Save, watch them go through the same core.

The browser sends the bytes to the kernel; they are written to a private staging folder
under ``LAMIN_NB_HOME``, saved with ``ln.save`` (each file atomic on its own, or the whole
batch with "all or nothing"), and the staging folder is removed whatever happened.
"""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from ..core.errors import LaminNbError, SaveError, describe
from ..core.settings import home
from ._common import TextRepr, esc, set_visible, toggle_class, toned
from .progress import SaveProgress

if TYPE_CHECKING:
    from ..core.artifact import Artifact
    from ..core.save import SaveReport

USER_ERRORS = (LaminNbError, TypeError, ValueError, OSError, ImportError)


class UploadWidget(TextRepr, w.VBox):
    """File picker, key prefix, description and a Save button; progress appears below."""

    def __init__(
        self,
        key_prefix: str = "",
        description: str = "",
        atomic: bool = False,
        accept: str = "",
        **kwargs: Any,
    ) -> None:
        picker = w.FileUpload(multiple=True, accept=accept, description="Pick files")
        key_field = w.Text(
            value=key_prefix, description="key prefix", placeholder="e.g. uploads/run1 (optional)"
        )
        description_field = w.Text(
            value=description, description="description", placeholder="optional"
        )
        atomic_box = w.Checkbox(value=atomic, description="all or nothing", indent=False)
        save_button = w.Button(description="Save", icon="upload", button_style="primary")
        status, progress_box = w.HTML(), w.VBox()
        super().__init__(
            [
                w.HBox([picker, save_button, atomic_box]),
                key_field,
                description_field,
                status,
                progress_box,
            ],
            **kwargs,
        )
        self.picker, self.key_field, self.description_field = picker, key_field, description_field
        self.atomic_box, self.save_button = atomic_box, save_button
        self.status, self.progress_box = status, progress_box
        for widget, name in (
            (self, "lamin-upload-widget"),
            (picker, "lamin-upload-picker"),
            (key_field, "lamin-upload-key"),
            (description_field, "lamin-upload-description"),
            (atomic_box, "lamin-upload-atomic"),
            (save_button, "lamin-save-button"),
            (status, "lamin-upload-status"),
            (progress_box, "lamin-upload-progress"),
        ):
            widget.add_class(name)
        set_visible(status, False)
        self.progress: SaveProgress | None = None
        self.report: SaveReport | None = None
        self.artifacts: list[Artifact] = []
        self.message = ""  # the status line as text
        save_button.on_click(lambda _: self.save())

    def save(self) -> list[Artifact]:
        """What the Save button does; returns the artifacts now in the instance."""
        files = list(self.picker.value)
        if not files:
            self._show("pick one or more files first", ok=False)
            return []
        staging = home() / "staging" / f"upload-{secrets.token_hex(6)}"
        self.save_button.disabled = True
        try:
            return self._save(files, staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            self.save_button.disabled = False

    def _save(self, files: list[Any], staging: Path) -> list[Artifact]:
        import lamin_nb as ln

        try:
            artifacts = self._artifacts(files, staging)
        except USER_ERRORS as exc:
            self._show(f"nothing saved: {describe(exc)}", ok=False)
            return []
        self.progress = SaveProgress(title=f"uploading {len(artifacts)} file(s)")
        self.progress_box.children = (self.progress,)
        try:
            self.report = ln.save(artifacts, atomic=self.atomic_box.value, callback=self.progress)
        except SaveError as exc:
            self.report = exc.report
            failed = ", ".join(_name(a) for a, _ in (exc.report.failed if exc.report else []))
            kept = len(exc.report.saved) if exc.report else 0
            self._show(
                f"could not save {failed or 'the files'}; {kept} other file(s) saved "
                "(details per file below)",
                ok=False,
            )
        except USER_ERRORS as exc:
            self._show(f"nothing saved: {describe(exc)}", ok=False)
            return []
        else:
            self.picker.value = ()  # saved: clicking Save again must not save them twice
            self._show(_saved_message(len(artifacts), self.report), ok=True)
        self.artifacts = [a for a in artifacts if a.status == "committed"]
        return self.artifacts

    def _artifacts(self, files: list[Any], staging: Path) -> list[Artifact]:
        """Write each upload to its own staging folder (keeps its name) and wrap it."""
        import lamin_nb as ln

        prefix = self.key_field.value.strip().strip("/")
        description = self.description_field.value.strip() or None
        artifacts = []
        for number, upload in enumerate(files):
            name = _safe_name(upload["name"])
            path = staging / str(number) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(_content(upload["content"]))
            key = f"{prefix}/{name}" if prefix else name
            artifacts.append(ln.Artifact(path, key=key, description=description))
        return artifacts

    def _show(self, message: str, ok: bool) -> None:
        self.message = message
        self.status.value = toned(esc(message), "ok" if ok else "error")
        toggle_class(self.status, "lamin-status-ok", ok)
        toggle_class(self.status, "lamin-status-error", not ok)
        set_visible(self.status, True)
        self.republish()  # a saved notebook keeps this outcome, not the empty picker

    def __repr__(self) -> str:
        names = [_safe_name(f["name"]) for f in self.picker.value]
        picked = f"{len(names)} file(s) picked" + (f" ({', '.join(names[:5])})" if names else "")
        lines = [f"UploadWidget: {picked}, key prefix {self.key_field.value.strip()!r}"]
        if self.message:
            lines.append(f"  {self.message}")
        if self.progress is not None:
            lines.append(repr(self.progress))
        return "\n".join(lines)


def _safe_name(name: str) -> str:
    """Only the last path part of what the browser reports: never a path into staging."""
    base = PurePosixPath(str(name).replace("\\", "/")).name
    return base if base not in ("", ".", "..") else "upload"


def _content(content: Any) -> bytes:
    return content.tobytes() if isinstance(content, memoryview) else bytes(content)


def _name(artifact: Artifact) -> str:
    return artifact.key or artifact.uid


def _saved_message(n: int, report: SaveReport) -> str:
    """'saved 3 file(s)', or what happened to each kind when it was not a plain save."""
    if len(report.saved) == n:
        return f"saved {n} file(s)"
    return f"{n} file(s): {report.summary()}"
