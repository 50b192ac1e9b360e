"""A chapter with a chat room, checked by what its clients see, byte for byte:

- members that join and say lines each see every line exactly once, each sayer's lines
  in the order said, and the notices of who joined; one that leaves with LEAVE gets
  "NAME left", as the others do; one whose connection ends makes the others get
  "NAME left: REASON", REASON being the server's own disconnect reason;
- 100 members that each say 100 lines, each line only after its previous one has come
  back (a chat client that reads), all receive all 10,000 lines unchanged, in order per
  sayer;
- a JOIN, a SAY and a LEAVE cut at every byte offset are answered as sent whole, each
  once its last byte is there;
- a message too long, of an unknown type, or of a type only the server sends ends only
  the client that sent it, with the reason; the room hears "NAME left: REASON" if it
  was a member, and goes on chatting;
- a refused request (SAY or LEAVE outside the room, a name that is invalid or taken,
  JOIN twice) gets an ERROR and the connection stays open; no one else hears of it;
- a member that never reads is dropped as too slow once its queue would pass
  --max-queued, and the members that read get every line of each other's, in order;
- ECHO still answers its sender alone, in the room or out of it, among the chat;
- "quit" with 50 members in the room exits 0 with the summary, and sends them no notice.

The protocol (types, payloads, texts) is chapter 12's; the messages are built and read
with harness.message, harness.receive_message and harness.MessageReader. Every bound
here only catches a hang; nothing measures speed (the 100 x 100 test prints how long it
took).
"""

import re
import selectors
import socket
import time

import pytest

import chapters
import harness
from harness import (CLIENT_TIMEOUT, ECHO_TYPE, ERROR_TYPE, JOIN_TYPE, LEAVE_TYPE,
                     MESSAGE_TYPE, NOTICE_TYPE, SAY_TYPE, connect, echo_message, how_closed,
                     message, message_header, random_source, receive_message, still_open)

CHATTERS = chapters.chapters_with("chat")
IDS = chapters.ids(CHATTERS)

NAME_RULE = b"a name is 1 to 32 letters, digits, '-', '_' or '.'"
JOINED = re.compile(r"^client (?P<id>\d+) joined the room as (?P<name>\S+) "
                    r"\((?P<members>\d+) in the room\)$")
LEFT = re.compile(r"^client (?P<id>\d+) left the room as (?P<name>\S+) "
                  r"\((?P<members>\d+) in the room\)$")

QUIET = 0.3          # how long "nothing more arrives" is watched for
CUT_PAUSE = 0.05     # between the two pieces of a cut stream
BYTE_PAUSE = 0.01    # between the single bytes of a stream sent byte by byte
LINES = 8            # lines each of the three members says
MANY = 100           # members that say ...
MANY_LINES = 100     # ... this many lines each
MANY_SLOTS = 128
# Lines in flight to one member are at most one per sayer (the pacing), so a member's
# queue stays far below this; a cap this large keeps the test about broadcasting, not
# about dropping a member that the one reading thread was slow to read.
MANY_MAX_QUEUED = 4 << 20
MANY_TIMEOUT = 1200.0  # only catches a hang: the whole 100 x 100 conversation
STALL = 60.0         # only catches a hang: no member receives a byte for this long
SLOW_CAP = 8192      # --max-queued for the slow-consumer test
SLOW_BUFFERS = 4096  # the never-reading member's socket buffers
SLOW_LINE = 1000     # bytes of each line the two readers say
# Lines each says at most, if the slow member is never dropped. Under Wine 8 the drop came
# after 1,850 to 2,050 lines of the two (about 2 MB: what the kernel's buffers between the
# server and S took in before the server's queue for S reached the cap).
SLOW_MOST = 5000
SLOW_AFTER = 50      # lines each says after the slow member is dropped
SLOW_TIMEOUT = 600.0
QUITTERS = 50


# --- the protocol, as clients see it ----------------------------------------------------
def join(client, name):
    client.sendall(message(JOIN_TYPE, name))


def say(client, text):
    client.sendall(message(SAY_TYPE, text))


def leave(client, payload=b""):
    client.sendall(message(LEAVE_TYPE, payload))


def notice(text):
    return (NOTICE_TYPE, text)


def said(name, text):
    return (MESSAGE_TYPE, name + b": " + text)


def error(text):
    return (ERROR_TYPE, text)


def shown(messages):
    """MESSAGES, (type, payload) pairs, for an assertion message: long payloads cut."""
    return [(kind, payload if len(payload) <= 80 else payload[:80] + b"...")
            for kind, payload in messages]


def expect(server, client, expected, who):
    """Receives len(EXPECTED) messages on CLIENT and asserts they are EXPECTED, type and
    payload, in that order. WHO names the client in the failure."""
    got = []
    for _ in expected:
        try:
            received = receive_message(client)
        except socket.timeout:
            pytest.fail("%s: nothing more arrived for %s s after %r; expected %r\n%s" % (
                who, CLIENT_TIMEOUT, shown(got), shown(expected), server.output()))
        except OSError as e:
            pytest.fail("%s: %r after %r; expected %r\n%s" % (
                who, e, shown(got), shown(expected), server.output()))
        if received is None:
            pytest.fail("%s: the server closed the connection after %r; expected %r\n%s" % (
                who, shown(got), shown(expected), server.output()))
        got.append(received)
    assert got == list(expected), ("%s received %r, expected %r" % (
        who, shown(got), shown(expected)), server.output())


def nothing_more(server, client, who, wait=QUIET):
    """Asserts that nothing arrives on CLIENT for WAIT seconds and that it stays open."""
    assert still_open(client, wait), (
        "%s: something arrived, or the server closed the connection, where nothing "
        "should have" % who, server.output())


def join_in_turn(server, names, members=(), buffers=None):
    """Connects one client per name in NAMES and joins it, one after another: each join
    is seen by everyone in the room, the joiner and MEMBERS (name, client) pairs already
    in it included, as NOTICE "NAME joined", its next message. Returns MEMBERS with the
    new (name, client) pairs after them."""
    members = list(members)
    for name in names:
        client = connect(server.port, buffers=buffers)
        join(client, name)
        members.append((name, client))
        for other, other_client in members:
            expect(server, other_client, [notice(name + b" joined")],
                   "%s, for %s's join" % (other.decode(), name.decode()))
    return members


def by_sayer(server, received, who):
    """The texts of the MESSAGEs RECEIVED, by sayer (name -> texts in the order they
    arrived); asserts they are all MESSAGEs."""
    texts = {}
    for kind, payload in received:
        assert kind == MESSAGE_TYPE and b": " in payload, (
            "%s received %r among the lines" % (who, shown([(kind, payload)])),
            server.output())
        name, text = payload.split(b": ", 1)
        texts.setdefault(name, []).append(text)
    return texts


def server_lines(server, pattern, count, what):
    """Waits until the server has printed COUNT lines matching PATTERN; returns them all."""
    def found(lines):
        matches = [m for m in map(pattern.match, lines) if m]
        return matches if len(matches) >= count else None
    return server.wait_until(found, what=what)


def close_all(clients):
    for client in clients:
        client.close()


# --- a conversation of members that read, on one thread ---------------------------------
class Lines:
    """COUNT lines of SIZE bytes, line I being PAD[OFFSET + I:OFFSET + I + SIZE]: each
    line differs from the one before it, and none is kept in memory of its own."""

    def __init__(self, pad, offset, count, size):
        assert len(pad) >= offset + count - 1 + size
        self._pad, self._offset, self._count, self._size = pad, offset, count, size

    def __len__(self):
        return self._count

    def __getitem__(self, index):
        if not 0 <= index < self._count:
            raise IndexError(index)
        start = self._offset + index
        return self._pad[start:start + self._size]


class Talker:
    """One member of converse(): it says its TEXTS one at a time, each only once its
    previous line has come back to it (or, in lockstep, has reached every talker), and
    checks every line it receives against what its sayer said: the next line of that
    sayer, byte for byte. Any other message goes to .others."""

    def __init__(self, name, client, texts):
        self.name = name
        self.client = client
        self.texts = texts
        self.limit = len(texts)  # lines it says in all (converse's WATCH may lower it)
        self.said = 0
        self.outgoing = bytearray()
        self.reader = harness.MessageReader()
        self.heard = {}          # sayer's name -> its lines received here
        self.others = []         # messages that are not lines, in the order received
        self.problem = None      # the first line that was wrong, or an error
        self.closed = None

    def say_next(self):
        if self.said < self.limit:
            self.outgoing += message(SAY_TYPE, self.texts[self.said])
            self.said += 1

    def received(self, chunk, talkers):
        """Takes CHUNK; returns how many lines it completed."""
        lines = 0
        for kind, payload in self.reader.feed(chunk):
            if kind != MESSAGE_TYPE:
                self.others.append((kind, payload))
                continue
            name, separator, text = payload.partition(b": ")
            sayer = talkers.get(name)
            count = self.heard.get(name, 0)
            if not separator or sayer is None:
                self.problem = self.problem or "a line from no member: %r" % payload[:80]
            elif count >= sayer.said:
                self.problem = self.problem or "line %d of %s, which it has not said" % (
                    count + 1, name.decode())
            elif text != sayer.texts[count]:
                self.problem = self.problem or (
                    "line %d of %s came changed or out of order: %r, expected %r" % (
                        count + 1, name.decode(), text[:60], sayer.texts[count][:60]))
            else:
                self.heard[name] = count + 1
                lines += 1
        return lines

    def __repr__(self):
        return "<%s: said %d of %d, heard %d lines, %d other messages%s>" % (
            self.name.decode(), self.said, self.limit, sum(self.heard.values()),
            len(self.others), ", " + (self.problem or self.closed)
            if self.problem or self.closed else "")


def converse(server, talkers, timeout, watch=None, lockstep=False):
    """Runs TALKERS, from this thread with selectors, until each has said all its lines
    and every one of them has received every line of every one, or a line is wrong, or a
    connection ends. Each says its next line once its previous one has come back to it;
    with LOCKSTEP, once that one has reached every talker, so that no talker ever has
    more than one line of each in flight to it. WATCH, if given, is called about every
    0.1 s with the talkers (to lower their limits, say). Raises AssertionError after
    TIMEOUT in all, or when no talker receives a byte for STALL seconds (a hang, not a
    speed)."""
    by_name = {t.name: t for t in talkers}
    listeners = {t: talkers if lockstep else [t] for t in talkers}

    def say_when_heard():
        for talker in talkers:
            if talker.said < talker.limit and all(
                    other.heard.get(talker.name, 0) == talker.said
                    for other in listeners[talker]):
                talker.say_next()
    selector = selectors.DefaultSelector()
    registered = {}
    started = last_byte = last_watch = time.monotonic()
    heard = 0
    try:
        for talker in talkers:
            talker.client.setblocking(False)
        while True:
            say_when_heard()
            if any(t.problem or t.closed for t in talkers):
                return
            if all(t.said == t.limit for t in talkers) and \
                    heard == len(talkers) * sum(t.said for t in talkers):
                return
            now = time.monotonic()
            assert now - started < timeout, ("the conversation was not over after %s s: %r"
                                             % (timeout, talkers[:5]), server.output())
            assert now - last_byte < STALL, ("no member received anything for %s s: %r" % (
                STALL, talkers[:5]), server.output())
            if watch is not None and now - last_watch >= 0.1:
                watch(talkers)
                last_watch = now
            for talker in talkers:
                wanted = selectors.EVENT_READ | (selectors.EVENT_WRITE if talker.outgoing
                                                 else 0)
                if registered.get(talker) != wanted:
                    if talker in registered:
                        selector.modify(talker.client, wanted, talker)
                    else:
                        selector.register(talker.client, wanted, talker)
                    registered[talker] = wanted
            for key, events in selector.select(timeout=0.1):
                talker = key.data
                try:
                    if events & selectors.EVENT_WRITE:
                        sent = talker.client.send(talker.outgoing)
                        del talker.outgoing[:sent]
                    if events & selectors.EVENT_READ:
                        chunk = talker.client.recv(1 << 16)
                        if not chunk:
                            talker.closed = "closed by the server"
                            continue
                        last_byte = time.monotonic()
                        heard += talker.received(chunk, by_name)
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError as e:
                    talker.closed = "closed by the server (%r)" % e
    finally:
        selector.close()
        for talker in talkers:
            try:
                talker.client.settimeout(CLIENT_TIMEOUT)
            except OSError:
                pass


def assert_conversation(server, talkers):
    """Every talker has received every line of every talker: what converse() checked
    line by line, each in its place, now checked for being complete."""
    for talker in talkers:
        assert talker.problem is None and talker.closed is None, (talker, server.output())
        for sayer in talkers:
            assert talker.heard.get(sayer.name, 0) == sayer.said == sayer.limit, (
                "%s received %d of %s's %d lines" % (
                    talker.name.decode(), talker.heard.get(sayer.name, 0),
                    sayer.name.decode(), sayer.said), talkers, server.output())


# --- the tests ------------------------------------------------------------------------------
@pytest.mark.parametrize("chapter", CHATTERS, ids=IDS)
def test_three_members_see_every_line_once_and_who_comes_and_goes(chapter, start_server):
    """a, b and c join in turn (each join is seen by those already in and the joiner);
    then all three say LINES random lines at once, each in one send. Each of them
    receives exactly the 3 x LINES MESSAGEs "NAME: TEXT", each sayer's in the order said.
    Then b sends LEAVE: b, a and c get NOTICE "b left", and b's connection stays open.
    Then c closes its connection: a alone gets "c left: peer closed the connection" (b is
    no longer in the room), and a's next line reaches a only. The server prints each
    join and leave with the count in the room."""
    server = start_server(chapter, "--workers", "2")
    rng = random_source()
    members = join_in_turn(server, [b"a", b"b", b"c"])
    (_, a), (_, b), (_, c) = members
    numbers = {name: harness.client_number(server, client) for name, client in members}
    try:
        lines = {name: [rng.randbytes(rng.randint(0, 300)) for _ in range(LINES)]
                 for name, _ in members}
        for name, client in members:
            client.sendall(b"".join(message(SAY_TYPE, text) for text in lines[name]))
        for name, client in members:
            received = []
            for _ in range(len(members) * LINES):
                try:
                    got = receive_message(client)
                except OSError as e:
                    pytest.fail("%s: %r after %d lines\n%s" % (name.decode(), e,
                                                               len(received), server.output()))
                assert got is not None, ("%s was closed after %d lines" % (
                    name.decode(), len(received)), server.output())
                received.append(got)
            assert by_sayer(server, received, name.decode()) == lines, (
                "%s did not receive every line exactly once, in order per sayer" %
                name.decode(), shown(received), server.output())
            nothing_more(server, client, name.decode())
        joins = server_lines(server, JOINED, 3, "three joined lines")
        assert [(int(m.group("id")), m.group("name"), m.group("members")) for m in joins] == [
            (numbers[b"a"], "a", "1"), (numbers[b"b"], "b", "2"), (numbers[b"c"], "c", "3")], \
            server.output()

        leave(b)
        for name, client in members:
            expect(server, client, [notice(b"b left")], "%s, for b's LEAVE" % name.decode())
        nothing_more(server, b, "b, after its LEAVE")
        assert server_lines(server, LEFT, 1, "a line for b leaving")[0].group(0) == \
            "client %d left the room as b (2 in the room)" % numbers[b"b"], server.output()

        c.close()
        expect(server, a, [notice(b"c left: peer closed the connection")], "a, for c's close")
        assert harness.disconnect_reason(server, numbers[b"c"]) == "peer closed the connection", \
            server.output()
        assert server_lines(server, LEFT, 2, "a line for c leaving")[1].group(0) == \
            "client %d left the room as c (1 in the room)" % numbers[b"c"], server.output()
        say(a, b"alone now")
        expect(server, a, [said(b"a", b"alone now")], "a, alone in the room")
        nothing_more(server, b, "b, out of the room")
    finally:
        close_all([client for _, client in members])
    assert server.quit() == 0, server.output()


@pytest.mark.parametrize("chapter", CHATTERS, ids=IDS)
def test_a_hundred_members_say_a_hundred_lines_each(chapter, start_server):
    """100 members join in turn; then each says 100 lines of random bytes (0 to 200 of
    them), each only once its previous line has come back to it, all at once on one
    thread. Every member receives all 10,000 lines, 1,000,000 MESSAGEs in all, each
    byte for byte what its sayer said, each sayer's in the order said; nothing else.
    How long the conversation took is printed, never asserted."""
    server = start_server(chapter, "--max-clients", str(MANY_SLOTS),
                          "--max-queued", str(MANY_MAX_QUEUED))
    rng = random_source()
    names = [b"m%02d" % number for number in range(MANY)]
    members = []
    try:
        started = time.monotonic()
        members = join_in_turn(server, names)
        joined = time.monotonic() - started
        talkers = [Talker(name, client,
                          [rng.randbytes(rng.randint(0, 200)) for _ in range(MANY_LINES)])
                   for name, client in members]
        started = time.monotonic()
        converse(server, talkers, MANY_TIMEOUT)
        took = time.monotonic() - started
        print("%s: %d members joined in %.1f s; %d lines each to all %d, %d MESSAGEs, in "
              "%.1f s" % (chapter.name, MANY, joined, MANY_LINES, MANY,
                          MANY * MANY * MANY_LINES, took))
        assert_conversation(server, talkers)
        for talker in talkers:
            assert talker.others == [] and talker.reader.pending == 0, (
                "%s received more than the lines: %r" % (talker.name.decode(),
                                                         shown(talker.others[:5])),
                server.output())
    finally:
        close_all([client for _, client in members])
    assert server.quit() == 0, server.output()


@pytest.mark.parametrize("chapter", CHATTERS, ids=IDS)
def test_requests_cut_at_every_byte_are_answered_as_whole(chapter, start_server):
    """A JOIN, a SAY and a LEAVE, 3 messages of 5 + 8, 5 + 22 and 5 + 0 bytes, are sent
    whole, then cut in two at every byte offset in turn, on one connection, with a pause
    between the pieces, then one byte at a time. Each time, the client and a member
    watching receive exactly what they receive for the whole stream (NOTICE "splitter
    joined", MESSAGE "splitter: ...", NOTICE "splitter left"), and after the first piece
    only the answers to the requests it completes: nothing of a request still cut."""
    server = start_server(chapter, "--workers", "2")
    members = join_in_turn(server, [b"watcher"])
    watcher = members[0][1]
    client = connect(server.port)
    requests = [message(JOIN_TYPE, b"splitter"),
                message(SAY_TYPE, b"\x00\x00\x00\x05\x01 looks like a header"),
                message(LEAVE_TYPE)]
    answers = [notice(b"splitter joined"),
               said(b"splitter", b"\x00\x00\x00\x05\x01 looks like a header"),
               notice(b"splitter left")]
    stream = b"".join(requests)
    ends = [sum(len(r) for r in requests[:n + 1]) for n in range(len(requests))]

    def answered(sent):  # the answers to the requests whole within the first SENT bytes
        return answers[:sum(1 for end in ends if end <= sent)]

    try:
        client.sendall(stream)
        expect(server, client, answers, "the client, whole")
        expect(server, watcher, answers, "the watcher, whole")
        for cut in range(1, len(stream)):
            client.sendall(stream[:cut])
            expect(server, client, answered(cut), "the client, first %d bytes" % cut)
            expect(server, watcher, answered(cut), "the watcher, first %d bytes" % cut)
            nothing_more(server, client, "the client, after the first %d of %d bytes" % (
                cut, len(stream)), CUT_PAUSE)
            client.sendall(stream[cut:])
            expect(server, client, answers[len(answered(cut)):],
                   "the client, cut after byte %d" % cut)
            expect(server, watcher, answers[len(answered(cut)):],
                   "the watcher, cut after byte %d" % cut)
        for byte in range(len(stream)):
            client.sendall(stream[byte:byte + 1])
            time.sleep(BYTE_PAUSE)
        expect(server, client, answers, "the client, one byte at a time")
        expect(server, watcher, answers, "the watcher, one byte at a time")
        nothing_more(server, client, "the client, at the end")
        nothing_more(server, watcher, "the watcher, at the end")
    finally:
        close_all([client, watcher])
    assert server.quit() == 0, server.output()


# Bytes that end the client that sends them, and the reason the server must give; the
# server runs with --max-message 1000.
SMALL_MAX = 1000
BAD = [
    pytest.param(message_header(SMALL_MAX + 1, SAY_TYPE),
                 "a message longer than --max-message (1000 bytes)", id="too-long"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
                 "a message longer than --max-message (1000 bytes)", id="http-request"),
    pytest.param(message(0), "a message of unknown type 0", id="type-0"),
    pytest.param(message(5, b"x"), "a message of unknown type 5", id="type-5"),
    pytest.param(message(9, b"hello"), "a message of unknown type 9", id="type-9"),
    pytest.param(message(255, b"?"), "a message of unknown type 255", id="type-255"),
    pytest.param(message(MESSAGE_TYPE, b"mallory: a forged line"),
                 "a message of type 16, which only the server sends", id="type-16"),
    pytest.param(message(NOTICE_TYPE, b"mallory joined"),
                 "a message of type 17, which only the server sends", id="type-17"),
    pytest.param(message(ERROR_TYPE, b"nothing"),
                 "a message of type 18, which only the server sends", id="type-18"),
]


@pytest.mark.parametrize("member", [True, False], ids=["member", "not-member"])
@pytest.mark.parametrize("bad,reason", BAD)
@pytest.mark.parametrize("chapter", CHATTERS, ids=IDS)
def test_bad_bytes_end_only_their_client(chapter, bad, reason, member, start_server):
    """With --max-message 1000, alice and bob are in the room; v connects (and joins, as
    a member) and says a line, then sends BAD. v receives nothing more and is reset; the
    server's disconnected line gives REASON; alice and bob get NOTICE "v left: REASON"
    if v was a member and nothing otherwise; they go on chatting, and a new client can
    join as v. "quit" exits 0 with nothing on stderr."""
    server = start_server(chapter, "--max-message", str(SMALL_MAX))
    members = join_in_turn(server, [b"alice", b"bob"])
    (_, alice), (_, bob) = members
    clients = [alice, bob]
    try:
        if member:
            members = join_in_turn(server, [b"v"], members)
            v = members[-1][1]
            clients.append(v)
            say(v, b"a good line first")
            for name, client in members:
                expect(server, client, [said(b"v", b"a good line first")], name.decode())
        else:
            v = connect(server.port)
            clients.append(v)
            say(v, b"not in the room")
            expect(server, v, [error(b"join the room first")], "v")
        number = harness.client_number(server, v)
        v.sendall(bad)
        assert how_closed(v) == "reset", ("v, which sent %r, was not reset (or received "
                                          "something)" % bad[:40], server.output())
        assert harness.disconnect_reason(server, number) == reason, server.output()
        for name, client in members[:2]:
            if member:
                expect(server, client, [notice(b"v left: " + reason.encode())],
                       name.decode())
            nothing_more(server, client, name.decode())
        say(bob, b"still here")
        for name, client in members[:2]:
            expect(server, client, [said(b"bob", b"still here")], name.decode())
        members = join_in_turn(server, [b"v"], members[:2])
        clients.append(members[-1][1])
    finally:
        close_all(clients)
    assert server.quit() == 0, server.output()
    assert server.stderr == [], server.output()


@pytest.mark.parametrize("chapter", CHATTERS, ids=IDS)
def test_refused_requests_get_an_error_and_the_connection_stays_open(chapter, start_server):
    """x, not in the room, sends SAY, LEAVE, and JOINs with names that are empty, 33
    bytes long, or hold a space, a ':', a byte that is not ASCII, a NUL or a newline,
    then one taken by member m: each gets its own ERROR, and nothing else happens: x
    stays connected, m hears nothing. Then x joins with a 32-byte name of every kind of
    byte allowed, and JOIN again, whatever the name (another, m's, an invalid one), gets
    "already in the room as NAME". LEAVE with a payload (ignored) leaves; LEAVE and SAY
    are refused again; a JOIN after that works, and a SAY reaches both."""
    server = start_server(chapter)
    members = join_in_turn(server, [b"m"])
    m = members[0][1]
    x = connect(server.port)
    longest = b"Az09-_." + b"n" * 25
    assert len(longest) == 32

    def refused(send, answer, what):
        send()
        expect(server, x, [error(answer)], "x, for %s" % what)
        assert still_open(x), ("x was closed after %s" % what, server.output())
        nothing_more(server, m, "m, for x's %s" % what, 0.05)

    try:
        refused(lambda: say(x, b"hello"), b"join the room first", "SAY before JOIN")
        refused(lambda: leave(x), b"not in the room", "LEAVE before JOIN")
        for name in (b"", b"n" * 33, b"a b", b"a:b", b"caf\xc3\xa9", b"nul\x00", b"new\nline",
                     b" ", b":"):
            refused(lambda: join(x, name), NAME_RULE, "JOIN %r" % name)
        refused(lambda: join(x, b"m"), b"the name m is taken", "JOIN with m's name")
        nothing_more(server, m, "m, after x's refused requests")

        join(x, longest)
        for who, client in (("x", x), ("m", m)):
            expect(server, client, [notice(longest + b" joined")], "%s, for x's join" % who)
        already = b"already in the room as " + longest
        for name in (b"other", b"m", longest, b"", b"a b"):
            refused(lambda: join(x, name), already, "a second JOIN %r" % name)

        leave(x, b"ignored")
        for who, client in (("x", x), ("m", m)):
            expect(server, client, [notice(longest + b" left")], "%s, for x's LEAVE" % who)
        refused(lambda: leave(x), b"not in the room", "LEAVE after LEAVE")
        refused(lambda: say(x, b"hello?"), b"join the room first", "SAY after LEAVE")

        join(x, b"x")
        say(x, b"back again")
        for who, client in (("x", x), ("m", m)):
            expect(server, client, [notice(b"x joined"), said(b"x", b"back again")], who)
        nothing_more(server, x, "x, at the end")
        nothing_more(server, m, "m, at the end")
    finally:
        close_all([x, m])
    assert server.quit() == 0, server.output()
    assert server.stderr == [], server.output()


@pytest.mark.parametrize("chapter", CHATTERS, ids=IDS)
def test_a_member_that_never_reads_is_dropped_and_the_others_chat_on(chapter, start_server):
    """With --max-queued 8192: A and B join, then S, with small socket buffers, which
    never reads. A and B say lines of 1000 random bytes, each once its previous one has
    reached both of them, until the server has dropped S (and SLOW_AFTER lines each after
    that). The server ends S with the reason "too slow: its queue would pass --max-queued
    (8192 bytes)"; A and B each get NOTICE "S left: too slow: ..." once, and every line
    of both of them, in order per sayer, byte for byte: S never holds them up (the only
    bound is one against a hang). "quit" then exits 0.

    Lockstep, not each sayer paced by its own line alone: so paced, A's lines can pile
    up in the server's queue for B while B's socket drains more slowly than A's, and
    eight of them pass the cap: under Wine that dropped B, a member that reads, as too
    slow now and then. In lockstep A and B have at most one line of each in flight to
    them, some 2 KB, and S alone can reach the cap."""
    server = start_server(chapter, "--max-queued", str(SLOW_CAP))
    rng = random_source()
    members = join_in_turn(server, [b"A", b"B"])
    members = join_in_turn(server, [b"S"], members, buffers=SLOW_BUFFERS)
    slow = members[2][1]
    reason = "too slow: its queue would pass --max-queued (%d bytes)" % SLOW_CAP
    try:
        number = harness.client_number(server, slow)
        dropped = re.compile(r"^client %d disconnected: " % number)
        pad = rng.randbytes(SLOW_LINE + SLOW_MOST)
        talkers = [Talker(name, client, Lines(pad, offset, SLOW_MOST, SLOW_LINE))
                   for offset, (name, client) in enumerate(members[:2])]

        def watch(talkers):
            if talkers[0].limit == SLOW_MOST and any(map(dropped.match, server.stdout)):
                for talker in talkers:
                    talker.limit = min(SLOW_MOST, talker.said + SLOW_AFTER)

        converse(server, talkers, SLOW_TIMEOUT, watch, lockstep=True)
        print("%s: S dropped after %d and %d lines (%d bytes each)" % (
            chapter.name, talkers[0].said - SLOW_AFTER, talkers[1].said - SLOW_AFTER,
            SLOW_LINE))
        for talker in talkers:
            assert talker.problem is None and talker.closed is None, (talker,
                                                                      server.output())
        assert talkers[0].limit < SLOW_MOST, (
            "the member that never reads was not dropped after %d lines of %d bytes each "
            "from two members" % (SLOW_MOST, SLOW_LINE), server.output())
        assert harness.disconnect_reason(server, number) == reason, server.output()
        assert_conversation(server, talkers)
        for talker in talkers:
            assert talker.others == [notice(b"S left: " + reason.encode())], (
                "%s received %r besides the lines" % (talker.name.decode(),
                                                      shown(talker.others)), server.output())
    finally:
        close_all([client for _, client in members])
    assert server.quit() == 0, server.output()


@pytest.mark.parametrize("chapter", CHATTERS, ids=IDS)
def test_echo_answers_its_sender_alone_among_the_chat(chapter, start_server):
    """e, before joining, gets its ECHO back. Then e and f are in the room, and e sends
    ECHO and SAY by turns (20 of each, random bytes) in one send while f says 20 lines:
    e gets every echo back as it was sent, in order, and every line of both; f gets the
    lines and no echo. After LEAVE, e's ECHO still comes back."""
    server = start_server(chapter, "--workers", "2")
    rng = random_source()
    e = connect(server.port)
    members = [(b"e", e)]
    try:
        e.sendall(echo_message(b"before the room"))
        expect(server, e, [(ECHO_TYPE, b"before the room")], "e, out of the room")
        join(e, b"e")
        expect(server, e, [notice(b"e joined")], "e")
        members = join_in_turn(server, [b"f"], members)
        f = members[1][1]
        echoes = [rng.randbytes(rng.randint(0, 2000)) for _ in range(20)]
        lines = {b"e": [rng.randbytes(rng.randint(0, 200)) for _ in range(20)],
                 b"f": [rng.randbytes(rng.randint(0, 200)) for _ in range(20)]}
        e.sendall(b"".join(echo_message(p) + message(SAY_TYPE, t)
                           for p, t in zip(echoes, lines[b"e"])))
        f.sendall(b"".join(message(SAY_TYPE, t) for t in lines[b"f"]))
        for name, client, count in ((b"e", e, 60), (b"f", f, 40)):
            received = []
            for _ in range(count):
                got = receive_message(client)
                assert got is not None, ("%s was closed" % name.decode(), server.output())
                received.append(got)
            echoed = [payload for kind, payload in received if kind == ECHO_TYPE]
            assert echoed == (echoes if name == b"e" else []), (
                "%s: the echoes that came back differ from those sent" % name.decode(),
                shown(received), server.output())
            assert by_sayer(server, [r for r in received if r[0] != ECHO_TYPE],
                            name.decode()) == lines, (
                "%s did not receive every line once, in order" % name.decode(),
                shown(received), server.output())
            nothing_more(server, client, name.decode())
        leave(e)
        for name, client in members:
            expect(server, client, [notice(b"e left")], name.decode())
        e.sendall(echo_message(b"after the room"))
        expect(server, e, [(ECHO_TYPE, b"after the room")], "e, out of the room again")
        nothing_more(server, f, "f")
    finally:
        close_all([client for _, client in members])
    assert server.quit() == 0, server.output()


@pytest.mark.parametrize("chapter", CHATTERS, ids=IDS)
def test_quit_with_fifty_members_in_the_room(chapter, start_server):
    """50 members join in turn and each says one line, which all of them receive. Then
    "quit" exits 0 with the summary of 50 connections and every byte they received as
    its last line ("connections served: 50, bytes sent: B"), and every member sees its
    connection end with nothing more received: no notice goes out at quit."""
    server = start_server(chapter)
    members = []
    try:
        members = join_in_turn(server, [b"q%02d" % n for n in range(QUITTERS)])
        for name, client in members:
            say(client, b"line of " + name)
        expected = {name: [b"line of " + name] for name, _ in members}
        for name, client in members:
            received = [receive_message(client) for _ in range(QUITTERS)]
            assert None not in received, ("%s was closed" % name.decode(), server.output())
            assert by_sayer(server, received, name.decode()) == expected, (
                shown(received), server.output())
        # Every byte the server sent has been received: each join's notice went to the
        # joiner and everyone before it, each line to all.
        names = [name for name, _ in members]
        sent = sum((number + 1) * len(message(NOTICE_TYPE, name + b" joined"))
                   for number, name in enumerate(names))
        sent += QUITTERS * sum(len(message(MESSAGE_TYPE, name + b": line of " + name))
                               for name in names)
        assert server.quit() == 0, server.output()
        assert server.stdout and server.stdout[-1] == chapter.summary(QUITTERS, sent), (
            "the last line is not the summary of %d connections and %d bytes" % (
                QUITTERS, sent), server.output())
        for name, client in members:
            ended = how_closed(client)
            assert ended in ("closed", "reset"), (
                "%s, at quit: %s" % (name.decode(), ended or "not closed"), server.output())
    finally:
        close_all([client for _, client in members])
