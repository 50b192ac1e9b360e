"""common/ holds what chapters have taught, and the chapters after the one that taught a
helper use it instead of a copy. README.md's table names, for every header in common/,
the first chapter that includes it, or "tools" for one that only tools/ uses; this checks
the table against the files, and that no chapter from then on (no tool, for a header of
the tools) defines a function that the header declares."""

import os
import re

import pytest

import chapters

COMMON = os.path.join(chapters.ROOT, "common")
ROW = re.compile(r"^\| `(?P<header>[a-z_]+\.h)` \|.*\| (?P<first>\d\d|tools) \|$")
TOOLS = os.path.join(chapters.ROOT, "tools")
DECLARATION = re.compile(r"^[A-Za-z_][\w \*]*?\b(?P<name>\w+)\([^;]*\);", re.M | re.S)


def table():
    """{header: first chapter number that uses it, or None if only the tools do} from
    README.md's common/ table."""
    with open(os.path.join(chapters.ROOT, "README.md"), encoding="utf-8") as f:
        rows = [ROW.match(line.rstrip("\n")) for line in f]
    return {m.group("header"): None if m.group("first") == "tools" else int(m.group("first"))
            for m in rows if m}


def programs_after_the_lesson(header):
    """(name, path of its main source) of every program that must use HEADER, not copy
    it: each chapter from the first that uses it, or each tool for a header of the tools."""
    first = table()[header]
    if first is None:
        return [(name, os.path.join(TOOLS, name)) for name in sorted(os.listdir(TOOLS))
                if name.endswith(".c")]
    return [(chapter, os.path.join(chapter.dir, "main.c")) for chapter in chapters.ALL
            if chapter.number >= first]


def declared(header):
    with open(os.path.join(COMMON, header), encoding="utf-8") as f:
        text = re.sub(r"/\*.*?\*/", "", f.read(), flags=re.S)
    return [m.group("name") for m in DECLARATION.finditer(text)
            if not m.group(0).startswith("typedef")]


def test_every_header_has_a_row():
    headers = sorted(n for n in os.listdir(COMMON) if n.endswith(".h"))
    assert sorted(table()) == headers


@pytest.mark.parametrize("header", sorted(table()))
def test_no_chapter_after_the_lesson_keeps_a_copy(header):
    names = declared(header)
    assert names, "no function found in common/" + header
    for program, path in programs_after_the_lesson(header):
        with open(path, encoding="utf-8") as f:
            source = f.read()
        copies = [n for n in names if re.search(r"(?m)^(?:static )?\w[\w \*]*\b%s\(" % n, source)]
        assert not copies, "%s defines %s, which common/%s has" % (program, copies, header)
        uses = [n for n in names if re.search(r"\b%s\(" % n, source)]
        if uses:
            assert '#include "%s"' % header in source, (program, header, uses)
