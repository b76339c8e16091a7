"""The server extension's REST API, against a real ``jupyter server`` subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.jupyter import JupyterProcess, isolated_env

KEYS = ["raw/a.txt", "raw/b.txt", "results/c.csv"]
# newest first: raw/a.txt was saved again (version 2) after the three above
NEWEST_FIRST = ["raw/a.txt", "results/c.csv", "raw/b.txt", "raw/a.txt"]


def _run(home: Path, code: str) -> None:
    """Runs in a subprocess: the test process keeps its own settings folder and instance."""
    subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        check=True,
        env=isolated_env(home / "jupyter", LAMIN_NB_HOME=str(home)),
    )


def _make_instance(home: Path, storage: Path, files: Path) -> None:
    files.mkdir()
    _run(
        home,
        f"""
        import os, lamin_nb as ln
        ln.init(storage={str(storage)!r})
        for i, key in enumerate({KEYS!r}):
            path = os.path.join({str(files)!r}, key.replace('/', '_'))
            open(path, 'w').write('content %d' % i)
            ln.Artifact(path, key=key).save()
        open(os.path.join({str(files)!r}, 'a2.txt'), 'w').write('content 0, second version')
        ln.Artifact(os.path.join({str(files)!r}, 'a2.txt'), key='raw/a.txt').save()
        """,
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("jserver")
    home, storage = tmp / "lamin-home", tmp / "storage"
    _make_instance(home, storage, tmp / "files")
    env = isolated_env(tmp / "jhome", LAMIN_NB_HOME=str(home))
    # enabled explicitly so this module tests the handlers; test_packaging checks the config
    proc = JupyterProcess(
        tmp,
        tmp / "jhome",
        env,
        # every status poll may start the background check (the default waits 300 s), and
        # each is a full one (the default: one an hour, incremental ones in between)
        extra_args=[
            "--ServerApp.jpserver_extensions=lamin_nb.jupyter.server=True",
            "--LaminNb.check_interval=0",
            "--LaminNb.full_check_interval=0",
        ],
    )
    proc.start()
    try:
        yield {"proc": proc, "home": home, "storage": storage, "root": tmp}
    finally:
        proc.stop()


def api(server: dict[str, Any], route: str) -> str:
    return f"{server['proc'].base}/lamin/api/{route}"


def auth(server: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"token {server['proc'].token}"}


def test_extension_is_loaded_by_the_server(server):
    log = server["proc"].log_text()
    assert "lamin_nb.jupyter.server | extension was successfully loaded" in log


def get(server: dict[str, Any], route: str, **params: Any) -> Any:
    r = requests.get(api(server, route), params=params, headers=auth(server), timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def post(server: dict[str, Any], route: str, body: Any = None, status: int = 200) -> Any:
    r = requests.post(api(server, route), json=body, headers=auth(server), timeout=30)
    assert r.status_code == status, r.text
    return r.json()


def test_artifacts_are_listed_newest_first_paged_and_filtered(server):
    body = get(server, "artifacts")
    assert body["total"] == 4 and [a["key"] for a in body["artifacts"]] == NEWEST_FIRST
    newest = body["artifacts"][0]
    assert newest["status"] == "committed" and newest["hash_type"] == "blake3"
    assert newest["version"] == 2 and newest["is_latest"] is True
    assert len(newest["uid"]) == 20 and newest["size"] == len("content 0, second version")
    assert newest["created_at"].endswith("Z") and newest["is_trashed"] is False

    page = get(server, "artifacts", limit=2, offset=1)
    assert [a["key"] for a in page["artifacts"]] == NEWEST_FIRST[1:3] and page["total"] == 4

    raw = get(server, "artifacts", key_prefix="raw/")
    assert [a["key"] for a in raw["artifacts"]] == ["raw/a.txt", "raw/b.txt", "raw/a.txt"]
    assert raw["total"] == 3
    # a prefix is a prefix, never a pattern
    assert get(server, "artifacts", key_prefix="raw_")["total"] == 0
    assert get(server, "artifacts", key_prefix="%")["total"] == 0

    # JupyterLab's requests carry a cache-busting ?<timestamp>: not an unknown parameter
    r = requests.get(api(server, "artifacts") + "?1796199351165", headers=auth(server))
    assert r.status_code == 200 and r.json()["total"] == 4

    # the token as a query parameter works as everywhere in Jupyter
    r = requests.get(api(server, "artifacts") + f"?token={server['proc'].token}", timeout=30)
    assert r.status_code == 200


def test_instance_is_shown_with_secrets_masked(server):
    body = get(server, "instance")
    shown = body["instance"]
    assert shown["name"] == "storage" and shown["storage"] == str(server["storage"])
    assert shown["storage_kind"] == "local" and shown["database_kind"] == "sqlite"
    assert body["default"] == "storage" and body["known"] == ["storage"]


def test_detail_has_the_version_history(server):
    newest = get(server, "artifacts", key_prefix="raw/a")["artifacts"][0]
    detail = get(server, f"artifacts/{newest['uid']}")
    assert detail["artifact"]["uid"] == newest["uid"]
    assert [v["version"] for v in detail["versions"]] == [2, 1]
    assert {v["uid"][:16] for v in detail["versions"]} == {newest["uid"][:16]}
    r = requests.get(api(server, "artifacts/ZZZZZZZZZZZZZZZZ0000"), headers=auth(server))
    assert r.status_code == 404 and "ZZZZ" in r.json()["error"]


def test_trash_and_restore(server):
    oldest = get(server, "artifacts", key_prefix="results/")["artifacts"][0]
    uid = oldest["uid"]
    trashed = post(server, f"artifacts/{uid}/trash")
    assert trashed["artifact"]["is_trashed"] is True
    assert get(server, "artifacts")["total"] == 3
    in_trash = get(server, "artifacts", trashed="true")
    assert [a["uid"] for a in in_trash["artifacts"]] == [uid] and in_trash["total"] == 1
    assert get(server, "status")["counts"]["trashed"] == 1
    # trashing twice is a clear 404, not a silent success
    again = requests.post(api(server, f"artifacts/{uid}/trash"), headers=auth(server))
    assert again.status_code == 404 and "outside the trash" in again.json()["error"]

    restored = post(server, f"artifacts/{uid}/restore")
    assert restored["artifact"]["is_trashed"] is False
    assert get(server, "artifacts")["total"] == 4


@pytest.mark.parametrize(
    "method,route",
    [
        ("GET", "instance"),
        ("GET", "status"),
        ("GET", "artifacts"),
        ("GET", "consistency"),
        ("POST", "repair"),
        ("POST", "saves"),
        ("GET", "saves"),
    ],
)
@pytest.mark.parametrize("headers", [{}, {"Authorization": "token wrong-token"}])
def test_unauthenticated_requests_get_403(server, method, route, headers):
    r = requests.request(
        method,
        api(server, route),
        headers=headers,
        timeout=30,
        json={"apply": True, "grace_seconds": 0} if route == "repair" else None,
    )
    assert r.status_code == 403


def test_post_with_login_cookie_needs_the_xsrf_token(server):
    session = requests.Session()
    # what a browser does: the token in a URL once, then the login cookie
    session.get(f"{server['proc'].base}/api/status?token={server['proc'].token}", timeout=30)
    assert requests.get(api(server, "consistency"), timeout=30).status_code == 403
    assert session.get(api(server, "consistency"), timeout=30).status_code == 200

    r = session.post(api(server, "repair"), timeout=30)
    assert r.status_code == 403 and "_xsrf" in r.json()["message"]

    session.get(f"{server['proc'].base}/login", timeout=30)  # sets the _xsrf cookie
    r = session.post(
        api(server, "repair"), headers={"X-XSRFToken": session.cookies["_xsrf"]}, timeout=30
    )
    assert r.status_code == 200 and r.json()["dry_run"] is True


@pytest.mark.parametrize(
    "method,route,params,body,message",
    [
        ("GET", "artifacts", {"limit": "ten"}, None, "limit must be an integer, not 'ten'"),
        ("GET", "artifacts", {"limit": "0"}, None, "limit must be between 1 and 1000"),
        ("GET", "artifacts", {"limit": "5000"}, None, "limit must be between 1 and 1000"),
        ("GET", "artifacts", {"offset": "-1"}, None, "offset must be between 0"),
        ("GET", "artifacts", {"prefix": "raw/"}, None, "unknown parameter(s) prefix"),
        ("GET", "consistency", {"deep": "maybe"}, None, "deep must be true or false"),
        ("POST", "repair", {}, "not json", "must be a JSON object"),
        ("POST", "repair", {}, "[1, 2]", "must be a JSON object"),
        ("POST", "repair", {}, '{"apply": "yes please"}', "apply must be true or false"),
        ("POST", "repair", {}, '{"grace_seconds": -5}', "grace_seconds must be a number >= 0"),
        ("POST", "repair", {}, '{"dry_run": false}', "unknown field(s) dry_run"),
        ("GET", "artifacts", {"instance": "../x"}, None, "instance name '../x' is not allowed"),
        ("GET", "artifacts", {"trashed": "2"}, None, "trashed must be true or false"),
        ("POST", "saves", {}, "{}", "paths must be a non-empty list"),
        ("POST", "saves", {}, '{"paths": ["../etc"]}', "outside the server root"),
        ("POST", "saves", {}, '{"paths": ["files", 3]}', "paths must be non-empty strings"),
        ("POST", "saves", {}, '{"paths": ["nope.txt"]}', "does not exist on the Jupyter host"),
        ("POST", "saves", {}, '{"paths": ["files"], "atomic": "x"}', "atomic must be true"),
        ("POST", "saves", {}, '{"paths": ["files"], "key": "x"}', "unknown field(s) key"),
    ],
)
def test_bad_parameters_get_400_with_a_reason(server, method, route, params, body, message):
    r = requests.request(
        method, api(server, route), params=params, data=body, headers=auth(server), timeout=30
    )
    assert r.status_code == 400
    assert message in r.json()["message"]


def test_consistency_and_repair_of_an_orphan(server):
    orphan = server["storage"] / ".lamindb" / "ZZZZorphanZZZZZZ0000.bin"
    orphan.write_bytes(b"written behind the database's back")
    try:
        # the status bar's poll: counts from one query, the orphan from the background check
        status = wait_for_status(server, lambda check: check["orphans"] == 1)
        assert status["counts"]["committed"] == 4 and status["check"]["is_consistent"] is False

        report = requests.get(api(server, "consistency"), headers=auth(server), timeout=30).json()
        assert report["is_consistent"] is False and report["n_ok"] == 4
        assert [o["name"] for o in report["orphans"]] == [orphan.name]

        plan = requests.post(
            api(server, "repair"), json={"grace_seconds": 0}, headers=auth(server), timeout=30
        ).json()
        assert plan["dry_run"] is True and plan["applied"] is False and plan["after"] is None
        assert [(a["kind"], a["target"]) for a in plan["actions"]] == [
            ("quarantine orphan", orphan.name)
        ]
        assert orphan.exists()  # a dry run touches nothing

        done = requests.post(
            api(server, "repair"),
            json={"apply": True, "grace_seconds": 0},
            headers=auth(server),
            timeout=30,
        ).json()
        assert done["applied"] is True and done["actions"][0]["done"] is True
        assert done["after"]["is_consistent"] is True
        assert not orphan.exists()
        assert get(server, "status")["check"]["is_consistent"] is True
    finally:
        orphan.unlink(missing_ok=True)
    report = requests.get(
        api(server, "consistency"), params={"deep": "true"}, headers=auth(server), timeout=30
    ).json()
    assert report["is_consistent"] is True and report["deep"] is True and report["n_ok"] == 4


def wait_for_status(server: dict[str, Any], until: Any, polls: int = 300) -> dict[str, Any]:
    """Poll ``GET status`` as the status bar does until its check summary satisfies ``until``."""
    for _ in range(polls):
        status = get(server, "status")
        if status["check"] is not None and until(status["check"]):
            return status
        time.sleep(0.1)
    raise AssertionError(f"status never matched: {status}")


def wait_for_save(server: dict[str, Any], job_id: str) -> dict[str, Any]:
    for _ in range(600):
        job = get(server, f"saves/{job_id}")
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"save {job_id} did not finish: {job}")


def test_saves_files_and_folders_from_the_server_root(server):
    folder = server["root"] / "upload" / "figs"
    folder.mkdir(parents=True)
    for i in range(5):
        (folder / f"fig{i}.png").write_bytes(b"png %d" % i)
    (server["root"] / "upload" / "notes.txt").write_text("notes")
    job = post(
        server,
        "saves",
        {"paths": ["upload/figs", "/upload/notes.txt"], "key_prefix": "runs/7/", "atomic": True},
        status=202,
    )
    assert job["status"] in ("queued", "running") and job["paths"] == [
        "upload/figs",
        "upload/notes.txt",
    ]
    done = wait_for_save(server, job["id"])
    assert done["status"] == "done" and done["error"] is None, done
    assert done["counts"] == {"saved": 6}
    assert sorted(item["label"] for item in done["items"]) == [
        *(f"runs/7/figs/fig{i}.png" for i in range(5)),
        "runs/7/notes.txt",
    ]
    assert all(item["bytes"] == item["size"] for item in done["items"])
    listed = get(server, "artifacts", key_prefix="runs/7/")
    assert listed["total"] == 6 and listed["artifacts"][0]["key"] == "runs/7/notes.txt"
    assert [j["id"] for j in get(server, "saves")["saves"]][0] == job["id"]
    # saved again: nothing new, every item says so
    again = wait_for_save(server, post(server, "saves", {"paths": ["upload"]}, status=202)["id"])
    assert again["status"] == "done" and again["counts"] == {"deduplicated": 6}
    # a changed file becomes the next version of its key, in the same uid family
    (server["root"] / "upload" / "notes.txt").write_text("notes, revised")
    body = {"paths": ["upload/notes.txt"], "key_prefix": "runs/7"}
    assert wait_for_save(server, post(server, "saves", body, status=202)["id"])["status"] == "done"
    notes = get(server, "artifacts", key_prefix="runs/7/notes.txt")["artifacts"]
    assert [a["version"] for a in notes] == [2, 1] and notes[0]["uid"][:16] == notes[1]["uid"][:16]


def test_saves_refuse_paths_that_leave_the_root(server, tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text("not for the server")
    (server["root"] / "link").symlink_to(outside)
    (server["root"] / ".hidden.txt").write_text("hidden")
    for path, reason in [
        ("link", "outside the server root"),
        (str(outside), "does not exist"),  # absolute paths are read relative to the root
        ("upload/../../x", "outside the server root"),
        (".hidden.txt", "is hidden"),
    ]:
        r = requests.post(
            api(server, "saves"), json={"paths": [path]}, headers=auth(server), timeout=30
        )
        assert r.status_code == 400 and reason in r.json()["error"], (path, r.text)


def test_the_default_instance_is_pinned_and_others_are_picked_explicitly(server, tmp_path):
    """``ln.init`` of another instance in a kernel sharing the settings folder changes nothing."""
    other = tmp_path / "other-storage"
    before = get(server, "artifacts")["total"]
    _run(
        server["home"],
        f"""
        import lamin_nb as ln
        ln.init(storage={str(other)!r}, name="other")
        open({str(tmp_path / "x.txt")!r}, "w").write("x")
        ln.Artifact({str(tmp_path / "x.txt")!r}, key="only/in/other.txt").save()
        """,
    )
    assert (server["home"] / "current").read_text().strip() == "other"
    try:
        body = get(server, "instance")
        assert body["instance"]["name"] == "storage" and body["known"] == ["other", "storage"]
        assert body["current_in_kernels"] == "other"
        assert get(server, "artifacts")["total"] == before
        picked = get(server, "artifacts", instance="other")
        assert picked["instance"] == "other" and picked["total"] == 1
        assert get(server, "instance", instance="other")["instance"]["storage"] == str(other)
        r = requests.get(
            api(server, "artifacts"), params={"instance": "nope"}, headers=auth(server)
        )
        assert r.status_code == 409 and "no instance named 'nope'" in r.json()["error"]
    finally:
        (server["home"] / "current").write_text("storage\n")


def test_without_an_instance_the_api_says_how_to_create_one(tmp_path):
    home = tmp_path / "empty-home"
    env = isolated_env(tmp_path / "jhome", LAMIN_NB_HOME=str(home))
    env.pop("LAMIN_NB_INSTANCE", None)
    proc = JupyterProcess(
        tmp_path,
        tmp_path / "jhome",
        env,
        extra_args=["--ServerApp.jpserver_extensions=lamin_nb.jupyter.server=True"],
    )
    proc.start()
    try:
        empty = {"proc": proc}
        body = get(empty, "instance")
        assert body["instance"] is None and body["known"] == [] and "ln.init" in body["hint"]
        r = requests.get(api(empty, "artifacts"), headers=auth(empty), timeout=30)
        assert r.status_code == 409 and "ln.init" in r.json()["error"]
        # an instance created later is picked up (and pinned) without a restart
        _run(home, f"import lamin_nb as ln; ln.init(storage={str(tmp_path / 'late')!r})")
        assert get(empty, "instance")["instance"]["name"] == "late"
        assert get(empty, "artifacts")["total"] == 0
    finally:
        proc.stop()


def test_extension_module_imports_no_jupyter_server():
    code = (
        "import sys, json, lamin_nb.jupyter.server as s\n"
        "print(json.dumps([s._jupyter_server_extension_points(),"
        " sorted(m for m in ('jupyter_server', 'tornado', 'IPython', 'ipywidgets')"
        " if m in sys.modules)]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    points, loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert points == [{"module": "lamin_nb.jupyter.server"}]
    assert loaded == []
