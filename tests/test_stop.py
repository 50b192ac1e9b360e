"""A "quit" line, Ctrl+C (Ctrl+Break on Windows) and the end of standard input each stop
a server cleanly: it prints "stopping: <reason>" and exits 0 within a few seconds, also
with clients connected (which it then closes)."""

import re

import pytest

import chapters
import harness
from harness import closed_by_peer, connect

LISTENERS = chapters.chapters_with("listen")
ACCEPTERS = chapters.chapters_with("accept")

# (Server method, the reason the program prints)
WAYS = [
    pytest.param("quit", "quit", id="quit"),
    pytest.param("interrupt", harness.INTERRUPT_NAME, id="interrupt"),
    pytest.param("end_input", "end of input", id="end-of-input"),
]


def stop(server, way):
    return getattr(server, way)(timeout=harness.STOP_TIMEOUT)


@pytest.mark.parametrize("way,reason", WAYS)
@pytest.mark.parametrize("chapter", LISTENERS, ids=chapters.ids(LISTENERS))
def test_stops(chapter, way, reason, start_server):
    server = start_server(chapter)
    assert server.port
    assert stop(server, way) == 0, server.output()
    server.wait_for(r"^stopping: %s$" % re.escape(reason))


@pytest.mark.parametrize("way,reason", WAYS)
@pytest.mark.parametrize("chapter", ACCEPTERS, ids=chapters.ids(ACCEPTERS))
def test_stops_with_clients_connected(chapter, way, reason, start_server):
    server = start_server(chapter)
    clients = [connect(server.port) for _ in range(2)]
    try:
        for _ in clients:
            server.wait_for(r"^client \d+ connected from ")
        assert stop(server, way) == 0, server.output()
        server.wait_for(r"^stopping: %s$" % re.escape(reason))
        for c in clients:
            assert closed_by_peer(c), "client not closed at exit\n" + server.output()
    finally:
        for c in clients:
            c.close()


@pytest.mark.parametrize("chapter", LISTENERS, ids=chapters.ids(LISTENERS))
def test_other_lines_do_not_stop(chapter, start_server):
    server = start_server(chapter)
    assert server.port
    server.send("quitter\nQUIT\n quit\n\n")
    # "quit" after those lines still stops it, so they were read and ignored.
    assert server.quit(timeout=harness.STOP_TIMEOUT) == 0, server.output()
    server.wait_for(r"^stopping: quit$")
    assert not any(line.startswith("stopping:") and line != "stopping: quit"
                   for line in server.stdout), server.output()
