/**
 * @file connect.h
 * @brief The client side that the tools a reader types into share (tools/client.c,
 *        tools/chat.c): their `[HOST] [PORT]` command line, the connection to a server,
 *        whole sends, and the thread that reads what is typed.
 *
 * A tool has two threads, because both directions can block at any time: the input
 * thread reads standard input and sends, and the main thread receives and prints.
 */
#ifndef IOCP_TUTORIAL_CONNECT_H
#define IOCP_TUTORIAL_CONNECT_H

#include <winsock2.h>

#include <stddef.h>
#include <stdio.h>

/** Exit code for a bad command line, the same as the chapters use. */
#define EXIT_USAGE 2
/** The server a tool connects to when no HOST is given. */
#define DEFAULT_HOST "127.0.0.1"
/** Room for "[" + a host name of up to 255 characters + "]:65535". */
#define ENDPOINT_TEXT_SIZE 300
/** The longest line the input thread hands over in one piece, line end included. */
#define INPUT_LINE_SIZE 4096

/** How a tool is run, for reading its command line. */
struct tool {
    const char *name;               /**< starts each complaint, as in "client: ..." */
    void (*print_usage)(FILE *out); /**< prints the tool's usage */
    /**
     * The tool's own options, or NULL if it has none: takes `argv[index]` (and the value
     * after it), returning how many arguments it used, or 0 if it is not one of them.
     */
    int (*take_option)(const struct tool *tool, int argc, char **argv, int index);
};

/** Where to connect, as the command line gave it. */
struct endpoint {
    const char *host; /**< a name or an address literal, IPv6 too */
    const char *port; /**< a decimal port number from 1 to 65535 */
};

/**
 * @brief Prints "NAME: PROBLEM 'ARGUMENT'" (without the quoted part when @p argument is
 *        NULL) and the tool's usage to stderr, then exits with EXIT_USAGE.
 */
void tool_usage_error(const struct tool *tool, const char *problem, const char *argument);

/**
 * @brief Reads `[options] [HOST] [PORT]` into @p endpoint (by default DEFAULT_HOST and
 *        DEFAULT_PORT): prints the usage and exits 0 on --help, hands every other option
 *        to the tool, and exits through tool_usage_error on anything it cannot accept.
 */
void parse_tool_arguments(const struct tool *tool, int argc, char **argv,
                          struct endpoint *endpoint);

/**
 * @brief Starts Winsock 2.2, silently, and connects to the first address of the endpoint
 *        that accepts; returns the socket, or INVALID_SOCKET after reporting the failure.
 */
SOCKET connect_to_server(const struct endpoint *endpoint);

/** @brief Writes "host:port" into @p text, with an IPv6 host in brackets, and returns it. */
const char *format_endpoint(const struct endpoint *endpoint, char *text, size_t size);

/** @brief Starts Winsock 2.2 without printing; returns 0, or -1 after reporting the error. */
int start_winsock_quietly(void);

/** @brief Sends all @p length bytes; returns 0, or -1 after reporting the error. */
int send_all(SOCKET socket_handle, const void *data, size_t length);

/** What the input thread does after a line. */
enum input_verdict {
    INPUT_MORE,  /**< read on */
    INPUT_DONE,  /**< stop reading and half-close, as at the end of the input */
    INPUT_FAILED /**< stop reading, and leave the connection as it is (already reported) */
};

/** What the input thread reads for: the connection, and what to do with each line. */
struct input_reader {
    SOCKET socket_handle; /**< half-closed (shutdown SD_SEND) when the input is done */
    /**
     * Takes the next @p length bytes typed: a line with its line end (@p whole 1), a
     * piece of INPUT_LINE_SIZE bytes of a longer one (@p whole 0), or a last line that
     * has no line end (@p whole 1). Runs on the input thread.
     */
    enum input_verdict (*take_line)(struct input_reader *reader, const char *line, size_t length,
                                    int whole);
    void *context; /**< the tool's own, for take_line */
};

/**
 * @brief Starts the thread that hands standard input to @p reader line by line until the
 *        input ends or take_line says otherwise, then half-closes (not after INPUT_FAILED);
 *        returns 0, or -1 after reporting. Nobody joins it, so @p reader must stay valid
 *        until the process ends.
 */
int start_input_thread(struct input_reader *reader);

#endif
