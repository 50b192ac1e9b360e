"""The documentation site and the diagrams (docs/README.md).

`make docs` must succeed (doxygen fails it on any warning: an undocumented function in
common/, a broken link in the notes), and give a page per chapter with notes, in order,
each linking to its neighbours. The diagram SVGs must be rendered from their .dot files
as they are now.
"""

import glob
import html
import os
import re
import shutil
import subprocess

import pytest

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


def chapter_notes():
    """(number, folder, title) of every chapter with notes, in order."""
    notes = []
    for readme in sorted(glob.glob(os.path.join(ROOT, "chapters", "[0-9][0-9]-*", "README.md"))):
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


def test_a_page_per_chapter_in_order(site):
    notes = chapter_notes()
    assert notes, "no chapter has notes"
    listing = page_text("chapters.html")
    positions = []
    for number, folder, title in notes:
        page = "chapter%s.html" % number
        assert os.path.isfile(os.path.join(HTML, page)), "%s has no page %s" % (folder, page)
        assert title.split("·")[-1].strip() in page_words(page), "%s: title missing" % page
        assert 'href="%s"' % page in listing, "chapters.html does not list " + page
        positions.append(listing.index('href="%s"' % page))
    assert positions == sorted(positions), "chapters.html lists the chapters out of order"


def test_each_chapter_links_to_its_neighbours(site):
    pages = ["chapter%s.html" % number for number, _, _ in chapter_notes()]
    for i, page in enumerate(pages):
        text = page_text(page)
        if i > 0:
            assert 'href="%s"' % pages[i - 1] in text, page + " does not link to the previous"
        if i + 1 < len(pages):
            assert 'href="%s"' % pages[i + 1] in text, page + " does not link to the next"


def test_api_reference_with_call_graphs(site):
    for header in glob.glob(os.path.join(ROOT, "common", "*.h")):
        page = os.path.basename(header).replace(".", "_8") + ".html"
        assert os.path.isfile(os.path.join(HTML, page)), "no reference page for " + header
    assert glob.glob(os.path.join(HTML, "*_cgraph.svg")), "no call graphs"
    assert glob.glob(os.path.join(HTML, "*_icgraph.svg")), "no caller graphs"


def test_every_chapter_source_is_browsable(site):
    for main_c in glob.glob(os.path.join(ROOT, "chapters", "*", "main.c")):
        folder = os.path.basename(os.path.dirname(main_c))
        page = "%s_2main_8c_source.html" % folder
        assert os.path.isfile(os.path.join(HTML, page)), "no source page for " + folder
