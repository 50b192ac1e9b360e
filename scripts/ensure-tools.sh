#!/bin/sh
# Makes sure the tools for one job are installed, installing Debian/Ubuntu packages
# with apt-get when they are not: directly as root, through sudo otherwise.
#
#   scripts/ensure-tools.sh build|check-build|wine|test|docs|format|bear|cmake|fuzz|bench ...
#
# Exits 0 when everything is there, 1 with the exact command to run when it cannot
# install (not Debian/Ubuntu, or neither root nor sudo).
set -eu

packages=""
need() { # need COMMAND PACKAGE: queue PACKAGE when COMMAND is missing
    command -v "$1" >/dev/null 2>&1 || packages="$packages $2"
}
need_file() { # need_file PATH PACKAGE
    [ -e "$1" ] || packages="$packages $2"
}
links_fuzzer() { # whether clang links a libFuzzer target with AddressSanitizer and UBSan
    scratch=$(mktemp -d) || return 1
    printf 'int LLVMFuzzerTestOneInput(const unsigned char *data, unsigned long size);\n%s\n' \
        'int LLVMFuzzerTestOneInput(const unsigned char *data, unsigned long size) { return 0; }' \
        >"$scratch/probe.c"
    linked=0
    clang -fsanitize=fuzzer,address,undefined "$scratch/probe.c" -o "$scratch/probe" \
        >/dev/null 2>&1 || linked=1
    rm -rf "$scratch"
    return $linked
}

for job in "$@"; do
    case "$job" in
    build) need x86_64-w64-mingw32-gcc gcc-mingw-w64-x86-64 ;;
    check-build)
        need x86_64-w64-mingw32-gcc gcc-mingw-w64-x86-64
        need i686-w64-mingw32-gcc gcc-mingw-w64-i686
        need clang clang ;;
    wine)
        if ! command -v wine64 >/dev/null 2>&1 && [ ! -x /usr/lib/wine/wine64 ]; then
            packages="$packages wine wine64"
        fi ;;
    test)
        need_file /usr/bin/pytest-3 python3-pytest; need ss iproute2 # ss: test_timeouts.py
        # make test runs the test files on one process per core (pytest-xdist).
        /usr/bin/python3 -c 'import xdist' 2>/dev/null || packages="$packages python3-pytest-xdist"
        # The workflow test parses .github/workflows/ci.yml.
        /usr/bin/python3 -c 'import yaml' 2>/dev/null || packages="$packages python3-yaml" ;;
    docs) need doxygen doxygen; need dot graphviz ;;
    format) need clang-format clang-format ;;
    bear) need bear bear ;;
    cmake) need cmake cmake; need x86_64-w64-mingw32-gcc gcc-mingw-w64-x86-64 ;;
    fuzz)
        # libFuzzer and the sanitizers' runtimes (libclang_rt.*) come with libclang-rt-dev
        # (libclang-rt-14-dev on Debian 12), which clang's packages only recommend: not there
        # with --no-install-recommends.
        if ! command -v clang >/dev/null 2>&1; then
            packages="$packages clang libclang-rt-dev"
        elif ! links_fuzzer; then
            packages="$packages libclang-rt-dev"
        fi ;;
    bench)
        # make bench: the chart (gnuplot, without X) and the native epoll reference (cc).
        need gnuplot gnuplot-nox; need cc gcc ;;
    *) echo "ensure-tools.sh: unknown job '$job'" >&2; exit 2 ;;
    esac
done

[ -z "$packages" ] && exit 0

command="apt-get update && apt-get install -y --no-install-recommends$packages"
if ! command -v apt-get >/dev/null 2>&1; then
    echo "Missing tools. This is not a Debian or Ubuntu system, so install these packages" >&2
    echo "(or their equivalents) yourself:$packages" >&2
    exit 1
fi
if [ "$(id -u)" = 0 ]; then
    sudo=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo="sudo"
elif command -v sudo >/dev/null 2>&1 && [ -t 0 ]; then
    sudo="sudo" # sudo will ask for a password on this terminal
else
    echo "Missing tools, and no root or sudo to install them. As root, run:" >&2
    echo "  $command" >&2
    exit 1
fi
echo "Installing:$packages"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q >/dev/null
# shellcheck disable=SC2086
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $packages
