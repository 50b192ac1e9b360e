#!/usr/bin/python3
"""Echo ping-pong under Wine: chapters side by side, with a native Linux reference; and,
with --chat, the broadcasts of a chat room.

    /usr/bin/python3 scripts/bench.py                 (or: make bench-echo)
    /usr/bin/python3 scripts/bench.py --quick         a short run, for the smoke test
    /usr/bin/python3 scripts/bench.py --chapters 08 10 --sizes 64 4096 \\
        --connections 1 100 --repeat 5 --seconds 3
    /usr/bin/python3 scripts/bench.py --chat          (or: make bench-chat)
    /usr/bin/python3 scripts/bench.py --chat --quick --members 100 --line-size 64

Each connection sends one message, waits for the whole echo, compares every byte with
what it sent, and sends the next. A chapter that speaks in messages (11 on) gets each
one as an echo message, its 5-byte header before the payload (harness.echo_message), and
the header is compared and counted with the rest; a size over its default --max-message
adds that option to its command line. The native reference echoes raw bytes. Each run starts a chapter fresh (--port 0 --workers 2
--max-clients 256), connects, warms up, counts the round trips that complete in a fixed
window and the latency of each, lets the last echoes arrive, closes, types "quit" and
checks that the server exits 0 and counted the bytes the clients got back. The chapters
run interleaved (08, 10, 08, 10, ...) so a change in the machine's load hits both alike,
and their ratio is taken within each repetition.

The load generator is Python, and on a small machine it shares the cores with the
server and wineserver, so it could be the limit. It runs as several processes, each
driving its share of the connections through epoll on non-blocking sockets with
messages built beforehand, and each repetition also drives a tiny native echo server
(Python, epoll, as many processes as the chapters have workers): when that one gets far
more through, the client is not what limits the chapters. The CPU each side used in the
measured window is shown too, and "others" is what the rest of the machine used (other
programs, tests run by someone else), which no ratio can take out.

The chat load (--chat) runs chapter 12 with --max-queued 64 MiB: N members (default 100)
connect, join the room with names of their own, and each says lines in ping-pong, its
next as soon as its previous one has come back to it, as a chat client that reads would.
Every member checks every MESSAGE it receives byte for byte, header included, against
the line due next from that sayer (the sayer's name and the line's number are in the
text), so each sayer's lines must arrive at every member in order, none missing, none
twice. After the window each member says a last line and reads until it has every
sayer's; then "quit" with all of them in the room, and the server must exit 0 having
sent exactly the bytes they read. Deliveries are the MESSAGEs all the members received
in the window; a member dropped as too slow is an error. A native chat server would be
a second implementation of the chapter, so there is none: each repetition runs instead
the echo of chapter 11 (--baseline) at as many connections with messages of the same
size, its native reference, and the load processes alone against a trivial source that
writes pre-built lines, to show how many deliveries a second the client can check.

Linux only (epoll, /proc). Wine runs in $WINEPREFIX (scripts/wine.sh's default
otherwise); a wineserver already running there is used and left running, otherwise one
is started for the run and stopped at the end.
"""

import argparse
import array
import contextlib
import math
import multiprocessing
import os
import random
import re
import select
import socket
import statistics
import struct
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import chapters  # noqa: E402  (the one table of chapters and their features)
import harness  # noqa: E402  (the one way to start a chapter)

SERVER_ARGS = ["--port", "0", "--workers", "2", "--max-clients", "256"]
SERVER_WORKERS = 2
HOST = "127.0.0.1"

# Distinct messages per size that a connection takes in turn, so an echo of an earlier
# message (or of another connection's) cannot pass as the right one.
MESSAGE_KINDS = 16
RECV_SIZE = 65536
# How long the last echoes may take after the window ends before they count as lost.
DRAIN_SECONDS = 5.0
# Between telling the client processes to start and their first send: time for each to
# get the command and be waiting on its clock.
START_DELAY = 0.2
# When the native server gets this many times the round trips per second of the fastest
# chapter on a load, the client was not the limit of that load.
HEADROOM = 2.0

CONNECTED = re.compile(r"^client \d+ connected from ")
DISCONNECTED = re.compile(r"^client \d+ disconnected: (?P<reason>.*) \(\d+ live\)$")
REFUSED = re.compile(r"^refused ")
SUMMARY = re.compile(r"^connections served: (?P<served>\d+), bytes (?:echoed|sent): (?P<bytes>\d+)$")


# --- the load: one process drives its share of the connections ------------------------
def _drive(sockets, first_number, bases, start_at, measure_from, stop_at, framed=False):
    """Ping-pong on SOCKETS until STOP_AT, then waits up to DRAIN_SECONDS for the echoes
    still due. Round trips that complete between MEASURE_FROM and STOP_AT are counted and
    their latencies kept; every echo, counted or not, is compared with what was sent.
    FRAMED: each payload goes as one echo message, whose every byte must come back."""
    monotonic = time.monotonic
    epollin, epollout = select.EPOLLIN, select.EPOLLOUT
    count = len(sockets)
    payload_size = len(bases[0])
    wrap = harness.echo_message if framed else bytes
    size = len(wrap(bases[0]))  # what goes each way per round trip
    kinds = len(bases)
    # Each connection's messages start with its own number, so no echo can pass on
    # another connection; built now, before the clock starts.
    messages = []
    for i in range(count):
        stamp = (first_number + i).to_bytes(4, "little")
        messages.append([wrap((stamp + base[len(stamp):])[:payload_size]) for base in bases])
    poller = select.epoll(max(count, 1))
    slot = {}
    kind = [i % kinds for i in range(count)]
    got = [0] * count
    differs = [False] * count
    sent_at = [0.0] * count
    unsent = [None] * count
    in_flight = [False] * count
    alive = [True] * count
    latencies = array.array("d")
    state = {"errors": 0, "outstanding": 0}
    problems = []

    def fail(i, what):
        state["errors"] += 1
        if len(problems) < 5:
            problems.append("connection %d: %s" % (i, what))
        if alive[i]:
            alive[i] = False
            try:
                poller.unregister(sockets[i].fileno())
            except OSError:
                pass
        if in_flight[i]:
            in_flight[i] = False
            state["outstanding"] -= 1

    def send(i, now):
        message = messages[i][kind[i]]
        sent_at[i] = now
        try:
            done = sockets[i].send(message)
        except BlockingIOError:
            done = 0
        except OSError as e:
            fail(i, "send: %s" % e)
            return
        if done < size:
            unsent[i] = memoryview(message)[done:]
            poller.modify(sockets[i].fileno(), epollin | epollout)

    for i, client in enumerate(sockets):
        slot[client.fileno()] = i
        poller.register(client.fileno(), epollin)
    delay = start_at - monotonic()
    if delay > 0:
        time.sleep(delay)
    now = monotonic()
    for i in range(count):
        in_flight[i] = True
        state["outstanding"] += 1
        send(i, now)

    deadline = stop_at + DRAIN_SECONDS
    trips = verified = 0
    while state["outstanding"] > 0:
        events = poller.poll(0.1)
        if not events:
            if monotonic() > deadline:
                break
            continue
        for fd, mask in events:
            i = slot[fd]
            if not alive[i]:
                continue
            client = sockets[i]
            if mask & epollout and unsent[i] is not None:
                rest = unsent[i]
                try:
                    done = client.send(rest)
                except BlockingIOError:
                    done = 0
                except OSError as e:
                    fail(i, "send: %s" % e)
                    continue
                if done == len(rest):
                    unsent[i] = None
                    poller.modify(fd, epollin)
                else:
                    unsent[i] = rest[done:]
            if not mask & epollin and not mask & (select.EPOLLHUP | select.EPOLLERR):
                continue
            try:
                data = client.recv(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as e:
                fail(i, "receive: %s" % e)
                continue
            if not data:
                fail(i, "closed by the server with %d of %d bytes back" % (got[i], size))
                continue
            arrived = len(data)
            if not in_flight[i]:
                fail(i, "%d bytes arrived with no message sent" % arrived)
                continue
            expected = messages[i][kind[i]]
            before = got[i]
            if before == 0 and arrived == size:
                if data != expected:
                    differs[i] = True
            else:
                if before + arrived > size:
                    fail(i, "%d bytes came back for a %d-byte message" % (before + arrived, size))
                    continue
                if data != expected[before:before + arrived]:
                    differs[i] = True
                if before + arrived < size:
                    got[i] = before + arrived
                    continue
            now = monotonic()
            got[i] = 0
            verified += size
            if differs[i]:
                differs[i] = False
                state["errors"] += 1
                if len(problems) < 5:
                    problems.append("connection %d: an echo differs from what was sent" % i)
            if now < stop_at:
                if now >= measure_from:
                    trips += 1
                    latencies.append(now - sent_at[i])
                kind[i] = (kind[i] + 1) % kinds
                send(i, now)
            else:
                in_flight[i] = False
                state["outstanding"] -= 1
    for i in range(count):
        if in_flight[i]:
            fail(i, "no whole echo within %.0f s after the window" % DRAIN_SECONDS)
    poller.close()
    for client in sockets:
        client.close()
    return {"trips": trips, "latencies": latencies, "errors": state["errors"],
            "verified": verified, "problems": problems}


# --- the chat load (--chat): members of a chat chapter's room -------------------------
# Each member joins with a name of its own, then says lines in ping-pong: its next line as
# soon as its previous one has come back to it, as a chat client that reads would. Line
# K of member NAME is "NAME K " and filler, so that its MESSAGE payload, "NAME: NAME K
# ...", is --line-size bytes; every MESSAGE a member receives can be rebuilt from the name
# and the number due next from that sayer, and is compared with it byte for byte, header
# included, so a line lost, repeated, reordered or changed is an error at the member that
# sees it. Once the window is over each member says a last line, "NAME done after K
# lines", and a member has heard everything once it has that line from every sayer.
CHAT_NAME = b"m%03d"
# What pads a line to its size: printable bytes, starting at a place that moves with the
# line's number, so that two lines differ in more than their numbers.
FILLER_CYCLE = bytes(range(ord("!"), ord("~") + 1))
FILLER = FILLER_CYCLE * (65536 // len(FILLER_CYCLE) + 2)
# Set after the last line from a sayer (its done line, or a notice that it left): any
# line from it after that is an error.
DONE = -2
# More than this of one message not yet whole is a broken stream, not a long line.
CHAT_PENDING_LIMIT = 1 << 20
# How long the last lines may take after the window before they count as lost; and the
# bound on the joins, and on the connections ending after quit.
CHAT_DRAIN_SECONDS = 10.0
JOIN_SECONDS = 60.0
HEADER = struct.Struct(">IB")


def _chat_text(name, number, size):
    """The text of line NUMBER of NAME: its MESSAGE payload, "NAME: TEXT", is SIZE bytes
    (longer only when SIZE cannot hold the name and the number)."""
    head = b"%s %d " % (name, number)
    start = number % len(FILLER_CYCLE)
    return head + FILLER[start:start + max(0, size - len(name) - 2 - len(head))]


def _line_frame(name, number, size):
    """Line NUMBER of NAME as every member receives it: one MESSAGE, header and payload."""
    payload = name + b": " + _chat_text(name, number, size)
    return HEADER.pack(len(payload), harness.MESSAGE_TYPE) + payload


def _done_text(name, lines):
    return b"%s done after %d lines" % (name, lines)


def _done_frame(name, lines):
    payload = name + b": " + _done_text(name, lines)
    return HEADER.pack(len(payload), harness.MESSAGE_TYPE) + payload


class _Member:
    __slots__ = ("sock", "fd", "name", "rest", "nexts", "finished", "said", "sent_at",
                 "unsent", "alive", "joined")

    def __init__(self, sock, name, everyone):
        self.sock = sock
        self.fd = sock.fileno()
        self.name = name
        self.rest = b""                              # bytes of a message not yet whole
        self.nexts = dict.fromkeys(everyone, 0)      # sayer -> number of its line due next
        self.finished = 0                            # sayers heard to their end
        self.said = 0                                # lines said so far
        self.sent_at = 0.0
        self.unsent = None
        self.alive = True
        self.joined = False


class _Chat:
    """One load process's share of the members: they join, say and read through one epoll,
    every message each receives checked as it is cut out of the stream."""

    def __init__(self, sockets, names, everyone, size):
        self.members = [_Member(s, n, everyone) for s, n in zip(sockets, names)]
        self.by_fd = {m.fd: m for m in self.members}
        self.everyone = frozenset(everyone)
        self.count = len(everyone)
        self.size = size
        self.poller = select.epoll(max(len(self.members), 1))
        for m in self.members:
            self.poller.register(m.fd, select.EPOLLIN)
        self.cache = {}  # sayer -> (number, frame): the line most recently due
        self.saying = False
        self.closing = False
        self.measure_from = self.stop_at = float("inf")
        self.unfinished = len(self.members)
        self.unjoined = len(self.members)
        self._reset()

    def _reset(self):
        self.errors = 0
        self.problems = []
        self.delivered = 0       # MESSAGE frames received
        self.deliveries = 0      # ... of them in the measured window
        self.trips = 0           # own lines back in the window
        self.latencies = array.array("d")
        self.received = 0        # bytes, every message of every type
        self.reads = 0
        self.notices = 0
        self.left = set()        # members the others were told had left
        self.ended = 0           # members whose connection ended under them

    def _report(self, **extra):
        result = {"ok": True, "errors": self.errors, "problems": self.problems,
                  "delivered": self.delivered, "deliveries": self.deliveries,
                  "trips": self.trips, "latencies": self.latencies,
                  "received": self.received, "reads": self.reads, "notices": self.notices,
                  "left": sorted(n.decode() for n in self.left), "ended": self.ended}
        result.update(extra)
        self._reset()
        return result

    def _error(self, m, what):
        self.errors += 1
        if len(self.problems) < 5:
            self.problems.append("member %s: %s" % (m.name.decode(), what))

    def _end(self, m, what):
        """M's connection is over: an error, unless the server is expected to close it."""
        if not m.alive:
            return
        if what is not None:
            self._error(m, what)
            self.ended += 1
        m.alive = False
        if not m.joined:
            self.unjoined -= 1
        if m.finished < self.count:
            self.unfinished -= 1
        try:
            self.poller.unregister(m.fd)
        except OSError:
            pass

    def _heard_all_of(self, m, sayer):
        m.nexts[sayer] = DONE
        m.finished += 1
        if m.finished == self.count:
            self.unfinished -= 1

    # --- what arrives -------------------------------------------------------------------
    def _feed(self, m, data, now):
        if m.rest:
            data = m.rest + data
        n = len(data)
        off = 0
        frames = 0
        unpack = HEADER.unpack_from
        nexts = m.nexts
        cache = self.cache
        size = self.size
        while n - off >= 5:
            length, kind = unpack(data, off)
            end = off + 5 + length
            if end > n:
                break
            if kind == harness.MESSAGE_TYPE:
                frames += 1
                colon = data.find(b": ", off + 5, end)
                sayer = data[off + 5:colon]
                number = nexts.get(sayer, -1) if colon >= 0 else -1
                frame = data[off:end]
                if number >= 0:
                    line = cache.get(sayer)
                    if line is None or line[0] != number:
                        line = cache[sayer] = (number, _line_frame(sayer, number, size))
                    if frame == line[1]:
                        nexts[sayer] = number + 1
                        if sayer == m.name and self.saying:
                            self._own_line(m, number, now)
                        off = end
                        continue
                self._odd_line(m, sayer if colon >= 0 else None, number, frame, now)
            elif kind == harness.NOTICE_TYPE:
                self._notice(m, data[off + 5:end])
            else:
                self._error(m, "a message of type %d: %r" % (kind, data[off + 5:end][:80]))
            off = end
        m.rest = data[off:] if off < n else b""
        if len(m.rest) > CHAT_PENDING_LIMIT:
            self._end(m, "%d bytes of one message still not whole" % len(m.rest))
        self.delivered += frames
        if self.measure_from <= now < self.stop_at:
            self.deliveries += frames

    def _odd_line(self, m, sayer, number, frame, now):
        """A MESSAGE that is not the line due from its sayer: its last one, or an error
        that says what arrived instead (and picks up after it, so one loss is one error)."""
        if sayer is None:
            self._error(m, "a MESSAGE with no 'NAME: ': %r" % frame[5:85])
            return
        shown = sayer.decode("ascii", "replace")
        if number == -1:
            self._error(m, "a MESSAGE from %r, who is not a member: %r" % (shown, frame[5:85]))
            return
        if number == DONE:
            self._error(m, "a MESSAGE from %s after its last line: %r" % (shown, frame[5:85]))
            return
        if frame == _done_frame(sayer, number):
            self._heard_all_of(m, sayer)
            return
        try:
            other = int(frame[5:].split(b" ", 3)[2])
        except (IndexError, ValueError):
            other = -1
        if other >= 0 and frame == _line_frame(sayer, other, self.size):
            if other > number:
                self._error(m, "line %d of %s arrived when line %d was due: %d lost, or "
                               "late" % (other, shown, number, other - number))
                m.nexts[sayer] = other + 1
                if sayer == m.name and self.saying:
                    self._own_line(m, other, now)
            else:
                self._error(m, "line %d of %s arrived again, or late, after line %d" % (
                    other, shown, number - 1))
            return
        self._error(m, "line %d of %s differs: %r" % (number, shown, frame[5:85]))

    def _own_line(self, m, number, now):
        if number != m.said - 1:
            self._error(m, "its own line %d came back while line %d was on its way" % (
                number, m.said - 1))
            return
        if self.measure_from <= now < self.stop_at:
            self.trips += 1
            self.latencies.append(now - m.sent_at)
        if now < self.stop_at:
            self._say(m, _chat_text(m.name, m.said, self.size), now)
        else:
            self._say(m, _done_text(m.name, m.said), now)

    def _notice(self, m, text):
        if text.endswith(b" joined") and text[:-7] in self.everyone:
            self.notices += 1
            if text[:-7] == m.name and not m.joined:
                m.joined = True
                self.unjoined -= 1
            return
        who = text.split(b" left", 1)[0]
        if who != text and who in self.everyone:
            # A member that reads is never to be dropped: its leaving is an error here.
            self._error(m, "NOTICE %r" % text[:200])
            self.left.add(who)
            if m.nexts.get(who, DONE) != DONE:
                self._heard_all_of(m, who)
            return
        self._error(m, "NOTICE %r" % text[:200])

    # --- what goes out ------------------------------------------------------------------
    def _send(self, m, message):
        if m.unsent is not None:
            m.unsent = memoryview(bytes(m.unsent) + message)
            return
        try:
            done = m.sock.send(message)
        except BlockingIOError:
            done = 0
        except OSError as e:
            self._end(m, "send: %s" % e)
            return
        if done < len(message):
            m.unsent = memoryview(message)[done:]
            self.poller.modify(m.fd, select.EPOLLIN | select.EPOLLOUT)

    def _say(self, m, text, now):
        m.said += 1
        m.sent_at = now
        self._send(m, harness.message(harness.SAY_TYPE, text))

    def _pump(self, until, deadline, recv_size=RECV_SIZE):
        """Handles what arrives until UNTIL() is true (returns True) or DEADLINE passes."""
        monotonic = time.monotonic
        epollin, epollout = select.EPOLLIN, select.EPOLLOUT
        broken = select.EPOLLHUP | select.EPOLLERR
        poll = self.poller.poll
        by_fd = self.by_fd
        while not until():
            left = deadline - monotonic()
            if left <= 0:
                return False
            for fd, mask in poll(min(left, 0.1)):
                m = by_fd[fd]
                if not m.alive:
                    continue
                if mask & epollout and m.unsent is not None:
                    try:
                        done = m.sock.send(m.unsent)
                    except BlockingIOError:
                        done = 0
                    except OSError as e:
                        self._end(m, "send: %s" % e)
                        continue
                    if done == len(m.unsent):
                        m.unsent = None
                        self.poller.modify(fd, epollin)
                    else:
                        m.unsent = m.unsent[done:]
                if not mask & (epollin | broken):
                    continue
                try:
                    data = m.sock.recv(recv_size)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as e:
                    self._end(m, "receive: %s" % e)
                    continue
                if not data:
                    self._end(m, None if self.closing else "closed by the server")
                    continue
                self.reads += 1
                self.received += len(data)
                self._feed(m, data, monotonic())
        return True

    # --- the phases ---------------------------------------------------------------------
    def join(self):
        for m in self.members:
            self._send(m, harness.message(harness.JOIN_TYPE, m.name))
        if not self._pump(lambda: self.unjoined == 0, time.monotonic() + JOIN_SECONDS):
            self._report()
            return {"ok": False, "error": "%d members not in the room %.0f s after their "
                                          "JOIN" % (self.unjoined, JOIN_SECONDS)}
        return self._report()

    def drive(self, start_at, measure_from, stop_at):
        """Ping-pong from START_AT; the window is MEASURE_FROM to STOP_AT; then each member
        says its last line, and every member reads until it has every sayer's."""
        self.measure_from, self.stop_at = measure_from, stop_at
        _sleep_until(start_at)
        self.saying = True
        now = time.monotonic()
        for m in self.members:
            if m.alive:
                self._say(m, _chat_text(m.name, 0, self.size), now)
        deadline = stop_at + CHAT_DRAIN_SECONDS
        if not self._pump(lambda: self.unfinished == 0, deadline):
            for m in self.members:
                if m.alive and m.finished < self.count:
                    missing = [s.decode() for s, k in m.nexts.items() if k != DONE]
                    self._error(m, "%d sayers' last lines not heard %.0f s after the window "
                                   "(lost, or the server stalled): %s" % (
                                       len(missing), CHAT_DRAIN_SECONDS,
                                       " ".join(missing[:5])))
        self.saying = False
        self.measure_from = self.stop_at = float("inf")
        return self._report(said=sum(m.said for m in self.members))

    def read(self, measure_from, stop_at, recv_size):
        """Only reads (from the trivial source) until STOP_AT, checking as drive does."""
        self.measure_from, self.stop_at = measure_from, stop_at
        self._pump(lambda: time.monotonic() >= stop_at, stop_at + 1, recv_size)
        return self._report()

    def close(self, wait):
        """Reads what is left until the server closes every connection (after quit), or
        WAIT seconds; then closes them all."""
        self.closing = True
        self._pump(lambda: all(not m.alive for m in self.members), time.monotonic() + wait)
        for m in self.members:
            if m.alive:
                self._error(m, "still open %.0f s after the server's quit" % wait)
        return self.close_now()

    def close_now(self):
        self.poller.close()
        for m in self.members:
            m.sock.close()
        return self._report()


def _client_process(pipe, number):
    """One load process: connects, drives and closes as the parent asks, until None."""
    rng = random.Random(number)
    bases = {}
    sockets = []
    room = None  # a _Chat, from its join to its close
    parent = os.getppid()
    while True:
        while not pipe.poll(1.0):
            if os.getppid() != parent:
                return  # the bench was killed: do not stay behind
        job = pipe.recv()
        if job is None:
            return
        try:
            if job["do"] == "connect":
                sockets = []
                for _ in range(job["count"]):
                    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    if job.get("buffers"):
                        # Before connecting, so the window is sized to it.
                        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, job["buffers"])
                    client.settimeout(10)
                    client.connect((HOST, job["port"]))
                    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    client.setblocking(False)
                    sockets.append(client)
                pipe.send({"ok": True})
            elif job["do"] == "drive":
                size = job["size"]
                if size not in bases:
                    bases[size] = [rng.randbytes(size) for _ in range(MESSAGE_KINDS)]
                result = _drive(sockets, number * 100000, bases[size], job["start_at"],
                                job["measure_from"], job["stop_at"], job["framed"])
                sockets = []
                result["ok"] = True
                pipe.send(result)
            elif job["do"] == "chat-join":
                room = _Chat(sockets, job["names"], job["everyone"], job["size"])
                sockets = []
                pipe.send(room.join())
            elif job["do"] == "chat-drive":
                pipe.send(room.drive(job["start_at"], job["measure_from"], job["stop_at"]))
            elif job["do"] == "chat-close":
                result = room.close(job["wait"])
                room = None
                pipe.send(result)
            elif job["do"] == "chat-read":
                reader = _Chat(sockets, job["names"], job["everyone"], job["size"])
                sockets = []
                result = reader.read(job["measure_from"], job["stop_at"], job["recv_size"])
                reader.close_now()
                pipe.send(result)
        except OSError as e:
            for client in sockets:
                client.close()
            sockets = []
            if room is not None:
                room.close_now()
                room = None
            pipe.send({"ok": False, "error": "%s: %s" % (job["do"], e)})


class Load:
    """The client processes, made once at the start (before any thread exists, since they
    are forked) and given each run's work through pipes."""

    def __init__(self, processes):
        context = multiprocessing.get_context("fork")
        self.pipes = []
        self.processes = []
        for number in range(processes):
            mine, theirs = context.Pipe()
            process = context.Process(target=_client_process, args=(theirs, number),
                                      daemon=True)
            process.start()
            theirs.close()
            self.pipes.append(mine)
            self.processes.append(process)

    @property
    def pids(self):
        return [p.pid for p in self.processes]

    def _ask_all(self, jobs, timeout):
        for pipe, job in zip(self.pipes, jobs):
            pipe.send(job)
        answers = []
        for pipe in self.pipes:
            if not pipe.poll(timeout):
                raise RuntimeError("a client process gave no answer within %s s" % timeout)
            answers.append(pipe.recv())
        failed = [a["error"] for a in answers if not a["ok"]]
        if failed:
            raise RuntimeError("client: " + "; ".join(failed))
        return answers

    def _shares(self, connections):
        return [connections // len(self.pipes) + (n < connections % len(self.pipes))
                for n in range(len(self.pipes))]

    def connect(self, port, connections, buffers=None):
        """BUFFERS: each socket's receive buffer, in bytes (the system's default without)."""
        self._ask_all([{"do": "connect", "port": port, "count": c, "buffers": buffers}
                       for c in self._shares(connections)], 60)

    def _chat_jobs(self, what, members, **job):
        """One job per process with its share of the members' names (in the order they
        connected), and every name."""
        everyone = [CHAT_NAME % n for n in range(members)]
        jobs = []
        first = 0
        for share in self._shares(members):
            jobs.append(dict(job, do=what, names=everyone[first:first + share],
                             everyone=everyone))
            first += share
        return jobs

    def chat_join(self, members, size):
        return self._ask_all(self._chat_jobs("chat-join", members, size=size),
                             JOIN_SECONDS + 30)

    def chat_drive(self, start_at, measure_from, stop_at):
        job = {"do": "chat-drive", "start_at": start_at, "measure_from": measure_from,
               "stop_at": stop_at}
        wait = stop_at - time.monotonic() + CHAT_DRAIN_SECONDS + 30
        return self._ask_all([job] * len(self.pipes), wait)

    def chat_close(self, wait):
        return self._ask_all([{"do": "chat-close", "wait": wait}] * len(self.pipes), wait + 30)

    def chat_read(self, members, size, measure_from, stop_at, recv_size):
        jobs = self._chat_jobs("chat-read", members, size=size, measure_from=measure_from,
                               stop_at=stop_at, recv_size=recv_size)
        return self._ask_all(jobs, stop_at - time.monotonic() + 30)

    def drive(self, size, start_at, measure_from, stop_at, framed=False):
        job = {"do": "drive", "size": size, "start_at": start_at,
               "measure_from": measure_from, "stop_at": stop_at, "framed": framed}
        wait = stop_at - time.monotonic() + DRAIN_SECONDS + 30
        return self._ask_all([job] * len(self.pipes), wait)

    def close(self):
        for pipe in self.pipes:
            try:
                pipe.send(None)
            except OSError:
                pass
        for process in self.processes:
            process.join(5)
            if process.is_alive():
                process.terminate()


# --- the native reference: a tiny epoll echo server ------------------------------------
def _native_echo(listener):
    listener.setblocking(False)
    poller = select.epoll()
    poller.register(listener.fileno(), select.EPOLLIN | select.EPOLLEXCLUSIVE)
    clients = {}
    unsent = {}
    parent = os.getppid()
    while True:
        events = poller.poll(1.0)
        if not events and os.getppid() != parent:
            return  # the bench was killed: do not stay behind
        for fd, mask in events:
            if fd == listener.fileno():
                while True:
                    try:
                        client, _ = listener.accept()
                    except OSError:  # none waiting, or none to be had now
                        break
                    client.setblocking(False)
                    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    clients[client.fileno()] = client
                    poller.register(client.fileno(), select.EPOLLIN)
                continue
            client = clients[fd]
            try:
                if mask & select.EPOLLOUT:
                    rest = unsent[fd]
                    done = client.send(rest)
                    if done < len(rest):
                        unsent[fd] = rest[done:]
                        continue
                    del unsent[fd]
                    poller.modify(fd, select.EPOLLIN)
                if fd in unsent:
                    continue
                data = client.recv(RECV_SIZE)
                if not data:
                    raise ConnectionResetError
                done = client.send(data)
                if done < len(data):
                    unsent[fd] = memoryview(data)[done:]
                    poller.modify(fd, select.EPOLLOUT)
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                poller.unregister(fd)
                unsent.pop(fd, None)
                clients.pop(fd).close()


class NativeServer:
    """SERVER_WORKERS forked processes accepting on one listener; started once, before
    any thread exists, and used by every reference run."""

    def __init__(self):
        context = multiprocessing.get_context("fork")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, 0))
        listener.listen(1024)
        self.port = listener.getsockname()[1]
        self.processes = [context.Process(target=_native_echo, args=(listener,), daemon=True)
                          for _ in range(SERVER_WORKERS)]
        for process in self.processes:
            process.start()
        listener.close()

    @property
    def pids(self):
        return [p.pid for p in self.processes]

    def close(self):
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.join(5)


# --- the client's capacity for the chat load: a trivial source --------------------------
def _chat_source(listener, pipe):
    """Sends the members every sayer's lines, round after round, as fast as they read
    them: chat's traffic with no server behind it, to measure what the load processes
    can take in and check. One round is line K of every sayer, built once and written to
    each member in turn; it stops when the members have closed (or after a minute)."""
    parent = os.getppid()
    while True:
        while not pipe.poll(1.0):
            if os.getppid() != parent:
                return
        job = pipe.recv()
        if job is None:
            return
        connections = []
        rounds = 0
        try:
            listener.settimeout(30)
            for _ in range(job["count"]):
                client, _ = listener.accept()
                client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, job["buffers"])
                client.settimeout(10)
                connections.append(client)
            names = job["everyone"]
            size = job["size"]
            until = time.monotonic() + 60
            while connections and time.monotonic() < until:
                block = b"".join([_line_frame(name, rounds, size) for name in names])
                for client in list(connections):
                    try:
                        client.sendall(block)
                    except OSError:  # the member closed: its window is over
                        connections.remove(client)
                        client.close()
                rounds += 1
            pipe.send({"ok": True, "rounds": rounds})
        except OSError as e:
            pipe.send({"ok": False, "error": "trivial source: %s" % e})
        for client in connections:
            client.close()


class ChatSource:
    """The trivial source's process, forked once at the start like the others."""

    def __init__(self):
        context = multiprocessing.get_context("fork")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind((HOST, 0))
        listener.listen(1024)
        self.port = listener.getsockname()[1]
        self.pipe, theirs = context.Pipe()
        self.process = context.Process(target=_chat_source, args=(listener, theirs),
                                       daemon=True)
        self.process.start()
        theirs.close()
        listener.close()

    @property
    def pids(self):
        return [self.process.pid]

    def start(self, members, size, buffers):
        everyone = [CHAT_NAME % n for n in range(members)]
        self.pipe.send({"count": members, "everyone": everyone, "size": size,
                        "buffers": buffers})

    def finish(self):
        if not self.pipe.poll(90):
            raise RuntimeError("the trivial source gave no answer within 90 s")
        answer = self.pipe.recv()
        if not answer["ok"]:
            raise RuntimeError(answer["error"])
        return answer

    def close(self):
        try:
            self.pipe.send(None)
        except OSError:
            pass
        self.process.join(5)
        if self.process.is_alive():
            self.process.terminate()


# --- CPU use, from /proc ---------------------------------------------------------------
TICKS = os.sysconf("SC_CLK_TCK")
CPU_GROUPS = ("client", "server", "wineserver", "others")


def _process_ticks(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime
    except (OSError, IndexError, ValueError):
        return 0


def _machine_ticks():
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields[:8]) - idle


def wine_prefix():
    prefix = os.environ.get("WINEPREFIX") or os.path.join(ROOT, "build", "wineprefix")
    return os.path.realpath(prefix)


def wineserver_pid(prefix):
    """The wineserver that serves PREFIX, or None: it holds every socket of the chapter
    programs and does part of their I/O work, so its CPU belongs to the server's."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/comm" % name, "rb") as f:
                if not f.read().startswith(b"wineserver"):
                    continue
            with open("/proc/%s/environ" % name, "rb") as f:
                environment = f.read().split(b"\0")
        except OSError:
            continue
        for entry in environment:
            if entry.startswith(b"WINEPREFIX="):
                if os.path.realpath(os.fsdecode(entry[len(b"WINEPREFIX="):])) == prefix:
                    return int(name)
    return None


class CpuWindow:
    """CPU used by groups of processes and by the whole machine between start() and stop(),
    in cores (1.0 = one core busy all the time)."""

    def __init__(self, groups):
        self.groups = groups  # name -> list of pids

    def _sample(self):
        return ({name: sum(_process_ticks(p) for p in pids) for name, pids in self.groups.items()},
                _machine_ticks(), time.monotonic())

    def start(self):
        self._first = self._sample()

    def stop(self):
        groups, machine, when = self._sample()
        first_groups, first_machine, first_when = self._first
        seconds = (when - first_when) * TICKS
        used = {name: (groups[name] - first_groups[name]) / seconds for name in groups}
        ours = sum(used.values())
        used["others"] = max(0.0, (machine - first_machine) / seconds - ours)
        return used


# --- one run ---------------------------------------------------------------------------
class Failed(Exception):
    pass


def _sleep_until(when):
    delay = when - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def _in_window(cpu, warmup, seconds, drive):
    """Calls DRIVE(start_at, measure_from, stop_at), the load's answers, with the start
    START_DELAY from now and the window after WARMUP; returns the answers and the CPU
    used in the window, sampled by a thread of its own while this one waits."""
    start_at = time.monotonic() + START_DELAY
    measure_from = start_at + warmup
    stop_at = measure_from + seconds
    window = {}

    def sample():
        _sleep_until(measure_from)
        cpu.start()
        _sleep_until(stop_at)
        window.update(cpu.stop())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    answers = drive(start_at, measure_from, stop_at)
    sampler.join()
    return answers, window


def _drive_and_measure(load, cpu, size, warmup, seconds, framed=False):
    answers, window = _in_window(
        cpu, warmup, seconds,
        lambda start_at, measure_from, stop_at: load.drive(size, start_at, measure_from,
                                                           stop_at, framed))
    latencies = array.array("d")
    for answer in answers:
        latencies.extend(answer["latencies"])
    latencies = sorted(latencies)
    return {
        "trips": sum(a["trips"] for a in answers),
        "rate": sum(a["trips"] for a in answers) / seconds,
        "p50": _percentile(latencies, 0.50),
        "p99": _percentile(latencies, 0.99),
        "errors": sum(a["errors"] for a in answers),
        "verified": sum(a["verified"] for a in answers),
        "problems": [p for a in answers for p in a["problems"]],
        "cpu": window,
    }


def _percentile(ordered, fraction):
    if not ordered:
        return float("nan")
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def disconnect_reasons(lines):
    """How many clients each reason ended, from the server's disconnected LINES, and the
    lines in which it refused one."""
    reasons = {}
    refused = []
    for line in lines:
        match = DISCONNECTED.match(line)
        if match:
            reasons[match.group("reason")] = reasons.get(match.group("reason"), 0) + 1
        elif REFUSED.match(line):
            refused.append(line)
    return reasons, refused


def connect_all(server, chapter, load, connections):
    """Once SERVER is ready for clients, connects the load's CONNECTIONS and waits until the
    server has printed a connected line for each."""
    port = server.port
    server.wait_for(r"^\d+ worker threads waiting on the port")
    if chapter.has("acceptex"):
        server.wait_for(r"^\d+ accepts posted on the listener$")
    load.connect(port, connections)
    server.wait_until(
        lambda lines: sum(1 for l in lines if CONNECTED.match(l)) >= connections,
        timeout=30, what="%d 'client N connected' lines" % connections)


def run_chapter(chapter, load, size, connections, warmup, seconds, prefix):
    """One fresh server of CHAPTER under one load; returns the measurement, with what the
    server did that is worth a look in "odd" and what it did wrong in "failed"."""
    del harness.RUNS[:]  # the harness keeps every run for test reports; not needed here
    odd = []
    framed = chapter.has("messages")
    with harness.Server(chapter.exe, SERVER_ARGS + chapter.message_options(size)) as server:
        try:
            connect_all(server, chapter, load, connections)
            wineserver = wineserver_pid(prefix)
            groups = {"client": load.pids, "server": [server.process.pid]}
            groups["wineserver"] = [wineserver] if wineserver else []
            result = _drive_and_measure(load, CpuWindow(groups), size, warmup, seconds, framed)
            server.wait_until(
                lambda lines: sum(1 for l in lines if DISCONNECTED.match(l)) >= connections,
                timeout=30, what="%d 'client N disconnected' lines" % connections)
            code = server.quit()
        except AssertionError as e:
            raise Failed("%s: %s" % (chapter.name, e)) from None
        lines = list(server.stdout)
        reasons, refused = disconnect_reasons(lines)
        odd += ["refused a client: %s" % line for line in refused]
        for reason, times in sorted(reasons.items()):
            if reason != "peer closed the connection":
                odd.append("%d clients disconnected with: %s" % (times, reason))
        failed = check_exit(server, code, lines, connections, result["verified"],
                            "the clients got %d back")
    result["odd"] = odd
    result["failed"] = failed
    return result


def run_native(native, load, size, connections, warmup, seconds):
    load.connect(native.port, connections)
    groups = {"client": load.pids, "server": native.pids, "wineserver": []}
    result = _drive_and_measure(load, CpuWindow(groups), size, warmup, seconds)
    result["odd"] = []
    result["failed"] = []
    return result


# --- chat runs ---------------------------------------------------------------------------
# The chat chapter's --max-queued: the largest the option takes. Each sayer has one line
# in flight, so a member that keeps up has about one line per sayer in its queue (100
# members: 100 x 69 bytes at the default line size); a cap this far above that means a
# member that reads is never dropped as too slow, and one that is dropped is an error.
CHAT_MAX_QUEUED = 64 << 20
TOO_SLOW = "too slow"
STOPPING = "server stopping"
# The trivial source's sockets: small buffers, so a hundred full ones stay a few MiB.
SOURCE_BUFFERS = 256 * 1024
# Reads in the capacity run take at most as many lines as the chat run's reads did on
# average (the last chat run's); before any, this many (chapter 12 gathers up to 16 queued
# messages into one WSASend).
DEFAULT_FRAMES_PER_READ = 16


def _chat_server_args(chapter, size):
    return SERVER_ARGS + ["--max-queued", str(CHAT_MAX_QUEUED)] + chapter.message_options(size)


def _sum(answers, key):
    return sum(a[key] for a in answers)


def run_chat(chapter, load, members, size, warmup, seconds, prefix):
    """One fresh server of a chat CHAPTER: MEMBERS connect and join, say lines in
    ping-pong through the window and their last lines after it; then "quit", with every
    member still in the room, and the server must exit 0, having sent what they got."""
    del harness.RUNS[:]
    odd = []
    failed = []
    with harness.Server(chapter.exe, _chat_server_args(chapter, size)) as server:
        try:
            connect_all(server, chapter, load, members)
            joined = load.chat_join(members, size)
            wineserver = wineserver_pid(prefix)
            groups = {"client": load.pids, "server": [server.process.pid],
                      "wineserver": [wineserver] if wineserver else []}
            answers, window = _in_window(CpuWindow(groups), warmup, seconds, load.chat_drive)
            # Quit with everyone still in the room: no notices go out at quit, so what the
            # server counts as sent is exactly what the members have read.
            code = server.quit()
        except AssertionError as e:
            raise Failed("%s: %s" % (chapter.name, e)) from None
        closed = load.chat_close(CHAT_DRAIN_SECONDS)
        lines = list(server.stdout)
    reasons, refused = disconnect_reasons(lines)
    failed += ["refused a member: %s" % line for line in refused]
    dropped = sum(times for reason, times in reasons.items() if reason.startswith(TOO_SLOW))
    for reason, times in sorted(reasons.items()):
        if reason.startswith(TOO_SLOW):
            failed.append("dropped %d member%s that read%s: %s" % (
                times, "" if times == 1 else "s", "s" if times == 1 else "", reason))
        elif reason != STOPPING:
            failed.append("%d members disconnected with: %s" % (times, reason))
    phases = joined + answers + closed
    received = _sum(phases, "received")
    failed += check_exit(server, code, lines, members, received, "the members read %d")
    latencies = array.array("d")
    for answer in answers:
        latencies.extend(answer["latencies"])
    latencies = sorted(latencies)
    reads = _sum(answers, "reads")
    left = sorted(set(n for a in phases for n in a["left"]))
    if left:
        odd.append("the others were told these members left: %s" % " ".join(left[:10]))
    return {
        "rate": _sum(answers, "deliveries") / seconds,
        "lines": _sum(answers, "trips") / seconds,
        "p50": _percentile(latencies, 0.50),
        "p99": _percentile(latencies, 0.99),
        "errors": _sum(phases, "errors") + len(failed),
        "dropped": dropped,
        "verified": _sum(phases, "delivered"),
        "said": _sum(answers, "said"),
        "frames_per_read": _sum(answers, "delivered") / reads if reads else float("nan"),
        "problems": [p for a in phases for p in a["problems"]],
        "cpu": window,
        "odd": odd,
        "failed": failed,
    }


def run_capacity(source, load, members, size, warmup, seconds, frames_per_read):
    """The load processes reading and checking chat traffic from the trivial source, each
    read at most FRAMES_PER_READ lines: how many deliveries a second they can take."""
    lines_per_read = max(1, int(math.ceil(frames_per_read))) \
        if not math.isnan(frames_per_read) else DEFAULT_FRAMES_PER_READ
    recv_size = lines_per_read * len(_line_frame(CHAT_NAME % 0, 0, size))
    source.start(members, size, SOURCE_BUFFERS)
    load.connect(source.port, members, buffers=SOURCE_BUFFERS)
    groups = {"client": load.pids, "server": source.pids, "wineserver": []}
    answers, window = _in_window(
        CpuWindow(groups), warmup, seconds,
        lambda start_at, measure_from, stop_at: load.chat_read(members, size, measure_from,
                                                               stop_at, recv_size))
    source.finish()
    reads = _sum(answers, "reads")
    return {
        "rate": _sum(answers, "deliveries") / seconds,
        "lines": float("nan"), "p50": float("nan"), "p99": float("nan"),
        "errors": _sum(answers, "errors"),
        "dropped": 0,
        "verified": _sum(answers, "delivered"),
        "frames_per_read": _sum(answers, "delivered") / reads if reads else float("nan"),
        "read_limit": lines_per_read,
        "problems": [p for a in answers for p in a["problems"]],
        "cpu": window,
        "odd": [],
        "failed": [],
    }


# --- the report ------------------------------------------------------------------------
def _size_name(size):
    if size >= 1024 and size % 1024 == 0:
        return "%d KiB" % (size // 1024)
    return "%d B" % size


def _spread(values, form):
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "-"
    return "%s (%s-%s)" % (form(statistics.median(values)), form(min(values)), form(max(values)))


def _rate(value):
    return "{:,.0f}".format(value)


def _ms(value):
    return "%.2f" % (value * 1000) if value < 0.1 else "%.1f" % (value * 1000)


def _ratio(value):
    return "%.2f" % value


def report(args, chapter_list, results, out):
    """The table: one block per load, one row per chapter, the ratio of each later chapter
    to the first, and the native reference."""
    first = chapter_list[0]
    names = [c.name for c in chapter_list] + ["native"]
    width = max(len("native reference"), max(len(c.name) for c in chapter_list),
                len("ratio %s/%s" % (chapter_list[-1].name[:2], first.name[:2])))
    print("", file=out)
    print("echo ping-pong over loopback: %d repetition%s of %g s each (after %g s of warm-up), "
          "run after run interleaved; servers: %s" % (args.repeat, "" if args.repeat == 1 else "s",
                                                     args.seconds, args.warmup,
                                                     " ".join(SERVER_ARGS)), file=out)
    print("msgs/s = round trips completed per second; p50/p99 = round-trip latency in ms; "
          "each figure is the median of the repetitions (min-max)", file=out)
    print("CPU = cores used in the measured window (median) by the client processes / the "
          "server / its wineserver / everything else on the machine (%d cores)" % os.cpu_count(),
          file=out)
    print("client: %d Python processes, epoll, non-blocking sockets, TCP_NODELAY; native "
          "reference: Python, epoll, %d processes" % (args.client_processes, SERVER_WORKERS),
          file=out)
    header = "%-*s  %-28s  %-24s  %-24s  %s" % (width, "", "msgs/s", "p50 ms", "p99 ms",
                                               "CPU " + "/".join(CPU_GROUPS))
    verdicts = []
    for size in args.sizes:
        for connections in args.connections:
            key = (size, connections)
            print("", file=out)
            print("%s messages, %d connection%s" % (_size_name(size), connections,
                                                     "" if connections == 1 else "s"), file=out)
            print(header, file=out)
            for name in names:
                runs = results[key][name]
                label = "native reference" if name == "native" else name
                cpu = "/".join("%.2f" % statistics.median([r["cpu"][g] for r in runs])
                               for g in CPU_GROUPS)
                print("%-*s  %-28s  %-24s  %-24s  %s" % (
                    width, label, _spread([r["rate"] for r in runs], _rate),
                    _spread([r["p50"] for r in runs], _ms),
                    _spread([r["p99"] for r in runs], _ms), cpu), file=out)
                if name == chapter_list[-1].name and len(chapter_list) > 1:
                    for later in chapter_list[1:]:
                        base = results[key][first.name]
                        mine = results[key][later.name]
                        rates = [m["rate"] / b["rate"] for m, b in zip(mine, base) if b["rate"]]
                        p50s = [m["p50"] / b["p50"] for m, b in zip(mine, base) if b["p50"]]
                        p99s = [m["p99"] / b["p99"] for m, b in zip(mine, base) if b["p99"]]
                        print(("%-*s  %-28s  %-24s  %s" % (
                            width, "ratio %s/%s" % (later.name[:2], first.name[:2]),
                            _spread(rates, _ratio), _spread(p50s, _ratio),
                            _spread(p99s, _ratio))).rstrip(), file=out)
            best = max(statistics.median([r["rate"] for r in results[key][c.name]])
                       for c in chapter_list)
            native = statistics.median([r["rate"] for r in results[key]["native"]])
            client = max(statistics.median([r["cpu"]["client"] for r in results[key][c.name]])
                         for c in chapter_list)
            verdicts.append((size, connections, native / best if best else float("inf"), client))
    print("", file=out)
    print("ratios: msgs/s above 1 and latency below 1 mean %s did better than %s in the same "
          "repetition" % ("the later chapter" if len(chapter_list) > 2 else chapter_list[-1].name,
                          first.name), file=out)
    return verdicts


def print_verdict(verdicts, out):
    print("", file=out)
    print("is the load generator the limit? The native reference server, driven by the same "
          "client with the same load:", file=out)
    limited = []
    for size, connections, headroom, client in verdicts:
        if connections == 1:
            what = "latency-bound (one message in flight), not a test of the client's capacity"
        elif headroom >= HEADROOM:
            what = "not the limit"
        else:
            what = "MAY BE THE LIMIT"
            limited.append((size, connections))
        print("  %s, %d connection%s: %.1fx the fastest chapter's msgs/s; the client used at "
              "most %.2f cores with the chapters: %s" % (
                  _size_name(size), connections, "" if connections == 1 else "s", headroom,
                  client, what), file=out)
    if not any(connections > 1 for _, connections, _, _ in verdicts):
        print("no load had more than one connection, so the client's capacity was not tested",
              file=out)
    elif limited:
        print("the client may be the bottleneck for: %s; those chapter figures are a lower "
              "bound, and their ratios may be squeezed towards 1" % ", ".join(
                  "%s x %d" % (_size_name(s), c) for s, c in limited), file=out)
    else:
        print("the client got at least %.0fx more through a native server on every load with "
              "more than one connection, so it was not what limited the chapters" % HEADROOM,
              file=out)


# --- the chat report ----------------------------------------------------------------------
def _chat_progress(done, total, repetition, name, members, result):
    cpu = result["cpu"]
    if "dropped" in result:
        what = "%8s deliveries/s, %6s lines/s, p99 %6s ms, %d errors, %d dropped" % (
            _rate(result["rate"]), "-" if math.isnan(result["lines"]) else _rate(result["lines"]),
            "-" if math.isnan(result["p99"]) else _ms(result["p99"]), result["errors"],
            result["dropped"])
    else:
        what = "%8s msgs/s (echo), p99 %6s ms, %d errors" % (
            _rate(result["rate"]), _ms(result["p99"]), result["errors"])
    return "[%2d/%d] rep %d %-32s x %3d: %s; CPU %s%s" % (
        done, total, repetition, name, members, what,
        " ".join("%s %.2f" % (g, cpu[g]) for g in CPU_GROUPS),
        "".join("; " + o for o in result["odd"] + result["failed"]))


def report_chat(args, chat_list, baseline, results, out):
    members, size = args.members, args.line_size
    echo = "%s echo" % baseline.name
    capacity = "client capacity (trivial source)"
    rows = [c.name for c in chat_list] + ["ratio", echo, "native echo reference", capacity]
    width = max(len(r) for r in rows + ["ratio %s/%s" % (chat_list[-1].name[:2],
                                                         baseline.name[:2])])
    print("", file=out)
    print("chat room over loopback: %d members of one room, each saying %d-byte lines in "
          "ping-pong; %d repetition%s of %g s each (after %g s of warm-up), run after run "
          "interleaved; servers: %s, the chat chapter%s also --max-queued %d" % (
              members, size, args.repeat, "" if args.repeat == 1 else "s", args.seconds,
              args.warmup, " ".join(SERVER_ARGS), "s" if len(chat_list) > 1 else "",
              CHAT_MAX_QUEUED), file=out)
    print("deliveries/s = MESSAGEs received by all the members per second: one line said is "
          "%d deliveries, the sayer's own copy included; lines/s = lines back at their sayer "
          "per second; p50/p99 = a sayer's round trip in ms, SAY to its own line back" % members,
          file=out)
    print("the echo rows: %d connections of %d-byte echo messages (the native reference: raw "
          "bytes); their deliveries/s is msgs/s, one echo being one delivery, and p50/p99 the "
          "echo's round trip" % (members, size), file=out)
    print("each figure is the median of the repetitions (min-max); CPU = cores used in the "
          "measured window (median) by the client processes / the server (the trivial source) "
          "/ its wineserver / everything else on the machine (%d cores)" % os.cpu_count(),
          file=out)
    print("client: %d Python processes, epoll, non-blocking sockets, TCP_NODELAY" %
          args.client_processes, file=out)
    print("--max-queued %d%s: each sayer has one line in flight, so a member that keeps up "
          "holds about %d lines (%d bytes) in its queue; a member that reads is never to be "
          "dropped, and one that is dropped counts as an error" % (
              CHAT_MAX_QUEUED, " (64 MiB, the most it takes)" if CHAT_MAX_QUEUED == 64 << 20
              else "", members, members * len(_line_frame(CHAT_NAME % 0, 0, size))), file=out)
    print("", file=out)
    print("%d members, %d-byte lines" % (members, size), file=out)
    print("%-*s  %-28s  %-22s  %-20s  %-20s  %-7s %-8s %s" % (
        width, "", "deliveries/s", "lines/s", "p50 ms", "p99 ms", "errors", "dropped",
        "CPU " + "/".join(CPU_GROUPS)), file=out)

    def row(label, runs, lines=True):
        cpu = "/".join("%.2f" % statistics.median([r["cpu"][g] for r in runs])
                       for g in CPU_GROUPS)
        print("%-*s  %-28s  %-22s  %-20s  %-20s  %-7d %-8s %s" % (
            width, label, _spread([r["rate"] for r in runs], _rate),
            _spread([r["lines"] for r in runs], _rate) if lines else "-",
            _spread([r["p50"] for r in runs], _ms), _spread([r["p99"] for r in runs], _ms),
            sum(r["errors"] for r in runs),
            str(sum(r["dropped"] for r in runs)) if "dropped" in runs[0] else "-", cpu),
            file=out)

    for chapter in chat_list:
        row(chapter.name, results[chapter.name])
    row(echo, results[echo], lines=False)
    for chapter in chat_list:
        mine, base = results[chapter.name], results[echo]
        rates = [m["rate"] / b["rate"] for m, b in zip(mine, base) if b["rate"]]
        lines = [m["lines"] / b["rate"] for m, b in zip(mine, base) if b["rate"]]
        p50s = [m["p50"] / b["p50"] for m, b in zip(mine, base) if b["p50"]]
        p99s = [m["p99"] / b["p99"] for m, b in zip(mine, base) if b["p99"]]
        print(("%-*s  %-28s  %-22s  %-20s  %s" % (
            width, "ratio %s/%s" % (chapter.name[:2], baseline.name[:2]),
            _spread(rates, _ratio), _spread(lines, _ratio), _spread(p50s, _ratio),
            _spread(p99s, _ratio))).rstrip(), file=out)
    row("native echo reference", results["native"], lines=False)
    row(capacity, results[capacity], lines=False)

    print("", file=out)
    for chapter in chat_list:
        ratio = statistics.median([m["rate"] / b["rate"] for m, b in
                                   zip(results[chapter.name], results[echo]) if b["rate"]] or [0])
        print("ratio %s/%s: deliveries/s over %s's echo msgs/s, both at %d connections in the "
              "same repetition (lines/s over msgs/s in the lines column, round trip over round "
              "trip in the latency columns). An echo round trip is one message in and one out; "
              "a line said is one in and %d out, the sayer's own copy included." % (
                  chapter.name[:2], baseline.name[:2], baseline.name, members, members),
              file=out)
        if ratio > 0:
            print("  %.2f: one delivery takes the server about %.2f of what an echo round trip "
                  "takes, and one line about %.1f echo round trips. Above 1, the fan-out is "
                  "cheaper per message than echoing: the %d copies share one receive, one parse "
                  "and one look at the room, and a gathered WSASend carries several queued "
                  "messages to a member at once; each copy still costs a lock, a copy into its "
                  "member's queue and its part of a send." % (
                      ratio, 1 / ratio, members / ratio, members), file=out)
    print("", file=out)
    print("is the load generator the limit?", file=out)
    best = max(statistics.median([r["rate"] for r in results[c.name]]) for c in chat_list)
    client = max(statistics.median([r["cpu"]["client"] for r in results[c.name]])
                 for c in chat_list)
    cap = statistics.median([r["rate"] for r in results[capacity]])
    per_read = [r["frames_per_read"] for r in results[chat_list[-1].name]]
    limits = [r["read_limit"] for r in results[capacity]]
    headroom = cap / best if best else float("inf")
    # The same within each repetition: capacity and chat run seconds apart.
    lowest = min((c["rate"] / r["rate"] for c, r in zip(results[capacity],
                                                        results[chat_list[-1].name])
                  if r["rate"]), default=float("inf"))
    if not best:
        verdict = "the chat chapter delivered nothing in the window, so nothing to compare"
    elif headroom >= HEADROOM:
        verdict = "not the limit: the chat figures are the server's (with its wineserver)"
    else:
        verdict = "MAY BE THE LIMIT: the chat figures are a lower bound"
    print("  chat: the same client processes read and checked %s deliveries/s from a trivial "
          "source (pre-built lines, no server; each read at most as many lines as %s's reads "
          "averaged in that repetition, %s; %s lines per read), %.1fx the chat chapter's "
          "(%.1fx in the closest repetition); the client used at most %.2f cores in the chat "
          "runs: %s" % (_rate(cap), chat_list[-1].name,
                        _spread(per_read, lambda v: "%.1f" % v),
                        "%d-%d" % (min(limits), max(limits)) if min(limits) != max(limits)
                        else "%d" % limits[0], headroom, lowest, client, verdict), file=out)
    echo_best = statistics.median([r["rate"] for r in results[echo]])
    native = statistics.median([r["rate"] for r in results["native"]])
    echo_headroom = native / echo_best if echo_best else float("inf")
    print("  echo: the native reference got %.1fx %s's msgs/s through the same client: %s" % (
        echo_headroom, baseline.name, "not the limit" if echo_headroom >= HEADROOM else
        "MAY BE THE LIMIT, which would push the ratio up"), file=out)


def main_chat(args):
    """make bench-chat: the chat chapters, the baseline's echo, its native reference and
    the client's capacity, interleaved in each repetition."""
    try:
        chat_list = find_chapters(args.chapters, "chat")
        baseline = find_chapters([args.baseline])[0]
    except AssertionError as e:
        print("bench.py: %s" % e, file=sys.stderr)
        return 2
    prefix = wine_prefix()
    members, size = args.members, args.line_size
    # Forked now, while this process has no thread: the harness starts reader threads.
    load = Load(args.client_processes)
    native = NativeServer()
    source = ChatSource()
    echo = "%s echo" % baseline.name
    capacity = "client capacity (trivial source)"
    names = [c.name for c in chat_list] + [echo, "native", capacity]
    results = {n: [] for n in names}
    total = args.repeat * len(names)
    done = 0
    started = time.monotonic()
    session = wine_session_for(prefix, args.client_processes, total,
                               args.warmup + args.seconds + 2)

    def rounds():
        nonlocal done
        for repetition in range(1, args.repeat + 1):
            per_read = float("nan")
            for name in names:
                chapter = next((c for c in chat_list if c.name == name), None)
                if chapter:
                    result = run_chat(chapter, load, members, size, args.warmup,
                                      args.seconds, prefix)
                    per_read = result["frames_per_read"]
                elif name == echo:
                    result = run_chapter(baseline, load, size, members, args.warmup,
                                         args.seconds, prefix)
                elif name == "native":
                    result = run_native(native, load, size, members, args.warmup,
                                        args.seconds)
                else:
                    result = run_capacity(source, load, members, size, args.warmup,
                                          args.seconds, per_read)
                results[name].append(result)
                done += 1
                print(_chat_progress(done, total, repetition, name, members, result),
                      file=sys.stderr, flush=True)
                yield "%s, repetition %d" % (name, repetition), result

    problems, odd, code = collect(session, rounds(), [source, native, load])
    if code is not None:
        return code
    out = sys.stdout
    report_chat(args, chat_list, baseline, results, out)
    chat_runs = [r for c in chat_list for r in results[c.name]] + results[capacity]
    echo_runs = results[echo] + results["native"]
    errors = sum(r["errors"] for rs in results.values() for r in rs)
    dropped = sum(r["dropped"] for c in chat_list for r in results[c.name])
    print("", file=out)
    print("errors: %d (every MESSAGE each member received compared byte for byte with the "
          "line its sayer said, each sayer's lines in order at every member and none missing: "
          "%s deliveries, warm-up, the last lines and the trivial source's included; every "
          "echoed byte compared: %s bytes)" % (
              errors, "{:,}".format(sum(r["verified"] for r in chat_runs)),
              "{:,}".format(sum(r["verified"] for r in echo_runs))), file=out)
    print("members dropped as too slow: %d" % dropped, file=out)
    for line in problems[:20]:
        print("  problem: %s" % line, file=out)
    for line in odd[:20]:
        print("  odd: %s" % line, file=out)
    print("the machine was shared: 'others' in the CPU column is what other programs used; "
          "compare by the ratio rows, which pair runs made seconds apart (%.0f s in all)" % (
              time.monotonic() - started), file=out)
    out.flush()
    return 1 if errors or problems or dropped else 0


# --- command line ----------------------------------------------------------------------
def _size(text):
    match = re.fullmatch(r"(\d+)\s*(k|kib|kb)?", text.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError("not a size: %r (e.g. 64 or 4K)" % text)
    value = int(match.group(1)) * (1024 if match.group(2) else 1)
    if not 1 <= value <= 1 << 20:
        raise argparse.ArgumentTypeError("sizes go from 1 byte to 1 MiB")
    return value


def _positive(kind):
    def parse(text):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError("must be above 0")
        return value
    return parse


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Echo ping-pong (or, with --chat, a chat room's broadcasts), chapters "
                    "side by side under Wine, with a reference that shows whether the client "
                    "is the limit.")
    parser.add_argument("--chapters", nargs="+", default=None,
                        help="chapters to compare, first is the baseline (default 08 10; "
                             "with --chat, the chat chapters, default 12)")
    parser.add_argument("--sizes", nargs="+", type=_size, default=None,
                        help="message sizes in bytes, 4K = 4096 (default 64 4096)")
    parser.add_argument("--connections", nargs="+", type=_positive(int), default=None,
                        help="connection counts, at most 250 (default 1 100)")
    parser.add_argument("--seconds", type=_positive(float), default=None,
                        help="measured seconds per run (default 3)")
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds of load before the measurement (default 1)")
    parser.add_argument("--repeat", type=_positive(int), default=None,
                        help="repetitions of the whole interleaved round (default 5)")
    parser.add_argument("--client-processes", type=_positive(int), default=os.cpu_count() or 2,
                        help="processes that drive the connections (default: one per core)")
    parser.add_argument("--quick", action="store_true",
                        help="one short repetition at 100 connections (about 15 s; with "
                             "--chat, 100 members, about 10 s), for the smoke tests; any "
                             "option given as well still applies")
    chat = parser.add_argument_group(
        "chat room (make bench-chat)",
        "--chat measures the chat chapters instead: members that say lines in ping-pong, "
        "every MESSAGE checked at every member; beside them, in the same repetitions, the "
        "echo of --baseline at as many connections, its native reference, and the client's "
        "own capacity against a trivial source")
    chat.add_argument("--chat", action="store_true",
                      help="the chat load (--sizes and --connections do not apply)")
    chat.add_argument("--members", type=_positive(int), default=100,
                      help="members in the room, at most 250 (default 100)")
    chat.add_argument("--line-size", type=_size, default=64,
                      help="bytes of each MESSAGE's payload, 'NAME: TEXT', 32 to 65536; the "
                           "echo runs use it as their message size (default 64)")
    chat.add_argument("--baseline", default="11",
                      help="the chapter whose echo msgs/s the deliveries are compared with "
                           "(default 11)")
    args = parser.parse_args(argv)
    if args.chat:
        if args.sizes is not None or args.connections is not None:
            parser.error("--sizes and --connections are for the echo load; with --chat, "
                         "--line-size and --members")
        if args.members > 250:
            parser.error("--members: at most 250, since the servers have 256 slots")
        if not 32 <= args.line_size <= 65536:
            parser.error("--line-size: 32 to 65536 bytes")
        quick = {"chapters": ["12"], "seconds": 1.0, "warmup": 0.3, "repeat": 1}
        full = {"chapters": ["12"], "seconds": 3.0, "warmup": 1.0, "repeat": 5}
    else:
        quick = {"chapters": ["08", "10"], "sizes": [64, 4096], "connections": [100],
                 "seconds": 1.0, "warmup": 0.3, "repeat": 1}
        full = {"chapters": ["08", "10"], "sizes": [64, 4096], "connections": [1, 100],
                "seconds": 3.0, "warmup": 1.0, "repeat": 5}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if not args.chat and max(args.connections) > 250:
        parser.error("--connections: at most 250, since the servers have 256 slots")
    if args.warmup < 0:
        parser.error("--warmup: not below 0")
    return args


def wine_session_for(prefix, processes, total, seconds_each):
    """The Wine session the runs share: the prefix's wineserver if one is running (left
    running), else one started for them; says which on stderr, with what is to come."""
    already = wineserver_pid(prefix) is not None
    print("bench: WINEPREFIX=%s (%s); %d client processes; %d runs of about %.0f s" % (
        prefix, "wineserver already running, left running" if already else
        "wineserver started for this run", processes, total, seconds_each), file=sys.stderr)
    return contextlib.nullcontext() if already else harness.wine_session()


def check_exit(server, code, lines, connections, received, what_received):
    """What is wrong with how the server ended after quit: its exit code, anything on
    stderr, and its summary, which must count CONNECTIONS and the RECEIVED bytes (said as
    WHAT_RECEIVED % RECEIVED when they differ). An empty list when nothing is."""
    failed = []
    summary = [SUMMARY.match(l) for l in lines if SUMMARY.match(l)]
    if code != 0:
        failed.append("exit code %s after quit" % code)
    if server.stderr:
        failed.append("printed on stderr: %s" % " | ".join(server.stderr[:5]))
    if not summary:
        failed.append("printed no 'connections served' line")
        return failed
    served, sent = int(summary[0].group("served")), int(summary[0].group("bytes"))
    if served != connections:
        failed.append("served %d connections, not %d" % (served, connections))
    if sent != received:
        failed.append("counted %d bytes sent; %s" % (sent, what_received % received))
    return failed


def collect(session, runs, closers):
    """Takes, inside SESSION, every (where, result) that RUNS yields as each run ends, and
    returns the problems and odd things the results report, with None; or, once a run
    cannot go on or the user interrupts (said on stderr), with the exit code instead.
    Closes CLOSERS either way."""
    problems = []
    odd = []
    try:
        with session:
            for where, result in runs:
                problems += ["%s: %s" % (where, p)
                             for p in result["problems"] + result["failed"]]
                odd += ["%s: %s" % (where, o) for o in result["odd"]]
    except (Failed, RuntimeError) as e:
        print("bench.py: stopped: %s" % e, file=sys.stderr)
        return problems, odd, 1
    except KeyboardInterrupt:
        print("bench.py: interrupted", file=sys.stderr)
        return problems, odd, 130
    finally:
        for closer in closers:
            closer.close()
    return problems, odd, None


def find_chapters(names, feature="echo"):
    found = []
    for name in names:
        matches = [c for c in chapters.ALL if c.name == name or c.name[:2] == name.zfill(2)]
        if not matches:
            raise SystemExit("bench.py: no chapter %r; there are %s" % (
                name, " ".join(c.name for c in chapters.ALL)))
        chapter = matches[0]
        if not chapter.has(feature):
            raise SystemExit("bench.py: chapter %s %s" % (
                chapter.name, "does not echo" if feature == "echo" else "has no chat room"))
        harness.require_exe(chapter.exe)
        found.append(chapter)
    return found


def main(argv):
    if not hasattr(select, "epoll") or not os.path.isdir("/proc"):
        print("bench.py: runs on Linux only (epoll, /proc)", file=sys.stderr)
        return 2
    args = parse_args(argv)
    if args.chat:
        return main_chat(args)
    try:
        chapter_list = find_chapters(args.chapters)
    except AssertionError as e:
        print("bench.py: %s" % e, file=sys.stderr)
        return 2
    prefix = wine_prefix()
    # Forked now, while this process has no thread: the harness starts reader threads.
    load = Load(args.client_processes)
    native = NativeServer()
    names = [c.name for c in chapter_list] + ["native"]
    results = {(s, c): {n: [] for n in names} for s in args.sizes for c in args.connections}
    total = args.repeat * len(results) * len(names)
    done = 0
    started = time.monotonic()
    session = wine_session_for(prefix, args.client_processes, total,
                               args.warmup + args.seconds + 1.5)

    def rounds():
        nonlocal done
        for repetition in range(1, args.repeat + 1):
            for size in args.sizes:
                for connections in args.connections:
                    for chapter in chapter_list + [None]:
                        name = chapter.name if chapter else "native"
                        if chapter:
                            result = run_chapter(chapter, load, size, connections,
                                                 args.warmup, args.seconds, prefix)
                        else:
                            result = run_native(native, load, size, connections,
                                                args.warmup, args.seconds)
                        results[(size, connections)][name].append(result)
                        done += 1
                        cpu = result["cpu"]
                        print("[%2d/%d] rep %d %-20s %7s x %3d: %8s msgs/s, p99 %6s ms, "
                              "%d errors; CPU %s%s" % (
                                  done, total, repetition, name, _size_name(size),
                                  connections, _rate(result["rate"]), _ms(result["p99"]),
                                  result["errors"], " ".join(
                                      "%s %.2f" % (g, cpu[g]) for g in CPU_GROUPS),
                                  "".join("; " + o for o in result["odd"] + result["failed"])),
                              file=sys.stderr, flush=True)
                        yield "%s, %s x %d, repetition %d" % (
                            name, _size_name(size), connections, repetition), result

    problems, odd, code = collect(session, rounds(), [native, load])
    if code is not None:
        return code
    out = sys.stdout
    verdicts = report(args, chapter_list, results, out)
    errors = sum(r["errors"] for runs in results.values() for rs in runs.values() for r in rs)
    verified = sum(r["verified"] for runs in results.values() for rs in runs.values() for r in rs)
    print_verdict(verdicts, out)
    print("", file=out)
    print("errors: %d (every echoed byte compared with what was sent: %s bytes, warm-up and "
          "the last echoes included)" % (errors, "{:,}".format(verified)), file=out)
    for line in problems[:20]:
        print("  problem: %s" % line, file=out)
    for line in odd[:20]:
        print("  odd: %s" % line, file=out)
    print("the machine was shared: 'others' in the CPU column is what other programs used; "
          "compare chapters by the ratio rows, which pair runs made seconds apart "
          "(%.0f s in all)" % (time.monotonic() - started), file=out)
    out.flush()
    return 1 if errors or problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
