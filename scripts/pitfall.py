#!/usr/bin/python3
"""The pitfall lab: each classic mistake of a chapter's notes put back into a copy of that
chapter's program, built, and shown failing the tests that catch it.

    /usr/bin/python3 scripts/pitfall.py list              (or: make pitfalls)
    /usr/bin/python3 scripts/pitfall.py run CH NAME       (or: make pitfall CH=07 NAME=...)
    /usr/bin/python3 scripts/pitfall.py run [--first] [--times N] [--quiet] CH NAME
    /usr/bin/python3 scripts/pitfall.py build CH NAME     build only; prints the folder

A pitfall is chapters/NN-topic/pitfalls/NAME.patch: a few header lines, then a `git diff`
of that chapter's main.c that makes the mistake (git apply ignores the text before the
diff):

    Pitfall: <one sentence: what the mistake is>
    Notes: <the bold title of the pitfall in the chapter's README.md>
    Caught-by: tests/test_x.py::test_name[NN-topic]    (one line per test)
    Expect: <one sentence: what the reader sees>

`build` copies the chapter's sources into BUILD/pitfalls/NN-topic-NAME/chapters/NN-topic/
(chapters/ itself is never written), applies the patch to the copy, and compiles it with
the compiler, flags and common/ library of the real build (BUILD/libcommon.a), all read
from the Makefile, into BUILD/pitfalls/NN-topic-NAME/build/NN-topic.exe, beside a copy of
BUILD/tools/. `run` builds, then runs the Caught-by tests against that folder
(IOCP_BUILD_DIR, which tests/chapters.py reads), shows pytest's report and a digest of
each failure (its assertion, and the exit code and last lines of every program the test
ran), and ends with a line saying whether the pitfall was caught: exit 0 when at least
one Caught-by test failed, 1 when all of them passed, 2 when something else went wrong
(a patch that no longer applies, a build error, a Caught-by test that does not exist).
--first stops at the first failure; --times N runs the tests N times and calls the
pitfall caught only if it is caught every time; --quiet prints only the digest and the
verdict.

The Caught-by tests run in a pytest of their own, with this file loaded as a plugin
(`-p pitfall`): it records each test's outcome, assertion and programs' output in the
JSON file named by PITFALL_REPORT, from which the digest and the verdict are made.
Wine runs in $WINEPREFIX, as for the rest of the tests (tests/conftest.py).
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import chapters  # noqa: E402  (the one table of chapters, and where they are)

PATCH_SUFFIX = ".patch"
FIELDS = ("Pitfall", "Notes", "Caught-by", "Expect")
FIELD_LINE = re.compile(r"^(?P<field>[A-Z][A-Za-z-]*): (?P<value>\S.*)$")
# What a Caught-by line names: a test of tests/, with its parameters (the chapter's name
# among them, e.g. [08-thread-teardown-quit]).
NODE_ID = re.compile(r"^tests/test_[a-z0-9_]+\.py::test_[a-z0-9_]+\[(?P<parameters>[^\]]+)\]$")
NAME = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
REPORT_VARIABLE = "PITFALL_REPORT"
TAIL_LINES = 12  # of each program's stdout and stderr, in the digest
MESSAGE_WIDTH = 200  # characters of a failure's message, in the digest
# The first line of a failure whose message is a program's output (harness's output()).
OUTPUT_HEADER = re.compile(r"^(?P<kind>\w+): --- .*, exit code \S+$")
# ... and of one whose message is a tuple: what went wrong, then a program's output.
MESSAGE_AND_OUTPUT = re.compile(r"^(?P<kind>\w+): \((?P<quote>[\'\"])(?P<text>.*?)(?P=quote), ")
# A variant's tests never need more than this; only a hang that no test bound catches
# would get there.
PYTEST_TIMEOUT = 900


class Problem(Exception):
    """Something other than the tests' verdict went wrong; the message says what."""


def shown(path):
    """PATH relative to the repository when it is inside it."""
    relative = os.path.relpath(path, ROOT)
    return path if relative.startswith("..") else relative


class Pitfall:
    """One patch file: its chapter, its name, its header fields and its diff."""

    def __init__(self, path):
        self.path = path
        self.name = os.path.basename(path)[:-len(PATCH_SUFFIX)]
        self.chapter = chapters.Chapter(os.path.basename(os.path.dirname(os.path.dirname(path))))
        with open(path, encoding="utf-8") as f:
            text = f.read()
        start = text.find("diff --git ")
        if start < 0:
            raise Problem("%s holds no diff (no 'diff --git' line)" % shown(path))
        self.header = text[:start]
        self.fields = {field: [] for field in FIELDS}
        for line in self.header.splitlines():
            match = FIELD_LINE.match(line)
            if match and match.group("field") in self.fields:
                self.fields[match.group("field")].append(match.group("value"))
        missing = [f for f in FIELDS if not self.fields[f]]
        if missing:
            raise Problem("%s has no %s line in its header" % (
                shown(path), " and no ".join("'%s:'" % f for f in missing)))
        self.sentence = self.fields["Pitfall"][0]
        self.notes_title = self.fields["Notes"][0]
        self.caught_by = self.fields["Caught-by"]
        self.expect = self.fields["Expect"][0]

    @property
    def label(self):
        return "%s/%s" % (self.chapter.name, self.name)

    @property
    def command(self):
        """The make command that shows it, as the notes link it."""
        return "make pitfall CH=%02d NAME=%s" % (self.chapter.number, self.name)

    @property
    def folder(self):
        """Where the variant is built: BUILD/pitfalls/NN-topic-NAME."""
        return os.path.join(ROOT, make_settings()["BUILD"], "pitfalls",
                            "%s-%s" % (self.chapter.name, self.name))

    @property
    def build_dir(self):
        """The folder the tests are pointed at (IOCP_BUILD_DIR): NN-topic.exe and tools/."""
        return os.path.join(self.folder, "build")

    def __repr__(self):
        return self.label


def all_pitfalls():
    """Every chapters/NN-topic/pitfalls/NAME.patch, in chapter and name order."""
    found = []
    for chapter in chapters.ALL:
        folder = os.path.join(chapter.dir, "pitfalls")
        if os.path.isdir(folder):
            found += [Pitfall(os.path.join(folder, n)) for n in sorted(os.listdir(folder))
                      if n.endswith(PATCH_SUFFIX)]
    return found


def find(wanted_chapter, name):
    """The pitfall NAME of the chapter WANTED_CHAPTER names ("07" or "07-disconnect")."""
    matches = [c for c in chapters.ALL
               if c.name == wanted_chapter or c.name.startswith(wanted_chapter + "-")]
    if len(matches) != 1:
        raise Problem("no chapter '%s'; chapters: %s" % (
            wanted_chapter, " ".join(c.name for c in chapters.ALL)))
    chapter = matches[0]
    path = os.path.join(chapter.dir, "pitfalls", name + PATCH_SUFFIX)
    if not os.path.isfile(path):
        names = [p.name for p in all_pitfalls() if p.chapter.name == chapter.name]
        raise Problem("%s has no pitfall '%s'; its pitfalls: %s" % (
            chapter.name, name, " ".join(names) or "none"))
    return Pitfall(path)


# --- building ----------------------------------------------------------------------------
_SETTINGS = {}
# The Makefile's own variables, printed by a rule given on make's command line (--eval),
# so that a variant builds exactly as the chapters do.
MAKE_VARIABLES = ("CC", "ALL_CFLAGS", "LDLIBS", "BUILD")


def make_settings():
    """{variable: value} for MAKE_VARIABLES, as the Makefile sets them, with any variable
    given on the command line of a make that runs this script (make pitfall CFLAGS=...)."""
    if not _SETTINGS:
        rule = "pitfall-settings: ; @printf '%%s\\n' %s" % " ".join(
            "'$(%s)'" % v for v in MAKE_VARIABLES)
        env = dict(os.environ)
        # Keep only the variables of make's command line (after "--"): the job-server
        # options of a `make -j` above would make this make warn that it cannot use them.
        overrides = re.search(r"(?:^|\s)--\s(.*)$", env.get("MAKEFLAGS", ""))
        env["MAKEFLAGS"] = " -- " + overrides.group(1) if overrides else ""
        try:
            done = subprocess.run(["make", "-s", "--no-print-directory", "-f", "Makefile",
                                   "--eval", rule, "pitfall-settings"], cwd=ROOT, env=env,
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True)
        except OSError as e:
            raise Problem("cannot run make to read the build's flags: %s" % e) from None
        values = done.stdout.splitlines()
        if done.returncode != 0 or len(values) != len(MAKE_VARIABLES):
            raise Problem("make did not print the build's flags (exit %d):\n%s%s" % (
                done.returncode, done.stdout, done.stderr))
        _SETTINGS.update(zip(MAKE_VARIABLES, values))
    return _SETTINGS


def _run_step(what, command, cwd=ROOT):
    """Runs one build step; raises Problem with its output, saying WHAT failed."""
    done = subprocess.run(command, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise Problem("%s (exit %d):\n  %s\n%s%s" % (what, done.returncode,
                                                      " ".join(shlex.quote(c) for c in command),
                                                      done.stdout, done.stderr))
    return done


def check_applies(pitfall):
    """Raises Problem unless the patch applies to the chapter's main.c as it is now
    (git apply --check changes nothing)."""
    _run_step("%s no longer applies to %s/main.c" % (shown(pitfall.path),
                                                      shown(pitfall.chapter.dir)),
              ["git", "apply", "--check", pitfall.path])


def build(pitfall):
    """Builds the broken variant (see the module's docstring); returns its build folder."""
    settings = make_settings()
    library = os.path.join(ROOT, settings["BUILD"], "libcommon.a")
    if not os.path.isfile(library):
        raise Problem("%s is missing: run `make` first, to build the chapters and common/"
                      % shown(library))
    folder = pitfall.folder
    shutil.rmtree(folder, ignore_errors=True)
    sources = os.path.join(folder, "chapters", pitfall.chapter.name)
    os.makedirs(sources)
    for name in sorted(os.listdir(pitfall.chapter.dir)):
        if name.endswith((".c", ".h")):
            shutil.copy(os.path.join(pitfall.chapter.dir, name), sources)
    # --directory puts the patch's paths (chapters/NN-topic/main.c) under the copy's folder.
    _run_step("%s no longer applies to %s/main.c" % (shown(pitfall.path),
                                                      shown(pitfall.chapter.dir)),
              ["git", "apply", "--directory=" + os.path.relpath(folder, ROOT).replace(os.sep, "/"),
               pitfall.path])
    objects = []
    compiler = shlex.split(settings["CC"])
    for name in sorted(n for n in os.listdir(sources) if n.endswith(".c")):
        obj = os.path.join(folder, "obj", name[:-2] + ".o")
        os.makedirs(os.path.dirname(obj), exist_ok=True)
        # From the repository's root, as the Makefile compiles, so that -Icommon holds.
        _run_step("%s does not compile" % shown(os.path.join(sources, name)),
                  compiler + shlex.split(settings["ALL_CFLAGS"]) +
                  ["-c", os.path.relpath(os.path.join(sources, name), ROOT), "-o", obj])
        objects.append(obj)
    exe = os.path.join(pitfall.build_dir, pitfall.chapter.name + ".exe")
    os.makedirs(pitfall.build_dir)
    _run_step("%s does not link" % shown(exe),
              compiler + objects + [library, "-o", exe] + shlex.split(settings["LDLIBS"]))
    tools = os.path.join(ROOT, settings["BUILD"], "tools")
    if os.path.isdir(tools):
        shutil.copytree(tools, os.path.join(pitfall.build_dir, "tools"))
    return pitfall.build_dir


# --- running the Caught-by tests ---------------------------------------------------------
def variant_environment(pitfall, report):
    """The environment of the variant's pytest: its build folder, this plugin's report,
    and nothing of an outer pytest-xdist worker (whose name would send tests/conftest.py
    to a Wine prefix of that worker's name)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PYTEST_XDIST") and k != "PYTEST_CURRENT_TEST"}
    env["IOCP_BUILD_DIR"] = pitfall.build_dir
    env[REPORT_VARIABLE] = report
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.dirname(os.path.abspath(__file__))] +
        ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def run_tests(pitfall, first=False, quiet=False):
    """Runs the Caught-by tests once against the built variant; returns the report: a
    list of {"nodeid", "outcome", "message", "programs"} for each test that ran, and
    pytest's output (already shown unless QUIET)."""
    report = os.path.join(pitfall.folder, "report.json")
    if os.path.exists(report):
        os.remove(report)
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "pitfall",
               "-q", "--tb=short", "-o", "console_output_style=classic"]
    command += (["-x"] if first else []) + pitfall.caught_by
    if not quiet:
        print("$ IOCP_BUILD_DIR=%s pytest %s" % (shown(pitfall.build_dir),
                                                 " ".join(pitfall.caught_by)), flush=True)
    try:
        done = subprocess.run(command, cwd=ROOT, env=variant_environment(pitfall, report),
                              stdin=subprocess.DEVNULL, timeout=PYTEST_TIMEOUT,
                              stdout=subprocess.PIPE if quiet else None,
                              stderr=subprocess.STDOUT if quiet else None, text=True)
    except subprocess.TimeoutExpired:
        raise Problem("the Caught-by tests of %s did not end within %d s" % (
            pitfall.label, PYTEST_TIMEOUT)) from None
    output = done.stdout or ""
    if not os.path.isfile(report):
        raise Problem("pytest exited %d without running the Caught-by tests of %s:\n%s" % (
            done.returncode, pitfall.label, output))
    with open(report, encoding="utf-8") as f:
        results = json.load(f)
    ran = {r["nodeid"] for r in results}
    missing = [t for t in pitfall.caught_by if t not in ran]
    if missing and not (first and any(r["outcome"] == "failed" for r in results)):
        raise Problem("%s names Caught-by tests that pytest did not run: %s\n%s" % (
            shown(pitfall.path), " ".join(missing), output))
    return results, output


def what_failed(message):
    """The line of a failure's message that says what went wrong: its first line, or,
    when the test's own message was only a program's output (`assert X, server.output()`),
    the kind of error with pytest's "assert ..." line below it."""
    lines = message.splitlines() or [""]
    header = OUTPUT_HEADER.match(lines[0])
    comparison = next((line for line in lines if line.startswith("assert ")), None)
    if header and comparison:
        return "%s: %s" % (header.group("kind"), comparison)
    pair = MESSAGE_AND_OUTPUT.match(lines[0])
    if pair:
        return "%s: %s" % (pair.group("kind"), pair.group("text"))
    return lines[0]


def digest(results):
    """The lines that show each failure as a reader should see it."""
    lines = []
    for result in results:
        if result["outcome"] == "passed":
            lines.append("passed  %s" % result["nodeid"])
            continue
        lines.append("%s  %s" % (result["outcome"].upper(), result["nodeid"]))
        line = what_failed(result["message"])
        lines.append("    " + (line if len(line) <= MESSAGE_WIDTH
                               else line[:MESSAGE_WIDTH] + "..."))
        for program in result["programs"]:
            code = program["code"]
            lines.append("  %s: %s" % (program["title"], {
                "None": "still running when the test failed (the test then killed it)",
            }.get(code, "exit code " + code)))
            for stream in ("stdout", "stderr"):
                tail = program[stream]
                if not tail["lines"]:
                    continue
                lines.append("    last %d of its %d %s lines:" % (len(tail["lines"]),
                                                                  tail["total"], stream))
                lines += ["    | " + line for line in tail["lines"]]
    return lines


def verdict(pitfall, runs):
    """(exit code, last line) for RUNS, the results of each run of the tests: caught
    only if some Caught-by test failed in every run (an error in a test's set-up, a skip
    or a pass is not a catch)."""
    caught = [any(r["outcome"] == "failed" for r in results) for results in runs]
    failed = sorted({r["nodeid"] for results in runs for r in results
                     if r["outcome"] == "failed"})
    if all(caught):
        times = "" if len(runs) == 1 else " in all %d runs" % len(runs)
        return 0, "pitfall caught%s: %s failed against the broken program (%s)" % (
            times, " and ".join(failed), pitfall.label)
    if any(caught):
        return 1, "pitfall NOT caught reliably: caught in %d of %d runs only (%s)" % (
            caught.count(True), len(runs), pitfall.label)
    return 1, "pitfall NOT caught: none of its Caught-by tests failed against the broken " \
              "program (%s); the mistake goes unnoticed" % pitfall.label


def run(pitfall, first=False, times=1, quiet=False):
    """Builds the variant and runs its Caught-by tests TIMES times; prints what they saw
    and the verdict; returns the exit code (0 caught, 1 not caught)."""
    if not quiet:
        print("pitfall %s: %s" % (pitfall.label, pitfall.sentence))
        print("  notes:  %s/README.md, \"%s\"" % (shown(pitfall.chapter.dir),
                                                  pitfall.notes_title))
        print("  expect: %s" % pitfall.expect)
        print("building %s from a patched copy of %s" % (
            shown(os.path.join(pitfall.build_dir, pitfall.chapter.name + ".exe")),
            shown(pitfall.chapter.dir)), flush=True)
    build(pitfall)
    runs = []
    for number in range(times):
        if times > 1 and not quiet:
            print("--- run %d of %d" % (number + 1, times), flush=True)
        results, output = run_tests(pitfall, first, quiet)
        runs.append(results)
        print("\n".join(["", "what the tests saw:" + (
            "" if times == 1 else " (run %d of %d)" % (number + 1, times))] +
            ["  " + line for line in digest(results)]))
    code, line = verdict(pitfall, runs)
    print(line)
    return code


def listing():
    """Every pitfall: chapter, name, its sentence and the tests that catch it."""
    lines = []
    for pitfall in all_pitfalls():
        lines.append("%s  %s" % (pitfall.chapter.name, pitfall.name))
        lines.append("    %s" % pitfall.sentence)
        lines += ["    caught by %s" % test for test in pitfall.caught_by]
        lines.append("    see it: %s" % pitfall.command)
    return lines


# --- the plugin in the variant's pytest (-p pitfall) -------------------------------------
_RESULTS = {}
# How tests/conftest.py names the report section with a program's output (run.output()).
PROGRAM_SECTION = "output of "


def _tail(text):
    lines = text.split("\n") if text else []
    return {"total": len(lines), "lines": lines[-TAIL_LINES:]}


def _program(title, text):
    """What the digest shows of one program: its title, exit code and last lines, from
    harness's output(): "[--- NAME ARGS, ]exit code C\\n--- stdout:\\n...\\n--- stderr:\\n..."."""
    head, _, rest = text.partition("\n--- stdout:\n")
    stdout, _, stderr = rest.partition("\n--- stderr:\n")
    code = re.search(r"exit code (.*)$", head)
    return {"title": title.strip(), "code": code.group(1) if code else "unknown",
            "stdout": _tail(stdout), "stderr": _tail(stderr)}


def pytest_runtest_logreport(report):
    """Keeps each test's worst outcome (a failed call, else an error in its set-up or
    tear-down, else passed or skipped), with its assertion and programs' output."""
    entry = _RESULTS.setdefault(report.nodeid, {"nodeid": report.nodeid, "outcome": "passed",
                                                "message": "", "programs": []})
    if report.skipped and entry["outcome"] == "passed":
        entry["outcome"] = "skipped"
    if not report.failed or entry["outcome"] == "failed":
        return
    entry["outcome"] = "failed" if report.when == "call" else "error"
    crash = getattr(report.longrepr, "reprcrash", None)
    entry["message"] = crash.message if crash is not None else str(report.longrepr)
    entry["programs"] = [_program(name[len(PROGRAM_SECTION):], text)
                         for name, text in report.sections if name.startswith(PROGRAM_SECTION)]


def pytest_sessionfinish(session):
    """Writes what pytest_runtest_logreport kept to the file PITFALL_REPORT names."""
    path = os.environ.get(REPORT_VARIABLE)
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(list(_RESULTS.values()), f, indent=1)


# --- command line ------------------------------------------------------------------------
USAGE = """usage: scripts/pitfall.py list                 (make pitfalls)
       scripts/pitfall.py run [--first] [--times N] [--quiet] CH NAME
                                                (make pitfall CH=07 NAME=...)
       scripts/pitfall.py build CH NAME
CH is a chapter's number or folder name (07 or 07-disconnect), NAME a pitfall of it
(chapters/NN-topic/pitfalls/NAME.patch); `list` shows them all."""


def usage_error(problem):
    print("pitfall: %s\n%s" % (problem, USAGE), file=sys.stderr)
    return 2


def main(argv):
    args = list(argv)
    if not args:
        return usage_error("no action given")
    if args[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    action = args.pop(0)
    options = {"first": False, "times": 1, "quiet": False}
    while args and args[0].startswith("-"):
        option = args.pop(0)
        if option in ("--first", "--quiet"):
            options[option[2:]] = True
        elif option == "--times":
            count = args.pop(0) if args else ""
            if not count.isdigit() or int(count) < 1:
                return usage_error("--times needs a count of 1 or more, not '%s'" % count)
            options["times"] = int(count)
        else:
            return usage_error("unknown option '%s'" % option)
    try:
        if action == "list":
            if args:
                return usage_error("list takes no arguments")
            print("\n".join(listing()))
            return 0
        if action not in ("run", "build"):
            return usage_error("unknown action '%s'" % action)
        if len(args) != 2 or not all(args):
            return usage_error("%s needs a chapter and a pitfall name, e.g. 07 %s" % (
                action, "free-slot-with-io-pending"))
        pitfall = find(*args)
        if action == "build":
            print(shown(build(pitfall)))
            return 0
        return run(pitfall, **options)
    except Problem as e:
        print("pitfall: %s" % e, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pitfall: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
