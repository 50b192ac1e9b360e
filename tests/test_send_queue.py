"""A chapter with a send queue receives while it sends, and caps what it queues: once a
client's queue holds --max-queued bytes its next receive waits until the queue has
drained to half of that. So:

- twenty clients that send without ever reading grow the server's memory by about the
  cap plus one receive each, not by what they try to send (16 MiB each), and are held
  back: none of them gets all 16 MiB in;
- while those twenty are stuck, another client's echoes stay exact and prompt;
- "quit" with them connected exits 0 within a few seconds and prints the summary;
- one client that writes 1000 messages one after another, without waiting for any echo,
  gets back exactly their concatenation;
- a client that sends 4 MiB while reading slowly, through a small cap, gets every byte
  back in order: a paused receive is posted again once the queue drains.

For a chapter with messages, everything a client sends is echo messages
(chapter.message): the same stream must come back byte for byte, headers and all.

A 1 MiB message echoing exactly is test_echo.py's test_echoes_random_binary_data, run
for every echo chapter (these too), so it is not repeated here.

Memory is the server process's resident set: VmRSS from /proc/PID/status under Wine,
where GetProcessMemoryInfo reports 0 (Server.process is the Wine process of the program
itself: scripts/wine.sh execs it); on Windows, the process's private bytes from
GetProcessMemoryInfo.
"""

import re
import socket
import threading
import time

import pytest

import chapters
import harness
from harness import connect, echo, random_source

QUEUERS = chapters.chapters_with("sendqueue")
IDS = chapters.ids(QUEUERS)

STUCK = 20           # clients that send without reading
SLOTS = 32
CAP = 65536          # --max-queued for the clients that never read
TRY_TO_SEND = 16 << 20  # what each of them tries to send
# Small client buffers, so that the connections fill with less data.
CLIENT_BUFFER = 4096
# What they send, over and over: one echo message of about 4 KiB (raw bytes for a chapter
# without messages); sixteen of them, about 64 KiB, go to each send call.
UNREAD = b"unread " * 585
UNITS_PER_SEND = 16
STALL = 1.0          # no client has taken a byte for this long: every connection is full
FILL_TIMEOUT = 30.0  # only ends a fill that keeps going; the bound below decides
# What Wine and the C runtime may add on top of the queues while twenty connections fill
# and stall: heap the allocator keeps after chunks are freed, Wine's state for each
# socket and each pending I/O, pages of code and data first touched on these paths.
# Measured under Wine 8 with a 64 KiB cap: 1.3-1.5 MiB in all, about the queues alone
# (20 x 68 KiB = 1.3 MiB); with queues that are not capped (chapter 10 changed so), 284
# MiB: 20 x 16 MiB sent, 40 MB of it echoed, the rest queued. 16 MiB is ten times what
# was measured, room for another allocator or Wine version, and still far below what
# queues without a cap take.
ALLOWANCE = 16 << 20

ECHO_BOUND = 5.0     # per control echo: catches a stalled server, does not measure speed
QUIT_BOUND = 5.0     # for "quit" with stuck clients; the program's own drain waits 10 s

PIPELINED = 1000     # messages written back to back before anything is read
MESSAGE_SIZES = (1, 8192)
PIPELINE_CAP = 16384  # --max-queued for them: the queue fills while nothing is read
SLOW_CAP = 8192      # --max-queued for the slow reader: it pauses the receive often
SLOW_TOTAL = 4 << 20
SLOW_READ = 4096     # bytes per read of the slow reader
SLOW_PAUSE = 0.001   # seconds between its reads
HELD_UP = 0.5        # a sender that sent less than HELD_UP_BYTES in this long is held up
HELD_UP_BYTES = 256 << 10
SEND_PIECE = 8192    # the slow reader's sender sends this much at a time (one message)
HELD_UP_TIMEOUT = 15.0  # only ends the wait for a sender that is never held up
READ_TIMEOUT = 120.0  # a whole read back; each read has its own CLIENT_TIMEOUT

CONNECTED = re.compile(r"^client (?P<id>\d+) connected from ")
DISCONNECTED = re.compile(r"^client (?P<id>\d+) disconnected: ")
RECEIVE_SIZE = r"each receive takes up to (?P<size>\d+) bytes$"
SUMMARY = harness.SUMMARY
MIB = float(1 << 20)
WARM_UP = b"warm up\n"  # the one echo before the server's memory is first read


# --- memory of the server process ------------------------------------------------------
def memory(server):
    """The server's memory in bytes: VmRSS under Wine, private bytes on Windows."""
    if harness.WINDOWS:
        return _private_bytes(server.process.pid)
    with open("/proc/%d/status" % server.process.pid) as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024  # in kB
    raise AssertionError("no VmRSS line in /proc/%d/status" % server.process.pid)


def _private_bytes(pid):
    import ctypes
    from ctypes import wintypes

    class Counters(ctypes.Structure):
        _fields_ = [("cb", wintypes.DWORD), ("PageFaultCount", wintypes.DWORD)] + [
            (name, ctypes.c_size_t) for name in (
                "PeakWorkingSetSize", "WorkingSetSize", "QuotaPeakPagedPoolUsage",
                "QuotaPagedPoolUsage", "QuotaPeakNonPagedPoolUsage", "QuotaNonPagedPoolUsage",
                "PagefileUsage", "PeakPagefileUsage")]

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    kernel32.OpenProcess.restype = wintypes.HANDLE
    kernel32.OpenProcess.argtypes = [wintypes.DWORD, wintypes.BOOL, wintypes.DWORD]
    kernel32.K32GetProcessMemoryInfo.argtypes = [wintypes.HANDLE, ctypes.POINTER(Counters),
                                                 wintypes.DWORD]
    kernel32.CloseHandle.argtypes = [wintypes.HANDLE]
    # PROCESS_QUERY_LIMITED_INFORMATION | PROCESS_VM_READ
    handle = kernel32.OpenProcess(0x1000 | 0x0010, False, pid)
    assert handle, "OpenProcess(%d) failed: %d" % (pid, ctypes.get_last_error())
    try:
        counters = Counters()
        counters.cb = ctypes.sizeof(Counters)
        assert kernel32.K32GetProcessMemoryInfo(handle, ctypes.byref(counters),
                                                counters.cb), \
            "GetProcessMemoryInfo failed: %d" % ctypes.get_last_error()
        return counters.PagefileUsage  # private bytes: the heap the queues live in
    finally:
        kernel32.CloseHandle(handle)


# --- clients that never read -------------------------------------------------------------
def small_buffered_client(port):
    """A client with small buffers (so less data fills its connection), connected to
    127.0.0.1:PORT, with CLIENT_TIMEOUT on every call."""
    return harness.connect(port, buffers=CLIENT_BUFFER)


def stuck_client(port):
    """A small_buffered_client, non-blocking: one that will never read."""
    client = small_buffered_client(port)
    client.setblocking(False)
    return client


class Fill:
    """What fill() saw: bytes each client sent, how long it took, the server's memory
    before and at most during it, and why it stopped."""

    def __init__(self, count, base):
        self.sent = [0] * count
        self.base = base
        self.peak = base
        self.seconds = 0.0
        self.stopped = None

    @property
    def growth(self):
        return self.peak - self.base

    def describe(self):
        return ("%d clients sent %.1f MiB in %.1f s (each %d to %d bytes), stopped: %s; "
                "server memory grew by %.1f MiB" % (
                    len(self.sent), sum(self.sent) / MIB, self.seconds, min(self.sent),
                    max(self.sent), self.stopped, self.growth / MIB))


def fill(server, clients, unit, bound=None):
    """Sends UNIT after UNIT on every client (the stream stays whole across partial
    sends), never reading, until each has sent TRY_TO_SEND or none has taken a byte for
    STALL seconds (the echo fills the client's receive buffer and the server's send
    buffer, the server's queue reaches its cap, its receive pauses, and what the client
    sends fills the other direction); or until the server's memory has grown by more than
    BOUND bytes, a send fails, or FILL_TIMEOUT. Returns a Fill."""
    result = Fill(len(clients), memory(server))
    chunk = unit * UNITS_PER_SEND
    started = last_progress = time.monotonic()
    while True:
        now = time.monotonic()
        result.peak = max(result.peak, memory(server))
        if bound is not None and result.growth > bound:
            result.stopped = "memory grew past %.1f MiB" % (bound / MIB)
            break
        if all(sent >= TRY_TO_SEND for sent in result.sent):
            result.stopped = "every client sent all %d bytes" % TRY_TO_SEND
            break
        if now - last_progress >= STALL:
            result.stopped = "no client took a byte for %.1f s" % STALL
            break
        if now - started >= FILL_TIMEOUT:
            result.stopped = "still sending after %.0f s" % FILL_TIMEOUT
            break
        for number, client in enumerate(clients):
            while result.sent[number] < TRY_TO_SEND and result.stopped is None:
                try:
                    at = result.sent[number] % len(unit)  # where the stream is in a unit
                    count = client.send(chunk[at:at + TRY_TO_SEND - result.sent[number]])
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as e:  # the server closed it
                    result.stopped = "client %d could not send: %r" % (number + 1, e)
                    break
                result.sent[number] += count
                last_progress = time.monotonic()
        if result.stopped is not None:
            break
        time.sleep(0.05)
    result.seconds = time.monotonic() - started
    return result


def connected_count(server, expected):
    server.wait_until(lambda lines: sum(1 for l in lines if CONNECTED.match(l)) >= expected,
                      what="%d connected lines" % expected)


def memory_bound(chapter, receive_size, unit):
    """What the server's memory may grow by with STUCK clients that never read and send
    UNIT after UNIT: for each, the cap and one receive past it; with messages, also one
    message past it and the inbox (at most a message and a receive, in a buffer up to
    twice that); and ALLOWANCE."""
    per_client = CAP + receive_size
    if chapter.has("messages"):
        per_client += len(unit) + 2 * (len(unit) + receive_size)
    return STUCK * per_client + ALLOWANCE


def start_with_stuck_clients(start_server, chapter):
    """A server with --max-queued CAP and STUCK clients filled by fill(), which stops
    early once memory has grown past memory_bound(): a server that does not cap its
    queues would otherwise take them all in, 320 MiB in some 20 s. Returns (server,
    clients, the Fill, the memory bound). The server's memory is first read after one
    echo (so what a first connection loads is in it already) and once the twenty have
    connected: what grows from there is what they send."""
    server = start_server(chapter, "--max-clients", str(SLOTS), "--max-queued", str(CAP))
    port = server.port  # first: wait_for moves past the lines before the one it matches
    receive_size = int(server.wait_for(RECEIVE_SIZE).group("size"))
    warm = connect(port)
    try:
        warm_up = chapter.message(WARM_UP)
        try:
            back = echo(warm, warm_up)
        except socket.timeout:
            raise AssertionError("the warm-up echo did not come back within %s s" %
                                 harness.CLIENT_TIMEOUT, server.output()) from None
        assert back == warm_up, ("the warm-up echo came back as %r" % back, server.output())
    finally:
        warm.close()
    server.wait_for(r"^client 1 disconnected: ")
    clients = [stuck_client(port) for _ in range(STUCK)]
    connected_count(server, STUCK + 1)
    unit = chapter.message(UNREAD)
    bound = memory_bound(chapter, receive_size, unit)
    return server, clients, fill(server, clients, unit, bound), bound


def assert_held_back(server, filled):
    """The stuck clients are held back, not dropped: they stopped taking bytes (or were
    still trickling at FILL_TIMEOUT) with none of them getting all of TRY_TO_SEND in,
    while the server's memory stayed under memory_bound(), and the server has closed none
    of them (only the warm-up client has disconnected)."""
    got_in = sum(1 for sent in filled.sent if sent >= TRY_TO_SEND)
    assert not got_in and filled.stopped.startswith(("no client took", "still sending")), (
        "the clients that never read were not held back (%d of %d sent all %d bytes)" % (
            got_in, STUCK, TRY_TO_SEND), filled.describe(), server.output())
    gone = [line for line in server.stdout if DISCONNECTED.match(line)]
    assert len(gone) == 1, ("the server closed clients that never read", gone,
                            server.output())


def close_all(clients):
    for client in clients:
        client.close()


@pytest.mark.parametrize("chapter", QUEUERS, ids=IDS)
def test_memory_stays_bounded_with_clients_that_never_read(chapter, start_server):
    """Twenty clients that each try to send 16 MiB without reading grow the server's
    memory by no more than memory_bound(): STUCK x (cap + one receive) + ALLOWANCE, about
    17 MiB (a little more with messages), where queues without a cap would take hundreds
    of MiB; and every one of them is held back
    before its 16 MiB: what each pushed is the kernel's buffers on both sides plus the
    cap. The fill stops as soon as the bound is passed, so a server without a cap fails in
    seconds."""
    server, clients, filled, bound = start_with_stuck_clients(start_server, chapter)
    try:
        print("%s, --max-queued %d: %s" % (chapter.name, CAP, filled.describe()))
        assert filled.growth <= bound, (
            "server memory grew by %.1f MiB, over the bound of %.1f MiB (%d clients x cap "
            "%d and a receive, + %.0f MiB): the queues are not capped" % (
                filled.growth / MIB, bound / MIB, STUCK, CAP, ALLOWANCE / MIB),
            filled.describe())
        assert_held_back(server, filled)
    finally:
        close_all(clients)
    assert server.quit() == 0, server.output()


@pytest.mark.parametrize("chapter", QUEUERS, ids=IDS)
def test_other_clients_are_served_while_twenty_never_read(chapter, start_server):
    """With twenty clients stuck (their queues full, their receives paused), a new
    client's 20 echoes of random sizes 1..8 KiB come back exactly, each within ECHO_BOUND
    seconds: a bound that catches a stalled server on a loaded machine, not a speed."""
    server, clients, filled, _ = start_with_stuck_clients(start_server, chapter)
    control = None
    try:
        assert_held_back(server, filled)
        control = connect(server.port, timeout=ECHO_BOUND)
        rng = random_source()
        for number in range(20):
            message = chapter.message(rng.randbytes(rng.randint(*MESSAGE_SIZES)))
            started = time.monotonic()
            try:
                back = echo(control, message)
            except socket.timeout:
                raise AssertionError("echo %d (%d bytes): nothing came back for %s s, with "
                                     "twenty clients stuck" % (number + 1, len(message),
                                                               ECHO_BOUND)) from None
            took = time.monotonic() - started
            assert back == message, ("echo %d: %d bytes sent, %d came back%s" % (
                number + 1, len(message), len(back),
                " changed" if len(back) == len(message) else ""), server.output())
            assert took < ECHO_BOUND, ("echo %d took %.1f s" % (number + 1, took),
                                       server.output())
        assert server.running(), server.output()
    finally:
        close_all(clients + ([control] if control else []))
    assert server.quit() == 0, server.output()


@pytest.mark.parametrize("chapter", QUEUERS, ids=IDS)
def test_quit_with_twenty_clients_stuck(chapter, start_server):
    """"quit" with twenty stuck clients connected (each with a full queue, a send pending
    that cannot finish and its receive paused) exits 0 within QUIT_BOUND seconds, and the
    last line is the summary: 21 connections (the twenty and the first echo), and bytes
    echoed no more than everything sent."""
    server, clients, filled, _ = start_with_stuck_clients(start_server, chapter)
    try:
        assert_held_back(server, filled)
        started = time.monotonic()
        code = server.quit(timeout=harness.EXIT_TIMEOUT)
        took = time.monotonic() - started
        print("%s: quit with %d clients stuck: exit %s after %.2f s" % (
            chapter.name, STUCK, code, took))
        assert code == 0, ("exit code %s after %.2f s" % (code, took), server.output())
        assert took < QUIT_BOUND, ("quit took %.1f s" % took, server.output())
        summary = SUMMARY.match(server.stdout[-1]) if server.stdout else None
        assert summary, ("the summary is not the last line", server.output())
        assert int(summary.group("connections")) == STUCK + 1, server.output()
        echoed = int(summary.group("bytes"))
        warm_up = len(chapter.message(WARM_UP))
        assert warm_up <= echoed <= sum(filled.sent) + warm_up, (
            "bytes echoed %d; the clients sent %d" % (echoed, sum(filled.sent) + warm_up),
            server.output())
    finally:
        close_all(clients)


def first_difference(back, expected):
    return next((i for i in range(min(len(back), len(expected))) if back[i] != expected[i]),
                min(len(back), len(expected)))


def where(offset, sizes):
    """Which message (1-based) and offset in it a byte offset of the stream falls in."""
    for number, size in enumerate(sizes):
        if offset < size:
            return "message %d of %d, byte %d of %d" % (number + 1, len(sizes), offset, size)
        offset -= size
    return "past the end"


class Sender:
    """A thread that sends PIECES on CLIENT in order, each with its own sendall; .sent
    counts the bytes of the pieces sent in full, .failure keeps an error."""

    def __init__(self, client, pieces):
        self.sent = 0
        self.failure = None
        self._client = client
        self._pieces = pieces
        self._thread = threading.Thread(target=self._send, daemon=True)
        self._thread.start()

    def _send(self):
        try:
            for piece in self._pieces:
                self._client.sendall(piece)
                self.sent += len(piece)
        except OSError as e:
            self.failure = e

    def done(self):
        return not self._thread.is_alive()

    def held_up(self):
        """Waits until the sender has sent less than HELD_UP_BYTES in the last HELD_UP
        seconds, or has finished, within HELD_UP_TIMEOUT; returns whether it was held up.
        Held up, it still trickles: the server's kernel receive buffer, which grew while
        the server was receiving fast, keeps taking a few KiB per round trip once the
        server has paused its receive; a server that receives takes MiBs a second."""
        started = time.monotonic()
        history = [(started, self.sent)]
        while not self.done() and time.monotonic() - started < HELD_UP_TIMEOUT:
            time.sleep(0.05)
            now, sent = time.monotonic(), self.sent
            history.append((now, sent))
            while len(history) > 1 and now - history[1][0] >= HELD_UP:
                history.pop(0)
            if now - history[0][0] >= HELD_UP and sent - history[0][1] < HELD_UP_BYTES:
                return True
        return False

    def join(self):
        self._thread.join(harness.CLIENT_TIMEOUT)


def read_back(server, client, total, read_size=65536, pause=0.0):
    """Reads TOTAL bytes from CLIENT, READ_SIZE at a time with PAUSE seconds between
    reads. Raises AssertionError if nothing arrives for CLIENT_TIMEOUT seconds, if the
    server closes first, or after READ_TIMEOUT in all."""
    back = bytearray()
    started = time.monotonic()
    while len(back) < total:
        assert time.monotonic() - started < READ_TIMEOUT, (
            "%d of %d bytes back after %s s" % (len(back), total, READ_TIMEOUT),
            server.output())
        try:
            chunk = client.recv(min(read_size, total - len(back)))
        except socket.timeout:
            raise AssertionError(
                "the echo stalled: %d of %d bytes back, then nothing for %s s" % (
                    len(back), total, harness.CLIENT_TIMEOUT), server.output()) from None
        if not chunk:
            raise AssertionError("closed by the server after %d of %d bytes" % (
                len(back), total), server.output())
        back += chunk
        if pause:
            time.sleep(pause)
    return bytes(back)


@pytest.mark.parametrize("chapter", QUEUERS, ids=IDS)
def test_pipelined_messages_echo_exactly(chapter, start_server):
    """One client with small buffers writes 1000 messages of random sizes 1..8 KiB (about
    4 MiB, more than the kernel's buffers on the way hold) back to back, each with its
    own sendall, through --max-queued PIPELINE_CAP, and reads nothing until the sender is
    held up (so the queue has filled and the receive has paused); then it reads: what
    comes back is exactly the messages' concatenation, in order. A thread sends, so that
    both directions flow once reading starts: sending everything before reading would
    fill both directions' buffers and stop both sides (see harness.echo)."""
    server = start_server(chapter, "--max-queued", str(PIPELINE_CAP))
    rng = random_source()
    messages = [chapter.message(rng.randbytes(rng.randint(*MESSAGE_SIZES)))
                for _ in range(PIPELINED)]
    expected = b"".join(messages)
    client = small_buffered_client(server.port)
    try:
        sender = Sender(client, messages)
        held_up = sender.held_up()
        before = sender.sent
        back = read_back(server, client, len(expected))
        sender.join()
    finally:
        client.close()
    print("%s: %d messages, %d bytes; the sender was %s after %d bytes" % (
        chapter.name, PIPELINED, len(expected), "held up" if held_up else "not held up",
        before))
    assert sender.failure is None, (sender.failure, server.output())
    if back != expected:
        at = first_difference(back, expected)
        raise AssertionError("the echo differs from what was sent from byte %d of %d (%s)"
                             % (at, len(expected), where(at, [len(m) for m in messages])),
                             server.output())
    assert server.quit() == 0, server.output()


@pytest.mark.parametrize("chapter", QUEUERS, ids=IDS)
def test_slow_reader_gets_everything_back(chapter, start_server):
    """With --max-queued SLOW_CAP, a client with small buffers sends 4 MiB of random data
    (as 8 KiB messages, for a chapter with messages) from a thread and reads nothing
    until the sender is held up (the server's queue is at its cap and its receive
    paused); then it reads 4 KiB at a time with a pause between reads, so the queue keeps
    reaching the cap and the receive keeps pausing. Every byte comes back, in order, and
    the echo never stops for CLIENT_TIMEOUT seconds: each paused receive is posted again
    once the queue has drained."""
    server = start_server(chapter, "--max-queued", str(SLOW_CAP))
    rng = random_source()
    data = rng.randbytes(SLOW_TOTAL)
    pieces = [chapter.message(data[i:i + SEND_PIECE]) for i in range(0, len(data), SEND_PIECE)]
    data = b"".join(pieces)  # what is sent, and must come back
    client = small_buffered_client(server.port)
    started = time.monotonic()
    try:
        sender = Sender(client, pieces)
        held_up = sender.held_up()
        before = sender.sent
        back = read_back(server, client, len(data), SLOW_READ, SLOW_PAUSE)
        sender.join()
    finally:
        client.close()
    print("%s: %d bytes back through --max-queued %d in %.1f s; the sender was %s after "
          "%d bytes" % (chapter.name, len(back), SLOW_CAP, time.monotonic() - started,
                        "held up" if held_up else "not held up", before))
    assert sender.failure is None, (sender.failure, server.output())
    if back != data:
        at = first_difference(back, data)
        raise AssertionError("the echo differs from what was sent from byte %d of %d" % (
            at, len(data)), server.output())
    assert server.quit() == 0, server.output()
