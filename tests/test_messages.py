"""A chapter that speaks in messages cuts them out of the byte stream wherever TCP cut it:
a message split at any byte, its header included, comes back whole; two hundred messages
in one send all come back, in order; a 1 MiB message that takes hundreds of receives
comes back whole; a zero-length message comes back as its 5-byte header alone.

And it ends a client that breaks the rules, that client only, with the reason: a length
over --max-message (a payload of exactly --max-message bytes is still echoed, and the
header alone of one byte more is enough to end it), an unknown type, or bytes that are
no message at all (an HTTP request). Another client connected all the while is served
before and after, and "quit" still exits 0 with a summary that counts only the echoes.

Messages are built with harness.echo_message and harness.message_header, the one place
the tests know the framing.
"""

import threading

import pytest

import chapters
import harness
from harness import (DEFAULT_MAX_MESSAGE, MESSAGE_HEADER_SIZE, connect, echo_message,
                     message_header, random_source, still_open)

MESSAGING = chapters.chapters_with("messages")
IDS = chapters.ids(MESSAGING)

CUT_PAUSE = 0.05     # between the two pieces of a cut message: nothing may come back
MANY = 200           # messages in one send
MANY_SIZES = (0, 3000)  # their payload sizes, inclusive: most cross a 4096-byte receive
BIG = 1 << 20        # the payload that takes many receives, with --max-message BIG
PIECE = 1000         # ... sent this many bytes at a time
BIG_TIMEOUT = 60.0   # only catches a hang
SMALL_MAX = 1000     # a --max-message for the boundary test
SUMMARY = harness.SUMMARY


def served(server, client, text):
    """Whether one echo message with TEXT makes the round trip on CLIENT unchanged."""
    message = echo_message(text)
    return harness.echoed(server, client, message, "echoing %r" % message[:40]) == message


@pytest.mark.parametrize("chapter", MESSAGING, ids=IDS)
def test_a_message_cut_at_every_byte_comes_back_whole(chapter, start_server):
    """One message of a 10-byte payload (15 bytes) is sent in two pieces, cut after byte
    1, 2, ... 14 in turn (four cuts inside the length, one before the type byte, one
    right after the header, the rest inside the payload), on one connection, with a
    pause between the pieces. Asserted each time: nothing comes back (and the connection
    stays open) while the message is incomplete, and then the whole message comes back."""
    server = start_server(chapter, "--workers", "2")
    client = connect(server.port)
    try:
        for cut in range(1, MESSAGE_HEADER_SIZE + 10):
            message = echo_message(b"cut at %02d." % cut)
            assert len(message) == MESSAGE_HEADER_SIZE + 10
            client.sendall(message[:cut])
            assert still_open(client, CUT_PAUSE), (
                "after the first %d of %d bytes, something came back or the server closed "
                "the connection" % (cut, len(message)), server.output())
            client.sendall(message[cut:])
            try:
                back = harness.receive_exactly(client, len(message))
            except OSError as e:
                pytest.fail("cut after byte %d: %r instead of the echo\n%s" % (
                    cut, e, server.output()))
            assert back == message, ("cut after byte %d: sent %r, got %r" % (
                cut, message, back), server.output())
    finally:
        client.close()
    assert server.quit() == 0, server.output()


@pytest.mark.parametrize("chapter", MESSAGING, ids=IDS)
def test_two_hundred_messages_in_one_send_all_come_back_in_order(chapter, start_server):
    """200 messages of random payload sizes from 0 to 3000 bytes (each a different
    pattern), written with one sendall: the server's 4096-byte receives cut them
    anywhere, headers included. Asserted: exactly their concatenation comes back; then
    a second such batch on the same connection does too."""
    server = start_server(chapter)
    client = connect(server.port, timeout=30.0)
    rng = random_source()
    try:
        for batch in range(2):
            messages = [echo_message(rng.randbytes(rng.randint(*MANY_SIZES)))
                        for _ in range(MANY)]
            stream = b"".join(messages)
            back = harness.echoed(server, client, stream, "batch %d" % (batch + 1))
            if back != stream:
                # Name the first message that differs: where the cutting went wrong.
                offset = 0
                for number, message in enumerate(messages):
                    if back[offset:offset + len(message)] != message:
                        break
                    offset += len(message)
                pytest.fail("batch %d: %d of %d bytes came back; message %d of %d (at byte "
                            "%d, %d bytes) is the first that differs\n%s" % (
                                batch + 1, len(back), len(stream), number + 1, MANY, offset,
                                len(message), server.output()))
    finally:
        client.close()
    assert server.quit() == 0, server.output()


@pytest.mark.parametrize("chapter", MESSAGING, ids=IDS)
def test_a_one_mebibyte_message_across_many_receives_comes_back_whole(chapter,
                                                                       start_server):
    """With --max-message 1048576, one message of a 1 MiB random payload, exactly the
    limit, is sent 1000 bytes at a time while the echo is read: it takes at least 256 of
    the server's receives, and none of them holds a whole message until the last.
    Asserted: the whole message comes back, once, and the connection then serves a
    small message too."""
    server = start_server(chapter, "--max-message", str(BIG))
    client = connect(server.port, timeout=BIG_TIMEOUT)
    rng = random_source()
    message = echo_message(rng.randbytes(BIG))
    failure = []

    def send_in_pieces():
        try:
            for start in range(0, len(message), PIECE):
                client.sendall(message[start:start + PIECE])
        except OSError as e:
            failure.append(e)

    sender = threading.Thread(target=send_in_pieces, daemon=True)
    try:
        sender.start()
        try:
            back = harness.receive_exactly(client, len(message))
        except OSError as e:
            pytest.fail("%r instead of the echo\n%s" % (e, server.output()))
        sender.join(BIG_TIMEOUT)
        assert not failure, (failure, server.output())
        assert len(back) == len(message), ("%d of %d bytes came back" % (
            len(back), len(message)), server.output())
        assert back == message, ("the message came back changed, first at byte %d" % next(
            i for i in range(len(back)) if back[i] != message[i]), server.output())
        assert served(server, client, b"and then a small one"), server.output()
    finally:
        client.close()
    assert server.quit() == 0, server.output()


@pytest.mark.parametrize("chapter", MESSAGING, ids=IDS)
def test_a_zero_length_message_comes_back_as_its_header(chapter, start_server):
    """A message with no payload is a 5-byte header, and comes back as exactly those 5
    bytes: alone, three in a row, and between two others."""
    server = start_server(chapter)
    client = connect(server.port)
    try:
        empty = echo_message(b"")
        assert empty == message_header(0) and len(empty) == MESSAGE_HEADER_SIZE
        assert harness.echoed(server, client, empty, "one empty message") == empty, server.output()
        back = harness.echoed(server, client, empty * 3, "three empty messages")
        assert back == empty * 3, server.output()
        around = echo_message(b"before") + empty + echo_message(b"after")
        back = harness.echoed(server, client, around, "an empty message between two")
        assert back == around, server.output()
    finally:
        client.close()
    assert server.quit() == 0, server.output()
    assert server.stdout[-1] == chapter.summary(1, 4 * len(empty) + len(around)), \
        server.output()


@pytest.mark.parametrize("limit", [None, 0, SMALL_MAX], ids=["default", "0", str(SMALL_MAX)])
@pytest.mark.parametrize("chapter", MESSAGING, ids=IDS)
def test_the_max_message_boundary(chapter, limit, start_server):
    """With --max-message LIMIT (or without it: 65536), a payload of exactly LIMIT bytes
    is echoed; then the header alone of a message of LIMIT + 1 bytes, with no payload
    behind it, ends that client: it is reset (an abortive close) and the server names
    the reason, "a message longer than --max-message (LIMIT bytes)". Another client,
    connected before, is served before and after."""
    args = [] if limit is None else ["--max-message", str(limit)]
    limit = DEFAULT_MAX_MESSAGE if limit is None else limit
    server = start_server(chapter, *args)
    other = connect(server.port)
    client = connect(server.port)
    try:
        number = harness.client_number(server, client)
        # Its messages fit within the limit too: with --max-message 0 they are empty.
        assert served(server, other, b"the other client, before"[:limit]), server.output()
        exact = echo_message(bytes(i % 251 for i in range(limit)))
        assert harness.echoed(server, client, exact, "a payload of exactly --max-message") == exact, \
            server.output()
        client.sendall(message_header(limit + 1))
        assert harness.how_closed(client) == "reset", (
            "a header of %d bytes over --max-message %d did not reset the client" % (
                limit + 1, limit), server.output())
        assert harness.disconnect_reason(server, number) == \
            "a message longer than --max-message (%d bytes)" % limit, server.output()
        assert served(server, other, b"the other client, after"[:limit]), server.output()
    finally:
        client.close()
        other.close()
    assert server.quit() == 0, server.output()
    assert server.stderr == [], server.output()


# Bytes that end the client that sends them, and the reason the server must give. The
# default --max-message is 65536.
BAD = [
    pytest.param(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
                 # "GET " read as a length: 0x47455420
                 "a message longer than --max-message (65536 bytes)", id="http-request"),
    # 5 and 19 are just past the types a client sends and those the server sends (chat).
    pytest.param(message_header(3, 5) + b"abc", "a message of unknown type 5", id="type-5"),
    pytest.param(message_header(2, 19) + b"ab", "a message of unknown type 19", id="type-19"),
    pytest.param(message_header(0, 0), "a message of unknown type 0", id="type-0"),
    pytest.param(message_header(1, 255) + b"?", "a message of unknown type 255", id="type-255"),
    pytest.param(message_header(0xFFFFFFFF), "a message longer than --max-message (65536 bytes)",
                 id="length-4GiB"),
]


@pytest.mark.parametrize("bad,reason", BAD)
@pytest.mark.parametrize("chapter", MESSAGING, ids=IDS)
def test_bad_bytes_end_only_their_client(chapter, bad, reason, start_server):
    """Two good clients are connected and served; a third sends BAD after a good message
    of its own. Asserted: the third is reset, its disconnected line gives REASON and the
    count of the two still live; the good clients are still served, and a fourth client
    that connects afterwards is too; "quit" exits 0, nothing is printed on stderr, and
    the summary counts 4 connections and exactly the bytes echoed to them."""
    server = start_server(chapter, "--workers", "2")
    good = [connect(server.port) for _ in range(2)]
    bad_client = connect(server.port)
    later = None
    total = [0]  # bytes echoed to the clients

    def serve(client, text):
        assert served(server, client, text), server.output()
        total[0] += len(echo_message(text))

    try:
        for number, client in enumerate(good):
            serve(client, b"good client %d, before" % number)
        serve(bad_client, b"a good message first")
        number = harness.client_number(server, bad_client)
        bad_client.sendall(bad)
        assert harness.how_closed(bad_client) == "reset", ("the client that sent %r was not reset"
                                                   % bad, server.output())
        line = server.wait_for(r"^client %d disconnected: " % number).string
        assert line == "client %d disconnected: %s (2 live)" % (number, reason), \
            server.output()
        for number, client in enumerate(good):
            serve(client, b"good client %d, after" % number)
        later = connect(server.port)
        serve(later, b"a client that came later")
    finally:
        for client in good + [bad_client] + ([later] if later else []):
            client.close()
    assert server.quit() == 0, server.output()
    assert server.stderr == [], server.output()
    summary = SUMMARY.match(server.stdout[-1])
    assert summary, ("the summary is not the last line", server.output())
    assert (int(summary.group("connections")), int(summary.group("bytes"))) == (4, total[0]), \
        server.output()
