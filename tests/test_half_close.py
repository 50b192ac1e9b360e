"""A client that has sent everything and shut down its sending side still gets every
byte of its echo, then end-of-stream: the server sees the FIN while the last echoes may
still be queued or on their way, and must finish sending before it closes.

From chapter 10 on the receive is posted while a send is in flight, so the FIN can arrive
before the echo has gone out; closing at once would cancel that send and cut the echo.
The client reads slowly through a small receive buffer, so that the server's sends are
still pending when the FIN arrives.

For a chapter with messages the data goes as one echo message (with room for it given by
--max-message), and that message must come back whole.
"""

import socket
import threading
import time

import pytest

import chapters
from harness import CLIENT_TIMEOUT, connect, random_source

ECHOERS = chapters.chapters_with("echo")
CLIENTS = 12
SIZE = 128 * 1024
READ_SIZE = 8192
READ_PAUSE = 0.002  # seconds between reads: slow enough to keep the server's send pending


def send_then_half_close(client, data, failures):
    try:
        client.sendall(data)
        client.shutdown(socket.SHUT_WR)
    except OSError as e:
        failures.append(e)


def read_slowly(client, limit):
    """Everything the server sends until it closes (at most LIMIT bytes)."""
    chunks, total = [], 0
    while total <= limit:
        chunk = client.recv(READ_SIZE)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        time.sleep(READ_PAUSE)
    return b"".join(chunks)


@pytest.mark.parametrize("chapter", ECHOERS, ids=chapters.ids(ECHOERS))
def test_half_closed_client_gets_its_whole_echo(chapter, start_server):
    server = start_server(chapter, "--workers", "2", *chapter.message_options(SIZE))
    port = server.port
    rng = random_source()
    for number in range(CLIENTS):
        data = chapter.message(rng.randbytes(SIZE))
        client = connect(port, buffers=4096)
        failures = []
        sender = threading.Thread(target=send_then_half_close, args=(client, data, failures),
                                  daemon=True)
        sender.start()
        try:
            back = read_slowly(client, len(data))
        finally:
            sender.join(CLIENT_TIMEOUT)
            client.close()
        assert not failures, failures
        assert len(back) == len(data), ("client %d of %d got %d of %d bytes before the end" % (
            number + 1, CLIENTS, len(back), len(data)), server.output())
        assert back == data, "client %d: the echo differs from what it sent" % (number + 1)
    assert server.quit() == 0, server.output()
