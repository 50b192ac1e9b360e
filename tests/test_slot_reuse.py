"""A chapter that notices disconnects gives a client's slot back when it leaves: with
--max-clients 4, twelve clients that come and go one at a time are all admitted, each
into one of the four slots. (For a chapter with messages, each client's one echo is an
echo message.)"""

import re

import pytest

import chapters
from harness import connect, echo, local_port

REUSERS = chapters.chapters_with("disconnect", "echo")
SLOTS = 4
CONNECTED = r"^client (?P<id>\d+) connected from 127\.0\.0\.1:(?P<port>\d+) " \
            r"\(slot (?P<slot>\d+) of (?P<slots>\d+)\)$"


@pytest.mark.parametrize("chapter", REUSERS, ids=chapters.ids(REUSERS))
def test_twelve_clients_through_four_slots(chapter, start_server):
    server = start_server(chapter, "--max-clients", str(SLOTS))
    slots = []
    for number in range(3 * SLOTS):
        client = connect(server.port)
        try:
            connected = server.wait_for(CONNECTED)
            assert int(connected.group("port")) == local_port(client), server.output()
            message = chapter.message(b"client %d of %d\n" % (number + 1, 3 * SLOTS))
            assert echo(client, message) == message, server.output()
        finally:
            client.close()
        server.wait_for(r"^client %s disconnected: peer closed the connection \(0 live\)$"
                        % connected.group("id"))
        slots.append(int(connected.group("slot")))
        assert connected.group("slots") == str(SLOTS), server.output()
    assert all(1 <= slot <= SLOTS for slot in slots), (slots, server.output())
    assert not any(line.startswith("refused ") for line in server.stdout), server.output()
    assert len([line for line in server.stdout if re.match(CONNECTED, line)]) == 3 * SLOTS, \
        server.output()
    assert server.quit() == 0, server.output()
