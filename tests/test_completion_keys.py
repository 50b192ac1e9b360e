"""A chapter with a completion port creates one port and associates every client with
that port, each client with a completion key of its own.

(Refusing clients when the pool is full is test_pool.py's, for every chapter with a pool.)
"""

import re

import pytest

import chapters
from harness import connect, local_port

PORTS = chapters.chapters_with("iocp")
CLIENTS = 5
CREATED = r"^completion port (?P<handle>\S+) created$"
CONNECTED = r"^client (?P<id>\d+) connected from 127\.0\.0\.1:(?P<port>\d+) "
ASSOCIATED = r"^client (?P<id>\d+) associated with port (?P<handle>\S+), completion key (?P<key>\S+)$"


@pytest.mark.parametrize("chapter", PORTS, ids=chapters.ids(PORTS))
def test_each_client_has_its_own_key_on_the_one_port(chapter, start_server):
    server = start_server(chapter)
    port_handle = server.wait_for(CREATED).group("handle")
    clients = [connect(server.port) for _ in range(CLIENTS)]
    try:
        # Each client's two lines, connected and then associated, with the same id. Two
        # workers may admit two clients at once (AcceptEx), so pairs can interleave: each
        # associated line is matched to its client's connected line by id.
        ids_by_port = {}
        keys = {}
        connected_ids = []
        for _ in clients:
            connected = server.wait_for(CONNECTED)
            ids_by_port[int(connected.group("port"))] = connected.group("id")
            connected_ids.append(connected.group("id"))
        pairs = server.wait_until(
            lambda lines: [m for m in map(re.compile(ASSOCIATED).match, lines) if m]
            if sum(bool(re.match(ASSOCIATED, l)) for l in lines) >= CLIENTS else None,
            what="%d associated lines" % CLIENTS)
        for associated in pairs:
            assert associated.group("id") in connected_ids, server.output()
            assert associated.group("handle") == port_handle, (
                "client %s is associated with %s, not the port created (%s)" % (
                    associated.group("id"), associated.group("handle"), port_handle),
                server.output())
            keys[associated.group("id")] = associated.group("key")
        assert sorted(keys) == sorted(connected_ids), server.output()
        assert sorted(ids_by_port) == sorted(local_port(c) for c in clients), server.output()
        assert len(set(keys.values())) == CLIENTS, ("two clients share a completion key",
                                                    keys, server.output())
        # A key is a client context's address, never 0 (NULL).
        assert not any(re.fullmatch(r"(0x)?0+", key) for key in keys.values()), server.output()
        # One port for the whole program: no other port was created along the way.
        assert sum(line.startswith("completion port ") for line in server.stdout) == 1, \
            server.output()
    finally:
        for c in clients:
            c.close()
    assert server.quit() == 0, server.output()
