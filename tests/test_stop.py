"""A "quit" line, Ctrl+C (Ctrl+Break on Windows) and the end of standard input each stop
a server cleanly: it prints "stopping: <reason>" and exits 0 within a few seconds, also
with clients connected (which it then closes). A chapter with an orderly shutdown also
stops all of its workers, however many it has, without an error."""

import re

import pytest

import chapters
import harness
from harness import closed_by_peer, connect

LISTENERS = chapters.chapters_with("listen")
ACCEPTERS = chapters.chapters_with("accept")
STOPPERS = chapters.chapters_with("teardown", "workers")

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


@pytest.mark.parametrize("chapter", STOPPERS, ids=chapters.ids(STOPPERS))
def test_stops_every_worker(chapter, start_server):
    """With --workers 4 (more than this machine may have processors, which is what the
    default gives), "quit" stops every worker: the program exits 0 within STOP_TIMEOUT
    and prints nothing on stderr. Each worker must dequeue a stop packet of its own, and
    none may be woken by a failing wait (closing the port does that on Windows, with
    error 735, and wakes no one under Wine)."""
    server = start_server(chapter, "--workers", "4")
    assert server.port  # first: the workers start after the listener
    server.wait_for(r"^4 worker threads waiting on the port")
    assert stop(server, "quit") == 0, server.output()
    server.wait_for(r"^stopping: quit$")
    assert server.stderr == [], server.output()


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
