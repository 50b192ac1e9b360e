"""A scripted server on a loopback socket, for testing the tools that connect to one
(tools/client.c, tools/chat.c): the test says what the server does with its one client,
runs the tool, then checks both what the tool printed and what the server received."""

import socket
import threading
import time

from harness import EXIT_TIMEOUT, Server, reset


class ScriptedServer:
    """Listens on HOST (any free port), accepts one client and runs SCRIPT(peer) on a
    thread of its own, then closes that connection gracefully, unless the script has
    already closed or reset it. Use as a context manager; .port is the port to give the
    tool, and join() waits for the script and re-raises what went wrong in it."""

    def __init__(self, script, host="127.0.0.1"):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.bind((host, 0))
        self._listener.listen(1)
        self._listener.settimeout(EXIT_TIMEOUT)
        self.port = self._listener.getsockname()[1]
        self._script = script
        self._failure = None
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        try:
            connection, _ = self._listener.accept()
        except OSError as e:
            self._failure = AssertionError("the tool never connected: %s" % e)
            return
        # Only a bound for hangs: a tool under Wine on a busy machine can take seconds.
        connection.settimeout(EXIT_TIMEOUT)
        peer = Peer(connection)
        try:
            self._script(peer)
        except BaseException as e:  # shown by join(), in the test's own thread
            self._failure = e
        finally:
            peer.close()

    def join(self, timeout=EXIT_TIMEOUT):
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the server's script did not end in %s s" % timeout
        if self._failure is not None:
            raise self._failure

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._listener.close()
        self._thread.join(EXIT_TIMEOUT)
        return False


class Peer:
    """The server's side of the one connection, as the script sees it."""

    def __init__(self, connection):
        self.connection = connection
        self.closed = False

    def send(self, data):
        self.connection.sendall(data)

    def until_end(self):
        """Everything the tool sends until it half-closes (shutdown(SD_SEND)); raises
        AssertionError if it does not within EXIT_TIMEOUT."""
        chunks = []
        try:
            while True:
                chunk = self.connection.recv(65536)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
        except socket.timeout:
            raise AssertionError("the tool did not end its sending side; it sent %r"
                                 % b"".join(chunks)) from None

    def exactly(self, count):
        """The next COUNT bytes the tool sends (fewer if it half-closes first)."""
        chunks, left = [], count
        while left > 0:
            chunk = self.connection.recv(left)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def reset(self):
        """Closes abortively, with RST (harness.reset)."""
        if not self.closed:
            self.closed = True
            reset(self.connection)

    def close(self):
        if not self.closed:
            self.closed = True
            self.connection.close()



# After the tool has printed what the server sent, it is back in its receive within this
# time, with room to spare (it prints, then calls recv again).
BACK_TO_RECEIVING = 0.2


def reset_after_printed(exe, first, printed, host="127.0.0.1"):
    """Runs the tool EXE (with HOST and the server's port) against a server that sends
    FIRST and resets the connection once the tool has printed a line matching the regex
    PRINTED; returns the tool's ended harness.Server (.code, .stdout, .stderr). Under
    Wine a reset that arrives before a receive is posted reads as a clean close (see
    the Wine notes), so the server waits until the tool must be receiving again."""
    go = threading.Event()

    def script(peer):
        peer.send(first)
        assert go.wait(EXIT_TIMEOUT), "the test never said when to reset"
        peer.reset()

    with ScriptedServer(script, host=host) as server:
        with Server(exe, [host, str(server.port)]) as tool:
            try:
                tool.wait_for(printed)
                time.sleep(BACK_TO_RECEIVING)
            finally:
                go.set()
            tool.wait()
        server.join()
    return tool
