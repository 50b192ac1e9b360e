"""Errors are reported as "<call> failed: <number> <text>", with the system's own text."""

import re
import socket

import pytest

import chapters
import harness

LISTENERS = chapters.chapters_with("listen")


def test_the_shape_regex_itself():
    # Guards the regex the other tests rely on: it must reject what it should.
    assert harness.ERROR_LINE.match("bind failed: 10048 Address already in use")
    assert harness.ERROR_LINE.match("setsockopt(IPV6_V6ONLY) failed: 10042 Bad option")
    assert harness.ERROR_LINE.match("calloc failed: errno 12 Not enough space")
    assert not harness.ERROR_LINE.match("bind failed: 10048")
    assert not harness.ERROR_LINE.match("bind failed: WSAEADDRINUSE")
    assert not harness.ERROR_LINE.match("bind failed 10048 Address already in use")
    assert harness.bad_error_lines(["bind failed: oops", "ok"]) == ["bind failed: oops"]


@pytest.mark.parametrize("chapter", LISTENERS, ids=chapters.ids(LISTENERS))
def test_bind_error_has_the_shape_and_the_system_text(chapter):
    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        result = harness.run(chapter.exe, ["--port", str(holder.getsockname()[1])])
    finally:
        holder.close()
    failures = [harness.ERROR_LINE.match(line) for line in result.stderr
                if " failed:" in line]
    assert failures and all(failures), result
    bind = [m for m in failures if m.group("call") == "bind"]
    assert len(bind) == 1, result
    assert bind[0].group("code") == "10048", result
    text = bind[0].group("text")
    # The system's message, trimmed; not the fallback for a failed FormatMessage.
    assert not text.startswith("(no text"), result
    assert re.search(r"[A-Za-z]{3}", text) and not text.endswith((".", " ")), result
