"""scripts/bench.py --quick runs to its end against chapters 08 and 10: every echoed byte
matched what was sent, every server exited 0 after quit, and the table has a row for each
chapter, their ratio and the native reference. With --chat --quick it runs to its end
against chapter 12's room: every MESSAGE each member received was checked, none was
wrong and no member was dropped. Nothing here looks at the figures: how fast a run goes
depends on the machine and on whatever else runs on it."""

import os
import re
import subprocess
import sys

import pytest

import chapters

BENCH = os.path.join(chapters.ROOT, "scripts", "bench.py")
BENCHED = [c for c in chapters.ALL if c.name[:2] in ("08", "10")]

pytestmark = pytest.mark.skipif(os.name == "nt" or not sys.platform.startswith("linux"),
                                reason="scripts/bench.py needs Linux (epoll, /proc)")


def run_bench(*args):
    """Runs scripts/bench.py with ARGS to its end, asserts it exits 0, and returns its
    stdout, its stderr and a report of both for assertion messages."""
    done = subprocess.run([sys.executable, BENCH] + list(args), stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=chapters.ROOT,
                          timeout=180)
    out = done.stdout.decode("utf-8", "replace")
    err = done.stderr.decode("utf-8", "replace")
    report = "exit code %s\n--- stdout:\n%s\n--- stderr:\n%s" % (done.returncode, out, err)
    assert done.returncode == 0, report
    return out, err, report


def test_quick_bench_verifies_every_byte():
    assert [c.name[:2] for c in BENCHED] == ["08", "10"], "chapters 08 and 10 are benchmarked"
    # The session's wineserver is running (conftest.py), so the bench uses it and leaves it.
    out, err, report = run_bench("--quick", "--chapters", "08", "10")
    assert re.search(r"^errors: 0 \(every echoed byte compared with what was sent: [1-9][\d,]* "
                     r"bytes", out, re.M), report
    assert "problem:" not in out, report
    # One block per load (two sizes at 100 connections), each with every row.
    for name in [c.name for c in BENCHED] + ["ratio 10/08", "native reference"]:
        rows = re.findall(r"^%s +[\d.,]+ \([\d.,]+-[\d.,]+\) " % re.escape(name), out, re.M)
        assert len(rows) == 2, "%r rows: %r\n%s" % (name, rows, report)
    # One progress line per run on stderr: 2 loads x (08, 10, native).
    assert len(re.findall(r"^\[ *\d+/6\] ", err, re.M)) == 6, report


CHATTERS = [c for c in chapters.ALL if c.has("chat")]


@pytest.mark.skipif(not CHATTERS, reason="no chapter has a chat room yet")
def test_quick_chat_bench_verifies_every_delivery():
    """scripts/bench.py --chat --quick (make bench-chat ARGS=--quick) runs to its end: 100
    members of chapter 12's room each said lines and every MESSAGE any of them received
    was the line due from its sayer, byte for byte and in order; none was dropped as too
    slow; the server exited 0 after quit, having sent what they read; and the table has a
    row for the chat chapter, the echo baseline, their ratio, the native reference and
    the client's capacity. The figures themselves are not looked at."""
    out, err, report = run_bench("--chat", "--quick")
    assert re.search(r"^errors: 0 \(every MESSAGE each member received compared byte for "
                     r"byte .*: [1-9][\d,]* deliveries", out, re.M), report
    assert re.search(r"^members dropped as too slow: 0$", out, re.M), report
    assert "problem:" not in out, report
    chat = [c for c in CHATTERS if c.name[:2] == "12"]
    assert chat, "chapter 12 has the chat room"
    for name in [chat[0].name, "11-messages echo", "ratio 12/11", "native echo reference",
                 "client capacity (trivial source)"]:
        rows = re.findall(r"^%s +[\d.,]+ \([\d.,]+-[\d.,]+\) " % re.escape(name), out, re.M)
        assert len(rows) == 1, "%r rows: %r\n%s" % (name, rows, report)
    # The chat row: some deliveries, no errors, none dropped.
    row = re.search(r"^%s +([\d,]+) \(.*?\) +.* (\d+) +(\d+) +[\d./]+$" % re.escape(chat[0].name),
                    out, re.M)
    assert row and row.group(1) != "0" and row.group(2) == "0" and row.group(3) == "0", report
    # One progress line per run on stderr: 12's chat, 11's echo, native echo, the capacity.
    assert len(re.findall(r"^\[ *\d+/4\] ", err, re.M)) == 4, report
