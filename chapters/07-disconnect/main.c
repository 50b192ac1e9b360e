/*
 * Chapter 07: disconnects, and the life of a client context.
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
 * A connection ends in one of three ways: the peer closes (a receive of zero bytes), the
 * peer resets, or one of our own calls fails. Whichever thread sees the end first closes
 * the socket, exactly once, under the client's lock. The client context holds a
 * reference count: one for the open connection plus one for each I/O in flight. When it
 * drops to zero nothing can touch the context any more, so its slot goes back to the
 * pool for the next connection.
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
/* Room for the reason a connection ended, such as "receive failed: 64 <message>". */
#define REASON_SIZE 160

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

struct server;

/*
 * One connected client: the per-socket context, and its completion key. `references`
 * counts the open connection plus each I/O in flight; it changes only through
 * Interlocked calls, since the accepter and the workers all hold references. `lock`
 * guards `socket` and `end_reason`, so a close can never race a post on the same handle.
 */
struct client {
    SOCKET socket;
    unsigned long id; /* 1 for the first connection, 2 for the next... */
    struct io_context receive;
    struct io_context send; /* never the receive's context: each operation has its own */
    struct server *server;
    CRITICAL_SECTION lock;
    volatile LONG references;
    char end_reason[REASON_SIZE];
    struct client *next_free; /* while the slot is in the free list */
};

/*
 * The server's state. The accepter thread takes slots from the pool (in admit_client) and
 * workers give them back, so `pool_lock` guards `free_clients` and `live`.
 */
struct server {
    struct client *clients; /* the pool: max_clients slots */
    unsigned max_clients;
    CRITICAL_SECTION pool_lock;
    struct client *free_clients; /* slots not in use, most recently freed first */
    unsigned live;               /* slots in use */
    unsigned long connections;   /* clients admitted so far, for client ids */
    struct accepter accepter;    /* the accepter thread, which owns the listener */
    HANDLE port;                 /* the I/O completion port every client is associated with */
    HANDLE *workers;             /* worker thread handles */
    unsigned worker_count;
};

/* Adds a reference to a client: for an I/O about to be posted. */
static void hold_client(struct client *client)
{
    InterlockedIncrement(&client->references);
}

/*
 * Drops a reference; the last one gives the slot back to the pool. Only then is the
 * context free: no I/O on it is in flight and no thread holds it.
 */
static void release_client(struct client *client)
{
    struct server *server = client->server;
    char reason[REASON_SIZE];
    unsigned long id;
    unsigned live;

    if (InterlockedDecrement(&client->references) != 0)
        return;
    /* Copied while the slot is still ours: back in the pool, the accepter may reuse it. */
    id = client->id;
    memcpy(reason, client->end_reason, sizeof reason);
    EnterCriticalSection(&server->pool_lock);
    client->next_free = server->free_clients;
    server->free_clients = client;
    live = --server->live;
    LeaveCriticalSection(&server->pool_lock);
    /*
     * Printed outside the lock, which the accepter and every other release need: a console
     * write is slow. So two releases may print their live counts out of order.
     */
    printf("client %lu disconnected: %s (%u live)\n", id, reason, live);
}

/*
 * Closes a client's socket if no other thread has, and drops the connection's
 * reference. A graceful close sends FIN after the data already sent; an abortive close
 * (linger on, timeout 0) sends RST and discards anything unsent, for broken connections.
 */
static void end_client(struct client *client, int abortive, const char *reason)
{
    static const struct linger reset_on_close = {1, 0};
    SOCKET socket_handle;

    EnterCriticalSection(&client->lock);
    socket_handle = client->socket;
    client->socket = INVALID_SOCKET;
    if (socket_handle != INVALID_SOCKET)
        snprintf(client->end_reason, sizeof client->end_reason, "%s", reason);
    LeaveCriticalSection(&client->lock);
    if (socket_handle == INVALID_SOCKET)
        return; /* another thread closed it first, and dropped the connection's reference */

    if (abortive) {
        if (setsockopt(socket_handle, SOL_SOCKET, SO_LINGER, (const char *)&reset_on_close,
                       (int)sizeof reset_on_close) == SOCKET_ERROR)
            report_wsa_error("setsockopt(SO_LINGER)");
    } else if (shutdown(socket_handle, SD_SEND) == SOCKET_ERROR) {
        report_wsa_error("shutdown");
    }
    close_socket(socket_handle);
    release_client(client);
}

/* Ends a client after a failed I/O or call, naming it and its error in the reason. */
static void end_client_after_error(struct client *client, const char *what, unsigned long error)
{
    char text[256];
    char reason[REASON_SIZE];

    snprintf(reason, sizeof reason, "%s failed: %lu %s", what, error,
             error_text(error, text, sizeof text));
    end_client(client, 1, reason);
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
    int error = 0;

    /* A fresh OVERLAPPED for every call: the system uses it while the I/O is pending. */
    memset(&io->overlapped, 0, sizeof io->overlapped);
    io->operation = OPERATION_RECEIVE;
    io->buffer_descriptor.buf = io->buffer;
    io->buffer_descriptor.len = sizeof io->buffer;
    hold_client(client); /* the receive's reference, dropped when its completion is handled */
    EnterCriticalSection(&client->lock);
    if (client->socket == INVALID_SOCKET)
        error = WSAENOTSOCK; /* closed already: nothing to post on */
    else if (WSARecv(client->socket, &io->buffer_descriptor, 1, NULL, &flags, &io->overlapped,
                     NULL) == SOCKET_ERROR &&
             WSAGetLastError() != WSA_IO_PENDING)
        error = WSAGetLastError();
    LeaveCriticalSection(&client->lock);
    if (error != 0) {
        /* No completion will come for an I/O that was never posted: drop its reference. */
        end_client_after_error(client, "WSARecv", (unsigned long)error);
        release_client(client);
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
    int error = 0;

    memset(&io->overlapped, 0, sizeof io->overlapped);
    io->operation = OPERATION_SEND;
    io->buffer_descriptor.buf = io->buffer + io->sent;
    io->buffer_descriptor.len = io->length - io->sent;
    hold_client(client); /* the send's reference, dropped when its completion is handled */
    EnterCriticalSection(&client->lock);
    if (client->socket == INVALID_SOCKET)
        error = WSAENOTSOCK;
    else if (WSASend(client->socket, &io->buffer_descriptor, 1, NULL, 0, &io->overlapped, NULL) ==
                 SOCKET_ERROR &&
             WSAGetLastError() != WSA_IO_PENDING)
        error = WSAGetLastError();
    LeaveCriticalSection(&client->lock);
    if (error != 0) {
        end_client_after_error(client, "WSASend", (unsigned long)error);
        release_client(client);
        return -1;
    }
    return 0;
}

/* Takes a free slot from the pool, or returns NULL when every slot is in use. */
static struct client *take_free_client(struct server *server)
{
    struct client *client;

    EnterCriticalSection(&server->pool_lock);
    client = server->free_clients;
    if (client != NULL) {
        server->free_clients = client->next_free;
        server->live++;
    }
    LeaveCriticalSection(&server->pool_lock);
    return client;
}

/* Gives back a slot that never got a connection going. */
static void return_unused_client(struct server *server, struct client *client)
{
    EnterCriticalSection(&server->pool_lock);
    client->next_free = server->free_clients;
    server->free_clients = client;
    server->live--;
    LeaveCriticalSection(&server->pool_lock);
}

/* Takes a new client into a free slot, or refuses it by closing it when none is free. */
static void admit_client(void *context, SOCKET socket_handle, const char *peer)
{
    struct server *server = context;
    struct client *client;

    client = take_free_client(server);
    if (client == NULL) {
        printf("refused %s: all %u slots are taken\n", peer, server->max_clients);
        close_socket(socket_handle);
        return;
    }
    /*
     * The client's address becomes the completion key: every completion for this socket
     * will carry it. Failure is NULL, not INVALID_HANDLE_VALUE.
     */
    if (CreateIoCompletionPort((HANDLE)socket_handle, server->port, (ULONG_PTR)client, 0) == NULL) {
        report_win_error("CreateIoCompletionPort");
        close_socket(socket_handle);
        return_unused_client(server, client);
        return;
    }
    client->socket = socket_handle;
    client->id = ++server->connections;
    client->references = 1; /* the open connection's reference, dropped by end_client */
    printf("client %lu connected from %s (slot %u of %u)\n", client->id, peer,
           (unsigned)(client - server->clients) + 1, server->max_clients);
    printf("client %lu associated with port %p, completion key %p\n", client->id,
           (void *)server->port, (void *)client);
    /* Last: once the receive is posted, a worker may be using the client. */
    post_receive(client);
}

/* Handles one dequeued receive completion for a client. */
static void on_receive(struct client *client, struct io_context *io, BOOL succeeded, DWORD bytes)
{
    if (!succeeded) {
        /*
         * A failed I/O still completes through the port, and still needs cleaning up. A
         * peer's reset usually shows as 64 (ERROR_NETNAME_DELETED) here, not 10054.
         */
        end_client_after_error(client, "receive", GetLastError());
        return;
    }
    if (bytes == 0) {
        /* A successful receive of zero bytes: the peer closed its side (sent FIN). */
        end_client(client, 0, "peer closed the connection");
        return;
    }
    /* Echo: the send gets its own copy; each context owns its buffer while its I/O runs. */
    memcpy(client->send.buffer, io->buffer, bytes);
    client->send.length = bytes;
    client->send.sent = 0;
    post_send(client);
}

/* Handles one dequeued send completion: sends the rest, or goes back to receiving. */
static void on_send(struct client *client, struct io_context *io, BOOL succeeded, DWORD bytes)
{
    if (!succeeded) {
        end_client_after_error(client, "send", GetLastError());
        return;
    }
    io->sent += bytes;
    /* Fewer bytes than asked: send the rest before receiving again, or bytes would be lost. */
    if (io->sent < io->length) {
        post_send(client);
        return;
    }
    post_receive(client);
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
        struct client *client;

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
        client = (struct client *)key;
        if (io->operation == OPERATION_RECEIVE)
            on_receive(client, io, succeeded, bytes);
        else
            on_send(client, io, succeeded, bytes);
        /* This completion's reference: the handler above has posted the next I/O, if any. */
        release_client(client);
    }
}

/* Allocates the pool with every slot free; returns 0, or -1 after reporting the error. */
static int create_pool(struct server *server)
{
    unsigned i;

    server->clients = calloc(server->max_clients, sizeof *server->clients);
    if (server->clients == NULL) {
        report_errno("calloc");
        return -1;
    }
    InitializeCriticalSection(&server->pool_lock);
    /* Pushed in reverse, so slot 1 is handed out first. */
    for (i = server->max_clients; i-- > 0;) {
        struct client *client = &server->clients[i];

        client->server = server;
        client->socket = INVALID_SOCKET;
        InitializeCriticalSection(&client->lock);
        client->next_free = server->free_clients;
        server->free_clients = client;
    }
    return 0;
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
    if (create_pool(&server) != 0)
        return EXIT_FAILURE;

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
