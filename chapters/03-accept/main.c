/*
 * Chapter 03: accepting clients.
 *
 * An accepter thread takes connections off the listen backlog with accept() and gives
 * each a slot in a fixed pool. When every slot is taken, the new client is refused
 * (closed) and the accepter goes on accepting. The accepter sleeps in
 * WaitForMultipleObjects on two events: "a connection is waiting" (from WSAEventSelect)
 * and "stop". On quit, main sets the stop event, waits for the accepter to end, and only
 * then closes the listening socket: closesocket must never race another call on the
 * same socket.
 */
#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>
#include <process.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "options.h"
#include "quit.h"

#define WANTED_MAJOR 2
#define WANTED_MINOR 2
/* Exit code for a bad command line, the same as parse_options uses. */
#define EXIT_USAGE 2
/*
 * How often the accepter looks at the backlog even when its event stays quiet. Windows
 * signals every new connection; Wine 8 has been seen to miss one now and then, and the
 * server must not stop accepting for it. A look that finds nothing costs one accept().
 */
#define BACKLOG_RECHECK_MS 250
/* Room for "[" + the longest IPv6 text + "]:65535". */
#define ADDRESS_TEXT_SIZE (INET6_ADDRSTRLEN + 9)

/* Stops Winsock, once for each successful WSAStartup; returns 0, or -1 after reporting. */
static int stop_winsock(void)
{
    if (WSACleanup() != 0) {
        report_wsa_error("WSACleanup");
        return -1;
    }
    return 0;
}

/* One connected client. */
struct client {
    SOCKET socket;
    unsigned long id; /* 1 for the first connection, 2 for the next... */
};

/*
 * The server's state. Only the accepter thread touches the listener and the pool while it
 * runs; main touches them only after waiting for that thread to end, which orders the
 * two, so they need no lock. The threads talk through the stop event alone.
 */
struct server {
    SOCKET listener;
    struct client *clients; /* the pool: max_clients slots */
    unsigned max_clients;
    unsigned used;               /* slots taken so far */
    unsigned long connections;   /* clients admitted so far, for client ids */
    HANDLE stop_accepting;       /* manual-reset event: set by main on quit */
    WSAEVENT connection_waiting; /* signalled by Winsock while the backlog is not empty */
};

/* Starts Winsock 2.2; returns 0, or -1 after reporting the error. */
static int start_winsock(void)
{
    WSADATA data;
    int error;

    /* MAKEWORD(low, high): the low byte is the major version, the high byte the minor. */
    error = WSAStartup(MAKEWORD(WANTED_MAJOR, WANTED_MINOR), &data);
    if (error != 0) {
        /* WSAStartup returns its error; its page says not to use WSAGetLastError for it. */
        report_error("WSAStartup", (unsigned long)error);
        return -1;
    }
    printf("WSAStartup: asked for %d.%d, got %d.%d\n", WANTED_MAJOR, WANTED_MINOR,
           LOBYTE(data.wVersion), HIBYTE(data.wVersion));
    if (LOBYTE(data.wVersion) != WANTED_MAJOR || HIBYTE(data.wVersion) != WANTED_MINOR) {
        fprintf(stderr, "WSAStartup gave version %d.%d, not %d.%d\n", LOBYTE(data.wVersion),
                HIBYTE(data.wVersion), WANTED_MAJOR, WANTED_MINOR);
        /* The call itself succeeded, so it still needs its WSACleanup. */
        stop_winsock();
        return -1;
    }
    return 0;
}

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

/*
 * Whether an accept() error means the listener itself is unusable. Any other error
 * concerns one connection (a client that reset before it was accepted) or a passing
 * shortage of sockets or buffers, so accepting goes on.
 */
static int is_fatal_accept_error(int error)
{
    return error == WSAENOTSOCK || error == WSAEINVAL || error == WSAEOPNOTSUPP ||
           error == WSAEFAULT || error == WSANOTINITIALISED || error == WSAENETDOWN;
}

/*
 * Undoes what an accepted socket inherits from the listener's WSAEventSelect: the event
 * association and non-blocking mode. Returns 0, or -1 after reporting the error.
 */
static int make_plain_socket(SOCKET socket_handle)
{
    u_long non_blocking = 0;

    if (WSAEventSelect(socket_handle, NULL, 0) == SOCKET_ERROR) {
        report_wsa_error("WSAEventSelect");
        return -1;
    }
    if (ioctlsocket(socket_handle, FIONBIO, &non_blocking) == SOCKET_ERROR) {
        report_wsa_error("ioctlsocket(FIONBIO)");
        return -1;
    }
    return 0;
}

/* Takes a new client into a free slot, or refuses it by closing it when none is free. */
static void admit_client(struct server *server, SOCKET socket_handle, const char *peer)
{
    struct client *client;

    if (make_plain_socket(socket_handle) != 0) {
        close_socket(socket_handle);
        return;
    }
    if (server->used == server->max_clients) {
        printf("refused %s: all %u slots are taken\n", peer, server->max_clients);
        close_socket(socket_handle);
        return;
    }
    client = &server->clients[server->used++];
    client->socket = socket_handle;
    client->id = ++server->connections;
    printf("client %lu connected from %s (slot %u of %u)\n", client->id, peer, server->used,
           server->max_clients);
}

/*
 * Accepts every connection waiting in the backlog. Returns 0 when the backlog is empty,
 * or -1 after reporting an error that leaves the listener unusable.
 */
static int accept_waiting_clients(struct server *server)
{
    for (;;) {
        struct sockaddr_storage peer;
        int peer_length = (int)sizeof peer;
        char text[ADDRESS_TEXT_SIZE];
        SOCKET socket_handle;
        int error;

        socket_handle = accept(server->listener, (struct sockaddr *)&peer, &peer_length);
        if (socket_handle != INVALID_SOCKET) {
            admit_client(server, socket_handle,
                         format_address((const struct sockaddr *)&peer, text, sizeof text));
            continue;
        }
        error = WSAGetLastError();
        if (error == WSAEWOULDBLOCK)
            return 0; /* backlog empty: WSAEventSelect made the listener non-blocking */
        report_error("accept", (unsigned long)error);
        if (is_fatal_accept_error(error))
            return -1;
        if (error == WSAEMFILE || error == WSAENOBUFS)
            Sleep(100); /* out of resources: give the system a moment rather than spin */
    }
}

/*
 * The accepter thread: accepts until main sets the stop event. After an error it ends
 * early with exit code 1; the clients already connected are still served.
 */
static unsigned __stdcall accept_clients(void *context)
{
    struct server *server = context;
    /* The stop event comes first: when both are set, stopping wins. */
    HANDLE events[2];

    events[0] = server->stop_accepting;
    events[1] = server->connection_waiting;
    for (;;) {
        WSANETWORKEVENTS happened;
        DWORD woken = WaitForMultipleObjects(2, events, FALSE, BACKLOG_RECHECK_MS);

        if (woken == WAIT_OBJECT_0)
            return 0;
        if (woken == WAIT_OBJECT_0 + 1) {
            /* Also resets the event, so the next wait sleeps until another client arrives. */
            if (WSAEnumNetworkEvents(server->listener, server->connection_waiting, &happened) ==
                SOCKET_ERROR) {
                report_wsa_error("WSAEnumNetworkEvents");
                break;
            }
        } else if (woken != WAIT_TIMEOUT) {
            report_win_error("WaitForMultipleObjects");
            break;
        }
        if (accept_waiting_clients(server) != 0)
            break;
    }
    fprintf(stderr, "accepting stopped after an error: no new clients until a restart\n");
    /*
     * Still wait for main's word before ending: I/O that a thread started may be cancelled
     * when the thread exits, and from chapter 05 on this thread starts each first receive.
     */
    if (WaitForSingleObject(server->stop_accepting, INFINITE) != WAIT_OBJECT_0)
        report_win_error("WaitForSingleObject");
    return 1;
}

/* Starts the accepter thread; returns its handle, or NULL after reporting the error. */
static HANDLE start_accepting(struct server *server)
{
    HANDLE accepter;

    server->stop_accepting = CreateEventA(NULL, TRUE, FALSE, NULL);
    if (server->stop_accepting == NULL) {
        report_win_error("CreateEvent");
        return NULL;
    }
    server->connection_waiting = WSACreateEvent();
    if (server->connection_waiting == WSA_INVALID_EVENT) {
        report_wsa_error("WSACreateEvent");
        return NULL;
    }
    /* Ask Winsock to signal the event whenever a connection is ready to be accepted. */
    if (WSAEventSelect(server->listener, server->connection_waiting, FD_ACCEPT) == SOCKET_ERROR) {
        report_wsa_error("WSAEventSelect");
        return NULL;
    }
    accepter = (HANDLE)_beginthreadex(NULL, 0, accept_clients, server, 0, NULL);
    if (accepter == NULL)
        report_errno("_beginthreadex");
    return accepter;
}

/*
 * Stops the accepter and waits for it, then closes the listener and the events. Returns
 * 0, or -1 if the accepter had stopped early after an error (or cannot be waited for).
 */
static int stop_accepting(struct server *server, HANDLE accepter)
{
    DWORD exit_code = 1;

    if (!SetEvent(server->stop_accepting))
        report_win_error("SetEvent");
    if (WaitForSingleObject(accepter, INFINITE) != WAIT_OBJECT_0)
        report_win_error("WaitForSingleObject");
    else if (!GetExitCodeThread(accepter, &exit_code))
        report_win_error("GetExitCodeThread");
    if (!CloseHandle(accepter))
        report_win_error("CloseHandle");
    close_socket(server->listener);
    if (!WSACloseEvent(server->connection_waiting))
        report_wsa_error("WSACloseEvent");
    if (!CloseHandle(server->stop_accepting))
        report_win_error("CloseHandle");
    return exit_code == 0 ? 0 : -1;
}

/* Closes every client still in the pool. */
static void close_clients(struct server *server)
{
    unsigned i;

    for (i = 0; i < server->used; i++)
        close_socket(server->clients[i].socket);
}

int main(int argc, char **argv)
{
    struct options options;
    struct sockaddr_storage address;
    int address_length;
    struct server server = {0};
    HANDLE accepter;
    int accepted_to_the_end;

    /* A pipe makes stdout fully buffered on Windows; a reader must see each line at once. */
    setvbuf(stdout, NULL, _IONBF, 0);
    parse_options(argc, argv, OPTION_PORT | OPTION_BIND | OPTION_MAX_CLIENTS, &options);
    address_length = make_listen_address(&options, &address);
    if (address_length == 0)
        return EXIT_USAGE;

    server.max_clients = options.max_clients;
    server.clients = calloc(server.max_clients, sizeof *server.clients);
    if (server.clients == NULL) {
        report_errno("calloc");
        return EXIT_FAILURE;
    }

    /* Before anything prints: a Ctrl+C from then on must reach our handler. */
    if (quit_watch_start() != 0 || start_winsock() != 0)
        return EXIT_FAILURE;
    server.listener = open_listener(&address, address_length);
    if (server.listener == INVALID_SOCKET) {
        stop_winsock();
        return EXIT_FAILURE;
    }
    accepter = start_accepting(&server);
    if (accepter == NULL) {
        close_socket(server.listener);
        stop_winsock();
        return EXIT_FAILURE;
    }

    printf("stopping: %s\n", quit_wait());
    accepted_to_the_end = stop_accepting(&server, accepter) == 0;
    close_clients(&server);
    free(server.clients);
    return stop_winsock() == 0 && accepted_to_the_end ? EXIT_SUCCESS : EXIT_FAILURE;
}
