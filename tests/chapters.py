"""Which behaviours each chapter has: the one table the behavioural tests read.

Every chapter is a complete program, and later chapters keep what earlier ones built,
so one behavioural test runs against every chapter that has its behaviour (the way
Crafting Interpreters tests each chapter's interpreter). A test asks for chapters by
feature, e.g. ``chapters_with("pool")``, and gets one parametrized case per chapter,
with ids such as ``03-accept``.

To add a chapter: add its number to FEATURES below with everything it can do. A
chapter folder with no row here fails test_chapter_table.py, so none is silently
untested; a row whose folder does not exist yet is simply skipped over (not a test).

Features:
  winsock      prints what WSAStartup reported and exits by itself (01 only)
  version      prints "WSAStartup: asked for 2.2, got 2.2"
  listen       prints "listening on ADDR:PORT" and runs until told to stop
               (a "quit" line, end of standard input, Ctrl+C / Ctrl+Break)
  accept       accepts clients: prints "client K connected from ADDR:PORT ..."
  pool         a fixed pool of --max-clients slots; refuses clients when it is full
  iocp         uses an I/O completion port: prints "completion port <handle> created" and
               "client K associated with port <handle>, completion key <key>"
  workers      worker threads (--workers N): prints "N worker threads waiting on the
               port; each receive takes up to B bytes"
  receive      prints what clients send: "client K sent N bytes: <escaped bytes>"
  echo         sends back what clients send (and prints nothing for it); for a chapter
               with "messages", whole messages: an echo message comes back as it was
               sent, header and payload, so a stream of them comes back byte for byte.
               A test sends chapter.message(data) and expects the same bytes back
  disconnect   notices clients that disconnect and frees their slots for new ones:
               "client K disconnected: <reason> (<N> live)"
  teardown     orderly shutdown with I/O still pending: closes the clients still
               connected, then prints "connections served: N, bytes echoed: B"
  acceptex     accepts with AcceptEx on the workers (--accepts N outstanding): prints
               "N accepts posted on the listener"; no accepter thread
  sendqueue    receives while it sends: each client's sends go through a queue capped
               by --max-queued BYTES, over which its receives pause (back-pressure)
  messages     speaks in messages (a 5-byte header: payload length, 4 bytes big-endian,
               and a type byte; then the payload): an echo message comes back to its
               sender; a length over --max-message or an unknown type ends that client
  chat         a chat room over those messages: JOIN NAME, SAY TEXT and LEAVE from
               clients; MESSAGE "NAME: TEXT" to every member (the sayer too), NOTICE
               "NAME joined" / "NAME left" / "NAME left: REASON", ERROR for a refused
               request (the connection stays open); a member whose queue would pass
               --max-queued is dropped as too slow, the others never wait for it
  timeouts     closes idle clients (--idle-timeout S): one that has neither received
               bytes nor completed a send for S seconds is closed gracefully, "idle for
               S s"; one that has begun a message and not finished it within S seconds
               is reset, "a message not finished within S s" (a chat member's NOTICE
               says "NAME left: idle for S s"); prints "idle timeout S s, checked every
               P ms"; --keepalive S sets TCP keep-alive on each accepted socket
  batch        a worker takes up to --batch N completions per wait
               (GetQueuedCompletionStatusEx)
  scale        built to hold many connections cheaply: no completion packet for an I/O
               that succeeds at once, a zero-byte receive so an idle client holds no
               receive buffer, TCP_NODELAY; the lines per connection and disconnection
               only with --verbose (harness.Server passes it unless a test asks for the
               quiet server)
  threadpool   runs on a thread pool of its own, with no completion port or worker
               threads of its own: prints "thread pool of N threads; each receive takes
               up to B bytes" with --workers N (the pool's size, fixed), else "thread
               pool sized by the system; each receive takes up to B bytes"

OPTIONS lists the command-line options each chapter accepts; every chapter accepts
--help, and every other option must be refused with usage and exit code 2.
"""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHAPTERS_DIR = os.path.join(ROOT, "chapters")
# Where the programs are: build/ after `make`; CMake's ctest names its own build folder.
BUILD_DIR = os.environ.get("IOCP_BUILD_DIR") or os.path.join(ROOT, "build")

_SERVER = {"version", "listen"}
_ACCEPT = _SERVER | {"accept", "pool"}
_IOCP = _ACCEPT | {"iocp"}
_WORKERS = _IOCP | {"workers"}

# Chapter number -> features.
FEATURES = {
    1: {"winsock", "version"},
    2: _SERVER,
    3: _ACCEPT,
    4: _IOCP,  # associates clients with the port; no workers, nothing read yet
    5: _WORKERS | {"receive"},
    6: _WORKERS | {"echo"},  # echoes and no longer prints what arrives
    7: _WORKERS | {"echo", "disconnect"},
    8: _WORKERS | {"echo", "disconnect", "teardown"},
    9: _WORKERS | {"echo", "disconnect", "teardown", "acceptex"},
    10: _WORKERS | {"echo", "disconnect", "teardown", "acceptex", "sendqueue"},
    11: _WORKERS | {"echo", "disconnect", "teardown", "acceptex", "sendqueue", "messages"},
    12: _WORKERS | {"echo", "disconnect", "teardown", "acceptex", "sendqueue", "messages",
                    "chat"},
    13: _WORKERS | {"echo", "disconnect", "teardown", "acceptex", "sendqueue", "messages",
                    "chat", "timeouts"},
    14: _WORKERS | {"echo", "disconnect", "teardown", "acceptex", "sendqueue", "messages",
                    "chat", "timeouts", "batch", "scale"},
    # 14's server on the system thread pool: no port or workers of its own, so neither
    # "iocp" nor "workers" (their lines name the port), nor "batch" (the pool dequeues).
    15: _ACCEPT | {"echo", "disconnect", "teardown", "acceptex", "sendqueue", "messages", "chat",
                   "timeouts", "scale", "threadpool"},
}

_PORT_BIND = {"--port", "--bind"}
# Chapter number -> the options it accepts (besides --help).
OPTIONS = {
    1: set(),
    2: _PORT_BIND,
    3: _PORT_BIND | {"--max-clients"},
    4: _PORT_BIND | {"--max-clients"},
    5: _PORT_BIND | {"--max-clients", "--workers"},
    6: _PORT_BIND | {"--max-clients", "--workers"},
    7: _PORT_BIND | {"--max-clients", "--workers"},
    8: _PORT_BIND | {"--max-clients", "--workers"},
    9: _PORT_BIND | {"--max-clients", "--workers", "--accepts"},
    10: _PORT_BIND | {"--max-clients", "--workers", "--accepts", "--max-queued"},
    11: _PORT_BIND | {"--max-clients", "--workers", "--accepts", "--max-queued", "--max-message"},
    12: _PORT_BIND | {"--max-clients", "--workers", "--accepts", "--max-queued", "--max-message"},
    13: _PORT_BIND | {"--max-clients", "--workers", "--accepts", "--max-queued", "--max-message",
                      "--idle-timeout", "--keepalive"},
    14: _PORT_BIND | {"--max-clients", "--workers", "--accepts", "--max-queued", "--max-message",
                      "--idle-timeout", "--keepalive", "--batch", "--verbose"},
    # --workers fixes the pool's size; --batch has no meaning without a loop of our own.
    15: _PORT_BIND | {"--max-clients", "--workers", "--accepts", "--max-queued", "--max-message",
                      "--idle-timeout", "--keepalive", "--verbose"},
}

ALL_OPTIONS = ("--port", "--bind", "--max-clients", "--workers", "--accepts", "--max-queued",
               "--max-message", "--idle-timeout", "--keepalive", "--batch", "--verbose")

_NAME = re.compile(r"^(\d\d)-[A-Za-z0-9-]+$")


class Chapter:
    """One chapter folder, e.g. chapters/03-accept, and its program build/03-accept.exe."""

    def __init__(self, name):
        self.name = name
        self.number = int(name[:2])
        self.dir = os.path.join(CHAPTERS_DIR, name)
        self.exe = os.path.join(BUILD_DIR, name + ".exe")
        self.features = FEATURES.get(self.number)
        self.options = OPTIONS.get(self.number)

    def has(self, feature):
        return self.features is not None and feature in self.features

    def accepts(self, option):
        return self.options is not None and option in self.options

    def message(self, data):
        """What a client sends this chapter to have DATA echoed, and so also what comes
        back: DATA itself, or, for a chapter with "messages", one echo message with DATA
        as its payload (harness.echo_message: the 5-byte header, then DATA)."""
        if not self.has("messages"):
            return data
        import harness  # here, not at the top: harness imports this module
        return harness.echo_message(data)

    def message_options(self, longest):
        """The options that let this chapter echo a message of LONGEST payload bytes:
        ["--max-message", LONGEST] for a chapter with "messages" when that is over its
        default, otherwise none."""
        import harness
        if not self.has("messages") or longest <= harness.DEFAULT_MAX_MESSAGE:
            return []
        return ["--max-message", str(longest)]

    def summary(self, connections, sent):
        """The last line a chapter with "teardown" prints at a clean exit: its connections
        and the bytes it sent, "echoed" until a chapter with "chat" also broadcasts."""
        return "connections served: %d, bytes %s: %d" % (
            connections, "sent" if self.has("chat") else "echoed", sent)

    def __repr__(self):
        return self.name


def discover():
    """Every chapters/NN-topic/ folder, in order."""
    if not os.path.isdir(CHAPTERS_DIR):
        return []
    names = sorted(n for n in os.listdir(CHAPTERS_DIR)
                   if _NAME.match(n) and os.path.isdir(os.path.join(CHAPTERS_DIR, n)))
    return [Chapter(n) for n in names]


ALL = discover()


def chapters_with(*features):
    """The chapters that have every one of FEATURES."""
    return [c for c in ALL if all(c.has(f) for f in features)]


def ids(chapters):
    return [c.name for c in chapters]
