/*
 * Chapter 04: the I/O completion port.
 *
 * The server creates one I/O completion port and associates every accepted socket with
 * it. Two kinds of context will travel through the port once I/O starts (chapter 05):
 *
 *   - the per-socket context, `struct client`: one per connection. Its address is the
 *     completion key given when the socket is associated, and the port hands that key
 *     back with every completion on that socket.
 *   - the per-I/O context (from chapter 05): one per operation in flight, with an
 *     OVERLAPPED as its first member. The port hands back the OVERLAPPED's address, and
 *     CONTAINING_RECORD turns it back into the context around it.
 *
 * Nothing is read or written yet: this chapter shows the associations being made.
 */
#include <winsock2.h>
#include <windows.h>

#include <stdio.h>
#include <stdlib.h>

#include "accepter.h"
#include "errors.h"
#include "listener.h"
#include "options.h"
#include "quit.h"
#include "winsock.h"

/* Exit code for a bad command line, the same as parse_options uses. */
#define EXIT_USAGE 2

/* One connected client. */
struct client {
    SOCKET socket;
    unsigned long id; /* 1 for the first connection, 2 for the next... */
};

/*
 * The server's state. Only the accepter thread touches the pool while it runs (in
 * admit_client); main touches it only after accepter_stop has waited for that thread to
 * end, which orders the two, so they need no lock.
 */
struct server {
    struct client *clients; /* the pool: max_clients slots */
    unsigned max_clients;
    unsigned used;             /* slots taken so far */
    unsigned long connections; /* clients admitted so far, for client ids */
    struct accepter accepter;  /* the accepter thread, which owns the listener */
    HANDLE port;               /* the I/O completion port every client is associated with */
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
    client = &server->clients[server->used];
    /*
     * The client's address becomes the completion key: every completion for this socket
     * will carry it. Failure is NULL, not INVALID_HANDLE_VALUE.
     */
    if (CreateIoCompletionPort((HANDLE)socket_handle, server->port, (ULONG_PTR)client, 0) == NULL) {
        report_win_error("CreateIoCompletionPort");
        close_socket(socket_handle);
        return;
    }
    server->used++;
    client->socket = socket_handle;
    client->id = ++server->connections;
    printf("client %lu connected from %s (slot %u of %u)\n", client->id, peer, server->used,
           server->max_clients);
    printf("client %lu associated with port %p, completion key %p\n", client->id,
           (void *)server->port, (void *)client);
}

/* Creates the completion port; returns it, or NULL after reporting the error. */
static HANDLE create_completion_port(void)
{
    /*
     * No file yet (INVALID_HANDLE_VALUE, no existing port, key 0): this only creates the
     * port. Concurrency 0 lets as many threads run at once as there are processors.
     */
    HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);

    if (port == NULL)
        report_win_error("CreateIoCompletionPort");
    else
        printf("completion port %p created\n", (void *)port);
    return port;
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
    server.port = create_completion_port();
    if (server.port == NULL) {
        stop_winsock();
        return EXIT_FAILURE;
    }
    listener = open_listener(&address, address_length);
    if (listener == INVALID_SOCKET) {
        stop_winsock();
        return EXIT_FAILURE;
    }
    if (accepter_start(&server.accepter, listener, admit_client, &server) != 0) {
        close_socket(listener);
        stop_winsock();
        return EXIT_FAILURE;
    }

    printf("stopping: %s\n", quit_wait());
    accepted_to_the_end = accepter_stop(&server.accepter) == 0;
    close_clients(&server);
    /* After the sockets, as the I/O Completion Ports overview advises: each holds a reference. */
    if (!CloseHandle(server.port))
        report_win_error("CloseHandle");
    free(server.clients);
    return stop_winsock() == 0 && accepted_to_the_end ? EXIT_SUCCESS : EXIT_FAILURE;
}
