"""A chapter that prints what clients send prints every byte, intact and in order:
"client K sent N bytes: <text>", where printable ASCII stands for itself, a backslash is
\\\\, \\n \\r \\t are escaped, and every other byte is \\xNN in lowercase hex. A message
longer than one receive arrives in several lines (TCP keeps no message boundaries), so
the tests join one client's lines in order and compare them with what it sent.
"""

import os
import re

import pytest

import chapters
import harness
from harness import connect, local_port

RECEIVERS = chapters.chapters_with("receive")
IDS = chapters.ids(RECEIVERS)
STARTED = re.compile(r"^(?P<workers>\d+) worker threads waiting on the port; "
                     r"each receive takes up to (?P<size>\d+) bytes$")
CONNECTED = re.compile(r"^client (?P<id>\d+) connected from 127\.0\.0\.1:(?P<port>\d+) ")
SENT = re.compile(r"^client (?P<id>\d+) sent (?P<count>\d+) bytes: (?P<text>.*)$")
ESCAPE = re.compile(r"\\(\\|n|r|t|x[0-9a-f]{2})|(.)", re.DOTALL)
ESCAPES = {"\\": 0x5C, "n": 0x0A, "r": 0x0D, "t": 0x09}
RECEIVE_TIMEOUT = 30.0


def escaped(data):
    """DATA as the chapter prints it."""
    out = []
    for byte in data:
        char = chr(byte)
        if char == "\\":
            out.append("\\\\")
        elif char in "\n\r\t":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[char])
        elif 0x20 <= byte < 0x7F:
            out.append(char)
        else:
            out.append("\\x%02x" % byte)
    return "".join(out)


def unescaped(text):
    """The bytes TEXT stands for; AssertionError for anything the chapter never prints
    (a bare non-printable character, an unknown or upper-case escape)."""
    data = bytearray()
    for match in ESCAPE.finditer(text):
        escape, plain = match.groups()
        if escape is not None:
            data.append(int(escape[1:], 16) if escape[0] == "x" else ESCAPES[escape])
        else:
            assert plain != "\\" and 0x20 <= ord(plain) < 0x7F, (
                "%r printed as itself in %r" % (plain, text))
            data.append(ord(plain))
    return bytes(data)


def test_escaping_helpers():
    # Guards the helpers the tests compare with: they must reject what they should.
    every_byte = bytes(range(256))
    assert unescaped(escaped(every_byte)) == every_byte
    assert escaped(b"a\\b\n\r\t\x00\xff") == "a\\\\b\\n\\r\\t\\x00\\xff"
    for wrong in ("\\xFF", "\\q", "a\\", "\x01", "\\x4"):
        with pytest.raises(AssertionError):
            unescaped(wrong)


def started(server):
    """(worker count, receive size) from the startup line, wherever it is among the
    startup lines (the wait_for cursor is not moved)."""
    match = server.wait_until(lambda lines: next(
        (m for m in map(STARTED.match, lines) if m), None), what="the worker threads line")
    return int(match.group("workers")), int(match.group("size"))


def client_ids(server, clients):
    """{local port: client id} for CLIENTS, from their "connected" lines."""
    wanted = {local_port(c) for c in clients}

    def check(lines):
        ids = {}
        for line in lines:
            match = CONNECTED.match(line)
            if match and int(match.group("port")) in wanted:
                ids[int(match.group("port"))] = match.group("id")
        return ids if len(ids) == len(wanted) else None

    return server.wait_until(check, what="a connected line for each client")


def received(server, expected, timeout=RECEIVE_TIMEOUT, errors_end_it=False):
    """Waits until each client id in EXPECTED ({id: bytes sent}) has had as many bytes
    printed as it sent; returns {id: [(count, text), ...]} in the order printed. With
    ERRORS_END_IT, an error line on the server's stderr fails the test at once."""

    def check(lines):
        if errors_end_it and server.stderr:
            return "error"
        pieces = {client_id: [] for client_id in expected}
        for line in lines:
            match = SENT.match(line)
            if match and match.group("id") in pieces:
                pieces[match.group("id")].append((int(match.group("count")), match.group("text")))
        done = all(sum(count for count, _ in pieces[i]) >= len(data)
                   for i, data in expected.items())
        return pieces if done else None

    pieces = server.wait_until(check, timeout, "every byte the clients sent")
    assert pieces != "error", ("the server reported an error before it printed every byte "
                               "the clients sent", server.output())
    return pieces


def check_pieces(server, client_id, sent, pieces, size):
    """Each printed piece is N bytes escaped as the chapter escapes them, at most one
    receive's worth; joined in order they are exactly what the client sent."""
    data = b""
    for count, text in pieces:
        piece = unescaped(text)
        assert len(piece) == count, ("client %s: the line says %d bytes, its text holds %d"
                                     % (client_id, count, len(piece)), server.output())
        assert 0 < count <= size, ("client %s: a %d-byte piece from %d-byte receives"
                                   % (client_id, count, size), server.output())
        assert text == escaped(piece), ("client %s: %r is not escaped as expected (%r)"
                                        % (client_id, text, escaped(piece)), server.output())
        data += piece
    assert data == sent, ("client %s: what was printed is not what it sent" % client_id,
                          len(data), len(sent), server.output())


def send_and_check(server, message, size):
    """Sends message from a new client, checks the server printed it intact in pieces of
    at most size bytes, closes the client and returns its id."""
    client = connect(server.port)
    try:
        client_id = client_ids(server, [client])[local_port(client)]
        client.sendall(message)
        pieces = received(server, {client_id: message})[client_id]
        check_pieces(server, client_id, message, pieces, size)
    finally:
        client.close()
    return client_id


@pytest.mark.parametrize("extra", [0, 1], ids=["buffer-size", "buffer-size+1"])
@pytest.mark.parametrize("chapter", RECEIVERS, ids=IDS)
def test_message_of_the_buffer_size(chapter, extra, start_server):
    server = start_server(chapter)
    _, size = started(server)
    # Mostly bytes printed as four characters (\xff), the longest line a receive can give.
    message = bytes(0xFF if i % 5 else i % 256 for i in range(size + extra))
    client_id = send_and_check(server, message, size)
    server.wait_for(r"^client %s closed the connection$" % client_id)
    assert server.quit() == 0, server.output()


@pytest.mark.parametrize("chapter", RECEIVERS, ids=IDS)
def test_full_receives_leave_the_next_clients_alone(chapter, start_server):
    """Three clients connect; the first two, one after the other, each send a message
    that fills one receive exactly; then all three send a line, twice: every byte of each
    is printed, within LINE_TIMEOUT of being sent, and the server reports no error
    meanwhile (the test fails at the first one). A receive that fills the buffer is
    where a terminating zero written at buffer[length] lands one byte past its end (the
    notes' `buf[len] = 0`), in what follows the buffer: in chapter 05, the next slot's
    socket handle, so the next client is the one that stops being served. Two lines after
    the full receives, because a receive posted before the damage still completes once;
    two full receives, so that a handle whose low byte is 0 already cannot hide it."""
    server = start_server(chapter)
    _, size = started(server)
    clients = [connect(server.port) for _ in range(3)]
    try:
        ids = client_ids(server, clients)
        sent = {client_id: b"" for client_id in ids.values()}

        def send(client, data):
            sent[ids[local_port(client)]] += data
            client.sendall(data)

        for number, client in enumerate(clients[:2]):
            send(client, (b"%d" % number) * size)
            received(server, sent, harness.LINE_TIMEOUT, errors_end_it=True)
        for line in range(2):
            for number, client in enumerate(clients):
                send(client, b"line %d of client %d\n" % (line, number + 1))
            pieces = received(server, sent, harness.LINE_TIMEOUT, errors_end_it=True)
        for client_id, data in sent.items():
            check_pieces(server, client_id, data, pieces[client_id], size)
    finally:
        for client in clients:
            client.close()
    assert server.quit() == 0, server.output()


@pytest.mark.parametrize("chapter", RECEIVERS, ids=IDS)
def test_binary_bytes_are_escaped(chapter, start_server):
    server = start_server(chapter)
    _, size = started(server)
    # Every byte value, then runs of the ones that need care: zero, 0xff, backslashes
    # (also before an x, where \\x41 must not read as the escape \x41), line ends, DEL.
    message = bytes(range(256)) + b"\x00\x00\xff\xff\\\\\\x41\\n\r\n\t\x7f\x80 ~"
    send_and_check(server, message, size)
    assert server.quit() == 0, server.output()


@pytest.mark.parametrize("chapter", RECEIVERS, ids=IDS)
def test_fifty_clients_then_one_more(chapter, start_server):
    server = start_server(chapter)
    _, size = started(server)
    clients = [connect(server.port) for _ in range(50)]
    try:
        ids = client_ids(server, clients)
        messages = {}
        for n, client in enumerate(clients):
            message = b"message %d from port %d: " % (n, local_port(client)) + os.urandom(n * 37)
            messages[ids[local_port(client)]] = message
            client.sendall(message)
        pieces = received(server, messages)
        for client_id, message in messages.items():
            check_pieces(server, client_id, message, pieces[client_id], size)

        # The server is still serving: a 51st client is printed too.
        last = connect(server.port)
        clients.append(last)
        last_id = client_ids(server, [last])[local_port(last)]
        assert last_id not in messages, server.output()
        message = b"the 51st client\n"
        last.sendall(message)
        check_pieces(server, last_id, message, received(server, {last_id: message})[last_id],
                     size)
    finally:
        for client in clients:
            client.close()
    assert server.running(), server.output()
    assert server.quit() == 0, server.output()


@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("chapter", chapters.chapters_with("receive", "workers"),
                         ids=chapters.ids(chapters.chapters_with("receive", "workers")))
def test_worker_count(chapter, workers, start_server):
    server = start_server(chapter, "--workers", str(workers))
    count, size = started(server)
    assert count == workers, server.output()
    clients = [connect(server.port) for _ in range(4)]
    try:
        ids = client_ids(server, clients)
        messages = {}
        for round_number in range(3):
            for client in clients:
                message = b"round %d\n" % round_number
                client_id = ids[local_port(client)]
                messages[client_id] = messages.get(client_id, b"") + message
                client.sendall(message)
        pieces = received(server, messages)
        for client_id, message in messages.items():
            check_pieces(server, client_id, message, pieces[client_id], size)
    finally:
        for client in clients:
            client.close()
    assert server.quit() == 0, server.output()
