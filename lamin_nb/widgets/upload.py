"""UploadWidget: pick files in the browser, click Save, watch them go through the same core.

In a page served by Jupyter with the lamin_nb server extension, the picker sends each file to
the server in chunks while the user fills in the key (any size; progress, rate, time left,
Cancel; resumable after a reload); the kernel saves the staged files from the Jupyter host's
disk. Elsewhere the browser sends small files in one kernel message; they are written to a
private staging folder under ``LAMIN_NB_HOME``, and files above the message limit are refused
with a reason. Either way the files are saved with ``ln.save`` (each file atomic on its own,
or the whole batch with "all or nothing").
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from ..core import staged
from ..core.errors import LaminNbError, SaveError, describe
from ..core.settings import home
from ._common import TextRepr, esc, set_visible, toggle_class, toned
from .picker import FilePicker
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
        picker = FilePicker(multiple=True, accept=accept, description="Pick files")
        key_field = w.Text(
            value=key_prefix, description="key prefix", placeholder="e.g. uploads/run1 (optional)"
        )
        description_field = w.Text(
            value=description, description="description", placeholder="optional"
        )
        atomic_box = w.Checkbox(value=atomic, description="all or nothing", indent=False)
        save_button = w.Button(description="Save", icon="upload", button_style="primary")
        status, progress_box = w.HTML(), w.VBox()
        picker.layout.align_self = "flex-start"  # as wide as its button and file rows
        super().__init__(
            [
                picker,
                key_field,
                description_field,
                w.HBox([save_button, atomic_box]),
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
        self.save_when_uploaded = False
        save_button.on_click(lambda _: self.save())
        picker.observe(self._on_busy, "busy")
        picker.observe(self._on_refused, "error")

    def save(self) -> list[Artifact]:
        """What the Save button does; returns the artifacts now in the instance."""
        if self.picker.busy:  # chunks are still moving: save once the last one arrived
            self.save_when_uploaded = True
            self._show("uploading: the files are saved as soon as every byte arrived", ok=None)
            return []
        files, uploads = list(self.picker.value), self.picker.complete()
        if not files and not uploads:
            unfinished = [e["name"] for e in self.picker.unfinished()]
            if unfinished:
                names = ", ".join(map(str, unfinished))
                self._show(f"the upload of {names} is not finished: pick it again to resume", False)
            else:
                self._show("pick one or more files first", ok=False)
            return []
        staging = home() / "staging" / f"upload-{secrets.token_hex(6)}"
        self.save_button.disabled = True
        try:
            return self._save(files, uploads, staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            self.save_button.disabled = False

    def _on_busy(self, change: dict[str, Any]) -> None:
        if not change["new"] and self.save_when_uploaded:
            self.save_when_uploaded = False
            self.save()

    def _on_refused(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self._show(str(change["new"]), ok=False)

    def _save(
        self, files: list[Any], uploads: list[dict[str, Any]], staging: Path
    ) -> list[Artifact]:
        import lamin_nb as ln

        with contextlib.ExitStack() as held:  # staged uploads stay locked while they save
            try:
                artifacts = self._artifacts(files, staging)
                from_server = self._staged_artifacts(uploads, held)
            except USER_ERRORS as exc:
                self._show(f"nothing saved: {describe(exc)}", ok=False)
                return []
            artifacts += list(from_server)
            self.progress = SaveProgress(title=f"uploading {len(artifacts)} file(s)")
            self.progress_box.children = (self.progress,)
            try:
                self.report = ln.save(
                    artifacts, atomic=self.atomic_box.value, callback=self.progress
                )
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
            self._forget_saved(from_server)
        self.artifacts = [a for a in artifacts if a.status == "committed"]
        return self.artifacts

    def _artifacts(self, files: list[Any], staging: Path) -> list[Artifact]:
        """Write each upload to its own staging folder (keeps its name) and wrap it."""
        import lamin_nb as ln
        from lamin_nb.core.validate import check_key_prefix

        check_key_prefix(self.key_field.value.strip())  # checked before anything is written
        description = self.description_field.value.strip() or None
        artifacts = []
        for number, upload in enumerate(files):
            name = _safe_name(upload["name"])
            path = staging / str(number) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(_content(upload["content"]))
            artifacts.append(ln.Artifact(path, key=self._key(name), description=description))
        return artifacts

    def _staged_artifacts(
        self, entries: list[dict[str, Any]], held: contextlib.ExitStack
    ) -> dict[Artifact, staged.StagedUpload]:
        """Artifacts of the files the page sent to the Jupyter server, read where they lie."""
        import lamin_nb as ln

        description = self.description_field.value.strip() or None
        found: dict[Artifact, staged.StagedUpload] = {}
        for entry in entries:
            upload = staged.load_at(entry.get("path"))
            held.enter_context(staged.holding(upload))
            if upload.id != entry.get("id") or upload.received != upload.size:
                raise staged.IncompleteUpload(f"the upload of {upload.name!r} is not complete")
            artifact = ln.Artifact(upload.path, key=self._key(upload.name), description=description)
            found[artifact] = upload
        return found

    def _forget_saved(self, from_server: dict[Artifact, staged.StagedUpload]) -> None:
        """Saved (or already there): the staged bytes go; a failed one stays for a retry."""
        done = set()
        for artifact, upload in from_server.items():
            if artifact.status == "committed":
                staged.mark_saved(upload, artifact.uid)
                done.add(upload.id)
        self.picker.forget(done)

    def _key(self, name: str) -> str:
        """The core's key rule; a text field's surrounding blanks are not part of what was typed
        (an empty ``name`` only checks the prefix)."""
        from lamin_nb.core.validate import check_key_prefix, key_under

        prefix = self.key_field.value.strip()
        return key_under(prefix, name) if name else (check_key_prefix(prefix) or "")

    def _show(self, message: str, ok: bool | None) -> None:
        """The status line: a success, an error, or (``ok=None``) a note while work goes on."""
        self.message = message
        self.status.value = toned(esc(message), None if ok is None else "ok" if ok else "error")
        toggle_class(self.status, "lamin-status-ok", ok is True)
        toggle_class(self.status, "lamin-status-error", ok is False)
        set_visible(self.status, True)
        self.republish()  # a saved notebook keeps this outcome, not the empty picker

    def __repr__(self) -> str:
        names = [_safe_name(f["name"]) for f in self.picker.value]
        names += [str(e.get("name")) for e in self.picker.staged]
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
