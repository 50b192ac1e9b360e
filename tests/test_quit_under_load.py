"""A chapter with an orderly shutdown stops within 3 seconds of "quit" or Ctrl+C even with
100 clients connected and echoing as fast as they can: it closes every client, exits 0,
and its summary counts all 100 connections and no more bytes than it could have echoed.
For a chapter with messages each round trip is one echo message, and the bytes counted
on both sides include the headers.
"""

import re
import threading
import time

import pytest

import chapters
import harness
from harness import connect, round_trips

STOPPERS = chapters.chapters_with("teardown", "echo")
CLIENTS = 100
QUIT_BOUND = 3.0  # the bound, from writing "quit" (or the signal) to the exit
CONNECTED = re.compile(r"^client (?P<id>\d+) connected from ")
DISCONNECTED = re.compile(r"^client (?P<id>\d+) disconnected: .* \((?P<live>\d+) live\)$")
SUMMARY = harness.SUMMARY

WAYS = [
    pytest.param("quit", "quit", id="quit"),
    pytest.param("interrupt", harness.INTERRUPT_NAME, id="interrupt"),
]


def count(lines, regex):
    return sum(1 for line in lines if regex.match(line))


@pytest.mark.parametrize("way,reason", WAYS)
@pytest.mark.parametrize("chapter", STOPPERS, ids=chapters.ids(STOPPERS))
def test_stops_quickly_with_traffic_flowing(chapter, way, reason, start_server):
    server = start_server(chapter, "--max-clients", str(CLIENTS + 28))
    clients = [connect(server.port) for _ in range(CLIENTS)]
    trips, outcome = [], {}

    def traffic():
        try:
            outcome["trips"] = round_trips(clients, None, sizes=(1, 16384), progress=trips,
                                           wrap=chapter.message)
        except AssertionError as e:
            outcome["hang"] = e

    driver = threading.Thread(target=traffic, daemon=True)
    try:
        server.wait_until(lambda lines: count(lines, CONNECTED) == CLIENTS,
                          what="%d connected lines" % CLIENTS)
        driver.start()
        # Traffic is flowing: every client has made round trips.
        deadline = time.monotonic() + harness.LINE_TIMEOUT
        while not (len(trips) == CLIENTS and all(t.rounds >= 3 for t in trips)):
            assert time.monotonic() < deadline, ("clients made no round trips", trips[:5],
                                                 server.output())
            assert not any(t.error for t in trips), (trips, server.output())
            time.sleep(0.05)

        started = time.monotonic()
        code = getattr(server, way)(timeout=harness.EXIT_TIMEOUT)
        took = time.monotonic() - started
        print("%s with %d clients echoing: exit %s after %.2f s" % (way, CLIENTS, code, took))
        assert code == 0, server.output()
        assert took < QUIT_BOUND, ("%s took %.2f s" % (way, took), server.output())

        driver.join(30.0)
        assert not driver.is_alive() and "hang" not in outcome, (
            "clients not closed by the server", outcome, trips[:5], server.output())
    finally:
        for c in clients:
            c.close()

    trips = outcome["trips"]
    assert not [t for t in trips if t.error], ([t for t in trips if t.error][:5],
                                                server.output())
    assert all(t.closed for t in trips), server.output()
    lines = server.stdout
    assert "stopping: %s" % reason in lines, server.output()
    assert count(lines, DISCONNECTED) == CLIENTS, server.output()
    # Each release prints outside the pool's lock, so the live counts may come out of order;
    # what holds is that one of them saw the pool empty.
    lives = [m.group("live") for m in map(DISCONNECTED.match, lines) if m]
    assert "0" in lives, server.output()
    summary = SUMMARY.match(lines[-1])
    assert summary, ("the summary is not the last line", server.output())
    assert int(summary.group("connections")) == CLIENTS, server.output()
    # Echoed: at least what came back to the clients, at most what they sent.
    echoed = int(summary.group("bytes"))
    received = sum(t.bytes_received for t in trips)
    sent = sum(t.bytes_sent for t in trips)
    assert received <= echoed <= sent, ("bytes echoed %d, clients got %d and sent %d" % (
        echoed, received, sent), server.output())
