"""``GET transfers`` and ``POST transfers/{uid}/resume|discard``: ``ln.uploads()`` over REST.

A real ``jupyter server`` on an instance in a real S3 server (moto); each interrupted upload
is a real multipart upload whose writer, a child process, was killed (SIGKILL) once 85% of the
bytes reached the server (counted by a TCP proxy), or frozen (SIGSTOP: a live writer that
makes no progress).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.interrupted import frozen_save, killed_save, random_file
from tests.support.jupyter import JupyterProcess, isolated_env
from tests.support.proxy import CountingProxy
from tests.support.servers import s3_env

MiB = 1024 * 1024
SIZE = 64 * MiB  # 13 parts of 5 MiB, 8 in flight at once: a kill at 85% leaves some held


@pytest.fixture(scope="module")
def lab(s3_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("jtransfers")
    home, root = tmp / "lamin-home", tmp / "root"
    root.mkdir()
    bucket = s3_server.new_bucket()
    env = isolated_env(tmp / "jhome", LAMIN_NB_HOME=str(home), LAMIN_NB_PART_SIZE=str(5 * MiB))
    env.pop("LAMIN_NB_FAULT", None)
    env.pop("LAMIN_NB_INSTANCE", None)
    code = f"import lamin_nb as ln; ln.init(storage={f's3://{bucket}/team'!r})"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    # the server reaches S3 through a counting proxy: what a Resume sends is measured there
    host, port = s3_server.endpoint.removeprefix("http://").split(":")
    proxy = CountingProxy(host, int(port)).start()
    proc = JupyterProcess(
        root,
        tmp / "jhome",
        {**env, **s3_env(proxy.endpoint)},
        extra_args=["--ServerApp.jpserver_extensions=lamin_nb.jupyter.server=True"],
    )
    proc.start()
    try:
        yield {
            "proc": proc,
            "env": env,
            "root": root,
            "tmp": tmp,
            "s3": s3_server,
            "bucket": bucket,
            "proxy": proxy,
        }
    finally:
        proc.stop()
        proxy.stop()


def api(lab: dict[str, Any], route: str) -> str:
    return f"{lab['proc'].base}/lamin/api/{route}"


def auth(lab: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"token {lab['proc'].token}"}


def call(lab: dict[str, Any], method: str, route: str, status: int = 200, **kw: Any) -> Any:
    r = requests.request(method, api(lab, route), headers=auth(lab), timeout=60, **kw)
    assert r.status_code == status, r.text
    return r.json()


def interrupted(lab: dict[str, Any], path: Path, key: str, frozen: bool = False) -> Any:
    """A real interrupted multipart upload of ``path`` under ``key``: its writer killed at 85%
    of the bytes, or frozen (returned, for the caller to kill) after its first part."""
    random_file(path, SIZE)
    if frozen:

        def journaled() -> bool:
            return any(t["key"] == key for t in call(lab, "GET", "transfers")["transfers"])

        return frozen_save(path, key, lab["env"], journaled)
    killed_save(path, key, lab["env"], lab["s3"].endpoint)
    return None


def transfer(lab: dict[str, Any], key: str) -> dict[str, Any]:
    [found] = [t for t in call(lab, "GET", "transfers")["transfers"] if t["key"] == key]
    return found


def uploads_on_server(lab: dict[str, Any]) -> list[dict[str, Any]]:
    """The multipart uploads the S3 server still holds."""
    listed = lab["s3"].client().list_multipart_uploads(Bucket=lab["bucket"])
    return list(listed.get("Uploads", []))


def on_server(lab: dict[str, Any]) -> list[str]:
    return [u["Key"] for u in uploads_on_server(lab)]


def held_bytes(lab: dict[str, Any], uid: str, upload_id: str) -> int:
    """The bytes the server holds for an upload, once the parts whose bodies had arrived
    before the kill are stored."""
    client, key = lab["s3"].client(), f"team/.lamindb/{uid}.bin"

    def listed() -> int:
        parts = client.list_parts(Bucket=lab["bucket"], Key=key, UploadId=upload_id)
        return sum(int(p["Size"]) for p in parts.get("Parts", []))

    held, before = listed(), -1
    while held != before:
        time.sleep(0.5)
        held, before = listed(), held
    return held


def wait_for_job(lab: dict[str, Any], job_id: str) -> dict[str, Any]:
    for _ in range(1200):
        job = call(lab, "GET", f"saves/{job_id}")
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"save {job_id} did not finish: {job}")


def test_an_interrupted_upload_is_listed_and_resumed_as_a_save_job(lab):
    path = lab["root"] / "big.bin"
    interrupted(lab, path, "runs/big.bin")
    shown = transfer(lab, "runs/big.bin")
    assert shown["size"] == SIZE and shown["parts_total"] == 13
    assert 0 <= shown["parts_done"] < 13 and shown["bytes_done"] < SIZE
    assert shown["alive"] is False and shown["owner"] and shown["started_at"].endswith("Z")
    assert shown["can_resume"] is True and shown["can_discard"] is True
    assert shown["source"] == str(path)
    [upload_id] = [u["UploadId"] for u in uploads_on_server(lab)]
    held = held_bytes(lab, shown["uid"], upload_id)
    assert held > 0  # the parts that arrived before the kill

    lab["proxy"].reset()
    job = call(lab, "POST", f"transfers/{shown['uid']}/resume", status=202)
    assert job["resume_of"] == shown["uid"] and job["paths"] == ["runs/big.bin"]
    done = wait_for_job(lab, job["id"])
    assert done["status"] == "done", done
    [item] = done["items"]
    assert item["state"] == "saved" and item["label"].endswith("big.bin"), item
    # only the missing parts went to S3 (counted by the proxy, not by lamin_nb)
    missing = SIZE - held
    assert missing <= lab["proxy"].upstream <= missing + 13 * 16 * 1024 + 256 * 1024
    # the interrupted reservation was taken over: the artifact is the upload's uid
    [artifact] = call(lab, "GET", "artifacts", params={"key_prefix": "runs/"})["artifacts"]
    assert artifact["uid"] == shown["uid"] and artifact["size"] == SIZE
    body = (
        lab["s3"]
        .client()
        .get_object(Bucket=lab["bucket"], Key=f"team/.lamindb/{artifact['uid']}.bin")
    )
    assert body["Body"].read() == path.read_bytes()
    assert on_server(lab) == [] and call(lab, "GET", "transfers")["transfers"] == []
    report = call(lab, "GET", "consistency", params={"deep": "true"})
    assert report["is_consistent"] is True and report["pending"] == []


def test_discard_aborts_the_upload_and_removes_its_pending_row(lab):
    interrupted(lab, lab["root"] / "drop.bin", "drop.bin")
    uid = transfer(lab, "drop.bin")["uid"]
    done = call(lab, "POST", f"transfers/{uid}/discard")
    assert done["uid"] == uid and done["key"] == "drop.bin" and done["freed_bytes"] > 0
    assert on_server(lab) == [] and call(lab, "GET", "transfers")["transfers"] == []
    assert call(lab, "GET", "status")["counts"]["pending"] == 0
    report = call(lab, "GET", "consistency")
    assert report["is_consistent"] is True and report["pending"] == []
    # twice: the upload is gone, and the answer names it
    again = call(lab, "POST", f"transfers/{uid}/discard", status=404)
    assert uid in again["error"] and "ln.uploads()" in again["error"]


def test_an_upload_whose_writer_runs_is_neither_discarded_nor_resumed(lab):
    child = interrupted(lab, lab["root"] / "live.bin", "live.bin", frozen=True)
    try:
        shown = transfer(lab, "live.bin")
        assert shown["alive"] is True
        assert shown["can_resume"] is False and shown["can_discard"] is False
        refused = call(lab, "POST", f"transfers/{shown['uid']}/discard", status=409)
        message = refused["error"]
        assert "the upload of live.bin cannot be discarded now" in message
        assert f"process {child.pid}" in message and "still sending it" in message
        refused = call(lab, "POST", f"transfers/{shown['uid']}/resume", status=409)
        assert "the upload of live.bin cannot be resumed now" in refused["error"]
        jobs = call(lab, "GET", "saves")["saves"]
        assert all(job["resume_of"] != shown["uid"] for job in jobs)  # none was queued
    finally:
        child.kill()
        child.wait()
    # its writer is gone: now it can be discarded
    assert transfer(lab, "live.bin")["can_discard"] is True
    call(lab, "POST", f"transfers/{shown['uid']}/discard")
    assert on_server(lab) == []


def test_a_source_outside_the_root_or_gone_is_refused_with_what_to_run(lab):
    outside = lab["tmp"] / "outside.bin"
    interrupted(lab, outside, "outside.bin")
    uid = transfer(lab, "outside.bin")["uid"]
    refused = call(lab, "POST", f"transfers/{uid}/resume", status=409)
    message = refused["error"]
    assert "the upload of outside.bin is not resumed by the Jupyter server" in message
    assert "is outside the server root" in message
    assert f"ln.Artifact({str(outside)!r}, key='outside.bin').save()" in message
    outside.unlink()
    refused = call(lab, "POST", f"transfers/{uid}/resume", status=409)
    assert f"the source of the upload of outside.bin, {outside}, is gone" in refused["error"]
    call(lab, "POST", f"transfers/{uid}/discard")
    assert on_server(lab) == [] and call(lab, "GET", "transfers")["transfers"] == []


@pytest.mark.parametrize(
    "method,route,body,status,message",
    [
        ("POST", "transfers/ZZZZZZZZZZZZZZZZ0000/resume", None, 404, "'ZZZZZZZZZZZZZZZZ0000'"),
        ("POST", "transfers/ZZZZZZZZZZZZZZZZ0000/discard", None, 404, "no unfinished upload"),
        ("POST", "transfers/ZZZZZZZZZZZZZZZZ0000/discard", '{"force": 1}', 400, "force"),
        ("GET", "transfers?deep=true", None, 400, "unknown parameter(s) deep"),
        ("GET", "transfers?instance=nope", None, 409, "no instance named 'nope'"),
    ],
)
def test_bad_requests_get_a_reason(lab, method, route, body, status, message):
    r = requests.request(method, api(lab, route), data=body, headers=auth(lab), timeout=30)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]


@pytest.mark.parametrize(
    "method,route",
    [
        ("GET", "transfers"),
        ("POST", "transfers/ZZZZZZZZZZZZZZZZ0000/resume"),
        ("POST", "transfers/ZZZZZZZZZZZZZZZZ0000/discard"),
    ],
)
def test_without_the_token_or_the_xsrf_token_it_is_403(lab, method, route):
    assert requests.request(method, api(lab, route), timeout=30).status_code == 403
    session = requests.Session()  # a browser: the login cookie, but no XSRF header
    session.get(f"{lab['proc'].base}/api/status?token={lab['proc'].token}", timeout=30)
    r = session.request(method, api(lab, route), timeout=30)
    assert r.status_code == (200 if method == "GET" else 403), r.text
