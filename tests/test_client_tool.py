"""tools/client.c, the client a reader types into (`make client`), against a scripted
loopback server: it sends what is typed as it is, prints what the server sends as it is,
half-closes at the end of its input and exits 0 when the server closes; bad arguments
exit 2 with the problem and the usage."""

import os
import subprocess

import pytest

import harness
from chapters import BUILD_DIR
from loopback import ScriptedServer, reset_after_printed

CLIENT = os.path.join(BUILD_DIR, "tools", "client.exe")


def answer_after_end(reply):
    """A server script: reads everything until the client half-closes, sends REPLY and
    closes; what it read is left in the list it returns."""
    received = []

    def script(peer):
        received.append(peer.until_end())
        peer.send(reply)

    return script, received


def test_typed_lines_go_out_as_typed_and_replies_print_as_sent():
    script, received = answer_after_end(b"one\na\rb\x00\xff\nno line end")
    with ScriptedServer(script) as server:
        result = harness.run(CLIENT, ["127.0.0.1", str(server.port)],
                             stdin_data=b"hello\r\nworld\nlast without line end")
        server.join()
    assert received == [b"hello\r\nworld\nlast without line end"], result
    assert result.code == 0, result
    assert result.stdout == ["connected to 127.0.0.1:%d" % server.port, "one",
                             "a\rb\x00\ufffd", "no line end",
                             "server closed the connection"], result
    assert result.stderr == [], result


def test_replies_print_byte_for_byte():
    # harness.run hands back lines without their CR: this one needs the bytes, to show
    # that standard output is binary (a CR of the server's stays, none is added).
    script, _ = answer_after_end(b"one\r\ntwo\n")
    with ScriptedServer(script) as server:
        done = subprocess.run(harness.command(CLIENT, ["127.0.0.1", str(server.port)]),
                              stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=harness.EXIT_TIMEOUT)
        server.join()
    assert done.stdout == b"connected to 127.0.0.1:%d\none\r\ntwo\nserver closed the connection\n" \
        % server.port, done


def test_a_line_longer_than_its_buffer_goes_out_whole():
    line = b"x" * 10000 + b"\n"
    script, received = answer_after_end(b"")
    with ScriptedServer(script) as server:
        result = harness.run(CLIENT, ["127.0.0.1", str(server.port)], stdin_data=line)
        server.join()
    assert received == [line], result
    assert result.code == 0 and result.stdout[-1] == "server closed the connection", result


def test_ipv6_loopback_in_brackets():
    script, received = answer_after_end(b"hi\n")
    with ScriptedServer(script, host="::1") as server:
        result = harness.run(CLIENT, ["::1", str(server.port)], stdin_data=b"x\n")
        server.join()
    assert received == [b"x\n"], result
    assert result.stdout == ["connected to [::1]:%d" % server.port, "hi",
                             "server closed the connection"], result


def test_a_reset_is_reported_and_exits_1():
    result = reset_after_printed(CLIENT, b"reset next\n", r"^reset next$")
    assert result.code == 1, result.output()
    failures = [harness.ERROR_LINE.match(line) for line in result.stderr]
    assert [m.group("call", "code") for m in failures if m] == [("recv", "10054")], \
        result.output()


def test_nobody_listening_is_reported_and_exits_1():
    with ScriptedServer(lambda peer: None) as server:
        port = server.port
    result = harness.run(CLIENT, ["127.0.0.1", str(port)])
    assert result.code == 1, result
    match = harness.ERROR_LINE.match(result.stderr[-1])
    assert match and match.group("call", "code") == ("connect", "10061"), result


def test_help_prints_the_usage_and_exits_0():
    result = harness.run(CLIENT, ["--help"])
    assert result.code == 0, result
    assert result.stdout[0] == "usage: client.exe [HOST] [PORT]", result
    assert result.stderr == [], result


@pytest.mark.parametrize("args, problem", [
    (["--port", "9000"], "client: unknown option '--port'"),
    (["-x"], "client: unknown option '-x'"),
    (["127.0.0.1", "9000", "more"],
     "client: too many arguments: expected [HOST] [PORT], got also 'more'"),
    ([""], "client: HOST must not be empty: ''"),
    (["127.0.0.1", "0"], "client: PORT must be a whole number from 1 to 65535, not '0'"),
    (["127.0.0.1", "65536"],
     "client: PORT must be a whole number from 1 to 65535, not '65536'"),
    (["127.0.0.1", "90x"], "client: PORT must be a whole number from 1 to 65535, not '90x'"),
], ids=["option", "dash", "three", "empty-host", "port-0", "port-65536", "port-junk"])
def test_bad_arguments_name_the_problem_and_exit_2(args, problem):
    result = harness.run(CLIENT, args)
    assert result.code == 2, result
    assert result.stderr[0] == problem, result
    assert result.stderr[1] == "usage: client.exe [HOST] [PORT]", result
    assert result.stdout == [], result
