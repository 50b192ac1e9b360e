"""The harness itself can fail: a test built on it cannot pass by accident."""

import os
import re

import pytest

import chapters
import harness

LISTENERS = chapters.chapters_with("listen")


@pytest.mark.parametrize("chapter", LISTENERS[:1], ids=chapters.ids(LISTENERS[:1]))
def test_wait_for_fails_on_a_line_that_never_comes(chapter, start_server):
    server = start_server(chapter)
    assert server.port
    with pytest.raises(AssertionError, match="listening on"):  # the message shows the output
        server.wait_for(r"^no chapter prints this$", timeout=0.5)
    # Each line is matched once: the cursor has moved past the "listening on" line.
    with pytest.raises(AssertionError):
        server.wait_for(harness.LISTENING.pattern, timeout=0.5)
    assert server.quit() == 0
    with pytest.raises(AssertionError, match="ended without printing"):
        server.wait_for(r"^no chapter prints this$")


def test_missing_program_is_reported_clearly():
    # Named relative to the repository when the build folder is inside it (build/ after
    # `make`); IOCP_BUILD_DIR may name another folder, then shown as it is.
    exe = os.path.join(chapters.BUILD_DIR, "99-missing.exe")
    shown = os.path.relpath(exe, chapters.ROOT)
    if shown.startswith(".."):
        shown = exe
    missing = re.escape(shown) + r" is missing: run `make`"
    with pytest.raises(AssertionError, match=missing):
        harness.run(exe)
