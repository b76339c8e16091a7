"""Saving a browser upload staged on the Jupyter host (``staged.py``) through the facade.

Kept apart from ``staged.py``, which sits below the protocols (``ln.repair`` sweeps staged
uploads); this builds an ``Artifact``, so it sits on top with the facade.
"""

from __future__ import annotations

from typing import Any

from . import staged
from .artifact import Artifact
from .callbacks import SaveCallback
from .report import SaveReport
from .save import save


def save_staged(
    upload_id: Any, owner: str, callback: SaveCallback | None = None
) -> tuple[Any, SaveReport | None]:
    """Save a complete upload through the save protocol (in the current instance).

    Returns the artifact and the save's report (None when it was saved by an earlier call).
    Raises ``IncompleteUpload`` before the last byte arrived; a failed save leaves the staged
    bytes, so the same call can be retried.
    """
    upload = staged.load(upload_id, owner)
    if upload.state == staged.COMMITTED and upload.artifact is not None:
        return Artifact.get(upload.artifact), None
    with staged.holding(upload):
        received = upload.received
        if received != upload.size:
            raise staged.IncompleteUpload(
                f"upload {upload.id!r} of {upload.name!r} has {received} of {upload.size} bytes; "
                f"send the rest from offset {received} before saving"
            )
        artifact = Artifact(upload.path, key=upload.key, description=upload.description)
        report = save([artifact], atomic=True, callback=callback)
        staged.mark_saved(upload, artifact.uid)
    return artifact, report
