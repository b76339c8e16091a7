"""What ``pip install`` puts where: Jupyter config, IPython startup file, JupyterLab extension."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.support.jupyter import isolated_env

REPO = Path(__file__).resolve().parents[2]
SERVER_CONFIG = "etc/jupyter/jupyter_server_config.d/lamin_nb.json"
STARTUP = "etc/ipython/startup/50-lamin-nb.py"
SOURCES = {
    SERVER_CONFIG: REPO / "jupyter-config/jupyter_server_config.d/lamin_nb.json",
    STARTUP: REPO / "ipython-config/startup/50-lamin-nb.py",
}
LABEXTENSION = "share/jupyter/labextensions/@lamin-nb/jupyterlab"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # the build backend of the environment (hatchling), no index: the same files a release has
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(out),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("lamin_nb-*.whl")
    return path


def test_wheel_ships_jupyter_config_and_startup_file(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        data = {n.split(".data/data/", 1)[1]: zf.read(n) for n in names if ".data/data/" in n}
    assert {n for n in data if not n.startswith(LABEXTENSION + "/")} == {SERVER_CONFIG, STARTUP}
    for target, source in SOURCES.items():
        assert data[target] == source.read_bytes()
    config = json.loads(data[SERVER_CONFIG])
    assert config == {"ServerApp": {"jpserver_extensions": {"lamin_nb.jupyter.server": True}}}
    assert "lamin_nb/jupyter/server.py" in names and "lamin_nb/jupyter/handlers.py" in names
    assert not [n for n in names if n.startswith(("tests/", "notebooks/", ".venv", "packages/"))]


def test_wheel_ships_type_information(wheel):
    """``py.typed`` (PEP 561): type checkers use lamin_nb's own annotations."""
    with zipfile.ZipFile(wheel) as zf:
        assert "lamin_nb/py.typed" in zf.namelist()
        assert "lamin_nb/core/record.py" in zf.namelist()


def test_wheel_ships_the_prebuilt_jupyterlab_extension(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        data = {n.split(".data/data/", 1)[1]: zf.read(n) for n in names if ".data/data/" in n}
    package = json.loads(data[f"{LABEXTENSION}/package.json"])
    assert package["name"] == "@lamin-nb/jupyterlab"
    assert package["jupyterlab"]["_build"]["load"].startswith("static/remoteEntry.")
    assert f"{LABEXTENSION}/{package['jupyterlab']['_build']['load']}" in data
    assert f"{LABEXTENSION}/static/style.js" in data
    assert json.loads(data[f"{LABEXTENSION}/install.json"])["packageName"] == "lamin_nb"
    schema = json.loads(data[f"{LABEXTENSION}/schemas/@lamin-nb/jupyterlab/plugin.json"])
    assert "statusInterval" in schema["properties"]
    # shipped once: not also inside the Python package, and no TypeScript sources or modules
    assert not [n for n in names if n.startswith("lamin_nb/labextension/")]
    assert not [n for n in names if "node_modules" in n or n.endswith(".ts")]


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel pip-installed into a fresh venv (never this test's own environment).

    The venv sees this environment's dependencies through a .pth line placed after its own
    site-packages, so ``lamin_nb`` comes from the wheel and Jupyter from here.
    """
    venv = tmp_path_factory.mktemp("installed") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            python,
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(site) / "zz_lamin_nb_test_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return venv


def test_installing_the_wheel_enables_the_server_extension(installed, tmp_path):
    for target in SOURCES:
        assert (installed / target).read_bytes() == SOURCES[target].read_bytes()
    python = str(installed / "bin" / "python")
    env = isolated_env(tmp_path / "jhome")
    where = subprocess.run(
        [python, "-c", "import lamin_nb; print(lamin_nb.__file__)"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.strip().startswith(str(installed))
    ours = _extension_list(env, python, cwd=tmp_path)[str(installed / "etc" / "jupyter")]
    assert "lamin_nb.jupyter.server enabled" in ours
    assert re.search(r"lamin_nb\.jupyter\.server +\S* *OK", ours)
    lab = _labextension_list(env, python, cwd=tmp_path)
    assert re.search(r"@lamin-nb/jupyterlab v0\.1\.0 enabled +OK \(python, lamin_nb\)", lab), lab
    assert str(installed / "share" / "jupyter" / "labextensions") in lab


def test_development_install_has_the_same_files():
    """``pip install -e .`` installs the shared-data too (reinstall after editing them)."""
    for target, source in SOURCES.items():
        installed = Path(sys.prefix) / target
        assert installed.exists(), f"{installed} missing: run pip install -e '.[dev]'"
        assert installed.read_bytes() == source.read_bytes(), (
            f"{installed} is stale: run pip install -e '.[dev]'"
        )


def test_development_install_has_the_jupyterlab_extension(tmp_path):
    """``pip install -e '.[dev]'`` builds the extension (Node.js is there) and installs it."""
    installed = Path(sys.prefix) / LABEXTENSION / "package.json"
    assert installed.exists(), f"{installed} missing: run pip install -e '.[dev]' with Node.js"
    lab = _labextension_list(isolated_env(tmp_path / "jhome"))
    assert re.search(r"@lamin-nb/jupyterlab v0\.1\.0 enabled +OK", lab), lab


def test_extension_list_shows_lamin_nb_enabled_and_ok(tmp_path):
    sections = _extension_list(isolated_env(tmp_path / "jhome"))
    ours = sections[str(Path(sys.prefix) / "etc" / "jupyter")]
    assert "lamin_nb.jupyter.server enabled" in ours
    assert re.search(r"lamin_nb\.jupyter\.server +\S* *OK", ours)


def _extension_list(
    env: dict[str, str],
    python: str = sys.executable,
    cwd: Path | None = None,
) -> dict[str, str]:
    """``jupyter server extension list``, split into its "Config dir:" sections."""
    out = subprocess.run(
        [python, "-m", "jupyter_server", "extension", "list"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    text = ANSI.sub("", out.stdout + out.stderr)
    sections: dict[str, str] = {}
    for chunk in text.split("Config dir: ")[1:]:
        folder, _, body = chunk.partition("\n")
        sections[folder.strip()] = body
    return sections


def _labextension_list(
    env: dict[str, str],
    python: str = sys.executable,
    cwd: Path | None = None,
) -> str:
    """``jupyter labextension list`` as a user runs it."""
    out = subprocess.run(
        [python, "-m", "jupyterlab.labextensions", "list"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return ANSI.sub("", out.stdout + out.stderr)
