"""Resumable uploads in the Lamin sidebar's consistency view, clicked in JupyterLab (Chromium).

The instance is on a real S3 server (moto); each interrupted upload is a real multipart upload
whose writer, a child process, was killed (SIGKILL) once 85% of the bytes reached the server
(counted by a TCP proxy). Resume
saves the recorded source again as a server-side save job (its progress below the list): the
artifact is committed under the upload's uid and the object is byte-identical. Discard asks
first, then aborts the upload: no pending row and no multipart upload are left. A writer that
is frozen (SIGSTOP: alive, making no progress) offers neither button.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.browser.conftest import SHOTS
from tests.support.interrupted import frozen_save, killed_save, random_file
from tests.support.jupyter import NO_NEWS, JupyterProcess, isolated_env

pytestmark = pytest.mark.browser
MiB = 2**20
SIZE = 64 * MiB  # 13 parts of 5 MiB, 8 in flight at once: a kill at 85% leaves some held
VIEW = "#lamin-sidebar .lamin-transfers"


@pytest.fixture(scope="module")
def lab_s3(s3_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("labtransfers")
    root, home, jhome = work / "root", work / "lamin-home", work / "jhome"
    root.mkdir()
    bucket = s3_server.new_bucket()
    env = isolated_env(jhome, LAMIN_NB_HOME=str(home), LAMIN_NB_PART_SIZE=str(5 * MiB))
    env.pop("LAMIN_NB_INSTANCE", None)
    env.pop("LAMIN_NB_FAULT", None)
    (jhome / "config" / "labconfig" / "default_setting_overrides.json").write_text(
        json.dumps({**NO_NEWS, "@lamin-nb/jupyterlab:plugin": {"statusInterval": 2}})
    )
    code = f"import lamin_nb as ln; ln.init(storage={f's3://{bucket}/team'!r}, name='s3')"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    server = JupyterProcess(root, jhome, env, lab=True)
    server.start()
    yield {"server": server, "env": env, "root": root, "s3": s3_server, "bucket": bucket}
    server.stop()
    assert server.leftovers == [], f"processes left behind by JupyterLab: {server.leftovers}"


def interrupted(lab_s3: dict[str, Any], name: str, frozen: bool = False) -> Any:
    """A real interrupted multipart upload of ``name`` (in the server root): its writer killed
    at 70% of the bytes, or frozen (returned, for the caller to kill) after its first part."""
    path = random_file(lab_s3["root"] / name, SIZE)
    if frozen:

        def journaled() -> bool:
            return any(t["key"] == name for t in rest(lab_s3, "transfers")["transfers"])

        return frozen_save(path, name, lab_s3["env"], journaled)
    killed_save(path, name, lab_s3["env"], lab_s3["s3"].endpoint)
    return None


def rest(lab_s3: dict[str, Any], route: str) -> Any:
    server = lab_s3["server"]
    r = requests.get(
        f"{server.base}/lamin/api/{route}",
        headers={"Authorization": f"token {server.token}"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    return r.json()


def multipart_keys(lab_s3: dict[str, Any]) -> list[str]:
    listed = lab_s3["s3"].client().list_multipart_uploads(Bucket=lab_s3["bucket"])
    return [u["Key"] for u in listed.get("Uploads", [])]


def consistency_view(page: Any, lab_s3: dict[str, Any]) -> Any:
    """Open Lab, then the consistency view from the status bar (it runs a check)."""
    server = lab_s3["server"]
    page.goto(f"{server.base}/lab?token={server.token}&reset")
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell")
    page.wait_for_selector(".lamin-status")
    page.locator(".lamin-status").click()
    sidebar = page.locator("#lamin-sidebar")
    sidebar.locator(".lamin-verdict").wait_for()
    return sidebar


def row_of(page: Any, key: str) -> Any:
    row = page.locator(f"{VIEW} .lamin-transfer", has_text=key)
    row.wait_for()
    return row


def test_resume_in_the_consistency_view_commits_the_upload(page, lab_s3):
    interrupted(lab_s3, "big.bin")
    [upload] = [t for t in rest(lab_s3, "transfers")["transfers"] if t["key"] == "big.bin"]
    consistency_view(page, lab_s3)
    row = row_of(page, "big.bin")
    text = row.locator(".lamin-transfer-text").inner_text()
    assert "big.bin:" in text and "of 64.0 MiB" in text and "of 13 parts), interrupted" in text
    assert "resumable upload" in page.locator(f"{VIEW} .lamin-transfers-header").inner_text()
    page.locator(VIEW).screenshot(path=str(SHOTS / "labext-transfers.png"))
    row.get_by_role("button", name="resume the upload of big.bin").click()
    job = page.locator(f"{VIEW} .lamin-job")
    job.wait_for()
    assert "resuming big.bin → s3" in job.locator(".lamin-job-title").inner_text()
    page.locator(f"{VIEW} .lamin-transfers-message", has_text="saved big.bin").wait_for()
    assert "lamin-job-done" in (job.get_attribute("class") or "")
    assert job.locator(".lamin-item[data-state='saved']").count() == 1
    page.locator(f"{VIEW} .lamin-transfer").first.wait_for(state="detached")
    page.locator("#lamin-sidebar .lamin-verdict.lamin-ok").wait_for()
    page.locator(VIEW).screenshot(path=str(SHOTS / "labext-transfers-resumed.png"))

    [artifact] = rest(lab_s3, "artifacts?key_prefix=big.bin")["artifacts"]
    assert artifact["uid"] == upload["uid"] and artifact["status"] == "committed"
    key = f"team/.lamindb/{artifact['uid']}.bin"
    body = lab_s3["s3"].client().get_object(Bucket=lab_s3["bucket"], Key=key)["Body"].read()
    assert body == (lab_s3["root"] / "big.bin").read_bytes()
    assert multipart_keys(lab_s3) == [] and rest(lab_s3, "transfers")["transfers"] == []


def test_discard_asks_first_then_leaves_no_pending_row_and_no_multipart_upload(page, lab_s3):
    interrupted(lab_s3, "drop.bin")
    assert multipart_keys(lab_s3) != []
    consistency_view(page, lab_s3)
    row = row_of(page, "drop.bin")
    row.get_by_role("button", name="discard the upload of drop.bin").click()
    dialog = page.locator(".jp-Dialog")
    assert "Saving the file again then starts from zero" in dialog.inner_text()
    dialog.get_by_role("button", name="Cancel").click()
    assert rest(lab_s3, "transfers")["transfers"] != []  # cancelled: nothing changed

    row.get_by_role("button", name="discard the upload of drop.bin").click()
    page.locator(".jp-Dialog").get_by_role("button", name="Discard").click()
    message = page.locator(f"{VIEW} .lamin-transfers-message", has_text="discarded drop.bin")
    message.wait_for()
    assert "(freed 0 B)" not in message.inner_text()  # the parts that arrived were deleted
    page.locator(f"{VIEW} .lamin-transfer").first.wait_for(state="detached")
    assert multipart_keys(lab_s3) == [] and rest(lab_s3, "transfers")["transfers"] == []
    assert rest(lab_s3, "status")["counts"]["pending"] == 0
    assert rest(lab_s3, "artifacts?key_prefix=drop.bin")["total"] == 0


def test_an_upload_whose_writer_runs_offers_neither_button(page, lab_s3):
    child = interrupted(lab_s3, "live.bin", frozen=True)
    try:
        consistency_view(page, lab_s3)
        row = row_of(page, "live.bin")
        assert "in progress" in row.inner_text()
        assert row.locator("button").count() == 0
    finally:
        child.kill()
        child.wait()
    # its writer is gone: a new check offers Resume and Discard
    page.locator("#lamin-sidebar .lamin-check").click()
    row.get_by_role("button", name="discard the upload of live.bin").wait_for()
    row.get_by_role("button", name="discard the upload of live.bin").click()
    page.locator(".jp-Dialog").get_by_role("button", name="Discard").click()
    page.locator(f"{VIEW} .lamin-transfers-message", has_text="discarded live.bin").wait_for()
    assert multipart_keys(lab_s3) == []
