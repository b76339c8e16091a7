"""UploadsPanel: ``ln.uploads()`` rendered, with Resume and Discard for each interrupted upload.

Resume saves the recorded source file again under its key (the save takes the interrupted
upload over and sends only the missing parts, with a ``SaveProgress`` below); Discard aborts
it now (``discard_upload``: its parts or partial file are freed). Which apply is the core's
rule (``Upload.can_resume``, ``Upload.can_discard``): an upload whose writer is at work on it
offers neither.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from ..core.errors import describe
from ._common import TextRepr, esc, human_age, human_size, toggle_class, toned

if TYPE_CHECKING:
    from ..core.transfers import Upload


class UploadsPanel(TextRepr, w.VBox):
    """The resumable uploads of the current instance, with Resume and Discard buttons.

    Parameters
    ----------
    after_action : callable or None
        Called after a Resume or Discard (a panel that shows this one refreshes itself).
    embedded : bool
        Shown inside another panel, whose Refresh refreshes this list: no Refresh button
        and no header while nothing is listed.
    """

    def __init__(
        self,
        after_action: Callable[[], None] | None = None,
        embedded: bool = False,
        **kwargs: Any,
    ) -> None:
        self.after_action = after_action  # run after a Resume or Discard (a host panel)
        self.embedded = embedded  # inside another panel: its Refresh refreshes this list
        self.header = w.HTML()
        self.rows = w.VBox()
        self.status = w.HTML()
        self.status.add_class("lamin-uploads-status")
        self.progress_box = w.VBox()
        top: list[Any] = [self.header]
        if not embedded:
            refresh = w.Button(description="Refresh", icon="refresh")
            refresh.add_class("lamin-refresh-button")
            refresh.on_click(lambda _: self.refresh())
            top.append(refresh)
        super().__init__([w.HBox(top), self.rows, self.status, self.progress_box], **kwargs)
        self.add_class("lamin-uploads-panel")
        self.uploads: list[Upload] = []
        self.message = ""
        self.refresh()

    def refresh(self) -> None:
        import lamin_nb as ln

        try:
            self.uploads = ln.uploads()
        except Exception as exc:  # noqa: BLE001 - shown in the panel, never raised from a click
            self._say(f"could not list the uploads: {describe(exc)}", ok=False)
            return
        n = len(self.uploads)
        header = f"<b>{n} resumable upload{'s' if n != 1 else ''}</b>"
        self.header.value = "" if self.embedded and not n else header
        self.rows.children = [self._row(u) for u in self.uploads]
        self.republish()

    def _row(self, upload: Upload) -> Any:
        label = w.HTML(esc(_line(upload)))
        label.add_class("lamin-upload-row-text")
        row = w.HBox([label])
        row.add_class("lamin-upload-row")
        buttons: list[Any] = []
        if upload.can_resume:  # the core's rule: nobody at work on it, its source recorded
            resume = w.Button(description="Resume", button_style="primary")
            resume.add_class("lamin-resume-button")
            resume.on_click(lambda _: self.resume(upload.uid))
            buttons.append(resume)
        if upload.can_discard:
            discard = w.Button(description="Discard", button_style="danger")
            discard.add_class("lamin-discard-button")
            discard.on_click(lambda _: self.discard(upload.uid))
            buttons.append(discard)
        row.children = (label, *buttons)
        return row

    def _find(self, uid: str) -> Upload:
        return next(u for u in self.uploads if u.uid == uid)

    def resume(self, uid: str) -> None:
        """Save the upload's source again: only the missing parts are sent."""
        import lamin_nb as ln

        from ..core.transfers import resume_source
        from .progress import SaveProgress

        upload = self._find(uid)
        try:
            source, key = resume_source(uid)
        except Exception as exc:  # noqa: BLE001 - shown in the panel
            self._say(f"{upload.key or uid}: {describe(exc)}", ok=False)
            self._after()
            return
        progress = SaveProgress(title=f"resuming {upload.key or uid}")
        self.progress_box.children = [progress]
        try:
            artifact = ln.Artifact(source, key=key).save(callback=progress)
        except Exception as exc:  # noqa: BLE001 - shown in the panel
            self._say(f"{upload.key or uid}: {describe(exc)}", ok=False)
        else:
            self._say(f"saved {artifact.key or artifact.uid}", ok=True)
        self._after()

    def discard(self, uid: str) -> None:
        """Abort the upload now; its parts (or partial file) are freed."""
        from ..core.transfers import discard_upload

        upload = self._find(uid)
        try:
            freed = discard_upload(uid)
        except Exception as exc:  # noqa: BLE001 - shown in the panel
            self._say(f"{upload.key or uid}: {describe(exc)}", ok=False)
        else:
            self._say(f"discarded {upload.key or uid} (freed {human_size(freed)})", ok=True)
        self._after()

    def _after(self) -> None:
        self.refresh()
        if self.after_action is not None:
            self.after_action()

    def _say(self, message: str, ok: bool) -> None:
        self.message = message
        self.status.value = toned(esc(message), "ok" if ok else "error")
        toggle_class(self.status, "lamin-status-error", not ok)
        self.republish()

    def __repr__(self) -> str:
        n = len(self.uploads)
        lines = [f"{n} resumable upload{'s' if n != 1 else ''}"]
        lines += [f"  {_line(u)}" for u in self.uploads]
        if self.message:
            lines.append(self.message)
        return "\n".join(lines)


def _line(upload: Upload) -> str:
    """'big.h5ad: 717.0 MiB of 1.0 GiB (90 of 128 parts), interrupted; kept 55 min more'"""
    text = str(upload)
    if upload.alive is False:
        text += f"; kept {human_age(upload.resumable_for)} more"
    return text
