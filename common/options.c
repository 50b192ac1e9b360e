#include "options.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Exit code for bad usage, as BSD's sysexits and most command-line tools use. */
#define EXIT_USAGE 2

static void print_usage(FILE *out, const char *program, unsigned accepted)
{
    fprintf(out, "usage: %s%s\n", program, accepted ? " [options]" : "");
    if (accepted & OPTION_PORT)
        fprintf(out,
                "  --port N          port to listen on, 0-65535; 0 picks a free one "
                "(default %d)\n",
                DEFAULT_PORT);
    if (accepted & OPTION_BIND)
        fprintf(out, "  --bind ADDRESS    IPv4 or IPv6 address to listen on; :: is every "
                     "IPv6 and IPv4 address (default 127.0.0.1)\n");
    if (accepted & OPTION_WORKERS)
        fprintf(out, "  --workers N       worker threads, 1-%d (default: one per processor)\n",
                MAX_WORKERS);
    if (accepted & OPTION_MAX_CLIENTS)
        fprintf(out, "  --max-clients N   client slots, 1-%d (default %d)\n", MAX_MAX_CLIENTS,
                DEFAULT_MAX_CLIENTS);
    if (accepted & OPTION_MAX_QUEUED)
        fprintf(out,
                "  --max-queued B    bytes a client's send queue may hold before its receives "
                "pause, %d-%lu (default %d)\n",
                MIN_MAX_QUEUED, MAX_MAX_QUEUED, DEFAULT_MAX_QUEUED);
    if (accepted & OPTION_MAX_MESSAGE)
        fprintf(out,
                "  --max-message B   the longest message payload a client may send, 0-%lu "
                "(default %d)\n",
                MAX_MAX_MESSAGE, DEFAULT_MAX_MESSAGE);
    if (accepted & OPTION_IDLE_TIMEOUT)
        fprintf(out,
                "  --idle-timeout S  close a client idle, or in the middle of a message, for S "
                "seconds, 1-%lu (default %d)\n",
                MAX_TIMEOUT_SECONDS, DEFAULT_IDLE_TIMEOUT);
    if (accepted & OPTION_KEEPALIVE)
        fprintf(out,
                "  --keepalive S     TCP keep-alive probes after S silent seconds, 0-%lu "
                "(default 0: off)\n",
                MAX_TIMEOUT_SECONDS);
    if (accepted & OPTION_BATCH)
        fprintf(out, "  --batch N         completions a worker takes per wait, 1-%d (default %d)\n",
                MAX_BATCH, DEFAULT_BATCH);
    if (accepted & OPTION_VERBOSE)
        fprintf(out, "  --verbose         a line for every client that connects or disconnects\n");
    if (accepted & OPTION_ACCEPTS)
        fprintf(out, "  --accepts N       accepts kept outstanding, 1-%d (default %d per worker)\n",
                MAX_ACCEPTS, DEFAULT_ACCEPTS_PER_WORKER);
    fprintf(out, "  --help            show this help and exit\n");
}

static void usage_error(const char *program, unsigned accepted, const char *problem)
{
    fprintf(stderr, "%s: %s\n", program, problem);
    print_usage(stderr, program, accepted);
    exit(EXIT_USAGE);
}

/* Parses a whole decimal number in [low, high]; anything else (sign, spaces, junk) fails. */
static int parse_number(const char *text, unsigned long low, unsigned long high,
                        unsigned long *value)
{
    char *end;
    unsigned long number;

    if (text[0] < '0' || text[0] > '9')
        return -1;
    errno = 0;
    number = strtoul(text, &end, 10);
    if (errno != 0 || *end != '\0' || number < low || number > high)
        return -1;
    *value = number;
    return 0;
}

struct numeric_option {
    const char *name;
    unsigned flag;
    unsigned long low, high;
};

static const struct numeric_option numeric_options[] = {
    {"--port", OPTION_PORT, 0, 65535},
    {"--workers", OPTION_WORKERS, 1, MAX_WORKERS},
    {"--max-clients", OPTION_MAX_CLIENTS, 1, MAX_MAX_CLIENTS},
    {"--accepts", OPTION_ACCEPTS, 1, MAX_ACCEPTS},
    {"--max-queued", OPTION_MAX_QUEUED, MIN_MAX_QUEUED, MAX_MAX_QUEUED},
    {"--max-message", OPTION_MAX_MESSAGE, 0, MAX_MAX_MESSAGE},
    {"--idle-timeout", OPTION_IDLE_TIMEOUT, 1, MAX_TIMEOUT_SECONDS},
    {"--keepalive", OPTION_KEEPALIVE, 0, MAX_TIMEOUT_SECONDS},
    {"--batch", OPTION_BATCH, 1, MAX_BATCH},
};

static void store_number(struct options *options, unsigned flag, unsigned long value)
{
    if (flag == OPTION_PORT)
        options->port = (unsigned short)value;
    else if (flag == OPTION_WORKERS)
        options->workers = (unsigned)value;
    else if (flag == OPTION_MAX_CLIENTS)
        options->max_clients = (unsigned)value;
    else if (flag == OPTION_ACCEPTS)
        options->accepts = (unsigned)value;
    else if (flag == OPTION_MAX_QUEUED)
        options->max_queued = value;
    else if (flag == OPTION_MAX_MESSAGE)
        options->max_message = value;
    else if (flag == OPTION_IDLE_TIMEOUT)
        options->idle_timeout = value;
    else if (flag == OPTION_KEEPALIVE)
        options->keepalive = value;
    else
        options->batch = (unsigned)value;
}

/* The program's file name without its folder, for messages. */
static const char *program_name(int argc, char **argv)
{
    const char *name = argc > 0 && argv[0] != NULL ? argv[0] : "program";
    const char *p;

    for (p = name; *p != '\0'; p++)
        if (*p == '\\' || *p == '/')
            name = p + 1;
    return name;
}

/*
 * Refuses an option given a second time: with two values there is no telling which one
 * the user meant, so neither wins.
 */
static void check_once(const char *program, unsigned accepted, unsigned *given, unsigned flag,
                       const char *name)
{
    char problem[200];

    if (*given & flag) {
        snprintf(problem, sizeof problem, "%s given more than once", name);
        usage_error(program, accepted, problem);
    }
    *given |= flag;
}

void parse_options(int argc, char **argv, unsigned accepted, struct options *options)
{
    const char *program = program_name(argc, argv);
    char problem[200];
    unsigned given = 0; /* the options seen so far, to refuse repeats */
    int i;
    size_t n;

    options->port = DEFAULT_PORT;
    options->bind_address = NULL;
    options->workers = 0;
    options->max_clients = DEFAULT_MAX_CLIENTS;
    options->accepts = 0;
    options->max_queued = DEFAULT_MAX_QUEUED;
    options->max_message = DEFAULT_MAX_MESSAGE;
    options->idle_timeout = DEFAULT_IDLE_TIMEOUT;
    options->keepalive = 0;
    options->batch = DEFAULT_BATCH;
    options->verbose = 0;

    for (i = 1; i < argc; i++) {
        const char *name = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        int known = 0;

        if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
            print_usage(stdout, program, accepted);
            exit(EXIT_SUCCESS);
        }
        if (strcmp(name, "--bind") == 0 && (accepted & OPTION_BIND)) {
            check_once(program, accepted, &given, OPTION_BIND, "--bind");
            if (value == NULL || value[0] == '\0')
                usage_error(program, accepted, "--bind needs an address");
            options->bind_address = value;
            i++;
            continue;
        }
        if (strcmp(name, "--verbose") == 0 && (accepted & OPTION_VERBOSE)) {
            check_once(program, accepted, &given, OPTION_VERBOSE, "--verbose");
            options->verbose = 1;
            continue;
        }
        for (n = 0; n < sizeof numeric_options / sizeof numeric_options[0]; n++) {
            const struct numeric_option *option = &numeric_options[n];
            unsigned long number;

            if (strcmp(name, option->name) != 0 || !(accepted & option->flag))
                continue;
            known = 1;
            check_once(program, accepted, &given, option->flag, option->name);
            if (value == NULL) {
                snprintf(problem, sizeof problem, "%s needs a value", option->name);
                usage_error(program, accepted, problem);
            }
            if (parse_number(value, option->low, option->high, &number) != 0) {
                snprintf(problem, sizeof problem,
                         "%s must be a whole number from %lu to %lu, not '%.40s'", option->name,
                         option->low, option->high, value);
                usage_error(program, accepted, problem);
            }
            store_number(options, option->flag, number);
            i++;
        }
        if (!known) {
            snprintf(problem, sizeof problem, "unknown option '%.40s'", name);
            usage_error(program, accepted, problem);
        }
    }
}
