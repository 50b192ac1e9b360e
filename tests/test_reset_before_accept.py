"""A client that resets its connection before the server has accepted it ends only that
connection: the server keeps accepting. (Under Wine, accept() then fails with 10057
WSAENOTCONN; on Windows with 10054 WSAECONNRESET, or the connection just disappears.)"""

import re

import pytest

import chapters
from harness import connect, local_port, reset

ACCEPTERS = chapters.chapters_with("accept")
RESETS = 5


@pytest.mark.parametrize("chapter", ACCEPTERS, ids=chapters.ids(ACCEPTERS))
def test_keeps_accepting_after_a_reset(chapter, start_server):
    server = start_server(chapter)
    for _ in range(RESETS):
        reset(connect(server.port))
    client = connect(server.port)
    try:
        connected = re.compile(r"^client \d+ connected from 127\.0\.0\.1:%d "
                               % local_port(client))
        server.wait_until(lambda lines: any(connected.match(line) for line in lines) or
                          any(line.startswith("accepting stopped") for line in server.stderr),
                          what="the next client's connected line")
    finally:
        client.close()
    assert not any(line.startswith("accepting stopped") for line in server.stderr), \
        server.output()
    assert any(connected.match(line) for line in server.stdout), server.output()
    assert server.quit() == 0, server.output()
