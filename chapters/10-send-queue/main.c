/*
 * Chapter 10: a send queue with back-pressure.
 *
 * Each client now receives and sends at the same time. Its receive is posted again as
 * soon as what it brought is queued, and everything to be sent goes through its send
 * queue: copies of the data, in order, with one WSASend in flight at a time that gathers
 * up to SEND_GATHER queued chunks. Any thread may queue to any client (queue_send), so
 * the queue lives under the client's lock, and a send in flight holds a reference like
 * every other I/O.
 *
 * A client that sends without reading would make its queue grow without end. So each
 * queue has a cap (--max-queued): once that many bytes wait, the client's next receive
 * is not posted, and it is posted again when the queue has drained to half the cap.
 * Memory per client is then bounded, and every other client is served meanwhile.
 *
 * Three kinds of context travel through the completion port:
 *   - the per-socket context, `struct client`, a client's completion key;
 *   - its per-I/O contexts, `struct receive_context` and `struct send_context`, each
 *     starting with a `struct io_context` whose OVERLAPPED comes first;
 *   - the accepts of common/acceptex.c (chapter 09), under their own key.
 *
 * A client that sends FIN may still be reading: it is closed once its queue has gone out.
 * The shutdown is chapter 09's: stop accepting, close every client (a queue still
 * holding data is dropped with its client), wait for their I/O, stop the workers, free.
 */
#include <winsock2.h>
#include <windows.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acceptex.h"
#include "errors.h"
#include "listener.h"
#include "options.h"
#include "port.h"
#include "quit.h"
#include "teardown.h"
#include "winsock.h"
#include "workers.h"

/* Exit code for a bad command line, the same as parse_options uses. */
#define EXIT_USAGE 2
/* Bytes one overlapped operation can carry; a longer message takes several. */
#define IO_BUFFER_SIZE 4096
/* Room for the reason a connection ended, such as "receive failed: 64 <message>". */
#define REASON_SIZE 160
/* How many queued chunks one WSASend can carry, as an array of WSABUF. */
#define SEND_GATHER 16
/* How long shutdown waits for the I/O of closed clients, or of cancelled accepts, to end. */
#define DRAIN_TIMEOUT_MS 10000

/* What an I/O context is doing, so a worker knows what a completion means. */
enum io_operation { OPERATION_RECEIVE, OPERATION_SEND };

/* What every per-I/O context starts with: the worker reads `operation` to know which. */
struct io_context {
    OVERLAPPED overlapped; /* first, and must stay valid until the completion is dequeued */
    enum io_operation operation;
};

/* The receive: one buffer, posted again as soon as what it brought is queued. */
struct receive_context {
    struct io_context io; /* first */
    WSABUF buffer_descriptor;
    char buffer[IO_BUFFER_SIZE];
};

/* The send in flight: the WSABUFs of the queued chunks it gathers. */
struct send_context {
    struct io_context io; /* first */
    WSABUF pieces[SEND_GATHER];
};

/* One queued piece of data: a copy that the queue owns until it is sent. */
struct send_chunk {
    struct send_chunk *next;
    DWORD length;
    char *data; /* `length` bytes, allocated with the chunk, right after it */
};

struct server;

/*
 * One connected client: the per-socket context, and its completion key. `references`
 * counts the open connection plus each I/O in flight; it changes only through
 * Interlocked calls, since several workers (and main, at quit) hold references. `lock`
 * guards `socket` and `end_reason`, so a close can never race a post on the same handle,
 * and the send queue: `queue_head` to `queue_tail`, `head_sent`, `queued`, `sending`,
 * `receive_paused` and `peer_closed`, since any thread may queue while a worker handles a
 * send.
 */
struct client {
    SOCKET socket;
    unsigned long id; /* 1 for the first connection, 2 for the next... */
    struct receive_context receive;
    struct send_context send; /* never the receive's context: each operation has its own */
    struct server *server;
    CRITICAL_SECTION lock;
    volatile LONG references;
    char end_reason[REASON_SIZE];
    struct send_chunk *queue_head; /* oldest first */
    struct send_chunk *queue_tail;
    DWORD head_sent;          /* bytes of the head chunk already sent */
    size_t queued;            /* bytes in the queue not sent yet */
    int sending;              /* a WSASend is in flight: only one at a time, to keep the order */
    int receive_paused;       /* back-pressure: the next receive waits for the queue to drain */
    int peer_closed;          /* FIN received: close once what is queued has gone out */
    struct client *next_free; /* while the slot is in the free list */
};

/*
 * The server's state. Workers take slots from the pool (in admit_client) and give them
 * back, so `pool_lock` guards `free_clients` and `live`.
 */
struct server {
    struct client *clients; /* the pool: max_clients slots */
    unsigned max_clients;
    CRITICAL_SECTION pool_lock;
    struct client *free_clients; /* slots not in use, most recently freed first */
    unsigned live;               /* slots in use */
    HANDLE no_clients;           /* manual-reset event: set while live is 0 */
    /* Clients admitted so far, for client ids: Interlocked, since any worker admits. */
    volatile LONG connections;
    struct acceptex acceptex; /* the accepts on the listener, whose completion key it is */
    size_t max_queued;        /* cap on a client's queued bytes, from --max-queued */
    HANDLE port;              /* the I/O completion port every client is associated with */
    HANDLE *workers;          /* worker thread handles */
    unsigned worker_count;
    /* Added to by every worker: Interlocked only; 64-bit Interlocked needs 8-byte alignment. */
    _Alignas(8) volatile LONG64 bytes_echoed;
};

/* Frees every chunk still queued and empties the queue; once no thread can use it. */
static void free_queue(struct client *client)
{
    while (client->queue_head != NULL) {
        struct send_chunk *next = client->queue_head->next;

        free(client->queue_head);
        client->queue_head = next;
    }
    client->queue_tail = NULL;
    client->head_sent = 0;
    client->queued = 0;
    client->sending = 0;
    client->receive_paused = 0;
    client->peer_closed = 0;
}

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
    /* What the client never got is dropped with it: no thread can queue any more. */
    free_queue(client);
    /* Copied while the slot is still ours: back in the pool, an accept may reuse it. */
    id = client->id;
    memcpy(reason, client->end_reason, sizeof reason);
    EnterCriticalSection(&server->pool_lock);
    client->next_free = server->free_clients;
    server->free_clients = client;
    live = --server->live;
    if (live == 0 && !SetEvent(server->no_clients))
        report_win_error("SetEvent");
    LeaveCriticalSection(&server->pool_lock);
    /*
     * Printed outside the lock, which each admission and every other release need: a console
     * write is slow. So two releases may print their live counts out of order.
     */
    printf("client %lu disconnected: %s (%u live)\n", id, reason, live);
    /* A socket was freed: an accept that could not be posted for want of one may be now. */
    acceptex_post_idle(&server->acceptex);
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

    /*
     * Every I/O still pending on the socket must complete, or its reference is never
     * dropped. CancelIoEx completes each with 995 (ERROR_OPERATION_ABORTED). closesocket
     * also cancels pending I/O on Windows, but under Wine a send the peer never reads gets
     * no completion after closesocket; after CancelIoEx it does, on both.
     */
    if (!CancelIoEx((HANDLE)socket_handle, NULL) && GetLastError() != ERROR_NOT_FOUND)
        report_win_error("CancelIoEx");
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
    struct receive_context *receive = &client->receive;
    DWORD flags = 0; /* in and out: must be set before the call */
    int error = 0;

    /* A fresh OVERLAPPED for every call: the system uses it while the I/O is pending. */
    memset(&receive->io.overlapped, 0, sizeof receive->io.overlapped);
    receive->io.operation = OPERATION_RECEIVE;
    receive->buffer_descriptor.buf = receive->buffer;
    receive->buffer_descriptor.len = sizeof receive->buffer;
    hold_client(client); /* the receive's reference, dropped when its completion is handled */
    EnterCriticalSection(&client->lock);
    if (client->socket == INVALID_SOCKET)
        error = WSAENOTSOCK; /* closed already: nothing to post on */
    else if (WSARecv(client->socket, &receive->buffer_descriptor, 1, NULL, &flags,
                     &receive->io.overlapped, NULL) == SOCKET_ERROR &&
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
 * Posts one WSASend of the queued bytes not sent yet, up to SEND_GATHER chunks. Call with
 * the client's lock held, a live socket, a non-empty queue and the send's reference
 * taken. Returns 0 when it is in flight, or the error number.
 */
static int post_send_locked(struct client *client)
{
    struct send_context *send = &client->send;
    struct send_chunk *chunk = client->queue_head;
    DWORD offset = client->head_sent;
    DWORD count;

    memset(&send->io.overlapped, 0, sizeof send->io.overlapped);
    send->io.operation = OPERATION_SEND;
    for (count = 0; chunk != NULL && count < SEND_GATHER; chunk = chunk->next, count++) {
        send->pieces[count].buf = chunk->data + offset;
        send->pieces[count].len = chunk->length - offset;
        offset = 0;
    }
    if (WSASend(client->socket, send->pieces, count, NULL, 0, &send->io.overlapped, NULL) ==
            SOCKET_ERROR &&
        WSAGetLastError() != WSA_IO_PENDING)
        return WSAGetLastError();
    return 0;
}

/*
 * Queues a copy of `length` bytes for the client and starts a send if none is in flight.
 * Any thread may call it. Returns 0, or -1 if the client has ended (nothing is queued)
 * or after a failure that ends it.
 */
static int queue_send(struct client *client, const char *data, DWORD length)
{
    struct send_chunk *chunk = malloc(sizeof *chunk + length);
    int error = 0;

    if (chunk == NULL) {
        report_errno("malloc");
        end_client(client, 1, "no memory for its send queue");
        return -1;
    }
    chunk->next = NULL;
    chunk->length = length;
    chunk->data = (char *)(chunk + 1);
    memcpy(chunk->data, data, length);
    EnterCriticalSection(&client->lock);
    if (client->socket == INVALID_SOCKET) {
        LeaveCriticalSection(&client->lock);
        free(chunk);
        return -1;
    }
    if (client->queue_tail != NULL)
        client->queue_tail->next = chunk;
    else
        client->queue_head = chunk;
    client->queue_tail = chunk;
    client->queued += length;
    if (!client->sending) {
        client->sending = 1;
        hold_client(client); /* the send's reference, dropped when its completion is handled */
        error = post_send_locked(client);
    }
    LeaveCriticalSection(&client->lock);
    if (error != 0) {
        /* No completion will come for a send that was never posted: drop its reference. */
        end_client_after_error(client, "WSASend", (unsigned long)error);
        release_client(client);
        return -1;
    }
    return 0;
}

/* Drops `bytes` sent bytes from the front of the queue, freeing each chunk sent in full. */
static void consume_sent(struct client *client, DWORD bytes)
{
    client->queued -= bytes;
    while (bytes > 0) {
        struct send_chunk *head = client->queue_head;
        DWORD left = head->length - client->head_sent;

        if (bytes < left) {
            client->head_sent += bytes;
            return;
        }
        bytes -= left;
        client->queue_head = head->next;
        client->head_sent = 0;
        free(head);
    }
    if (client->queue_head == NULL)
        client->queue_tail = NULL;
}

/* Takes a free slot from the pool, or returns NULL when every slot is in use. */
static struct client *take_free_client(struct server *server)
{
    struct client *client;

    EnterCriticalSection(&server->pool_lock);
    client = server->free_clients;
    if (client != NULL) {
        server->free_clients = client->next_free;
        if (server->live++ == 0 && !ResetEvent(server->no_clients))
            report_win_error("ResetEvent");
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
    if (--server->live == 0 && !SetEvent(server->no_clients))
        report_win_error("SetEvent");
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
    client->id = (unsigned long)InterlockedIncrement(&server->connections);
    client->references = 1; /* the open connection's reference, dropped by end_client */
    printf("client %lu connected from %s (slot %u of %u)\n", client->id, peer,
           (unsigned)(client - server->clients) + 1, server->max_clients);
    printf("client %lu associated with port %p, completion key %p\n", client->id,
           (void *)server->port, (void *)client);
    /* Last: once the receive is posted, a worker may be using the client. */
    post_receive(client);
}

/*
 * Handles one dequeued receive completion: queues the echo and receives again at once,
 * unless the queue has reached its cap; then on_send posts the receive once it drains.
 */
static void on_receive(struct client *client, BOOL succeeded, DWORD bytes)
{
    int paused;
    int sending;

    if (!succeeded) {
        /*
         * A failed I/O still completes through the port, and still needs cleaning up. A
         * peer's reset usually shows as 64 (ERROR_NETNAME_DELETED) here, not 10054.
         */
        end_client_after_error(client, "receive", GetLastError());
        return;
    }
    if (bytes == 0) {
        /*
         * A successful receive of zero bytes: the peer closed its side (sent FIN), but it
         * may still read. Close now only if nothing is on its way; else on_send closes
         * once the queue is empty, so the last echoes are not cancelled.
         */
        EnterCriticalSection(&client->lock);
        client->peer_closed = 1;
        sending = client->sending;
        LeaveCriticalSection(&client->lock);
        if (!sending)
            end_client(client, 0, "peer closed the connection");
        return;
    }
    if (queue_send(client, client->receive.buffer, bytes) != 0)
        return;
    /* Checked and set under the lock that on_send checks and clears it under. */
    EnterCriticalSection(&client->lock);
    paused = client->queued >= client->server->max_queued;
    client->receive_paused = paused;
    LeaveCriticalSection(&client->lock);
    if (!paused)
        post_receive(client);
}

/*
 * Handles one dequeued send completion: drops what was sent, sends what is still queued,
 * and lets a paused receive go once the queue is down to half its cap.
 */
static void on_send(struct client *client, BOOL succeeded, DWORD bytes)
{
    struct server *server = client->server;
    int error = 0;
    int resume;
    int finished = 0;

    if (!succeeded) {
        end_client_after_error(client, "send", GetLastError());
        return;
    }
    InterlockedExchangeAdd64(&server->bytes_echoed, (LONG64)bytes);
    EnterCriticalSection(&client->lock);
    /* A send may complete short; the rest stays queued and goes out next, in order. */
    consume_sent(client, bytes);
    resume = client->receive_paused && client->queued <= server->max_queued / 2;
    if (resume)
        client->receive_paused = 0;
    if (client->queue_head == NULL || client->socket == INVALID_SOCKET) {
        client->sending = 0;
        finished = client->peer_closed;
    } else {
        hold_client(client); /* the next send's reference */
        error = post_send_locked(client);
    }
    LeaveCriticalSection(&client->lock);
    if (error != 0) {
        end_client_after_error(client, "WSASend", (unsigned long)error);
        release_client(client);
        return;
    }
    if (finished)
        end_client(client, 0, "peer closed the connection");
    else if (resume)
        post_receive(client);
}

/* A worker thread: handles completions until it dequeues a stop packet. */
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
            /* A real I/O always has an OVERLAPPED: this is stop_workers' packet. */
            if (succeeded)
                return 0;
            /* No packet was dequeued: the wait itself failed (the port is unusable). */
            report_win_error("GetQueuedCompletionStatus");
            return 1;
        }
        /* A packet was dequeued, for an I/O that succeeded or failed. */
        if (key == (ULONG_PTR)&server->acceptex) {
            acceptex_completed(&server->acceptex, overlapped, succeeded ? 0 : GetLastError());
            continue;
        }
        io = CONTAINING_RECORD(overlapped, struct io_context, overlapped);
        client = (struct client *)key;
        if (io->operation == OPERATION_RECEIVE)
            on_receive(client, succeeded, bytes);
        else
            on_send(client, succeeded, bytes);
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
    server->no_clients = CreateEventA(NULL, TRUE, TRUE, NULL);
    if (server->no_clients == NULL) {
        report_win_error("CreateEvent");
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

/* Frees the pool and the accept contexts; only once no I/O is in flight and no thread runs. */
static void destroy_pool(struct server *server)
{
    unsigned i;

    for (i = 0; i < server->max_clients; i++)
        DeleteCriticalSection(&server->clients[i].lock);
    DeleteCriticalSection(&server->pool_lock);
    if (!CloseHandle(server->no_clients))
        report_win_error("CloseHandle");
    free(server->clients);
    acceptex_destroy(&server->acceptex);
}

/*
 * Closes every connected client. Each close makes the I/O pending on that socket complete
 * (with an error), and the workers release the client as they handle those completions.
 */
static void close_all_clients(struct server *server)
{
    unsigned i;

    for (i = 0; i < server->max_clients; i++) {
        struct client *client = &server->clients[i];

        if (hold_if_alive(&client->references)) {
            end_client(client, 0, "server stopping");
            release_client(client);
        }
    }
}

int main(int argc, char **argv)
{
    struct options options;
    struct sockaddr_storage address;
    int address_length;
    struct server server = {0};
    SOCKET listener;
    int started;
    unsigned accepts;
    unsigned posted = 0;
    int accepts_drained = 0;

    /* A pipe makes stdout fully buffered on Windows; a reader must see each line at once. */
    setvbuf(stdout, NULL, _IONBF, 0);
    parse_options(argc, argv,
                  OPTION_PORT | OPTION_BIND | OPTION_MAX_CLIENTS | OPTION_WORKERS | OPTION_ACCEPTS |
                      OPTION_MAX_QUEUED,
                  &options);
    address_length = make_listen_address(&options, &address);
    if (address_length == 0)
        return EXIT_USAGE;

    server.max_clients = options.max_clients;
    server.worker_count = options.workers ? options.workers : processor_count();
    accepts = options.accepts ? options.accepts : DEFAULT_ACCEPTS_PER_WORKER * server.worker_count;
    server.max_queued = options.max_queued;
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
    if (listener == INVALID_SOCKET ||
        acceptex_prepare(&server.acceptex, listener, address.ss_family, server.port, accepts,
                         admit_client, &server) != 0) {
        if (listener != INVALID_SOCKET)
            close_socket(listener);
        stop_winsock();
        return EXIT_FAILURE;
    }
    /* From here on workers may be running: a failure ends the program the way quit does. */
    started = start_workers(&server.workers, &server.worker_count, run_worker, &server) == 0;
    if (started)
        printf("%u worker threads waiting on the port; each receive takes up to %d bytes\n",
               server.worker_count, IO_BUFFER_SIZE);
    started = started && (posted = acceptex_post_idle(&server.acceptex)) > 0;
    if (started) {
        printf("%u accepts posted on the listener\n", posted);
        printf("stopping: %s\n", quit_wait());
    }
    /* Also after a failed start: it closes the listener, with no accept left in flight. */
    accepts_drained = acceptex_stop(&server.acceptex, DRAIN_TIMEOUT_MS) == 0;
    /* An accept still in flight may yet admit a client: then nothing may be freed. */
    if (accepts_drained)
        close_all_clients(&server);
    if (!accepts_drained ||
        wait_for_drain(server.no_clients, DRAIN_TIMEOUT_MS, "client I/O") != 0 ||
        stop_workers(server.port, server.workers, server.worker_count) != 0) {
        /*
         * I/O or a worker may still use the pool, so free nothing, and end as chapter 07
         * did: without the C runtime's clean-up, which a running worker could upset.
         */
        if (!TerminateProcess(GetCurrentProcess(), EXIT_FAILURE))
            report_win_error("TerminateProcess");
        return EXIT_FAILURE;
    }
    /* Last: no thread waits on it now, and every completion for it has been dequeued. */
    if (!CloseHandle(server.port))
        report_win_error("CloseHandle");
    destroy_pool(&server);
    if (stop_winsock() != 0)
        return EXIT_FAILURE;
    if (started)
        printf("connections served: %ld, bytes echoed: %lld\n", (long)server.connections,
               (long long)server.bytes_echoed);
    return started ? EXIT_SUCCESS : EXIT_FAILURE;
}
