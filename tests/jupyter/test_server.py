"""The server extension's REST API, against a real ``jupyter server`` subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.jupyter import JupyterProcess, isolated_env

KEYS = ["raw/a.txt", "raw/b.txt", "results/c.csv"]


def _make_instance(home: Path, storage: Path, files: Path) -> None:
    """Runs in a subprocess: the test process keeps its own settings folder and instance."""
    files.mkdir()
    code = textwrap.dedent(f"""
        import os, lamin_nb as ln
        ln.init(storage={str(storage)!r})
        for i, key in enumerate({KEYS!r}):
            path = os.path.join({str(files)!r}, key.replace('/', '_'))
            open(path, 'w').write('content %d' % i)
            ln.Artifact(path, key=key).save()
    """)
    subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        env=isolated_env(home / "jupyter", LAMIN_NB_HOME=str(home)),
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
        extra_args=["--ServerApp.jpserver_extensions=lamin_nb.jupyter.server=True"],
    )
    proc.start()
    try:
        yield {"proc": proc, "home": home, "storage": storage}
    finally:
        proc.stop()


def api(server: dict[str, Any], route: str) -> str:
    return f"{server['proc'].base}/lamin/api/{route}"


def auth(server: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"token {server['proc'].token}"}


def test_extension_is_loaded_by_the_server(server):
    log = server["proc"].log_text()
    assert "lamin_nb.jupyter.server | extension was successfully loaded" in log


def test_artifacts_are_listed_paged_and_filtered(server):
    r = requests.get(api(server, "artifacts"), headers=auth(server), timeout=30)
    assert r.status_code == 200
    body = r.json()
    assert body["total"] == 3 and [a["key"] for a in body["artifacts"]] == KEYS
    first = body["artifacts"][0]
    assert first["status"] == "committed" and first["hash_type"] == "blake3"
    assert len(first["uid"]) == 20 and first["size"] == len("content 0")
    assert first["created_at"].endswith("Z")

    page = requests.get(
        api(server, "artifacts"), params={"limit": 2, "offset": 1}, headers=auth(server), timeout=30
    ).json()
    assert [a["key"] for a in page["artifacts"]] == KEYS[1:3] and page["total"] == 3

    raw = requests.get(
        api(server, "artifacts"), params={"key_prefix": "raw/"}, headers=auth(server), timeout=30
    ).json()
    assert [a["key"] for a in raw["artifacts"]] == KEYS[:2] and raw["total"] == 2

    # the token as a query parameter works as everywhere in Jupyter
    r = requests.get(api(server, "artifacts") + f"?token={server['proc'].token}", timeout=30)
    assert r.status_code == 200


@pytest.mark.parametrize(
    "method,route", [("GET", "artifacts"), ("GET", "consistency"), ("POST", "repair")]
)
@pytest.mark.parametrize("headers", [{}, {"Authorization": "token wrong-token"}])
def test_unauthenticated_requests_get_403(server, method, route, headers):
    r = requests.request(
        method,
        api(server, route),
        headers=headers,
        timeout=30,
        json={"apply": True, "grace_seconds": 0} if method == "POST" else None,
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
        report = requests.get(api(server, "consistency"), headers=auth(server), timeout=30).json()
        assert report["is_consistent"] is False and report["n_ok"] == 3
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
    finally:
        orphan.unlink(missing_ok=True)
    report = requests.get(
        api(server, "consistency"), params={"deep": "true"}, headers=auth(server), timeout=30
    ).json()
    assert report["is_consistent"] is True and report["deep"] is True and report["n_ok"] == 3


def test_without_an_instance_the_api_says_how_to_create_one(server):
    marker = server["home"] / "current"
    saved = marker.read_text()
    marker.unlink()
    try:
        r = requests.get(api(server, "artifacts"), headers=auth(server), timeout=30)
    finally:
        marker.write_text(saved)
    assert r.status_code == 409 and "ln.init" in r.json()["message"]
    assert (
        requests.get(api(server, "artifacts"), headers=auth(server), timeout=30).status_code == 200
    )


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
