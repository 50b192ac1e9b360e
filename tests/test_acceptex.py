"""A chapter that accepts with AcceptEx (--accepts N kept outstanding on the listener,
each re-posted as soon as a worker handles its completion) accepts a thousand clients
connecting at once and echoes every one; refuses a burst past its pool by closing the
extra clients and goes on accepting; stops with accepts outstanding and clients
connected, cancelling the accepts, closing the clients and exiting 0; is never held up
by a client that connects and sends nothing, since its accepts carry no receive data;
and refuses an --accepts outside 1-1024. For a chapter with messages every message sent
is one echo message (chapter.message), and the summary counts their headers too.
"""

import errno
import re
import select
import socket
import time

import pytest

import chapters
import harness
from harness import closed_by_peer, connect, echo, local_port, still_open

ACCEPTEX = chapters.chapters_with("acceptex")
IDS = chapters.ids(ACCEPTEX)
EXIT_USAGE = 2

CONNECTED = re.compile(r"^client (?P<id>\d+) connected from 127\.0\.0\.1:(?P<port>\d+) ")
REFUSED = re.compile(r"^refused 127\.0\.0\.1:(?P<port>\d+): all (?P<slots>\d+) slots are taken$")
DISCONNECTED = re.compile(r"^client (?P<id>\d+) disconnected: (?P<reason>.+) "
                          r"\((?P<live>\d+) live\)$")
POSTED = r"^(?P<count>\d+) accepts posted on the listener$"
# What connect_ex may return at once for a non-blocking connect that is under way.
CONNECT_STARTED = {0, errno.EINPROGRESS, errno.EWOULDBLOCK,
                   getattr(errno, "WSAEWOULDBLOCK", 10035)}

# Bounds that only catch hangs, for a loaded 2-core machine; nothing here measures speed.
THOUSAND = 1000
THOUSAND_TIMEOUT = 60.0  # connecting, or echoing, a thousand clients
BURST_TIMEOUT = 30.0     # a burst of 30 clients to be admitted or refused
SILENT_TIMEOUT = 10.0    # the client behind five silent ones to be admitted and echoed


def posted(server):
    """The number of accepts the server says it posted, once it is listening (the port is
    read first: wait_for moves past the lines before the one it matches)."""
    assert server.port
    return int(server.wait_for(POSTED).group("count"))


def ports_of(lines, regex):
    """The client ports in the lines that match REGEX, in order."""
    return [int(m.group("port")) for m in map(regex.match, lines) if m]


def count(lines, regex):
    return sum(1 for line in lines if regex.match(line))


def connect_at_once(port, number, timeout):
    """NUMBER clients connecting to 127.0.0.1:PORT all at once: every connect is started
    (non-blocking) before any is waited for. Returns the connected sockets, blocking
    again with harness.CLIENT_TIMEOUT. The kernel completes a loopback handshake while
    the connection waits in the listen backlog, so this says nothing yet about accepting;
    raises AssertionError if a connect fails or they are not all connected in TIMEOUT.
    Each is waited for on its own: select() on Windows takes at most 512 sockets."""
    clients = []
    try:
        for _ in range(number):
            client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            clients.append(client)
            client.setblocking(False)
            code = client.connect_ex(("127.0.0.1", port))
            assert code in CONNECT_STARTED, "connect %d of %d: %s" % (
                len(clients), number, errno.errorcode.get(code, code))
        deadline = time.monotonic() + timeout
        for done, client in enumerate(clients):
            left = max(0.0, deadline - time.monotonic())
            _, writable, failed = select.select([], [client], [client], left)
            assert writable or failed, "%d of %d connects not done after %s s" % (
                number - done, number, timeout)
            code = client.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            assert code == 0, "connect %d of %d failed: %s" % (
                done + 1, number, errno.errorcode.get(code, code))
            client.settimeout(harness.CLIENT_TIMEOUT)
        return clients
    except BaseException:
        for client in clients:
            client.close()
        raise


def echo_all_at_once(clients, messages, timeout):
    """Sends MESSAGES[i] on CLIENTS[i], every one before any echo is read, then receives
    on each as many bytes as it sent (fewer if the server closes it first). Returns what
    came back to each. The messages are short, so each send fits in the socket's buffer
    and sending all first cannot stall. Raises AssertionError, saying how many clients
    have no full echo, if they are not all back within TIMEOUT."""
    for client, message in zip(clients, messages):
        client.sendall(message)
    deadline = time.monotonic() + timeout
    back = [bytearray() for _ in clients]
    missing = []
    for i, client in enumerate(clients):
        ended = False
        while len(back[i]) < len(messages[i]) and not ended:
            left = deadline - time.monotonic()
            try:
                if left > 0:
                    client.settimeout(left)
                else:  # past the deadline: only what has come already
                    client.setblocking(False)
                chunk = client.recv(len(messages[i]) - len(back[i]))
            except (socket.timeout, BlockingIOError):
                missing.append(i)
                break
            except (ConnectionResetError, ConnectionAbortedError):
                chunk = b""
            back[i] += chunk
            ended = not chunk
        client.settimeout(harness.CLIENT_TIMEOUT)
    assert not missing, "%d of %d clients have no full echo after %s s; first: ports %s" % (
        len(missing), len(clients), timeout, [local_port(clients[i]) for i in missing[:10]])
    return [bytes(b) for b in back]


def close_all(clients):
    for client in clients:
        client.close()


def message_for(chapter, number):
    """A short message that no other client sends: one echo message, for a chapter with
    messages."""
    return chapter.message(b"client %04d says hello\n" % number)


@pytest.mark.parametrize("chapter", ACCEPTEX, ids=IDS)
def test_a_thousand_clients_connecting_at_once_are_all_echoed(chapter, start_server):
    """A thousand clients connect at once, with only 8 accepts outstanding: each accept
    must be posted again as soon as it completes, or the clients after the first 8 wait
    in the backlog for ever. Asserted: every client gets exactly its own message back;
    the server prints one connected line for each client's port (no refusal, no error);
    after the clients close and the server has seen every disconnect, "quit" exits 0
    with a summary counting 1,000 connections and every byte echoed."""
    server = start_server(chapter, "--max-clients", str(THOUSAND + 24), "--accepts", "8")
    assert posted(server) == 8, server.output()
    started = time.monotonic()
    clients = connect_at_once(server.port, THOUSAND, THOUSAND_TIMEOUT)
    try:
        connected = time.monotonic()
        messages = [message_for(chapter, i) for i in range(THOUSAND)]
        back = echo_all_at_once(clients, messages, THOUSAND_TIMEOUT)
        wrong = [(i, back[i]) for i in range(THOUSAND) if back[i] != messages[i]]
        assert not wrong, ("%d of %d echoes differ from what was sent, first: %r" % (
            len(wrong), THOUSAND, wrong[:5]), server.output())
        echoed = time.monotonic()
        print("%d clients: connected in %.1f s, all echoed %.1f s later" % (
            THOUSAND, connected - started, echoed - connected))

        lines = server.wait_until(
            lambda lines: count(lines, CONNECTED) >= THOUSAND and lines,
            what="%d connected lines" % THOUSAND)
        assert sorted(ports_of(lines, CONNECTED)) == sorted(local_port(c) for c in clients), \
            ("the connected lines are not one for each client", server.output())
        assert not any(REFUSED.match(line) for line in lines), server.output()
    finally:
        close_all(clients)
    server.wait_until(lambda lines: count(lines, DISCONNECTED) == THOUSAND,
                      timeout=THOUSAND_TIMEOUT, what="%d disconnected lines" % THOUSAND)
    assert server.quit() == 0, server.output()
    assert server.stdout[-1] == chapter.summary(THOUSAND, sum(len(m) for m in messages)), \
        server.output()
    assert server.stderr == [], server.output()


@pytest.mark.parametrize("chapter", ACCEPTEX, ids=IDS)
def test_a_burst_past_the_pool_is_refused_and_accepting_goes_on(chapter, start_server):
    """With --max-clients 10 (and 4 accepts outstanding), 30 clients connect at once.
    Asserted: exactly 10 are admitted (a connected line each) and 20 refused (a refused
    line each), one line for every client's port; each refused client sees its connection
    closed (end of stream or a reset, within a bound, never a hang); each admitted client
    gets its own message back exactly. Then the 10 close, and 10 new clients are admitted
    as clients 11-20 and echoed, with no new refusal: a refusal neither used up an accept
    nor stopped accepting. "quit" exits 0 and the summary counts 20 connections and the
    bytes of their 20 messages."""
    slots, burst = 10, 30
    server = start_server(chapter, "--max-clients", str(slots), "--workers", "2",
                          "--accepts", "4")
    assert posted(server) == 4, server.output()
    clients = connect_at_once(server.port, burst, BURST_TIMEOUT)
    fresh = []
    try:
        lines = server.wait_until(
            lambda lines: count(lines, CONNECTED) + count(lines, REFUSED) >= burst and lines,
            timeout=BURST_TIMEOUT, what="a connected or refused line for each of %d" % burst)
        by_port = {local_port(c): c for c in clients}
        admitted, refused = ports_of(lines, CONNECTED), ports_of(lines, REFUSED)
        assert len(admitted) == slots and len(refused) == burst - slots, (
            "%d admitted, %d refused" % (len(admitted), len(refused)), server.output())
        assert sorted(admitted + refused) == sorted(by_port), (
            "not one line for each client", server.output())
        assert all(int(REFUSED.match(l).group("slots")) == slots
                   for l in lines if REFUSED.match(l)), server.output()

        not_closed = [p for p in refused if not closed_by_peer(by_port[p])]
        assert not not_closed, ("refused clients not closed by the server: %r" % not_closed,
                                server.output())
        kept = [by_port[p] for p in admitted]
        messages = [message_for(chapter, i) for i in range(slots)]
        assert echo_all_at_once(kept, messages, BURST_TIMEOUT) == messages, server.output()
        echoed = sum(map(len, messages))

        close_all(clients)
        # Each line is printed after its slot is back in the pool.
        server.wait_until(lambda lines: count(lines, DISCONNECTED) == slots,
                          timeout=BURST_TIMEOUT, what="%d disconnected lines" % slots)

        fresh = connect_at_once(server.port, slots, BURST_TIMEOUT)
        messages = [message_for(chapter, 100 + i) for i in range(slots)]
        assert echo_all_at_once(fresh, messages, BURST_TIMEOUT) == messages, server.output()
        echoed += sum(map(len, messages))
        lines = server.wait_until(lambda lines: count(lines, CONNECTED) >= 2 * slots and lines,
                                  what="%d more connected lines" % slots)
        again = [CONNECTED.match(l) for l in lines if CONNECTED.match(l)][slots:]
        assert sorted(int(m.group("port")) for m in again) == \
            sorted(local_port(c) for c in fresh), server.output()
        assert sorted(int(m.group("id")) for m in again) == \
            list(range(slots + 1, 2 * slots + 1)), server.output()
        assert count(lines, REFUSED) == burst - slots, server.output()
    finally:
        close_all(clients + fresh)
    assert server.quit() == 0, server.output()
    assert server.stdout[-1] == chapter.summary(2 * slots, echoed), server.output()
    assert server.stderr == [], server.output()


WAYS = [
    pytest.param("quit", "quit", id="quit"),
    pytest.param("interrupt", harness.INTERRUPT_NAME, id="interrupt"),
]


@pytest.mark.parametrize("way,reason", WAYS)
@pytest.mark.parametrize("chapter", ACCEPTEX, ids=IDS)
def test_stops_with_accepts_outstanding_and_clients_connected(chapter, way, reason,
                                                              start_server):
    """With --workers 3 and no --accepts, 12 accepts (4 per worker) are posted; 5 clients
    connect and echo once, so 12 accepts and 5 receives are pending at the stop. Asserted:
    "quit" (or Ctrl+C) ends the program with exit code 0 within harness.STOP_TIMEOUT (the
    outstanding accepts are cancelled, not waited out: the drain gives up only after
    10 s, and then the exit code is 1), nothing on stderr, each client disconnected by
    "server stopping" and seeing its connection closed, and the summary last."""
    server = start_server(chapter, "--workers", "3")
    assert posted(server) == 12, server.output()
    clients = [connect(server.port) for _ in range(5)]
    try:
        messages = [message_for(chapter, i) for i in range(len(clients))]
        for client, message in zip(clients, messages):
            assert echo(client, message) == message, server.output()
        started = time.monotonic()
        code = getattr(server, way)(timeout=harness.EXIT_TIMEOUT)
        took = time.monotonic() - started
        print("%s with 12 accepts outstanding and 5 clients: exit %s after %.2f s" % (
            way, code, took))
        assert code == 0, server.output()
        assert took < harness.STOP_TIMEOUT, ("%s took %.1f s" % (way, took), server.output())
        assert all(closed_by_peer(c) for c in clients), server.output()
    finally:
        close_all(clients)
    lines = server.stdout
    assert "stopping: %s" % reason in lines, server.output()
    reasons = [m.group("reason") for m in map(DISCONNECTED.match, lines) if m]
    assert reasons == ["server stopping"] * len(clients), server.output()
    assert lines[-1] == chapter.summary(5, sum(map(len, messages))), server.output()
    assert server.stderr == [], server.output()


@pytest.mark.parametrize("chapter", ACCEPTEX, ids=IDS)
def test_silent_clients_do_not_hold_up_accepting(chapter, start_server):
    """With a single accept outstanding (--accepts 1), 5 clients connect and send nothing,
    then a 6th connects. An AcceptEx posted with room for receive data completes only
    when the client sends, so the first silent client would hold the only accept and
    nobody after it would be accepted; posted with none, it completes at the connect.
    Asserted: the 6th client gets its message back within SILENT_TIMEOUT; all 6 were
    admitted (a connected line for each port); the silent ones are still connected and
    then echo too; "quit" exits 0."""
    server = start_server(chapter, "--accepts", "1")
    assert posted(server) == 1, server.output()
    silent = [connect(server.port) for _ in range(5)]
    last = None
    try:
        last = connect(server.port, timeout=SILENT_TIMEOUT)
        message = chapter.message(b"after five silent clients\n")
        try:
            back = echo(last, message)
        except socket.timeout:
            raise AssertionError("the client after 5 silent ones got no echo in %s s\n%s" % (
                SILENT_TIMEOUT, server.output())) from None
        assert back == message, server.output()
        lines = server.wait_until(lambda lines: count(lines, CONNECTED) >= 6 and lines,
                                  what="6 connected lines")
        assert sorted(ports_of(lines, CONNECTED)) == \
            sorted(local_port(c) for c in silent + [last]), server.output()
        assert all(still_open(c) for c in silent), server.output()
        for number, client in enumerate(silent):
            message = message_for(chapter, number)
            assert echo(client, message) == message, server.output()
    finally:
        close_all(silent + ([last] if last else []))
    assert server.quit() == 0, server.output()
    assert server.stderr == [], server.output()


@pytest.mark.parametrize("value", ["0", "1025"])
@pytest.mark.parametrize("chapter", ACCEPTEX, ids=IDS)
def test_accepts_out_of_range_exits_2(chapter, value):
    """--accepts must be from 1 to 1024 (each outstanding accept holds a socket made
    beforehand). Asserted for 0 and 1025: exit code 2, a problem naming --accepts and
    the value, the usage, and nothing on stdout (no listener was opened)."""
    result = harness.run(chapter.exe, ["--port", "0", "--accepts", value])
    assert result.code == EXIT_USAGE, result
    assert re.search(r"--accepts .*'%s'" % value, result.err), result
    assert re.search(r"(?m)^usage: ", result.err), result
    assert result.stdout == [], result


@pytest.mark.parametrize("chapter", ACCEPTEX, ids=IDS)
def test_accepts_at_the_top_of_the_range_are_all_posted(chapter, start_server):
    """--accepts 1024, the largest allowed, posts all 1024 accepts, a client is served,
    and "quit" cancels all of them and exits 0 with nothing on stderr."""
    server = start_server(chapter, "--accepts", "1024")
    assert posted(server) == 1024, server.output()
    client = connect(server.port)
    try:
        message = chapter.message(b"one of 1024\n")
        assert echo(client, message) == message, server.output()
    finally:
        client.close()
    assert server.quit() == 0, server.output()
    assert server.stderr == [], server.output()
