"""The installed IPython startup file: magics in every kernel, quietly, never breaking start-up.

Kernels are real (nbclient, this environment's ``python3`` kernelspec), each with its own
IPython folder and settings folder; the startup file is the one ``pip install`` put into
``<prefix>/etc/ipython/startup/``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.notebooks import code_notebook, execute, kernel_env

MAGICS = [
    "lamin_check",
    "lamin_connect",
    "lamin_init",
    "lamin_ls",
    "lamin_repair",
    "lamin_save",
    "lamin_upload",
    "lamin_uploads",
]
PROBE = (
    "import json, sys\n"
    "shell = get_ipython()\n"
    "print(json.dumps({\n"
    "    'magics': sorted(m for m in shell.magics_manager.magics['line']\n"
    "                     if m.startswith('lamin_')),\n"
    "    'loaded': 'lamin_nb' in shell.extension_manager.loaded,\n"
    "    'leaked': sorted(k for k in shell.user_ns if 'lamin' in k.lower()),\n"
    "    'heavy': sorted(m for m in ('sqlalchemy', 'pandas', 'anndata', 's3fs')"
    " if m in sys.modules),\n"
    "}))"
)


def probe(tmp_path: Path, *cells: str, **env: str) -> list[dict]:
    nb = execute(code_notebook(*cells, PROBE), tmp_path, kernel_env(tmp_path, **env), timeout=120)
    last = nb.cells[-1].outputs
    first_cells = [o for c in nb.cells[:-1] for o in c.outputs]
    return [json.loads(last[0]["text"]), first_cells]


def broken_home(tmp_path: Path) -> Path:
    """A settings folder whose current instance has unreadable settings."""
    home = tmp_path / "broken-home"
    (home / "instances" / "ghost").mkdir(parents=True)
    (home / "instances" / "ghost" / "instance.json").write_text("{not json")
    (home / "current").write_text("ghost\n")
    return home


def test_magics_are_there_without_load_ext(tmp_path):
    state, _ = probe(tmp_path, LAMIN_NB_HOME=str(tmp_path / "no-instance-yet"))
    # registered directly, not through the extension manager: a later %load_ext stays silent
    assert state["magics"] == MAGICS and not state["loaded"]
    assert state["leaked"] == []  # the startup file cleans up after itself
    assert state["heavy"] == []  # loading the magics costs every kernel little


def test_load_ext_in_an_autoloaded_kernel_is_a_silent_no_op(tmp_path):
    """``%load_ext lamin_nb`` (in older notebooks, and habit) must not answer "already loaded"
    where the startup file loaded the magics; the magics keep working."""
    state, outputs = probe(tmp_path, "%load_ext lamin_nb", LAMIN_NB_HOME=str(tmp_path / "h"))
    assert outputs == []
    assert state["magics"] == MAGICS


def test_a_broken_instance_never_breaks_kernel_start(tmp_path):
    state, outputs = probe(
        tmp_path, "x = 40 + 2\nprint(x)", LAMIN_NB_HOME=str(broken_home(tmp_path))
    )
    assert outputs[0]["text"] == "42\n"
    assert state["magics"] == MAGICS


def test_environment_variable_opts_out(tmp_path):
    state, _ = probe(tmp_path, LAMIN_NB_NO_AUTOLOAD="1")
    assert state["magics"] == [] and not state["loaded"]


def test_opted_out_kernel_can_still_load_ext(tmp_path):
    state, _ = probe(tmp_path, "%load_ext lamin_nb", LAMIN_NB_NO_AUTOLOAD="1")
    assert state["magics"] == MAGICS and state["loaded"]


@pytest.mark.parametrize(
    "home,opt_out,expected",
    [
        ("empty", "", MAGICS),
        ("broken", "", MAGICS),
        ("empty", "0", MAGICS),
        ("empty", "false", MAGICS),
        ("empty", "true", []),
        ("broken", "yes", []),
    ],
)
def test_terminal_ipython_start_is_silent(tmp_path, home, opt_out, expected):
    lamin_home = broken_home(tmp_path) if home == "broken" else tmp_path / "empty"
    env = kernel_env(tmp_path, LAMIN_NB_HOME=str(lamin_home), LAMIN_NB_NO_AUTOLOAD=opt_out)
    code = (
        "print('magics:', sorted(m for m in get_ipython().magics_manager.magics['line']"
        " if m.startswith('lamin_')))"
    )
    out = subprocess.run(
        [sys.executable, "-m", "IPython", "--no-banner", "--colors=nocolor", "-c", code],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"magics: {expected}\n"
    assert out.stderr == ""
