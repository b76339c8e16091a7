"""Hostile input, generated: every case ends in a clear refusal or a correct save.

Keys, descriptions, file names and paths with '..', absolute paths, NUL and control
characters, unicode tricks (fullwidth dots and solidus, combining marks, bidi overrides),
10,000-character strings and SQL metacharacters; values of wrong types for every public API.
After each case: no file changed outside the managed prefix and the settings folder, no
staging leftovers, and ``ln.check()`` is consistent. Derandomised, so CI sees the same cases.
"""

from __future__ import annotations

import math
import os
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lamin_nb as ln
from lamin_nb.core.instance import current
from lamin_nb.core.models import COMMITTED
from lamin_nb.core.rows import count_by_status
from lamin_nb.core.storage import owner_of_temp
from lamin_nb.core.validate import MAX_KEY_LENGTH, MAX_SECONDS, MAX_WORKERS, is_safe_suffix
from tests.support.faults_env import count, snapshot, tree_diff

FUZZ = settings(
    max_examples=int(os.environ.get("LAMIN_NB_FUZZ_EXAMPLES", "100")),
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
REFUSALS = (TypeError, ln.ValidationError)

NASTY = [
    "..",
    "../x",
    "x/..",
    "a/../../b",
    "./a",
    "a/./b",
    "a//b",
    "/",
    "/etc/passwd",
    "//srv/x",
    "C:/windows",
    "c:x",
    "\\\\server\\share",
    "a\\..\\b",
    "s3://bucket/x",
    "file:///etc/passwd",
    "~",
    "~/.ssh/id_rsa",
    "\x00",
    "a\x00b",
    "a\nb",
    "\r",
    "\t",
    "\x1b[31mred",
    "\x7f",
    "\x85",
    "\u2028",
    "\u202e",
    "evil\u202etxt.exe",
    "\u2066x\u2069",
    "\u200b",
    "\ufeffkey",
    "\u061c",
    "\uff0e\uff0e/x",
    "a\uff0f\uff0e\uff0e\uff0fb",
    "\u2025/x",
    "\u2024\u2024/x",
    "\uff3cx",
    ".\u0338./x",
    "e\u0301",
    "\u0041\u030a",
    "\u212b",
    "\ufb01le",
    "\ud800",
    "a\udfffb",
    "'; DROP TABLE lamin_artifact; --",
    '" OR 1=1 --',
    "%",
    "_",
    "%_%",
    "a%",
    "[x]",
    "$1",
    "x" * 10_000,
    "é" * 600,
    "/" * 3000,
    "a/" * 600,
    " ",
    " x",
    "x ",
    "",
    "😀/🙂.txt",
]


def hostile_text() -> st.SearchStrategy[str]:
    segment = st.sampled_from(
        [
            "..",
            ".",
            "",
            "a",
            "\uff0e\uff0e",
            "\u2025",
            "%",
            "_",
            "'",
            "x\u0301",
            "\u202e",
            "\x00",
            "\\",
            "~",
            "C:",
            "s3:",
            "😀",
        ]
    )
    joined = st.lists(segment, min_size=1, max_size=6).map("/".join)
    return st.one_of(
        st.sampled_from(NASTY),
        joined,
        st.sampled_from(["/", "", "a/", "/a/"]).flatmap(lambda p: joined.map(p.__add__)),
        st.text(max_size=40),
        st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=80),
        st.integers(1, 12_000).map(lambda n: "k" * n),
    )


def junk() -> st.SearchStrategy[Any]:
    """Values of the wrong type for nearly any argument."""

    class Explodes:
        """str(), bool() and len() fail; repr() works so hypothesis can show the case."""

        def __str__(self) -> str:
            raise RuntimeError("str() of this object fails")

        def __bool__(self) -> bool:
            raise RuntimeError("bool() of this object fails")

        def __len__(self) -> int:
            raise RuntimeError("len() of this object fails")

        def __repr__(self) -> str:
            return "<Explodes>"

    class BadPath(os.PathLike):
        def __fspath__(self) -> Any:
            return 42

    return st.one_of(
        st.integers(),
        st.floats(allow_nan=True),
        st.binary(max_size=20),
        st.booleans(),
        st.lists(st.integers(), max_size=3),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
        st.sets(st.integers(), max_size=2),
        st.tuples(st.text(max_size=3)),
        st.complex_numbers(),
        st.just(object()),
        st.just(Explodes()),
        st.just(BadPath()),
        st.just(math.inf),
        st.just(NotImplemented),
        st.just(Ellipsis),
        st.just(type),
    )


# -- fixtures ------------------------------------------------------------------------------


class Sandbox:
    """An instance deep inside tmp_path, so escapes by a few '..' still land in the snapshot."""

    def __init__(self, tmp_path: Path, lamin_home: Path) -> None:
        self.tmp = tmp_path
        self.home = lamin_home
        self.base = tmp_path / "a" / "b" / "c" / "d"
        self.files = self.base / "files"
        self.storage = self.base / "storage"
        self.files.mkdir(parents=True)
        self.n = 0

    @property
    def managed(self) -> Path:
        return self.storage / ".lamindb"

    def file(self, content: bytes | None = None, name: str | None = None) -> Path:
        self.n += 1
        path = self.files / (name or f"f{self.n}.bin")
        path.write_bytes(content if content is not None else f"content {self.n}".encode())
        return path

    def snap(self) -> dict[str, tuple[int, int]]:
        return snapshot(self.tmp, skip=[self.managed, self.home])

    def assert_untouched(self, before: dict[str, tuple[int, int]]) -> None:
        """Nothing outside the managed prefix and the settings folder changed."""
        diff = tree_diff(before, self.snap())
        assert not diff, f"write outside the managed prefix: {diff}"
        staging = self.home / "staging"
        assert not staging.exists() or not list(staging.iterdir()), list(staging.iterdir())
        names = os.listdir(self.managed) if self.managed.exists() else []
        temps = [n for n in names if owner_of_temp(n) is not None]
        assert not temps, temps

    def assert_consistent(self) -> None:
        report = ln.check()
        assert report.is_consistent and not report.pending, repr(report)
        with current().db.read() as session:
            assert set(count_by_status(session)) <= {COMMITTED}


@pytest.fixture
def sandbox(tmp_path: Path, lamin_home: Path, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    box = Sandbox(tmp_path, lamin_home)
    cwd = box.base / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # relative paths resolve deep inside tmp_path
    ln.init(storage=str(box.storage))
    return box


def assert_clear(exc: BaseException) -> None:
    """A refusal a user can read: short, one cause, no raw control characters."""
    message = str(exc)
    assert message.strip(), f"{type(exc).__name__} without a message"
    assert len(message) <= 600, f"message of {len(message)} chars"
    assert "Traceback" not in message
    assert all(ch.isprintable() or ch == "\n" for ch in message), repr(message)


def attempt(
    fn: Any, *args: Any, refusals: tuple[type[BaseException], ...] = REFUSALS, **kwargs: Any
) -> tuple[bool, Any]:
    """(True, result) or (False, the refusal); anything else fails the test."""
    count("fuzz cases run")
    try:
        return True, fn(*args, **kwargs)
    except refusals as exc:
        assert_clear(exc)
        count("fuzz cases refused with a clear error")
        return False, exc


def assert_safe_key(key: str) -> None:
    """What an accepted key must be: relative, no escape, no hidden characters."""
    assert len(key.encode("utf-8")) <= MAX_KEY_LENGTH
    for variant in {key, unicodedata.normalize("NFKC", key)}:
        assert not variant.startswith("/") and "\\" not in variant and "://" not in variant
        assert not {"", ".", ".."} & set(variant.split("/")), key
    assert all(unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Zl", "Zp") for ch in key), key
    assert all(ch == " " or unicodedata.category(ch) != "Zs" for ch in key), key  # look-alikes


# -- keys, descriptions, file names and paths -----------------------------------------------


@FUZZ
@given(key=hostile_text())
def test_hostile_keys(sandbox: Sandbox, key: str) -> None:
    source = sandbox.file()
    before = sandbox.snap()
    ok, artifact = attempt(ln.Artifact, source, key=key)
    if ok:
        assert_safe_key(key)
        artifact.save()
        count("fuzz saves that succeeded")
        got = ln.Artifact.get(artifact.uid)
        # stored in NFC, and found under any spelling of it
        assert got.key == unicodedata.normalize("NFC", key)
        assert ln.Artifact.get(key).uid == artifact.uid
        assert (
            sandbox.managed / f"{artifact.uid}{artifact.suffix}"
        ).read_bytes() == source.read_bytes()
    sandbox.assert_untouched(before)
    sandbox.assert_consistent()


@FUZZ
@given(description=hostile_text())
def test_hostile_descriptions(sandbox: Sandbox, description: str) -> None:
    source = sandbox.file()
    before = sandbox.snap()
    ok, artifact = attempt(ln.Artifact, source, description=description)
    if ok:
        artifact.save()
        count("fuzz saves that succeeded")
        assert ln.Artifact.get(artifact.uid).description == description  # stored verbatim
        assert ln.Artifact.filter(description=description).count() >= 1
    sandbox.assert_untouched(before)
    sandbox.assert_consistent()


file_names = st.one_of(
    st.sampled_from(
        [
            "..x",
            "x..",
            "...",
            "a.tar.gz",
            ".hidden.txt",
            "x.TXT",
            "x.txt\n",
            "x.\u202etxt",
            "x.t\u0301xt",
            "x.\uff54xt",
            "x.ab-c_d",
            "x." + "a" * 17,
            "evil\u202egpj.exe",
            "'; DROP TABLE x; --.csv",
            "x\\..\\y.bin",
            "%_%.h5ad",
            "\x1b[2J.txt",
            "x.\x7f",
            "noext",
            "x.",
            "e\u0301.txt",
            "😀.parquet",
        ]
    ),
    st.text(
        st.characters(codec="utf-8", exclude_categories=["Cs"], exclude_characters="/\x00"),
        min_size=1,
        max_size=60,
    ),
).filter(lambda n: n not in (".", "..") and len(n.encode()) <= 255)


@FUZZ
@given(name=file_names)
def test_hostile_file_names(sandbox: Sandbox, name: str) -> None:
    folder = sandbox.files / f"n{sandbox.n}"
    folder.mkdir()
    source = sandbox.file(
        b"named " + name.encode("utf-8", "surrogatepass"), name=f"{folder.name}/{name}"
    )
    before = sandbox.snap()
    ok, artifact = attempt(ln.Artifact, source)
    if ok:
        assert is_safe_suffix(artifact.suffix), repr(artifact.suffix)
        artifact.save()
        count("fuzz saves that succeeded")
        stored = sandbox.managed / f"{artifact.uid}{artifact.suffix}"
        assert stored.parent == sandbox.managed and stored.read_bytes() == source.read_bytes()
    sandbox.assert_untouched(before)
    sandbox.assert_consistent()


@FUZZ
@given(
    path=st.one_of(
        hostile_text(),
        st.sampled_from(["../files/f1.bin", "./../files/f1.bin"]),
        st.sampled_from(["", "file://", "~/"]).map(lambda p: p + "files/f1.bin"),
    )
)
def test_hostile_source_paths(sandbox: Sandbox, path: str) -> None:
    if not (sandbox.files / "f1.bin").exists():
        sandbox.file(name="f1.bin")
    before = sandbox.snap()
    ok, artifact = attempt(ln.Artifact, path)
    if ok:
        # only an existing regular file can be taken; it is read, never written
        assert Path(artifact.source).is_file()
        artifact.save()
        count("fuzz saves that succeeded")
    sandbox.assert_untouched(before)
    sandbox.assert_consistent()


@FUZZ
@given(
    names=st.lists(file_names, min_size=1, max_size=4, unique=True),
    key=st.one_of(st.none(), hostile_text()),
)
def test_hostile_from_dir(sandbox: Sandbox, names: list[str], key: str | None) -> None:
    folder = sandbox.files / f"dir{sandbox.n}"
    sandbox.n += 1
    folder.mkdir()
    for i, name in enumerate(names):
        (folder / name).write_bytes(f"{folder.name} {i}".encode())
    before = sandbox.snap()
    ok, artifacts = attempt(ln.Artifact.from_dir, folder, key=key)
    if ok:
        for artifact in artifacts:
            assert_safe_key(artifact.key)
            assert is_safe_suffix(artifact.suffix)
        ln.save(artifacts)
        count("fuzz saves that succeeded", len(artifacts))
    sandbox.assert_untouched(before)
    sandbox.assert_consistent()


# -- wrong types in every public API ---------------------------------------------------------


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def _is_int(v: Any, low: float = -(2**63), high: float = 2**63 - 1) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


def _is_seconds(v: Any) -> bool:
    return (
        isinstance(v, (int, float))
        and not isinstance(v, bool)
        and math.isfinite(v)
        and 0 <= v <= MAX_SECONDS
    )


def _is_str_list(v: Any) -> bool:
    return isinstance(v, (list, tuple, set)) and all(isinstance(x, str) for x in v)


def _never(v: Any) -> bool:
    return False


Call = tuple[str, Any, tuple[type[BaseException], ...], Any]


def _api_calls(box: Sandbox, value: Any) -> list[Call]:
    """(name, call, refusals, is this value actually valid here?) for every public API."""
    source = box.file()
    unsaved = ln.Artifact(source)
    lookups = (*REFUSALS, ln.NotFoundError)
    all_ = ln.Artifact.filter
    return [
        ("Artifact(path)", lambda: ln.Artifact(value), REFUSALS, _never),
        ("Artifact(key)", lambda: ln.Artifact(source, key=value), REFUSALS, _never),
        ("Artifact(description)", lambda: ln.Artifact(source, description=value), REFUSALS, _never),
        ("from_df", lambda: ln.Artifact.from_df(value), REFUSALS, _never),
        ("from_anndata", lambda: ln.Artifact.from_anndata(value), REFUSALS, _never),
        ("from_dir", lambda: ln.Artifact.from_dir(value), REFUSALS, _never),
        ("from_dir(key)", lambda: ln.Artifact.from_dir(box.files, key=value), REFUSALS, _never),
        (
            "save(records)",
            lambda: ln.save(value),
            REFUSALS,
            lambda v: isinstance(v, (list, tuple, set, dict)) and not v,
        ),
        ("save([a, value])", lambda: ln.save([unsaved, value]), REFUSALS, _never),
        ("save(atomic)", lambda: ln.save([unsaved], atomic=value), REFUSALS, _is_bool),
        ("save(callback)", lambda: ln.save([unsaved], callback=value), REFUSALS, _never),
        (
            "save(max_workers)",
            lambda: ln.save([unsaved], max_workers=value),
            REFUSALS,
            lambda v: _is_int(v, 1, MAX_WORKERS),
        ),
        ("artifact.save(callback)", lambda: unsaved.save(callback=value), REFUSALS, _never),
        ("filter(key=)", lambda: all_(key=value).all(), REFUSALS, _never),
        ("filter(size=)", lambda: all_(size=value).all(), REFUSALS, _is_int),
        ("filter(version__gt=)", lambda: all_(version__gt=value).all(), REFUSALS, _is_int),
        ("filter(is_latest=)", lambda: all_(is_latest=value).all(), REFUSALS, _is_bool),
        ("filter(created_at__lt=)", lambda: all_(created_at__lt=value).all(), REFUSALS, _never),
        ("filter(key__in=)", lambda: all_(key__in=value).all(), REFUSALS, _is_str_list),
        ("filter(key__startswith=)", lambda: all_(key__startswith=value).all(), REFUSALS, _never),
        ("filter(hash__contains=)", lambda: all_(hash__contains=value).count(), REFUSALS, _never),
        ("get", lambda: ln.Artifact.get(value), lookups, _never),
        ("delete(permanent)", lambda: unsaved.delete(permanent=value), lookups, _never),
        ("check(deep)", lambda: ln.check(deep=value), REFUSALS, _is_bool),
        ("repair(dry_run)", lambda: ln.repair(dry_run=value), REFUSALS, _is_bool),
        ("repair(grace_seconds)", lambda: ln.repair(grace_seconds=value), REFUSALS, _is_seconds),
        (
            "repair(purge, retention)",
            lambda: ln.repair(purge=True, retention_seconds=value),
            REFUSALS,
            _is_seconds,
        ),
        ("init(storage)", lambda: ln.init(storage=value), REFUSALS, _never),
        ("init(db)", lambda: ln.init(storage=str(box.storage), db=value), REFUSALS, _never),
        ("init(name)", lambda: ln.init(storage=str(box.storage), name=value), REFUSALS, _never),
        (
            "init(storage_options)",
            lambda: ln.init(storage=str(box.storage), storage_options=value),
            REFUSALS,
            lambda v: isinstance(v, dict),
        ),
        ("connect(name)", lambda: ln.connect(value), (*REFUSALS, ln.InstanceError), _never),
    ]


@FUZZ
@given(value=junk(), which=st.integers(0, 10_000))
def test_wrong_types_in_every_api(sandbox: Sandbox, value: Any, which: int) -> None:
    calls = _api_calls(sandbox, value)
    name, call, refusals, valid = calls[which % len(calls)]
    before = sandbox.snap()
    ok, result = attempt(call, refusals=refusals)
    assert ok == valid(value), f"{name}: {value!r:.80} {'accepted' if ok else 'refused'}"
    if name.startswith("init") or name.startswith("connect"):
        ln.init(storage=str(sandbox.storage))  # back to the sandbox instance
    sandbox.assert_untouched(before)
    sandbox.assert_consistent()


@FUZZ
@given(junk_items=st.lists(junk(), min_size=1, max_size=3), where=st.integers(0, 3))
def test_records_of_wrong_types_write_nothing(
    sandbox: Sandbox, junk_items: list[Any], where: int
) -> None:
    """The seed's second scenario, generalised: a TypeError naming the index, nothing saved."""
    good = [ln.Artifact(sandbox.file()) for _ in range(2)]
    records: list[Any] = list(good)
    for item in junk_items:
        records.insert(min(where, len(records)), item)
    before = sandbox.snap()
    rows_before = ln.Artifact.filter().count()
    ok, exc = attempt(ln.save, records)
    assert not ok and isinstance(exc, TypeError)
    first_bad = next(i for i, r in enumerate(records) if not isinstance(r, ln.Artifact))
    assert f"item {first_bad}" in str(exc)
    assert all(a.status is None for a in good)
    assert ln.Artifact.filter().count() == rows_before
    sandbox.assert_untouched(before)
    sandbox.assert_consistent()


# -- queries: SQL metacharacters match literally --------------------------------------------

META_KEYS = [
    "100%/a.csv",
    "100_/b.csv",
    "x'y/c.csv",
    'q"uote/d.csv',
    "semi;colon/e.csv",
    "star*/f.csv",
    "plain/g.csv",
]


@pytest.fixture
def meta_instance(sandbox: Sandbox) -> Sandbox:
    ln.save([ln.Artifact(sandbox.file(), key=k, description=k) for k in META_KEYS])
    return sandbox


@FUZZ
@given(
    needle=st.one_of(
        st.sampled_from(
            [
                "%",
                "_",
                "'",
                '"',
                ";",
                "*",
                "100%",
                "100_",
                "x'",
                "' OR '1'='1",
                "%' --",
                "\\",
                "[a-z]",
            ]
        ),
        st.text(max_size=6),
    ),
    lookup=st.sampled_from(["startswith", "contains", "", "in"]),
)
def test_query_metacharacters_match_literally(
    meta_instance: Sandbox, needle: str, lookup: str
) -> None:
    arg = {"": "key", "in": "key__in"}.get(lookup, f"key__{lookup}")
    value: Any = [needle] if lookup == "in" else needle
    ok, found = attempt(lambda: ln.Artifact.filter(**{arg: value}).all())
    if not ok:
        assert "\x00" in needle or any(unicodedata.category(c) == "Cs" for c in needle)
        return
    expected = {
        k
        for k in META_KEYS
        if {"startswith": k.startswith(needle), "contains": needle in k}.get(lookup, k == needle)
    }
    assert {a.key for a in found} == expected
    ok, got = attempt(ln.Artifact.get, needle, refusals=(*REFUSALS, ln.NotFoundError))
    assert ok == (needle in META_KEYS)
    meta_instance.assert_consistent()


# -- bulk: the same hostile inputs on PostgreSQL -----------------------------------------------


@settings(FUZZ, max_examples=max(20, FUZZ.max_examples // 4))
@given(key=hostile_text(), description=hostile_text())
def test_hostile_input_on_postgres(tmp_path: Path, pg_url: str, key: str, description: str) -> None:
    if current_db_url() != pg_url:
        ln.init(storage=str(tmp_path / "pg-storage"), db=pg_url)
    source = tmp_path / "pg-src.bin"
    source.write_bytes(os.urandom(16))
    ok, artifact = attempt(ln.Artifact, source, key=key, description=description)
    if ok:
        artifact.save()
        count("fuzz saves that succeeded")
        got = ln.Artifact.get(artifact.uid)
        assert (got.key, got.description) == (key, description)
        ok, found = attempt(lambda: ln.Artifact.filter(key__startswith=key).all())
        assert ok and artifact.uid in {a.uid for a in found}
    ok, _ = attempt(lambda: ln.Artifact.filter(description__contains=description[:20]).count())
    assert ok or "\x00" in description[:20]
    report = ln.check()
    assert report.is_consistent and not report.pending, repr(report)


def current_db_url() -> str | None:
    from lamin_nb.core import instance

    inst = instance.current_or_none()
    return None if inst is None else _plain_url(inst.settings.db_url)


def _plain_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


# -- the magics, in a real IPython shell ------------------------------------------------------

MAGICS = [
    "lamin_save",
    "lamin_ls",
    "lamin_check",
    "lamin_repair",
    "lamin_init",
    "lamin_connect",
    "lamin_upload",
]
FLAGS = [
    "--key",
    "--description",
    "--atomic",
    "--no-progress",
    "--limit",
    "--deep",
    "--auto",
    "--apply",
    "--grace",
    "--mark-lost",
    "--db",
    "--name",
    "-h",
    "--help",
    "--",
    "-",
]


def _harmless(token: str) -> bool:
    """No glob from the root or a home folder: the fuzz must not walk the whole disk."""
    return not (token.lstrip().startswith(("/", "~")) and any(c in token for c in "*?["))


magic_tokens = st.one_of(
    st.sampled_from(FLAGS),
    st.sampled_from(
        [
            "junk_value",
            "good_df",
            "good_path",
            "../files/f1.bin",
            "../files/*.bin",
            "-1",
            "0",
            "nan",
            "inf",
            "1e309",
            "1e-300",
            "'",
            '"',
            "\\",
            "$x",
            "{x}",
            "`id`",
            "$(id)",
            ";",
            "&&",
            "|",
            "#",
        ]
    ),
    hostile_text().filter(_harmless),
)


@pytest.fixture(scope="module")
def shell() -> Any:
    from IPython.testing.globalipapp import get_ipython, start_ipython

    ip = start_ipython() or get_ipython()  # one global test shell per pytest process
    ip.extension_manager.load_extension("lamin_nb")
    return ip


@FUZZ
@given(
    magic=st.sampled_from(MAGICS),
    tokens=st.lists(magic_tokens, max_size=5),
    quote=st.booleans(),
    value=junk(),
)
def test_hostile_magic_lines(
    sandbox: Sandbox, shell: Any, magic: str, tokens: list[str], quote: bool, value: Any
) -> None:
    import shlex

    import pandas as pd
    from IPython.core.error import UsageError

    from lamin_nb.widgets import ConsistencyPanel

    if not (sandbox.files / "f1.bin").exists():
        sandbox.file(name="f1.bin")
    shell.user_ns.update(
        junk_value=value,
        good_df=pd.DataFrame({"a": [sandbox.n]}),
        good_path=str(sandbox.files / "f1.bin"),
    )
    line = " ".join(shlex.quote(t) if quote else t for t in tokens)
    if magic == "lamin_init":  # the storage is the sandbox's: the rest is hostile
        line = f"--storage {shlex.quote(str(sandbox.storage))} {line}"
    before = sandbox.snap()
    count("fuzz cases run")
    count("fuzz magic lines run")
    try:
        shell.run_line_magic(magic, line)
    except UsageError as error:
        assert_clear(error)
        count("fuzz cases refused with a clear error")
    finally:
        ConsistencyPanel.stop_all()
    if magic in ("lamin_init", "lamin_connect"):
        ln.init(storage=str(sandbox.storage))
    sandbox.assert_untouched(before)
    sandbox.assert_consistent()
