"""The chapter table in chapters.py covers every chapter folder, and every chapter is built."""

import os

import pytest

import chapters
from harness import require_exe


def test_chapters_are_found():
    names = [c.name for c in chapters.ALL]
    assert names, "no chapters/NN-topic folders found under %s" % chapters.CHAPTERS_DIR
    assert names[0].startswith("01-"), names


@pytest.mark.parametrize("chapter", chapters.ALL, ids=chapters.ids(chapters.ALL))
def test_chapter_has_a_row_in_the_table(chapter):
    assert chapter.features is not None and chapter.options is not None, (
        "chapter %s has no row in tests/chapters.py FEATURES/OPTIONS: add one" % chapter)
    assert os.path.isfile(os.path.join(chapter.dir, "main.c"))


@pytest.mark.parametrize("chapter", chapters.ALL, ids=chapters.ids(chapters.ALL))
def test_chapter_is_built(chapter):
    require_exe(chapter.exe)
