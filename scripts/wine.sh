#!/bin/sh
# Runs Windows programs under Wine without a display and without hangs, in a private
# prefix under build/ (see the Wine notes in README.md).
#
#   scripts/wine.sh start            prepare the prefix and start a persistent wineserver
#   scripts/wine.sh run PROGRAM ARGS run one program (starts the server first if needed)
#   scripts/wine.sh interactive PROGRAM ARGS
#                                    run a program you type into (make run, make client);
#                                    Wine ends a few seconds after it does
#   scripts/wine.sh stop             stop this prefix's wineserver
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
WINEPREFIX=${WINEPREFIX:-$here/build/wineprefix}
WINEDEBUG=${WINEDEBUG:--all}
WINEDLLOVERRIDES=${WINEDLLOVERRIDES:-mscoree,mshtml=}
export WINEPREFIX WINEDEBUG WINEDLLOVERRIDES

# Debian's "wine" wrapper warns about a missing 32-bit Wine on every run; wine64 does not.
if command -v wine64 >/dev/null 2>&1; then
    wine=wine64
elif [ -x /usr/lib/wine/wine64 ]; then
    wine=/usr/lib/wine/wine64
else
    wine=wine
fi
# Debian's Wine 8 has no preloader, and wine64 loads at a fixed address with the heap
# placed at random after it. Now and then (about 1 start in a few thousand) the heap
# covers 0x7ffe0000, where Wine must map its shared user data, and Wine exits 1 before
# the program runs, with only an err: line that WINEDEBUG=-all hides. Without address
# randomization the heap starts right after wine64, far below that address, every time.
# setarch execs the program in its own place, so signals still reach wine directly.
# ($wine is unquoted where it runs: it may be a command with arguments.)
if command -v setarch >/dev/null 2>&1 && setarch "$(uname -m)" -R true 2>/dev/null; then
    wine="setarch $(uname -m) -R $wine"
fi

start() { # start [SECONDS]
    mkdir -p "$WINEPREFIX"
    # -p without a number: keep running until "stop", so each program starts warm; -pN
    # (no space: "-p N" is -p alone): end N seconds after the last program, and take
    # Wine's helper processes along. It exits 0 only when it started a new server
    # (non-zero: one is running already, and it keeps its own persistence).
    if wineserver "-p${1:-}" 2>/dev/null && [ -f "$WINEPREFIX/.ready" ]; then
        # The first program under a new server starts Wine's helper processes, and they
        # inherit its stdout: let that program be wineboot, with stdio on /dev/null, so
        # no helper can hold a caller's pipe open.
        $wine wineboot </dev/null >/dev/null 2>&1
    fi
    if [ ! -f "$WINEPREFIX/.ready" ]; then
        # The same for a new prefix, which wineboot -i also creates.
        $wine wineboot -i </dev/null >/dev/null 2>&1
        # No crash debugger: a crashing program must exit non-zero, not start winedbg.
        $wine reg add 'HKLM\Software\Microsoft\Windows NT\CurrentVersion\AeDebug' \
            /v Debugger /t REG_SZ /d '' /f </dev/null >/dev/null 2>&1
        touch "$WINEPREFIX/.ready"
    fi
}

# A program that a person types into. Wine gives a program with any standard handle on a
# terminal a Wine console, which draws with escape codes and whose line editing redraws
# the input line over what the program has just printed. So the program gets pipes, with
# a cat at the other end of each: the terminal keeps its own line editing, and Ctrl+C
# still sends SIGINT to wine (it is in the terminal's foreground process group), which
# runs the program's console handler. The cats, background commands of a script, ignore
# SIGINT; the one reading the terminal is stopped when the program ends, or it would
# wait for one more line. The program's exit code is this script's.
interactive() {
    start 5
    if [ ! -t 0 ] && [ ! -t 1 ] && [ ! -t 2 ]; then
        exec $wine "$@"
    fi
    pipes=$(mktemp -d)
    typist=
    trap 'rm -rf "$pipes"; [ -z "$typist" ] || kill "$typist" 2>/dev/null || true' EXIT
    trap 'exit 129' HUP
    trap 'exit 143' TERM
    # Caught, not ignored: wine must still get SIGINT, and the script must go on to stop
    # the typist after wine has ended.
    trap : INT
    mkfifo "$pipes/in" "$pipes/out" "$pipes/err"
    # A background command's stdin is /dev/null unless redirected: hand it the terminal.
    exec 3<&0
    cat <&3 >"$pipes/in" &
    typist=$!
    exec 3<&-
    cat <"$pipes/out" &
    shower=$!
    cat <"$pipes/err" >&2 &
    complainer=$!
    code=0
    $wine "$@" <"$pipes/in" >"$pipes/out" 2>"$pipes/err" || code=$?
    kill "$typist" 2>/dev/null || true
    typist=
    wait "$shower" "$complainer" || true
    exit "$code"
}

case "${1:-}" in
start) start ;;
stop) wineserver -k 2>/dev/null || true ;;
run)
    shift
    [ $# -ge 1 ] || { echo "usage: $0 run PROGRAM [ARGS...]" >&2; exit 2; }
    start
    exec $wine "$@" ;;
interactive)
    shift
    [ $# -ge 1 ] || { echo "usage: $0 interactive PROGRAM [ARGS...]" >&2; exit 2; }
    interactive "$@" ;;
env)
    echo "WINEPREFIX=$WINEPREFIX WINEDEBUG=$WINEDEBUG WINEDLLOVERRIDES=$WINEDLLOVERRIDES WINE=$wine" ;;
*)
    echo "usage: $0 start | run PROGRAM [ARGS...] | interactive PROGRAM [ARGS...] | stop | env" >&2
    exit 2 ;;
esac
