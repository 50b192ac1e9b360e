"""The summary a chapter prints after an orderly shutdown counts exactly what it served:
"connections served: N, bytes echoed: B" for N clients that echoed B bytes in all. For a
chapter with messages each piece of data is one echo message, and B counts the bytes it
sent back: the messages' headers too."""

import os

import pytest

import chapters
from harness import connect, echo

SUMMARIZERS = chapters.chapters_with("teardown", "echo")
# Bytes each client echoes, one round trip per size: around the receive size, and more.
SIZES = [[1], [4096], [4097, 5], [65536 + 7], [10, 20, 30], [1 << 20], [8191, 8192, 8193]]


@pytest.mark.parametrize("chapter", SUMMARIZERS, ids=chapters.ids(SUMMARIZERS))
def test_summary_counts_connections_and_bytes(chapter, start_server):
    server = start_server(chapter, *chapter.message_options(max(max(s) for s in SIZES)))
    total = 0
    for number, sizes in enumerate(SIZES):
        client = connect(server.port, timeout=30.0)
        try:
            for size in sizes:
                message = chapter.message(os.urandom(size))
                assert echo(client, message) == message, server.output()
                total += len(message)
        finally:
            client.close()
        server.wait_for(r"^client %d disconnected: peer closed the connection \(0 live\)$"
                        % (number + 1))
    assert server.quit() == 0, server.output()
    assert server.stdout[-1] == chapter.summary(len(SIZES), total), server.output()
