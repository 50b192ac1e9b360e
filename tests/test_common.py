"""common/ holds what chapters have taught, and the chapters after the one that taught a
helper use it instead of a copy. README.md's table names, for every header in common/,
the first chapter that includes it; this checks the table against the files, and that
no chapter from then on defines a function that the header declares."""

import os
import re

import pytest

import chapters

COMMON = os.path.join(chapters.ROOT, "common")
ROW = re.compile(r"^\| `(?P<header>[a-z_]+\.h)` \|.*\| (?P<first>\d\d) \|$")
DECLARATION = re.compile(r"^[A-Za-z_][\w \*]*?\b(?P<name>\w+)\([^;]*\);", re.M | re.S)


def table():
    """{header: first chapter number that uses it} from README.md's common/ table."""
    with open(os.path.join(chapters.ROOT, "README.md"), encoding="utf-8") as f:
        rows = [ROW.match(line.rstrip("\n")) for line in f]
    return {m.group("header"): int(m.group("first")) for m in rows if m}


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
    first = table()[header]
    for chapter in chapters.ALL:
        if chapter.number < first:
            continue
        with open(os.path.join(chapter.dir, "main.c"), encoding="utf-8") as f:
            source = f.read()
        copies = [n for n in names if re.search(r"(?m)^(?:static )?\w[\w \*]*\b%s\(" % n, source)]
        assert not copies, "%s defines %s, which common/%s has" % (chapter, copies, header)
        uses = [n for n in names if re.search(r"\b%s\(" % n, source)]
        if uses:
            assert '#include "%s"' % header in source, (chapter, header, uses)
