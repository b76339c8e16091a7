"""The whole promise, model-based: what you store is what you load, whatever happens between.

A hypothesis ``RuleBasedStateMachine`` drives the public API (``import lamin_nb as ln``) on a
fresh instance per example and compares it with a plain in-memory model (``model.py``):
saves (single, bulk, atomic) of shared and fresh contents under Unicode keys (NFC and NFD forms
are one key), new versions, dedup, trash, restore, permanent deletes (the latest version too:
a (uid, version) is never issued again), files rewritten while they upload, writes and deletes
denied for real (a bucket policy on S3, an immutable folder locally), a writer killed at a fault
point of its save or delete (a real second process), a save interrupted twice (the second
Ctrl-C lands in its undo), a database outage at commit (PostgreSQL) and repair.

After every step: every visible artifact loads exactly the bytes the model says (through a
fresh handle and the one its save returned), trashed ones only when asked for, deleted ones not
at all (a stale handle says so), each key resolves to its latest version in any normal form,
and ``ln.check()`` finds nothing missing, orphaned or mismatched (and, unless a writer was
killed since the last repair, nothing pending). After repair a deep check is consistent.

Profiles (``tests/model/conftest.py``): ``ci`` by default, ``long`` with
``LAMIN_NB_HYPOTHESIS_PROFILE=long``. The figures are printed at the end of the run.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import lamin_nb as ln
from lamin_nb.core import save as save_protocol
from tests.conftest import BACKENDS, set_immutable
from tests.model.conftest import MAX_KILLS, PROFILE, model_settings
from tests.model.model import DEDUP, FAIL, FIGURES, Model, Outcome, Rec, nfc
from tests.model.warm_child import WarmChildren
from tests.support.faults_env import allow_connections, terminate_lamin_backends
from tests.support.servers import MotoServer, create_pg_database, drop_pg_database

# contents that come back, so dedup happens often; the empty file is a DONE marker
POOL = [b"", b"a", b"same bytes", b"\x00\xff" * 8, "café ☕".encode(), b"x" * 3000]
CONTENTS = st.one_of(st.sampled_from(POOL), st.binary(max_size=48))
# NFC and NFD spellings of the same keys, a compatibility-equivalent sign, and None
KEYS = [
    None,
    "a.txt",
    "runs/7/table.csv",
    "café.txt",
    "cafe\u0301.txt",
    "donne\u0301es/e\u0301te\u0301.bin",
    "données/été.bin",
    "\u212b.bin",
    "日本/データ.bin",
]
KEY = st.sampled_from(KEYS)
# look-alike spaces and unsafe paths are refused, naming the key
BAD_KEYS = ["a\u00a0b.txt", "a\u2003b", "x\u3000y", "../x", "a//b", "/abs", "a/./b"]
SAVE_POINTS = ["after_reserve", "mid_upload", "after_upload", "before_commit", "after_commit"]
DELETE_POINTS = ["mid_delete", "after_object_delete"]


@dataclass
class Context:
    """What one test (one backend pair) gives the examples it runs."""

    kind: str
    tmp: Path
    s3: MotoServer | None
    monkeypatch: pytest.MonkeyPatch
    children: WarmChildren
    examples: int = 0


class Watch(ln.SaveCallback):
    """Records whether a save ever waited (nobody else writes here: a wait is a bug), and runs
    an optional hook on each state."""

    def __init__(self, hook: Any = None) -> None:
        self.hook = hook
        self.waited = ""

    def state(self, index: int, state: Any, detail: str = "") -> None:
        if state.name == "WAITING":
            self.waited = detail
        if self.hook is not None:
            self.hook(index, state, detail)

    def advance(self, index: int, nbytes: int) -> None:
        if self.hook is not None:
            self.hook(index, None, "")


class DoubleInterrupt:
    """Ctrl-C for real when the first upload starts, and again when the undo reports its first
    failed item (the second interrupt lands in the undo)."""

    def __init__(self) -> None:
        self.first = self.second = False

    def __call__(self, index: int, state: Any, detail: str) -> None:
        name = getattr(state, "name", "")
        if not self.first and name == "UPLOADING":
            self.first = True
            self._sigint()
        elif self.first and not self.second and name in ("FAILED", "ROLLED_BACK"):
            self.second = True
            self._sigint()

    @staticmethod
    def _sigint() -> None:
        main = threading.main_thread().ident
        assert main is not None
        signal.pthread_kill(main, signal.SIGINT)


class Rewrite:
    """Another program rewrites the file (same size) when its upload starts or once bytes
    were sent."""

    def __init__(self, path: Path, content: bytes, when: str) -> None:
        self.path, self.content, self.when = path, content, when
        self.uploading = False
        self.done = False

    def __call__(self, index: int, state: Any, detail: str) -> None:
        if state is not None:
            self.uploading = state.name == "UPLOADING"
            if not (self.uploading and self.when == "start"):
                return
        elif not (self.uploading and self.when == "mid"):
            return
        if not self.done:
            self.done = True
            self.path.write_bytes(self.content)


class LaminMachine(RuleBasedStateMachine):
    ctx: ClassVar[Context]

    def __init__(self) -> None:
        super().__init__()
        ctx = self.ctx
        ctx.examples += 1
        FIGURES[f"examples {ctx.kind}"] += 1
        self.base = ctx.tmp / f"example{ctx.examples}"
        self.files = self.base / "files"
        self.files.mkdir(parents=True)
        self.home = self.base / "home"
        ctx.monkeypatch.setenv("LAMIN_NB_HOME", str(self.home))
        ln.disconnect()
        self.db = create_pg_database() if ctx.kind.startswith("pg") else None
        self.bucket = ctx.s3.new_bucket() if ctx.s3 is not None else None
        self.storage = f"s3://{self.bucket}/team" if self.bucket else str(self.base / "storage")
        ln.init(storage=self.storage, db=self.db)
        self.model = Model()
        self.n = 0
        self.denied_puts = self.denied_deletes = False
        self.dirty = False  # a killed writer or an outage left rows that wait for repair
        self.kills = 0
        self.since_repair = 0
        refused = self._file(b"refused")
        for key in BAD_KEYS:  # look-alike spaces and unsafe paths, refused before any write
            with pytest.raises(ln.ValidationError):
                ln.Artifact(refused, key=key)

    def teardown(self) -> None:
        self._allow()
        ln.disconnect()
        if self.db is not None:
            drop_pg_database(self.db)

    # -- helpers -------------------------------------------------------------------------

    def _step(self, name: str) -> None:
        self.since_repair += 1
        FIGURES[f"steps {self.ctx.kind}"] += 1
        FIGURES[f"rule {name}"] += 1

    def _file(self, content: bytes) -> Path:
        self.n += 1
        path = self.files / f"{self.n}.bin"
        path.write_bytes(content)
        return path

    def _fresh(self) -> bytes:
        """Content no other save of this example has: it must be uploaded."""
        self.n += 1
        return f"fresh content {self.n} of example {self.ctx.examples}".encode()

    def _denied(self) -> bool:
        return self.denied_puts or self.denied_deletes

    def _save(
        self,
        items: list[tuple[bytes, str | None]],
        atomic: bool,
        single: bool = False,
        hook: Any = None,
        paths: list[Path] | None = None,
        artifacts: list[Any] | None = None,
    ) -> tuple[list[Any], BaseException | None]:
        """Save ``items`` (from ``paths``, or as ``artifacts`` already built); returns the
        artifacts and what was raised (SaveError or KeyboardInterrupt), after checking that
        the save waited for nobody."""
        paths = paths or [self._file(content) for content, _ in items]
        self._paths = paths
        if artifacts is None:
            artifacts = [ln.Artifact(p, key=k) for p, (_, k) in zip(paths, items, strict=True)]
        watch = Watch(hook)
        raised: BaseException | None = None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                if single:
                    artifacts[0].save(callback=watch)
                else:
                    ln.save(artifacts, atomic=atomic, callback=watch)
            except (ln.SaveError, KeyboardInterrupt) as exc:
                raised = exc
        assert not watch.waited, f"a save waited with no other writer: {watch.waited}"
        self._conflict_warnings = [
            str(w.message) for w in caught if issubclass(w.category, ln.KeyNotSavedWarning)
        ]
        return artifacts, raised

    def _apply(
        self,
        items: list[tuple[bytes, str | None]],
        artifacts: list[Any],
        outcomes: list[Outcome],
        raised: BaseException | None,
    ) -> None:
        """Check each artifact against its expected outcome, then update the model."""
        failing = [i for i, o in enumerate(outcomes) if o.kind == FAIL]
        if failing:
            assert isinstance(raised, ln.SaveError), (raised, outcomes)
            report = raised.report
            not_saved = {id(a) for a, _ in report.failed} | {id(a) for a in report.rolled_back}
            assert not_saved == {id(artifacts[i]) for i in failing}, report
        else:
            assert raised is None, f"{raised!r}; expected {outcomes}"
        conflicts = []
        for index, ((content, key), artifact, outcome) in enumerate(
            zip(items, artifacts, outcomes, strict=True)
        ):
            if outcome.kind == FAIL:
                assert artifact.status is None, artifact
                FIGURES["items failed as expected"] += 1
            elif outcome.kind == DEDUP:
                onto = outcome.onto
                if outcome.leader is not None:
                    onto = [artifacts[outcome.leader].uid]
                assert artifact.uid in onto and artifact.status == "committed", (artifact, onto)
                assert artifact.key == self.model.recs[artifact.uid].key
                FIGURES["items deduplicated"] += 1
                if key is not None and artifact.key != nfc(key):
                    conflicts.append(nfc(key))
            else:
                self._check_new(artifact, key, content)
                self.model.add(
                    Rec(artifact.uid, artifact.key, artifact.version, content, False, artifact)
                )
                self.model.recs[artifact.uid].source = self._paths[index]
                FIGURES["items saved"] += 1
        said = "\n".join(self._conflict_warnings)
        for key in conflicts:  # a key the user asked for and did not get is named
            assert repr(key) in said, (key, said)
        assert bool(conflicts) == bool(said), said
        FIGURES["keys not saved, with a warning"] += len(conflicts)

    def _check_new(self, artifact: Any, key: str | None, content: bytes) -> None:
        assert artifact.status == "committed" and not artifact.is_trashed, artifact
        assert artifact.key == nfc(key), (artifact.key, key)
        assert artifact.uid not in self.model.ever, f"uid {artifact.uid} issued twice"
        if key is None:
            assert artifact.version == 1, artifact
            return
        key = nfc(key)
        assert key is not None
        high = self.model.high.get(key, 0)
        assert artifact.version > high, f"version {artifact.version} of {key!r} after {high}"
        stem = self.model.stems.get(key)
        assert stem is None or artifact.uid.startswith(stem), (artifact.uid, stem)

    def _pick(self, recs: list[Rec], pick: int) -> Rec:
        ordered = sorted(recs, key=lambda r: r.uid)
        return ordered[pick % len(ordered)]

    def _handle(self, rec: Rec, fresh: bool) -> Any:
        if not fresh and rec.handle is not None:
            return rec.handle
        return ln.Artifact.filter(uid=rec.uid, is_trashed=rec.trashed).first()

    # -- saves ---------------------------------------------------------------------------

    @rule(content=CONTENTS, key=KEY)
    def save_one(self, content: bytes, key: str | None) -> None:
        self._step("save one")
        items = [(content, key)]
        outcomes = self.model.plan(items, atomic=True, uploads_ok=not self.denied_puts)
        artifacts, raised = self._save(items, atomic=True, single=True)
        self._apply(items, artifacts, outcomes, raised)

    @rule(
        items=st.lists(st.tuples(CONTENTS, KEY), min_size=1, max_size=5),
        fresh=st.integers(0, 2),
        atomic=st.booleans(),
    )
    def save_bulk(self, items: list[tuple[bytes, str | None]], fresh: int, atomic: bool) -> None:
        self._step("save bulk atomic" if atomic else "save bulk")
        items = items + [(self._fresh(), key) for _, key in items[:fresh]]
        outcomes = self.model.plan(items, atomic=atomic, uploads_ok=not self.denied_puts)
        artifacts, raised = self._save(items, atomic=atomic)
        self._apply(items, artifacts, outcomes, raised)

    @rule(key=KEY, when=st.sampled_from(["start", "mid"]))
    def save_rewritten_during_upload(self, key: str | None, when: str) -> None:
        """Never the rewritten bytes under the old hash: the save fails, or (the bytes were
        read before the rewrite: a local copy, or a single S3 PUT) stores what was hashed."""
        self._step(f"save rewritten during upload ({when})")
        old = self._fresh()
        new = old.replace(b"fresh", b"FRESH")
        path = self._file(old)
        items = [(old, key)]
        outcomes = self.model.plan(items, atomic=True, uploads_ok=not self.denied_puts)
        artifacts, raised = self._save(
            items, atomic=True, single=True, hook=Rewrite(path, new, when), paths=[path]
        )
        if raised is not None and not self.denied_puts:
            assert "changed after it was hashed" in str(raised), raised
            outcomes = [Outcome(FAIL)]
            FIGURES["rewritten uploads refused"] += 1
        else:  # the rewrite came after the bytes were read: what was hashed is stored
            assert self.denied_puts or when == "mid", "a rewritten upload was stored"
        self._apply(items, artifacts, outcomes, raised)

    @rule(
        items=st.lists(st.tuples(CONTENTS, KEY), min_size=0, max_size=3),
        key=KEY,
    )
    def save_interrupted_twice(self, items: list[tuple[bytes, str | None]], key: Any) -> None:
        """Ctrl-C during the uploads, and again during the undo: nothing new is saved, no row
        of this process stays pending, and the same save runs again without waiting."""
        self._step("save interrupted twice")
        items = [(self._fresh(), key), *items]
        outcomes = self.model.plan(items, atomic=False, uploads_ok=not self.denied_puts)
        interrupt = DoubleInterrupt()
        artifacts, raised = self._save(items, atomic=False, hook=interrupt)
        assert interrupt.first and isinstance(raised, KeyboardInterrupt), raised
        FIGURES["saves interrupted during their undo"] += interrupt.second
        if self.denied_deletes and not self.denied_puts:
            # objects were uploaded and may not be deleted: the undo leaves their pending rows
            # (owner not alive) for repair, as the protocol says
            self.dirty = True
        for artifact, outcome in zip(artifacts, outcomes, strict=True):
            if outcome.kind == DEDUP and outcome.leader is None:
                assert artifact.uid in outcome.onto, artifact  # decided before any upload
            else:
                assert artifact.status is None, artifact

    # -- trash, restore, delete ------------------------------------------------------------

    @precondition(lambda self: self.model.visible())
    @rule(pick=st.integers(0, 1000), fresh=st.booleans())
    def trash(self, pick: int, fresh: bool) -> None:
        self._step("trash")
        rec = self._pick(self.model.visible(), pick)
        handle = self._handle(rec, fresh)
        handle.delete()
        assert handle.is_trashed
        rec.trashed = True

    @precondition(lambda self: self.model.trashed())
    @rule(pick=st.integers(0, 1000), fresh=st.booleans())
    def restore(self, pick: int, fresh: bool) -> None:
        self._step("restore")
        rec = self._pick(self.model.trashed(), pick)
        handle = self._handle(rec, fresh)
        handle.restore()
        assert not handle.is_trashed
        rec.trashed = False

    def _delete(self, rec: Rec, fresh: bool) -> bool:
        handle = self._handle(rec, fresh)
        if self.denied_deletes:
            with pytest.raises(ln.StorageError, match="unchanged"):
                handle.delete(permanent=True)
            FIGURES["deletes denied, artifact unchanged"] += 1
            return False
        # another handle on the same artifact, made before the delete: stale afterwards
        stale = rec.handle if fresh or rec.handle is None else self._handle(rec, True)
        handle.delete(permanent=True)
        assert handle.status is None
        self.model.remove(rec.uid, stale)
        FIGURES["permanent deletes"] += 1
        return True

    @precondition(lambda self: self.model.recs)
    @rule(pick=st.integers(0, 1000), fresh=st.booleans(), resave=st.booleans())
    def delete_permanently(self, pick: int, fresh: bool, resave: bool) -> None:
        """Then (maybe) save the deleted artifact again, from its file, as a re-run cell
        would: it is a new artifact, never the deleted uid again."""
        self._step("delete permanently")
        rec = self._pick(list(self.model.recs.values()), pick)
        handle = rec.handle  # built from rec.source, unless another process saved it
        if not self._delete(rec, fresh) or not resave or rec.source is None or fresh:
            return
        self._step("save a deleted artifact again")
        items = [(rec.source.read_bytes(), rec.key)]
        outcomes = self.model.plan(items, atomic=True, uploads_ok=not self.denied_puts)
        artifacts, raised = self._save(
            items, atomic=True, single=True, paths=[rec.source], artifacts=[handle]
        )
        self._apply(items, artifacts, outcomes, raised)

    @precondition(lambda self: any(r.key for r in self.model.visible()))
    @rule(pick=st.integers(0, 1000), again=st.booleans())
    def delete_latest_version(self, pick: int, again: bool) -> None:
        """Then (maybe) save new content under that key at once: a new uid and version."""
        self._step("delete latest version")
        keys = sorted({r.key for r in self.model.visible() if r.key is not None})
        latest = self.model.latest(keys[pick % len(keys)])
        assert latest is not None
        self._delete(latest, fresh=False)
        if again:
            items = [(self._fresh(), latest.key)]
            outcomes = self.model.plan(items, atomic=True, uploads_ok=not self.denied_puts)
            artifacts, raised = self._save(items, atomic=True, single=True)
            self._apply(items, artifacts, outcomes, raised)

    # -- denied writes and deletes ---------------------------------------------------------

    @precondition(lambda self: not self._denied())
    @rule(puts=st.booleans(), deletes=st.booleans())
    def deny(self, puts: bool, deletes: bool) -> None:
        """A real refusal: a bucket policy on S3; locally an immutable folder (both at once)."""
        self._step("deny writes or deletes")
        if self.bucket is None:
            set_immutable(Path(self.storage) / ".lamindb", True)
            self.denied_puts = self.denied_deletes = True
            return
        actions = [a for a, on in (("s3:PutObject", puts), ("s3:DeleteObject", deletes)) if on]
        actions = actions or ["s3:PutObject"]
        assert self.ctx.s3 is not None
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": actions,
                    "Resource": f"arn:aws:s3:::{self.bucket}/team/.lamindb/*",
                }
            ],
        }
        self.ctx.s3.client().put_bucket_policy(Bucket=self.bucket, Policy=json.dumps(policy))
        self.denied_puts = "s3:PutObject" in actions
        self.denied_deletes = "s3:DeleteObject" in actions

    def _allow(self) -> None:
        if self.bucket is None:
            managed = Path(self.storage) / ".lamindb"
            if managed.exists():
                set_immutable(managed, False)
        elif self._denied():
            assert self.ctx.s3 is not None
            self.ctx.s3.allow_all(self.bucket)
        self.denied_puts = self.denied_deletes = False

    @precondition(lambda self: self._denied())
    @rule()
    def allow(self) -> None:
        self._step("allow again")
        self._allow()

    # -- other processes and outages ---------------------------------------------------------

    def _child(self, spec: dict[str, Any], fault: str) -> None:
        env = {k: v for k, v in os.environ.items() if k == "LAMIN_NB_HOME" or k.startswith("AWS_")}
        result = self.ctx.children.run(spec, fault, env)
        assert result.killed, (result.returncode, result.output, result.stderr[-2000:])
        self.kills += 1
        FIGURES["writers killed"] += 1

    @precondition(lambda self: not self._denied() and self.kills < MAX_KILLS)
    @rule(
        point=st.sampled_from(SAVE_POINTS),
        keys=st.lists(KEY, min_size=1, max_size=2),
        rerun=st.booleans(),
    )
    def kill_a_saving_writer(self, point: str, keys: list[str | None], rerun: bool) -> None:
        """SIGKILL at a fault point; then (maybe) the same save again in this process, as a
        user re-runs the cell: it must neither wait nor lose anything."""
        self._step(f"kill a saving writer ({point})")
        items = [(self._fresh(), key) for key in keys]
        paths = [self._file(content) for content, _ in items]
        pairs = zip(paths, items, strict=True)
        spec = {"op": "save", "items": [[str(p), k] for p, (_, k) in pairs]}
        self._child(spec, f"{point}:kill")
        if point == "after_commit":
            self._adopt_committed_by_child(items)
        else:
            self.dirty = True
        if rerun:
            outcomes = self.model.plan(items, atomic=False, uploads_ok=True)
            artifacts, raised = self._save(items, atomic=False, paths=paths)
            self._apply(items, artifacts, outcomes, raised)
            FIGURES["saves re-run after a killed writer"] += 1

    def _adopt_committed_by_child(self, items: list[tuple[bytes, str | None]]) -> None:
        """The child committed before it was killed: its artifacts are there, as saved."""
        found = [a for a in ln.Artifact.filter().all() if a.uid not in self.model.recs]
        assert len(found) == len(items), (found, items)
        wanted = sorted((c, nfc(k) or "") for c, k in items)
        loaded = sorted((Path(a.load()).read_bytes(), a.key or "") for a in found)
        assert loaded == wanted, (loaded, wanted)
        by_content = dict(items)
        for artifact in sorted(found, key=lambda a: a.version):
            content = Path(artifact.load()).read_bytes()
            self._check_new(artifact, by_content[content], content)
            # the handle comes from a query: no file of this process is behind it
            rec = Rec(artifact.uid, artifact.key, artifact.version, content, False, artifact)
            self.model.add(rec)

    @precondition(
        lambda self: self.model.visible() and not self._denied() and self.kills < MAX_KILLS
    )
    @rule(point=st.sampled_from(DELETE_POINTS), pick=st.integers(0, 1000))
    def kill_a_deleting_writer(self, point: str, pick: int) -> None:
        self._step(f"kill a deleting writer ({point})")
        rec = self._pick(self.model.visible(), pick)
        self._child({"op": "delete", "uid": rec.uid}, f"{point}:kill")
        self.model.remove(rec.uid, rec.handle)  # hidden at once, gone after repair
        self.dirty = True

    @precondition(lambda self: self.db is not None and not self._denied())
    @rule(keys=st.lists(KEY, min_size=1, max_size=3), rerun=st.booleans())
    def database_outage_at_commit(self, keys: list[str | None], rerun: bool) -> None:
        """PostgreSQL refuses connections as the save commits: the undo cannot run, so this
        process's own rows stay pending. Once it is back, the same save reclaims them."""
        self._step("database outage at commit")
        assert self.db is not None
        url = self.db
        items = [(self._fresh(), key) for key in keys]
        paths = [self._file(content) for content, _ in items]

        def outage(index: int, state: Any, detail: str) -> None:
            if getattr(state, "name", "") == "COMMITTING" and index == 0:
                allow_connections(url, False)
                terminate_lamin_backends(url)

        try:
            _, raised = self._save(items, atomic=False, hook=outage, paths=paths)
        finally:
            allow_connections(url, True)
        assert isinstance(raised, ln.SaveError), raised
        self.dirty = True
        if rerun:
            outcomes = self.model.plan(items, atomic=False, uploads_ok=True)
            artifacts, raised = self._save(items, atomic=False, paths=paths)
            self._apply(items, artifacts, outcomes, raised)
            FIGURES["saves re-run after an outage"] += 1

    # -- repair ------------------------------------------------------------------------------

    @precondition(lambda self: not self._denied() and (self.dirty or self.since_repair >= 4))
    @rule()
    def repair(self) -> None:
        self._step("repair")
        plan = ln.repair(dry_run=False, grace_seconds=0)
        assert all(a.done and a.error is None for a in plan.actions), repr(plan)
        kinds = {a.kind for a in plan.actions}
        allowed = {"roll back pending", "roll forward deleting"} if self.dirty else set()
        assert kinds <= allowed, repr(plan)
        FIGURES["repair actions"] += len(plan.actions)
        report = ln.check(deep=True)
        assert report.is_consistent, repr(report)
        assert not (report.pending or report.deleting or report.lost), repr(report)
        assert report.n_ok == len(self.model.recs), (report.n_ok, len(self.model.recs))
        FIGURES["deep checks consistent after repair"] += 1
        self.dirty = False
        self.since_repair = 0

    # -- after every step ----------------------------------------------------------------

    @invariant()
    def what_you_store_is_what_you_load(self) -> None:
        FIGURES["invariant checks"] += 1
        model = self.model
        shown = {a.uid: a for a in ln.Artifact.filter().all()}
        assert set(shown) == {r.uid for r in model.visible()}, "visible artifacts differ"
        trashed = {a.uid: a for a in ln.Artifact.filter(is_trashed=True).all()}
        assert set(trashed) == {r.uid for r in model.trashed()}, "trashed artifacts differ"
        for uid, artifact in {**shown, **trashed}.items():
            rec = model.recs[uid]
            latest = rec.key is None or model.latest(rec.key) is rec
            expected = (rec.key, rec.version, rec.trashed, latest and not rec.trashed)
            found = (artifact.key, artifact.version, artifact.is_trashed, artifact.is_latest)
            assert found == expected, (uid, found, expected)
            assert Path(artifact.load()).read_bytes() == rec.content, f"{uid} loads other bytes"
            if rec.handle is not None:
                assert Path(rec.handle.load()).read_bytes() == rec.content, uid
        for key in KEYS:
            if key is None:
                continue
            latest = model.latest(nfc(key) or "")
            if latest is None:
                with pytest.raises(ln.NotFoundError):
                    ln.Artifact.get(key)
            else:
                assert ln.Artifact.get(key).uid == latest.uid, key
        for uid, handle in list(model.gone.items())[-4:]:
            with pytest.raises(ln.NotFoundError):
                ln.Artifact.get(uid)
            if handle is not None:
                with pytest.raises(ln.NotFoundError):
                    handle.load()
        report = ln.check()
        assert not (report.missing or report.orphans or report.mismatched), repr(report)
        if not self.dirty:
            assert report.is_consistent and not (report.pending or report.deleting), repr(report)
            assert report.n_ok == len(model.recs), (report.n_ok, len(model.recs))


@pytest.mark.parametrize("kind", BACKENDS)
def test_what_you_store_is_what_you_load(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3 = request.getfixturevalue("s3_server") if kind.endswith("s3") else None
    # nobody else writes here, so a save never needs to wait; if one does, fail soon, not
    # after ten minutes (the save also reports the wait, which the machine asserts against)
    monkeypatch.setattr(save_protocol, "WAIT_FOR_OTHERS_SECONDS", 5.0)
    children = WarmChildren()
    LaminMachine.ctx = Context(kind, tmp_path, s3, monkeypatch, children)
    FIGURES[f"profile {PROFILE}"] = 1
    try:
        run_state_machine_as_test(LaminMachine, settings=model_settings())
    finally:
        children.close()
