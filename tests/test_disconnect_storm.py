"""2,000 connections that end every way a client can end them (FIN after an echo, RST
before sending anything, RST after an echo, RST with the echo still unread) do not
disturb a server that notices disconnects: it keeps echoing for a control client all
the while, it ends each connection exactly once, and once every client has gone its
count of live clients is back to 0. For a chapter with messages every echo is one echo
message (chapter.message), the unread ones too.
"""

import re
import threading
import time

import pytest

import chapters
from harness import connect, echo, local_port, random_source, reset

DISCONNECTERS = chapters.chapters_with("disconnect", "echo")
THREADS = 8
WORKERS = 2
PER_THREAD = 250
SLOTS = 256  # far more than the clients alive at once: a refusal means lost slots
CONNECTED = re.compile(r"^client (?P<id>\d+) connected from 127\.0\.0\.1:\d+ ")
DISCONNECTED = re.compile(r"^client (?P<id>\d+) disconnected: (?P<reason>.+) \((?P<live>\d+) live\)$")
# Every way the server may tell why a connection ended, with a number and a text.
REASON = re.compile(r"^(peer closed the connection|"
                    r"(receive|send|WSARecv|WSASend) failed: \d+ \S.*)$")
STORM_TIMEOUT = 300.0  # only catches a hang
SETTLE_TIMEOUT = 30.0


class StormFailure(Exception):
    """A storm connection that failed, with the client's port to find it in the output."""

    def __init__(self, client_port, what):
        super().__init__(client_port, what)
        self.client_port = client_port
        self.what = what


def one_connection(chapter, port, kind, rng):
    """Opens a connection and ends it the way KIND says."""
    client = connect(port)
    client_port = local_port(client)
    step = "connected"
    try:
        if kind == "rst-at-once":
            reset(client)
            return
        message = chapter.message(rng.randbytes(rng.randint(1, 3000)))
        if kind == "rst-unread":
            client.sendall(message)  # the echo is still on its way back
            reset(client)
            return
        step = "echoing %d bytes" % len(message)
        back = echo(client, message)
        assert back == message, "%d bytes sent, %d came back%s" % (
            len(message), len(back), "" if len(back) != len(message) else " changed")
        if kind == "rst-after-echo":
            reset(client)
        else:
            client.close()  # FIN
    except (OSError, AssertionError) as e:
        raise StormFailure(client_port, "%s: %r" % (step, e))
    finally:
        client.close()


def storm(chapter, port, rng, failures, kinds):
    """PER_THREAD connections one after another, each ended a random way (from RNG);
    stops at the first that fails (then the server is broken, and each further client
    would only wait for its timeout)."""
    for number in range(PER_THREAD):
        kind = rng.choice(("fin", "rst-at-once", "rst-after-echo", "rst-unread"))
        try:
            one_connection(chapter, port, kind, rng)
        except StormFailure as e:
            failures.append((e.client_port, "connection %d (%s) from port %d, %s" % (
                number + 1, kind, e.client_port, e.what)))
            return
        except OSError as e:  # connect itself failed
            failures.append((None, "connection %d (%s): connect: %r" % (number + 1, kind, e)))
            return
        kinds[kind] = kinds.get(kind, 0) + 1


def control(chapter, port, done, results):
    """Echo round trips on one connection until DONE is set; every one must succeed."""
    client = connect(port)
    try:
        number = 0
        while not done.is_set():
            message = chapter.message(b"control round trip %d\n" % number)
            back = echo(client, message)
            if back != message:
                results["failure"] = "round trip %d: sent %r, got %r" % (number, message, back)
                return
            number += 1
            results["round trips"] = number
            time.sleep(0.01)
        results["client"] = client  # closed by the test once the storm is over
        client = None
    except OSError as e:
        results["failure"] = "round trip %d: %r" % (results.get("round trips", 0), e)
    finally:
        if client is not None:
            client.close()


def settled(lines):
    """Once as many clients have disconnected as connected (and at least one has)."""
    connected = sum(1 for line in lines if CONNECTED.match(line))
    disconnected = sum(1 for line in lines if DISCONNECTED.match(line))
    return connected and connected == disconnected


@pytest.mark.parametrize("chapter", DISCONNECTERS, ids=chapters.ids(DISCONNECTERS))
def test_two_thousand_connections_end_every_way(chapter, start_server):
    server = start_server(chapter, "--max-clients", str(SLOTS), "--workers", str(WORKERS))
    port = server.port
    done = threading.Event()
    results = {}
    controller = threading.Thread(target=control, args=(chapter, port, done, results),
                                  daemon=True)
    controller.start()
    failures = []
    kinds = [{} for _ in range(THREADS)]
    # One source per thread, made here in a fixed order, so the seed replays every thread.
    rngs = [random_source() for _ in range(THREADS)]
    started = time.monotonic()
    threads = [threading.Thread(target=storm, args=(chapter, port, rngs[i], failures, kinds[i]),
                                daemon=True) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(1.0, started + STORM_TIMEOUT - time.monotonic()))
    stormed = time.monotonic() - started
    done.set()
    controller.join(10.0)
    assert not any(t.is_alive() for t in threads + [controller]), (
        "clients still busy after %s s" % STORM_TIMEOUT, server.output())
    assert server.running(), ("the server ended during the storm", server.output())
    if failures:
        # Say for each failed client whether the server had accepted it: clients never
        # accepted while others wait mean the accepter stopped.
        printed = "\n".join(server.stdout)
        described = ["%s (%s)" % (what, "never accepted" if client_port and not re.search(
            r"(?m)^client \d+ connected from 127\.0\.0\.1:%d " % client_port, printed)
            else "accepted") for client_port, what in failures]
        pytest.fail("%d of %d client threads failed:\n%s\n%s" % (
            len(failures), THREADS, "\n".join(described), server.output()))
    assert "failure" not in results, ("the control client failed during the storm",
                                      results, server.output())
    assert results.get("round trips", 0) > 0, server.output()

    # A last client echoes: the accepter has taken every connection queued before it.
    last = connect(port)
    message = chapter.message(b"after the storm\n")
    assert echo(last, message) == message, server.output()
    last.close()
    results["client"].close()
    server.wait_until(settled, SETTLE_TIMEOUT, "as many disconnected lines as connected")

    lines = list(server.stdout)
    assert not [line for line in lines if line.startswith("refused ")], server.output()
    connected_at, disconnected_at, live_counts = {}, {}, []
    connected_so_far = 0
    for index, line in enumerate(lines):
        match = CONNECTED.match(line)
        if match:
            assert match.group("id") not in connected_at, ("two connected lines", line)
            connected_at[match.group("id")] = index
            connected_so_far += 1
            continue
        match = DISCONNECTED.match(line)
        if match:
            client_id = match.group("id")
            assert client_id not in disconnected_at, ("client %s disconnected twice" % client_id,
                                                      server.output())
            assert client_id in connected_at, ("client %s disconnected before it connected"
                                               % client_id, server.output())
            disconnected_at[client_id] = index
            assert REASON.match(match.group("reason")), ("unexpected reason", line)
            live = int(match.group("live"))
            live_counts.append((index, live))
            # Counted under the pool lock but printed after it, so two releases may print
            # out of order; still, no count exceeds the connected lines printed so far,
            # plus the slots taken but not printed yet: one per admitting thread (the
            # accepter, or from chapter 09 each worker).
            assert live <= connected_so_far + WORKERS, (
                "line %d: %r, but only %d clients have connected by then"
                % (index + 1, line, connected_so_far), server.output())
    # Every storm connection that got as far as an echo was accepted, plus the control
    # and the last client; a connection reset before it was accepted may never show.
    totals = total_kinds(kinds)
    echoed = totals.get("fin", 0) + totals.get("rst-after-echo", 0)
    assert len(connected_at) >= echoed + 2, server.output()
    assert sorted(connected_at) == sorted(disconnected_at), server.output()
    # The release that emptied the pool came after the last client's connected line
    # (that client echoed before it closed), so a count of 0 is printed after that line.
    last_connected = max(connected_at.values())
    assert any(live == 0 for index, live in live_counts if index > last_connected), (
        "no '(0 live)' after the last connected line", live_counts[-5:], server.output())
    print("%d connections (%s) in %.1f s; %d accepted; %d control round trips" % (
        THREADS * PER_THREAD, ", ".join("%d %s" % (n, k) for k, n in sorted(totals.items())),
        stormed, len(connected_at),
        results["round trips"]))
    assert server.quit() == 0, server.output()


def total_kinds(kinds):
    """{kind: connections} over every thread's counts."""
    total = {}
    for counts in kinds:
        for kind, count in counts.items():
            total[kind] = total.get(kind, 0) + count
    return total
