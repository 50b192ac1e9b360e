"""scripts/bench.py --quick runs to its end against chapters 08 and 10: every echoed byte
matched what was sent, every server exited 0 after quit, and the table has a row for each
chapter, their ratio and the native reference. Nothing here looks at the figures: how
fast a run goes depends on the machine and on whatever else runs on it."""

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


def test_quick_bench_verifies_every_byte():
    assert [c.name[:2] for c in BENCHED] == ["08", "10"], "chapters 08 and 10 are benchmarked"
    # The session's wineserver is running (conftest.py), so the bench uses it and leaves it.
    done = subprocess.run([sys.executable, BENCH, "--quick", "--chapters", "08", "10"],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, cwd=chapters.ROOT, timeout=180)
    out = done.stdout.decode("utf-8", "replace")
    err = done.stderr.decode("utf-8", "replace")
    report = "exit code %s\n--- stdout:\n%s\n--- stderr:\n%s" % (done.returncode, out, err)
    assert done.returncode == 0, report
    assert re.search(r"^errors: 0 \(every echoed byte compared with what was sent: [1-9][\d,]* "
                     r"bytes", out, re.M), report
    assert "problem:" not in out, report
    # One block per load (two sizes at 100 connections), each with every row.
    for name in [c.name for c in BENCHED] + ["ratio 10/08", "native reference"]:
        rows = re.findall(r"^%s +[\d.,]+ \([\d.,]+-[\d.,]+\) " % re.escape(name), out, re.M)
        assert len(rows) == 2, "%r rows: %r\n%s" % (name, rows, report)
    # One progress line per run on stderr: 2 loads x (08, 10, native).
    assert len(re.findall(r"^\[ *\d+/6\] ", err, re.M)) == 6, report
