/*
 * client.exe: a TCP client you can type into, for trying a chapter's server by hand.
 *
 *   client.exe [HOST] [PORT]        (defaults 127.0.0.1 9000; HOST may be ::1)
 *
 * It connects, then sends every line typed on standard input, line end included, and
 * writes whatever the server sends to standard output byte for byte. At the end of the
 * input (Ctrl+Z then Enter in a console, or the end of a piped file) it half-closes the
 * connection and goes on printing until the server closes its side.
 *
 * Two threads, because both directions can block at any time: a thread of its own reads
 * standard input and sends, and the main thread receives and prints.
 */
#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>
#include <process.h>
#include <io.h>
#include <fcntl.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "options.h"

/* Exit code for a bad command line, the same as the chapters use. */
#define EXIT_USAGE   2
#define DEFAULT_HOST "127.0.0.1"
/* Longest line sent in one piece; a longer one goes out in pieces of this size. */
#define LINE_SIZE    4096
#define RECEIVE_SIZE 4096
/* Room for "[" + a host name of up to 255 characters + "]:65535". */
#define ENDPOINT_TEXT_SIZE 300

/* Prints how to run the program to @p out. */
static void print_usage(FILE *out)
{
    fprintf(out,
            "usage: client.exe [HOST] [PORT]\n"
            "  HOST    server name or address; IPv6 literals such as ::1 work "
            "(default %s)\n"
            "  PORT    server port, 1-65535 (default %d)\n"
            "  --help  show this help and exit\n"
            "Each line you type is sent with its line end; everything the server sends is "
            "printed.\nEnd the input (Ctrl+Z then Enter in a Windows console, Ctrl+D through "
            "`make client` under Wine) to finish.\n",
            DEFAULT_HOST, DEFAULT_PORT);
}

/* Prints a command-line problem and the usage to stderr, then exits with EXIT_USAGE. */
static void usage_error(const char *problem, const char *argument)
{
    fprintf(stderr, "client: %s '%.60s'\n", problem, argument);
    print_usage(stderr);
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

/* Reads HOST and PORT from the command line into @p host and @p port, or exits. */
static void parse_arguments(int argc, char **argv, const char **host, const char **port)
{
    static char default_port[8];
    const char *positional[2] = {NULL, NULL};
    int count = 0;
    int i;

    snprintf(default_port, sizeof default_port, "%d", DEFAULT_PORT);
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            print_usage(stdout);
            exit(EXIT_SUCCESS);
        }
        /* No host or port starts with '-', so this can only be a mistyped option. */
        if (argv[i][0] == '-')
            usage_error("unknown option", argv[i]);
        if (count == 2)
            usage_error("too many arguments: expected [HOST] [PORT], got also", argv[i]);
        positional[count++] = argv[i];
    }
    *host = positional[0] != NULL ? positional[0] : DEFAULT_HOST;
    *port = positional[1] != NULL ? positional[1] : default_port;
    if ((*host)[0] == '\0')
        usage_error("HOST must not be empty:", *host);
    if (!is_port_number(*port))
        usage_error("PORT must be a whole number from 1 to 65535, not", *port);
}

/* Starts Winsock 2.2; returns 0, or -1 after reporting the error. */
static int start_winsock(void)
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

/* Connects to the first address of @p host that accepts; returns the socket, or
 * INVALID_SOCKET after reporting why the last address failed. */
static SOCKET connect_to_server(const char *host, const char *port)
{
    struct addrinfo hints;
    struct addrinfo *addresses;
    const struct addrinfo *address;
    SOCKET socket_handle = INVALID_SOCKET;
    int error;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC; /* a name like localhost may give IPv6 and IPv4 */
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    error = getaddrinfo(host, port, &hints, &addresses);
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

/* Sends all @p length bytes; returns 0, or -1 after reporting the error. */
static int send_all(SOCKET socket_handle, const char *data, size_t length)
{
    while (length > 0) {
        /* send() may take only part of a large buffer; the rest goes in the next call. */
        int sent = send(socket_handle, data, (int)length, 0);

        if (sent == SOCKET_ERROR) {
            report_wsa_error("send");
            return -1;
        }
        data += sent;
        length -= (size_t)sent;
    }
    return 0;
}

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

/*
 * The input thread: sends standard input line by line, then half-closes the connection.
 * It reads with ReadFile, not fgets: fgets would hold the C runtime's stdin lock while it
 * blocks, and exit() could then wait for that lock forever once the server has closed.
 */
static unsigned __stdcall send_standard_input(void *context)
{
    SOCKET socket_handle = *(const SOCKET *)context;
    HANDLE input = GetStdHandle(STD_INPUT_HANDLE);
    char line[LINE_SIZE];
    size_t used = 0;
    char chunk[LINE_SIZE];
    DWORD got;

    while ((got = read_input(input, chunk, (DWORD)sizeof chunk)) > 0) {
        DWORD i;

        for (i = 0; i < got; i++) {
            line[used++] = chunk[i];
            if (chunk[i] != '\n' && used < sizeof line)
                continue;
            if (send_all(socket_handle, line, used) != 0)
                return 1;
            used = 0;
        }
    }
    /* A last line without a line end still goes out. */
    if (used > 0 && send_all(socket_handle, line, used) != 0)
        return 1;
    /* Tell the server we are done sending; its replies can still arrive. */
    if (shutdown(socket_handle, SD_SEND) == SOCKET_ERROR) {
        report_wsa_error("shutdown");
        return 1;
    }
    return 0;
}

/* Starts the input thread on @p socket_handle; returns 0, or -1 after reporting. */
static int start_input_thread(SOCKET *socket_handle)
{
    HANDLE thread = (HANDLE)_beginthreadex(NULL, 0, send_standard_input, socket_handle, 0, NULL);

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

/* Prints everything the server sends until it closes; returns 0 then, or -1 after
 * reporting a receive error. */
static int print_until_closed(SOCKET socket_handle)
{
    char buffer[RECEIVE_SIZE];
    int at_line_start = 1;

    for (;;) {
        int got = recv(socket_handle, buffer, (int)sizeof buffer, 0);

        if (got == 0)
            break;
        if (got == SOCKET_ERROR) {
            report_wsa_error("recv");
            return -1;
        }
        if (fwrite(buffer, 1, (size_t)got, stdout) != (size_t)got) {
            report_errno("fwrite");
            return -1;
        }
        at_line_start = buffer[got - 1] == '\n';
    }
    /* Start the message on a line of its own even if the data did not end with one. */
    printf("%sserver closed the connection\n", at_line_start ? "" : "\n");
    return 0;
}

/* Writes "host:port", with IPv6 literals in brackets as in "[::1]:9000". */
static const char *format_endpoint(const char *host, const char *port, char *text, size_t size)
{
    snprintf(text, size, strchr(host, ':') != NULL ? "[%s]:%s" : "%s:%s", host, port);
    return text;
}

/* Connects, then prints what the server sends until it closes: exit 0, or 1 on an error. */
int main(int argc, char **argv)
{
    const char *host;
    const char *port;
    char endpoint[ENDPOINT_TEXT_SIZE];
    static SOCKET socket_handle; /* static: the input thread may read it after main returns */

    parse_arguments(argc, argv, &host, &port);
    /* Unbuffered so each reply shows at once; binary so bytes pass unchanged (no CRLF). */
    setvbuf(stdout, NULL, _IONBF, 0);
    if (_setmode(_fileno(stdout), _O_BINARY) == -1) {
        report_errno("_setmode");
        return EXIT_FAILURE;
    }
    if (start_winsock() != 0)
        return EXIT_FAILURE;
    socket_handle = connect_to_server(host, port);
    if (socket_handle == INVALID_SOCKET)
        return EXIT_FAILURE;
    printf("connected to %s\n", format_endpoint(host, port, endpoint, sizeof endpoint));
    if (start_input_thread(&socket_handle) != 0)
        return EXIT_FAILURE;

    /*
     * No closesocket or WSACleanup at the end: the input thread may be using the socket
     * at this moment. Ending the process stops that thread and closes the socket.
     */
    return print_until_closed(socket_handle) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
