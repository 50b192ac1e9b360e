"""A chapter with an orderly shutdown also stops cleanly when its sends cannot finish:
twenty clients send without ever reading until neither direction takes another byte, so
the server's echo to each of them (a WSASend) is pending and stays pending. On "quit" it
must still exit 0 and print "connections served: 21, bytes echoed: B" (the twenty plus
a control client that checks the server still echoes meanwhile), within a bound that
only catches a hang. A shutdown that waits for those sends to complete by themselves
waits in vain: under Wine a pending send gets no completion after closesocket.

For a chapter with messages each client sends a stream of echo messages, each within
the default --max-message, so every byte the server takes is part of a valid message.
"""

import re
import socket
import time

import pytest

import chapters
import harness
from harness import connect, echo

STOPPERS = chapters.chapters_with("teardown", "echo")
STUCK = 20
SLOTS = 32
# Small client buffers, so that less data fills the connections.
CLIENT_BUFFER = 4096
PAYLOAD = b"unread " * 9362  # about 64 KiB per message, within the default --max-message
STALL = 1.0          # no client has taken a byte for this long: every connection is full
FILL_TIMEOUT = 90.0  # only catches a server that keeps reading for ever
CONNECTED = re.compile(r"^client (?P<id>\d+) connected from ")
SUMMARY = harness.SUMMARY


def stuck_client(port):
    """A client with small buffers, connected to 127.0.0.1:PORT."""
    return harness.connect(port, buffers=CLIENT_BUFFER)


def fill(clients, chunk):
    """Sends CHUNK again and again on every client (non-blocking, never reading) until
    none has taken a byte for STALL seconds: then the echo the server sends back fills
    the client's receive buffer and the server's send buffer, the server's send stays
    pending, it stops receiving, and what the client sends fills the other direction.
    A send that takes part of CHUNK is followed by the rest of it, so the stream is
    CHUNK after CHUNK (whole messages, for a chapter with messages). Returns the bytes
    sent by each client."""
    sent = [0] * len(clients)
    chunk = memoryview(chunk)
    for client in clients:
        client.setblocking(False)
    started = last_progress = time.monotonic()
    while time.monotonic() - last_progress < STALL:
        assert time.monotonic() - started < FILL_TIMEOUT, (
            "clients could still send after %s s (%d bytes): the server keeps reading"
            % (FILL_TIMEOUT, sum(sent)))
        for number, client in enumerate(clients):
            while True:
                try:
                    count = client.send(chunk[sent[number] % len(chunk):])
                except (BlockingIOError, InterruptedError):
                    break
                sent[number] += count
                last_progress = time.monotonic()
        time.sleep(0.05)
    return sent


@pytest.mark.parametrize("chapter", STOPPERS, ids=chapters.ids(STOPPERS))
def test_quit_with_sends_pending_to_clients_that_never_read(chapter, start_server):
    server = start_server(chapter, "--max-clients", str(SLOTS))
    clients = []
    control = None
    try:
        clients = [stuck_client(server.port) for _ in range(STUCK)]
        server.wait_until(lambda lines: sum(1 for l in lines if CONNECTED.match(l)) == STUCK,
                          what="%d connected lines" % STUCK)
        filling = time.monotonic()
        sent = fill(clients, chapter.message(PAYLOAD))
        filled = time.monotonic() - filling
        assert all(sent), ("a client could send nothing", sent, server.output())

        # The other clients are still served while those twenty are stuck.
        control = connect(server.port)
        message = chapter.message(b"control client, while twenty others never read\n")
        assert echo(control, message) == message, server.output()

        started = time.monotonic()
        code = server.quit(timeout=harness.EXIT_TIMEOUT)
        took = time.monotonic() - started
        print("%s: %d clients filled with %d bytes in %.1f s; quit: exit %s after %.2f s" % (
            chapter.name, STUCK, sum(sent), filled, code, took))
        assert code == 0, ("exit code %s after %.2f s" % (code, took), server.output())
        summary = SUMMARY.match(server.stdout[-1]) if server.stdout else None
        assert summary, ("the summary is not the last line", server.output())
        assert int(summary.group("connections")) == STUCK + 1, server.output()
        # Echoed: at least the control's message, at most what all clients sent.
        echoed = int(summary.group("bytes"))
        assert len(message) <= echoed <= sum(sent) + len(message), (
            "bytes echoed %d; the clients sent %d" % (echoed, sum(sent) + len(message)),
            server.output())
        # Every connection was closed, the stuck ones too.
        for client in clients + [control]:
            client.setblocking(True)
            assert drained_to_close(client), ("a client was not closed", server.output())
    finally:
        for client in clients + ([control] if control else []):
            client.close()


def drained_to_close(client, budget=harness.CLIENT_TIMEOUT):
    """Reads what the server had echoed to CLIENT until the connection ends (FIN or
    reset); whether it ends within BUDGET seconds."""
    deadline = time.monotonic() + budget
    while time.monotonic() < deadline:
        client.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            if not client.recv(65536):
                return True
        except (ConnectionResetError, ConnectionAbortedError):
            return True
        except socket.timeout:
            return False
    return False
