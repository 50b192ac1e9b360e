"""Each chapter's tour (tests/tour.py) passes: its program, driven by tour.txt, prints
what the README's "## Expected output" block says. And the tour can fail: a copy of the
chapter whose expected output has one word changed makes it fail."""

import os
import re
import shutil

import pytest

import chapters
import tour as tour_player

TOURED = [c for c in chapters.ALL if os.path.isfile(os.path.join(c.dir, "tour.txt"))]
IDS = chapters.ids(TOURED)
PLACEHOLDER = re.compile(r"<[^<>]*>")
WORD = re.compile(r"[A-Za-z]{4,}")


class Tour:
    """A finished tour: its exit code and the lines it printed."""

    def __init__(self, code, out):
        self.code = code
        self.stdout = out.splitlines()

    def __repr__(self):
        return "exit code %r\n%s" % (self.code, "\n".join(self.stdout))


@pytest.fixture
def tour(capsys):
    """tour(ARGS...) plays the tour in this session's Wine and returns a Tour."""
    def play(*args):
        capsys.readouterr()
        code = tour_player.tour(["--build-dir", chapters.BUILD_DIR] + list(args))
        return Tour(code, capsys.readouterr().out)
    return play


def test_every_chapter_has_a_tour():
    assert [c.name for c in TOURED] == [c.name for c in chapters.ALL]


@pytest.mark.parametrize("chapter", TOURED, ids=IDS)
def test_tour_passes(chapter, tour):
    result = tour(chapter.name)
    assert result.code == 0, result
    assert "PASS %s" % chapter.name in result.stdout, result
    assert result.stdout[-1] == "tour: 1 passed, 0 failed", result


def expected_block(readme_lines):
    """(first, end) line indexes of the fenced block under "## Expected output"."""
    heading = readme_lines.index("## Expected output")
    first = next(i for i in range(heading + 1, len(readme_lines))
                 if readme_lines[i].startswith("```")) + 1
    end = next(i for i in range(first, len(readme_lines)) if readme_lines[i].startswith("```"))
    return first, end


def change_one_word(readme):
    """Changes the first literal word (not a <placeholder>) of the expected output."""
    with open(readme, encoding="utf-8", newline="") as f:
        lines = f.read().split("\n")
    first, end = expected_block(lines)
    for i in range(first, end):
        taken = [m.span() for m in PLACEHOLDER.finditer(lines[i])]
        for word in WORD.finditer(lines[i]):
            if not any(a <= word.start() < b for a, b in taken):
                lines[i] = lines[i][:word.start()] + "Tampered" + lines[i][word.end():]
                with open(readme, "w", encoding="utf-8", newline="") as f:
                    f.write("\n".join(lines))
                return word.group(0)
    raise AssertionError("no literal word in the expected output of " + readme)


@pytest.mark.parametrize("chapter", TOURED, ids=IDS)
def test_tour_fails_when_the_expected_output_is_wrong(chapter, tour, tmp_path):
    copy = tmp_path / "chapters" / chapter.name
    shutil.copytree(chapter.dir, str(copy))
    chapters_dir = str(tmp_path / "chapters")

    # The untouched copy passes: what follows fails because of the change alone.
    before = tour("--chapters-dir", chapters_dir, chapter.name)
    assert before.code == 0 and "PASS %s" % chapter.name in before.stdout, before

    word = change_one_word(str(copy / "README.md"))
    after = tour("--chapters-dir", chapters_dir, chapter.name)
    assert after.code == 1, ("changing %r did not fail the tour" % word, after)
    assert any(line.startswith("FAIL %s" % chapter.name) for line in after.stdout), after
    assert after.stdout[-1] == "tour: 0 passed, 1 failed", after
