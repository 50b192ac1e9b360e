#!/usr/bin/python3
"""make bench: the echo chapters (08 on) side by side under the same loads, with a native
Linux reference, and a table and a chart of what they did.

    /usr/bin/python3 scripts/bench.py                    (or: make bench)
    /usr/bin/python3 scripts/bench.py --quick            a short run, for the smoke tests
    /usr/bin/python3 scripts/bench.py --only echo        (make bench-echo; also chat, idle)
    /usr/bin/python3 scripts/bench.py --chapters 08 13 --repeat 5 --seconds 3

The chapters are every one in tests/chapters.py with "echo" from 08 on, found when it
runs; the chat load takes every one with "chat". The loads:

  echo  1 x 64 B, 100 x 64 B and 100 x 4 KiB ping-pong, driven by tools/loadgen.exe (every
        echoed byte compared; a chapter with "messages" gets echo messages, --framed);
        the same load against tools/epoll-echo, a native epoll echo server, shows what
        Wine costs, and that the load generator is not what limits the chapters.
  chat  100 members of one room saying lines in ping-pong, every MESSAGE checked at every
        member, in order per sayer (the Python members below); beside them, the same
        members reading pre-built lines from a trivial source, which shows how many
        deliveries a second they can check.
  idle  10,000 connections held by loadgen --idle, each echoed once: the growth of the
        server process's memory, and of its wineserver's, per connection (VmRSS), from
        before the first connect (the slots of --max-clients already allocated) to a
        second before the end of the hold (--hold, 10 s), when every connection has been
        quiet for seconds: chapter 14 takes a quiet connection's block back on a tick, and
        10,000 of them take it a few seconds under Wine. No native row: a Linux socket's memory is the kernel's, in no
        VmRSS.

Every run starts its server fresh. The runs are interleaved (08, 09, ..., native, 08, ...)
so a change in the machine's load hits them alike, and each ratio is the median of the
ratios within each repetition. CPU per message is the user and system time that the
server process and its wineserver used during the loadgen run (from /proc), over the
messages it verified, warm-up included.

Under Wine every socket of every program of a prefix is a descriptor in that prefix's
wineserver, and a process may hold at most 20,000 here: so loadgen runs in a prefix (and
wineserver) of its own, $LOAD_WINEPREFIX (default: the chapters' prefix with "-load"
after it). Wine runs the chapters in $WINEPREFIX (scripts/wine.sh's default otherwise).
A wineserver already running in a prefix is used and left running; otherwise one is
started for the run and stopped at the end. Before each idle run the chapters'
wineserver is restarted, since it does not give back the memory of sockets it has held.

It writes build/bench/bench.md (the tables it prints), bench.json (every run) and
bench.svg (gnuplot). Linux only: /proc, and the native reference. Exit code 0 when every
run verified everything and every server exited cleanly, 1 otherwise, 2 for a bad
command line.
"""

import argparse
import array
import json
import math
import multiprocessing
import os
import re
import resource
import select
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import chapters  # noqa: E402  (the one table of chapters and their features)
import harness  # noqa: E402  (the one way to start a chapter)

WORKERS = 2
SERVER_ARGS = ["--port", "0", "--workers", str(WORKERS), "--max-clients", "256"]
HOST = "127.0.0.1"
LOADGEN = os.path.join(chapters.BUILD_DIR, "tools", "loadgen.exe")
NATIVE_ECHO = os.path.join(chapters.BUILD_DIR, "native", "epoll-echo")
OUT_DIR = os.path.join(chapters.BUILD_DIR, "bench")
FIRST_CHAPTER = 8
# Reads of one chat member take at most this many bytes.
RECV_SIZE = 65536
# When the native reference gets this many times the messages per second of the fastest
# chapter, the load generator was not the limit of that load.
HEADROOM = 2.0
# Bounds that only catch hangs: a loadgen run beyond its own bounds, a server's lines.
LOADGEN_SLACK = 60.0
SERVER_LINES_SECONDS = 60.0

CONNECTED = re.compile(r"^client \d+ connected from ")
DISCONNECTED = re.compile(r"^client \d+ disconnected: (?P<reason>.*) \(\d+ live\)$")
REFUSED = re.compile(r"^refused ")
SUMMARY = harness.SUMMARY
HOLDING = re.compile(r"^holding (\d+) connections")


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


# --- /proc: CPU time and memory ------------------------------------------------------
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids):
    """User plus system time the processes PIDS have used so far, in seconds."""
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total / TICKS


def children_seconds():
    """User plus system time of this process's children that have ended, in seconds."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def raise_file_limit():
    """Raises this process's open-file limit to its hard limit, so that the wineservers
    it starts inherit it; returns the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# --- Wine prefixes ---------------------------------------------------------------------
class Prefix:
    """A Wine prefix with its wineserver: started for the run unless one is running, and
    then stopped at the end; restart() gives it a fresh one."""

    def __init__(self, path):
        self.path = os.path.realpath(path)
        self.env = dict(os.environ, WINEPREFIX=self.path)
        self.ours = False

    def _wine_sh(self, what):
        done = subprocess.run(["sh", harness.WINE_SH, what], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=self.env, timeout=300)
        if done.returncode != 0:
            raise RuntimeError("scripts/wine.sh %s failed for %s: exit code %d" % (
                what, self.path, done.returncode))

    def start(self):
        self.ours = harness.wineserver_pid(self.path) is None
        self._wine_sh("start")
        return self

    def restart(self):
        self._wine_sh("stop")
        self._wine_sh("start")

    def stop(self):
        if self.ours:
            self._wine_sh("stop")

    @property
    def wineserver(self):
        return harness.wineserver_pid(self.path)


# --- loadgen ---------------------------------------------------------------------------
class Loadgen:
    """tools/loadgen.exe in the load prefix, its output read by threads as it comes."""

    def __init__(self, prefix, args, port):
        self.args = list(args) + ["--json", HOST, str(port)]
        self.lines = []
        self.errors = []
        self.held = threading.Event()
        self.process = subprocess.Popen(harness.command(LOADGEN, self.args),
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, env=prefix.env, cwd=ROOT)
        self.readers = [threading.Thread(target=self._read, args=(s, l), daemon=True)
                        for s, l in ((self.process.stdout, self.lines),
                                     (self.process.stderr, self.errors))]
        for reader in self.readers:
            reader.start()

    def _read(self, stream, lines):
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            lines.append(line)
            if HOLDING.match(line):
                self.held.set()
        self.held.set()  # ended: nobody waits for a line that cannot come

    def finish(self, timeout):
        """Waits for the end; returns loadgen's JSON report with its exit code in "code"
        and its stderr in "stderr"; raises RuntimeError when it hangs or prints none."""
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise RuntimeError("loadgen %s did not end within %.0f s" % (
                " ".join(self.args), timeout)) from None
        for reader in self.readers:
            reader.join(10)
        reports = [l for l in self.lines if l.startswith("{")]
        if not reports:
            raise RuntimeError("loadgen %s printed no report (exit code %d): %s" % (
                " ".join(self.args), code, " | ".join(self.lines + self.errors)[:500]))
        report = json.loads(reports[-1])
        report["code"] = code
        report["stderr"] = list(self.errors)
        return report


def loadgen_problems(report, connections):
    """What went wrong in a loadgen run: its exit code, its errors, its connections."""
    problems = report["stderr"][:5]  # each line names loadgen, or the call that failed
    if report["code"] != 0 and not problems:
        problems.append("loadgen exited %d" % report["code"])
    if report["opened"] != connections:
        problems.append("loadgen opened %d of %d connections" % (report["opened"], connections))
    return problems


# --- the servers -----------------------------------------------------------------------
class Native:
    """tools/epoll-echo, the native reference, fresh for each run like the chapters."""

    name = "native"

    def __init__(self):
        self.process = subprocess.Popen([NATIVE_ECHO, "--workers", str(WORKERS)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, cwd=ROOT)
        line = self.process.stdout.readline().decode("utf-8", "replace")
        match = harness.LISTENING.match(line.strip())
        if not match:
            self.process.kill()
            raise RuntimeError("epoll-echo printed %r, not its listening line" % line)
        self.port = int(match.group("port"))

    def quit(self, connections, verified):
        out, err = self.process.communicate(b"quit\n", timeout=30)
        lines = out.decode("utf-8", "replace").splitlines()
        summary = [SUMMARY.match(l) for l in lines if SUMMARY.match(l)]
        failed = ["epoll-echo: %s" % l for l in err.decode("utf-8", "replace").splitlines()]
        if self.process.returncode != 0:
            failed.append("epoll-echo exited %d" % self.process.returncode)
        if not summary or int(summary[0].group("bytes")) != verified:
            failed.append("epoll-echo's summary %r does not match the %d bytes verified" % (
                lines[-1:], verified))
        return failed

    def close(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class ChapterServer:
    """A chapter's server for one run, with the interface of Native."""

    def __init__(self, chapter, args, connections):
        self.chapter = chapter
        self.server = start_chapter(chapter, args, connections)
        self.process, self.port = self.server.process, self.server.port

    def quit(self, connections, verified):
        return quit_chapter(self.server, self.chapter, connections, verified)[0]

    def close(self):
        self.server.__exit__(None, None, None)


def start_chapter(chapter, args, connections):
    """A fresh server of CHAPTER with ARGS, once it is ready for clients."""
    server = harness.Server(chapter.exe, args)
    try:
        server.port  # first: it reads the listening line, which comes before these
        if chapter.has("workers"):  # a chapter on the thread pool has no workers of its own
            server.wait_for(r"^\d+ worker threads waiting on the port")
        if chapter.has("acceptex"):
            server.wait_for(r"^\d+ accepts posted on the listener$")
    except AssertionError:
        server.__exit__(None, None, None)
        raise
    return server


def quit_chapter(server, chapter, connections, received):
    """Waits for CONNECTIONS disconnected lines, quits SERVER, and says what is wrong with
    how it ended (check_end)."""
    failed = []
    try:
        server.wait_until(
            lambda lines: sum(1 for l in lines if DISCONNECTED.match(l)) >= connections,
            timeout=SERVER_LINES_SECONDS, what="%d disconnected lines" % connections)
    except AssertionError:
        failed.append("printed fewer than %d disconnected lines" % connections)
    more, reasons = check_end(server, server.quit(), connections, received)
    return failed + more, reasons


def check_end(server, code, connections, received):
    """What is wrong with how SERVER ended with exit code CODE: the code, its stderr, and
    a summary that must count CONNECTIONS and RECEIVED bytes; and how many clients each
    disconnect reason ended."""
    failed = []
    lines = list(server.stdout)
    summary = [SUMMARY.match(l) for l in lines if SUMMARY.match(l)]
    if code != 0:
        failed.append("exit code %s after quit" % code)
    if server.stderr:
        failed.append("printed on stderr: %s" % " | ".join(server.stderr[:5]))
    if not summary:
        failed.append("printed no 'connections served' line")
    elif (int(summary[0].group("connections")), int(summary[0].group("bytes"))) != (
            connections, received):
        failed.append("%r, but the clients opened %d and got %d bytes back" % (
            summary[0].group(0), connections, received))
    reasons = {}
    for line in lines:
        match = DISCONNECTED.match(line)
        if match:
            reasons[match.group("reason")] = reasons.get(match.group("reason"), 0) + 1
        elif REFUSED.match(line):
            failed.append("refused a client: %s" % line)
    return failed, reasons


# --- echo and idle runs ----------------------------------------------------------------
def run_echo(target, size, connections, args, prefixes):
    """One fresh server (a chapter, or "native") under one ping-pong load from loadgen."""
    del harness.RUNS[:]  # the harness keeps every run for test reports; not needed here
    load = ["--connections", str(connections), "--size", str(size), "--seconds",
            "%d" % args.seconds, "--warmup", "%d" % args.warmup]
    if target == "native":
        server = Native()
        pids = [server.process.pid]
    else:
        server = ChapterServer(target, SERVER_ARGS + target.message_options(size), connections)
        pids = [server.process.pid, prefixes["server"].wineserver]
        if target.has("messages"):
            load.append("--framed")
    try:
        load_pids = [prefixes["load"].wineserver]
        before, load_before, started = cpu_seconds(pids), cpu_seconds(load_pids), time.monotonic()
        # loadgen is gone from /proc once it ends: its time is read as a child's, reaped.
        children = children_seconds()
        loadgen = Loadgen(prefixes["load"], load, server.port)
        report = loadgen.finish(args.seconds + args.warmup + LOADGEN_SLACK)
        used = cpu_seconds(pids) - before
        elapsed = time.monotonic() - started
        load_used = cpu_seconds(load_pids) - load_before + children_seconds() - children
        failed = loadgen_problems(report, connections) + \
            server.quit(connections, report["bytes_verified"])
    finally:
        server.close()
    return {"rate": report["per_second"], "p50": report["p50_ms"], "p99": report["p99_ms"],
            "cpu_us": used / report["messages"] * 1e6 if report["messages"] else float("nan"),
            "load_cores": load_used / elapsed, "verified": report["bytes_verified"],
            "errors": sum(report["errors"].values()), "failed": failed}


def run_idle(target, connections, args, prefixes):
    """One fresh server of chapter TARGET holding CONNECTIONS idle connections from loadgen
    --idle: how much its memory, and its wineserver's, grew from before the first connect
    to the hold."""
    del harness.RUNS[:]
    prefixes["server"].restart()  # its memory from earlier sockets stays otherwise
    server = ChapterServer(target, ["--port", "0", "--workers", str(WORKERS), "--max-clients",
                                    str(connections)], connections)
    wine = prefixes["server"].wineserver
    try:
        before = (harness.resident_kib(server.process.pid), harness.resident_kib(wine) if wine else None)
        load = ["--idle", "--connections", str(connections), "--size", "1", "--seconds",
                "%d" % args.hold] + (["--framed"] if target.has("messages") else [])
        loadgen = Loadgen(prefixes["load"], load, server.port)
        loadgen.held.wait(LOADGEN_SLACK + connections / 100)
        # Read near the end of the hold, once the connections have been idle for seconds:
        # a chapter that lends a busy connection a buffer takes it back only once it is quiet.
        time.sleep(max(0.5, args.hold - 1))
        during = (harness.resident_kib(server.process.pid), harness.resident_kib(wine) if wine else None)
        report = loadgen.finish(args.hold + LOADGEN_SLACK + connections / 100)
        failed = loadgen_problems(report, connections)
        if report["held"] != connections:
            failed.append("loadgen held %d of %d connections" % (report["held"], connections))
        failed += server.quit(connections, report["bytes_verified"])
    finally:
        server.close()

    def per_connection(i):
        if before[i] is None or during[i] is None:
            return float("nan")
        return (during[i] - before[i]) / connections

    return {"held": report["held"], "server_kib": per_connection(0),
            "wineserver_kib": per_connection(1), "verified": report["bytes_verified"],
            "errors": sum(report["errors"].values()), "failed": failed}


def _sleep_until(when):
    delay = when - time.monotonic()
    if delay > 0:
        time.sleep(delay)


# --- chat runs -------------------------------------------------------------------------
# The chat chapter's --max-queued: the largest the option takes. Each sayer has one line
# in flight, so a member that keeps up has about one line per sayer in its queue; a cap
# this far above that means a member that reads is never dropped as too slow, and one
# that is dropped is an error.
CHAT_MAX_QUEUED = 64 << 20
TOO_SLOW = "too slow"
STOPPING = "server stopping"
# The trivial source's sockets: small buffers, so a hundred full ones stay a few MiB.
SOURCE_BUFFERS = 256 * 1024
# The lines a read takes in the capacity run, before a chat run has said how many its
# reads took (chapter 12 gathers up to 16 queued messages into one WSASend).
DEFAULT_FRAMES_PER_READ = 16
START_DELAY = 0.2


def _sum(answers, key):
    return sum(a[key] for a in answers)


def _window(args):
    start_at = time.monotonic() + START_DELAY
    return start_at, start_at + args.warmup, start_at + args.warmup + args.seconds


def _latencies(answers):
    ordered = sorted(x for a in answers for x in a["latencies"])
    if not ordered:
        return float("nan"), float("nan")
    pick = [ordered[max(0, math.ceil(f * len(ordered)) - 1)] * 1000 for f in (0.50, 0.99)]
    return pick[0], pick[1]


def run_chat(chapter, load, args, prefixes):
    """One fresh server of a chat CHAPTER: the members connect and join, say lines in
    ping-pong through the window and their last lines after it; then "quit", with every
    member still in the room, and the server must exit 0, having sent what they got."""
    del harness.RUNS[:]
    members, size = args.members, args.line_size
    server_args = SERVER_ARGS + ["--max-queued", str(CHAT_MAX_QUEUED)] + \
        chapter.message_options(size)
    with start_chapter(chapter, server_args, members) as server:
        load.connect(server.port, members)
        server.wait_until(lambda lines: sum(1 for l in lines if CONNECTED.match(l)) >= members,
                          timeout=SERVER_LINES_SECONDS, what="%d connected lines" % members)
        joined = load.chat_join(members, size)
        pids = [server.process.pid, prefixes["server"].wineserver]
        before = cpu_seconds(pids)
        answers = load.chat_drive(*_window(args))
        used = cpu_seconds(pids) - before
        # Quit with everyone still in the room: no notices go out at quit, so what the
        # server counts as sent is exactly what the members have read.
        code = server.quit()
        closed = load.chat_close(CHAT_DRAIN_SECONDS)
        phases = joined + answers + closed
        failed, reasons = check_end(server, code, members, _sum(phases, "received"))
    dropped = sum(times for reason, times in reasons.items() if reason.startswith(TOO_SLOW))
    failed += ["%d members disconnected with: %s" % (times, reason)
               for reason, times in sorted(reasons.items()) if reason != STOPPING]
    p50, p99 = _latencies(answers)
    reads = _sum(answers, "reads")
    delivered = _sum(answers, "delivered")
    return {"rate": _sum(answers, "deliveries") / args.seconds,
            "lines": _sum(answers, "trips") / args.seconds, "p50": p50, "p99": p99,
            "cpu_us": used / delivered * 1e6 if delivered else float("nan"),
            "verified": _sum(phases, "delivered"), "dropped": dropped,
            "frames_per_read": delivered / reads if reads else float("nan"),
            "errors": _sum(phases, "errors"),
            "failed": failed + [p for a in phases for p in a["problems"]]}


def run_capacity(source, load, args, frames_per_read):
    """The chat members reading and checking lines from the trivial source, each read at
    most FRAMES_PER_READ lines: how many deliveries a second they can take."""
    members, size = args.members, args.line_size
    per_read = DEFAULT_FRAMES_PER_READ if math.isnan(frames_per_read) else \
        max(1, int(math.ceil(frames_per_read)))
    recv_size = per_read * len(_line_frame(CHAT_NAME % 0, 0, size))
    source.start(members, size, SOURCE_BUFFERS)
    load.connect(source.port, members, buffers=SOURCE_BUFFERS)
    _, measure_from, stop_at = _window(args)
    answers = load.chat_read(members, size, measure_from, stop_at, recv_size)
    source.finish()
    return {"rate": _sum(answers, "deliveries") / args.seconds, "lines": float("nan"),
            "p50": float("nan"), "p99": float("nan"), "cpu_us": float("nan"),
            "verified": _sum(answers, "delivered"), "dropped": 0,
            "errors": _sum(answers, "errors"),
            "failed": [p for a in answers for p in a["problems"]]}


# --- the report ------------------------------------------------------------------------
def _size_name(size):
    return "%d KiB" % (size // 1024) if size >= 1024 and size % 1024 == 0 else "%d B" % size


def _median(values):
    values = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(values) if values else float("nan")


def _spread(values, form):
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return "-"
    return "%s (%s–%s)" % (form(statistics.median(values)), form(min(values)), form(max(values)))


def _ratios(mine, base, key):
    """The median of the per-repetition ratios of KEY, MINE over BASE."""
    return _median([m[key] / b[key] for m, b in zip(mine, base)
                    if b[key] and not math.isnan(b[key]) and not math.isnan(m[key])])


def _rate(value):
    return "{:,.0f}".format(value)


def _ms(value):
    return "%.2f" % value


def _x(value):
    return "-" if math.isnan(value) else "%.2f×" % value


def _kib(value):
    return "%.2f" % value


def echo_table(key, runs, names, base, out):
    """One load's rows: msgs/s, ratio to BASE and to native, latency, CPU per message."""
    print("\n**%s** ping-pong (messages per second; each figure the median of the "
          "repetitions, min–max)\n" % key, file=out)
    print("| server | msgs/s | vs %s | vs native | p50 ms | p99 ms | CPU µs/msg | "
          "loadgen cores |" % base[:2], file=out)
    print("|---|---|---|---|---|---|---|---|", file=out)
    for name in names:
        mine = runs[name]
        print("| %s | %s | %s | %s | %s | %s | %s | %.2f |" % (
            name, _spread([r["rate"] for r in mine], _rate),
            _x(_ratios(mine, runs[base], "rate")) if name != "native" else "-",
            _x(_ratios(mine, runs["native"], "rate")),
            _spread([r["p50"] for r in mine], _ms), _spread([r["p99"] for r in mine], _ms),
            _spread([r["cpu_us"] for r in mine], lambda v: "%.0f" % v),
            _median([r["load_cores"] for r in mine])), file=out)
    best = max(_median([r["rate"] for r in runs[n]]) for n in names if n != "native")
    headroom = _median([r["rate"] for r in runs["native"]]) / best if best else float("inf")
    verdict = "latency-bound, one message in flight" if key.startswith("1 x") else \
        "not the limit" if headroom >= HEADROOM else "MAY BE THE LIMIT: chapter figures are a floor"
    print("\nloadgen against the native reference: %.1f× the fastest chapter (%s)" % (
        headroom, verdict), file=out)


def chat_table(runs, names, args, out):
    members, size = args.members, args.line_size
    print("\n**chat**: %d members, %d-byte lines in ping-pong (deliveries = MESSAGEs all "
          "members received; one line said is %d deliveries)\n" % (members, size, members),
          file=out)
    base = names[0]
    print("| server | deliveries/s | vs %s | lines/s | p50 ms | p99 ms | CPU µs/delivery | "
          "dropped |" % base[:2], file=out)
    print("|---|---|---|---|---|---|---|---|", file=out)
    for name in names + ["capacity"]:
        mine = runs[name]
        label = "client capacity (trivial source)" if name == "capacity" else name
        print("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
            label, _spread([r["rate"] for r in mine], _rate),
            _x(_ratios(mine, runs[base], "rate")) if name != "capacity" else "-",
            _spread([r["lines"] for r in mine], _rate),
            _spread([r["p50"] for r in mine], _ms), _spread([r["p99"] for r in mine], _ms),
            _spread([r["cpu_us"] for r in mine], lambda v: "%.1f" % v),
            sum(r["dropped"] for r in mine)), file=out)
    best = max(_median([r["rate"] for r in runs[n]]) for n in names)
    cap = _median([r["rate"] for r in runs["capacity"]])
    print("\nthe chat members checked %.1f× the fastest chapter's deliveries from the trivial "
          "source (%s)" % (cap / best if best else float("inf"),
                           "not the limit" if cap >= HEADROOM * best else "MAY BE THE LIMIT"),
          file=out)


def idle_table(key, runs, names, base, out):
    print("\n**%s** (growth of VmRSS from before the first connect to the hold, per "
          "connection)\n" % key, file=out)
    print("| server | held | server KiB/conn | vs %s | wineserver KiB/conn |" % base[:2],
          file=out)
    print("|---|---|---|---|---|", file=out)
    for name in names:
        mine = runs[name]
        print("| %s | %d | %s | %s | %s |" % (
            name, min(r["held"] for r in mine), _spread([r["server_kib"] for r in mine], _kib),
            _x(_ratios(mine, runs[base], "server_kib")),
            _spread([r["wineserver_kib"] for r in mine], _kib)), file=out)


def write_chart(results, echo_keys, names, directory):
    """bench.svg: msgs/s of each chapter under each echo load (gnuplot), if gnuplot is
    there; returns the path, or None."""
    if not echo_keys or not shutil.which("gnuplot"):
        return None
    data = os.path.join(directory, "bench.dat")
    chart = os.path.join(directory, "bench.svg")
    with open(data, "w") as f:
        f.write("server\t%s\n" % "\t".join('"%s"' % k for k in echo_keys))
        for name in names:
            f.write("%s\t%s\n" % (name, "\t".join(
                "%.1f" % _median([r["rate"] for r in results[k][name]]) for k in echo_keys)))
    script = "\n".join([
        "set terminal svg size 960,480 dynamic enhanced font 'sans,12' background '#ffffff'",
        "set output '%s'" % chart,
        "set title 'Echo ping-pong under Wine: messages per second (median)'",
        "set style data histograms", "set style histogram clustered gap 1",
        "set style fill solid 0.85 border -1", "set boxwidth 0.9",
        "set key outside top center horizontal", "set grid ytics", "set yrange [0:*]",
        # Room above the tallest bar, which autoscaling would put on the border.
        "set offsets 0, 0, graph 0.08, 0", "set ylabel 'round trips per second'",
        "set xtics nomirror rotate by -20",
        "plot for [i=2:%d] '%s' using i:xtic(1) title columnheader(i)" % (
            len(echo_keys) + 1, data), ""])
    done = subprocess.run(["gnuplot"], input=script.encode(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=60)
    if done.returncode != 0:
        print("bench.py: gnuplot failed: %d %s" % (done.returncode, done.stderr.decode()[:300]),
              file=sys.stderr)
        return None
    return chart


# --- command line ----------------------------------------------------------------------
def _positive(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a whole number above 0")
    return value


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="bench.py", description="The echo chapters side by side under the same loads "
        "(make bench): ping-pong, chat broadcasts, idle connections.")
    parser.add_argument("--only", nargs="+", choices=("echo", "chat", "idle"),
                        default=["echo", "chat", "idle"], help="the kinds of load to run")
    parser.add_argument("--chapters", nargs="+", default=None,
                        help="echo chapters to run, the first is the base of the ratios "
                             "(default: every echo chapter from 08 on)")
    # The whole numbers above 0; None: the default of --quick or of the full run.
    for name, default, text in [
            ("--repeat", None, "repetitions of the interleaved round (default 3)"),
            ("--seconds", None, "measured seconds per echo and chat run (default 2)"),
            ("--members", 100, "chat members, at most 250 (default 100)"),
            ("--line-size", 64, "bytes of each MESSAGE's payload, 32 to 65536 (default 64)"),
            ("--idle-connections", None, "connections the idle load holds, at most 10000 "
                                         "(default 10000)"),
            ("--idle-repeat", 1, "repetitions of the idle load (default 1: memory is not "
                                 "noisy)"),
            ("--hold", 10, "seconds the idle connections are held; the memory is read a second before the end (default 10)"),
            ("--client-processes", os.cpu_count() or 2, "processes that drive the chat "
                                                        "members (default: one per core)")]:
        parser.add_argument(name, type=_positive, default=default, help=text)
    parser.add_argument("--warmup", type=int, default=None,
                        help="seconds of load before the measured ones (default 1)")
    parser.add_argument("--out", default=OUT_DIR,
                        help="where bench.md, bench.json and bench.svg go (default build/bench)")
    parser.add_argument("--quick", action="store_true",
                        help="seconds, for the smoke tests: one repetition of 1 s, 100 x 64 B "
                             "only, 20 chat members, 200 idle connections")
    args = parser.parse_args(argv)
    quick = {"repeat": 1, "seconds": 1, "warmup": 0, "idle_connections": 200}
    full = {"repeat": 3, "seconds": 2, "warmup": 1, "idle_connections": 10000}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.quick and args.members == 100:
        args.members = 20
    args.echo_loads = [(64, 100)] if args.quick else [(64, 1), (64, 100), (4096, 100)]
    if args.members > 250:
        parser.error("--members: at most 250, since the servers have 256 slots")
    if not 32 <= args.line_size <= 65536:
        parser.error("--line-size: 32 to 65536 bytes")
    if args.idle_connections > 10000:
        parser.error("--idle-connections: at most 10000 (the chapters' --max-clients)")
    if args.warmup < 0:
        parser.error("--warmup: not below 0")
    return args


def find_chapters(names, feature):
    """The chapters with FEATURE from 08 on, or those of NAMES (numbers or folder names)."""
    every = [c for c in chapters.ALL if c.has(feature) and c.number >= FIRST_CHAPTER]
    if names is None:
        found = every
    else:
        found = [c for c in chapters.ALL for n in names
                 if c.name == n or c.name[:2] == n.zfill(2)]
        missing = [n for n in names if not any(c.name == n or c.name[:2] == n.zfill(2)
                                               for c in found)]
        if missing:
            raise SystemExit("bench.py: no chapter %s; there are %s" % (
                " ".join(missing), " ".join(c.name for c in chapters.ALL)))
    for chapter in found:
        harness.require_exe(chapter.exe)
    return found


# --- main ------------------------------------------------------------------------------
def plan(args, echo_list, chat_list):
    """Every run, in order: (load kind, table key, target), interleaved per repetition."""
    runs = []
    for repetition in range(1, args.repeat + 1):
        if "echo" in args.only:
            for size, connections in args.echo_loads:
                key = "%d x %s" % (connections, _size_name(size))
                runs += [("echo", key, t, repetition, (size, connections))
                         for t in echo_list + ["native"]]
        if "chat" in args.only and chat_list:
            runs += [("chat", "chat", t, repetition, None) for t in chat_list + ["capacity"]]
        if "idle" in args.only and repetition <= args.idle_repeat:
            key = "%d idle connections" % args.idle_connections
            # No native row: a Linux socket's memory is the kernel's, not in any VmRSS.
            runs += [("idle", key, t, repetition, None) for t in echo_list]
    return runs


def progress(done, total, kind, key, name, repetition, result, started):
    if kind == "idle":
        what = "held %d, server %.2f KiB/conn, wineserver %.2f KiB/conn" % (
            result["held"], result["server_kib"], result["wineserver_kib"])
    else:
        what = "%s %s/s, p99 %s ms, CPU %s us/msg" % (
            _rate(result["rate"]), "deliveries" if kind == "chat" else "msgs",
            "-" if math.isnan(result["p99"]) else _ms(result["p99"]),
            "-" if math.isnan(result["cpu_us"]) else "%.0f" % result["cpu_us"])
    print("[%3d/%d] %4.0f s  rep %d  %-20s %-24s %s; %d errors%s" % (
        done, total, time.monotonic() - started, repetition, key, name, what,
        result["errors"], "".join("; " + f for f in result["failed"][:3])),
        file=sys.stderr, flush=True)


def run_all(args, runs, load, source, prefixes, results):
    started = time.monotonic()
    per_read = float("nan")
    for done, (kind, key, target, repetition, load_shape) in enumerate(runs, 1):
        name = target if isinstance(target, str) else target.name
        if kind == "echo":
            result = run_echo(target, load_shape[0], load_shape[1], args, prefixes)
        elif kind == "idle":
            result = run_idle(target, args.idle_connections, args, prefixes)
        elif target == "capacity":
            result = run_capacity(source, load, args, per_read)
        else:
            result = run_chat(target, load, args, prefixes)
            per_read = result["frames_per_read"]
        results.setdefault(key, {}).setdefault(name, []).append(result)
        progress(done, len(runs), kind, key, name, repetition, result, started)
    return time.monotonic() - started


def report(args, results, echo_list, chat_list, seconds, out):
    names = [c.name for c in echo_list] + ["native"]
    base = echo_list[0].name
    print("# make bench\n", file=out)
    print("%d repetition%s interleaved; echo and chat runs: %d s measured after %d s of "
          "warm-up; servers: %s; loadgen: tools/loadgen.exe in its own Wine prefix; native: "
          "tools/epoll-echo (%d threads); %d cores, shared (%.0f s in all). CPU µs/msg: the "
          "server process plus its wineserver, over the loadgen run. vs: median of the "
          "per-repetition ratios." % (args.repeat, "" if args.repeat == 1 else "s",
                                      args.seconds, args.warmup, " ".join(SERVER_ARGS),
                                      WORKERS, os.cpu_count(), seconds), file=out)
    echo_keys = [k for k in results if results[k] and k[0].isdigit() and "idle" not in k]
    for key in echo_keys:
        echo_table(key, results[key], names, base, out)
    if "chat" in results:
        chat_table(results["chat"], [c.name for c in chat_list], args, out)
    for key in [k for k in results if "idle" in k]:
        idle_table(key, results[key], names[:-1], base, out)
    return echo_keys


def main(argv):
    if not sys.platform.startswith("linux") or not os.path.isdir("/proc"):
        print("bench.py: runs on Linux only (/proc, the native reference)", file=sys.stderr)
        return 2
    args = parse_args(argv)
    try:
        echo_list = find_chapters(args.chapters, "echo")
        chat_list = [c for c in find_chapters(None, "chat")
                     if args.chapters is None or c in echo_list]
        harness.require_exe(LOADGEN)
        if not os.access(NATIVE_ECHO, os.X_OK):
            raise AssertionError("%s is missing: run `make bench`, which builds it" % NATIVE_ECHO)
    except AssertionError as e:
        print("bench.py: %s" % e, file=sys.stderr)
        return 2
    limit = raise_file_limit()
    server_prefix = harness.wine_prefix()
    prefixes = {"server": Prefix(server_prefix),
                "load": Prefix(os.environ.get("LOAD_WINEPREFIX") or
                               os.path.realpath(server_prefix) + "-load")}
    runs = plan(args, echo_list, chat_list)
    print("bench: %d runs; chapters in %s, loadgen in %s; open-file limit %d" % (
        len(runs), prefixes["server"].path, prefixes["load"].path, limit), file=sys.stderr)
    # Forked now, while this process has no thread: the harness starts reader threads.
    load = Load(args.client_processes) if "chat" in args.only else None
    source = ChatSource() if "chat" in args.only else None
    results = {}
    code = 0
    try:
        for prefix in prefixes.values():
            prefix.start()
        seconds = run_all(args, runs, load, source, prefixes, results)
    except (RuntimeError, AssertionError) as e:
        print("bench.py: stopped: %s" % e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench.py: interrupted", file=sys.stderr)
        return 130
    finally:
        for closer in (load, source):
            if closer is not None:
                closer.close()
        for prefix in prefixes.values():
            prefix.stop()
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench.md"), "w") as md:
        for out in (sys.stdout, md):
            echo_keys = report(args, results, echo_list, chat_list, seconds, out)
    chart = write_chart(results, echo_keys, [c.name for c in echo_list], args.out)
    with open(os.path.join(args.out, "bench.json"), "w") as f:
        json.dump({"args": {k: v for k, v in vars(args).items()}, "results": results}, f,
                  indent=1, default=str)
    every = [r for runs_ in results.values() for rs in runs_.values() for r in rs]
    errors = sum(r["errors"] for r in every)
    failed = [f for r in every for f in r["failed"]]
    print("\nerrors: %d (every echoed byte and every MESSAGE compared: %s bytes and "
          "deliveries verified); problems: %d" % (
              errors, "{:,}".format(sum(r["verified"] for r in every)), len(failed)))
    for line in failed[:20]:
        print("  problem: %s" % line)
    print("wrote %s" % ", ".join(os.path.join(args.out, n) for n in ("bench.md", "bench.json")
                                  + (("bench.svg",) if chart else ())))
    if errors or failed:
        code = 1
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
