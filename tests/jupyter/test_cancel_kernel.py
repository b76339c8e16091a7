"""Cancel in a real kernel: the interrupt the Cancel button asks the Jupyter server for, while a
real slow save runs (a large file to S3 through a throttled link), then the button's widget
message, which the kernel reads only once the cell has ended. Nothing is left: no row, no object,
no multipart upload; the panel says "cancelled: nothing saved".

The kernel is started the way jupyter_server starts it (``MultiKernelManager``: its connection
file is ``kernel-<id>.json``), and interrupted by the call the server's
``POST api/kernels/<id>/interrupt`` makes (``interrupt_kernel(<id>)``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.jupyter.test_interrupts import collect, run
from tests.support.crashes import REPO
from tests.support.notebooks import kernel_env
from tests.support.proxy import CountingProxy

SETUP = """
import json, os
import lamin_nb as ln
from IPython.display import display
from lamin_nb.widgets import SaveProgress
ln.init(storage={storage!r})
big = {files!r} + "/big.bin"
with open(big, "wb") as fh:
    fh.write(os.urandom(24 << 20))
panel = SaveProgress()
display(panel)
print(json.dumps({{"kernel_id": panel.cancel_button.kernel_id,
                  "comm_id": panel.cancel_button.model_id}}))
"""
SAVE = "ln.save([ln.Artifact(big, key='runs/big.bin')], callback=panel)"
STATE = """
print(json.dumps({"header": panel.header.value, "cancelled": panel.report.cancelled,
                  "requested": panel.cancel_button.requested, "running": panel.running,
                  "uploads": len(ln.uploads()), "artifacts": ln.Artifact.filter().count(),
                  "consistent": ln.check().is_consistent, "text": repr(panel)}))
"""


@pytest.fixture
def slow_s3(s3_server: Any) -> Iterator[tuple[Any, str, CountingProxy]]:
    target = urlparse(s3_server.endpoint)
    proxy = CountingProxy(target.hostname or "127.0.0.1", target.port or 80).start()
    proxy.rate = 2 << 20  # 2 MiB/s: the 24 MiB upload takes about 12 s
    yield s3_server, s3_server.new_bucket(), proxy
    proxy.stop()


@pytest.fixture
def server_kernel(tmp_path: Path, slow_s3: Any) -> Iterator[tuple[Any, str, Any]]:
    from jupyter_client.multikernelmanager import MultiKernelManager

    _, _, proxy = slow_s3
    aws = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    aws["AWS_ENDPOINT_URL"] = proxy.endpoint  # every S3 request goes through the slow link
    env = kernel_env(tmp_path, **aws)
    env["LAMIN_NB_HOME"] = str(tmp_path / "home")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    kernels = MultiKernelManager(connection_dir=str(tmp_path))
    kernel_id = kernels.start_kernel(kernel_name="python3", env=env, cwd=str(tmp_path))
    kc = kernels.get_kernel(kernel_id).client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        yield kernels, kernel_id, kc
    finally:
        kc.stop_channels()
        kernels.shutdown_kernel(kernel_id, now=True)


def last_json(out: str) -> Any:
    return json.loads(out.strip().splitlines()[-1])


def test_cancel_during_a_slow_save_leaves_nothing(tmp_path, slow_s3, server_kernel):
    server, bucket, proxy = slow_s3
    kernels, kernel_id, kc = server_kernel
    files = tmp_path / "files"
    files.mkdir()
    out, reply = run(kc, SETUP.format(storage=f"s3://{bucket}/team", files=str(files)))
    assert reply["status"] == "ok", out
    ids = last_json(out)
    assert ids["kernel_id"] == kernel_id  # the id the page sends the interrupt for

    proxy.reset()
    msg_id = kc.execute(SAVE)
    deadline = time.monotonic() + 120
    while proxy.upstream < 4 << 20 and time.monotonic() < deadline:  # parts are going up
        time.sleep(0.1)
    assert proxy.upstream >= 4 << 20, "the upload did not start"
    kernels.interrupt_kernel(kernel_id)  # what POST api/kernels/<id>/interrupt does
    state = {"method": "update", "state": {"requested": True}, "buffer_paths": []}
    kc.shell_channel.send(kc.session.msg("comm_msg", {"comm_id": ids["comm_id"], "data": state}))
    out, reply = collect(kc, msg_id, None, 120)
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", (out, reply)

    out, reply = run(kc, STATE)  # runs after the click's message was read
    assert reply["status"] == "ok", out
    found = last_json(out)
    assert found["requested"] and found["cancelled"] and not found["running"], found
    cancelled = "cancelled: nothing saved; discarded 1 interrupted upload(s)"
    assert cancelled in found["header"] and found["text"].startswith("saving: " + cancelled), found
    assert found["uploads"] == 0 and found["artifacts"] == 0 and found["consistent"], found
    client = server.client()
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert [k for k in server.keys(bucket, "team/.lamindb/") if "/_meta/" not in k] == []


TX_SETUP = """
%load_ext lamin_nb
small = {files!r} + "/small.csv"
with open(small, "w") as fh:
    fh.write("a,b\\n1,2\\n")
"""
TX_CELL = """%%lamin_transaction
ln.Artifact(small, key="runs/tx/small.csv").save()
ln.save([ln.Artifact(big, key="runs/tx/big.bin")])
"""
TX_STATE = """
from ipywidgets.widgets.widget import _instances
tx_panel = next(w for w in _instances.values()
                if isinstance(w, SaveProgress) and w.title == "transaction")
print(json.dumps({"header": tx_panel.header.value, "line": tx_panel.outcome_line.value,
                  "requested": tx_panel.cancel_button.requested, "running": tx_panel.running,
                  "uploads": len(ln.uploads()), "artifacts": ln.Artifact.filter().count(),
                  "consistent": ln.check().is_consistent}))
"""


def cancel_comm(kc: Any, msg_id: str, proxy: CountingProxy, kernel_id: str) -> str:
    """The comm of the Cancel button the cell's panel opened; returns once the upload runs."""
    comm_id = ""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (comm_id and proxy.upstream >= 4 << 20):
        try:
            msg = kc.get_iopub_msg(timeout=0.2)
        except Exception:  # noqa: BLE001 - queue.Empty: nothing yet
            continue
        content = msg["content"]
        state = content.get("data", {}).get("state", {})
        if msg["msg_type"] == "comm_open" and state.get("kernel_id") == kernel_id:
            comm_id = content["comm_id"]
        assert msg["parent_header"].get("msg_id") != msg_id or msg["msg_type"] != "error", msg
    assert comm_id and proxy.upstream >= 4 << 20, (comm_id, proxy.upstream)
    return comm_id


def test_cancel_rolls_back_the_whole_transaction_cell(tmp_path, slow_s3, server_kernel):
    server, bucket, proxy = slow_s3
    kernels, kernel_id, kc = server_kernel
    files = tmp_path / "files"
    files.mkdir()
    out, reply = run(kc, SETUP.format(storage=f"s3://{bucket}/team", files=str(files)))
    assert reply["status"] == "ok", out
    out, reply = run(kc, TX_SETUP.format(files=str(files)))
    assert reply["status"] == "ok", out

    proxy.reset()
    msg_id = kc.execute(TX_CELL)
    comm_id = cancel_comm(kc, msg_id, proxy, kernel_id)  # small.csv is saved, big.bin going up
    kernels.interrupt_kernel(kernel_id)  # the click: POST api/kernels/<id>/interrupt
    state = {"method": "update", "state": {"requested": True}, "buffer_paths": []}
    kc.shell_channel.send(kc.session.msg("comm_msg", {"comm_id": comm_id, "data": state}))
    out, reply = collect(kc, msg_id, None, 120)
    assert reply["status"] == "error", (out, reply)
    assert "rolled back" in out and "nothing of the cell was saved" in out, out

    out, reply = run(kc, TX_STATE)
    assert reply["status"] == "ok", out
    found = last_json(out)
    assert found["requested"] and not found["running"], found
    assert "rolled back" in found["header"], found  # the transaction's own line
    assert found["line"].startswith("cancelled: nothing saved"), found
    assert found["uploads"] == 0 and found["artifacts"] == 0 and found["consistent"], found
    client = server.client()
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert [k for k in server.keys(bucket, "team/.lamindb/") if "/_meta/" not in k] == []
