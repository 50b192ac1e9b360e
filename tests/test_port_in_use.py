"""A chapter that cannot get its port says so ("bind failed: 10048 ...") and exits
non-zero, whether the port is held by another program or by another copy of itself."""

import socket

import pytest

import chapters
import harness

LISTENERS = chapters.chapters_with("listen")
IDS = chapters.ids(LISTENERS)
ADDRESS_IN_USE = "bind failed: 10048 "  # WSAEADDRINUSE


@pytest.mark.parametrize("chapter", LISTENERS, ids=IDS)
def test_port_held_by_another_program(chapter):
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        result = harness.run(chapter.exe, ["--port", str(port)])
    finally:
        holder.close()
    assert result.code != 0, result
    assert any(line.startswith(ADDRESS_IN_USE) for line in result.stderr), result
    assert not any(line.startswith("listening on") for line in result.stdout), result
    assert harness.bad_error_lines(result.stderr) == [], result


@pytest.mark.parametrize("chapter", LISTENERS, ids=IDS)
def test_second_copy_on_the_same_port(chapter, start_server):
    first = start_server(chapter)
    second = harness.run(chapter.exe, ["--port", str(first.port)])
    assert second.code != 0, second
    assert any(line.startswith(ADDRESS_IN_USE) for line in second.stderr), second
    assert harness.bad_error_lines(second.stderr) == [], second
    # The first copy keeps its port.
    assert first.running(), first.output()
    harness.connect(first.port).close()
    assert first.quit() == 0, first.output()
