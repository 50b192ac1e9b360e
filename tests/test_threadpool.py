"""A chapter built to scale ("scale" in chapters.py) must stop promptly with a thousand
clients connected, each holding a receive block; one on the system thread pool
("threadpool") owns no thread that it could join at quit, and must wait for every
callback of every thread pool object before it frees what they use. So: a thousand
clients connect and each has a message echoed, so
that each holds a receive block and has a receive pending; then "quit". Asserted: exit
code 0 within a bound that only catches a hang (the shutdown's drains give up after 10 s,
and then the exit code is 1); nothing on stderr; one "server stopping" line for each of
the thousand, each printed by the release that ran last for that client (inside a
callback, on the pool); every client sees its connection closed; and the summary counts the thousand
connections and every byte echoed. Run with --workers 1 (one thread does all of it, so
a callback that waited for another would hang) and with the default count. Also: the
start line of a chapter on the pool names the pool's size."""

import re
import time

import pytest

import chapters
import harness
from harness import closed_by_peer, connect

SCALERS = chapters.chapters_with("scale")
POOLED = chapters.chapters_with("threadpool")
CLIENTS = 1000
QUIT_BOUND = 10.0  # seconds; under the 10 s drain timeout plus start-up, so a hang shows
DISCONNECTED = re.compile(r"^client (?P<id>\d+) disconnected: (?P<reason>.+) \(\d+ live\)$")
SIZED = re.compile(r"^thread pool (of (?P<threads>\d+) threads|sized by the system); "
                   r"each receive takes up to \d+ bytes$")


@pytest.mark.parametrize("workers", [["--workers", "1"], []], ids=["workers-1", "default"])
@pytest.mark.parametrize("chapter", SCALERS, ids=chapters.ids(SCALERS))
def test_quit_with_a_thousand_connected_waits_for_every_callback(chapter, workers,
                                                                 start_server):
    server = start_server(chapter, "--max-clients", str(CLIENTS), *workers)
    port = server.port
    clients = []
    echoed = 0
    try:
        for number in range(CLIENTS):
            client = connect(port)
            clients.append(client)
            message = chapter.message(b"client %04d" % number)
            assert harness.echo(client, message) == message, server.output()
            echoed += len(message)
        server.wait_until(
            lambda lines: sum(line.startswith("client ") and " connected from " in line
                              for line in lines) >= CLIENTS,
            what="%d connected lines" % CLIENTS)
        started = time.monotonic()
        code = server.quit(timeout=harness.EXIT_TIMEOUT)
        took = time.monotonic() - started
        print("%s %s: quit with %d clients connected: exit %s after %.2f s" % (
            chapter.name, " ".join(workers) or "(the default workers)", CLIENTS, code,
            took))
        assert code == 0, ("exit code %s after %.2f s" % (code, took), server.output())
        assert took < QUIT_BOUND, ("quit took %.1f s" % took, server.output())
        not_closed = [i for i, c in enumerate(clients) if not closed_by_peer(c)]
        assert not not_closed, ("%d clients not closed" % len(not_closed), server.output())
    finally:
        for client in clients:
            client.close()
    lines = server.stdout
    stopping = sorted(int(m.group("id")) for m in map(DISCONNECTED.match, lines)
                      if m and m.group("reason") == "server stopping")
    assert stopping == list(range(1, CLIENTS + 1)), (
        "%d 'server stopping' lines for %d clients" % (len(stopping), CLIENTS))
    assert lines[-1] == chapter.summary(CLIENTS, echoed), server.output()
    assert server.stderr == [], server.output()


@pytest.mark.parametrize("chapter", POOLED, ids=chapters.ids(POOLED))
def test_the_start_line_names_the_pools_size(chapter, start_server):
    server = start_server(chapter, "--workers", "3")
    match = SIZED.match(server.wait_for(SIZED.pattern).string)
    assert match.group("threads") == "3", server.output()
    assert server.quit() == 0, server.output()
    server = start_server(chapter)
    match = SIZED.match(server.wait_for(SIZED.pattern).string)
    assert match.group("threads") is None, server.output()
    assert server.quit() == 0, server.output()
