"""The scenarios of ``lamin-nb bench``: each returns a Result against its lower bound."""

from __future__ import annotations

import contextlib
import io
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bounds import Bounds, paired, timed
from .results import Result
from .scratch import Scratch

MIB = 1 << 20


@dataclass
class Options:
    runs: int = 3
    single_n: int = 200
    bulk_n: int = 1000
    file_kib: int = 10
    size_gib: float = 1.0
    anndata_mb: float = 160.0
    check_n: int | None = None  # default: 100,000 locally, 2,000 on S3


class Context:
    def __init__(self, scratch: Scratch, options: Options) -> None:
        self.scratch = scratch
        self.options = options
        self.bounds = Bounds(scratch)
        self.embedded = not scratch.target.is_s3 and not scratch.target.is_postgres
        self._batch = 0
        self._warm_up()

    def _warm_up(self) -> None:
        """First calls pay for imports, connections and caches: keep them out of every run."""
        import lamin_nb as ln

        paths = self.files(3, 1024)
        ln.Artifact(paths[0]).save()
        ln.save([ln.Artifact(p) for p in paths[1:]])
        self.bounds.insert([self.bounds.row(self.bounds.copy(paths[0]), 1024)])
        self.bounds.clear()
        self.drop_files(paths)

    def files(self, n: int, size: int, suffix: str = ".bin") -> list[Path]:
        """``n`` new files of random content (so nothing is deduplicated)."""
        self._batch += 1
        folder = self.scratch.work / f"batch{self._batch}"
        folder.mkdir(parents=True)
        paths = [folder / f"f{i:06d}{suffix}" for i in range(n)]
        for path in paths:
            path.write_bytes(os.urandom(size))
        return paths

    def drop_files(self, paths: list[Path]) -> None:
        for path in paths:
            path.unlink(missing_ok=True)

    def target(self, text: str) -> str:
        """Targets are stated for the embedded default (SQLite + local) only."""
        return text if self.embedded else ""


def _spawn_seconds(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - start


def import_time(ctx: Context) -> Result:
    result = Result(
        "import lamin_nb (fresh process)", "ms", "python -c pass", target="import < 150 ms"
    )
    for _ in range(max(5, ctx.options.runs)):
        with_import = _spawn_seconds([sys.executable, "-c", "import lamin_nb"])
        bare = _spawn_seconds([sys.executable, "-c", "pass"])
        result.add(with_import * 1000, bare * 1000)
    delta = statistics.median(v - b for v, b in zip(result.values, result.bound, strict=True))
    result.extra.update(import_ms=delta, note=f"import itself {delta:.0f} ms")
    return result


def single_saves(ctx: Context) -> Result:
    import lamin_nb as ln

    n, size = ctx.options.single_n, ctx.options.file_kib * 1024
    copy = "upload" if ctx.scratch.target.is_s3 else "copy+fsync"
    result = Result(
        f"{n} single saves of {ctx.options.file_kib} KiB",
        "ms/save",
        f"{copy}+insert+commit each",
        target=ctx.target("< 3 ms/save"),
    )
    b = ctx.bounds
    for run in range(ctx.options.runs):
        ours, theirs = ctx.files(n, size), ctx.files(n, size)

        def lamin() -> None:
            for path in ours:
                ln.Artifact(path).save()

        def bound() -> None:
            for path in theirs:
                b.insert([b.row(b.copy(path), size)])

        t_ours, t_bound = paired(run, lamin, bound)
        result.add(t_ours / n * 1000, t_bound / n * 1000)
        ctx.drop_files(ours + theirs)
        b.clear()
    return result


def _bulk(ctx: Context, paths: list[Path], callback: Any = None) -> None:
    import lamin_nb as ln

    ln.save([ln.Artifact(p) for p in paths], callback=callback)


def bulk_save(ctx: Context) -> Result:
    n, size = ctx.options.bulk_n, ctx.options.file_kib * 1024
    b = ctx.bounds
    durable = (
        "upload each + 1 INSERT txn"
        if ctx.scratch.target.is_s3
        else "copy+fsync each + 1 INSERT txn"
    )
    result = Result(
        f"bulk save {n} x {ctx.options.file_kib} KiB",
        "s",
        durable,
        target=ctx.target("ratio <= 2x"),
    )
    no_fsync: list[float] = []
    for run in range(ctx.options.runs):
        ours, theirs, plain = ctx.files(n, size), ctx.files(n, size), ctx.files(n, size)

        def bound(paths: list[Path], fsync: bool) -> None:
            names = b.copy_many(paths, fsync)
            b.insert([b.row(name, size) for name in names])

        t_ours, t_bound = paired(run, lambda: _bulk(ctx, ours), lambda: bound(theirs, True))
        result.add(t_ours, t_bound)
        if b.is_local:
            no_fsync.append(t_ours / timed(lambda: bound(plain, False)))
        ctx.drop_files(ours + theirs + plain)
        b.clear()
    if no_fsync:
        ratio = statistics.median(no_fsync)
        result.extra.update(ratio_no_fsync=ratio, note=f"{ratio:.2f}x the same without fsync")
    result.extra["note_rate"] = f"{n / statistics.median(result.values):.0f} files/s"
    return result


def _random_file(path: Path, size: int) -> None:
    with open(path, "wb") as fh:
        left = size
        while left > 0:
            fh.write(os.urandom(min(8 * MIB, left)))
            left -= min(8 * MIB, left)


def _mutate(path: Path, run: int) -> None:
    """New leading bytes: new content, so the next save is not deduplicated."""
    with open(path, "r+b") as fh:
        fh.write(os.urandom(16) + run.to_bytes(4, "little"))


def large_file(ctx: Context) -> Result:
    import lamin_nb as ln

    size = max(1, int(ctx.options.size_gib * (1 << 30)))
    label = "s3fs put_file" if ctx.scratch.target.is_s3 else "cp + fsync"
    result = Result(
        f"one {_size_label(size)} file, hashed in full", "s", label, target=ctx.target("<= 1.5x cp")
    )
    source = ctx.scratch.work / "large.bin"
    _random_file(source, size)
    b = ctx.bounds
    try:
        for run in range(ctx.options.runs):
            _mutate(source, run)
            saved: list[Any] = []
            t_ours, t_bound = paired(
                run, lambda: saved.append(ln.Artifact(source).save()), lambda: b.copy_large(source)
            )
            result.add(t_ours, t_bound)
            for artifact in saved:
                artifact.delete(permanent=True)
            b.clear()
    finally:
        source.unlink(missing_ok=True)
    result.extra["note"] = f"{size / MIB / statistics.median(result.values):.0f} MiB/s"
    return result


def _size_label(size: int) -> str:
    return f"{size / (1 << 30):g} GiB" if size >= (1 << 30) else f"{size / MIB:.0f} MiB"


def anndata_save(ctx: Context) -> Result:
    import lamin_nb as ln

    adata = _synthetic_anndata(ctx.options.anndata_mb)
    b = ctx.bounds
    staged = (Path(b.dest) if b.is_local else ctx.scratch.work) / "bound.h5ad"
    result = Result(
        f"AnnData ~{ctx.options.anndata_mb:g} MB (write + save)",
        "s",
        "write_h5ad + upload" if ctx.scratch.target.is_s3 else "write_h5ad + fsync",
    )

    def bound() -> None:
        if not b.is_local:
            adata.write_h5ad(staged)
            b.copy_large(staged)
            return
        # the plain durable write: serialised where it stays, then flushed
        adata.write_h5ad(staged)
        b.flush(staged)

    for run in range(ctx.options.runs):
        adata.X[0, 0] = float(run) + 0.5
        saved: list[Any] = []
        t_ours, t_bound = paired(
            run,
            lambda: saved.append(ln.Artifact.from_anndata(adata, description="bench").save()),
            bound,
        )
        result.add(t_ours, t_bound)
        result.extra["note"] = f"h5ad {staged.stat().st_size / 1e6:.0f} MB"
        for artifact in saved:
            artifact.delete(permanent=True)
        staged.unlink(missing_ok=True)
        b.clear()
    return result


def _synthetic_anndata(megabytes: float) -> Any:
    import anndata
    import numpy as np

    n_vars = 2000
    n_obs = max(1, int(megabytes * 1e6 / (4 * n_vars)))
    x = np.random.default_rng(0).random((n_obs, n_vars), dtype=np.float32)
    return anndata.AnnData(x)


def progress_panel(ctx: Context) -> Result:
    n, size = ctx.options.bulk_n, ctx.options.file_kib * 1024
    result = Result(
        f"bulk save {n} x {ctx.options.file_kib} KiB with progress panel", "s", "same without panel"
    )
    try:
        make_panel = _panel_factory()
    except Exception as exc:  # noqa: BLE001 - the panel is optional for the benchmark
        result.status = f"n/a: lamin_nb.widgets.SaveProgress not usable ({type(exc).__name__})"
        return result
    for run in range(ctx.options.runs):
        ours, theirs = ctx.files(n, size), ctx.files(n, size)
        sink = io.StringIO()  # outside a kernel, display() would print into our table
        with contextlib.redirect_stdout(sink):
            t_panel, t_plain = paired(
                run, lambda: _bulk(ctx, ours, make_panel()), lambda: _bulk(ctx, theirs)
            )
        result.add(t_panel, t_plain)
        ctx.drop_files(ours + theirs)
    if "ipykernel.zmqshell" not in sys.modules:
        result.extra["note"] = "no kernel: widget updates without frontend messages"
    return result


def _panel_factory() -> Callable[[], Any]:
    from lamin_nb.widgets import SaveProgress  # written alongside; lazily imported

    SaveProgress()  # fail here (n/a) rather than mid-measurement
    return SaveProgress


SCENARIOS: dict[str, Callable[[Context], Result]] = {
    "import": import_time,
    "single": single_saves,
    "bulk": bulk_save,
    "large": large_file,
    "anndata": anndata_save,
    "check": lambda ctx: _check(ctx),
    "progress": progress_panel,
}


def _check(ctx: Context) -> Result:
    from .checkbench import check_scenario

    return check_scenario(ctx)
