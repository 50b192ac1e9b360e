"""Fixtures shared by every test: Wine for the whole session, and servers that are
always cleaned up.

Run from the repository root:  make test   (or /usr/bin/pytest-3 -p no:cacheprovider tests)
On Windows:                     py -m pytest tests
Export WINEPREFIX to use a Wine prefix of your own (scripts/wine.sh's default is
build/wineprefix); the session stops that prefix's wineserver when it ends.
"""

import os

import pytest

import harness
from chapters import ROOT


@pytest.fixture(scope="session", autouse=True)
def wine():
    """Wine for the whole session (harness.wine_session): started once, always stopped.

    Under pytest-xdist (`make test` runs the files on one process per core) each worker
    gets a Wine prefix of its own, WINEPREFIX-gwN, and so a wineserver of its own: a
    worker's session end stops only its own server, and the sockets of one worker's tests
    never count against another's wineserver."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker and not harness.WINDOWS:
        base = os.environ.get("WINEPREFIX") or os.path.join(ROOT, "build", "wineprefix")
        os.environ["WINEPREFIX"] = "%s-%s" % (base, worker)
    with harness.wine_session():
        yield


@pytest.fixture
def start_server():
    """start_server(chapter, *args, port=0) starts chapter's program with
    `--port PORT ARGS` and returns its harness.Server; every server still running at
    the end of the test is killed."""
    servers = []

    def start(chapter, *args, port=0):
        server = harness.Server(chapter.exe, ["--port", str(port)] + list(args))
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.kill()


@pytest.fixture(autouse=True)
def error_lines_have_their_shape():
    """After each test: every error a chapter program printed on stderr has the shape
    "<call> failed: <number> <text>"; otherwise the test errors at teardown."""
    del harness.RUNS[:]
    yield
    bad = [(run.title, line) for run in harness.RUNS if run.is_chapter
           for line in harness.bad_error_lines(run.stderr)]
    assert not bad, "error lines not shaped '<call> failed: <number> <text>': %r" % bad


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Adds to the report of a failed test its random seed, with the command that replays
    it, and the whole output of every program it ran; a chapter program that exited
    non-zero printing nothing is first rerun once with Wine's diagnostics, shown too."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and report.when in ("call", "teardown"):
        seed = harness.current_seed()
        if seed is not None:
            report.sections.append(("random seed", "%s=%d; replay: %s=%d %s '%s'" % (
                harness.SEED_VARIABLE, seed, harness.SEED_VARIABLE, seed,
                "/usr/bin/pytest-3 -p no:cacheprovider", item.nodeid)))
        harness.rerun_silent_deaths()
        for run in harness.RUNS:
            report.sections.append(("output of " + run.title, run.output()))
    if report.when == "teardown":
        harness.forget_seed()
