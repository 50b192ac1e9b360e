"""The Korean edition of the notes: every README.md has a README.ko.md that agrees with it
in everything but the prose (tests/korean.py says what), uses the glossary's terms
(docs/glossary.ko.md), and the check can fail: each kind of drift is caught."""

import os
import re

import pytest

import chapters
import korean

ENGLISH = ["README.md"] + ["chapters/%s/README.md" % chapter.name for chapter in chapters.ALL]


def path(relative):
    return os.path.join(chapters.ROOT, relative)


def test_every_notes_file_has_a_korean_edition_and_links_to_it():
    for english in ENGLISH:
        assert os.path.isfile(path(korean.korean_path_of(english))), \
            "%s has no Korean edition beside it" % english
        lines = korean.read(path(english)).split("\n")
        assert lines[2:3] == [korean.ENGLISH_LANGUAGE_LINE], \
            "%s: line 3 is not the language line %r" % (english, korean.ENGLISH_LANGUAGE_LINE)


@pytest.mark.parametrize("english", ENGLISH)
def test_korean_notes_agree_with_the_english(english):
    problems = korean.check_file(path(korean.korean_path_of(english)))
    assert not problems, "\n".join(problems)


def test_the_glossary_covers_the_recurring_titles():
    terms, titles = korean.glossary()
    assert len(terms) >= 30, "the glossary has only %d terms" % len(terms)
    for english, translated, avoided in terms:
        assert english and translated, (english, translated)
        assert translated not in avoided, "%r is both used and avoided" % translated
    counts = {}
    for english in ENGLISH[1:]:
        notes = korean.Notes(korean.read(path(english)))
        for title in {text for _, text in notes.headings[1:]} | set(notes.bold_leads):
            counts[title] = counts.get(title, 0) + 1
    recurring = {title for title, count in counts.items() if count == len(ENGLISH) - 1}
    assert recurring, "no title recurs in every chapter"
    missing = sorted(recurring - set(titles))
    assert not missing, "titles of every chapter the glossary does not translate: %s" % missing


# --- the check can fail: each drift below, made to a real pair, is reported ---------------
def drifted(text, old, new, count=1):
    changed = text.replace(old, new, count)
    assert changed != text, "nothing to change: %r is not in the Korean notes" % old
    return changed


def first_expected_line(text):
    block = text[text.index("```text\n", text.index("\n## ")) + len("```text\n"):]
    return block.split("\n", 1)[0]


def first_code_span(text):
    return re.search(r"`([A-Za-z_]\w+)`", text[text.index("\n## "):]).group(0)


def first_microsoft_link(text):
    return re.search(r"https://learn\.microsoft\.com/ko-kr/[^)\s]+", text).group(0)


# name: (the English notes whose Korean edition is drifted, the drift, what the report says)
CHAPTER = "chapters/09-acceptex/README.md"
DRIFTS = {
    "an expected output line changed":
        (CHAPTER, lambda t: drifted(t, first_expected_line(t), first_expected_line(t) + " (x)"),
         "code block"),
    "a heading dropped":
        (CHAPTER, lambda t: drifted(t, "\n## 함정\n", "\n함정\n"), "headings differ"),
    "a recurring title translated otherwise":
        (CHAPTER, lambda t: drifted(t, "\n## 함정\n", "\n## 주의할 점\n"), "must be '함정'"),
    "a code span translated":
        (CHAPTER, lambda t: t.replace(first_code_span(t), "`번역된_이름`"), "code spans"),
    "a Microsoft link to the English page":
        (CHAPTER, lambda t: drifted(t, first_microsoft_link(t),
                                    first_microsoft_link(t).replace("/ko-kr/", "/en-us/")),
         "English edition"),
    "a link to a chapter's English notes":
        ("README.md", lambda t: re.sub(r"(chapters/[0-9][0-9]-[a-z-]+/)README\.ko\.md",
                                       r"\1README.md", t, count=1),
         "English notes"),
    "an indented code block changed":
        ("README.md", lambda t: drifted(t, "\n    common/ ", "\n    common/  "), "code block"),
    "a table row dropped":
        (CHAPTER, lambda t: re.sub(r"\n\|[^\n]*\|\n(?=\n)", "\n\n", t, count=1), "tables differ"),
    "an avoided word in the prose":
        (CHAPTER, lambda t: drifted(t, "\n## 함정\n\n", "\n## 함정\n\n컴플리션 포트는 "),
         "is not used"),
    "a glossary term never used":
        (CHAPTER, lambda t: t.replace("완료 포트", "포트"), "never says '완료 포트'"),
    "the language line missing":
        (CHAPTER, lambda t: drifted(t, korean.KOREAN_LANGUAGE_LINE, ""), "language line"),
}


@pytest.mark.parametrize("name", sorted(DRIFTS))
def test_the_check_catches(name):
    english, drift, expected = DRIFTS[name]
    text = korean.read(path(korean.korean_path_of(english)))
    assert not korean.compare(korean.read(path(english)), text), \
        "the pair this test drifts does not agree to begin with"
    problems = korean.compare(korean.read(path(english)), drift(text))
    assert any(expected in problem for problem in problems), (name, problems)


def test_an_avoided_word_inside_a_quote_is_allowed():
    english = CHAPTER
    text = korean.read(path(korean.korean_path_of(english)))
    quoted = drifted(text, "\n## 함정\n\n", "\n## 함정\n\n“겹치는 I/O 작업” ")
    assert not korean.compare(korean.read(path(english)), quoted)
