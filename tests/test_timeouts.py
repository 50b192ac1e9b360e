"""A chapter with idle timeouts, checked by what its clients see:

- a client that connects and sends nothing is closed gracefully (FIN) once --idle-timeout
  has passed, and the server names the reason, "idle for S s";
- a client that makes an echo round trip every 0.3 s for three times the timeout is never
  closed meanwhile, and every echo comes back exact; once it stops, it is closed too;
- a slow-loris client, a header that promises 1000 bytes and then one byte every 0.2 s,
  is reset, "a message not finished within S s", however active it looks, while an
  active client next to it is served all along and stays open;
- a client that sends messages back to back, each split across two receives (every
  receive holds the end of one message and the start of the next), for three times the
  timeout, is not closed: a receive that completes a message is progress, and the next
  message is timed from there;
- a client that is silent for most of the timeout and then takes most of it to send one
  message is not closed either: receiving bytes is activity, even when nothing is sent;
- a chat member that idles is closed, and the member that is active (with echoes, which
  reach no one else) gets NOTICE "NAME left: idle for S s";
- a chat member that only listens, while another says a line every 0.3 s, is not closed:
  a send completed to it is activity too;
- --keepalive S sets TCP keep-alive on each accepted socket: under Wine the Linux socket
  behind the server's end shows a keep-alive timer in `ss -tno`; without it, none;
- "quit" with the timer running and idle and active clients connected exits 0, closes
  them all as "server stopping", prints the summary and nothing on stderr;
- the "idle timeout S s, checked every P ms" line gives the tick: a quarter of the
  timeout, at most 1 s.

No test measures speed. The bounds are behaviour, kept generous for a loaded machine: a
client is closed within the timeout, two ticks and SLACK of its last activity; the clients
that must not be closed pause at most a fraction of the timeout.
"""

import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

import chapters
import harness
from harness import (CLIENT_TIMEOUT, ECHO_TYPE, JOIN_TYPE, MESSAGE_TYPE, NOTICE_TYPE,
                     SAY_TYPE, client_number, connect, echo_message, how_closed, message,
                     message_header, random_source, receive_exactly, receive_message,
                     still_open)

TIMING = chapters.chapters_with("timeouts")
IDS = chapters.ids(TIMING)

SLACK = 4.0          # seconds on top of the timeout and two ticks, for a loaded machine
ACTIVE_PAUSE = 0.3   # between the round trips of an active client
ACTIVE_SIZES = (0, 2000)  # their payload sizes, inclusive
LORIS_LENGTH = 1000  # the payload a slow-loris header promises ...
LORIS_PAUSE = 0.2    # ... of which it sends one byte this often
PIECE_PAUSE = 0.25   # between the pieces of the messages split across receives
PIECE_SIZES = (1, 300)  # their payload sizes, inclusive
QUIT_TIMEOUT = 10    # --idle-timeout for the quit test: no client times out during it
QUIT_ACTIVE = 3.0    # seconds of round trips there, so the timer ticks a few times
KEEPALIVE = 7        # --keepalive for the keep-alive test


def tick(timeout):
    """The tick, in seconds, of --idle-timeout TIMEOUT: a quarter of it, at most 1 s (and
    at least 0.1 s, which no timeout of whole seconds reaches)."""
    return min(1.0, max(0.1, timeout / 4.0))


def bound(timeout):
    """Seconds after its last activity within which a client must be closed."""
    return timeout + 2 * tick(timeout) + SLACK


def disconnected(server, number):
    """Whether the server has printed a disconnected line for client NUMBER yet."""
    prefix = "client %d disconnected: " % number
    return any(line.startswith(prefix) for line in list(server.stdout))


def closed_within(server, client, seconds, what):
    """How the server ends CLIENT's connection within SECONDS ("closed" for FIN, "reset");
    fails the test, saying WHAT the client did, if it stays open that long."""
    closed = how_closed(client, max(seconds, 0.1))
    if closed is None:
        pytest.fail("%s, and was still open %.1f s later\n%s" % (what, seconds,
                                                                 server.output()))
    return closed


def round_trip(server, client, rng, what):
    """One echo message of a random payload on CLIENT; asserts it comes back exact and
    returns its size (what the server sent)."""
    sent = echo_message(rng.randbytes(rng.randint(*ACTIVE_SIZES)))
    back = harness.echoed(server, client, sent, what)
    assert back == sent, ("%s: sent %d bytes, %d came back%s" % (
        what, len(sent), len(back), "" if len(back) < len(sent) else ", changed"),
        server.output())
    return len(sent)


def pause_open(server, client, seconds, what):
    """Waits SECONDS, asserting that nothing arrives on CLIENT and that it stays open."""
    assert still_open(client, seconds), (
        "%s: the server closed the connection, or sent something unasked" % what,
        server.output())


class Trickle:
    """A client that sends a message one byte at a time: step() sends the next byte and
    looks, without waiting, whether the server has ended the connection. .ended is how:
    "reset" or "closed" (FIN), from whichever call saw it first; None while open."""

    def __init__(self, client, data):
        self.client = client
        self.data = data
        self.sent = 0
        self.ended = None

    def step(self):
        if self.ended is not None:
            return
        try:
            if self.sent < len(self.data):
                self.client.send(self.data[self.sent:self.sent + 1])
                self.sent += 1
            self.client.setblocking(False)
            try:
                got = self.client.recv(1, socket.MSG_PEEK)
            finally:
                self.client.settimeout(CLIENT_TIMEOUT)
        except (BlockingIOError, InterruptedError):
            return
        except (ConnectionResetError, ConnectionAbortedError):
            self.ended = "reset"
            return
        except BrokenPipeError:  # a FIN came first (the bytes after it drew a reset)
            self.ended = "closed"
            return
        self.ended = "closed" if not got else "data: %r" % got


@pytest.mark.parametrize("chapter", TIMING, ids=IDS)
def test_an_idle_client_is_closed_gracefully(chapter, start_server):
    """With --idle-timeout 1, a client connects and sends nothing. Asserted: it is closed
    with a FIN within the bound, and the server prints "client K disconnected: idle for
    1 s (N live)"; "quit" then exits 0."""
    server = start_server(chapter, "--idle-timeout", "1")
    client = connect(server.port)
    try:
        connected = time.monotonic()
        number = client_number(server, client)
        closed = closed_within(server, client, connected + bound(1) - time.monotonic(),
                               "an idle client connected and sent nothing")
        assert closed == "closed", ("an idle client was not closed gracefully: %s" % closed,
                                    server.output())
        assert harness.disconnect_reason(server, number) == "idle for 1 s", server.output()
    finally:
        client.close()
    assert server.quit() == 0, server.output()
    assert server.stderr == [], server.output()


@pytest.mark.parametrize("chapter", TIMING, ids=IDS)
def test_an_active_client_is_not_closed_until_it_stops(chapter, start_server):
    """With --idle-timeout 2, a client makes an echo round trip of a random payload every
    0.3 s for 6 s. Asserted: every echo comes back exact and nothing else arrives
    between them (the connection stays open); once it stops, it is closed with a FIN
    within the bound, "idle for 2 s"; the summary counts its echoes."""
    timeout = 2
    server = start_server(chapter, "--idle-timeout", str(timeout))
    client = connect(server.port)
    rng = random_source()
    total = 0
    try:
        number = client_number(server, client)
        end = time.monotonic() + 3 * timeout
        rounds = 0
        while time.monotonic() < end:
            total += round_trip(server, client, rng, "round trip %d" % (rounds + 1))
            rounds += 1
            pause_open(server, client, ACTIVE_PAUSE, "after round trip %d" % rounds)
        assert not disconnected(server, number), server.output()
        stopped = time.monotonic()
        closed = closed_within(server, client, stopped + bound(timeout) - time.monotonic(),
                               "a client stopped after %d round trips" % rounds)
        assert closed == "closed", server.output()
        assert harness.disconnect_reason(server, number) == "idle for %d s" % timeout, server.output()
    finally:
        client.close()
    assert server.quit() == 0, server.output()
    assert server.stdout[-1] == chapter.summary(1, total), server.output()


@pytest.mark.parametrize("chapter", TIMING, ids=IDS)
def test_a_slow_loris_is_reset_and_its_neighbour_served(chapter, start_server):
    """With --idle-timeout 1, a slow-loris client sends the header of a message of 1000
    bytes, then one byte of it every 0.2 s, while another client makes a round trip each
    time. Asserted: the slow loris is reset within the bound of its header (each byte
    counts as activity, but the message is not finished in time), and the server gives
    the reason "a message not finished within 1 s"; the other client's echoes all come
    back exact, for a second longer too, and it is still open and never disconnected."""
    server = start_server(chapter, "--idle-timeout", "1")
    active = connect(server.port)
    loris = connect(server.port)
    rng = random_source()
    try:
        active_number = client_number(server, active)
        number = client_number(server, loris)
        loris.sendall(message_header(LORIS_LENGTH))
        started = time.monotonic()
        trickle = Trickle(loris, bytes(LORIS_LENGTH))
        rounds = 0
        while trickle.ended is None and time.monotonic() - started < bound(1):
            time.sleep(LORIS_PAUSE)
            trickle.step()
            round_trip(server, active, rng, "the active client's round trip %d" % (rounds + 1))
            rounds += 1
        if trickle.ended is None:
            pytest.fail("the slow loris, %d bytes into a message of %d, was still open %.1f "
                        "s after its header\n%s" % (trickle.sent, LORIS_LENGTH, bound(1),
                                                    server.output()))
        assert trickle.ended == "reset", ("the slow loris was not reset: %s after %d bytes" % (
            trickle.ended, trickle.sent), server.output())
        assert harness.disconnect_reason(server, number) == "a message not finished within 1 s", \
            server.output()
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            round_trip(server, active, rng, "the active client's round trip %d" % (rounds + 1))
            rounds += 1
            pause_open(server, active, LORIS_PAUSE, "the active client, after the slow loris")
        assert not disconnected(server, active_number), server.output()
    finally:
        active.close()
        loris.close()
    assert server.quit() == 0, server.output()
    assert server.stderr == [], server.output()


@pytest.mark.parametrize("chapter", TIMING, ids=IDS)
def test_messages_split_across_receives_are_progress(chapter, start_server):
    """With --idle-timeout 2, a client sends echo messages of random sizes back to back
    for 6 s, each cut at a random byte (its header too): every send, 0.25 s apart, is
    the rest of one message and the start of the next, so the server's inbox is never
    empty after a receive, yet every receive completes a message. Asserted: each message
    comes back exact once its rest is sent, nothing else arrives, and the client is
    never closed; after the last message it is still open."""
    timeout = 2
    server = start_server(chapter, "--idle-timeout", str(timeout))
    client = connect(server.port)
    rng = random_source()

    def next_message():
        whole = echo_message(rng.randbytes(rng.randint(*PIECE_SIZES)))
        return whole, rng.randint(1, len(whole) - 1)

    try:
        number = client_number(server, client)
        current, cut = next_message()
        client.sendall(current[:cut])
        end = time.monotonic() + 3 * timeout
        count = 0
        while True:
            pause_open(server, client, PIECE_PAUSE, "message %d half sent" % (count + 1))
            last = time.monotonic() >= end
            following, following_cut = next_message()
            client.sendall(current[cut:] + (b"" if last else following[:following_cut]))
            try:
                back = receive_exactly(client, len(current))
            except OSError as e:
                pytest.fail("message %d: %r instead of the echo\n%s" % (count + 1, e,
                                                                         server.output()))
            assert back == current, ("message %d: sent %d bytes, %d came back" % (
                count + 1, len(current), len(back)), server.output())
            count += 1
            if last:
                break
            current, cut = following, following_cut
        pause_open(server, client, PIECE_PAUSE, "after the last of %d messages" % count)
        assert not disconnected(server, number), server.output()
    finally:
        client.close()
    assert server.quit() == 0, server.output()
    assert server.stderr == [], server.output()


@pytest.mark.parametrize("chapter", TIMING, ids=IDS)
def test_receiving_is_activity_even_with_nothing_sent(chapter, start_server):
    """With --idle-timeout 4, a client is silent for 2.5 s, then sends one echo message in
    16 pieces 0.2 s apart (3 s): for 5.5 s the server completes no send to it, but it
    has received bytes all along, and the message is finished within the timeout.
    Asserted: the echo comes back exact and the client is still open; the server has
    not disconnected it."""
    timeout = 4
    pieces = 16
    server = start_server(chapter, "--idle-timeout", str(timeout))
    client = connect(server.port)
    rng = random_source()
    try:
        number = client_number(server, client)
        pause_open(server, client, 2.5, "a client silent for 2.5 s")
        whole = echo_message(rng.randbytes(200))
        size = -(-len(whole) // pieces)
        started = time.monotonic()
        for i in range(pieces):
            # On a schedule, so that the pauses do not add up to more than they should.
            time.sleep(max(0.0, started + i * 0.2 - time.monotonic()))
            try:
                client.sendall(whole[i * size:(i + 1) * size])
            except OSError as e:
                pytest.fail("piece %d of %d: %r: the server has ended the connection\n%s" % (
                    i + 1, pieces, e, server.output()))
        try:
            back = receive_exactly(client, len(whole))
        except OSError as e:
            pytest.fail("%r instead of the echo\n%s" % (e, server.output()))
        assert back == whole, ("%d of %d bytes came back: the server closed the client" % (
            len(back), len(whole)) if len(back) < len(whole) else "the echo changed",
            server.output())
        pause_open(server, client, 0.3, "after the echo")
        assert not disconnected(server, number), server.output()
    finally:
        client.close()
    assert server.quit() == 0, server.output()
    assert server.stderr == [], server.output()


@pytest.mark.parametrize("chapter", TIMING, ids=IDS)
def test_an_idle_member_leaves_the_room_with_the_reason(chapter, start_server):
    """With --idle-timeout 1, two members join; one idles, the other makes an echo round
    trip every 0.3 s (an echo reaches no one else, so the idler is sent nothing).
    Asserted: the idler gets its two notices, then a FIN within the bound; the active
    member gets exactly one message besides its echoes, NOTICE "idler left: idle for
    1 s"; it stays open and is still served; the server gives the same reason."""
    server = start_server(chapter, "--idle-timeout", "1")
    idler = connect(server.port)
    talker = connect(server.port)
    rng = random_source()
    try:
        idler.sendall(message(JOIN_TYPE, b"idler"))
        assert receive_message(idler) == (NOTICE_TYPE, b"idler joined"), server.output()
        talker.sendall(message(JOIN_TYPE, b"talker"))
        assert receive_message(talker) == (NOTICE_TYPE, b"talker joined"), server.output()
        assert receive_message(idler) == (NOTICE_TYPE, b"talker joined"), server.output()
        idle_since = time.monotonic()
        number = client_number(server, idler)
        talker_number = client_number(server, talker)
        others = []
        rounds = 0
        while not others and time.monotonic() - idle_since < bound(1):
            payload = rng.randbytes(rng.randint(*ACTIVE_SIZES))
            talker.sendall(echo_message(payload))
            while True:
                try:
                    got = receive_message(talker)
                except OSError as e:
                    pytest.fail("the active member, round trip %d: %r\n%s" % (
                        rounds + 1, e, server.output()))
                assert got is not None, ("the active member was closed", server.output())
                if got == (ECHO_TYPE, payload):
                    break
                others.append(got)
            rounds += 1
            time.sleep(ACTIVE_PAUSE)
        assert others == [(NOTICE_TYPE, b"idler left: idle for 1 s")], (
            "besides its %d echoes, the active member received %r" % (rounds, others),
            server.output())
        closed = closed_within(server, idler, idle_since + bound(1) - time.monotonic(),
                               "a member idled")
        assert closed == "closed", server.output()
        assert harness.disconnect_reason(server, number) == "idle for 1 s", server.output()
        round_trip(server, talker, rng, "the active member, after the idler left")
        pause_open(server, talker, ACTIVE_PAUSE, "the active member, after the idler left")
        assert not disconnected(server, talker_number), server.output()
    finally:
        idler.close()
        talker.close()
    assert server.quit() == 0, server.output()
    assert server.stderr == [], server.output()


@pytest.mark.parametrize("chapter", TIMING, ids=IDS)
def test_a_member_that_only_listens_is_not_idle(chapter, start_server):
    """With --idle-timeout 2, two members join; one says a line every 0.3 s for 6 s, the
    other only reads and sends nothing: the server completes sends to it, which is
    activity too. Asserted: both receive every line, "talker: line N", in order, and
    nothing else; neither is closed, and the server disconnects neither."""
    timeout = 2
    server = start_server(chapter, "--idle-timeout", str(timeout))
    listener = connect(server.port)
    talker = connect(server.port)
    try:
        listener.sendall(message(JOIN_TYPE, b"listener"))
        assert receive_message(listener) == (NOTICE_TYPE, b"listener joined"), server.output()
        talker.sendall(message(JOIN_TYPE, b"talker"))
        for client in (talker, listener):
            assert receive_message(client) == (NOTICE_TYPE, b"talker joined"), server.output()
        numbers = [client_number(server, client) for client in (listener, talker)]
        end = time.monotonic() + 3 * timeout
        line = 0
        while time.monotonic() < end:
            line += 1
            text = b"line %d" % line
            talker.sendall(message(SAY_TYPE, text))
            for who, client in (("the talker", talker), ("the listener", listener)):
                try:
                    got = receive_message(client)
                except OSError as e:
                    pytest.fail("%s, line %d: %r\n%s" % (who, line, e, server.output()))
                assert got == (MESSAGE_TYPE, b"talker: " + text), (
                    "%s, line %d: received %r" % (who, line, got), server.output())
            time.sleep(ACTIVE_PAUSE)
        for who, client in (("the talker", talker), ("the listener", listener)):
            pause_open(server, client, 0.1, "%s, after %d lines" % (who, line))
        for number in numbers:
            assert not disconnected(server, number), server.output()
    finally:
        listener.close()
        talker.close()
    assert server.quit() == 0, server.output()
    assert server.stderr == [], server.output()


def ss_lines(server_port, client_port):
    """What `ss -tno` shows of the server's end of one connection: the lines after its
    header (one, for a connection that is established)."""
    done = subprocess.run(["ss", "-tno", "state", "established",
                           "( sport = :%d and dport = :%d )" % (server_port, client_port)],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=30)
    out = done.stdout.decode("utf-8", "replace")
    assert done.returncode == 0, (done.returncode, out, done.stderr)
    return [line for line in out.splitlines()[1:] if line.strip()]


@pytest.mark.skipif(os.name == "nt" or not sys.platform.startswith("linux"),
                    reason="the keep-alive timer of the server's socket is read with Linux's "
                           "ss, under Wine; Windows shows it nowhere a test can read")
@pytest.mark.parametrize("args,expected", [
    (["--keepalive", str(KEEPALIVE)], True),
    ([], False),
    (["--keepalive", "0"], False),
], ids=["keepalive-%d" % KEEPALIVE, "default", "keepalive-0"])
@pytest.mark.parametrize("chapter", TIMING, ids=IDS)
def test_keepalive_shows_on_the_accepted_socket(chapter, args, expected, start_server):
    """With --keepalive 7 the server's end of an accepted connection (the Linux socket
    behind Wine's) has a keep-alive timer: `ss -tno` shows "timer:(keepalive,...)";
    without --keepalive, or with 0, it shows none. The client stays open and is served."""
    if shutil.which("ss") is None:
        pytest.skip("no ss on PATH (iproute2; scripts/ensure-tools.sh test installs it)")
    server = start_server(chapter, *args)
    client = connect(server.port)
    try:
        client_number(server, client)  # printed after the keep-alive is set
        lines = ss_lines(server.port, client.getsockname()[1])
        assert len(lines) == 1, ("ss shows %d lines for the connection" % len(lines), lines)
        assert ("timer:(keepalive," in lines[0]) == expected, (
            "ss -tno shows %r" % lines[0], server.output())
        round_trip(server, client, random_source(), "after ss")
    finally:
        client.close()
    assert server.quit() == 0, server.output()
    assert server.stderr == [], server.output()


@pytest.mark.parametrize("chapter", TIMING, ids=IDS)
def test_quit_with_the_timer_running(chapter, start_server):
    """With --idle-timeout 10 (a tick a second), three clients connect and send nothing
    and two make round trips for 3 s; then "quit". Asserted: it exits 0, every client is
    closed with a FIN, the server gives each the reason "server stopping", the summary
    counts 5 connections and every echoed byte, and nothing is printed on stderr."""
    server = start_server(chapter, "--idle-timeout", str(QUIT_TIMEOUT))
    port = server.port  # first: wait_for's cursor passes the line it matches
    server.wait_for(r"^idle timeout %d s, checked every 1000 ms$" % QUIT_TIMEOUT)
    idle = [connect(port) for _ in range(3)]
    active = [connect(port) for _ in range(2)]
    rng = random_source()
    total = 0
    try:
        numbers = [client_number(server, client) for client in idle + active]
        end = time.monotonic() + QUIT_ACTIVE
        while time.monotonic() < end:
            for number, client in enumerate(active):
                total += round_trip(server, client, rng, "active client %d" % (number + 1))
            time.sleep(0.1)
        assert server.quit() == 0, server.output()
        for number, client in enumerate(idle + active):
            assert how_closed(client) == "closed", ("client %d was not closed with a FIN" % (
                number + 1), server.output())
        for number in numbers:
            assert harness.disconnect_reason(server, number) == "server stopping", server.output()
    finally:
        for client in idle + active:
            client.close()
    assert server.stderr == [], server.output()
    assert server.stdout[-1] == chapter.summary(5, total), server.output()


@pytest.mark.parametrize("args,timeout,period", [
    (["--idle-timeout", "1"], 1, 250),
    (["--idle-timeout", "3"], 3, 750),
    (["--idle-timeout", "300"], 300, 1000),
    ([], 300, 1000),
], ids=["1", "3", "300", "default"])
@pytest.mark.parametrize("chapter", TIMING, ids=IDS)
def test_the_tick_is_a_quarter_of_the_timeout_up_to_a_second(chapter, args, timeout, period,
                                                             start_server):
    """The server prints "idle timeout S s, checked every P ms": P is S/4, at most 1 s
    (250 ms for 1 s, 750 ms for 3 s, 1000 ms for 300 s, the default)."""
    server = start_server(chapter, *args)
    line = server.wait_for(r"^idle timeout ").string
    assert line == "idle timeout %d s, checked every %d ms" % (timeout, period), server.output()
    assert server.quit() == 0, server.output()
    assert server.stderr == [], server.output()
