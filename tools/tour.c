/*
 * tour.exe: runs every chapter's demo and checks what its server prints against the
 * "Expected output" block of the chapter's README.md.
 *
 *   tour.exe [--build-dir DIR] [--chapters-dir DIR] [CHAPTER...]
 *
 * A chapter is a folder chapters/NN-topic/ with a tour.txt. For each one, in name order,
 * the tour starts build/NN-topic.exe with its standard input and output on pipes (its
 * errors go straight to our stderr), plays tour.txt with up to 26 clients named A-Z,
 * prints a transcript, and then compares every line the server printed with the README's
 * block, in which each <word> stands for one or more characters (a port, an address).
 *
 * tour.txt holds one step per line; '#' starts a comment line:
 *   args ARGS...      the server's command line (first, if at all)
 *   connect X         connect client X to the port of the server's "listening on" line
 *   send X TEXT       send TEXT; \n \r \t \\ and \xNN are decoded
 *   sendsize X N      send N bytes of abc...xyz repeated
 *   expect X TEXT     receive exactly TEXT (decoded as for send)
 *   expectsize X N    receive N bytes and check they are the sendsize pattern
 *   closed X          wait for the server to close (or reset) X
 *   close X           close X gracefully (FIN); X can still receive until the server
 *                     closes too, so "closed X" may follow
 *   reset X           close X abortively (RST)
 *   wait TEXT         wait for the next server line that contains TEXT
 *   quit              write "quit" to the server's standard input
 *   exit N            wait for the server to exit with code N (always the last step)
 * The pattern continues across steps: two "sendsize A 5" send "abcde" then "fghij", and
 * each client's expectsize checks from where its previous one stopped.
 *
 * Every waiting step has 10 seconds. Sockets are blocking with SO_RCVTIMEO/SO_SNDTIMEO:
 * simple, and enough for a demo; the price is that steps run one at a time, so a sendsize
 * to an echo server larger than the connection can buffer times out instead of passing.
 */
#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>
#include <process.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"

/* Exit code for a bad command line, the same as the chapters use. */
#define EXIT_USAGE      2
#define STEP_TIMEOUT_MS 10000
/* After a failed step: how long the server gets to obey "quit" before it is killed. */
#define STOP_TIMEOUT_MS 5000
/* How long the server's output may go on after it exited (only its children could). */
#define OUTPUT_END_TIMEOUT_MS 5000
#define REASON_SIZE           1024
/* Data longer than this is shown shortened in the transcript and in messages. */
#define SHOW_LIMIT       60
#define SHOW_SIZE        (SHOW_LIMIT * 4 + 8)
#define CLIENT_COUNT     26
#define PATTERN          "abcdefghijklmnopqrstuvwxyz"
#define PATTERN_LENGTH   26
#define CHUNK_SIZE       65536
#define LISTENING_PREFIX "listening on "
#define EXPECTED_HEADING "## Expected output"
#define FENCE            "```"

/* ---- small helpers ------------------------------------------------------------------ */

/* A growable list of strings that the list owns. */
struct lines {
    char **items;
    size_t count;
    size_t capacity;
};

/* Allocates or resizes memory, ending the tour when there is none: it cannot go on. */
static void *checked_realloc(void *old, size_t size)
{
    void *memory = realloc(old, size == 0 ? 1 : size);

    if (memory == NULL) {
        report_errno("realloc");
        exit(EXIT_FAILURE);
    }
    return memory;
}

/* Returns a new NUL-terminated copy of the first @p length bytes of @p text. */
static char *copy_text(const char *text, size_t length)
{
    char *copy = checked_realloc(NULL, length + 1);

    memcpy(copy, text, length);
    copy[length] = '\0';
    return copy;
}

/* Returns a new string made of @p a, @p b and @p c. */
static char *join3(const char *a, const char *b, const char *c)
{
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
    char *joined = checked_realloc(NULL, la + lb + lc + 1);

    memcpy(joined, a, la);
    memcpy(joined + la, b, lb);
    memcpy(joined + la + lb, c, lc + 1);
    return joined;
}

/* Returns "folder\name", or "folder/name" when @p folder is written with '/' only (so
 * messages show paths the way the reader typed them); no separator is doubled. */
static char *join_path(const char *folder, const char *name)
{
    size_t length = strlen(folder);
    int has_separator = length > 0 && (folder[length - 1] == '/' || folder[length - 1] == '\\');
    int slashes = strchr(folder, '/') != NULL && strchr(folder, '\\') == NULL;

    return join3(folder, has_separator ? "" : slashes ? "/" : "\\", name);
}

/* Turns every '/' in @p path into '\' and returns it. */
static char *backslashes(char *path)
{
    char *p;

    for (p = path; *p != '\0'; p++)
        if (*p == '/')
            *p = '\\';
    return path;
}

/* Appends @p line, which the list then owns, to @p lines. */
static void lines_add(struct lines *lines, char *line)
{
    if (lines->count == lines->capacity) {
        lines->capacity = lines->capacity == 0 ? 16 : lines->capacity * 2;
        lines->items = checked_realloc(lines->items, lines->capacity * sizeof *lines->items);
    }
    lines->items[lines->count++] = line;
}

/* Frees every line and the list itself, leaving it empty. */
static void lines_free(struct lines *lines)
{
    size_t i;

    for (i = 0; i < lines->count; i++)
        free(lines->items[i]);
    free(lines->items);
    memset(lines, 0, sizeof *lines);
}

/* Writes "<call> failed: <code> <text>", the shape errors.h prints, into @p reason. */
static void describe_error(char *reason, size_t size, const char *call, unsigned long code)
{
    char text[256];

    snprintf(reason, size, "%s failed: %lu %s", call, code, error_text(code, text, sizeof text));
}

/* Milliseconds left until @p deadline (a GetTickCount64 time), 0 once it has passed. */
static DWORD time_left(ULONGLONG deadline)
{
    ULONGLONG now = GetTickCount64();

    return now >= deadline ? 0 : (DWORD)(deadline - now);
}

/* The GetTickCount64 time one step timeout from now. */
static ULONGLONG step_deadline(void)
{
    return GetTickCount64() + STEP_TIMEOUT_MS;
}

/* Writes @p data as readable text into @p out: escapes for control bytes, and "..." when
 * it is longer than SHOW_LIMIT bytes. */
static const char *show_data(const char *data, size_t length, char *out, size_t size)
{
    size_t used = 0;
    size_t i;

    for (i = 0; i < length && i < SHOW_LIMIT && used + 5 < size; i++) {
        unsigned char byte = (unsigned char)data[i];
        const char *escape = byte == '\n'   ? "\\n"
                             : byte == '\r' ? "\\r"
                             : byte == '\t' ? "\\t"
                             : byte == '\\' ? "\\\\"
                                            : NULL;

        if (escape != NULL)
            used += (size_t)snprintf(out + used, size - used, "%s", escape);
        else if (byte < 0x20 || byte >= 0x7F)
            used += (size_t)snprintf(out + used, size - used, "\\x%02X", byte);
        else
            out[used++] = (char)byte;
    }
    out[used] = '\0';
    if (i < length && used + 4 < size)
        memcpy(out + used, "...", 4);
    return out;
}

/* ---- files and lines ---------------------------------------------------------------- */

/* Reads a whole file into a new NUL-terminated buffer; NULL with errno set if it cannot. */
static char *read_file(const char *path)
{
    FILE *file = fopen(path, "rb");
    char *data = NULL;
    size_t used = 0;
    size_t capacity = 0;
    int failed;

    if (file == NULL)
        return NULL;
    do {
        if (capacity - used < CHUNK_SIZE + 1) {
            capacity += CHUNK_SIZE + 1;
            data = checked_realloc(data, capacity);
        }
        used += fread(data + used, 1, CHUNK_SIZE, file);
    } while (!feof(file) && !ferror(file));
    failed = ferror(file);
    if (fclose(file) != 0 || failed) {
        free(data);
        return NULL;
    }
    data[used] = '\0';
    return data;
}

/* Skips a UTF-8 byte order mark, which some Windows editors put at the start of a file. */
static char *skip_bom(char *text)
{
    return strncmp(text, "\xEF\xBB\xBF", 3) == 0 ? text + 3 : text;
}

/* Cuts the next line out of the text at *cursor (without its CR/LF) and moves the cursor
 * past it; returns NULL at the end of the text. */
static char *next_line(char **cursor)
{
    char *line = *cursor;
    char *end;

    if (*line == '\0')
        return NULL;
    end = strchr(line, '\n');
    if (end == NULL) {
        end = line + strlen(line);
        *cursor = end;
    } else {
        *cursor = end + 1;
    }
    *end = '\0';
    if (end > line && end[-1] == '\r')
        end[-1] = '\0';
    return line;
}

/* Cuts trailing spaces and tabs off @p text and returns it. */
static char *trim_end(char *text)
{
    size_t length = strlen(text);

    while (length > 0 && (text[length - 1] == ' ' || text[length - 1] == '\t'))
        text[--length] = '\0';
    return text;
}

/* ---- the scenario (tour.txt) -------------------------------------------------------- */

enum step_kind {
    STEP_CONNECT,
    STEP_SEND,
    STEP_SENDSIZE,
    STEP_EXPECT,
    STEP_EXPECTSIZE,
    STEP_CLOSED,
    STEP_CLOSE,
    STEP_RESET,
    STEP_WAIT,
    STEP_QUIT,
    STEP_EXIT,
};

/* What follows a step's name. */
enum operands { NO_OPERANDS, CLIENT, CLIENT_TEXT, CLIENT_NUMBER, TEXT, NUMBER };

struct step_syntax {
    const char *name;
    enum step_kind kind;
    enum operands operands;
};

static const struct step_syntax step_syntaxes[] = {
    {"connect", STEP_CONNECT, CLIENT},
    {"send", STEP_SEND, CLIENT_TEXT},
    {"sendsize", STEP_SENDSIZE, CLIENT_NUMBER},
    {"expect", STEP_EXPECT, CLIENT_TEXT},
    {"expectsize", STEP_EXPECTSIZE, CLIENT_NUMBER},
    {"closed", STEP_CLOSED, CLIENT},
    {"close", STEP_CLOSE, CLIENT},
    {"reset", STEP_RESET, CLIENT},
    {"wait", STEP_WAIT, TEXT},
    {"quit", STEP_QUIT, NO_OPERANDS},
    {"exit", STEP_EXIT, NUMBER},
};

struct step {
    enum step_kind kind;
    int client;           /* 0-25 for A-Z */
    char *data;           /* TEXT, decoded for send and expect */
    size_t length;        /* bytes in data */
    unsigned long number; /* N */
    unsigned line;        /* line in tour.txt, for messages */
    char *source;         /* the step as written, for messages */
};

struct scenario {
    char *args; /* the server's arguments, "" for none */
    struct step *steps;
    size_t count;
};

/* Frees everything a scenario holds. */
static void scenario_free(struct scenario *scenario)
{
    size_t i;

    for (i = 0; i < scenario->count; i++) {
        free(scenario->steps[i].data);
        free(scenario->steps[i].source);
    }
    free(scenario->steps);
    free(scenario->args);
    memset(scenario, 0, sizeof *scenario);
}

/* The value of hexadecimal digit @p c, or -1 if it is not one. */
static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes the escapes in @p text into step->data; returns 0, or -1 on a bad escape. */
static int decode_text(const char *text, struct step *step)
{
    char *out = checked_realloc(NULL, strlen(text) + 1);
    size_t used = 0;

    while (*text != '\0') {
        char c = *text++;

        if (c == '\\') {
            c = *text++;
            if (c == 'x' && hex_value(text[0]) >= 0 && hex_value(text[1]) >= 0) {
                c = (char)(hex_value(text[0]) * 16 + hex_value(text[1]));
                text += 2;
            } else if (c == 'n' || c == 'r' || c == 't' || c == '\\') {
                c = c == 'n' ? '\n' : c == 'r' ? '\r' : c == 't' ? '\t' : '\\';
            } else {
                free(out);
                return -1;
            }
        }
        out[used++] = c;
    }
    step->data = out;
    step->length = used;
    return 0;
}

/* Skips spaces and tabs. */
static const char *skip_blanks(const char *text)
{
    while (*text == ' ' || *text == '\t')
        text++;
    return text;
}

/* Reads a client letter A-Z at @p text into step->client; returns what follows it, or
 * NULL if there is no such letter standing alone. */
static const char *parse_client(const char *text, struct step *step)
{
    text = skip_blanks(text);
    if (text[0] < 'A' || text[0] > 'Z' || (text[1] != '\0' && text[1] != ' ' && text[1] != '\t'))
        return NULL;
    step->client = text[0] - 'A';
    return text + 1;
}

/* Reads a whole decimal number that ends the line into step->number; returns 0 or -1. */
static int parse_number(const char *text, struct step *step)
{
    char *end;

    text = skip_blanks(text);
    if (text[0] < '0' || text[0] > '9')
        return -1;
    errno = 0;
    step->number = strtoul(text, &end, 10);
    return errno == 0 && *skip_blanks(end) == '\0' ? 0 : -1;
}

/* Reads the operands after a step's name into @p step; returns NULL, or what is wrong. */
static const char *parse_operands(enum operands operands, const char *rest, struct step *step)
{
    if (operands == CLIENT || operands == CLIENT_TEXT || operands == CLIENT_NUMBER) {
        rest = parse_client(rest, step);
        if (rest == NULL)
            return "needs a client letter A-Z";
    }
    switch (operands) {
    case NO_OPERANDS:
    case CLIENT:
        return *skip_blanks(rest) == '\0' ? NULL : "has more on its line than it takes";
    case CLIENT_NUMBER:
    case NUMBER:
        return parse_number(rest, step) == 0 ? NULL : "needs a whole number N";
    case CLIENT_TEXT:
        /* One space separates the text; any further spaces are part of it. */
        if (rest[0] == '\0' || rest[1] == '\0')
            return "needs TEXT after the client letter";
        return decode_text(rest + 1, step) == 0 ? NULL
                                                : "has a bad escape (use \\n \\r \\t \\\\ \\xNN)";
    case TEXT:
        rest = skip_blanks(rest);
        if (*rest == '\0')
            return "needs TEXT";
        step->data = trim_end(copy_text(rest, strlen(rest)));
        step->length = strlen(step->data);
        return NULL;
    }
    return "has operands the tour does not know";
}

/* Finds the syntax of the step named by the first @p length bytes of @p name. */
static const struct step_syntax *find_syntax(const char *name, size_t length)
{
    size_t i;

    for (i = 0; i < sizeof step_syntaxes / sizeof step_syntaxes[0]; i++)
        if (strlen(step_syntaxes[i].name) == length &&
            strncmp(step_syntaxes[i].name, name, length) == 0)
            return &step_syntaxes[i];
    return NULL;
}

/* Handles an "args" line; returns NULL, or what is wrong with it. */
static const char *parse_args_line(struct scenario *scenario, const char *rest)
{
    if (scenario->count > 0)
        return "must come before every other step";
    if (scenario->args != NULL)
        return "appears twice";
    rest = skip_blanks(rest);
    scenario->args = trim_end(copy_text(rest, strlen(rest)));
    return NULL;
}

/* Appends a parsed step, which the scenario then owns. */
static void add_step(struct scenario *scenario, const struct step *step)
{
    scenario->steps =
        checked_realloc(scenario->steps, (scenario->count + 1) * sizeof *scenario->steps);
    scenario->steps[scenario->count++] = *step;
}

/* Parses one line of tour.txt into @p scenario; returns 0, or -1 with the reason. */
static int parse_line(struct scenario *scenario, const char *path, unsigned number, char *line,
                      char *reason, size_t size)
{
    const char *start = skip_blanks(trim_end(line));
    size_t name_length = strcspn(start, " \t");
    const struct step_syntax *syntax;
    const char *problem;
    struct step step;

    if (*start == '\0' || *start == '#')
        return 0;
    if (name_length == 4 && strncmp(start, "args", 4) == 0)
        problem = parse_args_line(scenario, start + 4);
    else if ((syntax = find_syntax(start, name_length)) == NULL)
        problem = "is not a step the tour knows";
    else if (scenario->count > 0 && scenario->steps[scenario->count - 1].kind == STEP_EXIT)
        problem = "comes after 'exit', which must be the last step";
    else {
        memset(&step, 0, sizeof step);
        step.kind = syntax->kind;
        step.line = number;
        problem = parse_operands(syntax->operands, start + name_length, &step);
        if (problem == NULL) {
            step.source = copy_text(start, strlen(start));
            add_step(scenario, &step);
        } else {
            free(step.data);
        }
    }
    if (problem == NULL)
        return 0;
    snprintf(reason, size, "%s:%u: step '%s' %s", path, number, start, problem);
    return -1;
}

/*
 * Reads the scenario in tour.txt at @p path; returns 0, or -1 with the reason (the file
 * name and line of the first problem). Trailing spaces are cut from every line: they are
 * invisible in an editor, so data that needs one spells it \x20.
 */
static int parse_scenario(const char *path, struct scenario *scenario, char *reason, size_t size)
{
    char *text = read_file(path);
    char *cursor;
    char *line;
    unsigned number = 0;
    int result = 0;

    memset(scenario, 0, sizeof *scenario);
    if (text == NULL) {
        snprintf(reason, size, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    cursor = skip_bom(text);
    while (result == 0 && (line = next_line(&cursor)) != NULL)
        result = parse_line(scenario, path, ++number, line, reason, size);
    free(text);
    if (result == 0 &&
        (scenario->count == 0 || scenario->steps[scenario->count - 1].kind != STEP_EXIT)) {
        snprintf(reason, size, "%s: the last step must be 'exit N'", path);
        result = -1;
    }
    if (scenario->args == NULL)
        scenario->args = copy_text("", 0);
    return result;
}

/* ---- the expected output (README.md) and matching ----------------------------------- */

/* Adds the lines of the fenced block that starts after the cursor to @p expected;
 * returns NULL, or what is missing. */
static const char *read_fenced_block(char **cursor, struct lines *expected)
{
    char *line;

    while ((line = next_line(cursor)) != NULL && strncmp(line, FENCE, 3) != 0)
        continue;
    if (line == NULL)
        return "has no ``` code block after its '" EXPECTED_HEADING "' heading";
    while ((line = next_line(cursor)) != NULL && strncmp(line, FENCE, 3) != 0)
        lines_add(expected, copy_text(line, strlen(line)));
    return line == NULL ? "has no closing ``` for its '" EXPECTED_HEADING "' block" : NULL;
}

/* Reads the lines of README.md's Expected output block; returns 0, or -1 with the reason. */
static int read_expected_output(const char *path, struct lines *expected, char *reason, size_t size)
{
    char *text = read_file(path);
    char *cursor;
    char *line;
    const char *problem = NULL;

    if (text == NULL) {
        if (errno == ENOENT)
            snprintf(reason, size,
                     "%s is missing (its '" EXPECTED_HEADING
                     "' block is what the server's output is checked against)",
                     path);
        else
            snprintf(reason, size, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    cursor = skip_bom(text);
    while ((line = next_line(&cursor)) != NULL && strcmp(trim_end(line), EXPECTED_HEADING) != 0)
        continue;
    if (line == NULL)
        problem = "has no '" EXPECTED_HEADING "' heading";
    else
        problem = read_fenced_block(&cursor, expected);
    free(text);
    if (problem == NULL)
        return 0;
    snprintf(reason, size, "%s %s", path, problem);
    return -1;
}

/* Whether @p c may appear in a placeholder's name. */
static int is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

/* The length of the placeholder "<name>" that starts @p pattern, or 0 if none does. */
static size_t placeholder_length(const char *pattern, const char *end)
{
    const char *p = pattern + 1;

    if (pattern >= end || *pattern != '<')
        return 0;
    while (p < end && is_name_char(*p))
        p++;
    return p > pattern + 1 && p < end && *p == '>' ? (size_t)(p - pattern) + 1 : 0;
}

/* Whether text [t, t_end) matches pattern [p, p_end): each placeholder takes one or more
 * characters, as few as will do, and takes more when the rest does not match. */
static int match_span(const char *p, const char *p_end, const char *t, const char *t_end)
{
    size_t skip;

    while ((skip = placeholder_length(p, p_end)) == 0) {
        if (p == p_end)
            return t == t_end;
        if (t == t_end || *p != *t)
            return 0;
        p++;
        t++;
    }
    if (t == t_end)
        return 0;
    for (p += skip, t++; t <= t_end; t++)
        if (match_span(p, p_end, t, t_end))
            return 1;
    return 0;
}

/* The length of @p text without trailing spaces and tabs. */
static size_t trimmed_length(const char *text)
{
    size_t length = strlen(text);

    while (length > 0 && (text[length - 1] == ' ' || text[length - 1] == '\t'))
        length--;
    return length;
}

/* Whether a line the server printed matches a line of the expected block. */
static int line_matches(const char *pattern, const char *line)
{
    return match_span(pattern, pattern + trimmed_length(pattern), line,
                      line + trimmed_length(line));
}

/* Compares the server's lines with the expected ones; returns 0, or -1 after printing the
 * first difference, with the reason. */
static int compare_output(const struct lines *expected, const struct lines *got, char *reason,
                          size_t size)
{
    size_t i;

    for (i = 0; i < expected->count || i < got->count; i++) {
        const char *want = i < expected->count ? expected->items[i] : NULL;
        const char *have = i < got->count ? got->items[i] : NULL;

        if (want != NULL && have != NULL && line_matches(want, have))
            continue;
        printf("  expected: %s\n", want != NULL ? want : "(no more lines)");
        printf("       got: %s\n", have != NULL ? have : "(no more lines)");
        snprintf(reason, size,
                 "server output line %lu differs from README.md (%lu lines expected, %lu "
                 "printed)",
                 (unsigned long)i + 1, (unsigned long)expected->count, (unsigned long)got->count);
        return -1;
    }
    return 0;
}

/* ---- the server process ------------------------------------------------------------- */

/* What the server has printed so far; shared with the thread that reads it. */
struct output {
    CRITICAL_SECTION lock;
    CONDITION_VARIABLE changed; /* signalled for each new line and at the end */
    struct lines lines;
    int ended;   /* the pipe has reached its end: no more lines will come */
    HANDLE pipe; /* our end of the server's standard output; only the reader uses it */
};

struct server {
    HANDLE process;
    HANDLE input;  /* our end of the server's standard input, NULL once closed */
    HANDLE reader; /* the thread that reads its output */
    struct output *output;
    int exited; /* the exit step has seen it end */
};

/* Stores one line the server printed, after showing it in the transcript. */
static void add_output_line(struct output *output, const char *line, size_t length)
{
    if (length > 0 && line[length - 1] == '\r')
        length--;
    /* Shown before it is stored, so it is in the transcript before any step it wakes. */
    printf("  %.*s\n", (int)length, line);
    EnterCriticalSection(&output->lock);
    lines_add(&output->lines, copy_text(line, length));
    LeaveCriticalSection(&output->lock);
    WakeAllConditionVariable(&output->changed);
}

/* The reader thread: splits the server's output into lines until the pipe ends. */
static unsigned __stdcall read_server_output(void *context)
{
    struct output *output = context;
    char chunk[4096];
    size_t capacity = sizeof chunk;
    char *line = checked_realloc(NULL, capacity);
    size_t used = 0;
    DWORD got = 0;
    DWORD i;

    for (;;) {
        if (!ReadFile(output->pipe, chunk, (DWORD)sizeof chunk, &got, NULL)) {
            /* Once the server and all it started have exited, the pipe reports "broken". */
            if (GetLastError() != ERROR_BROKEN_PIPE && GetLastError() != ERROR_OPERATION_ABORTED)
                report_win_error("ReadFile");
            break;
        }
        for (i = 0; i < got; i++) {
            if (chunk[i] == '\n') {
                add_output_line(output, line, used);
                used = 0;
                continue;
            }
            if (used == capacity)
                line = checked_realloc(line, capacity *= 2);
            line[used++] = chunk[i];
        }
    }
    if (used > 0)
        add_output_line(output, line, used);
    free(line);
    EnterCriticalSection(&output->lock);
    output->ended = 1;
    LeaveCriticalSection(&output->lock);
    WakeAllConditionVariable(&output->changed);
    return 0;
}

enum wait_result { LINE_FOUND, LINE_TIMED_OUT, LINE_NEVER };

/* Waits until the server prints a line, at index @p from or later, containing @p text;
 * LINE_FOUND sets *found to its index. */
static enum wait_result wait_for_line(struct output *output, size_t from, const char *text,
                                      ULONGLONG deadline, size_t *found)
{
    enum wait_result result = LINE_TIMED_OUT;

    EnterCriticalSection(&output->lock);
    for (;;) {
        for (; from < output->lines.count && result != LINE_FOUND; from++)
            if (strstr(output->lines.items[from], text) != NULL) {
                *found = from;
                result = LINE_FOUND;
            }
        if (result == LINE_FOUND || output->ended || time_left(deadline) == 0)
            break;
        if (!SleepConditionVariableCS(&output->changed, &output->lock, time_left(deadline)) &&
            GetLastError() != ERROR_TIMEOUT) {
            report_win_error("SleepConditionVariableCS");
            break;
        }
    }
    if (result != LINE_FOUND && output->ended)
        result = LINE_NEVER;
    LeaveCriticalSection(&output->lock);
    return result;
}

/* Closes a handle we are done with, reporting a failure, and sets it to NULL. */
static void close_handle(HANDLE *handle)
{
    if (*handle != NULL && !CloseHandle(*handle))
        report_win_error("CloseHandle");
    *handle = NULL;
}

/* Makes a pipe of which only the @p child_reads end (or else the write end) is
 * inherited; returns 0, or -1 with the reason. */
static int make_pipe(HANDLE *ours, HANDLE *childs, int child_reads, char *reason, size_t size)
{
    SECURITY_ATTRIBUTES inheritable = {(DWORD)sizeof inheritable, NULL, TRUE};
    HANDLE read_end;
    HANDLE write_end;

    if (!CreatePipe(&read_end, &write_end, &inheritable, 0)) {
        describe_error(reason, size, "CreatePipe", GetLastError());
        return -1;
    }
    *ours = child_reads ? write_end : read_end;
    *childs = child_reads ? read_end : write_end;
    /* Our end must not be inherited, or the pipe could never report its end. */
    if (!SetHandleInformation(*ours, HANDLE_FLAG_INHERIT, 0)) {
        describe_error(reason, size, "SetHandleInformation", GetLastError());
        close_handle(ours);
        close_handle(childs);
        return -1;
    }
    return 0;
}

/* Returns an inheritable copy of our stderr for the server (so its errors show up
 * beside the transcript), or our handle as it is if there is none to copy. */
static HANDLE inheritable_stderr(void)
{
    HANDLE error = GetStdHandle(STD_ERROR_HANDLE);
    HANDLE copy;

    if (error == NULL || error == INVALID_HANDLE_VALUE)
        return NULL;
    if (!DuplicateHandle(GetCurrentProcess(), error, GetCurrentProcess(), &copy, 0, TRUE,
                         DUPLICATE_SAME_ACCESS)) {
        report_win_error("DuplicateHandle");
        return NULL;
    }
    return copy;
}

/* Starts @p exe with @p args and the given standard handles; returns 0, or -1 with the
 * reason. */
static int launch(struct server *server, const char *exe, const char *args, HANDLE input,
                  HANDLE output, char *reason, size_t size)
{
    STARTUPINFOA startup;
    PROCESS_INFORMATION process;
    char *path = backslashes(join3(exe, "", ""));
    char *command = join3("\"", path, args[0] != '\0' ? "\" " : "\"");
    char *full = join3(command, args, "");
    DWORD error;

    memset(&startup, 0, sizeof startup);
    startup.cb = (DWORD)sizeof startup;
    startup.dwFlags = STARTF_USESTDHANDLES;
    startup.hStdInput = input;
    startup.hStdOutput = output;
    startup.hStdError = inheritable_stderr();
    /* Inherit handles: that is how the pipes' other ends reach the server. The path gets
     * backslashes because only those are sure to work in a program's own path. */
    if (!CreateProcessA(path, full, NULL, NULL, TRUE, 0, NULL, NULL, &startup, &process)) {
        error = GetLastError();
        describe_error(reason, size, "CreateProcess", error);
        if (error == ERROR_FILE_NOT_FOUND || error == ERROR_PATH_NOT_FOUND)
            snprintf(reason, size, "%s not found (build it with make)", exe);
    } else {
        server->process = process.hProcess;
        close_handle(&process.hThread);
    }
    close_handle(&startup.hStdError);
    free(path);
    free(command);
    free(full);
    return server->process != NULL ? 0 : -1;
}

/* Makes the shared output record for a new server. */
static struct output *new_output(void)
{
    struct output *output = checked_realloc(NULL, sizeof *output);

    memset(output, 0, sizeof *output);
    InitializeCriticalSection(&output->lock);
    InitializeConditionVariable(&output->changed);
    return output;
}

/* Frees the output record; only once its reader thread has ended. */
static void free_output(struct output *output)
{
    DeleteCriticalSection(&output->lock);
    lines_free(&output->lines);
    close_handle(&output->pipe);
    free(output);
}

/* Starts the server with its standard input and output on pipes, and the thread that
 * reads its output; returns 0, or -1 with the reason. */
static int start_server(struct server *server, const char *exe, const char *args, char *reason,
                        size_t size)
{
    HANDLE child_input = NULL;
    HANDLE child_output = NULL;
    int result = -1;

    memset(server, 0, sizeof *server);
    server->output = new_output();
    if (make_pipe(&server->input, &child_input, 1, reason, size) == 0 &&
        make_pipe(&server->output->pipe, &child_output, 0, reason, size) == 0 &&
        launch(server, exe, args, child_input, child_output, reason, size) == 0)
        result = 0;
    /* The server has its copies now; ours would keep its output pipe from ever ending. */
    close_handle(&child_input);
    close_handle(&child_output);
    if (result == 0) {
        server->reader =
            (HANDLE)_beginthreadex(NULL, 0, read_server_output, server->output, 0, NULL);
        if (server->reader == NULL) {
            snprintf(reason, size, "_beginthreadex failed: errno %d %s", errno, strerror(errno));
            result = -1;
        }
    }
    return result;
}

/* Waits up to @p timeout_ms for the server to exit, and kills it if it has not. */
static void wait_or_terminate(struct server *server, DWORD timeout_ms)
{
    DWORD waited = WaitForSingleObject(server->process, timeout_ms);

    if (waited == WAIT_OBJECT_0)
        return;
    if (waited != WAIT_TIMEOUT)
        report_win_error("WaitForSingleObject");
    if (!TerminateProcess(server->process, 1))
        report_win_error("TerminateProcess");
    else if (WaitForSingleObject(server->process, STOP_TIMEOUT_MS) != WAIT_OBJECT_0)
        report_win_error("WaitForSingleObject");
}

/* Stops a server that is still running: "quit" and the end of its input, then, after
 * STOP_TIMEOUT_MS, TerminateProcess. */
static void stop_server(struct server *server)
{
    DWORD written;

    if (server->process == NULL || server->exited)
        return;
    printf("  [stdin] quit (the tour stops the server)\n");
    /* A server that has exited already cannot take it; any other failure is news. */
    if (server->input != NULL && !WriteFile(server->input, "quit\n", 5, &written, NULL) &&
        GetLastError() != ERROR_NO_DATA && GetLastError() != ERROR_BROKEN_PIPE)
        report_win_error("WriteFile");
    /* The end of its input is a stop request too, for a server that ignores "quit". */
    close_handle(&server->input);
    wait_or_terminate(server, STOP_TIMEOUT_MS);
}

/*
 * Waits for the reader thread to reach the end of the output and moves the lines it
 * collected into @p lines; then frees the server's handles.
 */
static void finish_server(struct server *server, struct lines *lines)
{
    int reader_ended = server->reader == NULL;

    stop_server(server);
    close_handle(&server->input);
    if (server->reader != NULL) {
        /* Only a process the server started could still hold the pipe open. */
        if (WaitForSingleObject(server->reader, OUTPUT_END_TIMEOUT_MS) != WAIT_OBJECT_0 &&
            CancelSynchronousIo(server->reader))
            WaitForSingleObject(server->reader, OUTPUT_END_TIMEOUT_MS);
        reader_ended = WaitForSingleObject(server->reader, 0) == WAIT_OBJECT_0;
        if (!reader_ended)
            fprintf(stderr, "tour: the server's output did not end; giving up on it\n");
    }
    EnterCriticalSection(&server->output->lock);
    *lines = server->output->lines;
    memset(&server->output->lines, 0, sizeof server->output->lines);
    LeaveCriticalSection(&server->output->lock);
    /* A reader still blocked in ReadFile uses the record: then it has to stay allocated. */
    if (reader_ended)
        free_output(server->output);
    close_handle(&server->reader);
    close_handle(&server->process);
}

/* ---- clients and steps -------------------------------------------------------------- */

struct client {
    SOCKET socket;          /* INVALID_SOCKET when not connected */
    int peer_closed;        /* a closed step saw the server close or reset it */
    int shut_down;          /* a close step sent our FIN; we can still receive */
    unsigned long sent;     /* where the next sendsize continues the pattern */
    unsigned long received; /* where the next expectsize continues the pattern */
};

/* One chapter's run: its server, its clients and what the steps have learnt. */
struct run {
    struct server server;
    struct client clients[CLIENT_COUNT];
    size_t wait_cursor;       /* a wait searches the lines after the previous wait's match */
    unsigned short port;      /* from the "listening on" line; 0 until it is read */
    int ipv6;                 /* that line had an IPv6 address */
    char reason[REASON_SIZE]; /* why the current step failed */
};

/* The letter that names client @p index in the transcript. */
static char client_name(int index)
{
    return (char)('A' + index);
}

/* The client a step names if it is connected; otherwise NULL with the reason. */
static struct client *connected_client(struct run *run, const struct step *step)
{
    struct client *client = &run->clients[step->client];

    if (client->socket != INVALID_SOCKET)
        return client;
    snprintf(run->reason, sizeof run->reason, "client %c is not connected",
             client_name(step->client));
    return NULL;
}

/* Reads the server's address from its "listening on ADDRESS:PORT" line, waiting for it
 * if need be; returns 0, or -1 with the reason. */
static int read_listening_line(struct run *run)
{
    struct output *output = run->server.output;
    size_t index;
    const char *line;
    const char *colon;
    unsigned long port;

    switch (wait_for_line(output, 0, LISTENING_PREFIX, step_deadline(), &index)) {
    case LINE_TIMED_OUT:
        snprintf(run->reason, sizeof run->reason,
                 "the server printed no '" LISTENING_PREFIX "ADDRESS:PORT' line within %d s",
                 STEP_TIMEOUT_MS / 1000);
        return -1;
    case LINE_NEVER:
        snprintf(run->reason, sizeof run->reason,
                 "the server's output ended without a '" LISTENING_PREFIX "ADDRESS:PORT' line");
        return -1;
    case LINE_FOUND:
        break;
    }
    EnterCriticalSection(&output->lock);
    line = strstr(output->lines.items[index], LISTENING_PREFIX) + strlen(LISTENING_PREFIX);
    colon = strrchr(line, ':');
    port = colon != NULL ? strtoul(colon + 1, NULL, 10) : 0;
    run->ipv6 = line[0] == '[';
    LeaveCriticalSection(&output->lock);
    if (port == 0 || port > 65535) {
        snprintf(run->reason, sizeof run->reason, "no port in the server's '%s' line",
                 LISTENING_PREFIX);
        return -1;
    }
    run->port = (unsigned short)port;
    return 0;
}

/* Sets a socket's receive or send timeout to @p milliseconds; returns 0, or -1 with the
 * reason. */
static int set_timeout(SOCKET socket_handle, int name, DWORD milliseconds, char *reason,
                       size_t size)
{
    if (setsockopt(socket_handle, SOL_SOCKET, name, (const char *)&milliseconds,
                   (int)sizeof milliseconds) == SOCKET_ERROR) {
        describe_error(reason, size,
                       name == SO_RCVTIMEO ? "setsockopt(SO_RCVTIMEO)" : "setsockopt(SO_SNDTIMEO)",
                       (unsigned long)WSAGetLastError());
        return -1;
    }
    return 0;
}

/* Fills in the loopback address of the server's family and port; returns its length. */
static int server_address(const struct run *run, struct sockaddr_storage *address)
{
    struct sockaddr_in *v4 = (struct sockaddr_in *)address;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)address;

    memset(address, 0, sizeof *address);
    if (run->ipv6) {
        v6->sin6_family = AF_INET6;
        v6->sin6_addr.s6_addr[15] = 1; /* ::1 */
        v6->sin6_port = htons(run->port);
        return (int)sizeof *v6;
    }
    v4->sin_family = AF_INET;
    v4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    v4->sin_port = htons(run->port);
    return (int)sizeof *v4;
}

/* Closes a client's socket and frees its letter; returns 0, or -1 with the reason. */
static int close_socket(struct run *run, struct client *client)
{
    int result = 0;

    if (closesocket(client->socket) == SOCKET_ERROR) {
        describe_error(run->reason, sizeof run->reason, "closesocket",
                       (unsigned long)WSAGetLastError());
        result = -1;
    }
    client->socket = INVALID_SOCKET;
    return result;
}

/* connect X: connects a new socket to the server; returns 0, or -1 with the reason. */
static int step_connect(struct run *run, const struct step *step)
{
    struct client *client = &run->clients[step->client];
    struct sockaddr_storage address;
    int length;
    SOCKET socket_handle;

    if (client->socket != INVALID_SOCKET && !client->shut_down) {
        snprintf(run->reason, sizeof run->reason, "client %c is already connected",
                 client_name(step->client));
        return -1;
    }
    /* A client that has sent its FIN is done: its letter may name a new connection. */
    if (client->socket != INVALID_SOCKET && close_socket(run, client) != 0)
        return -1;
    if (run->port == 0 && read_listening_line(run) != 0)
        return -1;
    length = server_address(run, &address);
    socket_handle = socket(address.ss_family, SOCK_STREAM, IPPROTO_TCP);
    if (socket_handle == INVALID_SOCKET) {
        describe_error(run->reason, sizeof run->reason, "socket", (unsigned long)WSAGetLastError());
        return -1;
    }
    if (connect(socket_handle, (const struct sockaddr *)&address, length) == SOCKET_ERROR) {
        describe_error(run->reason, sizeof run->reason, "connect",
                       (unsigned long)WSAGetLastError());
        closesocket(socket_handle); /* the connect error is the one to report */
        return -1;
    }
    memset(client, 0, sizeof *client);
    client->socket = socket_handle;
    printf("  [%c] connect\n", client_name(step->client));
    /* A send blocks while the server does not read: bound it like every other wait. */
    return set_timeout(socket_handle, SO_SNDTIMEO, STEP_TIMEOUT_MS, run->reason,
                       sizeof run->reason);
}

/* Sends all of @p data on @p client; returns 0, or -1 with the reason. */
static int send_all(struct run *run, struct client *client, const char *data, size_t length)
{
    while (length > 0) {
        int chunk = length > CHUNK_SIZE ? CHUNK_SIZE : (int)length;
        int sent = send(client->socket, data, chunk, 0);

        if (sent == SOCKET_ERROR) {
            int error = WSAGetLastError();

            describe_error(run->reason, sizeof run->reason, "send", (unsigned long)error);
            if (error == WSAETIMEDOUT)
                snprintf(run->reason, sizeof run->reason,
                         "send could not finish within %d s: the server takes no more "
                         "(an echo server stops when its replies are not read: send less "
                         "before expecting)",
                         STEP_TIMEOUT_MS / 1000);
            return -1;
        }
        data += sent;
        length -= (size_t)sent;
    }
    return 0;
}

/* send X TEXT: sends the decoded text; returns 0, or -1 with the reason. */
static int step_send(struct run *run, const struct step *step)
{
    struct client *client = connected_client(run, step);

    if (client == NULL || send_all(run, client, step->data, step->length) != 0)
        return -1;
    printf("  [%c] sent %lu bytes\n", client_name(step->client), (unsigned long)step->length);
    return 0;
}

/* Fills @p buffer with the pattern's bytes from position @p offset on. */
static void fill_pattern(char *buffer, size_t length, unsigned long offset)
{
    size_t i;

    for (i = 0; i < length; i++)
        buffer[i] = PATTERN[(offset + i) % PATTERN_LENGTH];
}

/* sendsize X N: sends N pattern bytes; returns 0, or -1 with the reason. */
static int step_sendsize(struct run *run, const struct step *step)
{
    struct client *client = connected_client(run, step);
    char *buffer;
    unsigned long left = step->number;
    int result = 0;

    if (client == NULL)
        return -1;
    buffer = checked_realloc(NULL, CHUNK_SIZE);
    while (left > 0 && result == 0) {
        size_t chunk = left > CHUNK_SIZE ? CHUNK_SIZE : (size_t)left;

        fill_pattern(buffer, chunk, client->sent);
        result = send_all(run, client, buffer, chunk);
        client->sent += (unsigned long)chunk;
        left -= (unsigned long)chunk;
    }
    free(buffer);
    if (result == 0)
        printf("  [%c] sent %lu bytes\n", client_name(step->client), step->number);
    return result;
}

enum receive_result { RECEIVED, RECEIVE_CLOSED, RECEIVE_RESET, RECEIVE_TIMED_OUT, RECEIVE_FAILED };

/* Receives up to @p size bytes before @p deadline; RECEIVED sets *got, RECEIVE_FAILED
 * fills in the reason. */
static enum receive_result receive_some(struct run *run, SOCKET socket_handle, char *buffer,
                                        size_t size, ULONGLONG deadline, size_t *got)
{
    DWORD left = time_left(deadline);
    int result;
    int error;

    /* SO_RCVTIMEO 0 would mean "no limit", so a passed deadline is handled here. */
    if (left == 0)
        return RECEIVE_TIMED_OUT;
    if (set_timeout(socket_handle, SO_RCVTIMEO, left, run->reason, sizeof run->reason) != 0)
        return RECEIVE_FAILED;
    result = recv(socket_handle, buffer, size > INT_MAX ? INT_MAX : (int)size, 0);
    if (result > 0) {
        *got = (size_t)result;
        return RECEIVED;
    }
    if (result == 0)
        return RECEIVE_CLOSED;
    error = WSAGetLastError();
    if (error == WSAETIMEDOUT)
        return RECEIVE_TIMED_OUT;
    if (error == WSAECONNRESET || error == WSAECONNABORTED)
        return RECEIVE_RESET;
    describe_error(run->reason, sizeof run->reason, "recv", (unsigned long)error);
    return RECEIVE_FAILED;
}

/* Explains, as the step's reason, why fewer bytes than @p wanted arrived. */
static void explain_short_receive(struct run *run, enum receive_result result, size_t have,
                                  size_t wanted)
{
    const char *what = result == RECEIVE_CLOSED  ? "the server closed the connection"
                       : result == RECEIVE_RESET ? "the connection was reset"
                                                 : NULL;

    if (result == RECEIVE_TIMED_OUT)
        snprintf(run->reason, sizeof run->reason, "only %lu of %lu bytes arrived within %d s",
                 (unsigned long)have, (unsigned long)wanted, STEP_TIMEOUT_MS / 1000);
    else if (what != NULL)
        snprintf(run->reason, sizeof run->reason, "%s after %lu of %lu bytes", what,
                 (unsigned long)have, (unsigned long)wanted);
}

/* Receives exactly @p wanted bytes into @p buffer, failing as soon as they differ from
 * @p expected; returns 0, or -1 with the reason. */
static int receive_text(struct run *run, SOCKET socket_handle, char *buffer, const char *expected,
                        size_t wanted)
{
    ULONGLONG deadline = step_deadline();
    size_t have = 0;
    char show_expected[SHOW_SIZE];
    char show_got[SHOW_SIZE];

    while (have < wanted) {
        size_t got = 0;
        enum receive_result result =
            receive_some(run, socket_handle, buffer + have, wanted - have, deadline, &got);

        if (result != RECEIVED) {
            explain_short_receive(run, result, have, wanted);
            return -1;
        }
        if (memcmp(buffer + have, expected + have, got) != 0) {
            have += got;
            snprintf(run->reason, sizeof run->reason, "received \"%s\", expected \"%s\"",
                     show_data(buffer, have, show_got, sizeof show_got),
                     show_data(expected, wanted, show_expected, sizeof show_expected));
            return -1;
        }
        have += got;
    }
    return 0;
}

/* expect X TEXT: receives exactly the decoded text; returns 0, or -1 with the reason. */
static int step_expect(struct run *run, const struct step *step)
{
    struct client *client = connected_client(run, step);
    char shown[SHOW_SIZE];
    char *buffer;
    int result;

    if (client == NULL)
        return -1;
    /* Only as many bytes as expected are read: the rest belongs to later steps. */
    buffer = checked_realloc(NULL, step->length);
    result = receive_text(run, client->socket, buffer, step->data, step->length);
    free(buffer);
    if (result == 0)
        printf("  [%c] received %lu bytes: %s\n", client_name(step->client),
               (unsigned long)step->length,
               show_data(step->data, step->length, shown, sizeof shown));
    return result;
}

/* Checks received bytes against the pattern from where @p client's last check ended;
 * returns 0, or -1 with the reason. */
static int check_pattern(struct run *run, struct client *client, const char *data, size_t length)
{
    size_t i;

    for (i = 0; i < length; i++, client->received++) {
        char wanted = PATTERN[client->received % PATTERN_LENGTH];

        if (data[i] != wanted) {
            snprintf(run->reason, sizeof run->reason, "pattern byte %lu is 0x%02X, expected '%c'",
                     client->received, (unsigned)(unsigned char)data[i], wanted);
            return -1;
        }
    }
    return 0;
}

/* expectsize X N: receives N bytes of the pattern; returns 0, or -1 with the reason. */
static int step_expectsize(struct run *run, const struct step *step)
{
    struct client *client = connected_client(run, step);
    ULONGLONG deadline = step_deadline();
    char *buffer;
    unsigned long have = 0;
    int result = 0;

    if (client == NULL)
        return -1;
    buffer = checked_realloc(NULL, CHUNK_SIZE);
    while (have < step->number && result == 0) {
        unsigned long left = step->number - have;
        size_t got = 0;
        enum receive_result received = receive_some(
            run, client->socket, buffer, left > CHUNK_SIZE ? CHUNK_SIZE : left, deadline, &got);

        if (received != RECEIVED) {
            explain_short_receive(run, received, have, step->number);
            result = -1;
        } else {
            result = check_pattern(run, client, buffer, got);
            have += (unsigned long)got;
        }
    }
    free(buffer);
    if (result == 0)
        printf("  [%c] received %lu bytes (the sendsize pattern)\n", client_name(step->client),
               step->number);
    return result;
}

/* closed X: waits until the server closes or resets X; returns 0, or -1 with the
 * reason. */
static int step_closed(struct run *run, const struct step *step)
{
    struct client *client = connected_client(run, step);
    char buffer[256];
    char shown[SHOW_SIZE];
    size_t got = 0;

    if (client == NULL)
        return -1;
    switch (receive_some(run, client->socket, buffer, sizeof buffer, step_deadline(), &got)) {
    case RECEIVE_CLOSED:
        printf("  [%c] closed by server\n", client_name(step->client));
        break;
    case RECEIVE_RESET:
        printf("  [%c] reset by server\n", client_name(step->client));
        break;
    case RECEIVED:
        snprintf(run->reason, sizeof run->reason, "received \"%s\" instead of a close",
                 show_data(buffer, got, shown, sizeof shown));
        return -1;
    case RECEIVE_TIMED_OUT:
        snprintf(run->reason, sizeof run->reason,
                 "the server did not close the connection within %d s", STEP_TIMEOUT_MS / 1000);
        return -1;
    case RECEIVE_FAILED:
        return -1;
    }
    client->peer_closed = 1;
    /* Both sides have closed now, so the connection is over. */
    return client->shut_down ? close_socket(run, client) : 0;
}

/*
 * close X: closes gracefully by sending FIN (shutdown SD_SEND); returns 0, or -1 with the
 * reason. The socket stays open for receiving, so that later steps can still see what
 * the server does about the FIN ("expect X", "closed X"); it is closed once the server
 * has closed too, or at the end of the chapter.
 */
static int step_close(struct run *run, const struct step *step)
{
    struct client *client = connected_client(run, step);

    if (client == NULL)
        return -1;
    if (client->shut_down) {
        snprintf(run->reason, sizeof run->reason, "client %c is closed already",
                 client_name(step->client));
        return -1;
    }
    /* After the server closed or reset it, a shutdown may fail, and that is no news. */
    if (shutdown(client->socket, SD_SEND) == SOCKET_ERROR && !client->peer_closed) {
        describe_error(run->reason, sizeof run->reason, "shutdown",
                       (unsigned long)WSAGetLastError());
        return -1;
    }
    client->shut_down = 1;
    printf("  [%c] close\n", client_name(step->client));
    return client->peer_closed ? close_socket(run, client) : 0;
}

/* reset X: closes abortively, so the server sees a reset; returns 0, or -1 with the
 * reason. */
static int step_reset(struct run *run, const struct step *step)
{
    struct client *client = connected_client(run, step);
    struct linger linger = {1, 0}; /* on, 0 seconds: closesocket sends RST, not FIN */

    if (client == NULL)
        return -1;
    if (setsockopt(client->socket, SOL_SOCKET, SO_LINGER, (const char *)&linger,
                   (int)sizeof linger) == SOCKET_ERROR) {
        describe_error(run->reason, sizeof run->reason, "setsockopt(SO_LINGER)",
                       (unsigned long)WSAGetLastError());
        return -1;
    }
    if (close_socket(run, client) != 0)
        return -1;
    printf("  [%c] reset\n", client_name(step->client));
    return 0;
}

/* wait TEXT: waits for the next server line containing TEXT; returns 0, or -1 with the
 * reason. */
static int step_wait(struct run *run, const struct step *step)
{
    size_t found = 0;

    switch (
        wait_for_line(run->server.output, run->wait_cursor, step->data, step_deadline(), &found)) {
    case LINE_FOUND:
        run->wait_cursor = found + 1;
        return 0;
    case LINE_TIMED_OUT:
        snprintf(run->reason, sizeof run->reason,
                 "the server printed no line containing \"%s\" within %d s", step->data,
                 STEP_TIMEOUT_MS / 1000);
        return -1;
    case LINE_NEVER:
        break;
    }
    snprintf(run->reason, sizeof run->reason,
             "the server's output ended without a line containing \"%s\"", step->data);
    return -1;
}

/* quit: writes "quit" to the server's standard input; returns 0, or -1 with the reason. */
static int step_quit(struct run *run)
{
    DWORD written = 0;

    if (!WriteFile(run->server.input, "quit\n", 5, &written, NULL) || written != 5) {
        describe_error(run->reason, sizeof run->reason, "WriteFile", GetLastError());
        return -1;
    }
    printf("  [stdin] quit\n");
    return 0;
}

/* exit N: waits for the server to exit with code N; returns 0, or -1 with the reason. */
static int step_exit(struct run *run, const struct step *step)
{
    struct server *server = &run->server;
    DWORD waited = WaitForSingleObject(server->process, STEP_TIMEOUT_MS);
    DWORD code = 0;

    if (waited == WAIT_FAILED) {
        describe_error(run->reason, sizeof run->reason, "WaitForSingleObject", GetLastError());
        return -1; /* finish_server stops it */
    }
    server->exited = 1;
    if (waited != WAIT_OBJECT_0) {
        wait_or_terminate(server, 0);
        snprintf(run->reason, sizeof run->reason,
                 "the server did not exit within %d s, so the tour terminated it",
                 STEP_TIMEOUT_MS / 1000);
        return -1;
    }
    if (!GetExitCodeProcess(server->process, &code)) {
        describe_error(run->reason, sizeof run->reason, "GetExitCodeProcess", GetLastError());
        return -1;
    }
    /* Let the reader show the last lines first, so the transcript reads in order. */
    if (WaitForSingleObject(server->reader, OUTPUT_END_TIMEOUT_MS) == WAIT_FAILED)
        report_win_error("WaitForSingleObject");
    printf("  [server] exited with code %lu\n", (unsigned long)code);
    if (code == step->number)
        return 0;
    snprintf(run->reason, sizeof run->reason, "exit code %lu, expected %lu", (unsigned long)code,
             step->number);
    return -1;
}

/* Runs one step; returns 0, or -1 with the reason in run->reason. */
static int run_step(struct run *run, const struct step *step)
{
    switch (step->kind) {
    case STEP_CONNECT:
        return step_connect(run, step);
    case STEP_SEND:
        return step_send(run, step);
    case STEP_SENDSIZE:
        return step_sendsize(run, step);
    case STEP_EXPECT:
        return step_expect(run, step);
    case STEP_EXPECTSIZE:
        return step_expectsize(run, step);
    case STEP_CLOSED:
        return step_closed(run, step);
    case STEP_CLOSE:
        return step_close(run, step);
    case STEP_RESET:
        return step_reset(run, step);
    case STEP_WAIT:
        return step_wait(run, step);
    case STEP_QUIT:
        return step_quit(run);
    case STEP_EXIT:
        return step_exit(run, step);
    }
    snprintf(run->reason, sizeof run->reason, "the tour cannot run this step");
    return -1;
}

/* Closes every client socket still open, without waiting for anything. */
static void close_clients(struct run *run)
{
    int i;

    for (i = 0; i < CLIENT_COUNT; i++) {
        if (run->clients[i].socket != INVALID_SOCKET &&
            closesocket(run->clients[i].socket) == SOCKET_ERROR)
            report_wsa_error("closesocket");
        run->clients[i].socket = INVALID_SOCKET;
    }
}

/*
 * Starts the server and plays every step; whatever happens, closes the clients and stops
 * the server, and hands back every line it printed. Returns 0, or -1 with the reason.
 */
static int play_scenario(const char *exe, const struct scenario *scenario, struct lines *output,
                         char *reason, size_t size)
{
    static struct run run; /* static: 26 clients and a reason are large for the stack */
    size_t i;
    int result;
    int c;

    memset(&run, 0, sizeof run);
    for (c = 0; c < CLIENT_COUNT; c++)
        run.clients[c].socket = INVALID_SOCKET;
    result = start_server(&run.server, exe, scenario->args, reason, size);
    for (i = 0; i < scenario->count && result == 0; i++) {
        const struct step *step = &scenario->steps[i];

        result = run_step(&run, step);
        if (result != 0)
            snprintf(reason, size, "step '%s' (tour.txt line %u): %s", step->source, step->line,
                     run.reason);
    }
    close_clients(&run);
    finish_server(&run.server, output);
    return result;
}

/* ---- chapters ------------------------------------------------------------------------ */

struct tour {
    const char *build_dir;
    const char *chapters_dir;
    char **selected; /* the CHAPTER arguments */
    int selected_count;
};

/* Runs one chapter and prints its verdict; returns 1 if it passed, 0 if it failed. */
static int run_chapter(const struct tour *tour, const char *name)
{
    char *folder = join_path(tour->chapters_dir, name);
    char *scenario_path = join_path(folder, "tour.txt");
    char *readme_path = join_path(folder, "README.md");
    char *exe = join_path(tour->build_dir, name);
    char *exe_path = join3(exe, ".exe", "");
    struct scenario scenario;
    struct lines expected = {0};
    struct lines output = {0};
    char reason[REASON_SIZE] = "";
    char readme_problem[REASON_SIZE] = "";
    int result = parse_scenario(scenario_path, &scenario, reason, sizeof reason);

    if (result == 0) {
        /* A chapter without notes still runs: its transcript shows what they should say. */
        read_expected_output(readme_path, &expected, readme_problem, sizeof readme_problem);
        printf("== %s: %s%s%s\n", name, exe_path, scenario.args[0] ? " " : "", scenario.args);
        result = play_scenario(exe_path, &scenario, &output, reason, sizeof reason);
    }
    if (result == 0 && readme_problem[0] != '\0') {
        snprintf(reason, sizeof reason, "%s", readme_problem);
        result = -1;
    }
    if (result == 0)
        result = compare_output(&expected, &output, reason, sizeof reason);
    if (result == 0)
        printf("PASS %s\n", name);
    else
        printf("FAIL %s: %s\n", name, reason);
    scenario_free(&scenario);
    lines_free(&expected);
    lines_free(&output);
    free(folder);
    free(scenario_path);
    free(readme_path);
    free(exe);
    free(exe_path);
    return result == 0;
}

/* Whether the chapter folder @p name is what the argument @p wanted names: "03" or
 * "03-accept" for 03-accept. */
static int chapter_matches(const char *name, const char *wanted)
{
    size_t length = strlen(wanted);

    return strncmp(name, wanted, length) == 0 && (name[length] == '\0' || name[length] == '-');
}

/* Whether the chapter is to run: every chapter without CHAPTER arguments, else those
 * they name. */
static int is_selected(const struct tour *tour, const char *name)
{
    int i;

    for (i = 0; i < tour->selected_count; i++)
        if (chapter_matches(name, tour->selected[i]))
            return 1;
    return tour->selected_count == 0;
}

/* Compares two strings through pointers to them, for qsort. */
static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Whether the entry found in @p folder is a chapter: a subfolder with a tour.txt. */
static int is_chapter(const char *folder, const WIN32_FIND_DATAA *entry)
{
    char *path;
    char *scenario;
    DWORD attributes;

    if (!(entry->dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY) || entry->cFileName[0] == '.')
        return 0;
    path = join_path(folder, entry->cFileName);
    scenario = join_path(path, "tour.txt");
    attributes = GetFileAttributesA(scenario);
    free(path);
    free(scenario);
    return attributes != INVALID_FILE_ATTRIBUTES && !(attributes & FILE_ATTRIBUTE_DIRECTORY);
}

/* Lists the chapter folders in @p folder in name order; returns 0, or -1 after
 * reporting why the folder cannot be listed. */
static int find_chapters(const char *folder, struct lines *chapters)
{
    char *pattern = join_path(folder, "*");
    WIN32_FIND_DATAA entry;
    HANDLE search = FindFirstFileA(pattern, &entry);

    free(pattern);
    if (search == INVALID_HANDLE_VALUE) {
        fprintf(stderr, "tour: cannot list the chapters in '%s': ", folder);
        report_win_error("FindFirstFile");
        return -1;
    }
    do {
        if (is_chapter(folder, &entry))
            lines_add(chapters, copy_text(entry.cFileName, strlen(entry.cFileName)));
    } while (FindNextFileA(search, &entry));
    if (GetLastError() != ERROR_NO_MORE_FILES)
        report_win_error("FindNextFile");
    if (!FindClose(search))
        report_win_error("FindClose");
    if (chapters->count > 0)
        qsort(chapters->items, chapters->count, sizeof *chapters->items, compare_names);
    return 0;
}

/* Counts the CHAPTER arguments that name no chapter, printing a FAIL line for each. */
static unsigned report_unknown_chapters(const struct tour *tour, const struct lines *chapters)
{
    unsigned unknown = 0;
    size_t c;
    int i;

    for (i = 0; i < tour->selected_count; i++) {
        for (c = 0; c < chapters->count; c++)
            if (chapter_matches(chapters->items[c], tour->selected[i]))
                break;
        if (c == chapters->count) {
            printf("FAIL %s: no chapter in %s matches it (a folder NN-topic with a tour.txt)\n",
                   tour->selected[i], tour->chapters_dir);
            unknown++;
        }
    }
    return unknown;
}

/* ---- command line and main ---------------------------------------------------------- */

/* Prints how to run the tour to @p out. */
static void print_usage(FILE *out)
{
    fprintf(out, "usage: tour.exe [--build-dir DIR] [--chapters-dir DIR] [CHAPTER...]\n"
                 "  Runs each chapter's demo (chapters/NN-topic/tour.txt) against its program\n"
                 "  (DIR/NN-topic.exe) and checks the output against the chapter's README.md.\n"
                 "  CHAPTER             03 or 03-accept; several may be given (default: all)\n"
                 "  --build-dir DIR     where the chapter programs are (default build)\n"
                 "  --chapters-dir DIR  where the chapter folders are (default chapters)\n"
                 "  --help              show this help and exit\n"
                 "Exit code: 0 if every chapter passed, 1 if one failed or none was found, "
                 "2 for a bad command line.\n");
}

/* Prints a command-line problem and the usage to stderr, then exits with EXIT_USAGE. */
static void usage_error(const char *problem, const char *argument)
{
    fprintf(stderr, "tour: %s '%.60s'\n", problem, argument);
    print_usage(stderr);
    exit(EXIT_USAGE);
}

/* Fills @p tour from the command line, or exits: 0 after --help, 2 on a bad argument. */
static void parse_arguments(int argc, char **argv, struct tour *tour)
{
    int i;

    tour->build_dir = "build";
    tour->chapters_dir = "chapters";
    tour->selected = checked_realloc(NULL, (size_t)argc * sizeof *tour->selected);
    tour->selected_count = 0;
    for (i = 1; i < argc; i++) {
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            print_usage(stdout);
            exit(EXIT_SUCCESS);
        }
        if (strcmp(argv[i], "--build-dir") == 0 || strcmp(argv[i], "--chapters-dir") == 0) {
            if (value == NULL || value[0] == '\0')
                usage_error("this option needs a folder:", argv[i]);
            if (strcmp(argv[i], "--build-dir") == 0)
                tour->build_dir = value;
            else
                tour->chapters_dir = value;
            i++;
        } else if (argv[i][0] == '-' || argv[i][0] == '\0') {
            usage_error("unknown option", argv[i]);
        } else {
            tour->selected[tour->selected_count++] = argv[i];
        }
    }
}

/* Runs the selected chapters in order; adds to *passed and *failed. */
static void run_chapters(const struct tour *tour, unsigned *passed, unsigned *failed)
{
    struct lines chapters = {0};
    size_t i;

    if (find_chapters(tour->chapters_dir, &chapters) != 0)
        return;
    for (i = 0; i < chapters.count; i++) {
        if (!is_selected(tour, chapters.items[i]))
            continue;
        if (run_chapter(tour, chapters.items[i]))
            ++*passed;
        else
            ++*failed;
    }
    *failed += report_unknown_chapters(tour, &chapters);
    lines_free(&chapters);
}

/* Runs the tour; exits 0 only if at least one chapter ran and every one passed. */
int main(int argc, char **argv)
{
    struct tour tour;
    WSADATA data;
    int error;
    unsigned passed = 0;
    unsigned failed = 0;

    /* Unbuffered, so the transcript and the servers' stderr appear in order. */
    setvbuf(stdout, NULL, _IONBF, 0);
    parse_arguments(argc, argv, &tour);
    error = WSAStartup(MAKEWORD(2, 2), &data);
    if (error != 0) {
        report_error("WSAStartup", (unsigned long)error);
        return EXIT_FAILURE;
    }
    run_chapters(&tour, &passed, &failed);
    if (passed + failed == 0)
        printf("tour: no chapters found in %s\n", tour.chapters_dir);
    printf("tour: %u passed, %u failed\n", passed, failed);
    if (WSACleanup() != 0)
        report_wsa_error("WSACleanup");
    free(tour.selected);
    return failed == 0 && passed > 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
