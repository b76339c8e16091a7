"""The server extension under attack, against a real ``jupyter server`` on a loopback port.

Every route (taken from the extension itself, so a new handler is covered too) with every
HTTP method refuses requests without valid credentials; a forged Host header (DNS
rebinding) and a cross-origin request riding on the login cookie are refused; ``POST
repair`` authenticated by cookie but without Jupyter's XSRF token is refused and changes
nothing; hostile parameters get 400 (never 500, never a traceback). The instance behind
the server has a planted database password and S3 secrets: no response and no line of the
server's log shows them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.faults_env import allow_connections, count, terminate_lamin_backends
from tests.support.jupyter import JupyterProcess, isolated_env
from tests.support.servers import MotoServer, create_pg_database, drop_pg_database

PG_PW = "restpw-PLANTED-c0ffee"
S3_ENV_SECRET = "restenv-PLANTED-beef01"
S3_OPT_SECRET = "restopt-PLANTED-f00d42"
SECRETS = (PG_PW, S3_ENV_SECRET, S3_OPT_SECRET)
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD")
SEEN: list[tuple[str, str]] = []  # every response body and header set, scanned at the end


def concrete(pattern: str) -> str:
    """A path the route's pattern matches: (trash|restore) -> trash, an id group -> an id."""
    path = re.sub(r"\(([a-z]+)(\|[a-z]+)+\)", r"\1", pattern)
    path = re.sub(r"\(\[0-9\][^)]*\)", "1", path)
    return re.sub(r"\(\[A-Za-z0-9\][^)]*\)", "abc123", path)


def routes() -> dict[str, Any]:
    """Every route of the extension, as a concrete path, with its handler."""
    from lamin_nb.jupyter.handlers import ROUTES

    return {concrete(pattern): handler for pattern, handler in ROUTES}


def implemented(route: str, method: str) -> bool:
    return method.lower() in vars(routes()[route])


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, s3_server: MotoServer
) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("rest-hardening")
    home = tmp / "lamin-home"
    db = create_pg_database()
    bucket = s3_server.new_bucket()
    env = isolated_env(tmp / "jhome", LAMIN_NB_HOME=str(home), AWS_SECRET_ACCESS_KEY=S3_ENV_SECRET)
    code = textwrap.dedent(f"""
        import lamin_nb as ln
        ln.init(storage="s3://{bucket}/rest", db={db.replace("postgres@", f"postgres:{PG_PW}@")!r},
                storage_options={{"key": "testing", "secret": {S3_OPT_SECRET!r}}})
        for i in range(3):
            path = {str(tmp)!r} + f"/f{{i}}.txt"
            open(path, "w").write(f"content {{i}}")
            ln.Artifact(path, key=f"raw/f{{i}}.txt").save()
    """)
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
    proc = JupyterProcess(
        tmp,
        tmp / "jhome",
        env,
        extra_args=["--ServerApp.jpserver_extensions=lamin_nb.jupyter.server=True"],
    )
    proc.start()
    try:
        yield {"proc": proc, "db": db, "bucket": bucket, "s3": s3_server}
    finally:
        proc.stop()
        drop_pg_database(db)


def url(server: dict[str, Any], route: str) -> str:
    return f"{server['proc'].base}/lamin/api/{route}"


def token(server: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"token {server['proc'].token}"}


def call(method: str, target: str, **kwargs: Any) -> requests.Response:
    kwargs.setdefault("timeout", 60)
    kwargs.setdefault("allow_redirects", False)
    response = requests.request(method, target, **kwargs)
    SEEN.append((f"{method} {target}", response.text + json.dumps(dict(response.headers))))
    count("REST requests made")
    return response


def assert_no_data(response: requests.Response) -> None:
    """A refused request gives nothing away: no artifact, no key, no instance details."""
    text = response.text
    assert "raw/f" not in text and '"uid"' not in text and "lamindb" not in text, text[:300]


# -- authentication ---------------------------------------------------------------------------


def bad_credentials(server: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    good = server["proc"].token
    import base64

    basic = base64.b64encode(f"user:{good}".encode()).decode()
    return [
        ("none", {}),
        ("wrong token", {"headers": {"Authorization": "token wrong-token"}}),
        ("token minus one char", {"headers": {"Authorization": f"token {good[:-1]}"}}),
        ("token plus one char", {"headers": {"Authorization": f"token {good}x"}}),
        ("empty token", {"headers": {"Authorization": "token "}}),
        ("basic auth", {"headers": {"Authorization": f"Basic {basic}"}}),
        ("token as a cookie", {"cookies": {"token": good}}),
        ("empty query token", {"params": {"token": ""}}),
        ("xsrf without cookie", {"params": {"_xsrf": "x"}, "headers": {"X-XSRFToken": "x"}}),
    ]


def test_every_route_and_method_refuses_bad_credentials(server: dict[str, Any]) -> None:
    assert {"artifacts", "consistency", "repair", "instance", "saves", "uploads"} <= set(routes())
    tried = 0
    for route in sorted(routes()):
        for method in METHODS:
            for label, kwargs in bad_credentials(server):
                r = call(method, url(server, route), **kwargs)
                # a method the route does not have may say so (405), and nothing else
                allowed = (403,) if implemented(route, method) else (403, 405)
                assert r.status_code in allowed, (route, method, label, r.status_code)
                assert_no_data(r)
                tried += 1
    count("REST unauthenticated attempts refused", tried)


@pytest.mark.parametrize(
    "path",
    [
        "lamin/api/artifacts/",
        "lamin/api//artifacts",
        "lamin//api/artifacts",
        "lamin/api/./artifacts",
        "lamin/api/x/../artifacts",
        "lamin/api/%61rtifacts",
        "lamin/api/artifacts%2F",
        "LAMIN/API/ARTIFACTS",
        "lamin/api/artifacts;token=x",
    ],
)
def test_path_tricks_never_bypass_authentication(server: dict[str, Any], path: str) -> None:
    r = call("GET", f"{server['proc'].base}/{path}")
    if r.status_code in (301, 302):  # e.g. a trailing slash: redirected within this server
        location = r.headers["Location"]
        assert location.startswith("/") and not location.startswith("//"), location
        r = call("GET", f"{server['proc'].base}{location}")
    assert r.status_code in (403, 404, 405), r.status_code
    assert_no_data(r)


def test_forged_host_header_is_refused(server: dict[str, Any]) -> None:
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends its own Host."""
    r = call(
        "GET",
        url(server, "artifacts"),
        headers={**token(server), "Host": f"evil.example:{server['proc'].port}"},
    )
    assert r.status_code == 403
    assert_no_data(r)


def login_session(server: dict[str, Any]) -> requests.Session:
    """What a browser holds after opening the server's URL with the token once."""
    session = requests.Session()
    session.get(f"{server['proc'].base}/api/status?token={server['proc'].token}", timeout=60)
    session.get(f"{server['proc'].base}/login", timeout=60)  # sets the _xsrf cookie
    assert "_xsrf" in session.cookies
    return session


def test_cross_origin_request_with_the_login_cookie_is_refused(server: dict[str, Any]) -> None:
    session = login_session(server)
    mine = session.get(url(server, "artifacts"), timeout=60)
    assert mine.status_code == 200
    r = session.get(url(server, "artifacts"), headers={"Origin": "http://evil.example"}, timeout=60)
    SEEN.append(("cross-origin GET", r.text))
    assert r.status_code in (403, 404)
    assert_no_data(r)
    assert r.headers.get("Access-Control-Allow-Origin") in (None, "")


# -- POST repair and XSRF ------------------------------------------------------------------------


def plant_orphan(server: dict[str, Any]) -> str:
    key = "rest/.lamindb/ZZorphanZZZZZZZZ0000.bin"
    server["s3"].client().put_object(Bucket=server["bucket"], Key=key, Body=b"orphan")
    return key


def orphan_exists(server: dict[str, Any], key: str) -> bool:
    return key in server["s3"].keys(server["bucket"], "rest/.lamindb/Z")


def test_repair_needs_xsrf_with_cookie_authentication(server: dict[str, Any]) -> None:
    orphan = plant_orphan(server)
    session = login_session(server)
    xsrf = session.cookies["_xsrf"]
    other_xsrf = login_session(server).cookies["_xsrf"]  # valid, but for another browser
    assert other_xsrf != xsrf
    apply = {"apply": True, "grace_seconds": 0}
    target = url(server, "repair")
    refused = [
        ("no xsrf", session.post(target, json=apply, timeout=60)),
        (
            "wrong xsrf header",
            session.post(target, json=apply, timeout=60, headers={"X-XSRFToken": "forged"}),
        ),
        (
            "xsrf of another session",
            session.post(target, json=apply, timeout=60, headers={"X-XSRFToken": other_xsrf}),
        ),
        (
            "query parameters only",
            session.post(target, params={"apply": "true", "grace_seconds": "0"}, timeout=60),
        ),
        (
            "form post, as a page on another site would",
            session.post(target, data={"apply": "true", "grace_seconds": "0"}, timeout=60),
        ),
        (
            "text/plain body",
            session.post(
                target, data=json.dumps(apply), timeout=60, headers={"Content-Type": "text/plain"}
            ),
        ),
    ]
    for label, r in refused:
        SEEN.append((f"repair {label}", r.text))
        assert r.status_code == 403, (label, r.status_code, r.text[:200])
        assert_no_data(r)
    # a GET (an <img src=...> on any page) never repairs: the route has no GET
    r = session.get(target, params={"apply": "true", "grace_seconds": "0"}, timeout=60)
    assert r.status_code == 405
    assert orphan_exists(server, orphan), "a refused request must change nothing"
    count("REST forged repair requests refused", len(refused) + 1)

    dry = session.post(target, json={"grace_seconds": 0}, headers={"X-XSRFToken": xsrf}, timeout=60)
    assert dry.status_code == 200 and dry.json()["dry_run"] is True
    assert orphan_exists(server, orphan)
    done = call("POST", target, json=apply, headers=token(server))  # a token is not CSRF-able
    assert done.status_code == 200 and done.json()["applied"] is True
    assert not orphan_exists(server, orphan)
    assert done.json()["after"]["is_consistent"] is True


# -- parameters ----------------------------------------------------------------------------------

HOSTILE = st.one_of(
    st.sampled_from(
        [
            "",
            "0",
            "-1",
            "1e309",
            "nan",
            "inf",
            "-inf",
            "9" * 40,
            "0x10",
            " 5",
            "5 ",
            "1_000",
            "true",
            "TRUE",
            "yes",
            "\x00",
            "a\x00b",
            "../..",
            "%",
            "_",
            "'; DROP TABLE lamin_artifact; --",
            "\u202e",
            "é" * 3000,
            "x" * 10_000,
        ]
    ),
    st.text(max_size=30),
)


@settings(
    max_examples=int(os.environ.get("LAMIN_NB_FUZZ_EXAMPLES", "100")),
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    route=st.sampled_from(["artifacts", "consistency", "repair"]),
    params=st.dictionaries(
        st.sampled_from(
            [
                "limit",
                "offset",
                "key_prefix",
                "deep",
                "grace_seconds",
                "mark_lost",
                "apply",
                "other",
            ]
        ),
        HOSTILE,
        max_size=3,
    ),
    body=st.one_of(
        st.none(),
        HOSTILE,
        st.recursive(
            st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=10),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(
                    st.sampled_from(["apply", "grace_seconds", "mark_lost", "x"]), inner, max_size=3
                )
            ),
            max_leaves=6,
        ).map(json.dumps),
    ),
)
def test_hostile_parameters_get_400_never_500(
    server: dict[str, Any], route: str, params: dict[str, str], body: str | None
) -> None:
    method = "POST" if route == "repair" else "GET"
    if method == "POST" and body is not None and '"apply": true' in body:
        body = body.replace('"apply": true', '"apply": false')  # fuzz the parser, not repair
    params.pop("apply", None) if method == "POST" else None
    r = call(
        method,
        url(server, route),
        params=params,
        headers=token(server),
        data=body if method == "POST" else None,
    )
    count("REST fuzz cases")
    assert r.status_code in (200, 400), (route, params, body, r.status_code, r.text[:300])
    payload = r.json()
    if r.status_code == 400:
        message = payload["message"]
        assert message and "Traceback" not in message and len(message) < 2000, message[:300]
    elif route == "repair":
        assert payload["applied"] is False


# -- outages and secrets -------------------------------------------------------------------------


def test_database_outage_gives_a_masked_json_error(server: dict[str, Any]) -> None:
    allow_connections(server["db"], False)
    try:
        terminate_lamin_backends(server["db"])
        r = call("GET", url(server, "artifacts"), headers=token(server))
        assert r.status_code >= 500
        assert "accepting connections" in r.json()["message"], r.text[:300]
        assert "Traceback" not in r.text
    finally:
        allow_connections(server["db"], True)
    assert call("GET", url(server, "artifacts"), headers=token(server)).status_code == 200


def test_no_response_and_no_log_line_shows_a_secret(server: dict[str, Any]) -> None:
    for route in ["instance", "status", "artifacts", "consistency", "repair"]:
        method = "POST" if route == "repair" else "GET"
        assert call(method, url(server, route), headers=token(server)).status_code == 200
    log = server["proc"].log_text()
    texts = SEEN + [("server log", log)]
    leaks = [(label, s) for label, text in texts for s in SECRETS if s in text]
    assert not leaks, leaks[:5]
    count("secret scan: outputs checked", len(texts))
    assert len(SEEN) > 100
