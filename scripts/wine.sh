#!/bin/sh
# Runs Windows programs under Wine without a display and without hangs, in a private
# prefix under build/ (see the Wine notes in README.md).
#
#   scripts/wine.sh start            prepare the prefix and start a persistent wineserver
#   scripts/wine.sh run PROGRAM ARGS run one program (starts the server first if needed)
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

start() {
    mkdir -p "$WINEPREFIX"
    # -p without a number: keep running until "stop", so each program starts warm. It
    # exits 0 only when it started a new server (non-zero: one is running already).
    if wineserver -p 2>/dev/null && [ -f "$WINEPREFIX/.ready" ]; then
        # The first program under a new server starts Wine's helper processes, and they
        # inherit its stdout: let that program be wineboot, with stdio on /dev/null, so
        # no helper can hold a caller's pipe open.
        "$wine" wineboot </dev/null >/dev/null 2>&1
    fi
    if [ ! -f "$WINEPREFIX/.ready" ]; then
        # The same for a new prefix, which wineboot -i also creates.
        "$wine" wineboot -i </dev/null >/dev/null 2>&1
        # No crash debugger: a crashing program must exit non-zero, not start winedbg.
        "$wine" reg add 'HKLM\Software\Microsoft\Windows NT\CurrentVersion\AeDebug' \
            /v Debugger /t REG_SZ /d '' /f </dev/null >/dev/null 2>&1
        touch "$WINEPREFIX/.ready"
    fi
}

case "${1:-}" in
start) start ;;
stop) wineserver -k 2>/dev/null || true ;;
run)
    shift
    [ $# -ge 1 ] || { echo "usage: $0 run PROGRAM [ARGS...]" >&2; exit 2; }
    start
    exec "$wine" "$@" ;;
env)
    echo "WINEPREFIX=$WINEPREFIX WINEDEBUG=$WINEDEBUG WINEDLLOVERRIDES=$WINEDLLOVERRIDES WINE=$wine" ;;
*)
    echo "usage: $0 start | run PROGRAM [ARGS...] | stop | env" >&2
    exit 2 ;;
esac
