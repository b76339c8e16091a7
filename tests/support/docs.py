"""Render the tutorial notebooks as HTML docs (``./scripts/docs [NAME.ipynb ...]``).

Each notebook is executed exactly as the test suite does (real S3 through a local moto
server, PostgreSQL from ``LAMIN_NB_TEST_PG_URL``); a failing notebook stops the build.
Output: ``docs/_build/<name>.html``, the executed ``docs/_build/notebooks/<name>.ipynb``
(widget state included) and ``docs/_build/index.html``.
"""

from __future__ import annotations

import argparse
import html
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.support.notebooks import NOTEBOOKS, REPO, execute_file, kernel_env
from tests.support.servers import MotoServer, s3_env

BUILD = REPO / "docs" / "_build"


def render(names: Sequence[str], build: Path = BUILD) -> list[Path]:
    import nbformat

    (build / "notebooks").mkdir(parents=True, exist_ok=True)
    pages = []
    with tempfile.TemporaryDirectory(prefix="lamin-docs-") as tmp:
        moto = MotoServer(Path(tmp) / "moto.log")
        moto.start()
        try:
            for name in names:
                started = time.monotonic()
                work = Path(tmp) / name.removesuffix(".ipynb")
                work.mkdir()
                env = kernel_env(work, **s3_env(moto.endpoint))
                nb = execute_file(NOTEBOOKS / name, work, env)
                nbformat.write(nb, build / "notebooks" / name)
                page = build / (name.removesuffix(".ipynb") + ".html")
                page.write_text(to_html(nb, name))
                pages.append(page)
                print(
                    f"{name}: executed and rendered in {time.monotonic() - started:.1f} s "
                    f"-> {page.relative_to(REPO)}"
                )
        finally:
            moto.stop()
    return pages


def to_html(nb: Any, name: str) -> str:
    """nbconvert's HTML page; widget views load the ipywidgets HTML manager from a CDN."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(
        nb, resources={"metadata": {"name": name.removesuffix(".ipynb")}}
    )
    return str(body)


def write_index(pages: Sequence[Path], build: Path = BUILD) -> Path:
    items = "\n".join(
        f'<li><a href="{html.escape(p.name)}">{html.escape(p.stem)}</a></li>' for p in sorted(pages)
    )
    index = build / "index.html"
    index.write_text(
        f"<!doctype html><meta charset='utf-8'><title>lamin_nb tutorials</title>"
        f"<h1>lamin_nb tutorials</h1><p>Executed notebooks.</p><ul>{items}</ul>\n"
    )
    return index


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/docs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("notebooks", nargs="*", help="names under notebooks/ (default: all)")
    args = parser.parse_args(argv)
    names = args.notebooks or sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    unknown = [n for n in names if not (NOTEBOOKS / n).is_file()]
    if unknown:
        parser.error(f"no such notebook(s) in notebooks/: {', '.join(unknown)}")
    os.environ.pop("LAMIN_NB_FAULT", None)
    render(names)
    pages = [p for p in BUILD.glob("*.html") if p.name != "index.html"]
    print(f"index: {write_index(pages).relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
