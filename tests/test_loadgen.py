"""tools/loadgen.c, the load generator (`make load`): many connections opened with
ConnectEx on one completion port, each sending messages and checking every byte that
comes back. Against real chapter servers (08 for raw echo, 11 for --framed) a short run
exits 0, opens every connection, and verifies as many bytes as the server says it echoed;
against broken echo servers written here (one flips a byte, one closes or resets a
connection early, one never answers a lone message) it exits 1 and names the problem;
nobody listening exits 1 naming ConnectEx and the error; a bad command line exits 2
naming the option.

"bytes verified" counts whole messages only, headers included: messages x --size raw,
messages x (--size + 5) with --framed; so when every connection ends cleanly it equals
the server's "bytes echoed".

--idle (the idle load of `make bench`): every connection echoes one message, then all are
held with no traffic for --seconds after a "holding N connections" line, then closed
gracefully; against chapters 08 and 11 it holds them all and exits 0; against broken
servers (one drops a connection's byte, one flips it, one closes a connection during the
hold) it exits 1 and names the problem, without waiting longer than its bounds."""

import json
import os
import re
import socket
import threading
import time

import pytest

import chapters
import harness
from chapters import BUILD_DIR

LOADGEN = os.path.join(BUILD_DIR, "tools", "loadgen.exe")
CONNECTIONS = 20
# A short run: one measured second, no warm-up.
SHORT = ["--seconds", "1", "--warmup", "0"]
# Its bound: connects, a second of load, the last echoes, Wine's start; a hang only.
RUN_TIMEOUT = 30.0
USAGE = "usage: loadgen.exe [options] [HOST] [PORT]"
ERRORS = ("connect", "reset", "mismatch", "timeout")
TEXT_OPENED = re.compile(r"^connections opened: (\d+) of (\d+), closed gracefully: (\d+)$")
TEXT_RATE = re.compile(r"^messages per second: [\d.]+ \((\d+) round trips in the 1 s measured\)$")
TEXT_LATENCY = re.compile(r"^round trip ms: p50 ([\d.]+), p99 ([\d.]+), max ([\d.]+)$")
TEXT_BYTES = re.compile(r"^bytes verified: (\d+) \((\d+) messages of (\d+) bytes\)$")
TEXT_ERRORS = "errors: 0 (connect failures 0, resets 0, mismatches 0, timeouts 0)"


def chapter(number):
    found = [c for c in chapters.ALL if c.number == number]
    if not found:
        pytest.skip("no chapter %02d" % number)
    return found[0]


def loadgen(*args):
    return harness.run(LOADGEN, list(args), timeout=RUN_TIMEOUT)


def report(result):
    """The --json report: the last line of standard output."""
    assert result.stdout, result
    return json.loads(result.stdout[-1])


def start_echo(start_server, number):
    """Chapter NUMBER's server: its port, and a served(connections, sent) that quits it and
    checks its summary, that it served CONNECTIONS and sent SENT bytes."""
    echo_chapter = chapter(number)
    server = start_server(echo_chapter, "--workers", "2", "--max-clients", "64")

    def served(connections, sent):
        assert server.quit() == 0, server.output()
        # The summary comes last, from the main thread after its workers have ended.
        assert server.stdout[-1] == echo_chapter.summary(connections, sent), server.output()
    return str(server.port), served


# --- against the chapters ------------------------------------------------------------
def test_raw_echo_on_08_verifies_what_the_server_echoed(start_server):
    port, served = start_echo(start_server, 8)
    result = loadgen("--connections", str(CONNECTIONS), *SHORT, "127.0.0.1", port)
    assert result.code == 0, result
    assert result.stderr == [], result
    lines = result.stdout
    assert lines[0].startswith("loadgen: %d connections to 127.0.0.1:%s, 64-byte messages "
                               "(raw), pipeline 1, " % (CONNECTIONS, port)), result
    assert [int(g) for g in TEXT_OPENED.match(lines[1]).groups()] == [CONNECTIONS] * 3, result
    measured = int(TEXT_RATE.match(lines[2]).group(1))
    p50, p99, longest = (float(g) for g in TEXT_LATENCY.match(lines[3]).groups())
    verified, messages, size = (int(g) for g in TEXT_BYTES.match(lines[4]).groups())
    assert lines[5:] == [TEXT_ERRORS], result
    # Every connection's last echoes come after the window, so more messages than measured.
    assert 0 < measured < messages and 0 < p50 <= p99 <= longest, result
    assert size == 64 and verified == messages * 64, result
    served(CONNECTIONS, verified)


def test_framed_echo_on_11_counts_the_headers(start_server):
    port, served = start_echo(start_server, 11)
    result = loadgen("--connections", str(CONNECTIONS), "--framed", "--json", *SHORT,
                     "127.0.0.1", port)
    assert result.code == 0, result
    assert len(result.stdout) == 1 and result.stderr == [], result
    got = report(result)
    assert (got["connections"], got["opened"], got["closed_gracefully"]) == \
        (CONNECTIONS, CONNECTIONS, CONNECTIONS), got
    assert got["framed"] is True and got["message_bytes"] == 64 + 5, got
    assert got["errors"] == dict.fromkeys(ERRORS, 0), got
    assert 0 < got["measured"] < got["messages"], got
    assert got["bytes_verified"] == got["messages"] * (64 + 5), got
    served(CONNECTIONS, got["bytes_verified"])


@pytest.mark.parametrize("number, args", [
    (8, ["--pipeline", "8"]),
    # Echoes in pieces that do not end where messages do (08 receives up to 4096 bytes at
    # a time), so a receive often runs past the end of the ring into its start.
    (8, ["--pipeline", "8", "--size", "1000"]),
    (11, ["--framed", "--pipeline", "4", "--size", "3000"]),
], ids=["08-raw-8", "08-raw-8x1000", "11-framed-4x3000"])
def test_pipelined(start_server, number, args):
    port, served = start_echo(start_server, number)
    result = loadgen("--connections", str(CONNECTIONS), "--json", *(SHORT + args),
                     "127.0.0.1", port)
    assert result.code == 0, result
    got = report(result)
    assert got["opened"] == CONNECTIONS and got["errors"] == dict.fromkeys(ERRORS, 0), got
    assert got["bytes_verified"] == got["messages"] * got["message_bytes"], got
    served(CONNECTIONS, got["bytes_verified"])


# --- broken echo servers -------------------------------------------------------------
class PythonEcho:
    """An echo server on loopback, one thread per connection, that breaks the first
    connection it accepts as BREAK says (the others it echoes as they come):
      ("flip", N)   flips stream byte N (xor 0xff) of what it echoes
      ("fin", N)    echoes N bytes, then half-closes (FIN), reading on to the end
      ("reset", N)  echoes N bytes, then resets the connection
      ("batch", K)  echoes every connection in batches of K messages of SIZE bytes: a
                    message is not echoed until K are there, so a client with fewer in
                    flight waits for ever
      ("drop", N)   drops stream byte N of what it echoes
      ("later", S)  echoes, and S seconds after its first echo half-closes (FIN)"""

    def __init__(self, break_with, size=64):
        self.kind, self.value = break_with
        self.size = size
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(harness.EXIT_TIMEOUT)
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self.threads = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(connection, self.accepted == 0),
                                      daemon=True)
            self.accepted += 1
            self.threads.append(thread)
            thread.start()

    def _serve(self, connection, first):
        connection.settimeout(harness.EXIT_TIMEOUT)
        echoed = 0
        pending = b""
        try:
            while True:
                data = connection.recv(65536)
                if not data:
                    return
                if self.kind == "batch":
                    pending += data
                    whole = len(pending) - len(pending) % (self.value * self.size)
                    data, pending = pending[:whole], pending[whole:]
                elif first and self.kind == "flip" and echoed <= self.value < echoed + len(data):
                    data = bytearray(data)
                    data[self.value - echoed] ^= 0xff
                elif first and self.kind in ("fin", "reset"):
                    data = data[:self.value - echoed]
                elif first and self.kind == "drop" and echoed <= self.value < echoed + len(data):
                    data = data[:self.value - echoed] + data[self.value - echoed + 1:]
                elif first and self.kind == "later":
                    connection.sendall(data)
                    time.sleep(self.value)
                    connection.shutdown(socket.SHUT_WR)
                    while connection.recv(65536):
                        pass
                    return
                connection.sendall(data)
                echoed += len(data)
                if first and self.kind in ("fin", "reset") and echoed == self.value:
                    if self.kind == "reset":
                        harness.reset(connection)
                        return
                    connection.shutdown(socket.SHUT_WR)
                    while connection.recv(65536):
                        pass
                    return
        except OSError:
            return  # the load generator reset it: what a mismatch makes it do
        finally:
            connection.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.listener.close()
        for thread in self.threads:
            thread.join(harness.EXIT_TIMEOUT)
        return False


def run_against(server, connections=5, *args):
    return loadgen("--connections", str(connections), "--json", *(SHORT + list(args)),
                   "127.0.0.1", str(server.port))


def test_a_flipped_byte_is_a_mismatch():
    # Stream byte 100 of a connection is byte 36 of its second 64-byte message.
    with PythonEcho(("flip", 100)) as server:
        result = run_against(server)
    assert result.code == 1, result
    got = report(result)
    assert got["opened"] == 5, got
    assert got["errors"] == dict(connect=0, reset=0, mismatch=1, timeout=0), got
    match = re.match(r"^loadgen: connection \d+: message 1, byte 36: "
                     r"sent 0x([0-9a-f]{2}), got 0x([0-9a-f]{2})$", result.stderr[-1])
    assert match and int(match.group(1), 16) ^ 0xff == int(match.group(2), 16), result
    # The other four connections go on and end cleanly.
    assert got["closed_gracefully"] == 4 and got["messages"] > 4, got


@pytest.mark.parametrize("how", ["fin", "reset"])
def test_a_connection_the_server_ends_early_is_a_reset(how):
    # Three whole echoes, then the end.
    with PythonEcho((how, 3 * 64)) as server:
        result = run_against(server)
    assert result.code == 1, result
    got = report(result)
    assert got["errors"] == dict(connect=0, reset=1, mismatch=0, timeout=0), got
    assert got["opened"] == 5 and got["closed_gracefully"] == 4, got
    # Of 192 sent, or 256: the fourth message is made once the third one's send has
    # completed, which may be dequeued after the end.
    early = re.compile(r"^loadgen: connection \d+: closed by the server before the end, "
                       r"with 192 of (192|256) bytes back$")
    if how == "fin":
        assert early.match(result.stderr[-1]), result
    else:
        # The reset fails whichever of the send and the receive meets it first; under Wine
        # one that comes before the next receive is posted reads as a FIN.
        failure = harness.ERROR_LINE.match(result.stderr[-1])
        assert (failure and failure.group("call", "code") in (("WSARecv", "10054"),
                                                              ("WSASend", "10054"))) or \
            early.match(result.stderr[-1]), result


def test_pipeline_keeps_k_messages_in_flight():
    # The server echoes nothing until a connection has 8 messages waiting: with fewer in
    # flight it would wait for ever, and the run would end in timeouts.
    with PythonEcho(("batch", 8)) as server:
        result = run_against(server, 5, "--pipeline", "8")
    assert result.code == 0, result
    got = report(result)
    assert got["errors"] == dict.fromkeys(ERRORS, 0) and got["closed_gracefully"] == 5, got
    assert got["messages"] > 0 and got["messages"] % 8 == 0, got


# --- --idle ----------------------------------------------------------------------------
HOLDING = re.compile(r"^holding (\d+) connections, each echoed once, for 1 s$")


def idle(port, connections=CONNECTIONS, *args):
    return loadgen("--idle", "--connections", str(connections), "--size", "1", "--seconds",
                   "1", "--json", *args, "127.0.0.1", str(port))


@pytest.mark.parametrize("number, args, message_bytes", [(8, [], 1), (11, ["--framed"], 6)],
                         ids=["08-raw", "11-framed"])
def test_idle_holds_every_connection_after_one_echo(start_server, number, args, message_bytes):
    port, served = start_echo(start_server, number)
    result = idle(port, CONNECTIONS, *args)
    assert result.code == 0, result
    assert [HOLDING.match(l).group(1) for l in result.stdout[:-1]] == [str(CONNECTIONS)], result
    got = report(result)
    assert got["idle"] is True and got["held"] == CONNECTIONS, got
    assert (got["opened"], got["closed_gracefully"], got["messages"]) == (CONNECTIONS,) * 3, got
    assert got["errors"] == dict.fromkeys(ERRORS, 0), got
    assert got["bytes_verified"] == CONNECTIONS * message_bytes, got
    served(CONNECTIONS, got["bytes_verified"])


@pytest.mark.parametrize("break_with, errors, problem", [
    (("drop", 0), dict(connect=0, reset=0, mismatch=0, timeout=1),
     r"^loadgen: connection \d+: 0 of 1 bytes back \d+ s after the window$"),
    (("flip", 0), dict(connect=0, reset=0, mismatch=1, timeout=0),
     r"^loadgen: connection \d+: message 0, byte 0: sent 0x[0-9a-f]{2}, got 0x[0-9a-f]{2}$"),
    (("later", 0.3), dict(connect=0, reset=1, mismatch=0, timeout=0),
     r"^loadgen: connection \d+: closed by the server before the end, with 1 of 1 bytes "
     r"back$"),
], ids=["dropped-byte", "flipped-byte", "closed-during-hold"])
def test_idle_fails_on_a_broken_server(break_with, errors, problem):
    with PythonEcho(break_with) as server:
        result = idle(server.port, 5)
    assert result.code == 1, result
    got = report(result)
    assert got["errors"] == errors and got["opened"] == 5, got
    # The four others are held and close cleanly; the broken one is held only when its
    # echo came back right.
    assert got["closed_gracefully"] == 4, got
    assert got["held"] == (5 if break_with[0] == "later" else 4), got
    assert re.match(problem, result.stderr[-1]), result


# --- failures of its own -------------------------------------------------------------
def test_nobody_listening_is_a_connect_failure_naming_connectex():
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # now nobody listens there
    result = loadgen("--connections", "5", *SHORT, "127.0.0.1", str(port))
    assert result.code == 1, result
    assert "connections opened: 0 of 5, closed gracefully: 0" in result.stdout, result
    assert result.stdout[-1] == \
        "errors: 5 (connect failures 5, resets 0, mismatches 0, timeouts 0)", result
    failure = harness.ERROR_LINE.match(result.stderr[-1])
    assert failure and failure.group("call", "code") == ("ConnectEx", "10061"), result


@pytest.mark.parametrize("args, problem", [
    (["--connections", "0"], "--connections must be a whole number from 1 to 10000, not '0'"),
    (["--size", "64k"], "--size must be a whole number from 1 to 16777216, not '64k'"),
    (["--pipeline", "1025"], "--pipeline must be a whole number from 1 to 1024, not '1025'"),
    (["--seconds", "0"], "--seconds must be a whole number from 1 to 3600, not '0'"),
    (["--warmup", "-1"], "--warmup must be a whole number from 0 to 3600, not '-1'"),
    (["--workers", "65"], "--workers must be a whole number from 1 to 64, not '65'"),
    (["--seconds"], "--seconds needs a number"),
    (["--framed", "--framed"], "--framed given more than once"),
    (["--idle", "--idle"], "--idle given more than once"),
    (["--connection", "5"], "unknown option '--connection'"),
    (["--connections", "10000", "--pipeline", "1024", "--size", "64"],
     "--connections x --pipeline x the message size is over 256 MiB in flight"),
], ids=["connections-0", "size-junk", "pipeline-over", "seconds-0", "warmup-negative",
        "workers-over", "missing-value", "twice", "idle-twice", "unknown",
        "too-much-in-flight"])
def test_bad_options_name_the_problem_and_exit_2(args, problem):
    result = loadgen(*args)
    assert result.code == 2, result
    assert result.stderr[:2] == ["loadgen: " + problem, USAGE], result
    assert result.stdout == [], result
