/*
 * Chapter 06: echo with an overlapped send.
 *
 * Two kinds of context travel through the completion port:
 *
 *   - the per-socket context, `struct client`: one per connection. Its address is the
 *     completion key given when the socket is associated, and the port hands that key
 *     back with every completion on that socket.
 *   - the per-I/O context, `struct io_context`: one per operation in flight, with an
 *     OVERLAPPED as its first member. The port hands back the OVERLAPPED's address, and
 *     CONTAINING_RECORD turns it back into the context around it.
 *
 * Each client now has two per-I/O contexts, one for receiving and one for sending. When
 * a receive completes, its bytes are copied into the send context and sent back with
 * WSASend; when the send has completed in full, the next receive is posted. So a client
 * has exactly one operation in flight at any time, and only one worker at a time touches
 * it. A send that completes with fewer bytes than asked sends the rest.
 */
#include <winsock2.h>
#include <windows.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accepter.h"
#include "errors.h"
#include "listener.h"
#include "options.h"
#include "port.h"
#include "quit.h"
#include "winsock.h"
#include "workers.h"

/* Exit code for a bad command line, the same as parse_options uses. */
#define EXIT_USAGE 2
/* Bytes one overlapped operation can carry; a longer message takes several. */
#define IO_BUFFER_SIZE 4096

/* What an I/O context is doing, so a worker knows what a completion means. */
enum io_operation { OPERATION_RECEIVE, OPERATION_SEND };

/* One overlapped operation: the per-I/O context. */
struct io_context {
    OVERLAPPED overlapped; /* first, and must stay valid until the completion is dequeued */
    enum io_operation operation;
    WSABUF buffer_descriptor;
    DWORD length; /* bytes in buffer to send */
    DWORD sent;   /* bytes of them sent so far */
    char buffer[IO_BUFFER_SIZE];
};

/* One connected client: the per-socket context, and its completion key. */
struct client {
    SOCKET socket;
    unsigned long id; /* 1 for the first connection, 2 for the next... */
    struct io_context receive;
    struct io_context send; /* never the receive's context: each operation has its own */
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
    HANDLE *workers;           /* worker thread handles */
    unsigned worker_count;
};

/* Ends a client's connection; its slot stays taken (chapter 07 frees and reuses slots). */
static void end_client(struct client *client)
{
    close_socket(client->socket);
    client->socket = INVALID_SOCKET;
}

/*
 * Posts an overlapped receive into the client's buffer. Returns 0 when it is in flight
 * (its completion will reach a worker even if it finished at once), or -1 after
 * reporting the error.
 */
static int post_receive(struct client *client)
{
    struct io_context *io = &client->receive;
    DWORD flags = 0; /* in and out: must be set before the call */

    /* A fresh OVERLAPPED for every call: the system uses it while the I/O is pending. */
    memset(&io->overlapped, 0, sizeof io->overlapped);
    io->operation = OPERATION_RECEIVE;
    io->buffer_descriptor.buf = io->buffer;
    io->buffer_descriptor.len = sizeof io->buffer;
    if (WSARecv(client->socket, &io->buffer_descriptor, 1, NULL, &flags, &io->overlapped, NULL) ==
            SOCKET_ERROR &&
        WSAGetLastError() != WSA_IO_PENDING) {
        report_wsa_error("WSARecv");
        return -1;
    }
    return 0;
}

/*
 * Posts an overlapped send of the send context's bytes not sent yet. Returns 0 when it is
 * in flight, or -1 after reporting the error.
 */
static int post_send(struct client *client)
{
    struct io_context *io = &client->send;

    memset(&io->overlapped, 0, sizeof io->overlapped);
    io->operation = OPERATION_SEND;
    io->buffer_descriptor.buf = io->buffer + io->sent;
    io->buffer_descriptor.len = io->length - io->sent;
    if (WSASend(client->socket, &io->buffer_descriptor, 1, NULL, 0, &io->overlapped, NULL) ==
            SOCKET_ERROR &&
        WSAGetLastError() != WSA_IO_PENDING) {
        report_wsa_error("WSASend");
        return -1;
    }
    return 0;
}

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
    /* Last: once the receive is posted, a worker may be using the client. */
    if (post_receive(client) != 0)
        end_client(client);
}

/* Handles one dequeued receive completion for a client. */
static void on_receive(struct client *client, struct io_context *io, BOOL succeeded, DWORD bytes)
{
    char text[512];

    if (!succeeded) {
        /* A failed I/O still completes through the port, and still needs cleaning up. */
        DWORD error = GetLastError();

        printf("client %lu: receive failed: %lu %s\n", client->id, error,
               error_text(error, text, sizeof text));
        end_client(client);
        return;
    }
    if (bytes == 0) {
        /* A successful receive of zero bytes: the peer closed its side (sent FIN). */
        printf("client %lu closed the connection\n", client->id);
        end_client(client);
        return;
    }
    /* Echo: the send gets its own copy; each context owns its buffer while its I/O runs. */
    memcpy(client->send.buffer, io->buffer, bytes);
    client->send.length = bytes;
    client->send.sent = 0;
    if (post_send(client) != 0)
        end_client(client);
}

/* Handles one dequeued send completion: sends the rest, or goes back to receiving. */
static void on_send(struct client *client, struct io_context *io, BOOL succeeded, DWORD bytes)
{
    char text[512];

    if (!succeeded) {
        DWORD error = GetLastError();

        printf("client %lu: send failed: %lu %s\n", client->id, error,
               error_text(error, text, sizeof text));
        end_client(client);
        return;
    }
    io->sent += bytes;
    /* Fewer bytes than asked: send the rest before receiving again, or bytes would be lost. */
    if (io->sent < io->length) {
        if (post_send(client) != 0)
            end_client(client);
        return;
    }
    if (post_receive(client) != 0)
        end_client(client);
}

/* A worker thread: handles completions until it is asked to stop or the port fails. */
static unsigned __stdcall run_worker(void *context)
{
    struct server *server = context;

    for (;;) {
        DWORD bytes = 0;
        ULONG_PTR key = 0;
        OVERLAPPED *overlapped = NULL;
        BOOL succeeded =
            GetQueuedCompletionStatus(server->port, &bytes, &key, &overlapped, INFINITE);
        struct io_context *io;

        if (overlapped == NULL) {
            /*
             * Every I/O completes with its OVERLAPPED, so this is not one. TRUE: a packet
             * posted with PostQueuedCompletionStatus and no OVERLAPPED, which is how a
             * worker is asked to stop (chapter 08 posts them). Only FALSE is an error.
             */
            if (succeeded)
                return 0;
            /* No packet was dequeued: the wait itself failed (the port is unusable). */
            report_win_error("GetQueuedCompletionStatus");
            return 1;
        }
        /* A packet was dequeued, for an I/O that succeeded or failed. */
        io = CONTAINING_RECORD(overlapped, struct io_context, overlapped);
        if (io->operation == OPERATION_RECEIVE)
            on_receive((struct client *)key, io, succeeded, bytes);
        else
            on_send((struct client *)key, io, succeeded, bytes);
    }
}

/*
 * Ends the process while workers may still be waiting on the port and receives are still
 * in flight, so nothing they use is closed or freed first. A worker may even be inside
 * printf, holding the C runtime's lock. Returning from main (exit) or ExitProcess would
 * run the runtime's clean-up, which can crash or wait forever for that lock;
 * TerminateProcess ends the process without running any. stdout is unbuffered, so no
 * output is lost. Returns only if TerminateProcess failed.
 */
static int end_at_once(int exit_code)
{
    if (!TerminateProcess(GetCurrentProcess(), (UINT)exit_code))
        report_win_error("TerminateProcess");
    return EXIT_FAILURE;
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
    parse_options(argc, argv, OPTION_PORT | OPTION_BIND | OPTION_MAX_CLIENTS | OPTION_WORKERS,
                  &options);
    address_length = make_listen_address(&options, &address);
    if (address_length == 0)
        return EXIT_USAGE;

    server.max_clients = options.max_clients;
    server.worker_count = options.workers ? options.workers : processor_count();
    server.clients = calloc(server.max_clients, sizeof *server.clients);
    if (server.clients == NULL) {
        report_errno("calloc");
        return EXIT_FAILURE;
    }

    /* Before anything prints: a Ctrl+C from then on must reach our handler. */
    if (quit_watch_start() != 0 || start_winsock() != 0)
        return EXIT_FAILURE;
    server.port = create_completion_port(server.worker_count);
    if (server.port == NULL) {
        stop_winsock();
        return EXIT_FAILURE;
    }
    /* Before any worker starts, so that an address in use ends the program with none running. */
    listener = open_listener(&address, address_length);
    if (listener == INVALID_SOCKET) {
        stop_winsock();
        return EXIT_FAILURE;
    }
    /* From here on workers may be running: a failure ends the program the way quit does. */
    if (start_workers(&server.workers, &server.worker_count, run_worker, &server) != 0)
        return end_at_once(EXIT_FAILURE);
    printf("%u worker threads waiting on the port; each receive takes up to %d bytes\n",
           server.worker_count, IO_BUFFER_SIZE);
    if (accepter_start(&server.accepter, listener, admit_client, &server) != 0)
        return end_at_once(EXIT_FAILURE);

    printf("stopping: %s\n", quit_wait());
    accepted_to_the_end = accepter_stop(&server.accepter) == 0;
    /* The workers are still running: chapter 08 stops everything in order. */
    return end_at_once(accepted_to_the_end ? EXIT_SUCCESS : EXIT_FAILURE);
}
