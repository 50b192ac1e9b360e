"""The pitfall lab (scripts/pitfall.py, `make pitfall`): every chapters/NN-topic/pitfalls/
NAME.patch puts one mistake of its chapter's notes back into a copy of the chapter's
main.c, and the tests it names catch it. For every patch:

- its header is whole: one Pitfall, Notes and Expect line, each a sentence, and
  Caught-by lines naming tests of its own chapter that exist; Notes is the bold title of
  a pitfall in the chapter's README.md, whose entry ends with "See it fail: `make pitfall
  CH=NN NAME=...`.", and the Korean notes' entry in the same place in their Pitfalls
  section ends with "직접 실패를 확인해 보세요: `make pitfall CH=NN NAME=...`.";
- it still applies to the chapter's main.c as it is now (git apply --check);
- the program it makes, built as `make pitfall` builds it, fails at least one of its
  Caught-by tests.

And every `make pitfall` command in the notes names a patch of that chapter.

Each broken program is built once for the whole file, BUILDERS at a time, and only its
Caught-by tests run against it, in a pytest of their own, with -x: one failure is
enough. Most of the time goes to those tests' own bounds running out (a hang caught by a
timeout) and to the Wine session each of those pytests starts and stops. The variants are
built with the Makefile's compiler, flags and library, so they are checked when the
suite tests the Makefile's build, not a CMake one (IOCP_BUILD_DIR), and only where make
and git can be run.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

import chapters
import korean

sys.path.insert(0, os.path.join(chapters.ROOT, "scripts"))
import pitfall as lab  # noqa: E402  (the lab itself: patches, builds, verdicts)

PITFALLS = lab.all_pitfalls()
IDS = [p.label for p in PITFALLS]
BUILDERS = 2  # variants compiled at once, one per core of the machines this runs on
SEE_IT_FAIL = "See it fail: `%s`."
KOREAN_SEE_IT_FAIL = "직접 실패를 확인해 보세요: `%s`."
# A `make pitfall` command as the notes write it.
COMMAND = re.compile(r"`make pitfall CH=(?P<chapter>\d\d) NAME=(?P<name>[^`\s]+)`")
BOLD_TITLE = re.compile(r"^\*\*(?P<title>.+?)\*\*", re.S)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def pitfall_entries(notes, heading):
    """The entries of the section "## HEADING" of the notes file NOTES, in order: each is
    the text from a paragraph that opens with a bold title up to the next such paragraph
    (a list or a second paragraph of the same pitfall belongs to it)."""
    text = read(notes)
    marker = "\n## %s\n" % heading
    assert marker in text, "%s has no '## %s' section" % (lab.shown(notes), heading)
    section = text.split(marker, 1)[1].split("\n## ", 1)[0]
    entries = []
    for paragraph in re.split(r"\n[ \t]*\n", section.strip("\n")):
        if paragraph.startswith("**"):
            entries.append(paragraph)
        elif entries:
            entries[-1] += "\n\n" + paragraph
    return entries


def flat(text):
    return " ".join(text.split())


def title_of(entry):
    return flat(BOLD_TITLE.match(entry).group("title"))


def test_there_are_pitfalls():
    assert len(PITFALLS) >= 15, "only %d pitfalls: %r" % (len(PITFALLS), PITFALLS)


@pytest.mark.parametrize("pitfall", PITFALLS, ids=IDS)
def test_header_is_whole(pitfall):
    assert lab.NAME.match(pitfall.name), "%s: the name is not in kebab-case" % pitfall.label
    for field in ("Pitfall", "Notes", "Expect"):
        values = pitfall.fields[field]
        assert len(values) == 1, "%s: %d '%s:' lines, not one" % (pitfall.label, len(values),
                                                                   field)
    for field in ("Pitfall", "Expect"):
        assert pitfall.fields[field][0].endswith("."), (
            "%s: the '%s:' line is not a sentence ending with a full stop" % (pitfall.label,
                                                                             field))
    for test in pitfall.caught_by:
        match = lab.NODE_ID.match(test)
        assert match, "%s: Caught-by %r is not a pytest node id of a test in tests/" % (
            pitfall.label, test)
        assert re.search(r"(^|-)%s(-|$)" % re.escape(pitfall.chapter.name),
                         match.group("parameters")), (
            "%s: Caught-by %s does not run against %s" % (pitfall.label, test,
                                                          pitfall.chapter.name))
        path = os.path.join(chapters.ROOT, test.split("::")[0])
        assert os.path.isfile(path), "%s: Caught-by names %s, which does not exist" % (
            pitfall.label, test.split("::")[0])


@pytest.mark.parametrize("pitfall", PITFALLS, ids=IDS)
def test_notes_link_it_in_both_languages(pitfall):
    english = os.path.join(pitfall.chapter.dir, "README.md")
    entries = pitfall_entries(english, "Pitfalls")
    titles = [title_of(e) for e in entries]
    assert pitfall.notes_title in titles, (
        "%s: 'Notes: %s' is not the bold title of a pitfall in %s; its titles: %s" % (
            pitfall.label, pitfall.notes_title, lab.shown(english), titles))
    place = titles.index(pitfall.notes_title)
    sentence = SEE_IT_FAIL % pitfall.command
    assert flat(entries[place]).endswith(sentence), (
        "%s: the pitfall \"%s\" in %s does not end with \"%s\"" % (
            pitfall.label, pitfall.notes_title, lab.shown(english), sentence))

    korean_notes = os.path.join(pitfall.chapter.dir, "README.ko.md")
    heading = korean.glossary()[1]["Pitfalls"]
    korean_entries = pitfall_entries(korean_notes, heading)
    assert len(korean_entries) == len(entries), (
        "%s has %d pitfalls, %s %d: cannot tell which is \"%s\"" % (
            lab.shown(english), len(entries), lab.shown(korean_notes), len(korean_entries),
            pitfall.notes_title))
    sentence = KOREAN_SEE_IT_FAIL % pitfall.command
    assert flat(korean_entries[place]).endswith(sentence), (
        "%s: pitfall %d of %s (\"%s\" in English) does not end with \"%s\"" % (
            pitfall.label, place + 1, lab.shown(korean_notes), pitfall.notes_title,
            sentence))


def test_every_command_in_the_notes_names_a_pitfall():
    known = {(p.chapter.name, p.name) for p in PITFALLS}
    wrong = []
    for chapter in chapters.ALL:
        for notes in ("README.md", "README.ko.md"):
            path = os.path.join(chapter.dir, notes)
            if not os.path.isfile(path):
                continue
            for match in COMMAND.finditer(read(path)):
                if int(match.group("chapter")) != chapter.number or \
                        (chapter.name, match.group("name")) not in known:
                    wrong.append("%s: %s" % (lab.shown(path), match.group(0)))
    assert not wrong, "commands that name no pitfall of their chapter: %s" % wrong


def missing_tools():
    """Why this machine cannot build and run the variants as `make pitfall` does, or None."""
    for tool in ("git", "make"):
        if shutil.which(tool) is None:
            return "no %s on PATH: the pitfall lab needs it" % tool
    try:
        settings = lab.make_settings()
    except lab.Problem as e:
        return str(e)
    if shutil.which(shlex.split(settings["CC"])[0]) is None:
        return "no %s on PATH: the pitfall lab builds with the Makefile's compiler" % (
            settings["CC"])
    makefile_build = os.path.join(chapters.ROOT, settings["BUILD"])
    if os.path.abspath(chapters.BUILD_DIR) != os.path.abspath(makefile_build):
        return ("the suite runs against IOCP_BUILD_DIR=%s, not the Makefile's %s: the "
                "pitfall variants are built as the Makefile builds, so `make test` checks "
                "them" % (chapters.BUILD_DIR, lab.shown(makefile_build)))
    return None


@pytest.mark.parametrize("pitfall", PITFALLS, ids=IDS)
def test_patch_still_applies(pitfall):
    if shutil.which("git") is None:
        pytest.skip("no git on PATH: the pitfall lab applies its patches with git apply")
    try:
        lab.check_applies(pitfall)
    except lab.Problem as e:
        raise AssertionError(str(e)) from None


@pytest.fixture(scope="module")
def variants():
    """Every pitfall's broken program, built once for the file, BUILDERS at a time:
    {label: None when it built, or the lab.Problem that stopped it}."""
    reason = missing_tools()
    if reason:
        pytest.skip(reason)

    def build(pitfall):
        try:
            lab.build(pitfall)
        except lab.Problem as e:
            return e
        return None

    with ThreadPoolExecutor(BUILDERS) as pool:
        return dict(zip(IDS, pool.map(build, PITFALLS)))


@pytest.mark.parametrize("pitfall", PITFALLS, ids=IDS)
def test_the_broken_program_fails_a_caught_by_test(pitfall, variants):
    problem = variants[pitfall.label]
    assert problem is None, "%s could not be built: %s" % (pitfall.label, problem)
    try:
        results, output = lab.run_tests(pitfall, first=True, quiet=True)
    except lab.Problem as e:
        raise AssertionError(str(e)) from None
    code, verdict = lab.verdict(pitfall, [results])
    assert code == 0, "%s\n%s\n--- the Caught-by tests' pytest:\n%s" % (
        verdict, "\n".join(lab.digest(results)), output)


def test_only_a_failed_test_catches_a_pitfall():
    # Guards the verdict: a pass, a skip or an error in a test's set-up is not a catch,
    # and with several runs every one of them must catch it.
    def results(*outcomes):
        return [{"nodeid": "tests/test_x.py::test_%d[x]" % n, "outcome": outcome,
                 "message": "", "programs": []} for n, outcome in enumerate(outcomes)]

    pitfall = PITFALLS[0]
    assert lab.verdict(pitfall, [results("passed", "failed")])[0] == 0
    for outcomes in [("passed",), ("skipped",), ("error",), ("passed", "error")]:
        code, line = lab.verdict(pitfall, [results(*outcomes)])
        assert code == 1 and "NOT caught" in line, (outcomes, line)
    assert lab.verdict(pitfall, [results("failed"), results("passed")])[0] == 1


def test_the_lab_tells_a_missing_pitfall_by_its_name():
    # Guards the lab's own errors: a wrong name is named, with the chapter's pitfalls.
    done = subprocess.run([sys.executable, os.path.join(chapters.ROOT, "scripts", "pitfall.py"),
                           "run", "07", "no-such-pitfall"], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, cwd=chapters.ROOT)
    assert done.returncode == 2, done
    assert "07-disconnect has no pitfall 'no-such-pitfall'" in done.stderr, done.stderr
