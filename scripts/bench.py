#!/usr/bin/python3
"""Echo ping-pong under Wine: chapters side by side, with a native Linux reference.

    /usr/bin/python3 scripts/bench.py                 (or: make bench-echo)
    /usr/bin/python3 scripts/bench.py --quick         a short run, for the smoke test
    /usr/bin/python3 scripts/bench.py --chapters 08 10 --sizes 64 4096 \\
        --connections 1 100 --repeat 5 --seconds 3

Each connection sends one message, waits for the whole echo, compares every byte with
what it sent, and sends the next. A chapter that speaks in messages (11 on) gets each
one as an echo message, its 5-byte header before the payload (harness.echo_message), and
the header is compared and counted with the rest; a size over its default --max-message
adds that option to its command line. The native reference echoes raw bytes. Each run starts a chapter fresh (--port 0 --workers 2
--max-clients 256), connects, warms up, counts the round trips that complete in a fixed
window and the latency of each, lets the last echoes arrive, closes, types "quit" and
checks that the server exits 0 and counted the bytes the clients got back. The chapters
run interleaved (08, 10, 08, 10, ...) so a change in the machine's load hits both alike,
and their ratio is taken within each repetition.

The load generator is Python, and on a small machine it shares the cores with the
server and wineserver, so it could be the limit. It runs as several processes, each
driving its share of the connections through epoll on non-blocking sockets with
messages built beforehand, and each repetition also drives a tiny native echo server
(Python, epoll, as many processes as the chapters have workers): when that one gets far
more through, the client is not what limits the chapters. The CPU each side used in the
measured window is shown too, and "others" is what the rest of the machine used (other
programs, tests run by someone else), which no ratio can take out.

Linux only (epoll, /proc). Wine runs in $WINEPREFIX (scripts/wine.sh's default
otherwise); a wineserver already running there is used and left running, otherwise one
is started for the run and stopped at the end.
"""

import argparse
import array
import contextlib
import math
import multiprocessing
import os
import random
import re
import select
import socket
import statistics
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import chapters  # noqa: E402  (the one table of chapters and their features)
import harness  # noqa: E402  (the one way to start a chapter)

SERVER_ARGS = ["--port", "0", "--workers", "2", "--max-clients", "256"]
SERVER_WORKERS = 2
HOST = "127.0.0.1"

# Distinct messages per size that a connection takes in turn, so an echo of an earlier
# message (or of another connection's) cannot pass as the right one.
MESSAGE_KINDS = 16
RECV_SIZE = 65536
# How long the last echoes may take after the window ends before they count as lost.
DRAIN_SECONDS = 5.0
# Between telling the client processes to start and their first send: time for each to
# get the command and be waiting on its clock.
START_DELAY = 0.2
# When the native server gets this many times the round trips per second of the fastest
# chapter on a load, the client was not the limit of that load.
HEADROOM = 2.0

CONNECTED = re.compile(r"^client \d+ connected from ")
DISCONNECTED = re.compile(r"^client \d+ disconnected: (?P<reason>.*) \(\d+ live\)$")
REFUSED = re.compile(r"^refused ")
SUMMARY = re.compile(r"^connections served: (?P<served>\d+), bytes (?:echoed|sent): (?P<bytes>\d+)$")


# --- the load: one process drives its share of the connections ------------------------
def _drive(sockets, first_number, bases, start_at, measure_from, stop_at, framed=False):
    """Ping-pong on SOCKETS until STOP_AT, then waits up to DRAIN_SECONDS for the echoes
    still due. Round trips that complete between MEASURE_FROM and STOP_AT are counted and
    their latencies kept; every echo, counted or not, is compared with what was sent.
    FRAMED: each payload goes as one echo message, whose every byte must come back."""
    monotonic = time.monotonic
    epollin, epollout = select.EPOLLIN, select.EPOLLOUT
    count = len(sockets)
    payload_size = len(bases[0])
    wrap = harness.echo_message if framed else bytes
    size = len(wrap(bases[0]))  # what goes each way per round trip
    kinds = len(bases)
    # Each connection's messages start with its own number, so no echo can pass on
    # another connection; built now, before the clock starts.
    messages = []
    for i in range(count):
        stamp = (first_number + i).to_bytes(4, "little")
        messages.append([wrap((stamp + base[len(stamp):])[:payload_size]) for base in bases])
    poller = select.epoll(max(count, 1))
    slot = {}
    kind = [i % kinds for i in range(count)]
    got = [0] * count
    differs = [False] * count
    sent_at = [0.0] * count
    unsent = [None] * count
    in_flight = [False] * count
    alive = [True] * count
    latencies = array.array("d")
    state = {"errors": 0, "outstanding": 0}
    problems = []

    def fail(i, what):
        state["errors"] += 1
        if len(problems) < 5:
            problems.append("connection %d: %s" % (i, what))
        if alive[i]:
            alive[i] = False
            try:
                poller.unregister(sockets[i].fileno())
            except OSError:
                pass
        if in_flight[i]:
            in_flight[i] = False
            state["outstanding"] -= 1

    def send(i, now):
        message = messages[i][kind[i]]
        sent_at[i] = now
        try:
            done = sockets[i].send(message)
        except BlockingIOError:
            done = 0
        except OSError as e:
            fail(i, "send: %s" % e)
            return
        if done < size:
            unsent[i] = memoryview(message)[done:]
            poller.modify(sockets[i].fileno(), epollin | epollout)

    for i, client in enumerate(sockets):
        slot[client.fileno()] = i
        poller.register(client.fileno(), epollin)
    delay = start_at - monotonic()
    if delay > 0:
        time.sleep(delay)
    now = monotonic()
    for i in range(count):
        in_flight[i] = True
        state["outstanding"] += 1
        send(i, now)

    deadline = stop_at + DRAIN_SECONDS
    trips = verified = 0
    while state["outstanding"] > 0:
        events = poller.poll(0.1)
        if not events:
            if monotonic() > deadline:
                break
            continue
        for fd, mask in events:
            i = slot[fd]
            if not alive[i]:
                continue
            client = sockets[i]
            if mask & epollout and unsent[i] is not None:
                rest = unsent[i]
                try:
                    done = client.send(rest)
                except BlockingIOError:
                    done = 0
                except OSError as e:
                    fail(i, "send: %s" % e)
                    continue
                if done == len(rest):
                    unsent[i] = None
                    poller.modify(fd, epollin)
                else:
                    unsent[i] = rest[done:]
            if not mask & epollin and not mask & (select.EPOLLHUP | select.EPOLLERR):
                continue
            try:
                data = client.recv(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as e:
                fail(i, "receive: %s" % e)
                continue
            if not data:
                fail(i, "closed by the server with %d of %d bytes back" % (got[i], size))
                continue
            arrived = len(data)
            if not in_flight[i]:
                fail(i, "%d bytes arrived with no message sent" % arrived)
                continue
            expected = messages[i][kind[i]]
            before = got[i]
            if before == 0 and arrived == size:
                if data != expected:
                    differs[i] = True
            else:
                if before + arrived > size:
                    fail(i, "%d bytes came back for a %d-byte message" % (before + arrived, size))
                    continue
                if data != expected[before:before + arrived]:
                    differs[i] = True
                if before + arrived < size:
                    got[i] = before + arrived
                    continue
            now = monotonic()
            got[i] = 0
            verified += size
            if differs[i]:
                differs[i] = False
                state["errors"] += 1
                if len(problems) < 5:
                    problems.append("connection %d: an echo differs from what was sent" % i)
            if now < stop_at:
                if now >= measure_from:
                    trips += 1
                    latencies.append(now - sent_at[i])
                kind[i] = (kind[i] + 1) % kinds
                send(i, now)
            else:
                in_flight[i] = False
                state["outstanding"] -= 1
    for i in range(count):
        if in_flight[i]:
            fail(i, "no whole echo within %.0f s after the window" % DRAIN_SECONDS)
    poller.close()
    for client in sockets:
        client.close()
    return {"trips": trips, "latencies": latencies, "errors": state["errors"],
            "verified": verified, "problems": problems}


def _client_process(pipe, number):
    """One load process: connects, drives and closes as the parent asks, until None."""
    rng = random.Random(number)
    bases = {}
    sockets = []
    parent = os.getppid()
    while True:
        while not pipe.poll(1.0):
            if os.getppid() != parent:
                return  # the bench was killed: do not stay behind
        job = pipe.recv()
        if job is None:
            return
        try:
            if job["do"] == "connect":
                sockets = []
                for _ in range(job["count"]):
                    client = socket.create_connection((HOST, job["port"]), timeout=10)
                    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    client.setblocking(False)
                    sockets.append(client)
                pipe.send({"ok": True})
            elif job["do"] == "drive":
                size = job["size"]
                if size not in bases:
                    bases[size] = [rng.randbytes(size) for _ in range(MESSAGE_KINDS)]
                result = _drive(sockets, number * 100000, bases[size], job["start_at"],
                                job["measure_from"], job["stop_at"], job["framed"])
                sockets = []
                result["ok"] = True
                pipe.send(result)
        except OSError as e:
            for client in sockets:
                client.close()
            sockets = []
            pipe.send({"ok": False, "error": "%s: %s" % (job["do"], e)})


class Load:
    """The client processes, made once at the start (before any thread exists, since they
    are forked) and given each run's work through pipes."""

    def __init__(self, processes):
        context = multiprocessing.get_context("fork")
        self.pipes = []
        self.processes = []
        for number in range(processes):
            mine, theirs = context.Pipe()
            process = context.Process(target=_client_process, args=(theirs, number),
                                      daemon=True)
            process.start()
            theirs.close()
            self.pipes.append(mine)
            self.processes.append(process)

    @property
    def pids(self):
        return [p.pid for p in self.processes]

    def _ask_all(self, jobs, timeout):
        for pipe, job in zip(self.pipes, jobs):
            pipe.send(job)
        answers = []
        for pipe in self.pipes:
            if not pipe.poll(timeout):
                raise RuntimeError("a client process gave no answer within %s s" % timeout)
            answers.append(pipe.recv())
        failed = [a["error"] for a in answers if not a["ok"]]
        if failed:
            raise RuntimeError("client: " + "; ".join(failed))
        return answers

    def connect(self, port, connections):
        shares = [connections // len(self.pipes) + (n < connections % len(self.pipes))
                  for n in range(len(self.pipes))]
        self._ask_all([{"do": "connect", "port": port, "count": c} for c in shares], 60)

    def drive(self, size, start_at, measure_from, stop_at, framed=False):
        job = {"do": "drive", "size": size, "start_at": start_at,
               "measure_from": measure_from, "stop_at": stop_at, "framed": framed}
        wait = stop_at - time.monotonic() + DRAIN_SECONDS + 30
        return self._ask_all([job] * len(self.pipes), wait)

    def close(self):
        for pipe in self.pipes:
            try:
                pipe.send(None)
            except OSError:
                pass
        for process in self.processes:
            process.join(5)
            if process.is_alive():
                process.terminate()


# --- the native reference: a tiny epoll echo server ------------------------------------
def _native_echo(listener):
    listener.setblocking(False)
    poller = select.epoll()
    poller.register(listener.fileno(), select.EPOLLIN | select.EPOLLEXCLUSIVE)
    clients = {}
    unsent = {}
    parent = os.getppid()
    while True:
        events = poller.poll(1.0)
        if not events and os.getppid() != parent:
            return  # the bench was killed: do not stay behind
        for fd, mask in events:
            if fd == listener.fileno():
                while True:
                    try:
                        client, _ = listener.accept()
                    except OSError:  # none waiting, or none to be had now
                        break
                    client.setblocking(False)
                    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    clients[client.fileno()] = client
                    poller.register(client.fileno(), select.EPOLLIN)
                continue
            client = clients[fd]
            try:
                if mask & select.EPOLLOUT:
                    rest = unsent[fd]
                    done = client.send(rest)
                    if done < len(rest):
                        unsent[fd] = rest[done:]
                        continue
                    del unsent[fd]
                    poller.modify(fd, select.EPOLLIN)
                if fd in unsent:
                    continue
                data = client.recv(RECV_SIZE)
                if not data:
                    raise ConnectionResetError
                done = client.send(data)
                if done < len(data):
                    unsent[fd] = memoryview(data)[done:]
                    poller.modify(fd, select.EPOLLOUT)
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                poller.unregister(fd)
                unsent.pop(fd, None)
                clients.pop(fd).close()


class NativeServer:
    """SERVER_WORKERS forked processes accepting on one listener; started once, before
    any thread exists, and used by every reference run."""

    def __init__(self):
        context = multiprocessing.get_context("fork")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, 0))
        listener.listen(1024)
        self.port = listener.getsockname()[1]
        self.processes = [context.Process(target=_native_echo, args=(listener,), daemon=True)
                          for _ in range(SERVER_WORKERS)]
        for process in self.processes:
            process.start()
        listener.close()

    @property
    def pids(self):
        return [p.pid for p in self.processes]

    def close(self):
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.join(5)


# --- CPU use, from /proc ---------------------------------------------------------------
TICKS = os.sysconf("SC_CLK_TCK")
CPU_GROUPS = ("client", "server", "wineserver", "others")


def _process_ticks(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime
    except (OSError, IndexError, ValueError):
        return 0


def _machine_ticks():
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields[:8]) - idle


def wine_prefix():
    prefix = os.environ.get("WINEPREFIX") or os.path.join(ROOT, "build", "wineprefix")
    return os.path.realpath(prefix)


def wineserver_pid(prefix):
    """The wineserver that serves PREFIX, or None: it holds every socket of the chapter
    programs and does part of their I/O work, so its CPU belongs to the server's."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/comm" % name, "rb") as f:
                if not f.read().startswith(b"wineserver"):
                    continue
            with open("/proc/%s/environ" % name, "rb") as f:
                environment = f.read().split(b"\0")
        except OSError:
            continue
        for entry in environment:
            if entry.startswith(b"WINEPREFIX="):
                if os.path.realpath(os.fsdecode(entry[len(b"WINEPREFIX="):])) == prefix:
                    return int(name)
    return None


class CpuWindow:
    """CPU used by groups of processes and by the whole machine between start() and stop(),
    in cores (1.0 = one core busy all the time)."""

    def __init__(self, groups):
        self.groups = groups  # name -> list of pids

    def _sample(self):
        return ({name: sum(_process_ticks(p) for p in pids) for name, pids in self.groups.items()},
                _machine_ticks(), time.monotonic())

    def start(self):
        self._first = self._sample()

    def stop(self):
        groups, machine, when = self._sample()
        first_groups, first_machine, first_when = self._first
        seconds = (when - first_when) * TICKS
        used = {name: (groups[name] - first_groups[name]) / seconds for name in groups}
        ours = sum(used.values())
        used["others"] = max(0.0, (machine - first_machine) / seconds - ours)
        return used


# --- one run ---------------------------------------------------------------------------
class Failed(Exception):
    pass


def _sleep_until(when):
    delay = when - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def _drive_and_measure(load, cpu, size, warmup, seconds, framed=False):
    start_at = time.monotonic() + START_DELAY
    measure_from = start_at + warmup
    stop_at = measure_from + seconds
    # Sampled by a thread of its own, while this one waits for the client processes.
    window = {}

    def sample():
        _sleep_until(measure_from)
        cpu.start()
        _sleep_until(stop_at)
        window.update(cpu.stop())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    answers = load.drive(size, start_at, measure_from, stop_at, framed)
    sampler.join()
    latencies = array.array("d")
    for answer in answers:
        latencies.extend(answer["latencies"])
    latencies = sorted(latencies)
    return {
        "trips": sum(a["trips"] for a in answers),
        "rate": sum(a["trips"] for a in answers) / seconds,
        "p50": _percentile(latencies, 0.50),
        "p99": _percentile(latencies, 0.99),
        "errors": sum(a["errors"] for a in answers),
        "verified": sum(a["verified"] for a in answers),
        "problems": [p for a in answers for p in a["problems"]],
        "cpu": window,
    }


def _percentile(ordered, fraction):
    if not ordered:
        return float("nan")
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def run_chapter(chapter, load, size, connections, warmup, seconds, prefix):
    """One fresh server of CHAPTER under one load; returns the measurement, with what the
    server did that is worth a look in "odd" and what it did wrong in "failed"."""
    del harness.RUNS[:]  # the harness keeps every run for test reports; not needed here
    odd = []
    framed = chapter.has("messages")
    with harness.Server(chapter.exe, SERVER_ARGS + chapter.message_options(size)) as server:
        try:
            port = server.port
            server.wait_for(r"^\d+ worker threads waiting on the port")
            if chapter.has("acceptex"):
                server.wait_for(r"^\d+ accepts posted on the listener$")
            load.connect(port, connections)
            server.wait_until(
                lambda lines: sum(1 for l in lines if CONNECTED.match(l)) >= connections,
                timeout=30, what="%d 'client N connected' lines" % connections)
            wineserver = wineserver_pid(prefix)
            groups = {"client": load.pids, "server": [server.process.pid]}
            groups["wineserver"] = [wineserver] if wineserver else []
            result = _drive_and_measure(load, CpuWindow(groups), size, warmup, seconds, framed)
            server.wait_until(
                lambda lines: sum(1 for l in lines if DISCONNECTED.match(l)) >= connections,
                timeout=30, what="%d 'client N disconnected' lines" % connections)
            code = server.quit()
        except AssertionError as e:
            raise Failed("%s: %s" % (chapter.name, e)) from None
        lines = list(server.stdout)
        reasons = {}
        for line in lines:
            match = DISCONNECTED.match(line)
            if match:
                reasons[match.group("reason")] = reasons.get(match.group("reason"), 0) + 1
            elif REFUSED.match(line):
                odd.append("refused a client: %s" % line)
        for reason, times in sorted(reasons.items()):
            if reason != "peer closed the connection":
                odd.append("%d clients disconnected with: %s" % (times, reason))
        summary = [SUMMARY.match(l) for l in lines if SUMMARY.match(l)]
        failed = []
        if code != 0:
            failed.append("exit code %s after quit" % code)
        if server.stderr:
            failed.append("printed on stderr: %s" % " | ".join(server.stderr[:5]))
        if not summary:
            failed.append("printed no 'connections served' line")
        else:
            served, echoed = int(summary[0].group("served")), int(summary[0].group("bytes"))
            if served != connections:
                failed.append("served %d connections, not %d" % (served, connections))
            if echoed != result["verified"]:
                failed.append("counted %d bytes echoed; the clients got %d back" % (
                    echoed, result["verified"]))
    result["odd"] = odd
    result["failed"] = failed
    return result


def run_native(native, load, size, connections, warmup, seconds):
    load.connect(native.port, connections)
    groups = {"client": load.pids, "server": native.pids, "wineserver": []}
    result = _drive_and_measure(load, CpuWindow(groups), size, warmup, seconds)
    result["odd"] = []
    result["failed"] = []
    return result


# --- the report ------------------------------------------------------------------------
def _size_name(size):
    if size >= 1024 and size % 1024 == 0:
        return "%d KiB" % (size // 1024)
    return "%d B" % size


def _spread(values, form):
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "-"
    return "%s (%s-%s)" % (form(statistics.median(values)), form(min(values)), form(max(values)))


def _rate(value):
    return "{:,.0f}".format(value)


def _ms(value):
    return "%.2f" % (value * 1000) if value < 0.1 else "%.1f" % (value * 1000)


def _ratio(value):
    return "%.2f" % value


def report(args, chapter_list, results, out):
    """The table: one block per load, one row per chapter, the ratio of each later chapter
    to the first, and the native reference."""
    first = chapter_list[0]
    names = [c.name for c in chapter_list] + ["native"]
    width = max(len("native reference"), max(len(c.name) for c in chapter_list),
                len("ratio %s/%s" % (chapter_list[-1].name[:2], first.name[:2])))
    print("", file=out)
    print("echo ping-pong over loopback: %d repetition%s of %g s each (after %g s of warm-up), "
          "run after run interleaved; servers: %s" % (args.repeat, "" if args.repeat == 1 else "s",
                                                     args.seconds, args.warmup,
                                                     " ".join(SERVER_ARGS)), file=out)
    print("msgs/s = round trips completed per second; p50/p99 = round-trip latency in ms; "
          "each figure is the median of the repetitions (min-max)", file=out)
    print("CPU = cores used in the measured window (median) by the client processes / the "
          "server / its wineserver / everything else on the machine (%d cores)" % os.cpu_count(),
          file=out)
    print("client: %d Python processes, epoll, non-blocking sockets, TCP_NODELAY; native "
          "reference: Python, epoll, %d processes" % (args.client_processes, SERVER_WORKERS),
          file=out)
    header = "%-*s  %-28s  %-24s  %-24s  %s" % (width, "", "msgs/s", "p50 ms", "p99 ms",
                                               "CPU " + "/".join(CPU_GROUPS))
    verdicts = []
    for size in args.sizes:
        for connections in args.connections:
            key = (size, connections)
            print("", file=out)
            print("%s messages, %d connection%s" % (_size_name(size), connections,
                                                     "" if connections == 1 else "s"), file=out)
            print(header, file=out)
            for name in names:
                runs = results[key][name]
                label = "native reference" if name == "native" else name
                cpu = "/".join("%.2f" % statistics.median([r["cpu"][g] for r in runs])
                               for g in CPU_GROUPS)
                print("%-*s  %-28s  %-24s  %-24s  %s" % (
                    width, label, _spread([r["rate"] for r in runs], _rate),
                    _spread([r["p50"] for r in runs], _ms),
                    _spread([r["p99"] for r in runs], _ms), cpu), file=out)
                if name == chapter_list[-1].name and len(chapter_list) > 1:
                    for later in chapter_list[1:]:
                        base = results[key][first.name]
                        mine = results[key][later.name]
                        rates = [m["rate"] / b["rate"] for m, b in zip(mine, base) if b["rate"]]
                        p50s = [m["p50"] / b["p50"] for m, b in zip(mine, base) if b["p50"]]
                        p99s = [m["p99"] / b["p99"] for m, b in zip(mine, base) if b["p99"]]
                        print(("%-*s  %-28s  %-24s  %s" % (
                            width, "ratio %s/%s" % (later.name[:2], first.name[:2]),
                            _spread(rates, _ratio), _spread(p50s, _ratio),
                            _spread(p99s, _ratio))).rstrip(), file=out)
            best = max(statistics.median([r["rate"] for r in results[key][c.name]])
                       for c in chapter_list)
            native = statistics.median([r["rate"] for r in results[key]["native"]])
            client = max(statistics.median([r["cpu"]["client"] for r in results[key][c.name]])
                         for c in chapter_list)
            verdicts.append((size, connections, native / best if best else float("inf"), client))
    print("", file=out)
    print("ratios: msgs/s above 1 and latency below 1 mean %s did better than %s in the same "
          "repetition" % ("the later chapter" if len(chapter_list) > 2 else chapter_list[-1].name,
                          first.name), file=out)
    return verdicts


def print_verdict(verdicts, out):
    print("", file=out)
    print("is the load generator the limit? The native reference server, driven by the same "
          "client with the same load:", file=out)
    limited = []
    for size, connections, headroom, client in verdicts:
        if connections == 1:
            what = "latency-bound (one message in flight), not a test of the client's capacity"
        elif headroom >= HEADROOM:
            what = "not the limit"
        else:
            what = "MAY BE THE LIMIT"
            limited.append((size, connections))
        print("  %s, %d connection%s: %.1fx the fastest chapter's msgs/s; the client used at "
              "most %.2f cores with the chapters: %s" % (
                  _size_name(size), connections, "" if connections == 1 else "s", headroom,
                  client, what), file=out)
    if not any(connections > 1 for _, connections, _, _ in verdicts):
        print("no load had more than one connection, so the client's capacity was not tested",
              file=out)
    elif limited:
        print("the client may be the bottleneck for: %s; those chapter figures are a lower "
              "bound, and their ratios may be squeezed towards 1" % ", ".join(
                  "%s x %d" % (_size_name(s), c) for s, c in limited), file=out)
    else:
        print("the client got at least %.0fx more through a native server on every load with "
              "more than one connection, so it was not what limited the chapters" % HEADROOM,
              file=out)


# --- command line ----------------------------------------------------------------------
def _size(text):
    match = re.fullmatch(r"(\d+)\s*(k|kib|kb)?", text.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError("not a size: %r (e.g. 64 or 4K)" % text)
    value = int(match.group(1)) * (1024 if match.group(2) else 1)
    if not 1 <= value <= 1 << 20:
        raise argparse.ArgumentTypeError("sizes go from 1 byte to 1 MiB")
    return value


def _positive(kind):
    def parse(text):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError("must be above 0")
        return value
    return parse


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Echo ping-pong, chapters side by side under Wine, with a native "
                    "reference that shows whether the client is the limit.")
    parser.add_argument("--chapters", nargs="+", default=["08", "10"],
                        help="chapters to compare, first is the baseline (default 08 10)")
    parser.add_argument("--sizes", nargs="+", type=_size, default=None,
                        help="message sizes in bytes, 4K = 4096 (default 64 4096)")
    parser.add_argument("--connections", nargs="+", type=_positive(int), default=None,
                        help="connection counts, at most 250 (default 1 100)")
    parser.add_argument("--seconds", type=_positive(float), default=None,
                        help="measured seconds per run (default 3)")
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds of load before the measurement (default 1)")
    parser.add_argument("--repeat", type=_positive(int), default=None,
                        help="repetitions of the whole interleaved round (default 5)")
    parser.add_argument("--client-processes", type=_positive(int), default=os.cpu_count() or 2,
                        help="processes that drive the connections (default: one per core)")
    parser.add_argument("--quick", action="store_true",
                        help="one short repetition at 100 connections (about 15 s), for the "
                             "smoke test; any option given as well still applies")
    args = parser.parse_args(argv)
    quick = {"sizes": [64, 4096], "connections": [100], "seconds": 1.0, "warmup": 0.3,
             "repeat": 1}
    full = {"sizes": [64, 4096], "connections": [1, 100], "seconds": 3.0, "warmup": 1.0,
            "repeat": 5}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if max(args.connections) > 250:
        parser.error("--connections: at most 250, since the servers have 256 slots")
    if args.warmup < 0:
        parser.error("--warmup: not below 0")
    return args


def find_chapters(names):
    found = []
    for name in names:
        matches = [c for c in chapters.ALL if c.name == name or c.name[:2] == name.zfill(2)]
        if not matches:
            raise SystemExit("bench.py: no chapter %r; there are %s" % (
                name, " ".join(c.name for c in chapters.ALL)))
        chapter = matches[0]
        if not chapter.has("echo"):
            raise SystemExit("bench.py: chapter %s does not echo" % chapter.name)
        harness.require_exe(chapter.exe)
        found.append(chapter)
    return found


def main(argv):
    if not hasattr(select, "epoll") or not os.path.isdir("/proc"):
        print("bench.py: runs on Linux only (epoll, /proc)", file=sys.stderr)
        return 2
    args = parse_args(argv)
    try:
        chapter_list = find_chapters(args.chapters)
    except AssertionError as e:
        print("bench.py: %s" % e, file=sys.stderr)
        return 2
    prefix = wine_prefix()
    # Forked now, while this process has no thread: the harness starts reader threads.
    load = Load(args.client_processes)
    native = NativeServer()
    names = [c.name for c in chapter_list] + ["native"]
    results = {(s, c): {n: [] for n in names} for s in args.sizes for c in args.connections}
    total = args.repeat * len(results) * len(names)
    done = 0
    problems = []
    odd = []
    started = time.monotonic()
    already = wineserver_pid(prefix) is not None
    session = contextlib.nullcontext() if already else harness.wine_session()
    print("bench: WINEPREFIX=%s (%s); %d client processes; %d runs of about %.0f s" % (
        prefix, "wineserver already running, left running" if already else
        "wineserver started for this run", args.client_processes, total,
        args.warmup + args.seconds + 1.5), file=sys.stderr)
    try:
        with session:
            for repetition in range(1, args.repeat + 1):
                for size in args.sizes:
                    for connections in args.connections:
                        for chapter in chapter_list + [None]:
                            name = chapter.name if chapter else "native"
                            if chapter:
                                result = run_chapter(chapter, load, size, connections,
                                                     args.warmup, args.seconds, prefix)
                            else:
                                result = run_native(native, load, size, connections,
                                                    args.warmup, args.seconds)
                            results[(size, connections)][name].append(result)
                            done += 1
                            cpu = result["cpu"]
                            print("[%2d/%d] rep %d %-20s %7s x %3d: %8s msgs/s, p99 %6s ms, "
                                  "%d errors; CPU %s%s" % (
                                      done, total, repetition, name, _size_name(size),
                                      connections, _rate(result["rate"]), _ms(result["p99"]),
                                      result["errors"], " ".join(
                                          "%s %.2f" % (g, cpu[g]) for g in CPU_GROUPS),
                                      "".join("; " + o for o in result["odd"] + result["failed"])),
                                  file=sys.stderr, flush=True)
                            where = "%s, %s x %d, repetition %d" % (
                                name, _size_name(size), connections, repetition)
                            problems += ["%s: %s" % (where, p)
                                         for p in result["problems"] + result["failed"]]
                            odd += ["%s: %s" % (where, o) for o in result["odd"]]
    except (Failed, RuntimeError) as e:
        print("bench.py: stopped: %s" % e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench.py: interrupted", file=sys.stderr)
        return 130
    finally:
        native.close()
        load.close()
    out = sys.stdout
    verdicts = report(args, chapter_list, results, out)
    errors = sum(r["errors"] for runs in results.values() for rs in runs.values() for r in rs)
    verified = sum(r["verified"] for runs in results.values() for rs in runs.values() for r in rs)
    print_verdict(verdicts, out)
    print("", file=out)
    print("errors: %d (every echoed byte compared with what was sent: %s bytes, warm-up and "
          "the last echoes included)" % (errors, "{:,}".format(verified)), file=out)
    for line in problems[:20]:
        print("  problem: %s" % line, file=out)
    for line in odd[:20]:
        print("  odd: %s" % line, file=out)
    print("the machine was shared: 'others' in the CPU column is what other programs used; "
          "compare chapters by the ratio rows, which pair runs made seconds apart "
          "(%.0f s in all)" % (time.monotonic() - started), file=out)
    out.flush()
    return 1 if errors or problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
