"""A client that resets its connection before the server has accepted it ends only that
connection: the server keeps accepting. (Under Wine, accept() then fails with 10057
WSAENOTCONN; on Windows with 10054 WSAECONNRESET, or the connection just disappears.)

The clients reset at once after connecting, long before a Wine server's accepter wakes
up, so some reset always comes first; the test checks that one did, from the server's
output: a reset client with no "connected" line was never accepted."""

import re

import pytest

import chapters
from harness import ERROR_LINE, connect, local_port, reset

ACCEPTERS = chapters.chapters_with("accept")
RESETS = 5
# What accept() may report for a connection reset before it was accepted.
RESET_ERRORS = {10054, 10057}


def connected_line(port):
    return re.compile(r"^client \d+ connected from 127\.0\.0\.1:%d " % port)


def is_reset_error(line):
    match = ERROR_LINE.match(line)
    return match is not None and int(match.group("code")) in RESET_ERRORS


@pytest.mark.parametrize("chapter", ACCEPTERS, ids=chapters.ids(ACCEPTERS))
def test_keeps_accepting_after_a_reset(chapter, start_server):
    server = start_server(chapter)
    reset_ports = []
    for _ in range(RESETS):
        client = connect(server.port)
        reset_ports.append(local_port(client))
        reset(client)
    client = connect(server.port)
    try:
        connected = connected_line(local_port(client))
        server.wait_until(lambda lines: any(connected.match(line) for line in lines) or
                          any(line.startswith("accepting stopped") for line in server.stderr),
                          what="the next client's connected line")
    finally:
        client.close()
    assert not any(line.startswith("accepting stopped") for line in server.stderr), \
        server.output()
    assert any(connected.match(line) for line in server.stdout), server.output()

    # The backlog is first in, first out: every reset client has been dealt with by now.
    accept_errors = [line for line in server.stderr if line.startswith("accept failed:")]
    unexpected = [line for line in accept_errors if not is_reset_error(line)]
    assert not unexpected, ("accept failed with an error a reset does not explain",
                            unexpected, server.output())
    early = [port for port in reset_ports
             if not any(connected_line(port).match(line) for line in server.stdout)]
    assert server.quit() == 0, server.output()
    if not early:
        pytest.skip("all %d clients were accepted before their reset arrived, so no reset "
                    "came before accept" % RESETS)
