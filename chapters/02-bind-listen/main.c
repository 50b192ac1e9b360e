/*
 * Chapter 02: a listening socket.
 *
 * The server opens an overlapped TCP socket, claims its address exclusively, binds it
 * (loopback unless --bind says otherwise), listens, and prints the address it really got.
 * Connections now queue up in the listen backlog; nothing accepts them yet.
 */
#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "options.h"
#include "quit.h"
#include "winsock.h"

/* Exit code for a bad command line, the same as parse_options uses. */
#define EXIT_USAGE 2
/* Room for "[" + the longest IPv6 text + "]:65535". */
#define ADDRESS_TEXT_SIZE (INET6_ADDRSTRLEN + 9)

/* Closes a socket, reporting a failure; for sockets we are done with. */
static void close_socket(SOCKET socket_handle)
{
    if (closesocket(socket_handle) == SOCKET_ERROR)
        report_wsa_error("closesocket");
}

/* Writes "address:port" (IPv6 as "[address]:port") for an IPv4 or IPv6 socket address. */
static const char *format_address(const struct sockaddr *address, char *text, size_t size)
{
    char host[INET6_ADDRSTRLEN];
    const void *raw;
    unsigned short port;

    if (address->sa_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)address;
        raw = &v6->sin6_addr;
        port = ntohs(v6->sin6_port);
    } else {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)address;
        raw = &v4->sin_addr;
        port = ntohs(v4->sin_port);
    }
    if (inet_ntop(address->sa_family, raw, host, sizeof host) == NULL) {
        report_wsa_error("inet_ntop");
        snprintf(text, size, "(unknown address)");
        return text;
    }
    snprintf(text, size, address->sa_family == AF_INET6 ? "[%s]:%u" : "%s:%u", host, port);
    return text;
}

/*
 * Fills in the address to listen on: IPv4 loopback unless --bind names an IPv4 or IPv6
 * address. Returns its length, or 0 after saying why the --bind text is not an address.
 */
static int make_listen_address(const struct options *options, struct sockaddr_storage *address)
{
    struct sockaddr_in *v4 = (struct sockaddr_in *)address;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)address;

    memset(address, 0, sizeof *address);
    if (options->bind_address == NULL) {
        /* Loopback by default: only this machine can reach a server still being built. */
        v4->sin_family = AF_INET;
        v4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        v4->sin_port = htons(options->port);
        return (int)sizeof *v4;
    }
    if (inet_pton(AF_INET, options->bind_address, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(options->port);
        return (int)sizeof *v4;
    }
    if (inet_pton(AF_INET6, options->bind_address, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(options->port);
        return (int)sizeof *v6;
    }
    fprintf(stderr, "--bind: '%s' is not an IPv4 or IPv6 address\n", options->bind_address);
    return 0;
}

/* Sets an integer socket option; returns 0, or -1 after reporting the error. */
static int set_int_option(SOCKET socket_handle, int level, int name, const char *what, int value)
{
    if (setsockopt(socket_handle, level, name, (const char *)&value, (int)sizeof value) ==
        SOCKET_ERROR) {
        report_wsa_error(what);
        return -1;
    }
    return 0;
}

/*
 * Opens, binds and starts a listening socket for the options' address and prints the
 * address it got. Returns the socket, or INVALID_SOCKET after reporting the error.
 */
static SOCKET open_listener(const struct sockaddr_storage *address, int length)
{
    struct sockaddr_storage bound;
    int bound_length = (int)sizeof bound;
    char text[ADDRESS_TEXT_SIZE];
    SOCKET listener;

    /* WSA_FLAG_OVERLAPPED now, because later chapters do overlapped I/O on its sockets. */
    listener =
        WSASocketW(address->ss_family, SOCK_STREAM, IPPROTO_TCP, NULL, 0, WSA_FLAG_OVERLAPPED);
    if (listener == INVALID_SOCKET) {
        report_wsa_error("WSASocketW");
        return INVALID_SOCKET;
    }
    /* No other socket may bind this address while we hold it, not even with SO_REUSEADDR. */
    if (set_int_option(listener, SOL_SOCKET, SO_EXCLUSIVEADDRUSE, "setsockopt(SO_EXCLUSIVEADDRUSE)",
                       1) != 0 ||
        /* An IPv6 socket bound to :: also takes IPv4 clients (as ::ffff:a.b.c.d). */
        (address->ss_family == AF_INET6 &&
         set_int_option(listener, IPPROTO_IPV6, IPV6_V6ONLY, "setsockopt(IPV6_V6ONLY)", 0) != 0))
        goto fail;
    if (bind(listener, (const struct sockaddr *)address, length) == SOCKET_ERROR) {
        report_wsa_error("bind");
        goto fail;
    }
    if (listen(listener, SOMAXCONN) == SOCKET_ERROR) {
        report_wsa_error("listen");
        goto fail;
    }
    /* With port 0 the system picked a port: ask the socket which one. */
    if (getsockname(listener, (struct sockaddr *)&bound, &bound_length) == SOCKET_ERROR) {
        report_wsa_error("getsockname");
        goto fail;
    }
    printf("listening on %s\n", format_address((const struct sockaddr *)&bound, text, sizeof text));
    return listener;

fail:
    close_socket(listener);
    return INVALID_SOCKET;
}

int main(int argc, char **argv)
{
    struct options options;
    struct sockaddr_storage address;
    int address_length;
    SOCKET listener;

    /* A pipe makes stdout fully buffered on Windows; a reader must see each line at once. */
    setvbuf(stdout, NULL, _IONBF, 0);
    parse_options(argc, argv, OPTION_PORT | OPTION_BIND, &options);
    address_length = make_listen_address(&options, &address);
    if (address_length == 0)
        return EXIT_USAGE;

    /* Before anything prints: a Ctrl+C from then on must reach our handler. */
    if (quit_watch_start() != 0 || start_winsock() != 0)
        return EXIT_FAILURE;
    listener = open_listener(&address, address_length);
    if (listener == INVALID_SOCKET) {
        stop_winsock();
        return EXIT_FAILURE;
    }

    printf("stopping: %s\n", quit_wait());
    close_socket(listener);
    return stop_winsock() == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
