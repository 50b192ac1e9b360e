"""The message parser on its own, built natively, in both of its copies: chapter 11's
(chapters/11-messages/frame.c), which knows the echo type alone, and the one that
graduated to common/frame.c for the chapters after it, which also knows the chat room's
types (1 to 4 from clients, 16 to 18 from the server). Every test runs against both
(SOURCES, with the types each knows written out); where they differ is which types are
known, and a type one of them refuses may be one the other takes.

frame.c is plain C11 without Winsock, so it builds with the machine's own compiler:
with gcc (or cc, or clang) into build/native/frame_driver-NAME, a small program
(tests/fuzz/frame_driver.c) that runs frame_parse and frame_header for commands on its
standard input. A program rather than a shared library loaded with ctypes because the
sanitizers then just work: AddressSanitizer would have to come first in the process, i.e.
be preloaded into Python, and would then report Python's own allocations as leaks. With
AddressSanitizer and UBSan (everywhere but Windows, whose MinGW gcc has neither) each
parse's bytes sit in a heap block of exactly their size, so one byte read past
`available` stops the driver, and the failing test shows the sanitizer's report.

The last test runs the libFuzzer target tests/fuzz/frame_fuzz.c on each copy for a few
seconds (as `make fuzz` does for longer), told the types that copy knows
(-DFRAME_FUZZ_KNOWN_TYPES), when clang has libFuzzer: `scripts/ensure-tools.sh fuzz`
installs it, and .ci/run asks for it. Without a native compiler, or without libFuzzer,
the tests that need them are skipped with the reason.
"""

import os
import shutil
import struct
import subprocess
import tempfile

import pytest

import harness
from chapters import BUILD_DIR, ROOT

WINDOWS = os.name == "nt"
FUZZ_SOURCES = os.path.join(ROOT, "tests", "fuzz")
EXE = ".exe" if WINDOWS else ""

WARNINGS = ["-std=c11", "-Wall", "-Wextra", "-Wpedantic", "-Werror"]
SANITIZERS = [] if WINDOWS else ["-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                                 "-fno-omit-frame-pointer"]
# What `make fuzz` builds with (the Makefile's FUZZ_CFLAGS).
FUZZ_FLAGS = WARNINGS + ["-g", "-O1", "-fsanitize=fuzzer,address,undefined",
                         "-fno-sanitize-recover=all"]
FUZZ_SECONDS = 5
FUZZ_RUNS = 500000

ECHO = 1
HEADER_SIZE = 5


class Source:
    """One copy of the parser: NAME, its folder (frame.c and frame.h) and the types its
    frame_parse takes (every other type byte is FRAME_UNKNOWN_TYPE)."""

    def __init__(self, name, folder, known):
        self.name = name
        self.folder = os.path.join(ROOT, folder)
        self.frame_c = os.path.join(self.folder, "frame.c")
        self.known = frozenset(known)
        # Types it refuses: the other copy's, and the edges of the byte.
        self.unknown = sorted({0, 2, 3, 4, 5, 15, 16, 17, 18, 19, 255} - self.known)

    def __repr__(self):
        return self.name


SOURCES = [
    # Chapter 11 knows one type: echo.
    Source("11-messages", os.path.join("chapters", "11-messages"), {ECHO}),
    # From chapter 12: echo, join, say, leave (clients); message, notice, error (server).
    Source("common", "common", {ECHO, 2, 3, 4, 16, 17, 18}),
]


def message(payload, kind=ECHO, length=None):
    """A message as a client sends it: length (4 bytes, big-endian), type, payload."""
    return struct.pack(">IB", len(payload) if length is None else length, kind) + payload


def native_compiler():
    """The native C compiler to build with, or None."""
    for name in ("gcc", "cc", "clang"):
        path = shutil.which(name)
        if path:
            return path
    return None


def compile_program(compiler, flags, source, others, output):
    """Compiles SOURCE's frame.c and OTHERS into OUTPUT, with SOURCE's folder first on the
    include path (its frame.h); fails the test with the compiler's output if it fails."""
    os.makedirs(os.path.dirname(output), exist_ok=True)
    sources = others + [source.frame_c]
    done = subprocess.run([compiler] + flags + ["-I" + source.folder] + sources +
                          ["-o", output],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT,
                          timeout=120)
    assert done.returncode == 0, "%s failed:\n%s" % (
        " ".join([os.path.basename(compiler)] + flags + sources),
        done.stdout.decode("utf-8", "replace"))
    return output


class Driver:
    """build/native/frame_driver-NAME, running: parse() and header() are one line each
    way; .source is the copy of the parser it was built from."""

    def __init__(self, exe, source):
        self.exe = exe
        self.source = source
        self.process = None

    def _start(self):
        self._stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen([self.exe], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self._stderr, cwd=ROOT,
                                        universal_newlines=True)

    def _ask(self, line):
        if self.process is None:  # the first question, or the one after a crash
            self._start()
        try:
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()
            answer = self.process.stdout.readline()
        except OSError:
            answer = ""
        if not answer:  # the driver has stopped: a sanitizer report, most likely
            code, report = self.close()
            raise AssertionError("frame_driver stopped (exit code %s) at %r:\n%s" % (
                code, line[:200], report))
        return answer.split()

    def parse(self, data, max_payload, fill=0):
        """frame_parse of DATA followed by FILL bytes b"x": ("READY", type, payload
        offset, length, size), or (status,) for the others."""
        words = self._ask("parse %s %s %d" % (max_payload, data.hex() or "-", fill))
        if words[0] == "READY":
            return ("READY", int(words[1]), int(words[2]) if words[2].isdigit() else words[2],
                    int(words[3]), int(words[4]))
        return tuple(words)

    def header(self, kind, length):
        """frame_header's 5 bytes."""
        return bytes.fromhex(self._ask("header %d %d" % (kind, length))[0])

    def close(self):
        """Ends the driver; returns its exit code and what it wrote on stderr."""
        process, self.process = self.process, None
        if process is None:
            return None, ""
        try:
            process.stdin.close()
        except OSError:
            pass
        try:
            code = process.wait(10)
        finally:
            process.stdout.close()
            self._stderr.seek(0)
            report = self._stderr.read().decode("utf-8", "replace")
            self._stderr.close()
        return code, report


@pytest.fixture(scope="module", params=SOURCES, ids=[s.name for s in SOURCES])
def driver(request):
    source = request.param
    compiler = native_compiler()
    if compiler is None:
        pytest.skip("no native C compiler (gcc, cc or clang) on PATH to build frame.c with")
    exe = compile_program(compiler, WARNINGS + ["-g", "-O1"] + SANITIZERS, source,
                          [os.path.join(FUZZ_SOURCES, "frame_driver.c")],
                          os.path.join(BUILD_DIR, "native", "frame_driver-%s%s" % (
                              source.name, EXE)))
    running = Driver(exe, source)
    yield running
    code, report = running.close()
    assert code in (0, None), "frame_driver exited %s:\n%s" % (code, report)


def ready(payload_length, kind=ECHO):
    """What frame_parse answers for a whole message of type KIND (echo unless given) with
    that many payload bytes."""
    return ("READY", kind, HEADER_SIZE, payload_length, HEADER_SIZE + payload_length)


def test_every_prefix_of_a_message_is_incomplete(driver):
    whole = message(b"a message, cut at every byte offset")
    for cut in range(len(whole)):
        assert driver.parse(whole[:cut], 1024) == ("INCOMPLETE",), "first %d bytes" % cut
    assert driver.parse(whole, 1024) == ready(len(whole) - HEADER_SIZE)


def test_the_payload_is_in_the_bytes_after_the_header(driver):
    # A payload of 'x' bytes (FILL), at offset 5 of the bytes parsed.
    assert driver.parse(message(b"", length=300), 1024, fill=300) == ready(300)


def test_messages_back_to_back_are_taken_one_after_another(driver):
    payloads = [b"one", b"", b"three", bytes(range(256)), b"\x00\x01" * 700, b"!"]
    inbox = b"".join(message(p) for p in payloads)
    offset = 0
    for payload in payloads:
        status, kind, start, length, size = driver.parse(inbox[offset:], 1 << 16)
        assert (status, kind, start, length, size) == ready(len(payload))
        assert inbox[offset + start:offset + start + length] == payload
        offset += size
    assert offset == len(inbox)
    assert driver.parse(inbox[offset:], 1 << 16) == ("INCOMPLETE",)


def test_bytes_after_a_message_are_left_for_the_next(driver):
    # A whole message followed by part of the next: the first comes out alone.
    assert driver.parse(message(b"first") + b"\x00\x00\x00", 64) == ready(5)
    assert driver.parse(message(b"first") + message(b"second")[:7], 64) == ready(5)


def test_a_zero_length_payload_is_a_whole_message(driver):
    assert driver.parse(message(b""), 0) == ready(0)
    assert driver.parse(message(b""), 100) == ready(0)
    for cut in range(HEADER_SIZE):
        assert driver.parse(message(b"")[:cut], 100) == ("INCOMPLETE",)


@pytest.mark.parametrize("max_payload", [0, 1, 255, 4096, 65536])
def test_a_payload_of_exactly_max_payload_is_ready(driver, max_payload):
    header = message(b"", length=max_payload)
    assert driver.parse(header, max_payload, fill=max_payload) == ready(max_payload)
    if max_payload > 0:  # one byte short of it: still waiting
        assert driver.parse(header, max_payload, fill=max_payload - 1) == ("INCOMPLETE",)


@pytest.mark.parametrize("max_payload", [0, 1, 255, 4096, 65536])
def test_one_byte_over_max_payload_is_refused_once_the_length_is_there(driver, max_payload):
    header = message(b"", length=max_payload + 1)
    for cut in range(4):
        assert driver.parse(header[:cut], max_payload) == ("INCOMPLETE",), "%d bytes" % cut
    # Refused with the 4 length bytes alone: no type byte, no payload yet.
    assert driver.parse(header[:4], max_payload) == ("TOO_LONG",)
    assert driver.parse(header, max_payload) == ("TOO_LONG",)
    assert driver.parse(header, max_payload, fill=max_payload + 1) == ("TOO_LONG",)
    # Whatever its type: the length is checked first.
    assert driver.parse(message(b"", kind=7, length=max_payload + 1), max_payload) == \
        ("TOO_LONG",)


def test_the_longest_length_is_refused_under_every_limit_but_the_largest(driver):
    assert driver.parse(b"\xff\xff\xff\xff", 2 ** 32 - 2) == ("TOO_LONG",)
    assert driver.parse(b"\xff\xff\xff\xff", 2 ** 32 - 1) == ("INCOMPLETE",)
    assert driver.parse(b"\xff\xff\xff\xff\x01", "max") == ("INCOMPLETE",)


def test_an_unknown_type_is_refused_once_the_type_byte_is_there(driver):
    # For chapter 11 that is 2, 3, 4 and 16-18 too, which common/frame.c knows.
    for kind in driver.source.unknown:
        whole = message(b"payload", kind=kind)
        for cut in range(HEADER_SIZE):
            assert driver.parse(whole[:cut], 1024) == ("INCOMPLETE",), (kind, cut)
        # Refused with the 5th byte: the payload is not waited for.
        assert driver.parse(whole[:HEADER_SIZE], 1024) == ("UNKNOWN_TYPE",), kind
        assert driver.parse(whole, 1024) == ("UNKNOWN_TYPE",), kind
        assert driver.parse(message(b"", kind=kind), 0) == ("UNKNOWN_TYPE",), kind


def test_every_known_type_is_a_message_and_no_other_is(driver):
    for kind in range(256):
        whole = message(b"payload", kind=kind)
        if kind in driver.source.known:
            assert driver.parse(whole, 1024) == ready(7, kind), kind
            assert driver.parse(whole[:HEADER_SIZE], 1024) == ("INCOMPLETE",), kind
            assert driver.parse(message(b"", kind=kind), 0) == ready(0, kind), kind
        else:
            assert driver.parse(whole, 1024) == ("UNKNOWN_TYPE",), kind
    # Back to back, one of each known type, each with its own payload.
    payloads = [(kind, (b"type %d " % kind) * kind) for kind in sorted(driver.source.known)]
    inbox = b"".join(message(p, kind=k) for k, p in payloads)
    offset = 0
    for kind, payload in payloads:
        assert driver.parse(inbox[offset:], 1 << 16) == ready(len(payload), kind)
        offset += HEADER_SIZE + len(payload)
    assert offset == len(inbox)


@pytest.mark.parametrize("length", [0, 1, 255, 256, 65535, 65536, 2 ** 24, 2 ** 32 - 1])
def test_frame_header_round_trips_through_frame_parse(driver, length):
    header = driver.header(ECHO, length)
    assert header == struct.pack(">IB", length, ECHO)
    # The length parsed is LENGTH exactly: over a limit one below it, within LENGTH.
    if length > 0:
        assert driver.parse(header[:4], length - 1) == ("TOO_LONG",)
        assert driver.parse(header, length) == ("INCOMPLETE",)
    assert driver.parse(header[:4], length) == ("INCOMPLETE",)
    if length <= 2 ** 24:  # with its payload too (16 MiB at most, made by the driver)
        assert driver.parse(header, length, fill=length) == ready(length)
        assert driver.parse(header, "max", fill=length) == ready(length)


def test_frame_header_writes_any_type_byte(driver):
    for kind in (0, 1, 2, 255):
        assert driver.header(kind, 0x01020304) == b"\x01\x02\x03\x04" + bytes([kind])


@pytest.mark.parametrize("garbage", [
    b"GET / HTTP/1.1\r\n",
    b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # the start of a TLS ClientHello
    b"hello\n",
])
def test_garbage_is_refused_not_waited_for(driver, garbage):
    # "GET " reads as a length of 1,195,725,856 bytes: over any sensible limit.
    assert driver.parse(garbage, 1 << 20) == ("TOO_LONG",)
    # Under no limit the 5th byte is taken for the type: '/', 0 or 'o', known to neither.
    assert garbage[4] not in driver.source.known
    assert driver.parse(garbage, "max") == ("UNKNOWN_TYPE",)


# --- fuzzing ----------------------------------------------------------------------------
def fuzz_compiler():
    """(clang, None) when clang builds a libFuzzer target with AddressSanitizer and UBSan
    here that runs; otherwise (None, the reason it does not), for the skip."""
    clang = shutil.which("clang")
    if clang is None:
        return None, "no clang on PATH (scripts/ensure-tools.sh fuzz installs it)"
    with tempfile.TemporaryDirectory() as scratch:
        probe = os.path.join(scratch, "probe.c")
        with open(probe, "w") as f:
            f.write("#include <stddef.h>\n#include <stdint.h>\n"
                    "int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);\n"
                    "int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)\n"
                    "{\n    (void)data;\n    (void)size;\n    return 0;\n}\n")
        exe = os.path.join(scratch, "probe" + EXE)
        done = subprocess.run([clang] + FUZZ_FLAGS + [probe, "-o", exe],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        if done.returncode != 0:
            # The first line, e.g. "ld: cannot find .../libclang_rt.fuzzer-x86_64.a".
            first = done.stdout.decode("utf-8", "replace").strip().splitlines()[:1]
            return None, ("clang cannot link -fsanitize=fuzzer,address,undefined here (%s); "
                          "scripts/ensure-tools.sh fuzz installs libFuzzer" % "".join(first))
        done = subprocess.run([exe, "-runs=1"], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60,
                              cwd=scratch)
        if done.returncode != 0:
            return None, "a libFuzzer program clang built here does not run (exit code %s)" % (
                done.returncode)
    return clang, None


def known_types_flag(source):
    """How the fuzz target is told the types SOURCE knows (the Makefile passes the same)."""
    return "-DFRAME_FUZZ_KNOWN_TYPES=" + ",".join(str(t) for t in sorted(source.known))


@pytest.mark.parametrize("source", SOURCES, ids=[s.name for s in SOURCES])
def test_a_few_seconds_of_fuzzing_find_nothing(source, tmp_path):
    clang, why = fuzz_compiler()
    if clang is None:
        pytest.skip(why)
    # The folder `make fuzz` uses for this copy, for the crash files.
    fuzz_dir = os.path.join(BUILD_DIR, "fuzz", source.name)
    exe = compile_program(clang, FUZZ_FLAGS + [known_types_flag(source)], source,
                          [os.path.join(FUZZ_SOURCES, "frame_fuzz.c")],
                          os.path.join(fuzz_dir, "frame_fuzz-test" + EXE))
    # New inputs go to a corpus of this run's own; the committed seeds are only read.
    seed = harness.random_source().randrange(1, 2 ** 31)
    command = [exe, "-seed=%d" % seed, "-max_total_time=%d" % FUZZ_SECONDS,
               "-runs=%d" % FUZZ_RUNS, "-artifact_prefix=" + fuzz_dir + os.sep,
               str(tmp_path), os.path.join(FUZZ_SOURCES, "corpus")]
    done = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, cwd=ROOT, timeout=FUZZ_SECONDS + 60)
    output = done.stdout.decode("utf-8", "replace")
    assert done.returncode == 0, (
        "the fuzzer failed (exit code %d); the input is in %s (crash-*), replay it with "
        "%s CRASH_FILE\n%s" % (done.returncode, fuzz_dir, exe, output[-6000:]))
    assert "Done " in output, output[-3000:]
