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
#include <windows.h>
#include <process.h>

#include <stdio.h>
#include <stdlib.h>

#include "errors.h"
#include "listener.h"
#include "options.h"
#include "quit.h"
#include "winsock.h"

/* Exit code for a bad command line, the same as parse_options uses. */
#define EXIT_USAGE 2
/*
 * How often the accepter looks at the backlog even when its event stays quiet. Windows
 * signals every new connection; Wine 8 has been seen to miss one now and then, and the
 * server must not stop accepting for it. A look that finds nothing costs one accept().
 */
#define BACKLOG_RECHECK_MS 250
/*
 * Accepts taken in one pass before the accepter looks at its stop event again, so that a
 * backlog that never empties (a connect flood) cannot keep it from stopping.
 */
#define ACCEPTS_PER_PASS 64
/* How long to wait before trying again when the system is out of sockets or buffers. */
#define SHORTAGE_PAUSE_MS 100

/*
 * What the accepter calls with each connection (a blocking socket with no event selected)
 * and its peer's "address:port"; it owns the socket from then on. The accepter knows
 * nothing of the pool: admit_client below decides who gets a slot.
 */
typedef void (*admit_function)(void *context, SOCKET socket_handle, const char *peer);

/* The accepter thread and what it needs. */
struct accepter {
    SOCKET listener;
    admit_function admit;
    void *context;
    HANDLE stop;                 /* manual-reset event: set by accepter_stop */
    WSAEVENT connection_waiting; /* signalled by Winsock while the backlog is not empty */
    HANDLE thread;
};

/* One connected client. */
struct client {
    SOCKET socket;
    unsigned long id; /* 1 for the first connection, 2 for the next... */
};

/*
 * The server's state. Only the accepter thread touches the pool while it runs (in
 * admit_client); main touches it only after accepter_stop has waited for that thread to
 * end, which orders the two, so they need no lock. The threads talk through the stop
 * event alone.
 */
struct server {
    struct client *clients; /* the pool: max_clients slots */
    unsigned max_clients;
    unsigned used;             /* slots taken so far */
    unsigned long connections; /* clients admitted so far, for client ids */
};

/* Takes a new client into a free slot, or refuses it by closing it when none is free. */
static void admit_client(void *context, SOCKET socket_handle, const char *peer)
{
    struct server *server = context;
    struct client *client;

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

/* What one pass over the backlog found, which decides how long the next wait may be. */
enum pass_result { BACKLOG_EMPTY, BACKLOG_MAY_HOLD_MORE, SHORT_OF_RESOURCES, LISTENER_BROKEN };

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

/* Accepts up to ACCEPTS_PER_PASS waiting connections and says what it found. */
static enum pass_result accept_waiting_clients(struct accepter *accepter)
{
    int accepted;

    for (accepted = 0; accepted < ACCEPTS_PER_PASS; accepted++) {
        struct sockaddr_storage peer;
        int peer_length = (int)sizeof peer;
        char text[ADDRESS_TEXT_SIZE];
        SOCKET socket_handle;
        int error;

        socket_handle = accept(accepter->listener, (struct sockaddr *)&peer, &peer_length);
        if (socket_handle != INVALID_SOCKET) {
            if (make_plain_socket(socket_handle) != 0)
                close_socket(socket_handle);
            else
                accepter->admit(accepter->context, socket_handle,
                                format_address((const struct sockaddr *)&peer, text, sizeof text));
            continue;
        }
        error = WSAGetLastError();
        if (error == WSAEWOULDBLOCK)
            return BACKLOG_EMPTY; /* WSAEventSelect made the listener non-blocking */
        report_error("accept", (unsigned long)error);
        if (is_fatal_accept_error(error))
            return LISTENER_BROKEN;
        if (error == WSAEMFILE || error == WSAENOBUFS)
            return SHORT_OF_RESOURCES;
    }
    return BACKLOG_MAY_HOLD_MORE;
}

/*
 * The accepter thread: accepts until the stop event is set. After an error it ends
 * early with exit code 1; the clients already connected are still served.
 */
static unsigned __stdcall accept_clients(void *context)
{
    struct accepter *accepter = context;
    /* The stop event comes first: when both are set, stopping wins. */
    HANDLE events[2];
    DWORD timeout = 0; /* look at the backlog at once: clients may be waiting already */
    DWORD watched = 2; /* after a shortage, only the stop event (see below) */

    events[0] = accepter->stop;
    events[1] = accepter->connection_waiting;
    for (;;) {
        WSANETWORKEVENTS happened;
        DWORD woken = WaitForMultipleObjects(watched, events, FALSE, timeout);
        enum pass_result found;

        if (woken == WAIT_OBJECT_0)
            return 0;
        if (woken == WAIT_OBJECT_0 + 1) {
            /* Also resets the event, so the next wait sleeps until another client arrives. */
            if (WSAEnumNetworkEvents(accepter->listener, accepter->connection_waiting, &happened) ==
                SOCKET_ERROR) {
                report_wsa_error("WSAEnumNetworkEvents");
                break;
            }
        } else if (woken != WAIT_TIMEOUT) {
            report_win_error("WaitForMultipleObjects");
            break;
        }
        found = accept_waiting_clients(accepter);
        if (found == LISTENER_BROKEN)
            break;
        /*
         * Every accept() re-enables FD_ACCEPT, so while clients wait the event is set again
         * at once: a pause for a shortage must not wait on it, or it would not pause.
         */
        watched = found == SHORT_OF_RESOURCES ? 1 : 2;
        timeout = found == BACKLOG_MAY_HOLD_MORE ? 0
                  : found == SHORT_OF_RESOURCES  ? SHORTAGE_PAUSE_MS
                                                 : BACKLOG_RECHECK_MS;
    }
    fprintf(stderr, "accepting stopped after an error: no new clients until a restart\n");
    /*
     * Still wait for the word to stop. From chapter 05 on, this thread posts each client's
     * first receive, and ExitThread's page cancels "pending I/O initiated by the thread
     * that is not associated with a completion port": those sockets are associated, but
     * ending only at quit keeps the server correct either way.
     */
    if (WaitForSingleObject(accepter->stop, INFINITE) != WAIT_OBJECT_0)
        report_win_error("WaitForSingleObject");
    return 1;
}

/* Closes the two events, reporting a failure. */
static void close_events(struct accepter *accepter)
{
    if (!WSACloseEvent(accepter->connection_waiting))
        report_wsa_error("WSACloseEvent");
    if (!CloseHandle(accepter->stop))
        report_win_error("CloseHandle");
}

/*
 * Starts a thread that accepts on the listener and calls admit for every connection;
 * returns 0, or -1 after reporting the failure (the listener stays the caller's).
 */
static int accepter_start(struct accepter *accepter, SOCKET listener, admit_function admit,
                          void *context)
{
    accepter->listener = listener;
    accepter->admit = admit;
    accepter->context = context;
    accepter->stop = CreateEventA(NULL, TRUE, FALSE, NULL);
    if (accepter->stop == NULL) {
        report_win_error("CreateEvent");
        return -1;
    }
    accepter->connection_waiting = WSACreateEvent();
    if (accepter->connection_waiting == WSA_INVALID_EVENT) {
        report_wsa_error("WSACreateEvent");
        if (!CloseHandle(accepter->stop))
            report_win_error("CloseHandle");
        return -1;
    }
    /* Ask Winsock to signal the event whenever a connection is ready to be accepted. */
    if (WSAEventSelect(listener, accepter->connection_waiting, FD_ACCEPT) == SOCKET_ERROR) {
        report_wsa_error("WSAEventSelect");
        close_events(accepter);
        return -1;
    }
    accepter->thread = (HANDLE)_beginthreadex(NULL, 0, accept_clients, accepter, 0, NULL);
    if (accepter->thread == NULL) {
        report_errno("_beginthreadex");
        close_events(accepter);
        return -1;
    }
    return 0;
}

/*
 * Stops the accepter thread, waits for it and closes the listener; returns 0, or -1 if
 * accepting had ended early after an error (or the thread could not be waited for).
 */
static int accepter_stop(struct accepter *accepter)
{
    DWORD exit_code = 1;

    if (!SetEvent(accepter->stop))
        report_win_error("SetEvent");
    if (WaitForSingleObject(accepter->thread, INFINITE) != WAIT_OBJECT_0)
        report_win_error("WaitForSingleObject");
    else if (!GetExitCodeThread(accepter->thread, &exit_code))
        report_win_error("GetExitCodeThread");
    if (!CloseHandle(accepter->thread))
        report_win_error("CloseHandle");
    /* Only now: closesocket must never race another call on the same socket. */
    close_socket(accepter->listener);
    close_events(accepter);
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
    struct accepter accepter;
    SOCKET listener;
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
    listener = open_listener(&address, address_length);
    if (listener == INVALID_SOCKET) {
        stop_winsock();
        return EXIT_FAILURE;
    }
    if (accepter_start(&accepter, listener, admit_client, &server) != 0) {
        close_socket(listener);
        stop_winsock();
        return EXIT_FAILURE;
    }

    printf("stopping: %s\n", quit_wait());
    accepted_to_the_end = accepter_stop(&accepter) == 0;
    close_clients(&server);
    free(server.clients);
    return stop_winsock() == 0 && accepted_to_the_end ? EXIT_SUCCESS : EXIT_FAILURE;
}
