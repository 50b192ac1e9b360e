"""An echo chapter sends back every byte it receives, unchanged and in order: messages
around its receive size, random binary data up to 1 MiB, and 200 clients at once making
round trips of random sizes. For a chapter with messages, each piece of data goes as one
echo message (chapter.message) and must come back as that same message.
"""

import time

import pytest

import chapters
from harness import connect, echo, random_source, round_trips

ECHOERS = chapters.chapters_with("echo")
IDS = chapters.ids(ECHOERS)
# Only catches a hang: the 200-client test takes some seconds under Wine.
MANY_CLIENTS_TIMEOUT = 240.0


@pytest.mark.parametrize("size", [1, 1023, 1024, 1025, 4096, 65536])
@pytest.mark.parametrize("chapter", ECHOERS, ids=IDS)
def test_echoes_every_byte(chapter, size, start_server):
    server = start_server(chapter)
    client = connect(server.port)
    try:
        message = chapter.message(
            bytes(b"abcdefghijklmnopqrstuvwxyz0123456789"[i % 36] for i in range(size)))
        assert echo(client, message) == message, server.output()
        # The connection still works after it: a second round trip.
        again = chapter.message(b"again\n")
        assert echo(client, again) == again, server.output()
    finally:
        client.close()
    assert server.quit() == 0, server.output()


@pytest.mark.parametrize("chapter", ECHOERS, ids=IDS)
def test_echoes_random_binary_data(chapter, start_server):
    sizes = (2, 255, 4097, 10000, 100003, 1 << 20)
    server = start_server(chapter, *chapter.message_options(max(sizes)))
    client = connect(server.port, timeout=30.0)
    rng = random_source()
    try:
        for size in sizes:
            message = chapter.message(rng.randbytes(size))
            back = echo(client, message)
            assert len(back) == len(message), ("%d bytes sent, %d came back" % (
                len(message), len(back)), server.output())
            assert back == message, ("%d bytes came back changed, first at %d" % (
                len(message), next(i for i in range(len(message)) if back[i] != message[i])),
                server.output())
    finally:
        client.close()
    assert server.quit() == 0, server.output()


@pytest.mark.parametrize("chapter", ECHOERS, ids=IDS)
def test_two_hundred_clients_at_once(chapter, start_server):
    clients, rounds = 200, 100
    server = start_server(chapter, "--max-clients", "256")
    socks = [connect(server.port) for _ in range(clients)]
    try:
        started = time.monotonic()
        trips = round_trips(socks, rounds, sizes=(1, 8192), timeout=MANY_CLIENTS_TIMEOUT,
                            rng=random_source(), wrap=chapter.message)
        failed = ["client %d: %r" % (i, t) for i, t in enumerate(trips) if t.rounds != rounds]
        assert not failed, (failed[:10], server.output())
        print("%d clients x %d round trips in %.1f s" % (clients, rounds,
                                                         time.monotonic() - started))
    finally:
        for s in socks:
            s.close()
    assert server.running(), server.output()
    assert server.quit() == 0, server.output()
