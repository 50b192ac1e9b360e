"""Runs the chapter programs for the tests: under Wine on Linux, directly on Windows.

On Linux every program starts through `scripts/wine.sh run EXE ARGS`, which execs
wine64, so the process we start is the Windows program itself: SIGINT to it reaches the
program's console handler as CTRL_C_EVENT. On Windows the program runs in a new process
group, so CTRL_BREAK_EVENT can reach it without reaching the test runner.
"""

import contextlib
import os
import random
import re
import selectors
import signal
import socket
import struct
import subprocess
import threading
import time

import chapters
from chapters import BUILD_DIR, ROOT

WINDOWS = os.name == "nt"
WINE_SH = os.path.join(ROOT, "scripts", "wine.sh")
NOTES_SH = os.path.join(ROOT, "scripts", "notes.sh")

# What the program prints for interrupt(): SIGINT arrives as Ctrl+C under Wine; on
# Windows only Ctrl+Break can be sent to one process group.
INTERRUPT_NAME = "Ctrl+Break" if WINDOWS else "Ctrl+C"

# "<call> failed: <number> <text>", as common/errors.c prints every error.
ERROR_LINE = re.compile(r"^(?P<call>\S.*?) failed: (?:errno )?(?P<code>\d+) (?P<text>\S.*)$")
LISTENING = re.compile(r"^listening on (?P<address>.+):(?P<port>\d+)$")
# The last line of a clean exit from chapter 08 on (Chapter.summary makes one): "echoed"
# until a chapter broadcasts, then "sent".
SUMMARY = re.compile(r"^connections served: (?P<connections>\d+), "
                     r"bytes (?:echoed|sent): (?P<bytes>\d+)$")

# Every program run by the current test, newest last; conftest.py shows their whole
# output in the report of a test that fails (assertion messages get shortened).
RUNS = []

# Generous bounds that only catch hangs; nothing here measures speed.
LINE_TIMEOUT = 10.0
EXIT_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
CLIENT_TIMEOUT = 5.0


def _wine_sh(*args, timeout):
    return subprocess.run(["sh", WINE_SH] + list(args), stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
                          timeout=timeout)


@contextlib.contextmanager
def wine_session():
    """Keeps one persistent wineserver for the prefix while the block runs, and always
    stops it at the end, so nothing of Wine's is left running. Nothing on Windows.

    Every new wineserver starts Wine's helpers (winedevice.exe...) with the first program
    it runs, and they inherit that program's stdio: that program is wineboot, on DEVNULL,
    so no helper can hold open a pipe that a caller reads to the end.
    """
    if WINDOWS:
        yield
        return
    try:
        # `start` boots the prefix only when it is new; wineboot here covers a new server.
        assert _wine_sh("start", timeout=300).returncode == 0, "scripts/wine.sh start failed"
        assert _wine_sh("run", "wineboot", timeout=300).returncode == 0, "wineboot failed"
        yield
    finally:
        _wine_sh("stop", timeout=60)


def _shown(path):
    """PATH relative to the repository when it is inside it, else as it is."""
    try:
        relative = os.path.relpath(path, ROOT)
    except ValueError:  # another drive on Windows
        return path
    return path if relative.startswith("..") else relative


def require_exe(path):
    """Fails the test with a clear message when a program has not been built."""
    if not os.path.isfile(path):
        raise AssertionError("%s is missing: run `make` to build it" % _shown(path))
    return path


def command(exe, args=()):
    """The command line that runs a Windows program here."""
    exe = require_exe(exe)
    if WINDOWS:
        return [exe] + list(args)
    return ["sh", WINE_SH, "run", exe] + list(args)


def is_chapter(exe):
    """Whether EXE is a chapter's program (build/NN-topic.exe), not a tool."""
    return os.path.dirname(os.path.abspath(exe)) == os.path.abspath(BUILD_DIR)


def _accepts(exe, option):
    """Whether EXE is a chapter's program that accepts OPTION."""
    if not is_chapter(exe):
        return False
    name = os.path.splitext(os.path.basename(exe))[0]
    return any(c.name == name and c.accepts(option) for c in chapters.ALL)


def windows_path(path):
    """A path as the Windows program sees it (Wine maps drive Z: to /)."""
    if WINDOWS:
        return path
    return "Z:" + os.path.abspath(path).replace("/", "\\")


def _lines(data):
    """Decoded output lines, without line ends (Windows programs write CRLF)."""
    lines = data.decode("utf-8", errors="replace").split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


class Result:
    """A finished run: exit code and output lines (CR stripped)."""

    def __init__(self, code, stdout, stderr):
        self.code = code
        self.stdout = _lines(stdout)
        self.stderr = _lines(stderr)

    @property
    def out(self):
        return "\n".join(self.stdout)

    @property
    def err(self):
        return "\n".join(self.stderr)

    def __repr__(self):
        return "exit code %r\n--- stdout:\n%s\n--- stderr:\n%s" % (self.code, self.out, self.err)

    def output(self):
        return repr(self)


def run(exe, args=(), timeout=EXIT_TIMEOUT, stdin_data=b"", cwd=ROOT):
    """Runs a program to its end (it must end by itself within TIMEOUT)."""
    try:
        done = subprocess.run(command(exe, args), input=stdin_data, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired as e:
        raise AssertionError("%s %s did not end within %s s; output so far:\n%s\n%s" % (
            os.path.basename(exe), " ".join(args), timeout,
            (e.stdout or b"").decode("utf-8", "replace"),
            (e.stderr or b"").decode("utf-8", "replace")))
    result = Result(done.returncode, done.stdout, done.stderr)
    result.exe, result.args = exe, list(args)
    result.title = "%s %s" % (os.path.basename(exe), " ".join(args))
    result.is_chapter = is_chapter(exe)
    RUNS.append(result)
    return result


# --- programs that die without a word -------------------------------------------------
# Wine's messages for a rerun of a chapter program that exited non-zero printing nothing:
# errors (WINEDEBUG=-all hides Wine's own start-up failures, which then exit 1 in
# silence), warnings (unhandled exceptions among them) and the DLLs it loaded. About 20
# lines for a normal run. Some causes do not repeat: Debian's Wine 8 has no preloader,
# so now and then address-space randomization puts the loader's heap where Wine must map
# its shared user data (0x7ffe0000); that process exits 1 after "err:virtual:
# virtual_alloc_first_teb wine: failed to map the shared user data: c0000018", and a
# rerun usually runs normally.
DIAGNOSTIC_WINEDEBUG = "err+all,warn+all,+loaddll"
DIAGNOSTIC_LINES = 300  # of each stream, at most
DIAGNOSTIC_RERUNS = 3  # per test, at most


def _died_silently(run):
    """Whether RUN, a chapter program of the current test, has ended with a non-zero exit
    code and printed nothing at all (not counting a server the harness killed)."""
    if not run.is_chapter or getattr(run, "rerun", False):
        return False
    if isinstance(run, Server):
        if run.process.poll() is None:
            return False
        for reader in run._readers:
            reader.join(1.0)  # its last lines may still be on their way
        code = run.process.returncode
    else:
        code = run.code
    if WINDOWS or code in (0, -signal.SIGKILL):
        return False
    return not run.stdout and not run.stderr


def rerun_silent_deaths():
    """Reruns once, under Wine with DIAGNOSTIC_WINEDEBUG and with scripts/wine.sh traced
    (sh -x), each chapter program of the current test (the first DIAGNOSTIC_RERUNS) that
    exited non-zero without printing anything, and adds each rerun to RUNS so the failed
    test's report shows it (conftest.py calls this). Standard input is empty, so a
    server stops at once."""
    silent = [run for run in RUNS if _died_silently(run)]
    for run in silent[:DIAGNOSTIC_RERUNS]:
        run.rerun = True  # once only
        code = run.process.returncode if isinstance(run, Server) else run.code
        env = dict(os.environ, WINEDEBUG=DIAGNOSTIC_WINEDEBUG)
        try:
            done = subprocess.run(["sh", "-x", WINE_SH, "run", run.exe] + run.args,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, timeout=EXIT_TIMEOUT, cwd=ROOT,
                                  env=env)
            rerun = Result(done.returncode, done.stdout, done.stderr)
        except subprocess.TimeoutExpired as e:
            rerun = Result("none: killed after %s s" % EXIT_TIMEOUT, e.stdout or b"",
                           e.stderr or b"")
        rerun.stdout = rerun.stdout[:DIAGNOSTIC_LINES]
        rerun.stderr = rerun.stderr[:DIAGNOSTIC_LINES]
        rerun.title = "%s, rerun with WINEDEBUG=%s after it exited %s printing nothing" % (
            run.title, DIAGNOSTIC_WINEDEBUG, code)
        rerun.is_chapter = False  # Wine's lines are not the program's error lines
        rerun.rerun = True
        RUNS.append(rerun)


def bad_error_lines(lines):
    """Lines that mention a failed call but do not have the shape ERROR_LINE describes."""
    return [line for line in lines if " failed:" in line and not ERROR_LINE.match(line)]


class Server:
    """A chapter program running in the background, with its output collected by threads.

    Use as a context manager (or through conftest.py's `start_server` fixture): on exit any process
    still running is killed.
    """

    def __init__(self, exe, args=("--port", "0"), cwd=ROOT, verbose=True):
        self.exe = exe
        self.name = os.path.basename(exe)
        self.args = list(args)
        # A chapter that prints a line per connection only with --verbose gets it, since
        # the tests read those lines; verbose=False runs it as it runs by default.
        if verbose and "--verbose" not in self.args and _accepts(exe, "--verbose"):
            self.args.append("--verbose")
        self.stdout = []
        self.stderr = []
        self._cursor = {"stdout": 0, "stderr": 0}
        self._changed = threading.Condition()
        self._open_streams = 2
        self.code = None
        kwargs = {}
        if WINDOWS:
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
        self.process = subprocess.Popen(command(exe, self.args), stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        cwd=cwd, **kwargs)
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.stdout),
                             daemon=True),
            threading.Thread(target=self._read, args=(self.process.stderr, self.stderr),
                             daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        self._port = None
        self._address = None
        self.title = "%s %s" % (self.name, " ".join(self.args))
        self.is_chapter = is_chapter(exe)
        RUNS.append(self)

    # --- output ---------------------------------------------------------------------
    def _read(self, stream, lines):
        try:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", errors="replace").rstrip("\n").rstrip("\r")
                with self._changed:
                    lines.append(line)
                    self._changed.notify_all()
        finally:
            with self._changed:
                self._open_streams -= 1
                self._changed.notify_all()

    def output(self):
        with self._changed:
            return "--- %s %s, exit code %s\n--- stdout:\n%s\n--- stderr:\n%s" % (
                self.name, " ".join(self.args), self.process.poll(),
                "\n".join(self.stdout), "\n".join(self.stderr))

    def wait_for(self, pattern, timeout=LINE_TIMEOUT, stream="stdout"):
        """Returns the match of the first line after the last one matched (on STREAM)
        that matches PATTERN; raises AssertionError with the output so far if none
        comes within TIMEOUT or the program closes its output first."""
        regex = re.compile(pattern)
        lines = self.stdout if stream == "stdout" else self.stderr
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                while self._cursor[stream] < len(lines):
                    line = lines[self._cursor[stream]]
                    self._cursor[stream] += 1
                    match = regex.search(line)
                    if match:
                        return match
                left = deadline - time.monotonic()
                if self._open_streams == 0 or left <= 0:
                    why = "ended without printing" if self._open_streams == 0 else \
                        "printed no line in %s s matching" % timeout
                    raise AssertionError("%s %s %r on %s\n%s" % (
                        self.name, why, pattern, stream, self._output_locked()))
                self._changed.wait(left)

    def wait_until(self, check, timeout=LINE_TIMEOUT, what="the expected output"):
        """Waits until CHECK(lines) returns something true, where LINES is everything
        printed on stdout so far (the wait_for cursor is not used or moved); returns
        that value. Raises AssertionError naming WHAT, with the output, if it does not
        happen within TIMEOUT or the program closes its output first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                value = check(list(self.stdout))
                if value:
                    return value
                left = deadline - time.monotonic()
                if self._open_streams == 0 or left <= 0:
                    why = "ended" if self._open_streams == 0 else \
                        "went %s s" % timeout
                    raise AssertionError("%s %s without printing %s\n%s" % (
                        self.name, why, what, self._output_locked()))
                self._changed.wait(min(left, 0.5))

    def _output_locked(self):
        return "--- stdout:\n%s\n--- stderr:\n%s" % ("\n".join(self.stdout),
                                                      "\n".join(self.stderr))

    def _listening(self):
        if self._port is None:
            match = self.wait_for(LISTENING.pattern)
            self._address = match.group("address")
            self._port = int(match.group("port"))

    @property
    def port(self):
        """The port from the "listening on ADDR:PORT" line (waits for it)."""
        self._listening()
        return self._port

    @property
    def address(self):
        """The address from the "listening on ADDR:PORT" line, e.g. 127.0.0.1 or [::]."""
        self._listening()
        return self._address

    # --- stopping -------------------------------------------------------------------
    def wait(self, timeout=EXIT_TIMEOUT):
        """Waits for the program to end; returns its exit code."""
        try:
            self.code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("%s did not end within %s s\n%s" % (
                self.name, timeout, self.output()))
        for reader in self._readers:
            reader.join(timeout)
        return self.code

    def send(self, text):
        """Writes TEXT to the program's standard input."""
        try:
            self.process.stdin.write(text.encode("utf-8"))
            self.process.stdin.flush()
        except OSError as e:  # the program has gone: say so with what it printed
            raise AssertionError("cannot write to %s (%s)\n%s" % (self.name, e, self.output()))

    def quit(self, timeout=EXIT_TIMEOUT):
        """Types "quit"; returns the exit code."""
        self.send("quit\n")
        return self.wait(timeout)

    def end_input(self, timeout=EXIT_TIMEOUT):
        """Closes standard input; returns the exit code."""
        try:
            self.process.stdin.close()
        except OSError as e:
            raise AssertionError("cannot close the input of %s (%s)\n%s" % (
                self.name, e, self.output()))
        return self.wait(timeout)

    def interrupt(self, timeout=EXIT_TIMEOUT):
        """Ctrl+C under Wine (SIGINT), Ctrl+Break on Windows; returns the exit code.
        Standard input stays open: closing it would be a stop request of its own."""
        if WINDOWS:
            os.kill(self.process.pid, signal.CTRL_BREAK_EVENT)
        else:
            self.process.send_signal(signal.SIGINT)
        return self.wait(timeout)

    # --- memory (Linux only: /proc) -----------------------------------------------------
    def memory_kib(self):
        """The resident memory, in KiB, of the program's own process and of the wineserver
        that holds its sockets: {"process": N, "wineserver": M}. Linux only."""
        program = _program_pid(self.process.pid, self.name)
        server = wineserver_pid(wine_prefix())
        sizes = {"process": resident_kib(program) if program else None,
                 "wineserver": resident_kib(server) if server else None}
        assert None not in sizes.values(), "cannot read the memory of %s and its wineserver: %r" % (
            self.name, sizes)
        return sizes

    def running(self):
        return self.process.poll() is None

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            try:
                self.process.wait(EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            try:
                stream.close()
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()
        return False


# --- random data -----------------------------------------------------------------------
# Every test that uses random data takes it from random_source(), seeded from this
# variable when it is set, so a failing run can be replayed:
#   IOCP_TEST_SEED=1234 /usr/bin/pytest-3 -p no:cacheprovider 'tests/test_echo.py::...'
SEED_VARIABLE = "IOCP_TEST_SEED"
_seed_lock = threading.Lock()
_seed = {"value": None, "sources": 0}  # the current test's seed; sources handed out



def wine_prefix():
    """The Wine prefix the programs run in: $WINEPREFIX, or scripts/wine.sh's default."""
    return os.environ.get("WINEPREFIX") or os.path.join(ROOT, "build", "wineprefix")


def resident_kib(pid):
    """The resident memory of Linux process PID in KiB (VmRSS), or None when it is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def wineserver_pid(prefix):
    """The wineserver that serves Wine prefix PREFIX, or None: it holds every socket of the
    programs of that prefix and does part of their I/O, so its CPU and memory belong to
    theirs."""
    prefix = os.path.realpath(prefix)
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


def _program_pid(launcher, name):
    """The Linux process that runs Windows program NAME started by LAUNCHER (sh
    scripts/wine.sh run, whose Wine process is its child, or the program itself), or None."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            with open("/proc/%d/stat" % pid) as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                program = os.fsdecode(f.read().split(b"\0")[0])
        except (OSError, ValueError, IndexError):
            continue
        if launcher in (pid, parent) and os.path.basename(program.replace("\\", "/")) == name:
            return pid
    return None


def random_source():
    """A random.Random for the current test. The test has one seed: SEED_VARIABLE's value,
    or else a fresh one, printed with the first source the test asks for (conftest.py also
    shows it in the report of a failed test). Each later source of the same test is
    derived from the seed and its place in the order of asking, so asking in the same
    order replays the same data."""
    with _seed_lock:
        if _seed["value"] is None:
            text = os.environ.get(SEED_VARIABLE, "").strip()
            if text:
                try:
                    _seed["value"] = int(text, 0)
                except ValueError:
                    raise AssertionError("%s must be a whole number, not %r" % (
                        SEED_VARIABLE, text)) from None
            else:
                _seed["value"] = int.from_bytes(os.urandom(4), "little")
            print("random data from seed %d; replay it with %s=%d" % (
                _seed["value"], SEED_VARIABLE, _seed["value"]))
        number = _seed["sources"]
        _seed["sources"] += 1
        # A str seed is hashed the same way by every Python version (unlike a tuple).
        return random.Random("%d/%d" % (_seed["value"], number))


def current_seed():
    """The current test's seed, or None if it has used no random data."""
    return _seed["value"]


def forget_seed():
    """Ends the current test's seed (conftest.py calls it after each test)."""
    with _seed_lock:
        _seed["value"] = None
        _seed["sources"] = 0


# --- messages (chapter 11 on) ---------------------------------------------------------
# A message is a 5-byte header, the payload length (4 bytes, big-endian) and a type byte,
# then the payload (chapters/11-messages/frame.h). These functions, and message() below
# for any type, are the one place the tests, the tour and the bench build messages;
# MessageReader and receive_message read them back, for the tests.
MESSAGE_HEADER_SIZE = 5
ECHO_TYPE = 1  # the one type: the server sends the same message back to its sender
# The longest payload a chapter with messages takes without --max-message (its default).
DEFAULT_MAX_MESSAGE = 65536


def message_header(length, kind=ECHO_TYPE):
    """The header of a message of type KIND with LENGTH payload bytes (any LENGTH that
    fits in 4 bytes, so a test can also announce more than it sends, or than is allowed)."""
    return struct.pack(">IB", length, kind)


def echo_message(payload):
    """PAYLOAD as one echo message: its header, then PAYLOAD. The server sends back
    exactly these bytes."""
    return message_header(len(payload)) + bytes(payload)


# The chat room's types (chapter 12 on, common/frame.h): clients send JOIN, SAY and
# LEAVE; only the server sends MESSAGE, NOTICE and ERROR.
JOIN_TYPE = 2      # the payload is the name
SAY_TYPE = 3       # the payload is the text
LEAVE_TYPE = 4     # no payload
MESSAGE_TYPE = 16  # "NAME: TEXT", to every member
NOTICE_TYPE = 17   # "NAME joined", "NAME left", "NAME left: REASON"
ERROR_TYPE = 18    # why a request was refused; the connection stays open


def message(kind, payload=b""):
    """One message of type KIND with PAYLOAD: its header, then PAYLOAD."""
    return message_header(len(payload), kind) + bytes(payload)


class MessageReader:
    """Cuts the bytes received on one connection into whole messages, however the reads
    split them: feed() what recv returned, get back the messages completed by it, each
    a (type, payload) pair; .pending counts the bytes of a message not yet whole."""

    def __init__(self):
        self._bytes = bytearray()

    @property
    def pending(self):
        return len(self._bytes)

    def feed(self, data):
        self._bytes += data
        messages = []
        offset = 0
        while len(self._bytes) - offset >= MESSAGE_HEADER_SIZE:
            length, kind = struct.unpack_from(">IB", self._bytes, offset)
            end = offset + MESSAGE_HEADER_SIZE + length
            if end > len(self._bytes):
                break
            messages.append((kind, bytes(self._bytes[offset + MESSAGE_HEADER_SIZE:end])))
            offset = end
        del self._bytes[:offset]
        return messages


def receive_message(client):
    """Receives one whole message on CLIENT (blocking, with its timeout for each recv);
    returns (type, payload), or None if the peer closes the connection before a header
    has started. Raises AssertionError if it closes in the middle of one."""
    header = receive_exactly(client, MESSAGE_HEADER_SIZE)
    if not header:
        return None
    if len(header) < MESSAGE_HEADER_SIZE:
        raise AssertionError("the connection ended after %d bytes of a header: %r" % (
            len(header), header))
    length, kind = struct.unpack(">IB", header)
    payload = receive_exactly(client, length)
    if len(payload) < length:
        raise AssertionError("the connection ended after %d of the %d payload bytes of a "
                             "message of type %d" % (len(payload), length, kind))
    return kind, payload


# --- clients -------------------------------------------------------------------------
def connect(port, host="127.0.0.1", timeout=CLIENT_TIMEOUT, buffers=None):
    """A TCP client connected to HOST:PORT, with TIMEOUT on every call; with BUFFERS, its
    receive and send buffers are set to that many bytes before it connects (small ones
    make a client that does not read fill its connection with less data)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    client = socket.socket(family, socket.SOCK_STREAM)
    client.settimeout(timeout)
    try:
        if buffers is not None:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffers)
            client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffers)
        client.connect((host, port))
    except OSError:
        client.close()
        raise
    return client


def local_port(client):
    return client.getsockname()[1]


def client_number(server, client):
    """The server's number for CLIENT, K in its "client K connected from ADDR:PORT" line
    (waits for that line; does not move Server.wait_for's cursor)."""
    pattern = re.compile(r"^client (\d+) connected from \S+:%d " % local_port(client))

    def find(lines):
        return next((m for m in map(pattern.match, lines) if m), None)
    return int(server.wait_until(find, what="a connected line for port %d"
                                 % local_port(client)).group(1))


def disconnect_reason(server, number):
    """The REASON of client NUMBER's "client K disconnected: REASON (N live)" line (waits
    for it; does not move Server.wait_for's cursor)."""
    pattern = re.compile(r"^client %d disconnected: (.*) \(\d+ live\)$" % number)

    def find(lines):
        return next((m for m in map(pattern.match, lines) if m), None)
    return server.wait_until(find, what="a disconnected line for client %d" % number).group(1)


def how_closed(client, timeout=CLIENT_TIMEOUT):
    """How the server ends CLIENT's connection: "reset" or "closed" (FIN); "data: ..." if
    bytes arrive instead; None if nothing happens within TIMEOUT."""
    client.settimeout(timeout)
    try:
        got = client.recv(256)
    except (ConnectionResetError, ConnectionAbortedError):
        return "reset"
    except socket.timeout:
        return None
    finally:
        client.settimeout(CLIENT_TIMEOUT)
    return "closed" if not got else "data: %r" % got[:40]


def closed_by_peer(client, timeout=CLIENT_TIMEOUT):
    """Whether the peer closes CLIENT within TIMEOUT: recv gives b"" (FIN) or a reset."""
    client.settimeout(timeout)
    try:
        return client.recv(1) == b""
    except (ConnectionResetError, ConnectionAbortedError):
        return True
    except socket.timeout:
        return False


def still_open(client, wait=0.2):
    """Whether CLIENT is still open: nothing (no FIN, no reset) arrives within WAIT."""
    client.settimeout(wait)
    try:
        client.recv(1, socket.MSG_PEEK)
        return False  # data or b"": this chapter sent something or closed
    except socket.timeout:
        return True
    except OSError:
        return False
    finally:
        client.settimeout(CLIENT_TIMEOUT)


def receive_exactly(client, count):
    """Receives exactly COUNT bytes; fewer if the peer closes first."""
    chunks = []
    left = count
    while left > 0:
        chunk = client.recv(min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def echo(client, data):
    """Sends DATA and returns what comes back, as many bytes as were sent (fewer if the
    peer closes first). A thread sends while this one receives: an echo server sends
    while it receives, so sending everything first could fill both directions' buffers
    and stop both sides."""
    failure = []

    def send():
        try:
            client.sendall(data)
        except OSError as e:
            failure.append(e)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        back = receive_exactly(client, len(data))
    finally:
        sender.join(CLIENT_TIMEOUT + len(data) / 1e5)
    if failure:
        raise failure[0]
    return back


def echoed(server, client, data, what):
    """What comes back for DATA sent on CLIENT (echo); fails the test, saying WHAT was
    under way, if the server ends the connection instead."""
    try:
        return echo(client, data)
    except OSError as e:
        raise AssertionError("%s: %r instead of the echo\n%s" % (what, e, server.output()))


def reset(client):
    """Closes CLIENT abortively: SO_LINGER on with a zero timeout makes close send RST."""
    # struct linger is two ints on Linux, two u_shorts on Windows.
    linger = struct.pack("HH" if WINDOWS else "ii", 1, 0)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
    client.close()


def _unchanged(data):
    return data


class RoundTrips:
    """One client of round_trips(): messages of random sizes, each sent in full and
    received back in full before the next. WRAP turns the random data into what is sent
    and must come back: for a chapter with messages, Chapter.message (one echo message
    per round trip; the sizes are then of the payloads)."""

    def __init__(self, client, rounds, rng, sizes, wrap=_unchanged):
        self.client = client
        self.rounds_left = rounds  # None: until the server closes the connection
        self.rounds = 0            # round trips completed
        self.bytes_sent = 0
        self.bytes_received = 0
        self.error = None          # what went wrong: a changed echo, or an error
        self.closed = None         # how the server ended the connection, if it did
        self._rng = rng
        self._sizes = sizes
        self._wrap = wrap
        self._next_message()

    def _next_message(self):
        self.outgoing = self._wrap(self._rng.randbytes(self._rng.randint(*self._sizes)))
        self.sent = 0
        self.back = bytearray()

    def busy(self):
        return self.error is None and self.closed is None and self.rounds_left != 0

    def events(self):
        if not self.busy():
            return 0
        return selectors.EVENT_READ | (selectors.EVENT_WRITE if self.sent < len(self.outgoing)
                                       else 0)

    def on_event(self, events):
        try:
            if events & selectors.EVENT_WRITE:
                count = self.client.send(self.outgoing[self.sent:])
                self.sent += count
                self.bytes_sent += count
            if events & selectors.EVENT_READ:
                chunk = self.client.recv(65536)
                if not chunk:
                    self.closed = "closed by the server (FIN)"
                    return
                self._received(chunk)
        except (BlockingIOError, InterruptedError):
            pass
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError) as e:
            self.closed = "closed by the server (%s)" % e
        except OSError as e:
            self.error = repr(e)

    def _received(self, chunk):
        self.back += chunk
        self.bytes_received += len(chunk)
        if len(self.back) > len(self.outgoing) or self.back != self.outgoing[:len(self.back)]:
            self.error = "round trip %d: the echo differs from what was sent" % (self.rounds + 1)
        elif len(self.back) == len(self.outgoing):
            self.rounds += 1
            if self.rounds_left is not None:
                self.rounds_left -= 1
            if self.rounds_left != 0:
                self._next_message()

    def __repr__(self):
        return "<%d round trips, %s>" % (self.rounds, self.error or self.closed or "busy")


def round_trips(clients, rounds=None, sizes=(1, 8192), timeout=240.0, rng=None,
                progress=None, wrap=None):
    """Echo round trips on every client at once, from this thread (with selectors):
    each makes ROUNDS round trips of random data of random SIZES (inclusive bounds, from
    RNG, by default a new random_source()), or,
    with ROUNDS None, goes on until the server closes its connection. WRAP, if given,
    makes what is sent from that data, e.g. a chapter's Chapter.message; the byte counts
    are of what was sent and received, headers included. Returns one
    RoundTrips per client (with .rounds, .bytes_sent, .bytes_received, .error, .closed);
    stops early at a changed echo or an error. PROGRESS, if given, is a list that gets
    the RoundTrips as soon as they exist, for another thread to watch. Raises
    AssertionError if clients are still busy after TIMEOUT (a hang)."""
    if rng is None:
        rng = random_source()
    trips = [RoundTrips(c, rounds, rng, sizes, wrap or _unchanged) for c in clients]
    if progress is not None:
        progress.extend(trips)
    selector = selectors.DefaultSelector()
    registered = {}
    deadline = time.monotonic() + timeout
    try:
        for trip in trips:
            trip.client.setblocking(False)
        while True:
            for trip in trips:
                wanted = trip.events()
                if registered.get(trip, 0) != wanted:
                    if trip in registered:
                        selector.unregister(trip.client)
                        del registered[trip]
                    if wanted:
                        selector.register(trip.client, wanted, trip)
                        registered[trip] = wanted
            if not registered or any(t.error for t in trips):
                return trips
            if time.monotonic() > deadline:
                raise AssertionError("%d of %d clients still busy after %s s: %r" % (
                    len(registered), len(trips), timeout, trips[:5]))
            for key, events in selector.select(timeout=1.0):
                key.data.on_event(events)
    finally:
        selector.close()
        for trip in trips:
            try:
                trip.client.setblocking(True)
                trip.client.settimeout(CLIENT_TIMEOUT)
            except OSError:
                pass
