"""Every public name has a numpydoc docstring that the API reference can render.

The API reference is generated from these docstrings (Sphinx autodoc + napoleon, numpy
style), so the sections must parse: a known header underlined with dashes, entries written
``name`` or ``name : type``, documented parameters that exist in the signature. Examples that
need no instance run here as doctests; the others are marked ``# doctest: +SKIP``.
"""

from __future__ import annotations

import doctest
import inspect
import re
from typing import Any

import pytest

import lamin_nb as ln

SECTIONS = {
    "Parameters",
    "Other Parameters",
    "Returns",
    "Yields",
    "Raises",
    "Warns",
    "Attributes",
    "Methods",
    "See Also",
    "Notes",
    "References",
    "Examples",
}
STRUCTURAL = ("Parameters", "Returns", "Attributes")
NAMED_ENTRIES = {"Parameters", "Other Parameters", "Attributes"}
ENTRY = re.compile(r"^\*{0,2}[A-Za-z_][A-Za-z0-9_]*( : \S.*)?$")
EXCEPTION_ENTRY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
# the classes whose public members are part of the API reference
DOCUMENTED_MEMBERS = [
    "Artifact",
    "SaveReport",
    "ConsistencyReport",
    "RepairPlan",
    "SaveCallback",
    "TextProgress",
]


def _is_error(obj: Any) -> bool:
    return inspect.isclass(obj) and issubclass(obj, (BaseException, Warning))


def _public_names() -> list[str]:
    return sorted(ln.__all__)


def _members() -> list[tuple[str, Any]]:
    """``Class.member`` for every public method and property of the documented classes, and
    the attributes of the ``settings`` object (its class's properties)."""
    found: list[tuple[str, Any]] = []
    classes = [(name, getattr(ln, name)) for name in DOCUMENTED_MEMBERS]
    classes.append(("settings", type(ln.settings)))
    for owner_name, cls in classes:
        for name, member in vars(cls).items():
            if name.startswith("_"):
                continue
            if isinstance(member, (classmethod, staticmethod)):
                member = member.__func__
            if callable(member) or isinstance(member, property):
                found.append((f"{owner_name}.{name}", member))
    return found


def _sections(doc: str) -> dict[str, list[str]]:
    """Section name -> its lines; a header is a line underlined with dashes of its length."""
    lines = doc.splitlines()
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if line.strip() and nxt.strip() and set(nxt.strip()) == {"-"}:
            header = line.strip()
            assert header in SECTIONS, f"unknown section header {header!r}"
            assert nxt.strip() == "-" * len(header), f"underline of {header!r} has another length"
            assert not line.startswith(" "), f"section {header!r} is indented"
            assert header not in found, f"section {header!r} appears twice"
            current = found[header] = []
            i += 2
            continue
        if current is not None:
            current.append(line)
        i += 1
    return found


def _entries(lines: list[str]) -> list[str]:
    """The unindented lines of a section: one per parameter, attribute, exception or value."""
    return [line for line in lines if line.strip() and not line.startswith(" ")]


def _check_docstring(label: str, obj: Any, structural: bool) -> None:
    doc = inspect.getdoc(obj)
    assert doc, f"{label} has no docstring"
    lines = doc.splitlines()
    assert lines[0].strip(), f"{label}: the docstring starts with an empty line"
    assert len(lines) == 1 or not lines[1].strip(), (
        f"{label}: the summary must be one line followed by a blank line"
    )
    sections = _sections(doc)
    if structural:
        assert any(s in sections for s in STRUCTURAL), (
            f"{label} has none of the sections {STRUCTURAL}"
        )
    for header, body in sections.items():
        entries = _entries(body)
        assert entries or header in ("Examples", "Notes"), f"{label}: {header} is empty"
        if header in NAMED_ENTRIES:
            for entry in entries:
                assert ENTRY.match(entry), f"{label}: {header} entry {entry!r} is not 'name : type'"
        if header == "Raises":
            for entry in entries:
                assert EXCEPTION_ENTRY.match(entry), f"{label}: Raises entry {entry!r}"
    if "Parameters" in sections and callable(obj):
        documented = {e.split(" : ")[0].lstrip("*") for e in _entries(sections["Parameters"])}
        target = obj.__init__ if inspect.isclass(obj) else obj
        actual = set(inspect.signature(target).parameters) - {"self", "cls"}
        assert documented == actual, f"{label}: documented {documented}, signature {actual}"
    if "Examples" in sections:
        assert ">>>" in "\n".join(sections["Examples"]), f"{label}: an example without '>>>'"


@pytest.mark.parametrize("name", _public_names())
def test_public_name_has_numpydoc_docstring(name: str) -> None:
    obj = getattr(ln, name)
    if _is_error(obj):
        doc = inspect.getdoc(obj)
        assert doc and doc != inspect.getdoc(Exception), f"{name} has no docstring of its own"
        _check_docstring(name, obj, structural=False)
        return
    # a class built without arguments and holding no data (SaveCallback) is described by its
    # methods, which are checked one by one below
    stateless = inspect.isclass(obj) and obj.__init__ is object.__init__
    structural = (callable(obj) and not stateless) or name == "settings"
    _check_docstring(name, obj, structural)


def test_settings_object_shows_its_class_docstring() -> None:
    doc = inspect.getdoc(ln.settings)
    assert doc is not None and "Attributes\n----------" in doc


@pytest.mark.parametrize("label,member", _members(), ids=[label for label, _ in _members()])
def test_public_member_has_numpydoc_docstring(label: str, member: Any) -> None:
    # a method says what it takes or gives back; a property is documented by its summary
    _check_docstring(label, member, structural=not isinstance(member, property))


def _examples() -> list[tuple[str, Any]]:
    objects = [(name, getattr(ln, name)) for name in _public_names()]
    return [(label, obj) for label, obj in objects + _members() if inspect.getdoc(obj)]


@pytest.mark.parametrize("label,obj", _examples(), ids=[label for label, _ in _examples()])
def test_examples_run(label: str, obj: Any) -> None:
    """The examples not marked ``+SKIP`` need no instance: they must run as written."""
    parser = doctest.DocTestParser()
    test = parser.get_doctest(inspect.getdoc(obj) or "", {"ln": ln}, label, None, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    result = runner.run(test, out=lambda text: pytest.fail(text))
    assert result.failed == 0
