"""Ctrl-C twice in a real kernel: the undo of the first interrupt is not cut short by the second,
and the kernel never waits for itself afterwards.

The kernel is a real ipykernel started through ``jupyter_client``; interrupts are the ones
JupyterLab sends (``KernelManager.interrupt_kernel``: SIGINT to the kernel). A progress hook
holds the save in its upload, then holds the undo open until the test has sent the second
interrupt, so each interrupt lands where it must.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.crashes import REPO
from tests.support.notebooks import kernel_env

SETUP = """
import os, time, json
import lamin_nb as ln
from lamin_nb.core import save as save_protocol
from lamin_nb.core.callbacks import ItemState, SaveCallback
save_protocol.WAIT_FOR_OTHERS_SECONDS = 20.0  # a wait for itself fails the test instead of hanging
ln.init(storage={storage!r})
paths = []
for i in range(3):
    paths.append({files!r} + f"/f{{i}}.csv")
    with open(paths[-1], "w") as fh:
        fh.write(f"row,{{i}}\\n" * 100)

class Hold(SaveCallback):
    def state(self, index, state, detail=""):
        if state is ItemState.UPLOADING:
            print("UPLOADING", flush=True)
            time.sleep(120)  # the first interrupt ends this
        elif state is ItemState.FAILED:
            print("UNDOING", flush=True)
            for _ in range(1200):  # until the test has sent the second interrupt
                if os.path.exists({flag!r}):
                    break
                time.sleep(0.1)
"""
SAVE = "ln.save([ln.Artifact(p, key='runs/' + os.path.basename(p)) for p in paths], " + (
    "max_workers=1, callback=Hold())"
)
STATE = """
from lamin_nb.core.instance import current
from lamin_nb.core.rows import count_by_status
with current().db.read() as session:
    counts = count_by_status(session)
report = ln.check()
print(json.dumps({"rows": counts, "consistent": report.is_consistent, "report": repr(report)}))
"""
AGAIN = """
events = []
class Seen(SaveCallback):
    def state(self, index, state, detail=""):
        events.append(state.value)
saved = ln.save([ln.Artifact(p, key='runs/' + os.path.basename(p)) for p in paths],
                callback=Seen())
print(json.dumps({"saved": len(saved.saved), "waited": "waiting" in events}))
"""


@pytest.fixture
def kernel(tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    from jupyter_client.manager import start_new_kernel

    env = kernel_env(tmp_path)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    km, kc = start_new_kernel(kernel_name="python3", env=env, cwd=str(tmp_path))
    try:
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def run(kc: Any, code: str, until: str | None = None, timeout: float = 180) -> tuple[str, Any]:
    """Execute ``code``; return its output once ``until`` appears in it (the cell runs on),
    or, without ``until``, once it has finished (with its execute reply)."""
    msg_id = kc.execute(code)
    return collect(kc, msg_id, until, timeout)


def collect(kc: Any, msg_id: str, until: str | None, timeout: float) -> tuple[str, Any]:
    text = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = kc.get_iopub_msg(timeout=1)
        except Exception:  # noqa: BLE001 - queue.Empty: nothing yet
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            text += content["text"]
            if until is not None and until in text:
                return text, None
        elif kind == "error":
            text += f"{content['ename']}: {content['evalue']}\n"
        elif kind == "status" and content["execution_state"] == "idle" and until is None:
            return text, shell_reply(kc, msg_id)
    raise AssertionError(f"timed out waiting for {until or 'the cell'}; output so far:\n{text}")


def shell_reply(kc: Any, msg_id: str) -> Any:
    while True:  # replies to earlier requests (kernel_info at start-up) come first
        reply = kc.get_shell_msg(timeout=30)
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply["content"]


def test_a_second_interrupt_does_not_cut_the_undo_short(tmp_path, kernel):
    km, kc = kernel
    files, flag = tmp_path / "files", tmp_path / "second-interrupt-sent"
    files.mkdir()
    setup = SETUP.format(storage=str(tmp_path / "storage"), files=str(files), flag=str(flag))
    out, reply = run(kc, setup)
    assert reply["status"] == "ok", out

    msg_id = kc.execute(SAVE)
    collect(kc, msg_id, "UPLOADING", 120)
    km.interrupt_kernel()
    collect(kc, msg_id, "UNDOING", 60)
    km.interrupt_kernel()  # while the undo runs
    flag.touch()
    out, reply = collect(kc, msg_id, None, 120)
    assert "KeyboardInterrupt" in out, out  # the first interrupt ends the cell, after the undo
    said = out

    out, reply = run(kc, STATE)
    assert reply["status"] == "ok", out
    state = json.loads(out.strip().splitlines()[-1])
    assert state["rows"] == {}, state  # the kernel left no reservation of its own
    assert state["consistent"], state["report"]
    assert "finishing the undo of this save first" in said

    out, reply = run(kc, AGAIN)  # the same cell again: no wait for itself
    assert reply["status"] == "ok", out
    assert json.loads(out.strip().splitlines()[-1]) == {"saved": 3, "waited": False}
