"""Chunked browser uploads over REST, against a real ``jupyter server`` subprocess.

Every bad input is answered 4xx with a reason, and leaves nothing saved and nothing
half-written: the staged file keeps exactly the bytes it had.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.jupyter import REPO, JupyterProcess, isolated_env

MiB = 2**20


def _run(home: Path, code: str) -> str:
    """Runs in a subprocess with the server's settings folder (the test keeps its own)."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        check=True,
        capture_output=True,
        text=True,
        env=isolated_env(home / "jupyter", LAMIN_NB_HOME=str(home)),
    )
    return done.stdout


def _server(tmp: Path, home: Path, *extra: str) -> JupyterProcess:
    env = isolated_env(tmp / "jhome", LAMIN_NB_HOME=str(home), PYTHONPATH=str(REPO))
    args = ["--ServerApp.jpserver_extensions=lamin_nb.jupyter.server=True", *extra]
    proc = JupyterProcess(tmp, tmp / "jhome", env, extra_args=args)
    proc.start()
    return proc


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("uploads")
    home, storage = tmp / "lamin-home", tmp / "storage"
    _run(home, f"import lamin_nb as ln; ln.init(storage={str(storage)!r})")
    proc = _server(tmp, home)
    try:
        yield {"proc": proc, "home": home, "storage": storage, "tmp": tmp}
    finally:
        proc.stop()


def url(server: dict[str, Any], route: str) -> str:
    return f"{server['proc'].base}/lamin/api/{route}"


def auth(server: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"token {server['proc'].token}"}


def start(server: dict[str, Any], status: int = 201, **fields: Any) -> dict[str, Any]:
    r = requests.post(url(server, "uploads"), json=fields, headers=auth(server), timeout=30)
    assert r.status_code == status, r.text
    return r.json()


def put(server: dict[str, Any], upload_id: str, offset: Any, data: bytes) -> requests.Response:
    return requests.put(
        url(server, f"uploads/{upload_id}"),
        params={"offset": offset},
        data=data,
        headers=auth(server),
        timeout=60,
    )


def commit(server: dict[str, Any], upload_id: str, **body: Any) -> requests.Response:
    return requests.post(
        url(server, f"uploads/{upload_id}/commit"), json=body, headers=auth(server), timeout=120
    )


def status(server: dict[str, Any], upload_id: str) -> requests.Response:
    return requests.get(url(server, f"uploads/{upload_id}"), headers=auth(server), timeout=30)


def staged_file(server: dict[str, Any], upload: dict[str, Any]) -> Path:
    return server["home"] / "uploads" / upload["id"] / "file" / upload["name"]


def saved_total(server: dict[str, Any]) -> int:
    r = requests.get(url(server, "artifacts"), headers=auth(server), timeout=30)
    return int(r.json()["total"])


def stored_bytes(server: dict[str, Any], artifact: dict[str, Any]) -> bytes:
    return (server["storage"] / ".lamindb" / f"{artifact['uid']}{artifact['suffix']}").read_bytes()


def send_all(server: dict[str, Any], upload: dict[str, Any], data: bytes) -> None:
    chunk = 3 * MiB  # not the server's chunk size: any size works, in order
    for offset in range(0, len(data), chunk):
        r = put(server, upload["id"], offset, data[offset : offset + chunk])
        assert r.status_code == 200, r.text
        assert r.json()["received"] == min(offset + chunk, len(data))


# -- the protocol ----------------------------------------------------------------------------


def test_chunks_are_staged_then_saved_through_the_save_protocol(server):
    data = os.urandom(10 * MiB + 123)
    upload = start(server, name="cells.h5ad", size=len(data), key="raw/cells.h5ad")
    assert upload["received"] == 0 and upload["chunk_size"] > 0 and upload["state"] == "receiving"
    before = saved_total(server)

    send_all(server, upload, data[: 4 * MiB])
    assert status(server, upload["id"]).json()["received"] == 4 * MiB
    assert saved_total(server) == before  # nothing is visible before the commit
    send_all_from(server, upload, data, 4 * MiB)
    shown = status(server, upload["id"]).json()
    assert shown["received"] == len(data) and shown["state"] == "complete"

    r = commit(server, upload["id"], instance=None)
    assert r.status_code == 201, r.text
    artifact = r.json()["artifact"]
    assert artifact["key"] == "raw/cells.h5ad" and artifact["size"] == len(data)
    assert artifact["suffix"] == ".h5ad" and artifact["status"] == "committed"
    assert stored_bytes(server, artifact) == data
    assert saved_total(server) == before + 1
    assert not staged_file(server, upload).exists()  # the staged bytes are gone

    # a page that lost the answer asks again: the same artifact, nothing saved twice
    again = commit(server, upload["id"])
    assert again.status_code == 200 and again.json()["artifact"]["uid"] == artifact["uid"]
    assert status(server, upload["id"]).json()["state"] == "committed"
    assert saved_total(server) == before + 1


def send_all_from(server: dict[str, Any], upload: dict[str, Any], data: bytes, at: int) -> None:
    r = put(server, upload["id"], at, data[at:])
    assert r.status_code == 200, r.text


def test_same_content_is_deduplicated_like_any_save(server):
    data = b"the same bytes twice\n" * 1000
    first = start(server, name="a.txt", size=len(data), key="dedup/a.txt")
    send_all(server, first, data)
    saved = commit(server, first["id"]).json()
    second = start(server, name="b.txt", size=len(data), key="dedup/a.txt")
    send_all(server, second, data)
    r = commit(server, second["id"])
    assert r.status_code == 201 and r.json()["deduplicated"] is True
    assert r.json()["artifact"]["uid"] == saved["artifact"]["uid"]


def test_an_empty_file_is_saved(server):
    upload = start(server, name="empty.csv", size=0)
    r = commit(server, upload["id"])
    assert r.status_code == 201, r.text
    assert r.json()["artifact"]["size"] == 0 and r.json()["artifact"]["key"] == "empty.csv"


def test_cancel_removes_the_staged_bytes(server):
    upload = start(server, name="big.bin", size=2 * MiB)
    assert put(server, upload["id"], 0, os.urandom(MiB)).status_code == 200
    assert staged_file(server, upload).stat().st_size == MiB
    r = requests.delete(url(server, f"uploads/{upload['id']}"), headers=auth(server), timeout=30)
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    assert not (server["home"] / "uploads" / upload["id"]).exists()
    assert status(server, upload["id"]).status_code == 404
    gone = put(server, upload["id"], MiB, b"x")
    assert gone.status_code == 404 and "no upload" in gone.json()["error"]
    assert commit(server, upload["id"]).status_code == 404


def test_a_reloaded_page_lists_its_unfinished_uploads(server):
    upload = start(server, name="unfinished.bin", size=100)
    put(server, upload["id"], 0, b"x" * 40)
    # as JupyterLab's ServerConnection asks: with a cache-busting ``?<timestamp>``
    r = requests.get(url(server, "uploads") + "?1764662400000", headers=auth(server), timeout=30)
    assert r.status_code == 200, r.text
    listed = {u["id"]: u for u in r.json()["uploads"]}
    assert (
        listed[upload["id"]]["received"] == 40 and listed[upload["id"]]["name"] == "unfinished.bin"
    )


def test_a_dropped_connection_keeps_a_correct_prefix_and_resumes(server):
    data = os.urandom(8 * MiB)
    upload = start(server, name="dropped.bin", size=len(data))
    proc = server["proc"]
    with socket.create_connection(("127.0.0.1", proc.port), timeout=30) as sock:
        head = (
            f"PUT /lamin/api/uploads/{upload['id']}?offset=0 HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{proc.port}\r\nAuthorization: token {proc.token}\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        )
        sock.sendall(head.encode() + data[: 5 * MiB])
    received = wait_until_idle(server, upload)
    assert 0 <= received <= 5 * MiB
    assert staged_file(server, upload).read_bytes() == data[:received]
    send_all_from(server, upload, data, received)
    r = commit(server, upload["id"])
    assert r.status_code == 201 and stored_bytes(server, r.json()["artifact"]) == data


def wait_until_idle(server: dict[str, Any], upload: dict[str, Any]) -> int:
    """The server notices the closed connection on its own; until then the chunk holds the lock."""
    for _ in range(600):
        r = put(server, upload["id"], 0, b"")
        if r.status_code == 409 and "received" in r.json():
            return int(r.json()["received"])
        if r.status_code == 200:
            return 0
        assert r.status_code == 409 and "being written" in r.json()["error"], r.text
        import time

        time.sleep(0.05)
    raise AssertionError("the dropped chunk never released its upload")


def test_uploads_survive_a_server_restart(tmp_path):
    home, storage = tmp_path / "lamin-home", tmp_path / "storage"
    _run(home, f"import lamin_nb as ln; ln.init(storage={str(storage)!r})")
    data = os.urandom(3 * MiB)
    first = _server(tmp_path, home)
    try:
        srv = {"proc": first, "home": home, "storage": storage}
        upload = start(srv, name="restart.bin", size=len(data))
        assert put(srv, upload["id"], 0, data[: 2 * MiB]).status_code == 200
    finally:
        first.stop()
    second = _server(tmp_path, home)
    try:
        srv = {"proc": second, "home": home, "storage": storage}
        assert status(srv, upload["id"]).json()["received"] == 2 * MiB
        assert put(srv, upload["id"], 2 * MiB, data[2 * MiB :]).status_code == 200
        r = commit(srv, upload["id"])
        assert r.status_code == 201 and stored_bytes(srv, r.json()["artifact"]) == data
    finally:
        second.stop()


# -- bad input: 4xx with a reason, nothing written -----------------------------------------


@pytest.mark.parametrize(
    "name,message",
    [
        ("../etc/passwd", "must be a file name, not a path"),
        ("a/b.txt", "must be a file name, not a path"),
        ("..\\..\\x.txt", "must be a file name, not a path"),
        ("/abs.txt", "must be a file name, not a path"),
        ("..", "'.' or '..'"),
        (".", "'.' or '..'"),
        ("", "must not be empty"),
        ("nul\x00.txt", "NUL, control or invisible"),
        ("x" * 300, "longer than"),
        (" padded.txt", "whitespace"),
        (42, "must be a file name (a string)"),
    ],
)
def test_names_with_path_tricks_are_refused(server, name, message):
    before = set((server["home"] / "uploads").iterdir())
    body = start(server, status=400, name=name, size=10)
    assert message in body["error"]
    assert set((server["home"] / "uploads").iterdir()) == before


@pytest.mark.parametrize(
    "size,code,message",
    [
        (-1, 400, "size must be >= 0"),
        ("12", 400, "size must be a whole number"),
        (True, 400, "size must be a whole number"),
        (1.5, 400, "size must be a whole number"),
        (None, 400, "size must be a whole number"),
        (2**60, 413, "larger than the largest upload allowed"),
    ],
)
def test_bad_sizes_are_refused(server, size, code, message):
    body = start(server, status=code, name="a.bin", size=size)
    assert message in body["error"]


def test_a_size_beyond_the_free_disk_space_is_refused_up_front(server):
    free = shutil.disk_usage(server["home"]).free
    body = start(server, status=413, name="huge.bin", size=free)
    assert "not enough free disk space on the Jupyter host" in body["error"]
    assert "ln.repair()" in body["error"]


@pytest.mark.parametrize(
    "fields,message",
    [
        ({"key": "../out.txt"}, "'.' or '..'"),
        ({"key": "/abs"}, "relative path"),
        ({"description": 5}, "description must be"),
        ({"instance": "../x"}, "instance name '../x' is not allowed"),
        ({"instance": "nope"}, "no instance named 'nope'"),
        ({"path": "/tmp/x"}, "unknown field(s) path"),
    ],
)
def test_bad_fields_are_refused(server, fields, message):
    body = start(
        server, status=409 if "nope" in str(fields) else 400, name="a.bin", size=1, **fields
    )
    assert message in body["error"]


def test_a_chunk_at_the_wrong_offset_is_409_with_the_servers_received(server):
    data = os.urandom(1000)
    upload = start(server, name="offsets.bin", size=len(data))
    assert put(server, upload["id"], 0, data[:300]).status_code == 200
    for offset in (0, 200, 301, 900):
        r = put(server, upload["id"], offset, data[offset : offset + 100])
        assert r.status_code == 409, r.text
        assert r.json()["received"] == 300 and "offset 300" in r.json()["error"]
    assert staged_file(server, upload).read_bytes() == data[:300]
    for bad in ("-1", "ten", ""):
        r = put(server, upload["id"], bad, b"x")
        assert r.status_code == 400 and "offset" in r.json()["error"]


def test_chunks_at_later_multiples_of_the_chunk_size_may_arrive_first(server):
    """Several chunks in flight: each is written at its offset; ``received`` stays the prefix
    without a gap (what a reloaded page resumes from); a chunk cut off beyond it counts for
    nothing; the file is saved byte-exact."""
    probe = start(server, name="probe.bin", size=1)
    chunk = probe["chunk_size"]
    requests.delete(url(server, f"uploads/{probe['id']}"), headers=auth(server), timeout=30)
    data = os.urandom(2 * chunk + 1000)
    upload = start(server, name="parallel.bin", size=len(data))
    third = put(server, upload["id"], 2 * chunk, data[2 * chunk :])
    assert third.status_code == 200 and third.json()["received"] == 0, third.text
    assert status(server, upload["id"]).json()["received"] == 0
    # only later multiples of the chunk size, and never inside what arrived
    for offset in (chunk + 1, 2 * chunk - 4096, len(data) - 10):
        r = put(server, upload["id"], offset, b"x")
        assert r.status_code == 409 and r.json()["received"] == 0, r.text
    # a chunk at the second multiple dropped mid-way: not recorded, sent again
    proc = server["proc"]
    with socket.create_connection(("127.0.0.1", proc.port), timeout=30) as sock:
        head = (
            f"PUT /lamin/api/uploads/{upload['id']}?offset={chunk} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{proc.port}\r\nAuthorization: token {proc.token}\r\n"
            f"Content-Length: {chunk}\r\n\r\n"
        )
        sock.sendall(head.encode() + data[chunk : chunk + MiB])
    first = put(server, upload["id"], 0, data[:chunk])
    assert first.status_code == 200 and first.json()["received"] == chunk, first.text
    for _ in range(600):  # the dropped chunk still holds its range until the server notices
        second = put(server, upload["id"], chunk, data[chunk : 2 * chunk])
        if second.status_code != 409:
            break
        assert second.json().get("retry"), second.text
        import time

        time.sleep(0.05)
    assert second.status_code == 200 and second.json()["received"] == len(data), second.text
    r = commit(server, upload["id"])
    assert r.status_code == 201 and stored_bytes(server, r.json()["artifact"]) == data


def test_a_chunk_past_the_announced_size_is_refused_whole(server):
    upload = start(server, name="small.bin", size=100)
    assert put(server, upload["id"], 0, b"a" * 60).status_code == 200
    r = put(server, upload["id"], 60, b"b" * 41)
    assert r.status_code == 400 and "past the announced size of 100 bytes" in r.json()["error"]
    assert staged_file(server, upload).read_bytes() == b"a" * 60  # nothing of it written
    big = put(server, upload["id"], 60, os.urandom(200 * MiB))  # refused before it is read
    assert big.status_code == 400
    assert staged_file(server, upload).read_bytes() == b"a" * 60


def test_a_chunk_without_length_is_refused(server):
    upload = start(server, name="nolength.bin", size=10)
    r = requests.put(
        url(server, f"uploads/{upload['id']}"),
        params={"offset": 0},
        data=iter([b"12345"]),  # a generator: sent chunked, without Content-Length
        headers=auth(server),
        timeout=30,
    )
    assert r.status_code == 411 and "Content-Length" in r.json()["error"]
    assert staged_file(server, upload).read_bytes() == b""


def test_commit_before_every_byte_arrived_saves_nothing(server):
    upload = start(server, name="partial.bin", size=1000)
    put(server, upload["id"], 0, b"x" * 999)
    before = saved_total(server)
    r = commit(server, upload["id"])
    assert r.status_code == 409
    assert "has 999 of 1000 bytes" in r.json()["error"] and "offset 999" in r.json()["error"]
    assert saved_total(server) == before
    assert list((server["storage"] / ".lamindb").glob("*.tmp")) == []
    assert staged_file(server, upload).read_bytes() == b"x" * 999  # kept for the last byte
    put(server, upload["id"], 999, b"y")
    assert commit(server, upload["id"]).status_code == 201


@pytest.mark.parametrize("upload_id", ["A" * 24, "short", "../../etc", "x" * 64])
def test_unknown_upload_ids_are_404(server, upload_id):
    for r in (
        status(server, upload_id),
        put(server, upload_id, 0, b"x"),
        commit(server, upload_id),
        requests.delete(url(server, f"uploads/{upload_id}"), headers=auth(server), timeout=30),
    ):
        assert r.status_code == 404, r.text


# -- auth ------------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"Authorization": "token wrong-token"}])
def test_every_route_needs_the_token(server, headers):
    upload = start(server, name="auth.bin", size=10)
    base = f"uploads/{upload['id']}"
    calls = [
        ("GET", "uploads", None),
        ("POST", "uploads", b'{"name": "x.bin", "size": 1}'),
        ("GET", base, None),
        ("PUT", base + "?offset=0", b"0123456789"),
        ("POST", base + "/commit", None),
        ("DELETE", base, None),
    ]
    for method, route, data in calls:
        r = requests.request(method, url(server, route), data=data, headers=headers, timeout=30)
        assert r.status_code == 403, (method, route, r.status_code)
    assert staged_file(server, upload).read_bytes() == b""


def test_cookie_writes_need_the_xsrf_token(server):
    proc = server["proc"]
    session = requests.Session()
    session.get(f"{proc.base}/api/status?token={proc.token}", timeout=30)  # the login cookie
    session.get(f"{proc.base}/login", timeout=30)  # sets the _xsrf cookie
    xsrf = {"X-XSRFToken": session.cookies["_xsrf"]}

    r = session.post(url(server, "uploads"), json={"name": "c.bin", "size": 4}, timeout=30)
    assert r.status_code == 403 and "_xsrf" in r.json()["message"]
    r = session.post(
        url(server, "uploads"), json={"name": "c.bin", "size": 4}, headers=xsrf, timeout=30
    )
    assert r.status_code == 201
    upload = r.json()
    chunk = url(server, f"uploads/{upload['id']}?offset=0")
    # refused before its body is read, so the server closes that connection: not reused
    r = session.put(chunk, data=b"abcd", headers={"Connection": "close"}, timeout=30)
    assert r.status_code == 403
    assert staged_file(server, upload).read_bytes() == b""
    assert session.put(chunk, data=b"abcd", headers=xsrf, timeout=30).status_code == 200
    commit_url = url(server, f"uploads/{upload['id']}/commit")
    assert session.post(commit_url, headers={"Connection": "close"}, timeout=30).status_code == 403
    assert session.post(commit_url, headers=xsrf, timeout=30).status_code == 201
    assert session.get(url(server, f"uploads/{upload['id']}"), timeout=30).status_code == 200


def test_another_users_upload_id_is_refused(tmp_path):
    home, storage = tmp_path / "lamin-home", tmp_path / "storage"
    _run(home, f"import lamin_nb as ln; ln.init(storage={str(storage)!r})")
    proc = _server(
        tmp_path, home, "--ServerApp.identity_provider_class=tests.support.users.TwoUsers"
    )
    try:
        srv = {"proc": proc, "home": home, "storage": storage}
        alice, bob = {"Authorization": "token alice-token"}, {"Authorization": "token bob-token"}
        created = requests.post(
            url(srv, "uploads"), json={"name": "alice.bin", "size": 6}, headers=alice, timeout=30
        )
        upload = created.json()
        base = url(srv, f"uploads/{upload['id']}")
        assert requests.put(base + "?offset=0", data=b"ali", headers=alice, timeout=30).ok
        for r in (
            requests.get(base, headers=bob, timeout=30),
            requests.put(base + "?offset=3", data=b"bob", headers=bob, timeout=30),
            requests.post(base + "/commit", headers=bob, timeout=30),
            requests.delete(base, headers=bob, timeout=30),
        ):
            assert r.status_code == 403, r.text
            assert "started by another user" in r.json()["error"]
        listed = requests.get(url(srv, "uploads"), headers=bob, timeout=30).json()["uploads"]
        assert listed == []
        assert staged_file(srv, upload).read_bytes() == b"ali"
        assert requests.put(base + "?offset=3", data=b"ce!", headers=alice, timeout=30).ok
        assert requests.post(base + "/commit", headers=alice, timeout=30).status_code == 201
    finally:
        proc.stop()


# -- abandoned uploads ----------------------------------------------------------------------


def test_repair_removes_abandoned_uploads_after_the_grace_period(server):
    old = start(server, name="old.bin", size=10)
    put(server, old["id"], 0, b"12345")
    fresh = start(server, name="fresh.bin", size=10)
    folder = server["home"] / "uploads" / old["id"]
    day_ago = folder.stat().st_mtime - 2 * 86400
    for path in (folder / "meta.json", folder / "file", staged_file(server, old)):
        os.utime(path, (day_ago, day_ago))
    out = _run(
        server["home"],
        """
        import lamin_nb as ln
        ln.connect()
        plan = ln.repair(dry_run=True)
        print([a.target for a in plan.actions if a.kind == 'remove abandoned browser upload'])
        plan = ln.repair(dry_run=False)
        print(plan.summary())
        """,
    )
    assert f"['{old['id']}']" in out and "remove abandoned browser upload x1" in out
    assert not folder.exists()
    assert status(server, fresh["id"]).status_code == 200
