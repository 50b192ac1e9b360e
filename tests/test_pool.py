"""A chapter with a pool of --max-clients N slots accepts N clients, refuses (closes)
every client after that, and keeps accepting after a refusal."""

import re

import pytest

import chapters
import harness
from harness import closed_by_peer, connect, local_port, still_open

POOLS = chapters.chapters_with("pool")
SLOTS = 3
CONNECTED = r"^client (?P<id>\d+) connected from (?P<host>\S+):(?P<port>\d+)"


def refused_line(client):
    return r"^refused 127\.0\.0\.1:%d: all %d slots are taken$" % (local_port(client), SLOTS)


@pytest.mark.parametrize("chapter", POOLS, ids=chapters.ids(POOLS))
def test_full_pool_refuses_and_keeps_accepting(chapter, start_server):
    server = start_server(chapter, "--max-clients", str(SLOTS))
    clients = [connect(server.port) for _ in range(SLOTS)]
    try:
        seen = [server.wait_for(CONNECTED) for _ in range(SLOTS)]
        assert sorted(int(m.group("id")) for m in seen) == list(range(1, SLOTS + 1)), \
            server.output()
        assert sorted(int(m.group("port")) for m in seen) == \
            sorted(local_port(c) for c in clients), server.output()
        assert all(m.group("host") == "127.0.0.1" for m in seen), server.output()

        # Two more: each is closed by the server, and the second refusal shows that
        # the accepter kept going after the first.
        for _ in range(2):
            extra = connect(server.port)
            try:
                assert closed_by_peer(extra), "refused client was not closed\n" + \
                    server.output()
                server.wait_for(refused_line(extra))
            finally:
                extra.close()

        assert server.running(), server.output()
        assert all(still_open(c) for c in clients), \
            "a client with a slot was closed\n" + server.output()
        assert not re.search(r"(?m)^client %d connected" % (SLOTS + 1),
                             "\n".join(server.stdout)), server.output()
    finally:
        for c in clients:
            c.close()
    assert server.quit() == 0, server.output()
