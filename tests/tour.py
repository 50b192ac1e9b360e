"""The tour: plays each chapter's demo against its program and checks everything the
server printed against the "## Expected output" block of the chapter's README.md.

    python3 tests/tour.py [--build-dir DIR] [--chapters-dir DIR] [CHAPTER...]   (make tour)
    py tests\\tour.py [...]                                                     (Windows)

A chapter is a folder chapters/NN-topic/ with a tour.txt. For each one, in name order,
the tour starts DIR/NN-topic.exe through the test harness (stdin and stdout on pipes),
plays tour.txt with up to 26 clients named A-Z, prints a transcript, and then compares
every line the server printed with the README's block, in which each <word> stands for
one or more characters (a port, an address).

tour.txt holds one step per line; '#' starts a comment line:
  args ARGS...      the server's command line (first, if at all)
  connect X         connect client X to the port of the server's "listening on" line
  send X TEXT       send TEXT; \\n \\r \\t \\\\ and \\xNN are decoded
  sendsize X N      send N bytes of abc...xyz repeated
  expect X TEXT     receive exactly TEXT (decoded as for send)
  expectsize X N    receive N bytes and check they are the sendsize pattern
  sendmsg X TEXT    send TEXT (decoded as for send) as the payload of one echo message,
                    after its 5-byte header (chapter 11 on: harness.echo_message)
  expectmsg X TEXT  receive exactly the echo message whose payload is TEXT, header first
  sendtype X TYPE [TEXT]
                    send one message of TYPE with TEXT (decoded as for send; none for an
                    empty payload) as its payload, after its 5-byte header. TYPE is a
                    number 0-255 or a name of common/frame.h: echo, join, say, leave
                    (what clients send), message, notice, error (what the server sends)
  expecttype X TYPE [TEXT]
                    receive one whole message and check that it has TYPE and TEXT as
                    its payload (chapter 12 on)
  closed X          wait for the server to close (or reset) X
  close X           close X gracefully (FIN); X can still receive until the server
                    closes too, so "closed X" may follow
  reset X           close X abortively (RST)
  wait TEXT         wait for the next server line that contains TEXT
  sleep SECONDS     do nothing for SECONDS (such as 0.25; at most 10), e.g. while a
                    server's timeout runs out
  quit              write "quit" to the server's standard input
  exit N            wait for the server to exit with code N (always the last step)
The pattern continues across steps: two "sendsize A 5" send "abcde" then "fghij", and
each client's expectsize checks from where its previous one stopped.

Every waiting step has 10 seconds. Steps run one at a time, so a sendsize to an echo
server larger than the connection can buffer times out instead of passing.

A new kind of step is a handler step_NAME(run, step) and one row in STEPS.
"""

import os
import re
import shlex
import socket
import struct
import sys
import time

import chapters
import harness

STEP_TIMEOUT = 10.0
# After a failed step: how long the server gets to obey "quit" before it is killed.
STOP_TIMEOUT = 5.0
# Data longer than this is shown shortened in the transcript and in messages.
SHOW_LIMIT = 60
PATTERN = b"abcdefghijklmnopqrstuvwxyz"
LISTENING_PREFIX = "listening on "
EXPECTED_HEADING = "## Expected output"
FENCE = "```"
PLACEHOLDER = re.compile(r"<[A-Za-z0-9_-]+>")
# One piece of a step's TEXT: an escape, a backslash that starts no escape, plain text.
TEXT_PIECE = re.compile(r"\\x([0-9A-Fa-f]{2})|\\([nrt\\])|(\\)|([^\\]+)", re.S)
ESCAPES = {"n": b"\n", "r": b"\r", "t": b"\t", "\\": b"\\"}
SHOWN_AS = {0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x5C: "\\\\"}
# The most payload bytes expecttype reads of a message that is not the one expected.
UNEXPECTED_LIMIT = 65536
# The message types by name, as common/frame.h numbers them (enum frame_type): clients
# send echo, join, say and leave; only the server sends message, notice and error.
MESSAGE_TYPES = {"echo": 1, "join": 2, "say": 3, "leave": 4,
                 "message": 16, "notice": 17, "error": 18}

USAGE = """\
usage: tour.py [--build-dir DIR] [--chapters-dir DIR] [CHAPTER...]
  Runs each chapter's demo (chapters/NN-topic/tour.txt) against its program
  (DIR/NN-topic.exe) and checks the output against the chapter's README.md.
  CHAPTER             03 or 03-accept; several may be given (default: all)
  --build-dir DIR     where the chapter programs are (default build)
  --chapters-dir DIR  where the chapter folders are (default chapters)
  --help              show this help and exit
Exit code: 0 if every chapter passed, 1 if one failed or none was found, 2 for a bad \
command line."""


class Failed(Exception):
    """Why a chapter, or one of its steps, failed: the reason its FAIL line gives."""


def say(text):
    """One line of the transcript, at once: the servers' stderr goes to the same screen."""
    print(text, flush=True)


def type_label(kind):
    """A message type as the transcript shows it: JOIN for 2, "type 9" for one without a
    name."""
    name = next((n for n, k in MESSAGE_TYPES.items() if k == kind), None)
    return name.upper() if name else "type %d" % kind


def shown_payload(payload):
    return ": " + show(payload) if payload else ""


def show(data):
    """DATA as readable text: escapes for control bytes, "..." when it is long."""
    text = "".join(SHOWN_AS.get(b) or (chr(b) if 0x20 <= b < 0x7F else "\\x%02X" % b)
                   for b in data[:SHOW_LIMIT])
    return text + ("..." if len(data) > SHOW_LIMIT else "")


def pattern(offset, count):
    """COUNT bytes of abc...xyz repeated, from position OFFSET of the pattern on."""
    start = offset % len(PATTERN)
    return (PATTERN * ((start + count) // len(PATTERN) + 1))[start:start + count]


def read_lines(path):
    """The lines of a text file, without line ends or a UTF-8 byte order mark."""
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
        lines = f.read().split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


# --- the scenario (tour.txt) --------------------------------------------------------
class Step:
    """One line of tour.txt: its kind, its operands and where it was written."""

    def __init__(self, kind, source, line):
        self.kind = kind
        self.source = source
        self.line = line
        self.client = None
        self.data = None
        self.number = None


class BadLine(Exception):
    """What is wrong with a line of tour.txt."""


def decode(text):
    """TEXT with \\n \\r \\t \\\\ and \\xNN decoded, as bytes."""
    data = bytearray()
    for hex_digits, letter, lone, plain in TEXT_PIECE.findall(text):
        if lone:
            raise BadLine("has a bad escape (use \\n \\r \\t \\\\ \\xNN)")
        data += bytes([int(hex_digits, 16)]) if hex_digits else \
            ESCAPES[letter] if letter else plain.encode("utf-8")
    return bytes(data)


# Operand readers: each takes what follows the step's name and fills in the step.
def nothing(rest, step):
    if rest.strip(" \t"):
        raise BadLine("has more on its line than it takes")


def number(rest, step):
    if not re.fullmatch(r"[ \t]*\d+", rest):
        raise BadLine("needs a whole number N")
    step.number = int(rest)


def seconds(rest, step):
    if not re.fullmatch(r"[ \t]*\d+(?:\.\d+)?", rest) or float(rest) > STEP_TIMEOUT:
        raise BadLine("needs SECONDS, a number from 0 to %d" % STEP_TIMEOUT)
    step.number = float(rest)


def text(rest, step):
    step.data = rest.lstrip(" \t")
    if not step.data:
        raise BadLine("needs TEXT")


def data(rest, step):
    # One space or tab separates the text; any further ones are part of it.
    if len(rest) < 2:
        raise BadLine("needs TEXT after the client letter")
    step.data = decode(rest[1:])


def type_and_data(rest, step):
    # The type, then, after one space or tab, the payload (none: an empty payload).
    match = re.match(r"[ \t]+([^ \t]+)", rest)
    if not match:
        raise BadLine("needs a TYPE after the client letter")
    name = match.group(1)
    if name in MESSAGE_TYPES:
        step.number = MESSAGE_TYPES[name]
    elif re.fullmatch(r"\d{1,3}", name) and int(name) <= 255:
        step.number = int(name)
    else:
        raise BadLine("needs a TYPE: a number 0-255 or one of %s" % ", ".join(MESSAGE_TYPES))
    rest = rest[match.end():]
    step.data = decode(rest[1:]) if rest else b""


def client_and(then):
    """A reader for a client letter A-Z, then what THEN reads."""
    def read(rest, step):
        rest = rest.lstrip(" \t")
        if not re.match(r"[A-Z](?:[ \t]|$)", rest):
            raise BadLine("needs a client letter A-Z")
        step.client = rest[0]
        then(rest[1:], step)
    return read


def parse_line(scenario, line, number_in_file):
    """Adds the step on LINE, if it holds one, to SCENARIO; raises BadLine."""
    line = line.strip(" \t")
    if not line or line.startswith("#"):
        return
    name = re.match(r"[^ \t]*", line).group(0)
    rest = line[len(name):]
    if name == "args":
        if scenario.steps:
            raise BadLine("must come before every other step")
        if scenario.args is not None:
            raise BadLine("appears twice")
        scenario.args = rest.strip(" \t")
    elif name not in STEPS:
        raise BadLine("is not a step the tour knows")
    elif scenario.steps and scenario.steps[-1].kind == "exit":
        raise BadLine("comes after 'exit', which must be the last step")
    else:
        step = Step(name, line, number_in_file)
        STEPS[name][0](rest, step)
        scenario.steps.append(step)


class Scenario:
    """A chapter's tour.txt: the server's arguments and the steps."""

    def __init__(self, path):
        self.args = None
        self.steps = []
        try:
            lines = read_lines(path)
        except OSError as e:
            raise Failed("cannot read %s: %s" % (path, e.strerror))
        for number_in_file, line in enumerate(lines, 1):
            try:
                parse_line(self, line, number_in_file)
            except BadLine as e:
                raise Failed("%s:%d: step '%s' %s" % (path, number_in_file,
                                                      line.strip(" \t"), e))
        if not self.steps or self.steps[-1].kind != "exit":
            raise Failed("%s: the last step must be 'exit N'" % path)
        self.args = self.args or ""


# --- the expected output (README.md) and matching -----------------------------------
def expected_output(path):
    """The lines of README.md's Expected output block; raises Failed."""
    try:
        lines = read_lines(path)
    except FileNotFoundError:
        raise Failed("%s is missing (its '%s' block is what the server's output is "
                     "checked against)" % (path, EXPECTED_HEADING))
    except OSError as e:
        raise Failed("cannot read %s: %s" % (path, e.strerror))
    headings = [i for i, line in enumerate(lines) if line.rstrip(" \t") == EXPECTED_HEADING]
    if not headings:
        raise Failed("%s has no '%s' heading" % (path, EXPECTED_HEADING))
    fences = [i for i in range(headings[0] + 1, len(lines)) if lines[i].startswith(FENCE)]
    if not fences:
        raise Failed("%s has no ``` code block after its '%s' heading" % (path, EXPECTED_HEADING))
    if len(fences) < 2:
        raise Failed("%s has no closing ``` for its '%s' block" % (path, EXPECTED_HEADING))
    return lines[fences[0] + 1:fences[1]]


def line_matches(expected, line):
    """Whether LINE is EXPECTED with each <word> standing for one or more characters."""
    pieces = PLACEHOLDER.split(expected.rstrip(" \t"))
    regex = ".+".join(re.escape(piece) for piece in pieces)
    return re.fullmatch(regex, line.rstrip(" \t"), re.S) is not None


def compare_output(expected, got):
    """Raises Failed, after showing the first difference, unless GOT matches EXPECTED."""
    for i in range(max(len(expected), len(got))):
        want = expected[i] if i < len(expected) else None
        have = got[i] if i < len(got) else None
        if want is not None and have is not None and line_matches(want, have):
            continue
        say("  expected: %s" % (want if want is not None else "(no more lines)"))
        say("       got: %s" % (have if have is not None else "(no more lines)"))
        raise Failed("server output line %d differs from README.md (%d lines expected, "
                     "%d printed)" % (i + 1, len(expected), len(got)))


# --- a chapter's run ----------------------------------------------------------------
class Client:
    """A connected client socket and where its sendsize and expectsize patterns are."""

    def __init__(self, sock):
        self.sock = sock
        self.sent = 0
        self.received = 0
        self.peer_closed = False  # a closed step saw the server close or reset it
        self.shut_down = False  # a close step sent our FIN; we can still receive


class Run:
    """One chapter's server, its clients, and what the steps have learnt."""

    def __init__(self, server):
        self.server = server
        self.clients = {}
        self.wait_cursor = 0  # a wait searches the lines after the previous wait's match
        self.host = None
        self.port = None
        self.exited = False  # the exit step has waited for the server
        self.shown = {"stdout": 0, "stderr": 0}

    def show_server_output(self):
        """Shows what the server printed since last time: stdout in the transcript,
        stderr on our stderr."""
        out, err = self.server.stdout[:], self.server.stderr[:]
        for line in out[self.shown["stdout"]:]:
            say("  " + line)
        for line in err[self.shown["stderr"]:]:
            print(line, file=sys.stderr, flush=True)
        self.shown = {"stdout": len(out), "stderr": len(err)}

    def say(self, text):
        """A step's line, after every server line it may have waited for."""
        self.show_server_output()
        say("  " + text)


def connected(run, step):
    if step.client not in run.clients:
        raise Failed("client %s is not connected" % step.client)
    return run.clients[step.client]


def forget(run, letter):
    run.clients.pop(letter).sock.close()


def wait_for_line(run, start, text):
    """The index of the first server line at START or later that contains TEXT."""
    def found(lines):
        return next((i + 1 for i in range(start, len(lines)) if text in lines[i]), None)
    try:
        return run.server.wait_until(found, timeout=STEP_TIMEOUT) - 1
    except AssertionError:
        if run.server.running():
            raise Failed("the server printed no line containing \"%s\" within %d s" % (
                text, STEP_TIMEOUT))
        raise Failed("the server's output ended without a line containing \"%s\"" % text)


def read_listening_line(run):
    """The server's address and port, from its "listening on ADDRESS:PORT" line."""
    line = run.server.stdout[wait_for_line(run, 0, LISTENING_PREFIX)]
    match = harness.LISTENING.match(line[line.index(LISTENING_PREFIX):])
    if not match or not 0 < int(match.group("port")) < 65536:
        raise Failed("no port in the server's '%s' line" % LISTENING_PREFIX)
    run.host = "::1" if match.group("address").startswith("[") else "127.0.0.1"
    run.port = int(match.group("port"))


def send_all(client, data):
    try:
        client.sock.sendall(data)
    except socket.timeout:
        raise Failed("send could not finish within %d s: the server takes no more (an echo "
                     "server stops when its replies are not read: send less before "
                     "expecting)" % STEP_TIMEOUT)
    except OSError as e:
        raise Failed("send failed: %s" % e)


def receive(client, count):
    """Exactly COUNT bytes from CLIENT; raises Failed if they do not all come."""
    client.sock.settimeout(STEP_TIMEOUT)
    try:
        got = harness.receive_exactly(client.sock, count)
    except socket.timeout:
        raise Failed("%d bytes did not arrive within %d s" % (count, STEP_TIMEOUT))
    except (ConnectionResetError, ConnectionAbortedError):
        raise Failed("the connection was reset before %d bytes arrived" % count)
    except OSError as e:
        raise Failed("recv failed: %s" % e)
    if len(got) < count:
        raise Failed("the server closed the connection after %d of %d bytes" % (
            len(got), count))
    return got


def how_peer_closed(client):
    """"closed" or "reset", once the server ends CLIENT's connection; raises Failed if it
    sends data instead or does nothing. (harness.closed_by_peer tells only whether it
    closed; the transcript tells a FIN from a reset.)"""
    client.sock.settimeout(STEP_TIMEOUT)
    try:
        got = client.sock.recv(256)
    except (ConnectionResetError, ConnectionAbortedError):
        return "reset"
    except socket.timeout:
        raise Failed("the server did not close the connection within %d s" % STEP_TIMEOUT)
    except OSError as e:
        raise Failed("recv failed: %s" % e)
    if got:
        raise Failed("received \"%s\" instead of a close" % show(got))
    return "closed"


# --- the steps ----------------------------------------------------------------------
def step_connect(run, step):
    old = run.clients.get(step.client)
    if old and not old.shut_down:
        raise Failed("client %s is already connected" % step.client)
    # A client that has sent its FIN is done: its letter may name a new connection.
    if old:
        forget(run, step.client)
    if run.port is None:
        read_listening_line(run)
    try:
        sock = harness.connect(run.port, run.host, timeout=STEP_TIMEOUT)
    except OSError as e:
        raise Failed("connect failed: %s" % e)
    run.clients[step.client] = Client(sock)
    run.say("[%s] connect" % step.client)


def step_send(run, step):
    send_all(connected(run, step), step.data)
    run.say("[%s] sent %d bytes" % (step.client, len(step.data)))


def step_sendsize(run, step):
    client = connected(run, step)
    send_all(client, pattern(client.sent, step.number))
    client.sent += step.number
    run.say("[%s] sent %d bytes" % (step.client, step.number))


def step_expect(run, step):
    got = receive(connected(run, step), len(step.data))
    if got != step.data:
        raise Failed("received \"%s\", expected \"%s\"" % (show(got), show(step.data)))
    run.say("[%s] received %d bytes: %s" % (step.client, len(step.data), show(step.data)))


def step_sendmsg(run, step):
    message = harness.echo_message(step.data)
    send_all(connected(run, step), message)
    run.say("[%s] sent a message of %d bytes (%d with its header): %s" % (
        step.client, len(step.data), len(message), show(step.data)))


def step_expectmsg(run, step):
    message = harness.echo_message(step.data)
    got = receive(connected(run, step), len(message))
    if got != message:
        raise Failed("received \"%s\", expected the message \"%s\"" % (show(got),
                                                                       show(message)))
    run.say("[%s] received a message of %d bytes: %s" % (step.client, len(step.data),
                                                         show(step.data)))


def step_sendtype(run, step):
    kind, payload = step.number, step.data
    message = harness.message_header(len(payload), kind) + payload
    send_all(connected(run, step), message)
    run.say("[%s] sent %s, %d bytes (%d with its header)%s" % (
        step.client, type_label(kind), len(payload), len(message), shown_payload(payload)))


def step_expecttype(run, step):
    client = connected(run, step)
    length, kind = struct.unpack(">IB", receive(client, harness.MESSAGE_HEADER_SIZE))
    # A length that is not the expected one is read only while it is small: a wrong
    # header can announce up to 4 GiB.
    if length != len(step.data) and length > UNEXPECTED_LIMIT:
        raise Failed("received the header of %s with %d payload bytes, expected %s \"%s\"" % (
            type_label(kind), length, type_label(step.number), show(step.data)))
    payload = receive(client, length)
    if (kind, payload) != (step.number, step.data):
        raise Failed("received %s \"%s\", expected %s \"%s\"" % (
            type_label(kind), show(payload), type_label(step.number), show(step.data)))
    run.say("[%s] received %s, %d bytes%s" % (step.client, type_label(kind), length,
                                              shown_payload(payload)))


def step_expectsize(run, step):
    client = connected(run, step)
    got = receive(client, step.number)
    wanted = pattern(client.received, step.number)
    wrong = next((i for i in range(len(got)) if got[i] != wanted[i]), None)
    if wrong is not None:
        raise Failed("pattern byte %d is 0x%02X, expected '%c'" % (
            client.received + wrong, got[wrong], wanted[wrong]))
    client.received += step.number
    run.say("[%s] received %d bytes (the sendsize pattern)" % (step.client, step.number))


def step_closed(run, step):
    client = connected(run, step)
    run.say("[%s] %s by server" % (step.client, how_peer_closed(client)))
    client.peer_closed = True
    # Both sides have closed now, so the connection is over.
    if client.shut_down:
        forget(run, step.client)


def step_close(run, step):
    client = connected(run, step)
    if client.shut_down:
        raise Failed("client %s is closed already" % step.client)
    try:
        client.sock.shutdown(socket.SHUT_WR)
    except OSError as e:
        # After the server closed or reset it, a shutdown may fail, and that is no news.
        if not client.peer_closed:
            raise Failed("shutdown failed: %s" % e)
    client.shut_down = True
    run.say("[%s] close" % step.client)
    if client.peer_closed:
        forget(run, step.client)


def step_reset(run, step):
    connected(run, step)
    harness.reset(run.clients.pop(step.client).sock)
    run.say("[%s] reset" % step.client)


def step_wait(run, step):
    run.wait_cursor = wait_for_line(run, run.wait_cursor, step.data) + 1


def step_sleep(run, step):
    time.sleep(step.number)
    run.say("[tour] slept %g s" % step.number)


def step_quit(run, step):
    try:
        run.server.send("quit\n")
    except AssertionError:
        raise Failed("cannot write quit to the server's standard input: it has ended")
    run.say("[stdin] quit")


def step_exit(run, step):
    run.exited = True
    try:
        code = run.server.wait(STEP_TIMEOUT)
    except AssertionError:
        run.server.kill()
        raise Failed("the server did not exit within %d s, so the tour terminated it"
                     % STEP_TIMEOUT)
    run.say("[server] exited with code %d" % code)
    if code != step.number:
        raise Failed("exit code %d, expected %d" % (code, step.number))


# Step name -> (the reader of its operands, the handler that plays it).
STEPS = {
    "connect": (client_and(nothing), step_connect),
    "send": (client_and(data), step_send),
    "sendsize": (client_and(number), step_sendsize),
    "expect": (client_and(data), step_expect),
    "expectsize": (client_and(number), step_expectsize),
    "sendmsg": (client_and(data), step_sendmsg),
    "expectmsg": (client_and(data), step_expectmsg),
    "sendtype": (client_and(type_and_data), step_sendtype),
    "expecttype": (client_and(type_and_data), step_expecttype),
    "closed": (client_and(nothing), step_closed),
    "close": (client_and(nothing), step_close),
    "reset": (client_and(nothing), step_reset),
    "wait": (text, step_wait),
    "sleep": (seconds, step_sleep),
    "quit": (nothing, step_quit),
    "exit": (number, step_exit),
}


def stop_server(run):
    """After a failed step: "quit" and the end of its input, then, after STOP_TIMEOUT,
    a kill."""
    if run.exited:
        return
    run.say("[stdin] quit (the tour stops the server)")
    try:
        run.server.send("quit\n")
        run.server.end_input(STOP_TIMEOUT)
    except AssertionError:  # it has gone already, or it does not stop
        run.server.kill()


def play(exe, scenario):
    """Starts the server and plays every step; whatever happens, closes the clients and
    stops the server. Returns every line it printed; raises Failed."""
    try:
        server = harness.Server(exe, shlex.split(scenario.args))
    except AssertionError as e:  # the program is missing
        raise Failed(str(e).splitlines()[0])
    with server:
        run = Run(server)
        try:
            for step in scenario.steps:
                try:
                    STEPS[step.kind][1](run, step)
                except Failed as e:
                    raise Failed("step '%s' (tour.txt line %d): %s" % (step.source, step.line, e))
        finally:
            for letter in list(run.clients):
                forget(run, letter)
            stop_server(run)
            run.show_server_output()
        return list(server.stdout)


# --- chapters -----------------------------------------------------------------------
def run_chapter(options, name):
    """Plays one chapter and prints its verdict; returns whether it passed."""
    folder = os.path.join(options.chapters_dir, name)
    exe = os.path.join(options.build_dir, name + ".exe")
    try:
        scenario = Scenario(os.path.join(folder, "tour.txt"))
        # A chapter without notes still runs: its transcript shows what they should say.
        try:
            expected, readme_problem = expected_output(os.path.join(folder, "README.md")), None
        except Failed as e:
            expected, readme_problem = [], e
        say("== %s: %s%s" % (name, exe, " " + scenario.args if scenario.args else ""))
        got = play(os.path.abspath(exe), scenario)
        if readme_problem:
            raise readme_problem
        compare_output(expected, got)
    except Failed as e:
        say("FAIL %s: %s" % (name, e))
        return False
    say("PASS %s" % name)
    return True


def chapter_matches(name, wanted):
    """Whether WANTED names the chapter folder NAME: "03" or "03-accept" for 03-accept."""
    return name == wanted or name.startswith(wanted + "-")


def find_chapters(folder):
    """The chapter folders in FOLDER (those with a tour.txt), in name order."""
    return sorted(n for n in os.listdir(folder) if not n.startswith(".")
                  and os.path.isfile(os.path.join(folder, n, "tour.txt")))


class Options:
    """The command line: where things are, and the chapters asked for."""

    def __init__(self):
        self.build_dir = chapters.BUILD_DIR
        self.chapters_dir = chapters.CHAPTERS_DIR
        self.selected = []


def usage_error(problem, argument):
    print("tour: %s '%.60s'\n%s" % (problem, argument, USAGE), file=sys.stderr)
    sys.exit(2)


def parse_arguments(argv):
    """The Options of ARGV; exits 0 after --help, 2 on a bad argument."""
    options = Options()
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("--help", "-h"):
            print(USAGE)
            sys.exit(0)
        if arg in ("--build-dir", "--chapters-dir"):
            if not args or not args[0]:
                usage_error("this option needs a folder:", arg)
            setattr(options, arg[2:].replace("-", "_"), args.pop(0))
        elif not arg or arg.startswith("-"):
            usage_error("unknown option", arg)
        else:
            options.selected.append(arg)
    return options


def is_selected(options, name):
    return not options.selected or any(chapter_matches(name, w) for w in options.selected)


def play_chapters(options):
    """Plays the selected chapters in order; returns how many passed and failed."""
    try:
        names = find_chapters(options.chapters_dir)
    except OSError as e:
        print("tour: cannot list the chapters in '%s': %s" % (options.chapters_dir, e),
              file=sys.stderr)
        return 0, 0
    passed = [run_chapter(options, name) for name in names if is_selected(options, name)]
    unknown = [w for w in options.selected if not any(chapter_matches(n, w) for n in names)]
    for wanted in unknown:
        say("FAIL %s: no chapter in %s matches it (a folder NN-topic with a tour.txt)" % (
            wanted, options.chapters_dir))
    return passed.count(True), passed.count(False) + len(unknown)


def run_tour(options):
    """Plays the tour and prints its summary; returns the exit code: 0 only if at least
    one chapter ran and every one passed."""
    passed, failed = play_chapters(options)
    if passed + failed == 0:
        say("tour: no chapters found in %s" % options.chapters_dir)
    say("tour: %d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 and passed > 0 else 1


def tour(argv):
    """The tour with the command line ARGV, in a Wine session the caller has started."""
    return run_tour(parse_arguments(argv))


def main():
    options = parse_arguments(sys.argv[1:])
    try:
        with harness.wine_session():
            return run_tour(options)
    except KeyboardInterrupt:
        print("tour: interrupted", file=sys.stderr)
        return 130
    except AssertionError as e:  # Wine did not start
        print("tour: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
