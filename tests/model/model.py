"""The plain in-memory model the state machine compares lamin_nb against.

It knows only what a user was promised: which artifacts are committed (visible or in the
trash), their key, version and bytes, which uids and versions were ever issued, and what a
save of some content under some key must do (deduplicate, make a new version, or fail).
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

NEW, DEDUP, FAIL = "new", "dedup", "fail"
# examples, steps and outcomes, printed at the end of the run (tests/model/conftest.py)
FIGURES: Counter[str] = Counter()


def nfc(key: str | None) -> str | None:
    return None if key is None else unicodedata.normalize("NFC", key)


@dataclass
class Rec:
    """One committed artifact, as the user should see it."""

    uid: str
    key: str | None
    version: int
    content: bytes
    trashed: bool = False
    handle: Any = None  # the Artifact object the save returned (may be stale later)
    source: Any = None  # the file it was saved from


@dataclass
class Outcome:
    """What one item of a save must end as."""

    kind: str  # NEW, DEDUP or FAIL
    onto: list[str] = field(default_factory=list)  # DEDUP: uids it may be deduplicated onto
    leader: int | None = None  # DEDUP onto an item earlier in the same batch


@dataclass
class Model:
    recs: dict[str, Rec] = field(default_factory=dict)  # committed: visible or trashed
    ever: set[str] = field(default_factory=set)  # every uid ever committed
    high: dict[str, int] = field(default_factory=dict)  # key -> highest version ever committed
    stems: dict[str, str] = field(default_factory=dict)  # key -> uid stem of its family
    gone: dict[str, Any] = field(default_factory=dict)  # deleted for good: uid -> stale handle

    # -- views ---------------------------------------------------------------------------

    def visible(self) -> list[Rec]:
        return [r for r in self.recs.values() if not r.trashed]

    def trashed(self) -> list[Rec]:
        return [r for r in self.recs.values() if r.trashed]

    def latest(self, key: str) -> Rec | None:
        versions = [r for r in self.visible() if r.key == key]
        return max(versions, key=lambda r: r.version) if versions else None

    def keys(self) -> set[str]:
        return {r.key for r in self.recs.values() if r.key is not None}

    # -- what a save must do -------------------------------------------------------------

    def plan(
        self, items: list[tuple[bytes, str | None]], atomic: bool, uploads_ok: bool
    ) -> list[Outcome]:
        """Item by item, in order: same content as a visible artifact is deduplicated onto it
        (a trashed one does not count: the user gets a new, visible artifact); same content as
        an earlier item of the batch follows that item; anything else is uploaded as a new
        artifact (a new version of its key), which fails while uploads are denied. An atomic
        batch with any failure saves nothing new."""
        outcomes: list[Outcome] = []
        leaders: dict[bytes, int] = {}
        for index, (content, _key) in enumerate(items):
            onto = [r for r in self.visible() if r.content == content]
            if onto:
                outcomes.append(Outcome(DEDUP, [r.uid for r in onto]))
            elif content in leaders:
                lead = leaders[content]
                if outcomes[lead].kind == FAIL:
                    outcomes.append(Outcome(FAIL))
                else:
                    outcomes.append(Outcome(DEDUP, leader=lead))
            else:
                leaders[content] = index
                outcomes.append(Outcome(NEW if uploads_ok else FAIL))
        if atomic and any(o.kind == FAIL for o in outcomes):
            for o in outcomes:
                if o.kind == NEW or (o.kind == DEDUP and o.leader is not None):
                    o.kind = FAIL
        return outcomes

    # -- changes -------------------------------------------------------------------------

    def add(self, rec: Rec) -> None:
        self.recs[rec.uid] = rec
        self.ever.add(rec.uid)
        if rec.key is not None:
            self.high[rec.key] = max(self.high.get(rec.key, 0), rec.version)
            self.stems.setdefault(rec.key, rec.uid[:16])

    def remove(self, uid: str, handle: Any) -> None:
        self.recs.pop(uid)
        self.gone[uid] = handle
