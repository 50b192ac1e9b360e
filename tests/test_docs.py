"""The documentation site and the diagrams (docs/README.md).

`make docs` must succeed (doxygen fails it on any warning: an undocumented function in
common/, a broken link in the notes), and give a page per chapter with notes, in order,
each linking to its neighbours, in English and in Korean (README.ko.md), each page
linking to its other language. The diagram SVGs must be rendered from their .dot files
as they are now.
"""

import glob
import html
import os
import re
import shutil
import subprocess

import pytest

from markdown_blocks import markdown_code

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HTML = os.path.join(ROOT, "build", "docs", "html")
DIAGRAMS = os.path.join(ROOT, "docs", "diagrams")
# An image link to a diagram in a chapter's notes: ![text](../../docs/diagrams/NAME.svg)
DIAGRAM_LINK = re.compile(r"!\[[^\]]*\]\((?:\.\./)*docs/diagrams/([^/()]+)\.svg\)")


def required_diagrams():
    """The diagrams the chapters' notes show (docs/README.md lists what each one is),
    read from the notes' image links, so the list follows the notes."""
    names = []
    for readme in sorted(glob.glob(os.path.join(ROOT, "chapters", "[0-9][0-9]-*", "README.md"))):
        with open(readme, encoding="utf-8") as f:
            names.extend(DIAGRAM_LINK.findall(f.read()))
    return sorted(set(names))


# The pages of each language: (notes file, suffix of its chapter pages, list of chapters).
LANGUAGES = {"en": ("README.md", "", "chapters.html"),
             "ko": ("README.ko.md", "_ko", "chapters_ko.html")}


def chapter_notes(name="README.md"):
    """(number, folder, title) of every chapter with notes NAME, in order."""
    notes = []
    for readme in sorted(glob.glob(os.path.join(ROOT, "chapters", "[0-9][0-9]-*", name))):
        folder = os.path.basename(os.path.dirname(readme))
        with open(readme, encoding="utf-8") as f:
            title = f.readline().strip()
        title = re.sub(r"\s*\{#[^}]*\}\s*$", "", title.lstrip("#").strip())
        notes.append((folder[:2], folder, title))
    return notes


def page_text(name):
    with open(os.path.join(HTML, name), encoding="utf-8") as f:
        return f.read()


def page_words(name):
    """The text of a page, without its tags and entities."""
    return html.unescape(re.sub(r"<[^>]+>", "", page_text(name)))


@pytest.fixture(scope="module")
def site():
    """Builds the site once for this module, with `make docs`."""
    if os.name == "nt" and shutil.which("doxygen") is None:
        pytest.skip("no doxygen on PATH (the Linux job builds the site)")
    done = subprocess.run(["make", "--no-print-directory", "docs"], cwd=ROOT,
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=900)
    output = done.stdout.decode("utf-8", errors="replace")
    assert done.returncode == 0, "make docs failed:\n" + output
    return output


def test_diagram_links_are_found():
    # Guards the link pattern: it matches an image link to an SVG diagram, nothing else.
    assert DIAGRAM_LINK.findall("![The shutdown](../../docs/diagrams/08-shutdown.svg)") == \
        ["08-shutdown"]
    assert not DIAGRAM_LINK.findall("[the source](../../docs/diagrams/08-shutdown.dot)")
    assert required_diagrams(), "no chapter's notes show a diagram"


def test_every_diagram_is_shown_by_a_chapter():
    shown = set(required_diagrams())
    for dot in sorted(glob.glob(os.path.join(DIAGRAMS, "*.dot"))):
        name = os.path.basename(dot)[:-len(".dot")]
        assert name in shown, "no chapter's notes show %s.svg (docs/README.md)" % name


def test_diagrams_are_current():
    for name in required_diagrams():
        assert os.path.isfile(os.path.join(DIAGRAMS, name + ".dot")), name + ".dot is missing"
        assert os.path.isfile(os.path.join(DIAGRAMS, name + ".svg")), name + ".svg is missing"
    if shutil.which("sh") is None:
        pytest.skip("no sh on PATH")
    done = subprocess.run(["sh", "docs/diagrams.sh", "check"], cwd=ROOT,
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=60)
    assert done.returncode == 0, done.stdout.decode("utf-8", errors="replace")


def test_main_page(site):
    assert os.path.isfile(os.path.join(HTML, "index.html"))


@pytest.mark.parametrize("language", sorted(LANGUAGES))
def test_a_page_per_chapter_in_order(site, language):
    name, suffix, listing_page = LANGUAGES[language]
    notes = chapter_notes(name)
    assert notes, "no chapter has notes"
    listing = page_text(listing_page)
    positions = []
    for number, folder, title in notes:
        page = "chapter%s%s.html" % (number, suffix)
        assert os.path.isfile(os.path.join(HTML, page)), "%s has no page %s" % (folder, page)
        assert title.split("·")[-1].strip() in page_words(page), "%s: title missing" % page
        assert 'href="%s"' % page in listing, "%s does not list %s" % (listing_page, page)
        positions.append(listing.index('href="%s"' % page))
    assert positions == sorted(positions), "%s lists the chapters out of order" % listing_page


@pytest.mark.parametrize("language", sorted(LANGUAGES))
def test_each_chapter_links_to_its_neighbours(site, language):
    name, suffix, _ = LANGUAGES[language]
    pages = ["chapter%s%s.html" % (number, suffix) for number, _, _ in chapter_notes(name)]
    for i, page in enumerate(pages):
        text = page_text(page)
        if i > 0:
            assert 'href="%s"' % pages[i - 1] in text, page + " does not link to the previous"
        if i + 1 < len(pages):
            assert 'href="%s"' % pages[i + 1] in text, page + " does not link to the next"


def test_each_page_links_to_its_other_language(site):
    pairs = [("index.html", "index_ko.html"), ("chapters.html", "chapters_ko.html")]
    pairs += [("chapter%s.html" % number, "chapter%s_ko.html" % number)
              for number, _, _ in chapter_notes()]
    for english, korean in pairs:
        assert 'href="%s"' % korean in page_text(english), english + " does not link to " + korean
        assert 'href="%s"' % english in page_text(korean), korean + " does not link to " + english
    assert 'href="glossary_ko.html"' in page_text("chapters_ko.html"), \
        "the Korean list of chapters does not link to the glossary"


def test_api_reference_with_call_graphs(site):
    for header in glob.glob(os.path.join(ROOT, "common", "*.h")):
        page = os.path.basename(header).replace(".", "_8") + ".html"
        # A header that a chapter keeps its own copy of (11's frame.h) gets its folder in
        # its page's name, as Doxygen tells two files of one name apart.
        pages = [page, "common_2" + page]
        assert any(os.path.isfile(os.path.join(HTML, p)) for p in pages), \
            "no reference page for " + header
    assert glob.glob(os.path.join(HTML, "*_cgraph.svg")), "no call graphs"
    assert glob.glob(os.path.join(HTML, "*_icgraph.svg")), "no caller graphs"


def test_every_chapter_source_is_browsable(site):
    for main_c in glob.glob(os.path.join(ROOT, "chapters", "*", "main.c")):
        folder = os.path.basename(os.path.dirname(main_c))
        page = "%s_2main_8c_source.html" % folder
        assert os.path.isfile(os.path.join(HTML, page)), "no source page for " + folder


# --- what the pages show is what the Markdown says ---------------------------------------
# docs/site.sh's filter escapes some characters of the notes' prose for doxygen ("
# becomes &quot;, %word becomes %%word), which doxygen turns back into the characters. In
# a code block doxygen copies everything as it is, so the same escape would show as text:
# a reader would see &quot; where the notes have ". These tests read the code blocks as
# doxygen 1.9.4 does and compare each with the page.

# An entity as a reader sees it: the page's text, once its own entities are decoded,
# still holds one.
SHOWN_ENTITY = re.compile(r"&(?:#[0-9]+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);")
def shown_code(text):
    """The code blocks of a page as a reader sees them: a list of lines for each."""
    blocks = []
    for match in re.finditer(r'<div class="fragment">(.*?)</div><!-- fragment -->'
                             r'|<pre class="fragment">(.*?)</pre>', text, re.S):
        if match.group(1) is not None:  # a fenced block
            lines = re.findall(r'<div class="line">(.*?)</div>', match.group(1), re.S)
        else:  # an indented block
            lines = match.group(2).rstrip("\n").split("\n")
        blocks.append([html.unescape(re.sub(r"<[^>]+>", "", line)) for line in lines])
    return blocks


def markdown_pages():
    """(Markdown file, its page) for README.md, docs/README.md, each chapter's notes and
    the Korean edition of them all."""
    pages = [("README.md", "index.html"), ("docs/README.md", "docs_site.html"),
             ("README.ko.md", "index_ko.html"), ("docs/glossary.ko.md", "glossary_ko.html")]
    for name, suffix, _ in LANGUAGES.values():
        pages += [("chapters/%s/%s" % (folder, name), "chapter%s%s.html" % (number, suffix))
                  for number, folder, _ in chapter_notes(name)]
    return [(md, page) for md, page in pages if os.path.isfile(os.path.join(ROOT, md))]


def shown_entities(text):
    """The entities a reader would see as text on a page: "&quot;" for "&amp;quot;"."""
    return SHOWN_ENTITY.findall(html.unescape(re.sub(r"<[^>]+>", "", text)))


def test_the_page_readers_agree_with_doxygen():
    # Guards the readers above on the cases that broke the site.
    assert shown_entities('<div class="line">f(&amp;quot;x&amp;quot;) &amp;lt;</div>') == \
        ["&quot;", "&quot;", "&lt;"]
    assert shown_entities("<code>f(&quot;x&quot;) &lt;a&gt; &amp;b 'c'</code>") == []
    blocks, prose = markdown_code("\n".join([
        "A fence right after a line of text:",
        "```c",
        'f("x");',
        "```",
        "",
        "    indented: code",
        "",
        "- a list item",
        "",
        "  its second paragraph, not code",
        "",
        "      code in the item",
        "text",
        "    not code: no blank line above",
    ]))
    assert blocks == [['f("x");'], ["indented: code"], ["code in the item"]]
    assert "its second paragraph" in prose and "not code: no blank" in prose
    page = ('<div class="fragment"><div class="line">f(&quot;x&quot;);</div>\n'
            '</div><!-- fragment --><pre class="fragment">a &amp;&amp; b\n</pre>')
    assert shown_code(page) == [['f("x");'], ["a && b"]]


def test_no_page_shows_an_entity_as_text(site):
    for path in sorted(glob.glob(os.path.join(HTML, "*.html"))):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        found = shown_entities(text)
        where = [line.strip()[:160] for line in text.split("\n") if shown_entities(line)]
        assert not found, "%s shows %d entities as text (%s), e.g.:\n%s" % (
            os.path.basename(path), len(found), ", ".join(sorted(set(found))),
            "\n".join(where[:5]))


def without_blank_end(lines):
    """LINES without the lines at its end that hold only white space."""
    lines = list(lines)
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def test_code_blocks_show_as_written(site):
    for md, page in markdown_pages():
        with open(os.path.join(ROOT, md), encoding="utf-8") as f:
            blocks, _ = markdown_code(f.read())
        shown = shown_code(page_text(page))
        assert len(shown) == len(blocks), "%s shows %d code blocks, %s has %d" % (
            page, len(shown), md, len(blocks))
        for number, (written, seen) in enumerate(zip(blocks, shown), 1):
            # Doxygen drops a block's last lines when they hold only spaces (a diff's
            # blank context line); they show nothing either way.
            written, seen = without_blank_end(written), without_blank_end(seen)
            wrong = [(a, b) for a, b in zip(written, seen) if a != b]
            assert written == seen, "%s: code block %d of %s shows\n  %s\nfor\n  %s" % (
                page, number, md,
                wrong[0][1] if wrong else "%d lines" % len(seen),
                wrong[0][0] if wrong else "%d lines" % len(written))


def test_code_spans_show_as_written(site):
    # The filter escapes % and :: in code spans (doxygen 1.9.4 would drop the % of %lu and
    # take ::word for a link); the page must show the span as the notes write it.
    span = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)
    for md, page in markdown_pages():
        with open(os.path.join(ROOT, md), encoding="utf-8") as f:
            _, prose = markdown_code(f.read())
        shown = {re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", code))).strip()
                 for code in re.findall(r"<code>(.*?)</code>", page_text(page), re.S)}
        for match in span.finditer(prose):
            written = re.sub(r"\s+", " ", match.group(2)).strip()
            assert written in shown, "%s does not show the code span `%s` of %s" % (
                page, written, md)
