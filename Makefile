# Builds, runs and tests every chapter of the tutorial.
#
#   make                 build every chapter to build/NN-topic.exe, plus the tools
#   make tour            build and run every chapter with its demo; compare with the notes
#   make test            the test suite (pytest), after the build, format and notes checks
#   make run CH=03 [ARGS="--port 9001"]   run one chapter in the foreground
#   make client [PORT=9000] [HOST=127.0.0.1]   a client you can type into
#   make chat [PORT=9000] [HOST=127.0.0.1] [NAME=bob]   a chat client for chapter 12's room
#   make load [PORT=9000] [HOST=127.0.0.1] [ARGS="--connections 100"]   load generator, every echo checked
#   make bench [ARGS="--quick"]   the echo chapters (08 on) side by side under the same loads:
#                        ping-pong, chat broadcasts, 10,000 idle connections; a table, a chart
#   make bench-echo / bench-chat / bench-idle [ARGS=...]   one kind of load of make bench
#   make check-build     also compile with clang and for 32-bit Windows (-Werror)
#   make fuzz [FUZZ_SECONDS=60]   fuzz the message parser, common/ and chapter 11's (native, libFuzzer)
#   make pitfall CH=07 NAME=free-slot-with-io-pending   put a classic mistake back, see its tests fail
#   make pitfalls        list every pitfall: chapter, name, the mistake, the tests that catch it
#   make notes           regenerate each chapter's "What changed" diff
#   make format / format-check, make docs, make compile_commands.json, make cmake-check
#
# On Linux the programs are cross-built with MinGW-w64 and run under Wine; missing tools
# are installed with apt-get on first use. In an MSYS2 shell on Windows they build with
# the MinGW gcc on PATH and run natively.

.DEFAULT_GOAL := all
SHELL := /bin/sh

CHAPTER_DIRS := $(sort $(patsubst %/,%,$(dir $(wildcard chapters/*/main.c))))
CHAPTERS := $(notdir $(CHAPTER_DIRS))
COMMON_SOURCES := $(wildcard common/*.c)
TOOLS := client chat loadgen

BUILD := build

ifeq ($(OS),Windows_NT)
  NATIVE := 1
  CC := gcc
  AR_TOOL := ar
  RUN :=
  PYTEST := python -m pytest
  ENSURE := @true
else
  NATIVE :=
  CC := x86_64-w64-mingw32-gcc
  AR_TOOL := x86_64-w64-mingw32-ar
  RUN := scripts/wine.sh interactive
  PYTEST := /usr/bin/pytest-3
  ENSURE := @scripts/ensure-tools.sh
endif

# Warnings that catch real mistakes in Win32 code; -Werror so none slips through.
WARNINGS := -Wall -Wextra -Wpedantic -Werror -Wshadow -Wformat=2 -Wstrict-prototypes \
            -Wmissing-prototypes -Wvla -Wpointer-arith -Wcast-qual -Wundef \
            -Wdeclaration-after-statement
CSTD := -std=c11
# _WIN32_WINNT names the oldest Windows the programs target; the headers declare only
# the APIs that version has. Windows Vista (0x0600) covers everything used here:
# inet_ntop and inet_pton in the chapters; GetTickCount64, SleepConditionVariableCS and
# CancelSynchronousIo in the tools; and the Vista APIs planned for later chapters
# (CancelIoEx, GetQueuedCompletionStatusEx, SetFileCompletionNotificationModes, thread
# pool I/O). The MinGW-w64 headers declare all of them from 0x0600. 0x0602 (Windows 8)
# only adds declarations that nothing here uses, such as htonll and SetThreadInformation.
DEFINES := -D_WIN32_WINNT=0x0602 -DWIN32_LEAN_AND_MEAN
CFLAGS ?= -O2 -g
ALL_CFLAGS := $(CSTD) $(WARNINGS) $(DEFINES) -Icommon $(CFLAGS)
LDLIBS := -lws2_32 -lntdll

EXES := $(CHAPTERS:%=$(BUILD)/%.exe)
TOOL_EXES := $(TOOLS:%=$(BUILD)/tools/%.exe)

.PHONY: all tools tools-build tools-check-build tools-wine tools-test tools-docs \
        tools-format tools-bear run client chat tour test check-build notes notes-check \
        format format-check docs diagrams diagrams-check cmake-check clean wine-stop help \
        bench bench-echo bench-chat bench-idle tools-bench fuzz pitfall pitfalls
.SUFFIXES:
# Keep object files between builds: they are what makes rebuilds incremental.
.SECONDARY:

all: $(EXES) $(TOOL_EXES)

help:
	@sed -n '2,/^$$/p' Makefile | sed -e '$$d' -e 's/^# \{0,1\}//'

tools-build:
	$(ENSURE) build
tools-check-build:
	$(ENSURE) check-build
tools-wine:
ifeq ($(NATIVE),)
	$(ENSURE) wine
endif
tools-test:
ifeq ($(NATIVE),)
	$(ENSURE) test fuzz
endif
tools-docs:
	$(ENSURE) docs
tools-format:
	$(ENSURE) format
tools-bear:
	$(ENSURE) bear

# --- build ------------------------------------------------------------------------------
# A chapter is every .c file in its folder (main.c, and from chapter 11 its parser),
# linked with common/ as a library: the linker takes from a library only what is still
# missing, so the chapter that teaches a helper (11's frame.c) keeps its own copy of it.
# $(call chapter-rule,OUTPUT_DIR,COMPILER,EXTRA_FLAGS,CHAPTER)
define chapter-rule
$(1)/$(4).exe: $(patsubst chapters/%.c,$(1)/obj/%.o,$(wildcard chapters/$(4)/*.c)) \
               $(1)/libcommon.a
	$(2) $(3) $$^ -o $$@ $(LDLIBS)

endef

# $(call build-rules,OUTPUT_DIR,COMPILER,EXTRA_FLAGS,TOOLS_TARGET,ARCHIVER)
define build-rules
$(1)/libcommon.a: $(COMMON_SOURCES:%.c=$(1)/obj/%.o)
	@rm -f $$@
	$(5) rcs $$@ $$^

$(1)/obj/common/%.o: common/%.c | $(4)
	@mkdir -p $$(@D)
	$(2) $(ALL_CFLAGS) $(3) -MMD -MP -c $$< -o $$@

$(1)/obj/%.o: chapters/%.c | $(4)
	@mkdir -p $$(@D)
	$(2) $(ALL_CFLAGS) $(3) -MMD -MP -c $$< -o $$@

$(1)/obj/tools/%.o: tools/%.c | $(4)
	@mkdir -p $$(@D)
	$(2) $(ALL_CFLAGS) $(3) -MMD -MP -c $$< -o $$@

$(foreach chapter,$(CHAPTERS),$(call chapter-rule,$(1),$(2),$(3),$(chapter)))

$(1)/tools/%.exe: $(1)/obj/tools/%.o $(1)/libcommon.a
	@mkdir -p $$(@D)
	$(2) $(3) $$^ -o $$@ $(LDLIBS)
endef

$(eval $(call build-rules,$(BUILD),$(CC),,tools-build,$(AR_TOOL)))

# check-build: the same sources through two more compilers. clang's
# -Wshorten-64-to-32 and a 32-bit target catch pointer-size mistakes such as a SOCKET or
# ULONG_PTR kept in an int; 32-bit programs are only linked, not run.
CLANG := clang --target=x86_64-w64-windows-gnu -L/usr/lib/gcc/x86_64-w64-mingw32/12-win32
CLANG_EXTRA := -Wshorten-64-to-32 -Wno-unused-command-line-argument
I686_CC := i686-w64-mingw32-gcc
$(eval $(call build-rules,$(BUILD)/clang,$(CLANG),$(CLANG_EXTRA),tools-check-build,$(AR_TOOL)))
$(eval $(call build-rules,$(BUILD)/i686,$(I686_CC),-Wconversion -Wno-sign-conversion,tools-check-build,i686-w64-mingw32-ar))

check-build: all $(EXES:$(BUILD)/%=$(BUILD)/clang/%) $(TOOL_EXES:$(BUILD)/%=$(BUILD)/clang/%) \
             $(EXES:$(BUILD)/%=$(BUILD)/i686/%) $(TOOL_EXES:$(BUILD)/%=$(BUILD)/i686/%)
	@echo "check-build: $(words $(CHAPTERS)) chapters and $(words $(TOOLS)) tools built clean with MinGW gcc (x86_64, i686) and clang"

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# --- run --------------------------------------------------------------------------------
CH ?=
chapter_of = $(firstword $(filter $(1)-%,$(CHAPTERS)) $(filter $(1),$(CHAPTERS)))

run: all tools-wine
	@test -n "$(CH)" || { echo "usage: make run CH=03 [ARGS=\"--port 9001\"]"; exit 2; }
	@test -n "$(call chapter_of,$(CH))" || { echo "no chapter '$(CH)'; chapters: $(CHAPTERS)"; exit 2; }
	@echo "running $(call chapter_of,$(CH)); type quit (or press Ctrl+C) to stop it"
	$(RUN) $(BUILD)/$(call chapter_of,$(CH)).exe $(ARGS)

PORT ?= 9000
HOST ?= 127.0.0.1
client: all tools-wine
	$(RUN) $(BUILD)/tools/client.exe $(HOST) $(PORT)

# NAME, if given, joins the room right after connecting (chat.exe --name NAME).
NAME ?=
chat: all tools-wine
	$(RUN) $(BUILD)/tools/chat.exe $(if $(NAME),--name $(NAME)) $(HOST) $(PORT)

# The load generator (tools/loadgen.c), against a server that is already running; ARGS
# are its options, such as ARGS="--connections 100 --pipeline 4", or --framed from
# chapter 11 on. The server needs a --max-clients of at least --connections.
.PHONY: load
load: all tools-wine
	$(RUN) $(BUILD)/tools/loadgen.exe $(ARGS) $(HOST) $(PORT)

# --- tour and tests ---------------------------------------------------------------------
# tests/tour.py plays each chapter's tour.txt through the test harness, with the Python
# the tests use (tools-test installs it on Linux); it needs no pytest itself.
ifeq ($(NATIVE),)
  TOUR_PYTHON := /usr/bin/python3
else
  TOUR_PYTHON := python
endif
tour: all tools-wine tools-test
	$(TOUR_PYTHON) tests/tour.py --build-dir $(BUILD) $(CH)

notes:
	@scripts/notes.sh

notes-check:
	@scripts/notes.sh --check

# TEST_JOBS test files run at once, each pytest-xdist worker with a Wine prefix (and so a
# wineserver) of its own (tests/conftest.py): on Linux one per core, as the tests mostly
# wait on Wine; on Windows one unless you ask for more (pip install pytest-xdist).
ifeq ($(NATIVE),)
  TEST_JOBS ?= $(shell nproc 2>/dev/null || echo 1)
else
  TEST_JOBS ?= 1
endif
# On Linux the tests also run a seconds-long smoke of the benchmark, which needs the native
# reference server (below) and the host compiler that builds it.
ifeq ($(NATIVE),)
  TEST_NEEDS := tools-bench $(BUILD)/native/epoll-echo
endif
test: all check-build tools-wine tools-test format-check $(TEST_NEEDS)
	$(PYTEST) -p no:cacheprovider $(if $(filter-out 1,$(TEST_JOBS)),-n $(TEST_JOBS) --dist loadfile) tests

# The benchmark (scripts/bench.py): tools/loadgen.exe drives every load, in a Wine prefix
# of its own, against each echo chapter and, on Linux, against the native reference
# tools/epoll-echo.c, built with the host's cc. build/bench/ gets bench.md, bench.json
# and bench.svg.
NATIVE_ECHO := $(BUILD)/native/epoll-echo
$(NATIVE_ECHO): tools/epoll-echo.c
	@mkdir -p $(@D)
	cc $(CSTD) $(WARNINGS) -O2 -pthread $< -o $@

ifeq ($(NATIVE),)
  BENCH_NEEDS := all tools-wine tools-test tools-bench $(NATIVE_ECHO)
else
  BENCH_NEEDS := all
endif
tools-bench:
	$(ENSURE) bench

bench: $(BENCH_NEEDS)
	$(TOUR_PYTHON) scripts/bench.py $(ARGS)

bench-echo bench-chat bench-idle: $(BENCH_NEEDS)
	$(TOUR_PYTHON) scripts/bench.py --only $(@:bench-%=%) $(ARGS)

# --- the pitfall lab -------------------------------------------------------------------
# Each chapters/NN-topic/pitfalls/NAME.patch puts one classic mistake of that chapter's
# notes back into a copy of its main.c. scripts/pitfall.py builds the copy as the chapters
# are built (this Makefile's compiler, flags and build/libcommon.a), in build/pitfalls/,
# runs the tests that catch the mistake against it, and says whether they did (exit 0)
# or not (exit 1). `make test` checks every patch (tests/test_pitfalls.py).
pitfall: all tools-wine tools-test
	$(TOUR_PYTHON) scripts/pitfall.py run "$(CH)" "$(NAME)"

pitfalls:
	@$(TOUR_PYTHON) scripts/pitfall.py list

# --- fuzzing ----------------------------------------------------------------------------
# The message parser (frame.c, free of Winsock) built natively with clang around the
# libFuzzer target tests/fuzz/frame_fuzz.c, with AddressSanitizer and UBSan, and fuzzed for
# FUZZ_SECONDS from the seeds in tests/fuzz/corpus. It exists twice, and both copies are
# fuzzed, one after the other: common/frame.c is the one every chapter from 12 on runs,
# and chapter 11's own copy is still a program the reader builds and runs (the one the
# notes walk through), so a bug in either is a bug someone meets. They differ only in the
# types they know, which the target is told with -DFRAME_FUZZ_KNOWN_TYPES; fuzzing common/
# alone would leave chapter 11's type check, the one line that differs, never fuzzed.
# Each copy has its folder, build/fuzz/11-messages and build/fuzz/common: the inputs it
# adds are kept in its corpus/ for the next run; an input that fails is saved there as
# crash-*, which `build/fuzz/NAME/frame_fuzz FILE` replays. `make test` fuzzes a few
# seconds of each (tests/test_frame.py, which builds with the same flags).
FUZZ_SECONDS ?= 60
FUZZ_DIR := $(BUILD)/fuzz
FUZZ_CFLAGS := $(CSTD) -Wall -Wextra -Wpedantic -Werror -g -O1 \
               -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
# The types each copy's frame_parse takes (tests/test_frame.py's SOURCES lists the same).
FUZZ_TYPES_11-messages := 1
FUZZ_TYPES_common := 1,2,3,4,16,17,18
# $(call fuzz-frame,NAME,FOLDER): build and fuzz FOLDER/frame.c in $(FUZZ_DIR)/NAME.
define fuzz-frame
	@mkdir -p $(FUZZ_DIR)/$(1)/corpus
	clang $(FUZZ_CFLAGS) -DFRAME_FUZZ_KNOWN_TYPES=$(FUZZ_TYPES_$(1)) -I$(2) \
	    tests/fuzz/frame_fuzz.c $(2)/frame.c -o $(FUZZ_DIR)/$(1)/frame_fuzz
	$(FUZZ_DIR)/$(1)/frame_fuzz -max_total_time=$(FUZZ_SECONDS) \
	    -artifact_prefix=$(FUZZ_DIR)/$(1)/ $(FUZZ_DIR)/$(1)/corpus tests/fuzz/corpus
endef
fuzz:
	$(ENSURE) fuzz
	$(call fuzz-frame,common,common)
	$(call fuzz-frame,11-messages,chapters/11-messages)

# --- formatting, editor support, docs ---------------------------------------------------
FORMAT_FILES := $(wildcard common/*.c common/*.h chapters/*/*.c chapters/*/*.h tools/*.c)
format: tools-format
	clang-format -i $(FORMAT_FILES)
format-check: tools-format
ifeq ($(NATIVE),)
	clang-format --dry-run --Werror $(FORMAT_FILES)
else
	@if command -v clang-format >/dev/null 2>&1; then \
	    clang-format --dry-run --Werror $(FORMAT_FILES); \
	else echo "format-check: skipped, no clang-format on PATH (CI's Linux job checks it)"; fi
endif

# compile_commands.json for clangd: the compiler commands of a full build, recorded by
# bear into a build folder of their own. clangd reads the target (x86_64-w64-mingw32) from
# the compiler's name, so it finds the MinGW-w64 headers as the cross-compiler does.
compile_commands.json: Makefile $(COMMON_SOURCES) $(wildcard common/*.h chapters/*/main.c tools/*.c) \
                       | tools-bear tools-build
	rm -rf $(BUILD)/bear
	bear --output $@ -- $(MAKE) --no-print-directory BUILD=$(BUILD)/bear all
	rm -rf $(BUILD)/bear

# The site: build/docs/html/index.html (docs/README.md tells what is in it and why).
docs: tools-docs diagrams-check
	@sh docs/site.sh build $(BUILD)/docs

# docs/diagrams/*.dot rendered to the committed SVG files beside them.
diagrams: tools-docs
	@sh docs/diagrams.sh render
diagrams-check:
	@sh docs/diagrams.sh check

# Configures and builds CMakeLists.txt here with the MinGW-w64 cross-compiler: the same
# project Visual Studio opens on Windows. ctest's test list is printed, not run.
CMAKE_BUILD := $(BUILD)/cmake
ifeq ($(NATIVE),)
  CMAKE_TOOLCHAIN := -DCMAKE_TOOLCHAIN_FILE=cmake/mingw-w64-x86_64.cmake \
                     -DPython3_EXECUTABLE=/usr/bin/python3
endif
cmake-check:
	$(ENSURE) cmake
	cmake -S . -B $(CMAKE_BUILD) $(CMAKE_TOOLCHAIN)
	cmake --build $(CMAKE_BUILD) --parallel 2
	ctest --test-dir $(CMAKE_BUILD) --show-only

clean:
	-scripts/wine.sh stop
	rm -rf $(BUILD)

wine-stop:
	scripts/wine.sh stop
	@for prefix in $(wildcard $(BUILD)/wineprefix-gw*); do \
	    WINEPREFIX=$$(pwd)/$$prefix scripts/wine.sh stop; done
