"""tools/chat.c, the chat client a reader types into (`make chat`), against a scripted
loopback server that speaks chapter 12's messages (5-byte header: length, big-endian,
and type; then the payload): typed lines go out as JOIN, SAY, LEAVE and ECHO messages,
each message from the server prints as one line with its control bytes escaped, a
message it cannot take ends it with exit 1, the server's close with exit 0, and bad
arguments exit 2 with the problem and the usage."""

import os
import socket
import time

import pytest

import harness
from chapters import BUILD_DIR
from harness import (ECHO_TYPE, ERROR_TYPE, JOIN_TYPE, LEAVE_TYPE, MESSAGE_TYPE, NOTICE_TYPE,
                     SAY_TYPE, message, message_header)
from loopback import ScriptedServer, reset_after_printed

CHAT = os.path.join(BUILD_DIR, "tools", "chat.exe")
# The longest payload chat.exe takes from a server: MAX_MAX_MESSAGE (common/options.h)
# plus 64 bytes for "NAME: ".
MAX_PAYLOAD = 16 * 1024 * 1024 + 64
CLOSED = "connection closed by the server"


def chat(typed=b"", replies=b"", args=(), host="127.0.0.1"):
    """Runs chat.exe with TYPED as its standard input against a server that reads
    everything until the client half-closes, then sends REPLIES and closes. Returns (the
    run's result, the bytes the server received)."""
    received = []

    def script(peer):
        received.append(peer.until_end())
        peer.send(replies)

    with ScriptedServer(script, host=host) as server:
        result = harness.run(CHAT, list(args) + [host, str(server.port)], stdin_data=typed)
        server.join()
    return result, received[0]


def ended_by(first):
    """Runs chat.exe against a server that sends FIRST and then only waits for the client
    to go away; returns the run's result."""
    def script(peer):
        peer.send(first)
        peer.until_end()

    with ScriptedServer(script) as server:
        result = harness.run(CHAT, ["127.0.0.1", str(server.port)])
        server.join()
    return result


# --- what a typed line sends -----------------------------------------------------------
def test_join_sends_the_join_message():
    result, received = chat(b"/join bob\n")
    assert received == b"\x00\x00\x00\x03\x02bob", result
    assert result.code == 0, result


def test_a_line_is_said_without_its_line_end():
    result, received = chat(b"hello room\r\nsecond line\n")
    assert received == message(SAY_TYPE, b"hello room") + message(SAY_TYPE, b"second line"), \
        result
    assert result.code == 0, result


@pytest.mark.parametrize("typed, sent", [
    (b"/leave\n", message(LEAVE_TYPE)),
    (b"/echo are you there?\n", message(ECHO_TYPE, b"are you there?")),
    (b"/echo\n", message(ECHO_TYPE)),
    (b"//join is a command\n", message(SAY_TYPE, b"/join is a command")),
    (b"/joined the club\n", message(SAY_TYPE, b"/joined the club")),
    (b"\n", message(SAY_TYPE)),
    (b"no line end", message(SAY_TYPE, b"no line end")),
    (b"caf\xc3\xa9 \x01\n", message(SAY_TYPE, b"caf\xc3\xa9 \x01")),
], ids=["leave", "echo", "echo-empty", "double-slash", "not-a-command", "empty", "last-line",
        "bytes"])
def test_commands_and_lines_send_their_message(typed, sent):
    result, received = chat(typed)
    assert received == sent, result
    assert result.code == 0, result


def test_name_option_joins_before_anything_typed():
    result, received = chat(b"hi\n", args=["--name", "alice"])
    assert received == message(JOIN_TYPE, b"alice") + message(SAY_TYPE, b"hi"), result


def test_quit_half_closes_and_waits_for_the_server():
    result, received = chat(b"/join bob\n/quit\nnot sent\n",
                            replies=message(NOTICE_TYPE, b"bob left"))
    assert received == message(JOIN_TYPE, b"bob"), result
    assert result.stdout == ["* bob left"], result
    assert result.stderr[-1] == CLOSED and result.code == 0, result


def test_help_is_printed_and_sends_nothing():
    result, received = chat(b"/help\n")
    assert received == b"", result
    assert result.stdout[0] == "commands:", result
    assert any(line.lstrip().startswith("/join NAME") for line in result.stdout), result


def test_a_line_too_long_is_refused_whole():
    result, received = chat(b"/join " + b"x" * 5000 + b"\nafter\n")
    assert received == message(SAY_TYPE, b"after"), result
    assert "chat: line not sent: longer than 4095 bytes" in result.stderr, result


# --- what a received message prints ----------------------------------------------------
def test_each_message_prints_as_one_line():
    replies = (message(NOTICE_TYPE, b"bob joined") + message(MESSAGE_TYPE, b"bob: hi all") +
               message(ERROR_TYPE, b"the name bob is taken") + message(ECHO_TYPE, b"ping") +
               message(MESSAGE_TYPE, b"bob: "))
    result, _ = chat(replies=replies)
    assert result.stdout == ["* bob joined", "bob: hi all", "! the name bob is taken",
                             "echo: ping", "bob: "], result
    assert result.code == 0, result


def test_messages_cut_anywhere_print_whole():
    # One byte a send, with a pause after each, so that the client's receives cut the
    # messages at every byte, headers included.
    replies = message(MESSAGE_TYPE, b"eve: one") + message(NOTICE_TYPE, b"eve left")

    def script(peer):
        peer.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer.until_end()
        for i in range(len(replies)):
            peer.send(replies[i:i + 1])
            time.sleep(0.005)

    with ScriptedServer(script) as server:
        result = harness.run(CHAT, ["127.0.0.1", str(server.port)])
        server.join()
    assert result.stdout == ["eve: one", "* eve left"], result
    assert result.code == 0, result


def test_control_bytes_are_escaped():
    text = b"eve: \x1b[2J\x07bell\x00\r\nx\x7f \\ caf\xc3\xa9 \xc2\x9b\xff\xe2\x82"
    result, _ = chat(replies=message(MESSAGE_TYPE, text) + message(NOTICE_TYPE, b"\x1b]0;t\x07"))
    assert result.stdout == [
        "eve: \\x1b[2J\\x07bell\\x00\\x0d\\x0ax\\x7f \\\\ caf\u00e9 \\xc2\\x9b\\xff\\xe2\\x82",
        "* \\x1b]0;t\\x07"], result
    assert result.code == 0, result


def test_the_longest_payload_is_taken():
    text = b"eve: " + b"a" * (MAX_PAYLOAD - 5)
    result, _ = chat(replies=message(MESSAGE_TYPE, text) + message(NOTICE_TYPE, b"done"))
    assert result.code == 0, result
    assert result.stdout == [text.decode(), "* done"], result.stderr


# --- how it ends -----------------------------------------------------------------------
def test_server_close_exits_0():
    result, _ = chat()
    assert result.code == 0, result
    assert result.stderr == ["connected to 127.0.0.1:%s; /help lists the commands"
                             % result.args[-1], CLOSED], result


def test_ipv6_loopback():
    result, received = chat(b"/join bob\n", host="::1")
    assert received == message(JOIN_TYPE, b"bob"), result
    assert result.stderr[0].startswith("connected to [::1]:"), result
    assert result.code == 0, result


@pytest.mark.parametrize("first, why", [
    (message_header(MAX_PAYLOAD + 1, MESSAGE_TYPE),
     "chat: the server sent a message longer than %d bytes" % MAX_PAYLOAD),
    (message(9, b"what"), "chat: the server sent a message of unknown type 9"),
    (message(0, b""), "chat: the server sent a message of unknown type 0"),
    (message(SAY_TYPE, b"hi"),
     "chat: the server sent a message of type 3, which only clients send"),
], ids=["too-long", "unknown-9", "unknown-0", "client-type"])
def test_a_message_it_cannot_take_ends_it_with_1(first, why):
    result = ended_by(message(NOTICE_TYPE, b"before") + first)
    assert result.code == 1, result
    assert result.stdout == ["* before"], result
    assert result.stderr[-1] == why, result


def test_a_close_in_the_middle_of_a_message_exits_1():
    result, _ = chat(replies=message(MESSAGE_TYPE, b"eve: cut short")[:9])
    assert result.code == 1, result
    assert result.stderr[-1] == \
        "chat: the server closed the connection in the middle of a message", result


def test_a_reset_is_reported_and_exits_1():
    result = reset_after_printed(CHAT, message(NOTICE_TYPE, b"reset next"), r"^\* reset next$")
    assert result.code == 1, result.output()
    failures = [harness.ERROR_LINE.match(line) for line in result.stderr]
    assert [m.group("call", "code") for m in failures if m] == [("recv", "10054")], \
        result.output()
    assert CLOSED not in result.stderr, result.output()


def test_nobody_listening_is_reported_and_exits_1():
    with ScriptedServer(lambda peer: None) as server:
        port = server.port
    result = harness.run(CHAT, ["127.0.0.1", str(port)])
    assert result.code == 1, result
    match = harness.ERROR_LINE.match(result.stderr[-1])
    assert match and match.group("call", "code") == ("connect", "10061"), result


# --- the command line ------------------------------------------------------------------
USAGE = "usage: chat.exe [--name NAME] [HOST] [PORT]"


def test_help_prints_the_usage_and_exits_0():
    result = harness.run(CHAT, ["--help"])
    assert result.code == 0, result
    assert result.stdout[0] == USAGE, result
    assert result.stderr == [], result


@pytest.mark.parametrize("args, problem", [
    (["--port", "9000"], "chat: unknown option '--port'"),
    (["--name"], "chat: --name needs a NAME"),
    (["--name", "a", "--name", "b"], "chat: --name given more than once"),
    (["--name", ""], "chat: NAME must be 1 to 32 letters, digits, '-', '_' or '.', not ''"),
    (["--name", "bob smith"],
     "chat: NAME must be 1 to 32 letters, digits, '-', '_' or '.', not 'bob smith'"),
    (["--name", "x" * 33],
     "chat: NAME must be 1 to 32 letters, digits, '-', '_' or '.', not '%s'" % ("x" * 33)),
    (["127.0.0.1", "9000", "more"],
     "chat: too many arguments: expected [HOST] [PORT], got also 'more'"),
    ([""], "chat: HOST must not be empty: ''"),
    (["127.0.0.1", "0"], "chat: PORT must be a whole number from 1 to 65535, not '0'"),
    (["127.0.0.1", "65536"], "chat: PORT must be a whole number from 1 to 65535, not '65536'"),
], ids=["option", "name-missing", "name-twice", "name-empty", "name-space", "name-33",
        "three", "empty-host", "port-0", "port-65536"])
def test_bad_arguments_name_the_problem_and_exit_2(args, problem):
    result = harness.run(CHAT, args)
    assert result.code == 2, result
    assert result.stderr[0] == problem, result
    assert result.stderr[1] == USAGE, result
    assert result.stdout == [], result
