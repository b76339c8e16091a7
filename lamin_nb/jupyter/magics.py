"""``%lamin_init``, ``%lamin_connect``, ``%lamin_save``, ``%lamin_ls``, ``%lamin_check``,
``%lamin_repair``, ``%lamin_upload``, ``%lamin_uploads``, ``%%lamin_transaction``: parse, then
delegate to the core and the widgets.

A user mistake (unknown name, bad flag, no instance, invalid key) raises ``UsageError``: one
line, no traceback. A save that fails raises ``SaveError`` (so ``except ln.SaveError`` still
works) shown as one short message naming the failed items, while the progress panel above it
keeps the red rows; the cell fails, so "Run All" stops there.
"""

from __future__ import annotations

import functools
import glob
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from ..core.errors import LaminNbError, SaveError, TransactionError, describe

if TYPE_CHECKING:
    from ..core.artifact import Artifact


def parse_argstring(magic: Any, line: str) -> Any:
    """IPython's parser, but with shell quoting: ``--description "QC per cell type"`` gives
    ``QC per cell type`` (IPython's ``arg_split`` keeps the quote characters on POSIX)."""
    import shlex

    try:
        argv = shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"cannot parse {_shown(repr(line))}: {exc}") from exc
    try:
        return magic.parser.parse_args(argv)
    except UsageError as exc:
        raise UsageError(f"{exc}{_did_you_mean(magic.parser, argv)}") from None


def _did_you_mean(parser: Any, argv: list[str]) -> str:
    """'; did you mean --key?' for the first flag the magic does not know (``--kye``)."""
    import difflib

    known = list(parser._option_string_actions)
    for token in argv:
        if token == "--":
            break
        flag = token.split("=", 1)[0]
        if not flag.startswith("--") or any(k.startswith(flag) for k in known):
            continue  # a value, or a known flag (or the unique start of one)
        close = difflib.get_close_matches(flag, known, n=1, cutoff=0.6)
        return f"; did you mean {close[0]}?" if close else ""
    return ""


def _shown(text: str, limit: int = 300) -> str:
    """argparse and the magics quote the user's tokens: no escape sequence or bidi override
    may reach the terminal raw, and a 10,000-character token must not come back whole."""
    printable = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
    return printable if len(printable) <= limit else printable[:limit] + "... (cut)"


USER_ERRORS = (LaminNbError, TypeError, ValueError, OSError, ImportError)
LS_COLUMNS = [
    "uid",
    "key",
    "description",
    "version",
    "is_latest",
    "size",
    "otype",
    "created_at",
    "created_by",
]


def _friendly(magic: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the core's errors into what a notebook user should see (see module docstring)."""

    @functools.wraps(magic)
    def run(self: LaminMagics, line: str) -> Any:
        try:
            return magic(self, line)
        except SaveError as exc:
            # IPython shows what ``_render_traceback_`` returns instead of a traceback; the
            # error itself (type, report, cause) stays what ``ln.save`` raised
            exc._render_traceback_ = functools.partial(_short_error, exc)  # type: ignore[attr-defined]
            raise
        except UsageError as exc:
            raise UsageError(_shown(str(exc))) from None
        except USER_ERRORS as exc:
            raise UsageError(_shown(describe(exc))) from exc

    run.__doc__ = _help_text(magic.__doc__)
    return run


def _help_text(doc: str | None) -> str | None:
    """``%magic?`` shows the docstring raw: drop the reST ``::`` that IPython puts before the
    usage, and align the usage's continuation lines under the first argument."""
    if not doc or not doc.startswith("::\n\n"):
        return doc
    usage, _, rest = doc[len("::\n\n") :].partition("\n\n")
    first, *more = (line.strip() for line in usage.splitlines())
    indent = " " * (first.find(" ") + 1)  # '%lamin_save ' is as wide as the magic's name
    return "\n".join([first, *(indent + line for line in more)]) + "\n\n" + rest


def _short_error(exc: BaseException) -> list[str]:
    return [f"{type(exc).__name__}: {exc}"]


class _CellFailed(LaminNbError):
    """The cell of ``%%lamin_transaction`` raised (IPython showed it): roll the block back."""


@dataclass
class _Source:
    """One thing to save: a notebook variable (``value``) or a file (``path``)."""

    name: str
    value: Any = None
    path: Path | None = None


@magics_class
class LaminMagics(Magics):
    @line_magic
    @_friendly
    @magic_arguments()
    @argument("--storage", required=True, help="a local folder or s3://bucket/prefix")
    @argument("--db", default=None, help="postgresql://... or sqlite:///... (default: SQLite)")
    @argument("--name", default=None, help="instance name (default: the storage folder's name)")
    def lamin_init(self, line: str) -> None:
        """Create an instance (or connect to the existing one) and make it current."""
        import lamin_nb as ln

        args = parse_argstring(self.lamin_init, line)
        print(f"current instance: {ln.init(storage=args.storage, db=args.db, name=args.name)!r}")

    @line_magic
    @_friendly
    @magic_arguments()
    @argument("name", nargs="?", default=None, help="instance name (default: the current one)")
    def lamin_connect(self, line: str) -> None:
        """Connect to an existing instance, e.g. in a new kernel."""
        import lamin_nb as ln

        args = parse_argstring(self.lamin_connect, line)
        print(f"current instance: {ln.connect(args.name)!r}")

    @line_magic
    @_friendly
    @magic_arguments()
    @argument(
        "items",
        nargs="+",
        metavar="NAME_OR_PATH",
        help="a variable (AnnData, DataFrame, path, Artifact), a file path or a glob",
    )
    @argument(
        "--key",
        default=None,
        help="the key of one item; with several items (or ending in '/') a key prefix",
    )
    @argument("--description", default=None, help="description of every saved artifact")
    @argument("--atomic", action="store_true", help="several items: all or nothing")
    @argument("--no-progress", action="store_true", help="do not show progress")
    def lamin_save(self, line: str) -> Any:
        """Save notebook variables or files; returns the artifact (one item) or a list.

        Each NAME_OR_PATH is looked up in the notebook first: an AnnData is saved as .h5ad,
        a DataFrame as .parquet (keys default to ``<variable>.h5ad`` / ``<variable>.parquet``),
        a str or path object as that file, an Artifact as itself. Anything else is a file path
        or a glob (``data/*.csv``; files get no key unless --key is given).

        One item is saved on its own (atomic). Several are saved in bulk: each atomic on its
        own, or all or nothing with --atomic; --key is then a prefix (``<prefix>/<name>``).
        A glob or several items return a list, one plain item returns the artifact. For example:

            a = %lamin_save adata --key mouse/lymph_node.h5ad --description "scRNA-seq"
            files = %lamin_save results/*.csv --key runs/2024-05-01/

        In a notebook a progress panel shows each item; a failure raises ``SaveError``
        naming the failed items (with several items, the others stay saved).
        """
        import lamin_nb as ln
        from lamin_nb.widgets import show_progress

        args = parse_argstring(self.lamin_save, line)
        sources, many = self._resolve_all(args.items)
        artifacts = self._artifacts(sources, many, args.key, args.description)
        progress = show_progress(enabled=not args.no_progress)
        if not many:
            return artifacts[0].save(callback=progress)
        ln.save(artifacts, atomic=args.atomic, callback=progress)
        return artifacts

    @line_magic
    @_friendly
    @magic_arguments()
    @argument("--key", default=None, help="only keys starting with this prefix")
    @argument("--limit", type=int, default=50, help="at most this many, newest first")
    def lamin_ls(self, line: str) -> Any:
        """A table (pandas DataFrame) of committed artifacts, newest first."""
        import lamin_nb as ln

        args = parse_argstring(self.lamin_ls, line)
        if args.limit < 1:
            raise UsageError(f"--limit must be at least 1, not {args.limit}")
        query = ln.Artifact.filter(key__startswith=args.key) if args.key else ln.Artifact.filter()
        table = query.df()
        return table.iloc[::-1].head(args.limit)[LS_COLUMNS].reset_index(drop=True)

    @line_magic
    @_friendly
    @magic_arguments()
    @argument("--deep", action="store_true", help="re-hash every object (reads all data)")
    @argument(
        "--auto",
        type=float,
        default=None,
        metavar="SECONDS",
        help="refresh automatically every SECONDS",
    )
    def lamin_check(self, line: str) -> Any:
        """Compare database and storage; returns the live consistency panel (text outside a
        notebook), with refresh, auto-refresh and a two-step Repair button."""
        from lamin_nb.widgets import ConsistencyPanel

        args = parse_argstring(self.lamin_check, line)
        if args.auto is not None and args.auto <= 0:
            raise UsageError(f"--auto must be a number of seconds > 0, not {args.auto}")
        return ConsistencyPanel(
            deep=args.deep, auto_refresh=args.auto is not None, interval=args.auto or 5.0
        )

    @line_magic
    @_friendly
    @magic_arguments()
    @argument("--apply", action="store_true", help="apply the plan (default: only show it)")
    @argument(
        "--grace",
        type=float,
        default=3600.0,
        help="leave alone what is younger than this many seconds (0: no writer runs)",
    )
    @argument("--mark-lost", action="store_true", help="mark rows whose object is missing as lost")
    def lamin_repair(self, line: str) -> Any:
        """Show the repair plan (a dry run); with --apply, apply it. Returns the plan."""
        import lamin_nb as ln

        args = parse_argstring(self.lamin_repair, line)
        plan = ln.repair(dry_run=not args.apply, grace_seconds=args.grace, mark_lost=args.mark_lost)
        if plan.after is not None:
            print(plan.after.summary())
        return plan

    @line_magic
    @_friendly
    @magic_arguments()
    @argument("--key", default="", help="key prefix for the uploaded files")
    @argument("--description", default="", help="description of every uploaded file")
    def lamin_upload(self, line: str) -> Any:
        """A file picker with a Save button (UploadWidget)."""
        from lamin_nb.widgets import UploadWidget

        args = parse_argstring(self.lamin_upload, line)
        return UploadWidget(key_prefix=args.key, description=args.description)

    @line_magic
    @_friendly
    @magic_arguments()
    def lamin_uploads(self, line: str) -> Any:
        """Interrupted large uploads (``ln.uploads()``) with Resume and Discard buttons."""
        from lamin_nb.widgets import UploadsPanel

        parse_argstring(self.lamin_uploads, line)
        return UploadsPanel()

    @cell_magic
    @magic_arguments()
    @argument("--no-progress", action="store_true", help="do not show progress")
    def lamin_transaction(self, line: str, cell: str) -> None:
        """Run the cell as one ``ln.transaction()``: all of it is saved, or nothing.

        Every save, trash, restore and permanent delete in the cell becomes visible in one
        commit when the cell ends; if the cell raises (or is interrupted), everything is
        undone. One progress panel shows every item of the cell, then "committed" or
        "rolled back: <reason>". For example::

            %%lamin_transaction
            ln.Artifact("model.pt", key="runs/7/model.pt").save()
            ln.save([ln.Artifact(p, key=f"runs/7/{p}") for p in figures])
            ln.Artifact.get("runs/6/model.pt").delete(permanent=True)
        """
        import lamin_nb as ln
        from lamin_nb.widgets import show_progress

        try:
            args = parse_argstring(self.lamin_transaction, line)
        except UsageError as exc:
            raise UsageError(_shown(str(exc))) from None
        progress = show_progress(enabled=not args.no_progress, title="transaction")
        try:
            with ln.transaction(callback=progress):
                result = self.shell.run_cell(cell, store_history=False)  # type: ignore[union-attr]
                failed = result.error_before_exec or result.error_in_exec
                if failed is not None:  # shown above by IPython: undo the cell, then stop
                    raise _CellFailed(describe(failed)) from failed
        except (_CellFailed, TransactionError) as exc:
            # the cell fails ("Run All" stops) with one line; the panel keeps the details
            error = (
                exc
                if isinstance(exc, TransactionError)
                else TransactionError(
                    f"rolled back: the cell raised {exc}; nothing of the cell was saved"
                )
            )
            error._render_traceback_ = functools.partial(_short_error, error)  # type: ignore[attr-defined]
            raise error from exc.__cause__
        except LaminNbError as exc:  # no instance, a callback of the wrong type
            raise UsageError(_shown(describe(exc))) from exc

    # -- %lamin_save helpers -------------------------------------------------------------

    def _resolve_all(self, tokens: list[str]) -> tuple[list[_Source], bool]:
        sources = [source for token in tokens for source in self._resolve(token)]
        many = len(tokens) > 1 or any(glob.has_magic(t) for t in tokens if t not in self._ns)
        return sources, many

    @property
    def _ns(self) -> dict[str, Any]:
        return self.shell.user_ns if self.shell is not None else {}

    def _resolve(self, token: str) -> list[_Source]:
        if token.isidentifier() and token in self._ns:
            return [_from_value(token, self._ns[token])]
        path = os.path.expanduser(token)
        if glob.has_magic(path):
            matches = sorted(Path(p) for p in glob.glob(path, recursive=True) if os.path.isfile(p))
            if not matches:
                raise UsageError(f"no files match {token!r}")
            return [_Source(p.name, path=p) for p in matches]
        if os.path.isdir(path):
            raise UsageError(f"{token!r} is a folder: pass its files, e.g. '{token.rstrip('/')}/*'")
        if os.path.exists(path):
            return [_Source(Path(path).name, path=Path(path))]
        if token.isidentifier():
            raise UsageError(f"{token!r} is neither a variable of this notebook nor a file")
        raise UsageError(f"no such file: {token!r}")

    def _artifacts(
        self, sources: list[_Source], many: bool, key: str | None, description: str | None
    ) -> list[Artifact]:
        """Validate every key and file first, so a mistake writes nothing (not even staging)."""
        from lamin_nb.core.validate import check_source

        keys = [_key_for(s, key, many) for s in sources]
        for source in sources:
            if source.path is not None:
                check_source(source.path)
        return [_artifact(s, k, description) for s, k in zip(sources, keys, strict=True)]


def _kind(value: Any) -> str | None:
    module = type(value).__module__
    if type(value).__name__ == "AnnData" and module.startswith("anndata"):
        return "AnnData"
    if type(value).__name__ == "DataFrame" and module.startswith("pandas"):
        return "DataFrame"
    return None


def _from_value(name: str, value: Any) -> _Source:
    from lamin_nb.core.artifact import Artifact

    if isinstance(value, (str, os.PathLike)):
        path = Path(os.fspath(value)).expanduser()
        if path.is_dir():
            raise UsageError(f"{name} is the folder {str(path)!r}: pass its files or a glob")
        return _Source(path.name, path=path)
    if isinstance(value, Artifact) or _kind(value) is not None:
        return _Source(name, value=value)
    raise UsageError(
        f"{name} is a {type(value).__name__}; %lamin_save saves an AnnData, a "
        "DataFrame, an Artifact, a file path, or files matching a glob"
    )


def _key_for(source: _Source, key: str | None, many: bool) -> str | None:
    """The core's rule for ``--key`` (a key, or a prefix); without ``--key`` a variable is
    keyed ``<variable><suffix>`` and a file gets no key."""
    from lamin_nb.core.validate import key_of_item

    suffix = {"AnnData": ".h5ad", "DataFrame": ".parquet"}.get(_kind(source.value) or "", "")
    name = source.name + suffix if suffix else source.name
    if key is not None:
        return key_of_item(key, name, many)
    return name if suffix else None


def _artifact(source: _Source, key: str | None, description: str | None) -> Artifact:
    from lamin_nb.core.artifact import Artifact

    kind = _kind(source.value)
    if kind == "AnnData":
        return Artifact.from_anndata(source.value, key=key, description=description)
    if kind == "DataFrame":
        return Artifact.from_df(source.value, key=key, description=description)
    if isinstance(source.value, Artifact):
        if key is not None or description is not None:
            raise UsageError(
                f"{source.name} is an Artifact already: set its key and "
                "description when you create it"
            )
        return source.value
    assert source.path is not None
    return Artifact(source.path, key=key, description=description)
