"""``Artifact``, the facade: the constructors and the methods a user calls (save, delete,
restore, filter, get, load, cache) on top of ``ArtifactRecord``, which the protocols work on."""

from __future__ import annotations

import os
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import delete as _delete
from . import instance as _instance
from . import query as _query
from .db import database_errors
from .errors import IntegrityError, NotFoundError, StorageError, ValidationError, describe
from .ids import version_suffix
from .localfiles import staging_dir, touch, trim_cache
from .models import COMMITTED
from .record import ArtifactRecord, cache_path
from .rows import by_uids, families
from .save import save_one
from .storage import READ_ONLY, storage_failure
from .txstate import reading
from .validate import (
    check_description,
    check_key,
    check_key_prefix,
    check_source,
    key_under,
    suffix_of,
)

if TYPE_CHECKING:
    from .callbacks import SaveCallback

__all__ = ["Artifact", "version_suffix"]

ANNDATA_HINT = "AnnData support needs anndata: pip install 'lamin_nb[anndata]'"
DATAFRAME_HINT = "DataFrame support needs pandas and pyarrow: pip install 'lamin_nb[anndata]'"


class Artifact(ArtifactRecord):
    """A data object and its metadata. Construct, then ``save()``.

    The uid is fixed at construction and kept through a failed save, so a retry reuses it.
    With a key and an open instance, it continues the uid of the key's existing versions.
    Nothing is written until ``save()``; the file must still be there (and is hashed and
    uploaded as it is) when the save runs.

    Parameters
    ----------
    path : str or os.PathLike
        An existing, readable, regular local file (``file://`` URLs are accepted).
    key : str or None
        A user-facing virtual path such as ``runs/results.csv``: relative, ``/`` between
        folders, no ``.`` or ``..`` segment, no control or invisible character, at most 1024
        bytes. Saving new content under an existing key creates a new version.
    description : str or None
        Free text, at most 10,000 characters.

    Attributes
    ----------
    uid : str
        16 characters, then a 4-character version suffix.
    key : str or None
        The virtual path the artifact is stored under, if any.
    description : str or None
        The description.
    suffix : str
        The file extension kept with the object (``.csv``, ``.tar.gz``), or empty.
    size : int or None
        Size in bytes.
    hash_type : str or None
        ``"blake3"`` once hashed.
    otype : str or None
        ``"AnnData"``, ``"DataFrame"`` or None (any other file).
    version : int or None
        1 for a key's first version, then 2, 3, ...; None before the first save.
    is_latest : bool
        True for the newest committed, untrashed version of its key.
    storage : str or None
        The storage root the object was saved in.
    created_at : datetime.datetime or None
        When it was saved (UTC).
    created_by : str or None
        The login name of the user who saved it.
    status : str or None
        ``"committed"`` once saved; None for an unsaved (or permanently deleted) artifact.
    is_trashed : bool
        True while it is in the trash (see ``delete``).

    Raises
    ------
    ValidationError
        The file does not exist, cannot be read, or is a folder; the key or the description
        is not allowed.
    TypeError
        ``path``, ``key`` or ``description`` has the wrong type.

    Examples
    --------
    >>> import lamin_nb as ln
    >>> artifact = ln.Artifact("results.csv", key="runs/results.csv")  # doctest: +SKIP
    >>> artifact.save()  # doctest: +SKIP
    Artifact(uid='...', key='runs/results.csv', ..., is_latest=True, status='committed')
    """

    def __init__(self, path: Any, key: str | None = None, description: str | None = None) -> None:
        source = check_source(path)
        self._init_record(check_key(key), check_description(description), suffix_of(source))
        self.source: Path | None = source
        self.size = source.stat().st_size
        if self.key is not None:
            predict_uids([self])

    # -- constructors --------------------------------------------------------------------

    @classmethod
    def from_anndata(
        cls, adata: Any, key: str | None = None, description: str | None = None
    ) -> Artifact:
        """Write ``adata`` to an .h5ad staging file now, so the saved bytes are fixed.

        Later changes to ``adata`` do not change what ``save()`` stores. The staging file lives
        under ``LAMIN_NB_HOME`` and is removed (or kept as the S3 cache copy) after the save.

        Parameters
        ----------
        adata : anndata.AnnData
            The data to store.
        key : str or None
            The virtual path, as for ``Artifact``.
        description : str or None
            Free text, as for ``Artifact``.

        Returns
        -------
        Artifact
            An unsaved artifact with ``otype="AnnData"`` and suffix ``.h5ad``.

        Raises
        ------
        ValidationError
            The AnnData cannot be written as .h5ad, or the key or description is not allowed.
        TypeError
            ``adata`` is not an ``anndata.AnnData``.

        Examples
        --------
        >>> import anndata as ad  # doctest: +SKIP
        >>> import lamin_nb as ln
        >>> adata = ad.AnnData(X=[[1.0, 2.0]])  # doctest: +SKIP
        >>> ln.Artifact.from_anndata(adata, key="scrna/sample1.h5ad").save()  # doctest: +SKIP
        """
        if not type(adata).__module__.startswith("anndata"):
            raise TypeError(f"from_anndata expects an anndata.AnnData, not {type(adata).__name__}")
        artifact, staging = cls._staged_artifact(key, description, ".h5ad", "AnnData")
        try:
            adata.write_h5ad(staging)
        except Exception as exc:
            artifact.discard_staging()
            raise ValidationError(f"cannot write the AnnData as .h5ad: {exc}") from exc
        artifact.size = staging.stat().st_size
        return artifact

    @classmethod
    def from_df(cls, df: Any, key: str | None = None, description: str | None = None) -> Artifact:
        """Write ``df`` to a .parquet staging file now, so the saved bytes are fixed.

        Later changes to ``df`` do not change what ``save()`` stores. The staging file lives
        under ``LAMIN_NB_HOME`` and is removed (or kept as the S3 cache copy) after the save.

        Parameters
        ----------
        df : pandas.DataFrame
            The data to store.
        key : str or None
            The virtual path, as for ``Artifact``.
        description : str or None
            Free text, as for ``Artifact``.

        Returns
        -------
        Artifact
            An unsaved artifact with ``otype="DataFrame"`` and suffix ``.parquet``.

        Raises
        ------
        ValidationError
            The DataFrame cannot be written as parquet, or the key or description is not
            allowed.
        TypeError
            ``df`` is not a ``pandas.DataFrame``.
        ImportError
            pyarrow is not installed (``pip install 'lamin_nb[anndata]'``).

        Examples
        --------
        >>> import pandas as pd  # doctest: +SKIP
        >>> import lamin_nb as ln
        >>> df = pd.DataFrame({"gene": ["a", "b"], "count": [3, 5]})  # doctest: +SKIP
        >>> ln.Artifact.from_df(df, key="tables/counts.parquet").save()  # doctest: +SKIP
        """
        if type(df).__name__ != "DataFrame" or not type(df).__module__.startswith("pandas"):
            raise TypeError(f"from_df expects a pandas.DataFrame, not {type(df).__name__}")
        artifact, staging = cls._staged_artifact(key, description, ".parquet", "DataFrame")
        try:
            df.to_parquet(staging)
        except ImportError as exc:
            artifact.discard_staging()
            raise ImportError(DATAFRAME_HINT) from exc
        except Exception as exc:
            artifact.discard_staging()
            raise ValidationError(f"cannot write the DataFrame as parquet: {exc}") from exc
        artifact.size = staging.stat().st_size
        return artifact

    @classmethod
    def from_dir(
        cls, path: Any, key: str | None = None, description: str | None = None
    ) -> list[Artifact]:
        """One artifact per file under ``path`` (recursive); keys are ``key/relative/path``.

        Hidden files and everything inside hidden folders (names starting with ``.``) are
        skipped. Save the list with ``ln.save``.

        Parameters
        ----------
        path : str or os.PathLike
            A local folder.
        key : str or None
            The key prefix; None: the folder's own name.
        description : str or None
            Free text given to every artifact.

        Returns
        -------
        list of Artifact
            Unsaved artifacts, sorted by path.

        Raises
        ------
        ValidationError
            ``path`` is not a folder, a file under it cannot be read, or a resulting key or the
            description is not allowed.
        TypeError
            ``path`` is not a str or path-like object.

        Examples
        --------
        >>> import lamin_nb as ln
        >>> artifacts = ln.Artifact.from_dir("plates/", key="screens/plates")  # doctest: +SKIP
        >>> ln.save(artifacts)  # doctest: +SKIP
        SaveReport(saved 96)
        """
        if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or path-like object, not {type(path).__name__}")
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise ValidationError(f"{str(folder)!r} is not a folder")
        prefix = check_key_prefix(key) if key is not None else folder.resolve().name
        files = _visible_files(folder)
        artifacts = [cls.__new__(cls) for _ in files]
        for artifact, file in zip(artifacts, files, strict=True):
            artifact._init_record(
                key_under(prefix, file.relative_to(folder).as_posix()),
                check_description(description),
                suffix_of(file),
            )
            artifact.source = source = check_source(file)
            artifact.size = source.stat().st_size
        predict_uids(artifacts)
        return artifacts

    @classmethod
    def _staged_artifact(
        cls, key: str | None, description: str | None, suffix: str, otype: str
    ) -> tuple[Artifact, Path]:
        """A new artifact and the staging file its constructor writes."""
        artifact = cls.__new__(cls)
        artifact._init_record(check_key(key), check_description(description), suffix)
        artifact.otype = otype
        artifact.source = staging = staging_dir() / f"{artifact.uid}{suffix}"
        artifact.staged = True
        # built but never saved: the file goes when the artifact does (or the process ends);
        # after a crash, the next process's sweep removes it. A save moves it away first.
        weakref.finalize(artifact, _unlink_quietly, staging)
        return artifact, staging

    # -- content ---------------------------------------------------------------------

    @property
    def hash(self) -> str | None:
        """Full-content hash; computed on first access for an unsaved artifact.

        BLAKE3 over every byte of the content, url-safe base64; None for an artifact with
        nothing to hash.
        """
        if self.digest is None and self.source is not None:
            self.compute_hash()
        return self.digest

    # -- persistence -----------------------------------------------------------------

    def save(self, *, callback: SaveCallback | None = None) -> Artifact:
        """Save atomically: on any failure nothing is left behind and ``SaveError`` is raised.

        The protocol of ``ln.save`` for one artifact: validate, hash, deduplicate, reserve a
        pending row, upload, commit. If the same content is already stored, nothing is
        uploaded and this artifact takes over the stored one's fields (uid, key, ...). Saving
        new content under an existing key makes a new version and the old one stops being the
        latest. An artifact that is already saved is left untouched.

        Parameters
        ----------
        callback : SaveCallback or None
            Receives progress events (for example ``ln.TextProgress()``); a broken callback
            never fails the save.

        Returns
        -------
        Artifact
            This artifact, now saved (``status == "committed"``).

        Raises
        ------
        SaveError
            The save failed and was undone; ``.report.failed`` holds the cause. The uid is
            kept, so calling ``save()`` again retries.
        ValidationError
            The source file vanished or stopped being a regular file, the key or the
            description is not allowed, or ``LAMIN_NB_MAX_WORKERS`` is not a valid number;
            nothing was written.
        InstanceError
            There is no current instance (run ``ln.init``).
        TypeError
            ``callback`` lacks the ``SaveCallback`` methods.

        Warns
        -----
        KeyNotSavedWarning
            The same content is already stored under another key; the key asked for was not
            saved (see ``SaveReport.key_conflicts`` via ``ln.save``).

        Examples
        --------
        >>> import lamin_nb as ln
        >>> artifact = ln.Artifact("results.csv", key="runs/results.csv")  # doctest: +SKIP
        >>> artifact.save(callback=ln.TextProgress())  # doctest: +SKIP
        Artifact(uid='...', key='runs/results.csv', ..., status='committed')
        """
        return save_one(self, callback=callback)

    def cache(self) -> Path:
        """A local path to the content: the stored object itself on local storage.

        On local storage the path is the managed object itself: read it, never modify it. On
        S3 the object is downloaded once into the instance's cache folder under
        ``LAMIN_NB_HOME`` and reused while its size matches. For an unsaved artifact, the
        source file.

        Returns
        -------
        pathlib.Path
            A local file with the artifact's content.

        Raises
        ------
        NotFoundError
            The artifact is unsaved and has no content.
        OSError
            The object cannot be downloaded from S3 (as the filesystem reports it).

        Examples
        --------
        >>> import lamin_nb as ln
        >>> ln.Artifact.get("runs/results.csv").cache()  # doctest: +SKIP
        PosixPath('/home/me/data/.lamindb/...csv')
        """
        if not self.is_saved:
            if self.source is None:
                raise NotFoundError(f"{self!r} has no content")
            return self.source
        inst = self.home()
        self._check_still_stored(inst)
        stored = inst.storage.local_path(self.object_name)
        return _stored_file(stored, self) if stored is not None else _download(inst, self)

    def _check_still_stored(self, inst: _instance.Instance) -> None:
        """An object in hand may be stale: its row deleted since (by another handle or
        process), or no longer the content it recorded. Never hand out other bytes."""
        with inst.db.read_rows() as conn:
            row = by_uids(conn, [self.uid]).get(self.uid)
        tx = reading(inst)
        if tx is not None and row is not None and row.uid in tx.deleted:
            row = None  # deleted by the transaction block this thread is in
        in_block = tx is not None and row is not None and row.uid in tx.saved and tx.owns(row)
        if row is None or (row.status != COMMITTED and not in_block):
            state = "was deleted permanently" if row is None else f"is {row.status}"
            raise NotFoundError(
                f"artifact {self.uid} (key {self.key!r}) {state}; nothing to load. "
                "Look it up again: ln.Artifact.filter(key=...)"
            )
        if row.hash != self.digest or row.suffix != self.suffix:
            raise IntegrityError(
                f"artifact {self.uid} holds other content than this object recorded "
                f"(hash {self.digest} -> {row.hash}); get it again with ln.Artifact.get"
            )

    def load(self) -> Any:
        """The data: an AnnData, a DataFrame, or the local path of any other file.

        Reads from the path that ``cache()`` returns.

        Returns
        -------
        anndata.AnnData or pandas.DataFrame or pathlib.Path
            An AnnData for ``otype="AnnData"``, a DataFrame for ``otype="DataFrame"``, else
            the local path.

        Raises
        ------
        NotFoundError
            The artifact is unsaved and has no content.
        ImportError
            anndata or pandas is needed and not installed (``pip install 'lamin_nb[anndata]'``).

        Examples
        --------
        >>> import lamin_nb as ln
        >>> df = ln.Artifact.get("tables/counts.parquet").load()  # doctest: +SKIP
        """
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
        """Move to the trash, or with ``permanent=True`` delete row and object for good.

        Trash hides the artifact from ``filter`` and ``get``; its object stays and
        ``restore()`` brings it back. A permanent delete marks the row ``deleting`` first,
        then deletes the object, then the row, so a crash never leaves a committed row without
        its object: an interrupted delete is finished by ``ln.repair()`` (or the next
        connect). Afterwards ``status`` is None.

        Parameters
        ----------
        permanent : bool
            False (default): move to the trash. True: delete the object and the row.

        Returns
        -------
        None

        Raises
        ------
        NotFoundError
            The artifact is not a saved artifact (anymore).
        StorageError
            The object could not be deleted; the message says whether the artifact is
            unchanged or stays hidden, marked ``deleting``, until ``ln.repair()`` finishes.
        TypeError
            ``permanent`` is not True or False.

        Examples
        --------
        >>> import lamin_nb as ln
        >>> artifact = ln.Artifact.get("runs/results.csv")  # doctest: +SKIP
        >>> artifact.delete()  # doctest: +SKIP
        >>> artifact.restore()  # doctest: +SKIP
        >>> artifact.delete(permanent=True)  # doctest: +SKIP
        """
        if not isinstance(permanent, bool):
            raise TypeError(f"permanent must be True or False, not {type(permanent).__name__}")
        if permanent:
            _delete.delete_permanently(self)
        else:
            _delete.trash(self)

    def restore(self) -> None:
        """Take an artifact out of the trash.

        It is visible to ``filter`` and ``get`` again, and the latest version of its key if it
        is the highest one.

        Returns
        -------
        None

        Raises
        ------
        NotFoundError
            The artifact is not a saved artifact (anymore), e.g. it was deleted permanently.

        Examples
        --------
        >>> import lamin_nb as ln
        >>> trashed = ln.Artifact.filter(is_trashed=True).first()  # doctest: +SKIP
        >>> trashed.restore()  # doctest: +SKIP
        """
        _delete.restore(self)

    # -- queries ---------------------------------------------------------------------

    @classmethod
    def filter(cls, **fields: Any) -> _query.QuerySet[Artifact]:
        """Committed artifacts whose fields match; nothing runs until the result is used.

        Pending, deleting and lost rows are never visible; trashed artifacts only when
        ``is_trashed=True`` is asked for. Each argument is ``field=value`` or
        ``field__lookup=value`` with lookup ``startswith``, ``contains`` (text fields),
        ``in`` (a list), ``gt``, ``gte``, ``lt`` or ``lte``.

        Parameters
        ----------
        **fields
            Conditions on ``uid``, ``key``, ``description``, ``suffix``, ``size``, ``hash``,
            ``hash_type``, ``otype``, ``version``, ``is_latest``, ``storage``,
            ``created_at``, ``created_by`` or ``is_trashed``, all combined with AND.

        Returns
        -------
        QuerySet
            Lazy: ``.all()``, ``.first()``, ``.count()``, ``.df()`` or iteration run the
            query on the current instance.

        Raises
        ------
        ValidationError
            An unknown field or lookup, or a value that cannot be used (too long, a NUL).
        TypeError
            A value of the wrong type for its field.

        Examples
        --------
        >>> import lamin_nb as ln
        >>> ln.Artifact.filter(key__startswith="runs/", is_latest=True).df()  # doctest: +SKIP
        >>> ln.Artifact.filter(suffix__in=[".csv", ".parquet"]).count()  # doctest: +SKIP
        12
        """
        return _query.QuerySet(cls, fields)

    @classmethod
    def get(cls, uid_or_key: str) -> Artifact:
        """One committed, untrashed artifact by uid or key.

        Parameters
        ----------
        uid_or_key : str
            A full uid (20 characters), a uid stem (16 characters: the latest version of that
            family), or a key (its latest version).

        Returns
        -------
        Artifact
            The saved artifact.

        Raises
        ------
        NotFoundError
            No committed, untrashed artifact matches.
        ValidationError
            ``uid_or_key`` cannot be used (a NUL, too long).
        InstanceError
            There is no current instance.
        TypeError
            ``uid_or_key`` is not a string.

        Examples
        --------
        >>> import lamin_nb as ln
        >>> ln.Artifact.get("runs/results.csv")  # doctest: +SKIP
        Artifact(uid='...', key='runs/results.csv', ..., is_latest=True, status='committed')
        """
        return _query.get(cls, uid_or_key)

    def __repr__(self) -> str:
        fields = [f"uid={self.uid!r}"]
        for name in ("key", "description", "suffix", "size", "hash", "otype", "version"):
            value = self.digest if name == "hash" else getattr(self, name)
            if value not in (None, ""):
                fields.append(f"{name}={value!r}")
        fields.append(f"is_latest={self.is_latest}")
        fields.append(f"status={self.status or 'unsaved'!r}")
        return f"Artifact({', '.join(fields)})"


def predict_uids(artifacts: list[Artifact]) -> None:
    """A new version of a key shares the uid stem of its family (when an instance is open)."""
    inst = _instance.current_or_none()
    keys = [a.key for a in artifacts if a.key is not None]
    if inst is None or not keys:
        return
    doing = f"looking up the versions of key {keys[0]!r}" + (
        f" and {len(keys) - 1} more" if len(keys) > 1 else ""
    )
    # a Core connection, not an ORM session: this runs for every artifact made
    with database_errors(doing), inst.db.read_rows() as conn:
        found = families(conn, keys)
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


def _stored_file(path: Path, artifact: Artifact) -> Path:
    """The stored object, if it is still the file that was saved (a folder put in its
    place would load as an empty table without this check)."""
    if path.is_dir():
        raise IntegrityError(
            f"the stored object of {artifact.uid} (key {artifact.key!r}) is a folder, not the "
            f"file that was saved: {path}; run ln.check() and ln.repair()"
        )
    return path


def _download(inst: _instance.Instance, artifact: Artifact) -> Path:
    target = cache_path(inst, artifact)
    if target.exists() and target.stat().st_size == artifact.size:
        touch(target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + f".{os.getpid()}.part")
    try:
        inst.storage.get_file(artifact.object_name, tmp)
        os.chmod(tmp, READ_ONLY)  # like a stored object: edit a copy, never the cache
        os.replace(tmp, target)
    except Exception as exc:
        if not storage_failure(exc) or isinstance(exc, StorageError):
            raise
        raise StorageError(
            f"cannot download {artifact.key or artifact.uid} from {inst.storage.root}: "
            f"{describe(exc)}; the artifact is unchanged; load it again once the storage "
            "is reachable"
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)
    trim_cache(keep=target)
    return target


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass  # the settings folder is gone or read-only: the sweep gets it later
