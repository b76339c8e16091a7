"""A real Jupyter server (or JupyterLab) on a loopback port, isolated from the user's config.

Started in its own session so that stopping it kills the server and every kernel it spawned,
and nothing else.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.support.servers import free_port

REPO = Path(__file__).resolve().parents[2]
NO_NEWS = {
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False}
}


def isolated_env(home: Path, **extra: str) -> dict[str, str]:
    """Jupyter and IPython folders under ``home``; the env's etc/ config dirs still apply."""
    (home / "config" / "labconfig").mkdir(parents=True, exist_ok=True)
    (home / "config" / "labconfig" / "default_setting_overrides.json").write_text(
        json.dumps(NO_NEWS)
    )  # the news toast would cover cells in screenshots
    env = dict(
        os.environ,
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_DATA_DIR=str(home / "data"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        IPYTHONDIR=str(home / "ipython"),
        JUPYTER_PLATFORM_DIRS="1",
    )
    env.pop("JUPYTER_PATH", None)
    env.update(extra)
    return env


class JupyterProcess:
    """``jupyter server`` (``lab=False``) or ``jupyter lab`` with a random token."""

    def __init__(
        self,
        root: Path,
        home: Path,
        env: dict[str, str],
        lab: bool = False,
        extra_args: list[str] | None = None,
    ) -> None:
        self.root, self.home, self.env, self.lab = root, home, env, lab
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = home / ("lab.log" if lab else "server.log")
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.leftovers: list[Proc] = []

    def command(self) -> list[str]:
        module = "jupyterlab" if self.lab else "jupyter_server"
        cmd = [
            sys.executable,
            "-m",
            module,
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            f"--IdentityProvider.token={self.token}",
            "--ServerApp.open_browser=False",
            f"--ServerApp.root_dir={self.root}",
            "--ServerApp.port_retries=0",
        ]
        if self.lab:
            cmd += [
                "--LabApp.expose_app_in_browser=True",
                "--LabApp.news_url=None",
                f"--LabApp.workspaces_dir={self.home / 'workspaces'}",
            ]
        if os.geteuid() == 0:
            cmd.append("--allow-root")
        return cmd + self.extra_args

    def start(self, timeout: float = 90) -> None:
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                self.command(),
                env=self.env,
                cwd=self.root,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                urllib.request.urlopen(f"{self.base}/api/status?token={self.token}", timeout=2)
                return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"jupyter did not start on {self.base}:\n{self.log_text()[-4000:]}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        """Stop the server, then anything it started that outlived it.

        Kernels run in sessions of their own (jupyter_client starts them so), so killing the
        server's process group is not enough: their pids are collected first.
        """
        if self.proc is None:
            return
        started = descendants(self.proc.pid)
        pgid = self.proc.pid
        try:
            os.killpg(pgid, signal.SIGTERM)  # the server shuts its kernels down
            self.proc.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None
        for pid, _ in alive(started):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while alive(started) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.leftovers = alive(started)


def _stat(pid: int) -> tuple[int, str, str] | None:
    """(parent pid, state, start time) from /proc, or None when the process is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[1]), fields[0], fields[19]


Proc = tuple[int, str]  # pid and start time: a pid reused by another process never matches


def descendants(root: int) -> list[Proc]:
    children: dict[int, list[Proc]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            info = _stat(int(entry.name))
            if info is not None:
                children.setdefault(info[0], []).append((int(entry.name), info[2]))
    found: list[Proc] = []
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child[0])
    return found


def alive(procs: list[Proc]) -> list[Proc]:
    """Those still running (zombies waiting for their reaper count as gone)."""
    return [
        (pid, start)
        for pid, start in procs
        if (info := _stat(pid)) is not None and info[2] == start and info[1] != "Z"
    ]
