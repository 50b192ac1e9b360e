#!/bin/sh
# Keeps each chapter's "What changed" section in step with the code: for every chapter
# after the first, the lines of its README.md between
#
#   <!-- what-changed:begin -->
#   <!-- what-changed:end -->
#
# become a ```diff block holding `diff -u` of the previous chapter's main.c against this
# chapter's main.c, with the header lines written as "--- NN-prev/main.c" and
# "+++ NN-this/main.c" (no timestamps, so the text only changes when the code does).
#
#   scripts/notes.sh [--chapters-dir DIR]           rewrite stale sections in place
#   scripts/notes.sh --check [--chapters-dir DIR]   change nothing; exit 1 if any
#                                                   section is stale or missing
#
# A chapter whose README.md lacks the two marker lines, or that has no README.md at all,
# is reported in both modes (and makes the exit code 1): add the markers where the diff
# belongs. A chapter's Korean notes, README.ko.md, get the same section as its README.md. Needs only POSIX sh, diff, cmp and awk, so it runs in MSYS2 too.
set -eu

BEGIN_MARKER='<!-- what-changed:begin -->'
END_MARKER='<!-- what-changed:end -->'

usage() {
    echo "usage: scripts/notes.sh [--check] [--chapters-dir DIR]" >&2
    exit "$1"
}

here=$(cd "$(dirname "$0")/.." && pwd)
chapters_dir=$here/chapters
shown_dir=chapters
check=0
while [ $# -gt 0 ]; do
    case $1 in
    --check) check=1 ;;
    --chapters-dir)
        [ $# -ge 2 ] || { echo "notes.sh: --chapters-dir needs a folder" >&2; usage 2; }
        chapters_dir=$2
        shown_dir=$2
        shift ;;
    -h | --help) usage 0 ;;
    *) echo "notes.sh: unknown option '$1'" >&2; usage 2 ;;
    esac
    shift
done
[ -d "$chapters_dir" ] || { echo "notes.sh: no folder '$chapters_dir'" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/notes.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# section PREV THIS: writes the text that belongs between the markers of THIS.
section() {
    status=0
    diff -u "$chapters_dir/$1/main.c" "$chapters_dir/$2/main.c" >"$tmp/diff" || status=$?
    [ "$status" -le 1 ] || { echo "notes.sh: diff failed for $1 -> $2" >&2; exit 2; }
    if [ ! -s "$tmp/diff" ]; then
        echo "main.c is the same as in $1."
        return
    fi
    echo '```diff'
    awk -v old="--- $1/main.c" -v new="+++ $2/main.c" \
        'NR == 1 { print old; next } NR == 2 { print new; next } { print }' "$tmp/diff"
    echo '```'
}

# splice README SECTION: prints README with SECTION between its markers. Exits 3 when
# the markers are missing, 4 when they are out of order, doubled or unclosed.
splice() {
    awk -v begin="$BEGIN_MARKER" -v end="$END_MARKER" -v section="$2" '
        { line = $0; sub(/[ \t\r]+$/, "", line) }
        line == begin {
            if (state != 0) bad = 1
            print
            while ((getline text < section) > 0) print text
            close(section)
            state = 1
            next
        }
        line == end { if (state != 1) bad = 1; state = 2; print; next }
        state == 1 { next }
        { print }
        END { if (bad || state == 1) exit 4; if (state == 0) exit 3 }
    ' "$1"
}

# refresh README SHOWN PREVIOUS: checks (or rewrites) README's section against $tmp/section.
refresh() {
    status=0
    splice "$1" "$tmp/section" >"$tmp/readme" || status=$?
    case $status in
    0)
        if ! cmp -s "$tmp/readme" "$1"; then
            if [ "$check" = 1 ]; then
                echo "stale: $2 (what changed from $3)"
                problems=$((problems + 1))
            else
                cat "$tmp/readme" >"$1"
                echo "updated: $2 (what changed from $3)"
                updated=$((updated + 1))
            fi
        fi ;;
    3)
        echo "missing: $2 has no '$BEGIN_MARKER' / '$END_MARKER' lines"
        problems=$((problems + 1)) ;;
    *)
        echo "missing: $2 has its what-changed markers out of order, doubled or unclosed"
        problems=$((problems + 1)) ;;
    esac
}

# Each chapter's English notes, and its Korean notes (README.ko.md) where they exist: both
# hold the same section (tests/test_korean.py checks that every chapter has both).
previous=""
checked=0
problems=0
updated=0
for dir in "$chapters_dir"/*/; do
    dir=${dir%/}
    name=${dir##*/}
    [ -f "$dir/main.c" ] || continue
    if [ -z "$previous" ]; then
        previous=$name # the first chapter has nothing to compare with
        continue
    fi
    if [ ! -f "$dir/README.md" ]; then
        checked=$((checked + 1))
        echo "missing: $shown_dir/$name/README.md does not exist"
        problems=$((problems + 1))
        previous=$name
        continue
    fi
    section "$previous" "$name" >"$tmp/section"
    for readme in README.md README.ko.md; do
        [ -f "$dir/$readme" ] || continue
        checked=$((checked + 1))
        refresh "$dir/$readme" "$shown_dir/$name/$readme" "$previous"
    done
    previous=$name
done

if [ "$check" = 1 ]; then
    if [ "$problems" -gt 0 ]; then
        echo "notes.sh: $problems of $checked what-changed sections are stale or missing;" \
            "run scripts/notes.sh (make notes) to update them"
        exit 1
    fi
    echo "notes.sh: all $checked what-changed sections are current"
else
    echo "notes.sh: $updated of $checked what-changed sections updated"
    if [ "$problems" -gt 0 ]; then
        echo "notes.sh: $problems chapters need the marker lines added by hand (see above)"
        exit 1
    fi
fi
