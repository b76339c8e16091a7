"""``lamin-nb demo``: the main job on the embedded default (SQLite + a local folder)."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path


def run_demo(storage: str | None = None) -> int:
    import lamin_nb as ln

    workdir = Path(tempfile.mkdtemp(prefix="lamin-nb-demo-"))
    # a private settings folder: the demo never changes the user's current instance
    os.environ["LAMIN_NB_HOME"] = str(workdir / "home")
    root = storage or str(workdir / "storage")
    inst = ln.init(storage=root, name="demo")
    print(f"instance: {inst!r}\n")

    data_file = workdir / "measurements.csv"
    data_file.write_text("sample,value\n" + "".join(f"s{i},{i * 0.5}\n" for i in range(1000)))
    _step(
        "save a file",
        lambda: ln.Artifact(
            data_file, key="raw/measurements.csv", description="plate reader export"
        ).save(),
    )
    _step(
        "save a synthetic AnnData",
        lambda: ln.Artifact.from_anndata(
            _synthetic_anndata(), key="scrna/pbmc-synthetic.h5ad", description="synthetic"
        ).save(),
    )
    _step(
        "save a DataFrame",
        lambda: ln.Artifact.from_df(
            _synthetic_df(), key="tables/qc.parquet", description="per-sample QC"
        ).save(),
    )

    print("\na save that fails is rolled back:")
    changing = workdir / "changing.txt"
    changing.write_text("version one")

    class StillBeingWritten(ln.SaveCallback):
        """Plays another program that rewrites the file while lamin_nb uploads it."""

        def state(self, index: int, state: object, detail: str = "") -> None:
            if getattr(state, "value", "") == "uploading":
                changing.write_text("version two")

    try:
        ln.Artifact(changing, key="raw/changing.txt").save(callback=StillBeingWritten())
    except ln.SaveError as exc:
        print(f"  SaveError: {exc}")
    left = ln.Artifact.filter(key="raw/changing.txt").count()
    print(f"  rows for raw/changing.txt: {left}; objects left behind: {len(ln.check().orphans)}")

    print("\nstored artifacts:")
    for a in ln.Artifact.filter().all():
        print(f"  {a.uid}  {a.key:<28} {a.otype or 'file':<9} {a.size:>9} bytes  {a.hash}")
    report = ln.check(deep=True)
    print(f"\n{report.summary()} (deep check: every object re-hashed)")
    print(f"\nloaded back: {ln.Artifact.get('scrna/pbmc-synthetic.h5ad').load()}")
    print(f"files are under {root}")
    return 0 if report.is_consistent and left == 0 else 1


def _step(title: str, action: object) -> None:
    start = time.perf_counter()
    artifact = action()  # type: ignore[operator]
    print(
        f"{title}: {artifact.key} -> {artifact.uid} ({(time.perf_counter() - start) * 1000:.0f} ms)"
    )


def _synthetic_anndata() -> object:
    import anndata
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    counts = rng.poisson(1.0, size=(500, 200)).astype("float32")
    obs = pd.DataFrame(
        {"cell_type": rng.choice(["B", "T", "NK"], 500)}, index=[f"cell{i}" for i in range(500)]
    )
    var = pd.DataFrame(index=[f"gene{i}" for i in range(200)])
    return anndata.AnnData(counts, obs=obs, var=var)


def _synthetic_df() -> object:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {
            "sample": [f"s{i}" for i in range(100)],
            "reads": rng.integers(1_000, 100_000, 100),
            "pass_qc": rng.random(100) > 0.1,
        }
    )
