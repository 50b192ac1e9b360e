"""Bad command lines get the problem and the usage on stderr and exit code 2; --help
prints the usage on stdout and exits 0. Each chapter accepts only its own options."""

import re

import pytest

import chapters
import harness

EXIT_USAGE = 2


def cases():
    """(chapter, arguments, regex for the problem on stderr) for every chapter."""
    for chapter in chapters.ALL:
        def case(args, problem):
            return pytest.param(chapter, args, problem,
                                id="%s %s" % (chapter.name, " ".join(args) or "(none)"))

        yield case(["--frobnicate"], r"unknown option '--frobnicate'")
        yield case(["-x"], r"unknown option '-x'")
        for option in chapters.ALL_OPTIONS:
            if not chapter.accepts(option):
                yield case([option, "1"], r"unknown option '%s'" % option)
        if chapter.accepts("--port"):
            yield case(["--port", "70000"], r"--port .*'70000'")
            yield case(["--port", "abc"], r"--port .*'abc'")
            yield case(["--port", "-1"], r"--port .*'-1'")
            yield case(["--port"], r"--port needs a value")
        if chapter.accepts("--max-clients"):
            yield case(["--max-clients", "0"], r"--max-clients .*'0'")
            yield case(["--port", "0", "--max-clients"], r"--max-clients needs a value")
        if chapter.accepts("--workers"):
            yield case(["--workers", "0"], r"--workers .*'0'")
            yield case(["--workers", "many"], r"--workers .*'many'")
        if chapter.accepts("--bind"):
            yield case(["--port", "0", "--bind"], r"--bind needs an address")
        if chapter.accepts("--idle-timeout"):
            yield case(["--idle-timeout", "0"], r"--idle-timeout .*'0'")
            yield case(["--idle-timeout", "86401"], r"--idle-timeout .*'86401'")
            yield case(["--idle-timeout", "abc"], r"--idle-timeout .*'abc'")
        if chapter.accepts("--keepalive"):
            yield case(["--keepalive", "86401"], r"--keepalive .*'86401'")
            yield case(["--keepalive", "-1"], r"--keepalive .*'-1'")


@pytest.mark.parametrize("chapter,args,problem", list(cases()))
def test_bad_option_prints_usage_and_exits_2(chapter, args, problem):
    result = harness.run(chapter.exe, args)
    assert result.code == EXIT_USAGE, result
    assert re.search(problem, result.err), result
    assert re.search(r"(?m)^usage: ", result.err), result
    assert result.stdout == [], result


# Two valid values for an option, so the repeat is the only thing wrong; numbers for the
# rest.
VALUES = {"--bind": ["127.0.0.1", "::1"], "--max-queued": ["65536", "131072"]}


def repeats():
    """(chapter, option) for every option every chapter accepts."""
    for chapter in chapters.ALL:
        for option in sorted(chapter.options or ()):
            yield pytest.param(chapter, option, id="%s %s" % (chapter.name, option))


# Options that take no value.
FLAGS = {"--verbose"}


@pytest.mark.parametrize("chapter,option", list(repeats()))
def test_an_option_given_twice_prints_usage_and_exits_2(chapter, option):
    if option in FLAGS:
        args = [option, option]
    else:
        first, second = VALUES.get(option, ["1", "2"])
        args = [option, first, option, second]
    result = harness.run(chapter.exe, args)
    assert result.code == EXIT_USAGE, result
    assert re.search(r"(?m)^\S+: %s given more than once$" % re.escape(option),
                     result.err), result
    assert re.search(r"(?m)^usage: ", result.err), result
    assert result.stdout == [], result


@pytest.mark.parametrize("chapter", chapters.ALL, ids=chapters.ids(chapters.ALL))
def test_help_prints_usage_with_the_chapters_options(chapter):
    result = harness.run(chapter.exe, ["--help"])
    assert result.code == 0, result
    assert result.stdout and result.stdout[0].startswith("usage: "), result
    assert result.stderr == [], result
    for option in chapters.ALL_OPTIONS:
        listed = re.search(r"(?m)^\s+%s\b" % re.escape(option), result.out) is not None
        assert listed == chapter.accepts(option), (
            "%s %s in --help" % (option, "missing" if chapter.accepts(option) else "listed"),
            result)


@pytest.mark.parametrize("address", ["nonsense", "127.0.0.256", "::g"])
@pytest.mark.parametrize("chapter", chapters.chapters_with("listen"),
                         ids=chapters.ids(chapters.chapters_with("listen")))
def test_bind_to_a_non_address_exits_2(chapter, address):
    result = harness.run(chapter.exe, ["--port", "0", "--bind", address])
    assert result.code == EXIT_USAGE, result
    assert "'%s'" % address in result.err, result
    assert not any(line.startswith("listening on") for line in result.stdout), result
