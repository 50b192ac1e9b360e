"""A chapter with an orderly shutdown stops promptly right after a great many clients
have come and gone: 10,000 clients connect in batches and close (FIN), and about a
second after the last close "quit" makes it exit 0 within a bound that only catches a
hang, with a summary that counts every client it served. Each served client gets
exactly one disconnected line. The server's stdout is a pipe this test reads as it
goes, as the harness always does.

What it guards: the disconnects of the last batches may still be being handled when
"quit" arrives, and handling them must not hold up the shutdown (a disconnect line
printed while holding the lock the accepter and the shutdown need does).
"""

import re
import time

import pytest

import chapters
import harness
from harness import connect

STOPPERS = chapters.chapters_with("teardown")
CLIENTS = 10000
BATCH = 250
SLOTS = 1000
SETTLE = 1.0  # seconds between the last close and "quit"
CONNECTED = re.compile(r"^client (?P<id>\d+) connected from ")
REFUSED = re.compile(r"^refused \S+: all \d+ slots are taken$")
ARRIVED = r"^(client \d+ connected from |refused \S+: all \d+ slots are taken$)"
DISCONNECTED = re.compile(r"^client (?P<id>\d+) disconnected: (?P<reason>.+) \((?P<live>\d+) live\)$")
SUMMARY = harness.SUMMARY


@pytest.mark.parametrize("chapter", STOPPERS, ids=chapters.ids(STOPPERS))
def test_quit_a_second_after_ten_thousand_clients_closed(chapter, start_server):
    server = start_server(chapter, "--max-clients", str(SLOTS))
    port = server.port
    started = time.monotonic()
    for first in range(0, CLIENTS, BATCH):
        batch = []
        try:
            for _ in range(min(BATCH, CLIENTS - first)):
                batch.append(connect(port))
            # Each client is admitted or refused before the batch closes.
            for _ in batch:
                server.wait_for(ARRIVED)
        finally:
            for client in batch:
                client.close()
    clients_took = time.monotonic() - started
    time.sleep(SETTLE)

    quitting = time.monotonic()
    code = server.quit(timeout=harness.EXIT_TIMEOUT)
    took = time.monotonic() - quitting
    lines = server.stdout
    connected = [line for line in lines if CONNECTED.match(line)]
    refused = [line for line in lines if REFUSED.match(line)]
    disconnected = [DISCONNECTED.match(line) for line in lines if DISCONNECTED.match(line)]
    after_quit = [m for m in disconnected if m.group("reason") == "server stopping"]
    print("%s: %d clients connected and closed in %.1f s (%d admitted, %d refused); quit %.1f s "
          "after the last close: exit %s after %.2f s, %d clients still connected then" % (
              chapter.name, CLIENTS, clients_took, len(connected), len(refused), SETTLE, code,
              took, len(after_quit)))
    assert code == 0, ("exit code %s after %.2f s" % (code, took), server.output())
    assert len(connected) + len(refused) == CLIENTS, server.output()
    summary = SUMMARY.match(lines[-1])
    assert summary, ("the summary is not the last line", server.output())
    assert int(summary.group("connections")) == len(connected), server.output()
    ids = sorted(int(m.group("id")) for m in disconnected)
    assert ids == list(range(1, len(connected) + 1)), (
        "%d disconnected lines for %d clients served" % (len(ids), len(connected)))
    # Printed outside the pool's lock, the live counts may come out of order: one saw 0.
    assert "0" in [m.group("live") for m in disconnected], server.output()
