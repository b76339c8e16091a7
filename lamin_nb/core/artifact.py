"""Artifact: a file, AnnData or DataFrame on its way to (or in) an instance."""

from __future__ import annotations

import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import instance as _instance
from .errors import IntegrityError, NotFoundError, ValidationError
from .hashing import HASH_TYPE, hash_file
from .models import ArtifactRow
from .settings import home
from .storage import READ_ONLY
from .validate import check_description, check_key, check_source, suffix_of

if TYPE_CHECKING:
    from .callbacks import SaveCallback
    from .query import QuerySet

ANNDATA_HINT = "AnnData support needs anndata: pip install 'lamin_nb[anndata]'"
DATAFRAME_HINT = "DataFrame support needs pandas and pyarrow: pip install 'lamin_nb[anndata]'"
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def version_suffix(version: int) -> str:
    n, out = max(version - 1, 0), ""
    for _ in range(4):
        n, r = divmod(n, 62)
        out = _BASE62[r] + out
    return out


class Artifact:
    """A data object and its metadata. Construct, then ``save()``.

    The uid is fixed at construction and kept through a failed save, so a retry reuses it.
    """

    uid: str
    key: str | None
    description: str | None
    suffix: str
    size: int | None
    hash_type: str | None
    otype: str | None
    version: int | None
    is_latest: bool
    storage: str | None
    created_at: datetime | None
    created_by: str | None
    status: str | None

    def __init__(self, path: Any, key: str | None = None, description: str | None = None) -> None:
        source = check_source(path)
        self._init_fields(check_key(key), check_description(description), suffix_of(source))
        self._source: Path | None = source
        self.size = source.stat().st_size
        if self.key is not None:
            predict_uids([self])

    def _init_fields(self, key: str | None, description: str | None, suffix: str) -> None:
        self.uid = _instance.random_base62(16) + version_suffix(1)
        self.key = key
        self.description = description
        self.suffix = suffix
        self.size = None
        self._hash: str | None = None
        self.hash_type = None
        self.otype = None
        self.version = None
        self.is_latest = False
        self.storage = None
        self.created_at = None
        self.created_by = None
        self.status = None
        self.is_trashed = False
        self._source = None
        self._hashed_stat: tuple[int, int] | None = None  # source size/mtime when hashed
        self._staged = False  # the source is a staging file lamin_nb wrote itself

    # -- constructors --------------------------------------------------------------------

    @classmethod
    def from_anndata(
        cls, adata: Any, key: str | None = None, description: str | None = None
    ) -> Artifact:
        """Write ``adata`` to an .h5ad staging file now, so the saved bytes are fixed."""
        if not type(adata).__module__.startswith("anndata"):
            raise TypeError(f"from_anndata expects an anndata.AnnData, not {type(adata).__name__}")
        artifact = cls._staged_artifact(key, description, ".h5ad", "AnnData")
        try:
            adata.write_h5ad(artifact._source)
        except Exception as exc:
            artifact._discard_staging()
            raise ValidationError(f"cannot write the AnnData as .h5ad: {exc}") from exc
        artifact.size = artifact._source.stat().st_size
        return artifact

    @classmethod
    def from_df(cls, df: Any, key: str | None = None, description: str | None = None) -> Artifact:
        """Write ``df`` to a .parquet staging file now, so the saved bytes are fixed."""
        if type(df).__name__ != "DataFrame" or not type(df).__module__.startswith("pandas"):
            raise TypeError(f"from_df expects a pandas.DataFrame, not {type(df).__name__}")
        artifact = cls._staged_artifact(key, description, ".parquet", "DataFrame")
        try:
            df.to_parquet(artifact._source)
        except ImportError as exc:
            artifact._discard_staging()
            raise ImportError(DATAFRAME_HINT) from exc
        except Exception as exc:
            artifact._discard_staging()
            raise ValidationError(f"cannot write the DataFrame as parquet: {exc}") from exc
        artifact.size = artifact._source.stat().st_size
        return artifact

    @classmethod
    def from_dir(
        cls, path: Any, key: str | None = None, description: str | None = None
    ) -> list[Artifact]:
        """One artifact per file under ``path`` (recursive); keys are ``key/relative/path``."""
        if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or path-like object, not {type(path).__name__}")
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise ValidationError(f"{str(folder)!r} is not a folder")
        prefix = check_key(key) if key is not None else folder.resolve().name
        files = _visible_files(folder)
        artifacts = [cls.__new__(cls) for _ in files]
        for artifact, file in zip(artifacts, files, strict=True):
            artifact._init_fields(
                check_key(f"{prefix}/{file.relative_to(folder).as_posix()}"),
                check_description(description),
                suffix_of(file),
            )
            artifact._source = check_source(file)
            artifact.size = artifact._source.stat().st_size
        predict_uids(artifacts)
        return artifacts

    @classmethod
    def _staged_artifact(
        cls, key: str | None, description: str | None, suffix: str, otype: str
    ) -> Artifact:
        artifact = cls.__new__(cls)
        artifact._init_fields(check_key(key), check_description(description), suffix)
        artifact.otype = otype
        staging = home() / "staging"
        staging.mkdir(parents=True, exist_ok=True)
        artifact._source = staging / f"{artifact.uid}{suffix}"
        artifact._staged = True
        return artifact

    @classmethod
    def _from_row(cls, row: ArtifactRow) -> Artifact:
        artifact = cls.__new__(cls)
        artifact._init_fields(row.key, row.description, row.suffix)
        artifact._adopt(row)
        return artifact

    def _adopt(self, row: ArtifactRow) -> None:
        """Take the stored state of ``row`` (after a save, or when deduplicated onto it)."""
        for name in (
            "uid",
            "key",
            "description",
            "suffix",
            "size",
            "hash_type",
            "otype",
            "version",
            "is_latest",
            "storage",
            "created_at",
            "created_by",
            "status",
            "is_trashed",
        ):
            setattr(self, name, getattr(row, name))
        self._hash = row.hash

    def _adopt_from(self, other: Artifact) -> None:
        for name in (
            "uid",
            "key",
            "description",
            "suffix",
            "size",
            "hash_type",
            "otype",
            "version",
            "is_latest",
            "storage",
            "created_at",
            "created_by",
            "status",
            "is_trashed",
            "_hash",
        ):
            setattr(self, name, getattr(other, name))

    def _discard_staging(self) -> None:
        if self._staged and self._source is not None:
            self._source.unlink(missing_ok=True)

    # -- content ---------------------------------------------------------------------

    @property
    def hash(self) -> str | None:
        """Full-content hash; computed on first access for an unsaved artifact."""
        if self._hash is None and self._source is not None:
            self._compute_hash()
        return self._hash

    def _compute_hash(self, on_bytes: Any = None) -> str:
        assert self._source is not None
        before = _stat_key(self._source)
        digest, size = hash_file(self._source, on_bytes)
        self._hash, self.size, self.hash_type = digest, size, HASH_TYPE
        self._hashed_stat = before
        return digest

    def _needs_hash(self) -> bool:
        """No hash yet, or the source was modified since it was hashed (then save the new
        content: the user's file as it is now, not as it was when first looked at)."""
        if self._hash is None:
            return True
        if self._source is None or self._is_saved:
            return False
        try:
            return _stat_key(self._source) != self._hashed_stat
        except OSError:
            return False  # the save's own checks report a vanished source

    @property
    def _object_name(self) -> str:
        return f"{self.uid}{self.suffix}"

    @property
    def _is_saved(self) -> bool:
        return self.status is not None

    # -- persistence -----------------------------------------------------------------

    def save(self, *, callback: SaveCallback | None = None) -> Artifact:
        """Save atomically: on any failure nothing is left behind and ``SaveError`` is raised."""
        from .save import save_one

        return save_one(self, callback=callback)

    def cache(self) -> Path:
        """A local path to the content: the stored object itself on local storage."""
        if not self._is_saved:
            if self._source is None:
                raise NotFoundError(f"{self!r} has no content")
            return self._source
        inst = _instance.current()
        self._check_still_stored(inst)
        if inst.storage.is_local:
            return _stored_file(Path(inst.storage.managed) / self._object_name, self)
        return _download(inst, self)

    def _check_still_stored(self, inst: _instance.Instance) -> None:
        """An object in hand may be stale: its row deleted since (by another handle or
        process), or no longer the content it recorded. Never hand out other bytes."""
        from .models import COMMITTED
        from .rows import by_uids

        with inst.db.read_rows() as conn:
            row = by_uids(conn, [self.uid]).get(self.uid)
        if row is None or row.status != COMMITTED:
            state = "was deleted permanently" if row is None else f"is {row.status}"
            raise NotFoundError(
                f"artifact {self.uid} (key {self.key!r}) {state}; nothing to load. "
                "Look it up again: ln.Artifact.filter(key=...)"
            )
        if row.hash != self._hash or row.suffix != self.suffix:
            raise IntegrityError(
                f"artifact {self.uid} holds other content than this object recorded "
                f"(hash {self._hash} -> {row.hash}); get it again with ln.Artifact.get"
            )

    def load(self) -> Any:
        """The data: an AnnData, a DataFrame, or the local path of any other file."""
        path = self.cache()
        if self.otype == "AnnData":
            try:
                import anndata
            except ImportError as exc:
                raise ImportError(ANNDATA_HINT) from exc
            return anndata.read_h5ad(path)
        if self.otype == "DataFrame":
            try:
                import pandas as pd
            except ImportError as exc:
                raise ImportError(DATAFRAME_HINT) from exc
            return pd.read_parquet(path)
        return path

    def delete(self, permanent: bool = False) -> None:
        """Move to the trash, or with ``permanent=True`` delete row and object for good."""
        from .delete import delete_permanently, trash

        if not isinstance(permanent, bool):
            raise TypeError(f"permanent must be True or False, not {type(permanent).__name__}")
        if permanent:
            delete_permanently(self)
        else:
            trash(self)

    def restore(self) -> None:
        """Take an artifact out of the trash."""
        from .delete import restore

        restore(self)

    # -- queries ---------------------------------------------------------------------

    @classmethod
    def filter(cls, **fields: Any) -> QuerySet:
        from .query import QuerySet

        return QuerySet(fields)

    @classmethod
    def get(cls, uid_or_key: str) -> Artifact:
        from .query import get

        return get(uid_or_key)

    def __repr__(self) -> str:
        fields = [f"uid={self.uid!r}"]
        for name in ("key", "description", "suffix", "size", "hash", "otype", "version"):
            value = self._hash if name == "hash" else getattr(self, name)
            if value not in (None, ""):
                fields.append(f"{name}={value!r}")
        fields.append(f"is_latest={self.is_latest}")
        fields.append(f"status={self.status or 'unsaved'!r}")
        return f"Artifact({', '.join(fields)})"


def predict_uids(artifacts: list[Artifact]) -> None:
    """A new version of a key shares the uid stem of its family (when an instance is open)."""
    inst = _instance._current
    keys = [a.key for a in artifacts if a.key is not None]
    if inst is None or not keys:
        return
    from .rows import families

    with inst.db.read() as session:
        found = families(session, keys)
    for artifact in artifacts:
        family = found.get(artifact.key or "")
        if family is not None:
            artifact.uid = family.stem + version_suffix(family.next_version)


def _visible_files(folder: Path) -> list[Path]:
    """Files under ``folder``, skipping hidden files and everything inside hidden folders."""
    found: list[Path] = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(root, n) for n in names if not n.startswith(".")]
    return sorted(p for p in found if p.is_file())


def _stat_key(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def _stored_file(path: Path, artifact: Artifact) -> Path:
    """The stored object, if it is still the file that was saved (a folder put in its
    place would load as an empty table without this check)."""
    if path.is_dir():
        raise IntegrityError(
            f"the stored object of {artifact.uid} (key {artifact.key!r}) is a folder, not the "
            f"file that was saved: {path}; run ln.check() and ln.repair()"
        )
    return path


def cache_path(inst: _instance.Instance, artifact: Artifact) -> Path:
    """Where the local copy of an S3 object lives; named by content hash as well as uid,
    because a uid can come back after its version was deleted, with other bytes."""
    return inst.settings.cache_dir / (artifact._hash or "unhashed") / artifact._object_name


def _download(inst: _instance.Instance, artifact: Artifact) -> Path:
    target = cache_path(inst, artifact)
    if target.exists() and target.stat().st_size == artifact.size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + f".{os.getpid()}.part")
    try:
        inst.storage.get_file(artifact._object_name, tmp)
        os.chmod(tmp, READ_ONLY)  # like a stored object: edit a copy, never the cache
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def keep_staged_copy(inst: _instance.Instance, artifact: Artifact) -> None:
    """After a save, a staging file becomes the S3 cache copy (or is dropped if local)."""
    if not artifact._staged or artifact._source is None:
        return
    if inst.storage.is_local:
        artifact._source.unlink(missing_ok=True)
    else:
        target = cache_path(inst, artifact)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(artifact._source), target)
        os.chmod(target, READ_ONLY)
    artifact._source = None
    artifact._staged = False
