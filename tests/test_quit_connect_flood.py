"""A chapter that accepts clients stops on "quit" even while clients keep connecting
faster than it can accept them: it exits 0 within a bound that only catches a hang,
while the flood is still going. Its accepter must look at the stop request between
accepts; one that accepts until the backlog is empty never gets there, because under a
flood the backlog never empties.

The flood: threads that open a non-blocking connection and close it at once, as fast
as they can, so the listen backlog stays full. With --max-clients 16 the pool fills
too, so the server both admits and refuses clients during the flood.
"""

import errno
import re
import socket
import subprocess
import threading
import time

import pytest

import chapters
import harness

ACCEPTERS = chapters.chapters_with("accept")
SLOTS = 16
FLOODERS = 2
WARM_UP = 2.0  # seconds of flood before "quit"
# The flood stops when told, and at the latest this long after it started: longer than
# the warm-up plus the wait for the exit, so the server has to stop while it runs.
FLOOD_LIMIT = WARM_UP + harness.EXIT_TIMEOUT + 10.0
CONNECTED = re.compile(r"^client (?P<id>\d+) connected from ")
REFUSED = re.compile(r"^refused \S+: all \d+ slots are taken$")
SUMMARY = harness.SUMMARY
# What connect may say at once on a non-blocking socket; anything else is counted.
CONNECT_STARTED = {0, errno.EINPROGRESS, errno.EWOULDBLOCK,
                   getattr(errno, "WSAEWOULDBLOCK", 10035)}


class Flood:
    """FLOODERS threads that connect to 127.0.0.1:PORT and close, until stop() or until
    FLOOD_LIMIT seconds have gone."""

    def __init__(self, port):
        self.port = port
        self.done = threading.Event()
        self.deadline = time.monotonic() + FLOOD_LIMIT
        self.connects = [0] * FLOODERS
        self.errors = {}
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(FLOODERS)]
        for thread in self.threads:
            thread.start()

    def _run(self, number):
        while not self.done.is_set() and time.monotonic() < self.deadline:
            client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                client.setblocking(False)
                code = client.connect_ex(("127.0.0.1", self.port))
                if code not in CONNECT_STARTED:
                    self.errors[code] = self.errors.get(code, 0) + 1
            finally:
                client.close()
            self.connects[number] += 1

    def total(self):
        return sum(self.connects)

    def running(self):
        return any(t.is_alive() for t in self.threads) and time.monotonic() < self.deadline

    def stop(self):
        self.done.set()
        for thread in self.threads:
            thread.join(10.0)
        return not any(t.is_alive() for t in self.threads)


def count(lines, regex):
    return sum(1 for line in lines if regex.match(line))


@pytest.mark.parametrize("chapter", ACCEPTERS, ids=chapters.ids(ACCEPTERS))
def test_quit_during_connect_flood(chapter, start_server):
    server = start_server(chapter, "--max-clients", str(SLOTS))
    flood = Flood(server.port)
    try:
        server.wait_until(lambda lines: count(lines, CONNECTED) >= 1,
                          what="a connected line once the flood started")
        time.sleep(WARM_UP)
        before = flood.total()
        server.send("quit\n")
        started = time.monotonic()
        try:
            code = server.process.wait(harness.EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            code = None
        took = time.monotonic() - started
        flooding = flood.running()
        during = flood.total() - before
    finally:
        stopped = flood.stop()
    print("%s: %d connects in %.1f s of warm-up; quit: %s after %.2f s, %d connects meanwhile, "
          "%d admitted, %d refused%s" % (
              chapter.name, before, WARM_UP,
              "hang" if code is None else "exit %s" % code, took, during,
              count(server.stdout, CONNECTED), count(server.stdout, REFUSED),
              ", connect errors %r" % flood.errors if flood.errors else ""))
    assert stopped, "the flood threads did not stop"
    assert code is not None, ("no exit %s s after quit, with the flood going on (%d connects "
                              "meanwhile)" % (harness.EXIT_TIMEOUT, during), server.output())
    assert flooding, ("the flood had ended before the server did", server.output())
    assert code == 0, ("exit code %s" % code, server.output())
    server.wait()  # collects the rest of the output
    lines = server.stdout
    assert "stopping: quit" in lines, server.output()
    admitted = count(lines, CONNECTED)
    assert admitted >= 1, server.output()
    if chapter.has("teardown"):
        summary = SUMMARY.match(lines[-1])
        assert summary, ("the summary is not the last line", server.output())
        assert int(summary.group("connections")) == admitted, server.output()
