#!/bin/sh
# Builds the tutorial's Doxygen site (`make docs`): README.md as the main page, each
# chapter's notes as a page in chapter order with links to the previous and next chapter,
# the same in Korean (README.ko.md, with docs/glossary.ko.md), the API reference of
# common/, every program's source, and call graphs.
#
#   sh docs/site.sh build OUT     check the notes' links, write the glue under OUT, run
#                                 doxygen (OUT/html), then resolve and check the links
#   sh docs/site.sh filter FILE   the input filter doxygen runs on each Markdown file
#
# Nothing in chapters/ is edited: what the pages need is added on the way into doxygen by
# the filter (FILTER_PATTERNS in docs/Doxyfile), which leaves the line numbers of
# doxygen's warnings as they are in the files. The notes are written for GitHub, with
# links relative to the file they are in; the filter marks each one as $MARK<path from
# the root>. After doxygen has run, each marked link goes to the page that shows that
# file (a page of notes by its name, the documentation or browsable source of a program
# from doxygen's XML index), or to a copy of the file under html/repo/. A link to a file that does not exist fails the build, and so
# does any link in the finished pages that leads nowhere.
set -eu
LC_ALL=C
export LC_ALL

root=$(cd "$(dirname "$0")/.." && pwd)
# What the filter puts before a link's path from the root, for finish() to resolve. A URL
# to doxygen, so it never tries to resolve it itself; .invalid never resolves anywhere.
MARK=https://srcref.invalid/
cd "$root"

die() {
    echo "docs: $*" >&2
    exit 1
}

# The chapter folders in order: chapters/NN-topic.
chapter_dirs() {
    for dir in chapters/[0-9][0-9]-*; do
        [ -d "$dir" ] && echo "$dir"
    done
    return 0
}

# chapter_notes [NAME]: the chapters that have notes, in order: chapters/NN-topic/NAME
# (README.md, the English notes, unless NAME is README.ko.md, the Korean ones).
chapter_notes() {
    name=${1:-README.md}
    chapter_dirs | while read -r dir; do
        [ -f "$dir/$name" ] && echo "$dir/$name"
    done
    return 0
}

# Every Markdown file that becomes a page, as a path from the root, one per line: the
# English notes, then their Korean edition and its glossary.
markdown_inputs() {
    [ -f README.md ] && echo README.md
    [ -f docs/README.md ] && echo docs/README.md
    chapter_notes
    [ -f README.ko.md ] && echo README.ko.md
    [ -f docs/glossary.ko.md ] && echo docs/glossary.ko.md
    chapter_notes README.ko.md
}

# label NOTES: the page name of a Markdown page: the {#label} its first line gives, else
# chapterNN for a chapter's notes, chapterNN_ko for their Korean edition, index_ko for
# the Korean README.ko.md and glossary_ko for the glossary.
label() {
    first=$(sed -n 1p "$1")
    case "$first" in
    *'{#'*'}'*) echo "$first" | sed 's/.*{#\([^}]*\)}.*/\1/' ;;
    *)
        case "$1" in
        README.ko.md) echo index_ko ;;
        docs/glossary.ko.md) echo glossary_ko ;;
        */README.ko.md) echo "chapter$(basename "$(dirname "$1")" | cut -c1-2)_ko" ;;
        *) echo "chapter$(basename "$(dirname "$1")" | cut -c1-2)" ;;
        esac
        ;;
    esac
}

# The Markdown link scanner, shared by the check (mode=check: print "LINE<TAB>TARGET<TAB>
# PATH" for every relative link, PATH being its file from the root, or "../" when it
# leaves the repository) and the filter (mode=rewrite: print the file with its links
# rewritten, and its code spans escaped for doxygen). It reads inline links and images,
# reference definitions, and src/href attributes of inline HTML; it skips code spans, and
# code blocks, fenced or indented, which the filter copies as they are (doxygen shows them
# as they are, so an escape there would show as text). -v md=PATH of the file from the
# root; -v mark=$MARK.
LINKS_AWK='
function dirname_of(path,   i) {
    for (i = length(path); i > 0; i--)
        if (substr(path, i, 1) == "/")
            return substr(path, 1, i - 1)
    return ""
}
# The path from the root of relative link TARGET (no anchor) in file md; "../" when it
# leaves the repository; "" for the root itself.
function resolve(target,   path, n, parts, out, k, i, p, s) {
    if (substr(target, 1, 1) == "/")
        path = substr(target, 2)
    else
        path = (base == "" ? target : base "/" target)
    n = split(path, parts, "/")
    k = 0
    for (i = 1; i <= n; i++) {
        p = parts[i]
        if (p == "" || p == ".")
            continue
        if (p == "..") {
            if (k == 0)
                return "../"
            k--
            continue
        }
        out[++k] = p
    }
    s = ""
    for (i = 1; i <= k; i++)
        s = s (i > 1 ? "/" : "") out[i]
    return s
}
function is_relative(target) {
    if (target == "" || substr(target, 1, 1) == "#")
        return 0
    if (target ~ /^[A-Za-z][A-Za-z0-9+.-]*:/)   # http:, mailto:, a marked link...
        return 0
    if (target ~ /^[@\\]ref[ \t]/)
        return 0
    return 1
}
# The link target to put in place of relative TARGET.
function rewrite(target,   anchor, path, i, resolved) {
    anchor = ""
    path = target
    i = index(target, "#")
    if (i > 0) {
        anchor = substr(target, i)
        path = substr(target, 1, i - 1)
    }
    if (path == "")
        return target
    resolved = resolve(path)
    if (resolved == "../")
        return target   # the check has already failed the build
    if (resolved == "")
        resolved = "."
    return mark resolved anchor
}
# The text of a code span, escaped for doxygen 1.9.4, which outside "quoted strings"
# drops a % before a word (`%lu` would show as lu) and takes ::word for a link (a warning).
function code_span(text,   out, i, n, c, quoted) {
    out = ""
    quoted = 0
    n = length(text)
    for (i = 1; i <= n; i++) {
        c = substr(text, i, 1)
        if (c == "\"")
            quoted = !quoted
        if (!quoted && c == "%" && substr(text, i + 1, 1) ~ /[A-Za-z_]/) {
            out = out "%%"
            continue
        }
        if (!quoted && substr(text, i, 2) == "::" && substr(text, i + 2, 1) ~ /[A-Za-z_]/) {
            out = out "::%"
            i++
            continue
        }
        out = out c
    }
    return out
}
function handle(target,   path, i) {
    if (!is_relative(target))
        return target
    if (mode == "check") {
        path = target
        i = index(path, "#")
        if (i > 0)
            path = substr(path, 1, i - 1)
        if (path != "")
            printf "%d\t%s\t%s\n", ln, target, resolve(path)
        return target
    }
    return rewrite(target)
}
# The position in line of the next emphasis run (exactly run, e.g. "**") at or after
# from, outside code spans; 0 if there is none.
function closing_run(line, from, run,   i, n, c, tick, rest, k) {
    n = length(line)
    for (i = from; i <= n; i++) {
        c = substr(line, i, 1)
        if (c == "`") {
            tick = c
            while (substr(line, i + length(tick), 1) == "`")
                tick = tick "`"
            rest = substr(line, i + length(tick))
            k = index(rest, tick)
            if (k == 0)
                return 0
            i += length(tick) + k - 1 + length(tick) - 1
            continue
        }
        if (substr(line, i, length(run)) == run && substr(line, i + length(run), 1) != c &&
            substr(line, i - 1, 1) != c)
            return i
    }
    return 0
}
# count_lines TEXT: the line ends in TEXT.
function count_lines(text) {
    return gsub(/\n/, "\n", text)
}
# Rewrites the links (and, for doxygen, the emphasis and code spans) of one block of
# Markdown: lines outside code blocks, up to a blank line. A code span or an emphasis can
# go on over a line end. ln is the line number, for the messages of the check.
function links(block,   out, i, n, c, run, rest, j, k, depth, target, close_at, close_tag,
               t, eol, len) {
    out = ""
    n = length(block)
    i = 1
    close_at = 0
    while (i <= n) {
        c = substr(block, i, 1)
        if (c == "\n") {
            ln++
            out = out c
            i++
            continue
        }
        # A reference definition, on a line of its own: [label]: target "title"
        if ((i == 1 || substr(block, i - 1, 1) == "\n") &&
            match(substr(block, i), /^(   |  | )?\[[^]\n]+\]:[ \t]*/)) {
            out = out substr(block, i, RLENGTH)
            i += RLENGTH
            rest = substr(block, i)
            eol = index(rest, "\n")
            if (eol > 0)
                rest = substr(rest, 1, eol - 1)
            if (match(rest, /^<[^>]*>/)) {
                len = RLENGTH
                out = out "<" handle(substr(rest, 2, len - 2)) ">"
            } else {
                match(rest, /^[^ \t]*/)
                len = RLENGTH
                out = out handle(substr(rest, 1, len))
            }
            i += len
            continue
        }
        if (i == close_at) {
            out = out close_tag
            i += (close_tag == "</b>" ? 2 : 1)
            close_at = 0
            continue
        }
        # Emphasis that doxygen 1.9.4 leaves as stars becomes HTML: one that opens on a
        # code span (**`name`**), and one that a letter beyond ASCII follows at once, as a
        # Korean particle does (*클라이언트*가), which doxygen takes for a star inside a word.
        if (mode == "rewrite" && close_at == 0 && (c == "*" || c == "_")) {
            run = (substr(block, i + 1, 1) == c) ? c c : c
            t = substr(block, i + length(run), 1)
            if (t != "" && t !~ /[ \t\n*_]/ &&
                (i == 1 || substr(block, i - 1, 1) !~ /[*_A-Za-z0-9]/)) {
                k = closing_run(block, i + length(run), run)
                if (k > 0 && substr(block, k - 1, 1) ~ /[ \t\n]/)
                    k = 0
                if (k > 0 && t != "`" && !(c == "*" && substr(block, k + length(run), 1) > "\177"))
                    k = 0
                if (k > 0) {
                    out = out (length(run) == 2 ? "<b>" : "<em>")
                    close_at = k
                    close_tag = (length(run) == 2 ? "</b>" : "</em>")
                    i += length(run)
                    continue
                }
            }
        }
        if (c == "`") {
            # A code span: copied up to the closing run of as many backticks.
            run = c
            while (substr(block, i + length(run), 1) == "`")
                run = run "`"
            rest = substr(block, i + length(run))
            k = index(rest, run)
            if (k == 0) {
                out = out run
                i += length(run)
                continue
            }
            t = substr(rest, 1, k - 1)
            ln += count_lines(t)
            out = out run (mode == "rewrite" ? code_span(t) : t) run
            i += length(run) + k - 1 + length(run)
            continue
        }
        if (substr(block, i, 2) == "](") {
            out = out "]("
            i += 2
            if (substr(block, i, 1) == "<") {
                rest = substr(block, i + 1)
                k = index(rest, ">")
                if (k > 0) {
                    out = out "<" handle(substr(rest, 1, k - 1)) ">"
                    i += k + 1
                }
                continue
            }
            # The destination ends at a space or at the ")" that balances the "(".
            depth = 0
            for (j = i; j <= n; j++) {
                t = substr(block, j, 1)
                if (t == " " || t == "\t" || t == "\n")
                    break
                if (t == "(")
                    depth++
                if (t == ")") {
                    if (depth == 0)
                        break
                    depth--
                }
            }
            out = out handle(substr(block, i, j - i))
            i = j
            # A title after the destination keeps its quotes.
            if (match(substr(block, i), /^[ \t\n]+"[^"]*"/)) {
                t = substr(block, i, RLENGTH)
                ln += count_lines(t)
                out = out t
                i += RLENGTH
            }
            continue
        }
        # An HTML tag: copied as it is, but for the links in its src and href attributes.
        if (c == "<" && substr(block, i + 1, 1) ~ /[A-Za-z\/!]/) {
            k = index(substr(block, i), ">")
            if (k > 0) {
                out = out html_tag(substr(block, i, k))
                ln += count_lines(substr(block, i, k))
                i += k
                continue
            }
        }
        if (mode == "rewrite") {
            # Doxygen 1.9.4 copies text between double quotes without reading it as
            # Markdown (a `code span` in a quotation would show its backticks), and drops
            # the % of %word; entities and %% avoid both, and show the same text.
            if (c == "\"") {
                out = out "&quot;"
                i++
                continue
            }
            if (c == "%" && substr(block, i + 1, 1) ~ /[A-Za-z_]/) {
                out = out "%%"
                i++
                continue
            }
        }
        out = out c
        i++
    }
    return out
}
# An HTML tag with the links of its src and href attributes handled.
function html_tag(tag,   out, k, target, start, len) {
    out = ""
    while (match(tag, /(src|href)="[^"]*"/)) {
        start = RSTART
        len = RLENGTH
        k = index(substr(tag, start), "\"")
        target = substr(tag, start + k, len - k - 1)
        out = out substr(tag, 1, start + k - 1) handle(target) "\""
        tag = substr(tag, start + len)
    }
    return out tag
}
function flush() {
    if (block_lines == 0)
        return
    ln = block_start
    block = links(block)
    if (mode == "rewrite")
        print block
    block = ""
    block_lines = 0
}
function add(line) {
    if (block_lines == 0) {
        block = line
        block_start = NR
    } else {
        block = block "\n" line
    }
    block_lines++
}
# The indent doxygen 1.9.4 measures a line by, to tell an indented code block: its
# leading spaces, and a list marker after them with the spaces that follow it.
function list_indent(line,   n) {
    match(line, /^ */)
    n = RLENGTH
    if (match(substr(line, n + 1), /^(-#|[-+*]|[1-9][0-9]*\.) +/))
        n += RLENGTH
    return n
}
BEGIN {
    base = dirname_of(md); fence = ""; block_lines = 0
    code_indent = -1; blank_above = 1; indent_above = 0; indent_above2 = 0
}
{
    line = $0
    # What the line above and the one above that were, for an indented code block.
    was_blank = blank_above
    ref_indent = indent_above2
    indent_above2 = indent_above
    indent_above = list_indent(line)
    blank_above = (line ~ /^[ \t]*$/)
    match(line, /^ */)
    spaces = RLENGTH
    # An indented code block goes on over blank lines and lines indented as far as its own.
    # Doxygen copies it as it is, so it is copied as it is: an escape would show as text.
    if (code_indent >= 0) {
        if (blank_above || spaces >= code_indent) {
            if (mode == "rewrite")
                print line
            next
        }
        code_indent = -1
    }
    if (fence == "" && match(line, /^(   |  | )?(```+|~~~+)/)) {
        # Taken before flush(), whose own matches set RSTART and RLENGTH again.
        fence = substr(line, RSTART, RLENGTH)
        sub(/^ +/, "", fence)
        flush()
        if (mode == "rewrite")
            print line
        next
    }
    if (fence != "") {
        t = line
        sub(/^ +/, "", t)
        if (substr(t, 1, length(fence)) == fence && substr(t, length(fence) + 1) ~ /^[`~]*[ \t]*$/)
            fence = ""
        if (mode == "rewrite")
            print line
        next
    }
    if (line ~ /^[ \t]*$/) {
        flush()
        if (mode == "rewrite")
            print line
        next
    }
    # An indented code block, as doxygen 1.9.4 tells one: a line after a blank line,
    # indented by 4 spaces or more beyond the line above the blank one (the text of a list
    # item counting from after its marker).
    if (was_blank && spaces >= 4 && spaces >= ref_indent + 4) {
        flush()
        code_indent = ref_indent + 4
        if (mode == "rewrite")
            print line
        next
    }
    add(line)
}
END { flush() }
'

# --- the filter -----------------------------------------------------------------------
filter() {
    file=$1
    case "$file" in
    "$root"/*) md=${file#"$root"/} ;;
    *) md=$file ;;
    esac
    first=$(sed -n 1p "$file")
    case "$md" in
    chapters/[0-9][0-9]-*/README.md | chapters/[0-9][0-9]-*/README.ko.md)
        # A stable page name on the title line, and the links to the neighbours at the end.
        case "$first" in
        *'{#'*) heading=$first ;;
        *) heading="$first {#$(label "$md")}" ;;
        esac
        {
            echo "$heading"
            sed 1d "$file"
        } | awk -v mode=rewrite -v md="$md" -v mark="$MARK" "$LINKS_AWK"
        navigation "$md"
        ;;
    docs/README.md | README.ko.md | docs/glossary.ko.md)
        case "$md" in
        docs/README.md) name=docs_site ;;
        *) name=$(label "$md") ;;
        esac
        case "$first" in
        '# '*'{#'*) heading=$first ;;
        '# '*) heading="$first {#$name}" ;;
        *) heading=$first ;;
        esac
        {
            echo "$heading"
            sed 1d "$file"
        } | awk -v mode=rewrite -v md="$md" -v mark="$MARK" "$LINKS_AWK"
        ;;
    *)
        awk -v mode=rewrite -v md="$md" -v mark="$MARK" "$LINKS_AWK" "$file"
        ;;
    esac
}

# navigation NOTES: the line under a chapter's notes that leads to the chapters around it,
# in the language of the notes.
navigation() {
    previous=""
    next=""
    found=""
    case "$1" in
    *.ko.md)
        name=README.ko.md list=chapters_ko all="모든 장"
        w_previous="← 이전:" w_program="프로그램:" w_next="다음:"
        ;;
    *)
        name=README.md list=chapters all="All chapters"
        w_previous="← Previous:" w_program="The program:" w_next="Next:"
        ;;
    esac
    for notes in $(chapter_notes "$name"); do
        if [ -n "$found" ]; then
            next=$notes
            break
        fi
        if [ "$notes" = "$1" ]; then
            found=1
        else
            previous=$notes
        fi
    done
    line=""
    [ -n "$previous" ] && line="$w_previous @ref $(label "$previous") · "
    line="$line@ref $list \"$all\""
    [ -f "$(dirname "$1")/main.c" ] &&
        line="$line · $w_program [$(dirname "$1")/main.c]($MARK$(dirname "$1")/main.c)"
    [ -n "$next" ] && line="$line · $w_next @ref $(label "$next") →"
    printf '\n\n---\n\n%s\n' "$line"
}

# --- the build ------------------------------------------------------------------------

# unwritten_notes PATH: true when PATH is the README.md of a chapter folder that has no
# notes yet. A link to them is expected while a chapter is being written: it warns, and
# goes to the list of chapters, where any other link to a missing file fails the build.
unwritten_notes() {
    case "$1" in
    chapters/[0-9][0-9]-*/README.md | chapters/[0-9][0-9]-*/README.ko.md)
        [ -d "$(dirname "$1")" ] && [ ! -e "$1" ] ;;
    *) return 1 ;;
    esac
}

# The line numbers of the Mermaid blocks in a Markdown file: fenced code blocks (``` or
# ~~~, indented up to three spaces) whose info string starts with the word "mermaid", in
# any case. A fence inside another fenced block is text, not a block, so it is skipped.
MERMAID_AWK='
fence == "" && match($0, /^(   |  | )?(```+|~~~+)/) {
    fence = substr($0, RSTART, RLENGTH)
    sub(/^ +/, "", fence)
    info = tolower(substr($0, RSTART + RLENGTH))
    sub(/^[ \t]+/, "", info)
    if (info ~ /^mermaid([ \t{]|$)/)
        print NR
    next
}
fence != "" {
    line = $0
    sub(/^ +/, "", line)
    if (substr(line, 1, length(fence)) == fence &&
        substr(line, length(fence) + 1) ~ /^[`~]*[ \t]*$/)
        fence = ""
}
'

# Fails when a Markdown page is not shaped as the site needs, links to a file that is not
# there, or holds a Mermaid block, which GitHub draws but doxygen shows as code.
check_markdown() {
    status=0
    for md in $(markdown_inputs); do
        case "$md" in
        chapters/*)
            case "$(sed -n 1p "$md")" in
            '# '*) ;;
            *)
                echo "$md:1: the notes must start with their title, as '# NN · Title'" >&2
                status=1
                ;;
            esac
            ;;
        esac
        awk -v mode=check -v md="$md" "$LINKS_AWK" "$md" >"$out/links.tsv"
        while IFS="$(printf '\t')" read -r number target path; do
            if [ "$path" = "../" ]; then
                echo "$md:$number: the link '$target' leads out of the repository" >&2
                status=1
            elif [ -n "$path" ] && [ ! -e "$path" ]; then
                if unwritten_notes "$path"; then
                    echo "docs: warning: $md:$number: $path is not written yet; the site" \
                        "links to the list of chapters instead" >&2
                else
                    echo "$md:$number: the link '$target' leads nowhere: there is no $path" >&2
                    status=1
                fi
            fi
        done <"$out/links.tsv"
        for number in $(awk "$MERMAID_AWK" "$md"); do
            echo "$md:$number: a Mermaid block: GitHub draws it, but the site would show its" \
                "source. Draw it with Graphviz instead (docs/README.md, section Diagrams)." >&2
            status=1
        done
    done
    rm -f "$out/links.tsv"
    return "$status"
}

# The page that lists the chapters in order; \subpage puts them in that order in the
# site's tree, under this page.
write_chapters_page() {
    {
        echo "# Chapters {#chapters}"
        echo
        echo "Each chapter is a complete program, \`chapters/NN-topic/main.c\`, with its notes."
        echo "Read them in order: each one builds on the one before."
        echo
        for dir in $(chapter_dirs); do
            if [ -f "$dir/README.md" ]; then
                echo "- @subpage $(label "$dir/README.md")"
            else
                echo "- $(basename "$dir"): the notes are not written yet; the program is" \
                    "[$dir/main.c]($MARK$dir/main.c)."
            fi
        done
        [ -f README.ko.md ] && printf '\n한국어: @ref chapters_ko\n'
    } >"$out/src/chapters.md"
    [ -f README.ko.md ] || return 0
    {
        echo "# 장 목록 {#chapters_ko}"
        echo
        echo "장마다 완결된 프로그램 \`chapters/NN-topic/main.c\`와 그 노트가 있습니다."
        echo "앞 장 위에 다음 장을 쌓으므로 차례대로 읽으세요. 용어는 @ref glossary_ko 에 있습니다."
        echo
        for dir in $(chapter_dirs); do
            if [ -f "$dir/README.ko.md" ]; then
                echo "- @subpage $(label "$dir/README.ko.md")"
            else
                echo "- $(basename "$dir"): 한국어 노트가 아직 없습니다. 프로그램은" \
                    "[$dir/main.c]($MARK$dir/main.c)입니다."
            fi
        done
        echo
        echo "English: @ref chapters"
    } >"$out/src/chapters_ko.md"
}

write_main_page() { # when README.md is not there yet
    {
        echo "@mainpage IOCP with Winsock2"
        echo
        echo "The repository's README.md is not written yet. Start with the @ref chapters."
    } >"$out/src/mainpage.md"
}

write_doxyfile() {
    inputs=""
    mainpage=""
    if [ -f README.md ]; then
        inputs="\"$root/README.md\""
        # An absolute path: doxygen 1.9.4 takes a bare "README.md" to mean every README.md.
        mainpage="USE_MDFILE_AS_MAINPAGE = \"$root/README.md\""
    else
        write_main_page
        inputs="\"$out/src/mainpage.md\""
    fi
    inputs="$inputs \"$out/src/chapters.md\""
    [ -f docs/README.md ] && inputs="$inputs \"$root/docs/README.md\""
    # The Korean edition: the chapters' README.ko.md come in with chapters/.
    for md in README.ko.md docs/glossary.ko.md; do
        [ -f "$md" ] && inputs="$inputs \"$root/$md\""
    done
    [ -f README.ko.md ] && inputs="$inputs \"$out/src/chapters_ko.md\""
    for dir in common chapters tools; do
        [ -d "$dir" ] && inputs="$inputs \"$root/$dir\""
    done
    {
        echo "@INCLUDE = \"$root/docs/Doxyfile\""
        echo "OUTPUT_DIRECTORY = \"$out\""
        echo "STRIP_FROM_PATH = \"$root\""
        echo "INPUT = $inputs"
        echo "$mainpage"
    } >"$out/Doxyfile"
}

# sed_escape TEXT: TEXT as a literal in a sed regular expression delimited by "|".
sed_escape() {
    printf '%s' "$1" | sed 's/[][\.*^$|]/\\&/g'
}

# page_for TARGET: the page, relative to html/, that a link "$MARK<TARGET>" goes to.
page_for() {
    target=$1
    path=${target%%#*}
    anchor=""
    [ "$path" = "$target" ] || anchor="#${target#*#}"
    if [ "$path" = "." ]; then
        echo "index.html"
        return
    fi
    # A Markdown page: its page by name, which doxygen 1.9.4 cannot give it, as it takes a
    # link to README.ko.md for a link to any file of that name.
    if markdown_inputs | grep -qxF "$path"; then
        case "$path" in
        README.md) echo "index.html" ;;
        docs/README.md) echo "docs_site.html" ;;
        *) echo "$(label "$path").html" ;;
        esac
        return
    fi
    # A folder whose README.md is a page: that page, as on GitHub.
    if [ -d "$path" ] && [ -f "$path/README.md" ]; then
        case "$path/README.md" in
        README.md) echo "index.html"; return ;;
        docs/README.md) echo "docs_site.html"; return ;;
        chapters/[0-9][0-9]-*/README.md) echo "$(label "$path/README.md").html"; return ;;
        esac
    fi
    entry=$(awk -F '\t' -v path="$path" '$1 == path { print $2 "\t" $3; exit }' "$out/map.tsv")
    if [ -n "$entry" ]; then
        kind=${entry%%"$(printf '\t')"*}
        id=${entry#*"$(printf '\t')"}
        if [ "$kind" = dir ]; then
            echo "$id.html"
            return
        fi
        # GitHub's line anchors, #L12 or #L12-L20, become the source page's #l00012.
        case "$anchor" in
        '#L'[0-9]*)
            line=$(echo "$anchor" | sed 's/^#L\([0-9]*\).*/\1/')
            printf '%s_source.html#l%05d\n' "$id" "$line"
            return
            ;;
        esac
        if [ -f "$html/$id.html" ]; then
            echo "$id.html$anchor"
        else
            echo "${id}_source.html"
        fi
        return
    fi
    if unwritten_notes "$path"; then
        echo "chapters.html"
        return
    fi
    # Anything else is copied as it is: a folder as a list of its files.
    mkdir -p "$html/repo"
    if [ -d "$path" ]; then
        mkdir -p "$html/repo/$path"
        {
            echo "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>$path</title></head><body>"
            echo "<h1>$path/</h1><ul>"
            for entry in "$path"/*; do
                [ -f "$entry" ] || continue
                cp "$entry" "$html/repo/$entry"
                echo "<li><a href=\"$(basename "$entry")\">$(basename "$entry")</a></li>"
            done
            echo "</ul></body></html>"
        } >"$html/repo/$path/index.html"
        echo "repo/$path/index.html"
        return
    fi
    mkdir -p "$html/repo/$(dirname "$path")"
    cp "$path" "$html/repo/$path"
    echo "repo/$path$anchor"
}

# Points every marked link at its page, then fails on any link that leads nowhere.
finish() {
    html=$out/html
    # path, kind and id of every file and folder doxygen made a page for
    awk '
        FNR == 1 { id = ""; kind = "" }
        /<compounddef / {
            id = $0; sub(/.*id="/, "", id); sub(/".*/, "", id)
            kind = $0; sub(/.*kind="/, "", kind); sub(/".*/, "", kind)
        }
        /<location file="/ && id != "" && (kind == "file" || kind == "dir") {
            path = $0; sub(/.*<location file="/, "", path); sub(/".*/, "", path)
            sub(/\/$/, "", path)
            print path "\t" kind "\t" id
            id = ""
        }
    ' "$out"/xml/*.xml >"$out/map.tsv"

    : >"$out/links.sed"
    grep -oh "$(sed_escape "$MARK")"'[^"]*' "$html"/*.html | sort -u | while read -r marked; do
        target=${marked#"$MARK"}
        page=$(page_for "$target")
        echo "s|=\"$(sed_escape "$marked")\"|=\"$page\"|g" >>"$out/links.sed"
    done
    grep -l "$(sed_escape "$MARK")" "$html"/*.html | while read -r page; do
        sed -f "$out/links.sed" "$page" >"$page.tmp"
        mv "$page.tmp" "$page"
    done

    # Every relative link, image and object in the pages must lead to a file.
    status=0
    grep -o '\(href\|src\|data\)="[^"#?]*' "$html"/*.html |
        sed 's/:\(href\|src\|data\)="/\t/' | sort -u >"$out/links.tsv"
    while IFS="$(printf '\t')" read -r page target; do
        case "$target" in
        '' | *:*) continue ;; # an anchor on the same page, or http:, javascript:...
        esac
        if [ ! -e "$html/$target" ]; then
            echo "docs: ${page#"$out"/} links to $target, which is not in the site" >&2
            status=1
        fi
    done <"$out/links.tsv"
    rm -f "$out/links.tsv" "$out/links.sed"
    return "$status"
}

build() {
    final=$1
    case "$final" in
    /*) ;;
    *) final=$root/$final ;;
    esac
    command -v doxygen >/dev/null 2>&1 || die "doxygen is missing (make docs installs it)"
    command -v dot >/dev/null 2>&1 || die "Graphviz's dot is missing (make docs installs it)"
    # Built beside the final folder and moved into place at the end, so that a failed or
    # a concurrent build never leaves half a site there.
    out=$final.new.$$
    trap 'rm -rf "$out"' EXIT
    rm -rf "$out"
    mkdir -p "$out/src"
    check_markdown || die "fix the notes above"
    write_chapters_page
    write_doxyfile
    doxygen "$out/Doxyfile" || die "doxygen reported the problems above"
    finish || die "the pages above have links that lead nowhere"
    rm -rf "$final"
    mv "$out" "$final"
    trap - EXIT
    echo "docs: $final/html/index.html ($(chapter_notes | wc -l | tr -d ' ') chapter pages)"
}

case "${1:-}" in
build)
    [ $# -eq 2 ] || die "usage: $0 build OUT"
    build "$2"
    ;;
filter)
    [ $# -eq 2 ] || die "usage: $0 filter FILE"
    filter "$2"
    ;;
*)
    echo "usage: $0 build OUT | filter FILE" >&2
    exit 2
    ;;
esac
