"""Build the docs site (``./scripts/docs [NAME.ipynb ...]``): Sphinx over executed tutorials.

1. Execute each tutorial in a kernel with no S3 or AWS configuration at all, exactly as a new
   user would run it (the notebooks start their own local servers), into ``docs/tutorials/``.
   The test suite passes the notebooks it already executed instead.
2. Copy the widget renderer (``docs/package.json``, installed by ``npm ci``) into
   ``docs/_static/`` so saved widget state renders with no internet.
3. Generate the API (from ``lamin_nb.__all__``), CLI and REST reference pages.
4. ``sphinx-build -W`` into ``docs/_build/html``, then check that no page loads a script or a
   stylesheet from another host and that every internal link resolves.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from tests.support.notebooks import NOTEBOOKS, REPO, execute_file, kernel_env

DOCS = REPO / "docs"
BUILD = DOCS / "_build" / "html"


def execute_tutorials(names: Sequence[str]) -> dict[str, Any]:
    """Run each notebook in its own temporary folder; a failing cell stops the build."""
    done = {}
    with tempfile.TemporaryDirectory(prefix="lamin-docs-") as tmp:
        for name in names:
            started = time.monotonic()
            work = Path(tmp) / name.removesuffix(".ipynb")
            work.mkdir()
            done[name] = execute_file(NOTEBOOKS / name, work, kernel_env(work))
            print(f"{name}: executed in {time.monotonic() - started:.1f} s")
    return done


def write_tutorials(executed: dict[str, Any]) -> None:
    import nbformat

    out = DOCS / "tutorials"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for name, nb in executed.items():
        nbformat.write(nb, out / name)


def copy_widget_renderer() -> None:
    """The ipywidgets HTML manager and require.js from docs/node_modules into _static."""
    modules = DOCS / "node_modules"
    if not (modules / "@jupyter-widgets" / "html-manager").is_dir():
        subprocess.run(["npm", "ci", "--silent", "--no-audit", "--no-fund"], cwd=DOCS, check=True)
    static = DOCS / "_static"
    shutil.rmtree(static, ignore_errors=True)
    shutil.copytree(modules / "@jupyter-widgets" / "html-manager" / "dist", static / "widgets")
    shutil.copy(modules / "requirejs" / "require.js", static / "require.js")


def write_generated() -> None:
    out = DOCS / "generated"
    out.mkdir(exist_ok=True)
    (out / "api.md").write_text(api_page())
    (out / "cli.md").write_text(cli_page())
    (out / "rest.md").write_text(rest_page())


def api_page() -> str:
    import inspect

    import lamin_nb

    lines = ["# Python API", "", "`import lamin_nb as ln`: every name below is `ln.<name>`.", ""]
    for name in lamin_nb.__all__:
        value = getattr(lamin_nb, name)
        if inspect.isclass(value) and issubclass(value, BaseException):
            directive = "autoexception"
        elif inspect.isclass(value):
            directive = "autoclass"
        elif callable(value):
            directive = "autofunction"
        else:
            directive = "autodata"
        options = "   :members:\n" if directive == "autoclass" else ""
        if directive == "autodata":
            options = "   :no-value:\n"
        lines += ["```{eval-rst}", f".. {directive}:: lamin_nb.{name}", options, "```", ""]
    lines += [
        "## Local servers for tutorials and experiments",
        "",
        "```{eval-rst}",
        ".. automodule:: lamin_nb.testing",
        "   :members:",
        "```",
        "",
    ]
    return "\n".join(lines)


def cli_page() -> str:
    from lamin_nb.cli import _parser

    parser = _parser()
    lines = ["# Command line", "", "```text", parser.format_help().rstrip(), "```", ""]
    for action in parser._subparsers._group_actions:  # argparse keeps subcommands only here
        for name, sub in action.choices.items():
            lines += [f"## `lamin-nb {name}`", "", "```text", sub.format_help().rstrip(), "```", ""]
    return "\n".join(lines)


def rest_page() -> str:
    import inspect

    from lamin_nb.jupyter.handlers import ROUTES

    lines = [
        "# REST API",
        "",
        "Routes under `{base_url}/lamin/api/`, served by the Jupyter server extension. They take",
        "the Jupyter server's token or login cookie (with the XSRF token for cookie-authenticated",
        'writes), answer JSON, and report errors as `{"error": message}` with a 4xx status.',
        "",
    ]
    for route, handler in ROUTES:
        lines += [f"## `{route}`", ""]
        for method in ("get", "post", "put", "delete"):
            function = handler.__dict__.get(method)
            if function is not None:
                doc = inspect.getdoc(function) or inspect.getdoc(handler) or ""
                lines += [f"**{method.upper()}** {doc}", ""]
    return "\n".join(lines)


def sphinx_build() -> None:
    shutil.rmtree(BUILD, ignore_errors=True)
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
    subprocess.run([*command, str(DOCS), str(BUILD)], check=True, cwd=REPO)


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.loads: list[str] = []  # what the page loads: <script src>, <link href>
        self.links: list[str] = []  # where it points: <a href>

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script" and found.get("src"):
            self.loads.append(str(found["src"]))
        elif tag == "link" and found.get("href"):
            self.loads.append(str(found["href"]))
        elif tag == "a" and found.get("href"):
            self.links.append(str(found["href"]))


def check_site(build: Path = BUILD) -> list[str]:
    """Problems: external scripts or stylesheets, internal links to nothing."""
    problems = []
    for page in sorted(build.rglob("*.html")):
        parser = _Links()
        parser.feed(page.read_text(encoding="utf-8"))
        for url in parser.loads:
            if urlsplit(url).netloc or url.startswith("//"):
                problems.append(f"{page.relative_to(build)} loads {url} from another host")
        problems += [
            f"{page.relative_to(build)} refers to {url}, which does not exist"
            for url in _internal(parser.loads + parser.links)
            if not (page.parent / unquote(urlsplit(url).path)).exists()
        ]
    return problems


def _internal(urls: Iterable[str]) -> Iterable[str]:
    for url in urls:
        parts = urlsplit(url)
        if not parts.scheme and not parts.netloc and parts.path:
            yield url


def build(executed: dict[str, Any] | None = None) -> list[str]:
    """Build the site; return the problems :func:`check_site` finds (empty: all good)."""
    names = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    write_tutorials(executed if executed is not None else execute_tutorials(names))
    copy_widget_renderer()
    write_generated()
    sphinx_build()
    return check_site()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/docs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.parse_args(argv)
    os.environ.pop("LAMIN_NB_FAULT", None)
    problems = build()
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"site: {(BUILD / 'index.html').relative_to(REPO)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
