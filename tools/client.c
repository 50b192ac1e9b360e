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
 * standard input and sends (common/connect.h), and the main thread receives and prints.
 */
#include <winsock2.h>
#include <io.h>
#include <fcntl.h>

#include <stdio.h>
#include <stdlib.h>

#include "connect.h"
#include "errors.h"
#include "options.h"

#define RECEIVE_SIZE 4096

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

/* Sends each line as it was typed, line end included; a longer one goes in pieces. */
static enum input_verdict send_line(struct input_reader *reader, const char *line, size_t length,
                                    int whole)
{
    (void)whole; /* the bytes go out the same either way */
    return send_all(reader->socket_handle, line, length) == 0 ? INPUT_MORE : INPUT_FAILED;
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

/* Connects, then prints what the server sends until it closes: exit 0, or 1 on an error. */
int main(int argc, char **argv)
{
    static const struct tool tool = {"client", print_usage, NULL};
    struct endpoint endpoint;
    char endpoint_text[ENDPOINT_TEXT_SIZE];
    /* static: the input thread may use it after main returns */
    static struct input_reader reader = {INVALID_SOCKET, send_line, NULL};

    parse_tool_arguments(&tool, argc, argv, &endpoint);
    /* Unbuffered so each reply shows at once; binary so bytes pass unchanged (no CRLF). */
    setvbuf(stdout, NULL, _IONBF, 0);
    if (_setmode(_fileno(stdout), _O_BINARY) == -1) {
        report_errno("_setmode");
        return EXIT_FAILURE;
    }
    reader.socket_handle = connect_to_server(&endpoint);
    if (reader.socket_handle == INVALID_SOCKET)
        return EXIT_FAILURE;
    printf("connected to %s\n", format_endpoint(&endpoint, endpoint_text, sizeof endpoint_text));
    if (start_input_thread(&reader) != 0)
        return EXIT_FAILURE;

    /*
     * No closesocket or WSACleanup at the end: the input thread may be using the socket
     * at this moment. Ending the process stops that thread and closes the socket.
     */
    return print_until_closed(reader.socket_handle) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
