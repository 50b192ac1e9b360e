"""A chapter with an orderly shutdown starts and stops cleanly 20 times in a row, each
time with a client connected: one with a receive pending after an echo, one with only
its first receive pending, one whose echo it has not read yet. Every run exits 0 and
prints its summary; the client sees the server close the connection. (For a chapter with
messages, the one round trip is an echo message.)"""


import pytest

import chapters
import harness
from harness import closed_by_peer, connect, echo, local_port

STOPPERS = chapters.chapters_with("teardown", "echo")
CYCLES = 20
# (how the client leaves the server, how the server is told to stop), in turn.
CASES = [("echoed", "quit"), ("connected", "quit"), ("unread", "quit"),
         ("echoed", "interrupt"), ("connected", "end_input")]


@pytest.mark.parametrize("chapter", STOPPERS, ids=chapters.ids(STOPPERS))
def test_twenty_start_stop_cycles(chapter):
    message = chapter.message(b"one round trip\n")
    for cycle in range(CYCLES):
        state, way = CASES[cycle % len(CASES)]
        with harness.Server(chapter.exe, ["--port", "0", "--workers", str(1 + cycle % 3)]) \
                as server:
            client = connect(server.port)
            try:
                server.wait_for(r"^client 1 connected from 127\.0\.0\.1:%d " % local_port(client))
                if state == "echoed":
                    assert echo(client, message) == message, server.output()
                elif state == "unread":
                    client.sendall(message)
                code = getattr(server, way)(timeout=harness.STOP_TIMEOUT)
                assert code == 0, ("cycle %d (%s, %s)" % (cycle + 1, state, way),
                                   server.output())
                if state == "unread":  # the echo may have gone out before the close
                    back = harness.receive_exactly(client, len(message))
                    assert back in (b"", message), (back, server.output())
                assert closed_by_peer(client), ("cycle %d: client not closed" % (cycle + 1),
                                                server.output())
            finally:
                client.close()
            server.wait_for(r"^client 1 disconnected: .* \(0 live\)$")
            summary = harness.SUMMARY.match(server.stdout[-1])
            assert summary and summary.group("connections") == "1", (
                "cycle %d: no summary of one connection last" % (cycle + 1), server.output())
            echoed = int(summary.group("bytes"))
            if state == "echoed":
                assert echoed == len(message), server.output()
            elif state == "unread":
                assert echoed in (0, len(message)), server.output()
            else:
                assert echoed == 0, server.output()
