"""lamin_nb side by side with LaminDB (pinned), SQLite + a local folder, same input files.

    python3 benchmarks/vs_lamindb.py [--runs 3] [--scenarios import first single bulk large anndata]

One command from a fresh clone. On first use it creates two virtualenvs in a cache folder
(``$LAMIN_NB_BENCH_CACHE``, default ``~/.cache/lamin_nb_bench``), never in the repository:
one with LaminDB ``2.12.1`` from PyPI, and, only when the interpreter running this script cannot
import lamin_nb's dependencies, one with them (this checkout is then put on ``PYTHONPATH``, so
what is measured is always the code next to this script).

Every measurement runs in a fresh worker process of the tool's own interpreter, on an instance
made for the run (a scratch folder, removed at the end). Within a run both tools get the same
input files; the order of the two tools alternates from run to run, and the table shows the
medians of ``--runs`` runs and the ratio LaminDB / lamin_nb (above 1: lamin_nb is faster).

- import: ``import lamin_nb`` / ``import lamindb`` (LaminDB connects to its instance on import);
- import + connect: the same, until the instance is connected (``ln.connect()``);
- first save: a fresh process from before the import until its first artifact is saved
  (connect + save of a 10 KiB file; interpreter start excluded);
- single: N saves of 10 KiB files, one ``Artifact(path).save()`` each (after one warm-up save);
- bulk: one ``save([Artifact(p) for p in paths])`` of N 10 KiB files (construction included);
- large: one file (1 GiB by default), new leading bytes each run so nothing is deduplicated;
- anndata: ``Artifact.from_anndata(adata).save()`` of a ~160 MB dense AnnData read (untimed)
  from the same .h5ad by both.

What the two tools do differs, and the table does not hide it: lamin_nb hashes every byte
(BLAKE3) and makes each object and row durable (fsync) before it commits; LaminDB hashes large
files by their first and last chunks only (MD5) and does not fsync.

The top level of this file uses only the standard library: the same file is the worker that
runs inside LaminDB's interpreter.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

LAMINDB_VERSION = "2.12.1"
REPO = Path(__file__).resolve().parent.parent
MARK = "VSRESULT "
MIB = 1 << 20
SCENARIOS = ("import", "connect", "first", "single", "bulk", "large", "anndata")
LN_DEPS = ("sqlalchemy", "alembic", "fsspec", "upath", "blake3", "anndata", "pandas", "pyarrow")


# -- the worker (runs in either tool's interpreter) ----------------------------------------


class LaminNbTool:
    def __init__(self) -> None:
        import lamin_nb as ln

        self.ln = ln

    def init(self, storage: str) -> None:
        self.ln.init(storage=storage)

    def connect(self) -> None:
        self.ln.connect()

    def save_file(self, path: str) -> Any:
        return self.ln.Artifact(path, description="bench").save()

    def save_many(self, paths: list[str]) -> None:
        self.ln.save([self.ln.Artifact(p, description="bench") for p in paths])

    def save_anndata(self, adata: Any) -> Any:
        return self.ln.Artifact.from_anndata(adata, description="bench").save()

    def delete(self, artifact: Any) -> None:
        artifact.delete(permanent=True)


class LaminDbTool:
    def __init__(self) -> None:
        import lamindb as ln  # connects to the configured instance on import

        self.ln = ln
        self._offline()

    def _offline(self) -> None:
        # LaminDB's Artifact constructor asks its hub whether the instance is registered (for
        # a file outside the storage root, lamindb/models/artifact.py passes
        # ``setup_settings.instance.is_on_hub`` to check_path_in_existing_storage), and that
        # property makes a network request the first time. Offline the request fails and the
        # constructor raises. The private cache of that property (``_is_on_hub``, in
        # lamindb_setup/core/_settings_instance.py) answers "not registered" without asking.
        if getattr(self.ln, "setup", None) is not None and self.ln.setup.settings.instance:
            self.ln.setup.settings.instance._is_on_hub = False

    def init(self, storage: str) -> None:
        import lamindb_setup

        lamindb_setup.init(storage=storage)

    def connect(self) -> None:
        self._offline()  # import already connected

    def save_file(self, path: str) -> Any:
        return self.ln.Artifact(path, description="bench").save()

    def save_many(self, paths: list[str]) -> None:
        self.ln.save([self.ln.Artifact(p, description="bench") for p in paths])

    def save_anndata(self, adata: Any) -> Any:
        return self.ln.Artifact.from_anndata(adata, description="bench").save()

    def delete(self, artifact: Any) -> None:
        artifact.delete(permanent=True, storage=True)


def _tool(name: str) -> Any:
    return LaminNbTool() if name == "lamin_nb" else LaminDbTool()


def worker(tool_name: str, scenario: str, spec: dict[str, Any]) -> dict[str, Any]:
    """One measurement in this fresh process; returns seconds (and what else was asked)."""
    if scenario == "first":
        start = time.perf_counter()
        tool = _tool(tool_name)
        imported = time.perf_counter()
        tool.connect()
        connected = time.perf_counter()
        tool.save_file(spec["files"][0])
        done = time.perf_counter()
        return {"import": imported - start, "connect": connected - start, "first": done - start}
    tool = _tool(tool_name)
    if scenario == "init":
        tool.init(spec["storage"])
        return {}
    tool.connect()
    tool.save_file(spec["warmup"])  # first calls pay for lazy imports and caches
    if scenario == "single":
        start = time.perf_counter()
        for path in spec["files"]:
            tool.save_file(path)
        return {"seconds": time.perf_counter() - start}
    if scenario == "bulk":
        start = time.perf_counter()
        tool.save_many(spec["files"])
        return {"seconds": time.perf_counter() - start}
    if scenario == "large":
        start = time.perf_counter()
        artifact = tool.save_file(spec["files"][0])
        seconds = time.perf_counter() - start
        tool.delete(artifact)  # keeps the disk from filling up; not timed
        return {"seconds": seconds}
    if scenario == "anndata":
        import anndata

        adata = anndata.read_h5ad(spec["h5ad"])
        adata.X[0, 0] = float(spec["run"]) + 0.5  # new content each run, the same for both
        start = time.perf_counter()
        artifact = tool.save_anndata(adata)
        seconds = time.perf_counter() - start
        tool.delete(artifact)
        return {"seconds": seconds}
    raise SystemExit(f"unknown scenario {scenario}")


# -- the driver (runs in the interpreter that has lamin_nb's dependencies) -----------------


def cache_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lamin_nb_bench"
    return Path(os.environ.get("LAMIN_NB_BENCH_CACHE") or default)


def _venv(name: str, packages: list[str]) -> Path:
    """A virtualenv in the cache folder with ``packages`` (made once; a marker says it is done)."""
    folder = cache_dir() / name
    python = folder / "bin" / "python"
    done = folder / ".installed"
    if done.exists() and python.exists():
        return python
    print(f"creating {folder} with {' '.join(packages)} (first use only) ...", flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], check=True)
    done.write_text(" ".join(packages) + "\n")
    return python


def lamindb_python() -> Path:
    return _venv(f"lamindb-{LAMINDB_VERSION}", [f"lamindb=={LAMINDB_VERSION}", "anndata"])


def lamin_nb_python() -> Path:
    """This interpreter if it can run lamin_nb from this checkout, else a venv with its deps."""
    probe = "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in %r))"
    if subprocess.run([sys.executable, "-c", probe % (LN_DEPS,)]).returncode == 0:
        return Path(sys.executable)
    return _venv("lamin_nb-deps", _project_deps())


def _project_deps() -> list[str]:
    try:
        import tomllib
    except ImportError:  # Python 3.10: the runtime dependencies, as pyproject.toml names them
        return ["sqlalchemy>=2.0", "alembic>=1.12", "fsspec>=2023.9", "universal_pathlib>=0.2",
                "blake3>=0.3", "anndata>=0.10", "pandas>=2.0", "pyarrow>=14"]  # fmt: skip
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [*project["dependencies"], *project["optional-dependencies"]["anndata"]]


def compile_checkout(python: Path) -> None:
    """Bytecode for this checkout, as an installed package has it (pip compiles LaminDB's at
    install); without it, and with PYTHONDONTWRITEBYTECODE set, every process would compile
    lamin_nb's sources again and the fresh-process rows would measure the compiler."""
    subprocess.run([str(python), "-m", "compileall", "-q", str(REPO / "lamin_nb")], check=True)


class Driver:
    def __init__(self, args: argparse.Namespace, scratch: Path) -> None:
        self.args = args
        self.scratch = scratch
        self.pythons = {"lamin_nb": lamin_nb_python(), "lamindb": lamindb_python()}
        compile_checkout(self.pythons["lamin_nb"])
        self.inputs = scratch / "inputs"
        self.inputs.mkdir()
        self._batch = 0
        self.warmup = {tool: self._files(1, 1024)[0] for tool in self.pythons}

    def env(self, tool: str) -> dict[str, str]:
        env = dict(os.environ)
        if tool == "lamin_nb":
            env["LAMIN_NB_HOME"] = str(self.scratch / "lamin_nb_home")
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        else:
            env["LAMIN_SETTINGS_DIR"] = str(self.scratch / "lamindb_settings")
            env["LAMIN_CACHE_DIR"] = str(self.scratch / "lamindb_cache")
        return env

    def call(self, tool: str, scenario: str, spec: dict[str, Any]) -> dict[str, Any]:
        proc = subprocess.run(
            [str(self.pythons[tool]), __file__, "--worker", tool, scenario, json.dumps(spec)],
            env=self.env(tool),
            cwd=self.scratch,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
        lines = [line for line in proc.stdout.splitlines() if line.startswith(MARK)]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(
                f"{tool} {scenario} failed:\n{proc.stdout[-2000:]}{proc.stderr[-4000:]}"
            )
        return dict(json.loads(lines[-1][len(MARK) :]))

    def init(self) -> None:
        for tool in self.pythons:
            self.call(tool, "init", {"storage": str(self.scratch / f"{tool}_store")})

    def _files(self, n: int, size: int) -> list[str]:
        self._batch += 1
        folder = self.inputs / f"batch{self._batch}"
        folder.mkdir()
        paths = [folder / f"f{i:06d}.bin" for i in range(n)]
        for path in paths:
            path.write_bytes(os.urandom(size))
        return [str(p) for p in paths]

    def paired(self, run: int, scenario: str, spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Both tools on the same spec; who goes first alternates with the run."""
        order = ["lamin_nb", "lamindb"] if run % 2 == 0 else ["lamindb", "lamin_nb"]
        found = {}
        for tool in order:
            found[tool] = self.call(tool, scenario, {**spec, "warmup": self.warmup[tool]})
        return found

    def measure(self, scenario: str) -> dict[str, list[float]]:
        a = self.args
        out: dict[str, list[float]] = {"lamin_nb": [], "lamindb": []}
        large = self.scratch / "inputs" / "large.bin"
        h5ad = self.scratch / "inputs" / "input.h5ad"
        if scenario == "large":
            _random_file(large, int(a.size_gib * (1 << 30)))
        if scenario == "anndata":
            _write_h5ad(self.pythons["lamin_nb"], h5ad, a.anndata_mb)
        for run in range(a.runs):
            files: list[str] = []
            if scenario in ("import", "connect", "first"):
                files = self._files(1, a.file_kib * 1024)
            elif scenario == "single":
                files = self._files(a.single_n, a.file_kib * 1024)
            elif scenario == "bulk":
                files = self._files(a.bulk_n, a.file_kib * 1024)
            elif scenario == "large":
                _mutate(large, run)
                files = [str(large)]
            fresh = scenario in ("import", "connect", "first")
            spec = {"files": files, "h5ad": str(h5ad), "run": run}
            for tool, result in self.paired(run, "first" if fresh else scenario, spec).items():
                out[tool].append(result[scenario] if fresh else result["seconds"])
            for path in files:
                if path != str(large):
                    Path(path).unlink(missing_ok=True)
            took = ", ".join(f"{t} {v[-1]:.3f} s" for t, v in out.items())
            print(f"  {scenario} run {run + 1}: {took}", flush=True)
        large.unlink(missing_ok=True)
        h5ad.unlink(missing_ok=True)
        return out


def _random_file(path: Path, size: int) -> None:
    with open(path, "wb") as fh:
        left = size
        while left > 0:
            step = min(8 * MIB, left)
            fh.write(os.urandom(step))
            left -= step


def _mutate(path: Path, run: int) -> None:
    with open(path, "r+b") as fh:
        fh.write(os.urandom(16) + run.to_bytes(4, "little"))


def _write_h5ad(python: Path, path: Path, megabytes: float) -> None:
    n_obs = max(1, int(megabytes * 1e6 / 8000))  # float32 x 2,000 variables
    code = (
        f"import sys, anndata, numpy as np; n_obs = {n_obs}; "
        "x = np.random.default_rng(0).random((n_obs, 2000), dtype=np.float32); "
        "anndata.AnnData(x).write_h5ad(sys.argv[1])"
    )
    subprocess.run([str(python), "-c", code, str(path)], check=True)


LABELS = {
    "import": "import (fresh process; LaminDB connects on import)",
    "connect": "import + connect (fresh process)",
    "first": "first save in a new process (connect + save)",
    "single": "{single_n} single saves of {file_kib} KiB",
    "bulk": "bulk save of {bulk_n} x {file_kib} KiB",
    "large": "one {size_gib:g} GiB file",
    "anndata": "AnnData ~{anndata_mb:g} MB",
}


def table(results: dict[str, dict[str, list[float]]], args: argparse.Namespace) -> str:
    lines = [
        f"| scenario | lamin_nb | LaminDB {LAMINDB_VERSION} | LaminDB / lamin_nb |",
        "|---|---|---|---|",
    ]
    for scenario, values in results.items():
        ours, theirs = statistics.median(values["lamin_nb"]), statistics.median(values["lamindb"])
        label = LABELS[scenario].format(**vars(args))
        if ours < 0.005:  # lamin_nb imports lazily: a ratio to ~1 ms says nothing
            ratio = "— (lamin_nb imports its modules on first use)"
        else:
            faster = "lamin_nb faster" if theirs > ours else "LaminDB faster"
            ratio = f"{theirs / ours:.2f}x ({faster})"
        lines.append(f"| {label} | {_fmt(ours)} | {_fmt(theirs)} | {ratio} |")
    return "\n".join(lines)


def _fmt(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    p.add_argument("--single-n", type=int, default=200)
    p.add_argument("--bulk-n", type=int, default=1000)
    p.add_argument("--file-kib", type=int, default=10)
    p.add_argument("--size-gib", type=float, default=1.0)
    p.add_argument("--anndata-mb", type=float, default=160.0)
    p.add_argument("--tmp", default=None, help="scratch folder parent (default: temp dir)")
    p.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.worker:
        tool, scenario, spec = args.worker
        print(MARK + json.dumps(worker(tool, scenario, json.loads(spec))), flush=True)
        return 0
    scratch = Path(tempfile.mkdtemp(prefix="lamin-nb-vs-lamindb-", dir=args.tmp))
    try:
        driver = Driver(args, scratch)
        driver.init()
        print(f"load average at start: {_load()}; {args.runs} run(s), medians", flush=True)
        results = {s: driver.measure(s) for s in SCENARIOS if s in args.scenarios}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print()
    print(table(results, args))
    print(f"\nload average at end: {_load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
