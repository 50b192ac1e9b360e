"""Markdown as doxygen 1.9.4 and GitHub both read it, as far as the notes need it: where
the code blocks are (tests/test_docs.py compares them with the site's pages, and
tests/korean.py compares the English notes with the Korean ones)."""

import re

FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})")
# What doxygen 1.9.4 counts as a line's indent: its spaces and one list marker after them.
LIST_INDENT = re.compile(r"^ *(?:(?:-#|[-+*]|[1-9][0-9]*\.) +)?")


def leading_spaces(line):
    return len(line) - len(line.lstrip(" "))


def markdown_code(text):
    """(code blocks, prose) of Markdown TEXT: each fenced or indented code block as its
    list of lines, and the lines outside them. A block indented by 4 spaces is code,
    as in doxygen 1.9.4, when the line above it is blank and the line above that is
    indented (list markers counted as indent) by at least 4 spaces less."""
    lines = text.split("\n")
    blocks, prose = [], []
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = FENCE.match(line)
        if fence:
            margin, run = fence.group(1), fence.group(2)
            body = []
            i += 1
            while i < len(lines):
                rest = lines[i].lstrip(" ")
                if rest.startswith(run) and re.fullmatch(r"[`~]*[ \t]*", rest[len(run):]):
                    break
                body.append(lines[i][len(margin):] if lines[i].startswith(margin)
                            else lines[i].lstrip(" "))
                i += 1
            blocks.append(body)
            i += 1
            continue
        if line.strip() and i >= 1 and not lines[i - 1].strip():
            above = LIST_INDENT.match(lines[i - 2]).end() if i >= 2 else 0
            if leading_spaces(line) >= above + 4:
                body = []
                while i < len(lines) and (not lines[i].strip() or
                                          leading_spaces(lines[i]) >= above + 4):
                    body.append(lines[i][above + 4:])
                    i += 1
                while body and not body[-1].strip():
                    body.pop()
                blocks.append(body)
                continue
        prose.append(line)
        i += 1
    return blocks, "\n".join(prose)
