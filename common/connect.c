#include "connect.h"

#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>
#include <process.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "options.h"

/* --- the command line ----------------------------------------------------------------- */

void tool_usage_error(const struct tool *tool, const char *problem, const char *argument)
{
    if (argument != NULL)
        fprintf(stderr, "%s: %s '%.60s'\n", tool->name, problem, argument);
    else
        fprintf(stderr, "%s: %s\n", tool->name, problem);
    tool->print_usage(stderr);
    exit(EXIT_USAGE);
}

/* Whether @p text is a whole decimal port number from 1 to 65535. */
static int is_port_number(const char *text)
{
    unsigned long value = 0;
    size_t i;

    if (text[0] == '\0' || strlen(text) > 5)
        return 0;
    for (i = 0; text[i] != '\0'; i++) {
        if (text[i] < '0' || text[i] > '9')
            return 0;
        value = value * 10 + (unsigned long)(text[i] - '0');
    }
    return value >= 1 && value <= 65535;
}

/* Hands argv[index] to the tool's own options; returns how many arguments they took. */
static int take_tool_option(const struct tool *tool, int argc, char **argv, int index)
{
    int used = tool->take_option != NULL ? tool->take_option(tool, argc, argv, index) : 0;

    /* No host or port starts with '-', so anything else is a mistyped option. */
    if (used == 0)
        tool_usage_error(tool, "unknown option", argv[index]);
    return used;
}

void parse_tool_arguments(const struct tool *tool, int argc, char **argv, struct endpoint *endpoint)
{
    static char default_port[8];
    const char *positional[2] = {NULL, NULL};
    int count = 0;
    int i;

    snprintf(default_port, sizeof default_port, "%d", DEFAULT_PORT);
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            tool->print_usage(stdout);
            exit(EXIT_SUCCESS);
        }
        if (argv[i][0] == '-') {
            i += take_tool_option(tool, argc, argv, i) - 1;
            continue;
        }
        if (count == 2)
            tool_usage_error(tool, "too many arguments: expected [HOST] [PORT], got also", argv[i]);
        positional[count++] = argv[i];
    }
    endpoint->host = positional[0] != NULL ? positional[0] : DEFAULT_HOST;
    endpoint->port = positional[1] != NULL ? positional[1] : default_port;
    if (endpoint->host[0] == '\0')
        tool_usage_error(tool, "HOST must not be empty:", endpoint->host);
    if (!is_port_number(endpoint->port))
        tool_usage_error(tool, "PORT must be a whole number from 1 to 65535, not", endpoint->port);
}

/* --- the connection ------------------------------------------------------------------- */

/*
 * Not common/winsock.h's start_winsock, which prints the version it got: a tool prints
 * only what it is for.
 */
int start_winsock_quietly(void)
{
    WSADATA data;
    int error = WSAStartup(MAKEWORD(2, 2), &data);

    if (error != 0) {
        /* WSAStartup returns its error; its page says not to use WSAGetLastError for it. */
        report_error("WSAStartup", (unsigned long)error);
        return -1;
    }
    return 0;
}

/* Tries one resolved address; returns the connected socket, or INVALID_SOCKET with the
 * Winsock error in *error. */
static SOCKET try_connect(const struct addrinfo *address, int *error)
{
    SOCKET socket_handle = socket(address->ai_family, address->ai_socktype, address->ai_protocol);

    if (socket_handle == INVALID_SOCKET) {
        *error = WSAGetLastError();
        return INVALID_SOCKET;
    }
    if (connect(socket_handle, address->ai_addr, (int)address->ai_addrlen) == 0)
        return socket_handle;
    *error = WSAGetLastError();
    /* The connect error is the one worth reporting; this close cannot lose data. */
    if (closesocket(socket_handle) == SOCKET_ERROR)
        report_wsa_error("closesocket");
    return INVALID_SOCKET;
}

SOCKET connect_to_server(const struct endpoint *endpoint)
{
    struct addrinfo hints;
    struct addrinfo *addresses;
    const struct addrinfo *address;
    SOCKET socket_handle = INVALID_SOCKET;
    int error;

    if (start_winsock_quietly() != 0)
        return INVALID_SOCKET;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC; /* a name like localhost may give IPv6 and IPv4 */
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    error = getaddrinfo(endpoint->host, endpoint->port, &hints, &addresses);
    if (error != 0) {
        report_error("getaddrinfo", (unsigned long)error);
        return INVALID_SOCKET;
    }
    error = WSAHOST_NOT_FOUND; /* reported only if the list is empty */
    for (address = addresses; address != NULL && socket_handle == INVALID_SOCKET;
         address = address->ai_next)
        socket_handle = try_connect(address, &error);
    freeaddrinfo(addresses);
    if (socket_handle == INVALID_SOCKET)
        report_error("connect", (unsigned long)error);
    return socket_handle;
}

const char *format_endpoint(const struct endpoint *endpoint, char *text, size_t size)
{
    snprintf(text, size, strchr(endpoint->host, ':') != NULL ? "[%s]:%s" : "%s:%s", endpoint->host,
             endpoint->port);
    return text;
}

int send_all(SOCKET socket_handle, const void *data, size_t length)
{
    const char *next = data;

    while (length > 0) {
        /* send() may take only part of a large buffer; the rest goes in the next call. */
        int sent = send(socket_handle, next, length > INT_MAX ? INT_MAX : (int)length, 0);

        if (sent == SOCKET_ERROR) {
            report_wsa_error("send");
            return -1;
        }
        next += sent;
        length -= (size_t)sent;
    }
    return 0;
}

/* --- the input thread ----------------------------------------------------------------- */

/* Reads the next piece of standard input into @p buffer; returns its length, or 0 at
 * the end of the input (a failed read is reported and counts as the end). */
static DWORD read_input(HANDLE input, char *buffer, DWORD size)
{
    DWORD got = 0;

    if (input == NULL || input == INVALID_HANDLE_VALUE)
        return 0; /* started without standard input: nothing to send */
    if (!ReadFile(input, buffer, size, &got, NULL)) {
        /* A pipe whose writer closed reports "broken pipe": that is its normal end. */
        if (GetLastError() != ERROR_BROKEN_PIPE)
            report_win_error("ReadFile");
        return 0;
    }
    return got;
}

/* Cuts standard input into lines for take_line; returns its last verdict. */
static enum input_verdict hand_over_lines(struct input_reader *reader)
{
    HANDLE input = GetStdHandle(STD_INPUT_HANDLE);
    char line[INPUT_LINE_SIZE];
    size_t used = 0;
    char chunk[INPUT_LINE_SIZE];
    DWORD got;

    while ((got = read_input(input, chunk, (DWORD)sizeof chunk)) > 0) {
        DWORD i;

        for (i = 0; i < got; i++) {
            enum input_verdict verdict;

            line[used++] = chunk[i];
            if (chunk[i] != '\n' && used < sizeof line)
                continue;
            verdict = reader->take_line(reader, line, used, chunk[i] == '\n');
            if (verdict != INPUT_MORE)
                return verdict;
            used = 0;
        }
    }
    /* A last line without a line end still counts. */
    return used > 0 ? reader->take_line(reader, line, used, 1) : INPUT_DONE;
}

/*
 * The input thread: hands standard input over line by line, then half-closes the
 * connection. It reads with ReadFile, not fgets: fgets would hold the C runtime's stdin
 * lock while it blocks, and exit() could then wait for that lock forever once the server
 * has closed.
 */
static unsigned __stdcall read_standard_input(void *context)
{
    struct input_reader *reader = context;

    if (hand_over_lines(reader) == INPUT_FAILED)
        return 1;
    /* Tell the server we are done sending; its replies can still arrive. */
    if (shutdown(reader->socket_handle, SD_SEND) == SOCKET_ERROR) {
        report_wsa_error("shutdown");
        return 1;
    }
    return 0;
}

int start_input_thread(struct input_reader *reader)
{
    HANDLE thread = (HANDLE)_beginthreadex(NULL, 0, read_standard_input, reader, 0, NULL);

    if (thread == NULL) {
        report_errno("_beginthreadex");
        return -1;
    }
    /* Nobody joins it: it may stay blocked in ReadFile until the process ends. */
    if (!CloseHandle(thread)) {
        report_win_error("CloseHandle");
        return -1;
    }
    return 0;
}
