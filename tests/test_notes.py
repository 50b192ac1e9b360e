"""The "What changed" sections of the chapter notes match the code (scripts/notes.sh),
in the English notes and the Korean ones (README.ko.md), and the check can fail: stale,
missing and malformed sections are all caught."""

import os
import shutil
import subprocess

import pytest

import chapters
import harness

NOTES_TIMEOUT = 60.0
BEGIN = "<!-- what-changed:begin -->"
END = "<!-- what-changed:end -->"


def notes(*args):
    """Runs scripts/notes.sh ARGS with sh (MSYS2's on Windows); returns harness.Result."""
    sh = shutil.which("sh")
    assert sh, "notes.sh needs a POSIX sh on PATH (on Windows: MSYS2 or Git for Windows)"
    script = harness.NOTES_SH.replace("\\", "/")
    done = subprocess.run([sh, script] + [a.replace("\\", "/") for a in args],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, cwd=chapters.ROOT, timeout=NOTES_TIMEOUT)
    result = harness.Result(done.returncode, done.stdout, done.stderr)
    result.title = "notes.sh " + " ".join(args)
    result.is_chapter = False
    harness.RUNS.append(result)
    return result


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def read(path):
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


def test_notes_are_current():
    result = notes("--check")
    assert result.code == 0, result


def copy_chapters(tmp_path):
    """A copy of every chapter's main.c and notes; returns the copy's folder."""
    root = str(tmp_path / "chapters")
    for chapter in chapters.ALL:
        for name in ("main.c", "README.md", "README.ko.md"):
            source = os.path.join(chapter.dir, name)
            if os.path.isfile(source):
                os.makedirs(os.path.join(root, chapter.name), exist_ok=True)
                shutil.copyfile(source, os.path.join(root, chapter.name, name))
    return root


@pytest.mark.parametrize("notes_file", ["README.md", "README.ko.md"])
def test_check_catches_a_stale_section(tmp_path, notes_file):
    root = copy_chapters(tmp_path)
    last = chapters.ALL[-1].name
    readme = os.path.join(root, last, notes_file)
    assert os.path.isfile(readme), "no %s in chapter %s" % (notes_file, last)

    # The copy checks like the real notes: what follows fails because of the change alone.
    before = notes("--check", "--chapters-dir", root)
    assert before.code == 0, before

    text = read(readme)
    start, stop = text.index(BEGIN), text.index(END)
    section = text[start:stop]
    changed = section.replace("\n+", "\n+/* tampered */", 1)
    assert changed != section, "no added line in the what-changed section of " + readme
    write(readme, text[:start] + changed + text[stop:])
    after = notes("--check", "--chapters-dir", root)
    assert after.code == 1, after
    assert any(line.startswith("stale: ") and last + "/" + notes_file in line
               for line in after.stdout), after
    assert read(readme) == text[:start] + changed + text[stop:], "--check changed a file"


def test_check_catches_changed_code(tmp_path):
    root = copy_chapters(tmp_path)
    assert len(chapters.ALL) >= 3, "needs three chapters"
    middle, after_it = chapters.ALL[1].name, chapters.ALL[2].name
    before = notes("--check", "--chapters-dir", root)
    assert before.code == 0, before

    with open(os.path.join(root, middle, "main.c"), "a", encoding="utf-8") as f:
        f.write("/* a change the notes do not show yet */\n")
    result = notes("--check", "--chapters-dir", root)
    assert result.code == 1, result
    stale = [line for line in result.stdout if line.startswith("stale: ")]
    assert any(middle in line for line in stale), result
    assert any(after_it in line for line in stale), result


# --- notes.sh itself, on small made-up chapters under a temporary folder -----------------
OLD = "one\ntwo\nthree\n"
NEW = "one\n2\nthree\n"
THIRD = "one\n2\nthree\nfour\n"
README = "# Notes\n\n## What changed\n\n%s\n%s\n\n## Pitfalls\n\nNone.\n" % (BEGIN, END)


def made_up_chapters(tmp_path):
    root = str(tmp_path / "chapters")
    write(os.path.join(root, "01-first", "main.c"), OLD)
    write(os.path.join(root, "02-second", "main.c"), NEW)
    write(os.path.join(root, "02-second", "README.md"), README)
    write(os.path.join(root, "03-third", "main.c"), THIRD)
    write(os.path.join(root, "03-third", "README.md"), README)
    write(os.path.join(root, "03-third", "README.ko.md"), README)
    return root


def test_notes_sh_writes_the_diff_between_the_markers(tmp_path):
    root = made_up_chapters(tmp_path)
    second = os.path.join(root, "02-second", "README.md")

    check = notes("--check", "--chapters-dir", root)
    assert check.code == 1, check
    assert sum(line.startswith("stale: ") for line in check.stdout) == 3, check
    assert read(second) == README, "--check changed a file"

    update = notes("--chapters-dir", root)
    assert update.code == 0, update
    assert sum(line.startswith("updated: ") for line in update.stdout) == 3, update
    assert read(second) == README.replace(
        END, "```diff\n--- 01-first/main.c\n+++ 02-second/main.c\n@@ -1,3 +1,3 @@\n"
             " one\n-two\n+2\n three\n```\n" + END)
    third = read(os.path.join(root, "03-third", "README.md"))
    assert "--- 02-second/main.c\n+++ 03-third/main.c\n" in third
    assert read(os.path.join(root, "03-third", "README.ko.md")) == third, \
        "the Korean notes did not get the same section"

    # Stable: a second run changes nothing, and the check passes.
    again = notes("--chapters-dir", root)
    assert again.code == 0 and not any(l.startswith("updated: ") for l in again.stdout), again
    assert notes("--check", "--chapters-dir", root).code == 0


def test_notes_sh_reports_missing_markers_and_readmes(tmp_path):
    root = made_up_chapters(tmp_path)
    no_markers = "# Notes\n\nNo section here.\n"
    write(os.path.join(root, "02-second", "README.md"), no_markers)
    os.remove(os.path.join(root, "03-third", "README.md"))
    write(os.path.join(root, "04-fourth", "main.c"), THIRD)
    write(os.path.join(root, "04-fourth", "README.md"), "%s\n%s\n" % (END, BEGIN))

    for args in (["--check"], []):
        result = notes(*(args + ["--chapters-dir", root]))
        assert result.code == 1, result
        missing = [line for line in result.stdout if line.startswith("missing: ")]
        for name in ("02-second", "03-third", "04-fourth"):
            assert any(name in line for line in missing), (name, result)
        assert not any("01-first" in line for line in result.stdout), result
    assert read(os.path.join(root, "02-second", "README.md")) == no_markers
    assert not os.path.exists(os.path.join(root, "03-third", "README.md"))
