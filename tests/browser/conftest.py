"""A throw-away JupyterLab (loopback, token) and Debian's Chromium driven by Playwright.

Never ``playwright install``: Playwright talks to the system ``/usr/bin/chromium``.
Screenshots go to ``test-artifacts/browser/``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.jupyter import JupyterProcess, isolated_env
from tests.support.notebooks import NOTEBOOKS, REPO, pg_url

CHROMIUM = os.environ.get("LAMIN_NB_CHROMIUM", "/usr/bin/chromium")
CHROME_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
SHOTS = REPO / "test-artifacts" / "browser"


@pytest.fixture(scope="module")
def lab(s3_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterProcess]:
    """JupyterLab on copies of the notebooks (autosave must never touch the originals)."""
    root = tmp_path_factory.mktemp("lab-root")
    for notebook in NOTEBOOKS.glob("*.ipynb"):
        shutil.copy(notebook, root / notebook.name)
    home = tmp_path_factory.mktemp("lab-home")
    # the server extension's instance; each notebook sets its own LAMIN_NB_HOME in its kernel
    env = isolated_env(
        home, LAMIN_NB_HOME=str(home / "lamin-home"), LAMIN_NB_TEST_PG_URL=pg_url()
    )  # AWS_* come from s3_server
    env.pop("LAMIN_NB_FAULT", None)
    # an instance for the server extension's REST API, made the way a user would
    subprocess.run(
        [sys.executable, "-m", "lamin_nb.cli", "init", "--storage", str(home / "storage")],
        env=env,
        check=True,
        capture_output=True,
    )
    server = JupyterProcess(root, home, env, lab=True)
    server.start()
    yield server
    server.stop()
    assert server.leftovers == [], f"processes left behind by JupyterLab: {server.leftovers}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: ./scripts/test installs Debian's chromium"
    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROME_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(90_000)
    yield pg
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        pg.screenshot(path=str(SHOTS / f"{request.node.name}-last.png"), full_page=True)
    finally:
        context.close()
