#!/bin/sh
# The tutorial's diagrams: Graphviz sources in docs/diagrams/*.dot, rendered to the SVG
# files beside them, which are committed so that GitHub and the Doxygen site both show
# them without running anything (see docs/README.md).
#
#   sh docs/diagrams.sh render [NAME.dot ...]  render every diagram, or the ones named
#                                             (needs Graphviz's dot: make diagrams)
#   sh docs/diagrams.sh check                  exit 1 naming each SVG that is missing or
#                                             was not rendered from its .dot as it is now
#
# Each SVG carries the SHA-256 of the .dot it was rendered from, in a comment on its
# second line: <!-- rendered from 04-contexts.dot, sha256 <hex> -->. `check` recomputes
# only that hash, so it needs no Graphviz and gives the same answer on every machine,
# whatever Graphviz version rendered the SVG.
set -eu

diagrams=$(cd "$(dirname "$0")/diagrams" && pwd)

sha256() { # sha256 FILE: the file's SHA-256 in hex
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum <"$1" | cut -d' ' -f1
    else
        shasum -a 256 <"$1" | cut -d' ' -f1
    fi
}

stamp() { # stamp NAME.dot: the comment that names a source and its hash
    printf '<!-- rendered from %s, sha256 %s -->' "$(basename "$1")" "$(sha256 "$1")"
}

render() { # render DOT: writes the SVG beside it, with the stamp on its second line
    dot_file=$1
    svg_file=${dot_file%.dot}.svg
    line=$(stamp "$dot_file")
    dot -Tsvg "$dot_file" >"$svg_file.tmp"
    awk -v stamp="$line" 'NR == 1 { print; print stamp; next } { print }' \
        "$svg_file.tmp" >"$svg_file"
    rm -f "$svg_file.tmp"
    echo "rendered ${svg_file#"$diagrams"/}"
}

case "${1:-}" in
render)
    shift
    command -v dot >/dev/null 2>&1 || {
        echo "diagrams.sh: Graphviz's dot is missing (make diagrams installs it)" >&2
        exit 1
    }
    if [ $# -eq 0 ]; then
        set -- "$diagrams"/*.dot
    fi
    for dot_file in "$@"; do
        case "$dot_file" in
        /*) ;;
        *) [ -f "$dot_file" ] || dot_file=$diagrams/$dot_file ;;
        esac
        render "$dot_file"
    done
    ;;
check)
    stale=0
    count=0
    for dot_file in "$diagrams"/*.dot; do
        [ -f "$dot_file" ] || continue
        count=$((count + 1))
        svg_file=${dot_file%.dot}.svg
        name=docs/diagrams/$(basename "$svg_file")
        if [ ! -f "$svg_file" ]; then
            echo "$name is missing: run make diagrams" >&2
            stale=1
        elif [ "$(sed -n 2p "$svg_file")" != "$(stamp "$dot_file")" ]; then
            echo "$name is not rendered from its .dot as it is now: run make diagrams" >&2
            stale=1
        fi
    done
    [ "$stale" = 0 ] || exit 1
    echo "diagrams: $count SVG files are current"
    ;;
*)
    echo "usage: $0 render [NAME.dot ...] | check" >&2
    exit 2
    ;;
esac
