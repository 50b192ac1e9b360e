"""A chapter with worker threads that cannot get its port ends cleanly every time: exit
code 1, "bind failed: 10048 ..." on stderr and no other line of its own there, and no
"listening on" line. It is run many times in a row because the way it ends matters: a
program that returns from main with its worker threads still blocked on the port lets
the C runtime's exit run beside them, which now and then makes a worker report a failed
GetQueuedCompletionStatus (the port's handle already gone) or crash; a crash shows as
another exit code (Wine cuts 0xC0000005 to 5).

Two things are Wine's, not the program's, and do not count: a "wine client error:..."
line, which Wine prints when a thread is still inside a call to wineserver as the
process ends (seen now and then even with no worker started, the standard-input watcher
being still alive), and a run that exits 1 having printed nothing at all, which is Wine
failing to start the process (see harness.py); that run is made again.
"""

import re
import socket

import pytest

import chapters
import harness

WORKER_CHAPTERS = chapters.chapters_with("workers")
RUNS = 50
RETRIES = 3  # per test, for runs Wine could not start
ADDRESS_IN_USE = re.compile(r"^bind failed: 10048 \S")  # WSAEADDRINUSE
WINE_CLIENT_ERROR = re.compile(r"^wine client error:[0-9a-f]+: ")
# What such a chapter may print on stdout before it tries to bind.
STARTUP_LINES = [
    re.compile(r"^WSAStartup: asked for 2\.2, got 2\.2$"),
    re.compile(r"^completion port \S+ created$"),
    re.compile(r"^\d+ worker threads waiting on the port; each receive takes up to \d+ bytes$"),
]


def not_started(result):
    """Whether Wine failed to start the program: exit code 1 and not a byte printed."""
    return result.code == 1 and not result.stdout and not result.stderr


def what_is_wrong(result):
    """What in RESULT is not a clean bind failure, or None."""
    if result.code != 1:
        return "exit code %s" % result.code
    if not result.stderr or not ADDRESS_IN_USE.match(result.stderr[0]):
        return "no bind error first on stderr"
    own = [line for line in result.stderr[1:] if not WINE_CLIENT_ERROR.match(line)]
    if own:
        return "more on stderr: %r" % own
    unexpected = [line for line in result.stdout if not any(p.match(line) for p in STARTUP_LINES)]
    if unexpected:
        return "unexpected on stdout: %r" % unexpected
    return None


@pytest.mark.parametrize("chapter", WORKER_CHAPTERS, ids=chapters.ids(WORKER_CHAPTERS))
def test_bind_failure_exits_1_every_time(chapter):
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    codes, bad, wine_lines = {}, [], []
    retries = RETRIES
    try:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        number = 0
        while number < RUNS:
            result = harness.run(chapter.exe, ["--port", str(port)])
            if not_started(result) and retries > 0:
                retries -= 1
                continue
            number += 1
            codes[result.code] = codes.get(result.code, 0) + 1
            wine_lines += [line for line in result.stderr if WINE_CLIENT_ERROR.match(line)]
            wrong = what_is_wrong(result)
            if wrong:
                bad.append("run %d of %d: %s\n%r" % (number, RUNS, wrong, result))
            else:
                # A run that ended as it should adds nothing to a failure's report.
                harness.RUNS.remove(result)
    finally:
        holder.close()
    print("%s: %d runs with the port taken; exit codes %s; %d not started by Wine, run "
          "again; Wine's lines: %r" % (
              chapter.name, RUNS, ", ".join("%s: %d" % kv for kv in sorted(codes.items())),
              RETRIES - retries, wine_lines))
    assert not bad, "%d of %d runs did not end with exit code 1 and only the bind error " \
        "(exit codes %r):\n%s" % (len(bad), RUNS, codes, "\n".join(bad[:5]))
