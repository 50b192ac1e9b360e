"""scripts/bench.py (make bench) runs to its end with --quick, one smoke per kind of load:
the echo load against chapters 08 and 11 (raw and framed) and the native reference, the
chat load against every chapter with a chat room and the trivial source, the idle load
against 08 and 12. Each checks that everything was verified, every server exited cleanly
after quit, the tables have their rows, a progress line came for each run, and the files
for the chapter notes were written. Nothing here looks at the figures: how fast a run goes
depends on the machine and on whatever else runs on it. A bad command line exits 2."""

import json
import os
import re
import subprocess
import sys

import pytest

import chapters

BENCH = os.path.join(chapters.ROOT, "scripts", "bench.py")
# A bound on a hang only: a quick run takes seconds, a new load prefix a few more.
RUN_TIMEOUT = 300
ROW = r"^\| %s \| [\d,]+ \([\d,]+–[\d,]+\) \|"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="scripts/bench.py needs Linux (/proc, epoll)")


def run_bench(tmp_path, *args):
    """Runs scripts/bench.py --quick with ARGS, its files in TMP_PATH, and asserts it exits
    0; returns its stdout, its stderr and a report of both for assertion messages."""
    done = subprocess.run([sys.executable, BENCH, "--quick", "--out", str(tmp_path)] +
                          list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, cwd=chapters.ROOT, timeout=RUN_TIMEOUT)
    out = done.stdout.decode("utf-8", "replace")
    err = done.stderr.decode("utf-8", "replace")
    report = "exit code %s\n--- stdout:\n%s\n--- stderr:\n%s" % (done.returncode, out, err)
    assert done.returncode == 0, report
    assert re.search(r"^errors: 0 \(.*: [1-9][\d,]* bytes and deliveries verified\); "
                     r"problems: 0$", out, re.M), report
    with open(tmp_path / "bench.md", encoding="utf-8") as f:
        assert f.read() in out, "bench.md holds the tables printed\n" + report
    with open(tmp_path / "bench.json", encoding="utf-8") as f:
        assert json.load(f)["results"], report
    return out, err, report


def progress_lines(err, total):
    return re.findall(r"^\[ *\d+/%d\] " % total, err, re.M)


def named(*numbers):
    found = [c for c in chapters.ALL if c.number in numbers]
    if len(found) != len(numbers):
        pytest.skip("needs chapters %s" % " ".join("%02d" % n for n in numbers))
    return found


def test_echo_smoke(tmp_path):
    benched = named(8, 11)
    out, err, report = run_bench(tmp_path, "--only", "echo", "--chapters", "08", "11")
    for name in [c.name for c in benched] + ["native"]:
        assert len(re.findall(ROW % re.escape(name), out, re.M)) == 1, name + "\n" + report
    assert re.search(r"^\| 11-messages \| .*? \| [\d.]+× \| [\d.]+× \|", out, re.M), report
    assert re.search(r"^loadgen against the native reference: [\d.]+× the fastest chapter",
                     out, re.M), report
    # One load (100 x 64 B) x (08, 11, native).
    assert len(progress_lines(err, 3)) == 3, report
    with open(tmp_path / "bench.svg", encoding="utf-8") as f:
        assert "<svg" in f.read(), report


def test_chat_smoke(tmp_path):
    chatters = chapters.chapters_with("chat")
    if not chatters:
        pytest.skip("no chapter has a chat room yet")
    out, err, report = run_bench(tmp_path, "--only", "chat")
    for name in [c.name for c in chatters] + [r"client capacity \(trivial source\)"]:
        row = re.search((ROW % name) + r".* \| (\d+) \|$", out, re.M)
        assert row and row.group(1) == "0", "%s: none dropped\n%s" % (name, report)
    assert len(progress_lines(err, len(chatters) + 1)) == len(chatters) + 1, report


def test_idle_smoke(tmp_path):
    benched = named(8, 12)
    out, err, report = run_bench(tmp_path, "--only", "idle", "--chapters", "08", "12",
                                 "--hold", "1")
    assert "**200 idle connections**" in out, report
    for chapter in benched:
        assert re.search(r"^\| %s \| 200 \| [\d.-]+ \(" % chapter.name, out, re.M), report
    assert len(progress_lines(err, 2)) == 2, report


@pytest.mark.parametrize("args", [["--only", "bogus"], ["--repeat", "0"], ["--seconds", "x"],
                                  ["--members", "251"], ["--idle-connections", "10001"]],
                         ids=["only", "repeat", "seconds", "members", "idle-connections"])
def test_bad_arguments_give_usage_and_exit_2(args):
    done = subprocess.run([sys.executable, BENCH] + args, stdin=subprocess.DEVNULL,
                          capture_output=True, cwd=chapters.ROOT, timeout=60)
    assert done.returncode == 2, done
    assert done.stderr.decode().startswith("usage: bench.py"), done
