"""The checks that keep the Korean notes (README.ko.md) in step with the English ones
(README.md), and with the glossary docs/glossary.ko.md.

tests/test_korean.py runs them for every pair; run them by hand on files you are writing:

    /usr/bin/python3 tests/korean.py chapters/05-completion-workers/README.ko.md ...

It prints each problem and exits 1 if there is any. What must agree (prose is free):
headings (count, levels, order; the recurring titles translated as the glossary says),
fenced code blocks (byte for byte: the Expected output and What changed blocks are
among them), HTML comment markers, the set of code spans, the link targets (a Microsoft
page in its Korean edition, other notes in their Korean edition), the tables' row
counts, and the glossary's terms.
"""

import os
import re
import sys

from markdown_blocks import markdown_code

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GLOSSARY = os.path.join(ROOT, "docs", "glossary.ko.md")

ENGLISH_LANGUAGE_LINE = "**English** · [한국어](README.ko.md)"
KOREAN_LANGUAGE_LINE = "[English](README.md) · **한국어**"

HEADING = re.compile(r"^(#{1,6}) +(.*?) *$")
# A code span may wrap onto the next line (the line end counts as a space), never past
# the end of its paragraph.
CODE_SPAN = re.compile(r"(`+)((?:(?!\n[ \t]*\n)[^`]|(?!\1)`)+?)\1", re.S)
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?: \"[^\"]*\")?\)")
BOLD_LEAD = re.compile(r"^\*\*([^*]+):\*\*")
QUOTE = re.compile(r"“[^”]*”", re.S)
ENGLISH_QUOTE = re.compile(r"\"[^\"\n]*(?:\n[^\"\n]+)*\"")
# The English forms a glossary term is looked for in: the word itself and its usual
# endings, never inside a longer word or a hyphenated name.
ENDINGS = r"(?:s|es|d|ed|ing|led|ling)?"


def korean_path_of(english):
    return english[:-len("README.md")] + "README.ko.md"


def english_path_of(korean):
    return korean[:-len("README.ko.md")] + "README.md"


class Notes:
    """One notes file, split into what must agree across languages and the prose."""

    def __init__(self, text):
        self.text = text
        self.lines = text.split("\n")
        self.code_blocks, prose = markdown_code(text)  # fenced and indented, as doxygen
        self.headings = []      # (level, text)
        self.markers = []       # <!-- ... --> lines
        self.tables = []        # the number of rows of each table
        self.bold_leads = []    # the text of each "**Lead:**" that starts a paragraph
        in_table = False
        for line in prose.split("\n"):
            if line.startswith("|"):
                if not in_table:
                    self.tables.append(0)
                self.tables[-1] += 1
            in_table = line.startswith("|")
            heading = HEADING.match(line)
            if heading:
                self.headings.append((len(heading.group(1)), heading.group(2)))
            if line.strip().startswith("<!--"):
                self.markers.append(line.strip())
            lead = BOLD_LEAD.match(line)
            if lead:
                self.bold_leads.append(lead.group(1))
        self.code_spans = {" ".join(m.group(2).split()) for m in CODE_SPAN.finditer(prose)}
        without_code = CODE_SPAN.sub(" ", prose)
        self.links = [m.group(1) for m in LINK.finditer(without_code)]
        self.prose = without_code


def read(path):
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


def glossary(path=GLOSSARY):
    """(terms, titles): terms are (english, korean, [avoided]) from the table under
    "## 용어"; titles map each recurring English title or lead-in to its Korean one."""
    terms, titles, section = [], {}, None
    for line in read(path).split("\n"):
        if line.startswith("## "):
            section = line[3:].strip()
            continue
        if not line.startswith("|") or line.startswith("|---"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[0] == "English":
            continue
        if section == "용어":
            avoided = [word.strip() for word in cells[2].split(",") if word.strip()]
            terms.append((cells[0], cells[1], avoided))
        elif section == "절 제목":
            titles[cells[0]] = cells[1]
    return terms, titles


def english_link(target):
    """A Korean file's link target as the English file would write it, or None for a link
    to the glossary, which either file may have as often as it likes."""
    if target.rstrip("/").endswith("glossary.ko.md"):
        return None
    target = target.replace("learn.microsoft.com/ko-kr/", "learn.microsoft.com/en-us/")
    return re.sub(r"README\.ko\.md(?=$|#)", "README.md", target)


def without_line(text, line):
    """text with its first line equal to line emptied (the language line, which is the
    one line the two files may not share)."""
    lines = text.split("\n")
    if line in lines:
        lines[lines.index(line)] = ""
    return "\n".join(lines)


def compare(english_text, korean_text, terms_and_titles=None):
    """Every way the Korean notes differ from the English in what must agree: a list of
    problems, each a line of text."""
    problems = []
    en = Notes(without_line(english_text, ENGLISH_LANGUAGE_LINE))
    ko = Notes(without_line(korean_text, KOREAN_LANGUAGE_LINE))
    terms, titles = terms_and_titles or glossary()

    if not korean_text.endswith("\n") or korean_text.endswith("\n\n"):
        problems.append("the file must end with exactly one newline")
    if "\r" in korean_text:
        problems.append("CR characters: use LF line ends")
    if korean_text.split("\n")[2:3] != [KOREAN_LANGUAGE_LINE]:
        problems.append("line 3 must be the language line %r" % KOREAN_LANGUAGE_LINE)
    if english_text.split("\n")[2:3] != [ENGLISH_LANGUAGE_LINE]:
        problems.append("the English file's line 3 must be %r" % ENGLISH_LANGUAGE_LINE)

    en_levels = [level for level, _ in en.headings]
    ko_levels = [level for level, _ in ko.headings]
    if en_levels != ko_levels:
        problems.append("headings differ: English levels %s, Korean %s (%d vs %d headings)"
                        % (en_levels, ko_levels, len(en_levels), len(ko_levels)))
    else:
        for (level, en_title), (_, ko_title) in zip(en.headings, ko.headings):
            if en_title in titles and ko_title != titles[en_title]:
                problems.append("heading %r must be %r (the glossary), not %r"
                                % (en_title, titles[en_title], ko_title))
    if en.headings and ko.headings:
        number = re.match(r"\d\d · ", en.headings[0][1])
        if number and not ko.headings[0][1].startswith(number.group(0)):
            problems.append("the title must start with %r" % number.group(0))
    ko_leads = set(ko.bold_leads)
    for lead in en.bold_leads:
        if lead in titles and titles[lead] not in ko_leads:
            problems.append("bold lead-in **%s:** must appear as **%s:**" % (lead, titles[lead]))

    if len(en.code_blocks) != len(ko.code_blocks):
        problems.append("%d code blocks in English, %d in Korean"
                        % (len(en.code_blocks), len(ko.code_blocks)))
    for number, (a, b) in enumerate(zip(en.code_blocks, ko.code_blocks), 1):
        if a != b:
            where = next(i for i in range(min(len(a), len(b)) + 1)
                         if i >= len(a) or i >= len(b) or a[i] != b[i])
            problems.append("code block %d differs from the English at its line %d: %r for %r"
                            % (number, where + 1, b[where] if where < len(b) else None,
                               a[where] if where < len(a) else None))
    if en.markers != ko.markers:
        problems.append("HTML comment markers differ: %r vs %r" % (en.markers, ko.markers))

    missing = sorted(en.code_spans - ko.code_spans)
    extra = sorted(ko.code_spans - en.code_spans)
    if missing:
        problems.append("code spans of the English missing: %s" % ", ".join("`%s`" % s for s in missing))
    if extra:
        problems.append("code spans the English lacks: %s" % ", ".join("`%s`" % s for s in extra))

    en_links = sorted(t for t in en.links if not t.rstrip("/").endswith("glossary.ko.md"))
    ko_raw = ko.links
    for target in ko_raw:
        if "learn.microsoft.com/en-us/" in target:
            problems.append("link to the English edition of a Microsoft page: %s" % target)
        if re.search(r"(^|/)README\.md(#|$)", target) and target != "docs/README.md" \
                and not target.endswith("docs/README.md"):
            problems.append("link to English notes (use README.ko.md): %s" % target)
    ko_links = sorted(t for t in map(english_link, ko_raw) if t is not None)
    if en_links != ko_links:
        only_en = sorted(set(en_links) - set(ko_links))
        only_ko = sorted(set(ko_links) - set(en_links))
        problems.append("links differ: %d in English, %d in Korean; only in English: %s; "
                        "only in Korean: %s" % (len(en_links), len(ko_links), only_en, only_ko))

    if en.tables != ko.tables:
        problems.append("tables differ: rows per table %s in English, %s in Korean"
                        % (en.tables, ko.tables))

    if ko.prose.count("“") != ko.prose.count("”"):
        problems.append("unbalanced quotes: %d “ and %d ”"
                        % (ko.prose.count("“"), ko.prose.count("”")))
    own_words = QUOTE.sub(" ", ko.prose)
    # What the English says in its own words: not Microsoft's, which it quotes in "...".
    en_own_words = ENGLISH_QUOTE.sub(" ", en.prose)
    for english, korean, avoided in terms:
        pattern = r"(?<![\w./-])%s%s(?![\w-]|\.\w)" % (re.escape(english), ENDINGS)
        if re.search(pattern, en_own_words, re.I) and korean not in ko.prose:
            problems.append("the English says %r; the Korean never says %r (the glossary)"
                            % (english, korean))
        for word in avoided:
            if word in own_words:
                problems.append("%r is not used (the glossary says %r)" % (word, korean))
    return problems


def check_file(korean):
    english = english_path_of(korean)
    if not os.path.exists(english):
        return ["no English notes beside it (%s)" % english]
    return compare(read(english), read(korean))


def main(paths):
    if not paths:
        print("usage: tests/korean.py README.ko.md ...", file=sys.stderr)
        return 2
    bad = 0
    for path in paths:
        if not path.endswith("README.ko.md"):
            print("%s: not a README.ko.md" % path)
            bad += 1
            continue
        problems = check_file(path)
        for problem in problems:
            print("%s: %s" % (path, problem))
        if not problems:
            print("%s: ok" % path)
        bad += bool(problems)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
