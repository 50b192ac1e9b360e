/*
 * Chapter 09: accepting with AcceptEx.
 *
 * The accepter thread is gone. The listener is associated with the completion port like
 * any client socket, and accepts are overlapped I/O that complete on the workers:
 *
 *   - the listener's completion key is the server itself, so a worker tells an accept
 *     from a client's I/O by the key;
 *   - each outstanding accept is a per-I/O context, `struct accept_context`, with its
 *     OVERLAPPED first and the socket made for the next client. A worker that dequeues a
 *     completed accept posts that context again at once, then admits the client, so the
 *     same number of accepts is always outstanding and a burst of connections is taken
 *     as fast as the workers run.
 *
 * Clients are as in chapter 08: the per-socket context, `struct client`, is their key,
 * and each of their operations has its own `struct io_context`.
 *
 * On quit or Ctrl+C the server stops in an order where nothing is freed while the
 * system or another thread may still use it:
 *   1. stop accepting: post no more accepts, cancel those outstanding, and wait until
 *      every one of their completions has been handled; then close the listener;
 *   2. close every client socket, so that the I/O still pending on it completes;
 *   3. wait until every client context has been released, that is, until every one of
 *      those completions has been dequeued and handled;
 *   4. post one stop packet per worker, wait for all the workers, close their handles;
 *   5. close the port, free the pool, WSACleanup, and print what was served.
 */
#include <winsock2.h>
#include <windows.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mswsock.h>

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
/* How long shutdown waits for the I/O of closed clients, or of cancelled accepts, to end. */
#define DRAIN_TIMEOUT_MS 10000
/*
 * Room AcceptEx needs for each of the two addresses it writes: "at least 16 bytes more
 * than the maximum address length for the transport protocol in use" (its page).
 */
#define ACCEPT_ADDRESS_SIZE ((DWORD)sizeof(struct sockaddr_storage) + 16)

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

/*
 * One outstanding AcceptEx: a per-I/O context of the listener. Its socket is made before
 * the call and becomes the client's; AcceptEx writes both addresses into `addresses`.
 */
struct accept_context {
    OVERLAPPED overlapped; /* first, and must stay valid until the completion is dequeued */
    SOCKET socket;         /* INVALID_SOCKET while idle: no AcceptEx in flight */
    char addresses[2 * ACCEPT_ADDRESS_SIZE];
};

struct server;

/*
 * One connected client: the per-socket context, and its completion key. `references`
 * counts the open connection plus each I/O in flight; it changes only through
 * Interlocked calls, since several workers (and main, at quit) hold references. `lock`
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
 * The server's state. Workers take slots from the pool (in admit_client) and give them
 * back, so `pool_lock` guards `free_clients` and `live`. `accept_lock` guards `stopping`,
 * `accepts_pending` and `idle_accepts`, so that no accept can be posted after main has
 * decided to stop, and a context's `socket` while it is idle (in flight, only the worker
 * that dequeues its completion touches it).
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
    SOCKET listener;         /* associated with the port; its completion key is the server */
    int family;              /* the listener's address family, for the sockets made for AcceptEx */
    LPFN_ACCEPTEX accept_ex; /* both loaded from the listener's provider */
    LPFN_GETACCEPTEXSOCKADDRS get_accept_addresses;
    struct accept_context *accepts; /* accept_count contexts */
    unsigned accept_count;
    CRITICAL_SECTION accept_lock;
    int stopping;             /* set by main at quit: post no more accepts */
    unsigned accepts_pending; /* AcceptEx calls whose completion is not handled yet */
    unsigned idle_accepts;    /* contexts with no AcceptEx in flight */
    HANDLE no_accepts;        /* manual-reset event: set once stopping and none pending */
    HANDLE port;              /* the I/O completion port every client is associated with */
    HANDLE *workers;          /* worker thread handles */
    unsigned worker_count;
    /* Added to by every worker: Interlocked only; 64-bit Interlocked needs 8-byte alignment. */
    _Alignas(8) volatile LONG64 bytes_echoed;
};

static unsigned post_idle_accepts(struct server *server);

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
    post_idle_accepts(server);
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
static void admit_client(struct server *server, SOCKET socket_handle, const char *peer)
{
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
 * Loads one Winsock extension function: these are reached through the provider of a
 * socket, not linked. Returns 0, or -1 after reporting the error.
 */
static int load_extension(SOCKET socket_handle, GUID id, void *function, DWORD size,
                          const char *what)
{
    DWORD bytes = 0;

    if (WSAIoctl(socket_handle, SIO_GET_EXTENSION_FUNCTION_POINTER, &id, (DWORD)sizeof id, function,
                 size, &bytes, NULL, NULL) == SOCKET_ERROR) {
        report_wsa_error(what);
        return -1;
    }
    return 0;
}

/*
 * Posts AcceptEx for an idle accept context, on a socket made for it now. Call with
 * accept_lock held. Returns 0 when the accept is in flight (its completion reaches a
 * worker even if it finished at once), or -1 when the server is stopping or after
 * reporting a failure; the context then stays idle.
 */
static int post_accept_locked(struct server *server, struct accept_context *accept)
{
    DWORD received = 0;
    int error;

    if (server->stopping)
        return -1;
    accept->socket =
        WSASocketW(server->family, SOCK_STREAM, IPPROTO_TCP, NULL, 0, WSA_FLAG_OVERLAPPED);
    if (accept->socket == INVALID_SOCKET) {
        report_wsa_error("WSASocketW");
        return -1;
    }
    memset(&accept->overlapped, 0, sizeof accept->overlapped);
    /* No receive data (0): the accept completes when the client connects, not later. */
    if (server->accept_ex(server->listener, accept->socket, accept->addresses, 0,
                          ACCEPT_ADDRESS_SIZE, ACCEPT_ADDRESS_SIZE, &received,
                          &accept->overlapped) ||
        (error = WSAGetLastError()) == ERROR_IO_PENDING) {
        server->idle_accepts--;
        server->accepts_pending++;
        return 0;
    }
    report_error("AcceptEx", (unsigned long)error);
    close_socket(accept->socket);
    accept->socket = INVALID_SOCKET;
    return -1;
}

/* Posts AcceptEx for every idle context; returns how many accepts are in flight. */
static unsigned post_idle_accepts(struct server *server)
{
    unsigned i;
    unsigned pending;

    EnterCriticalSection(&server->accept_lock);
    for (i = 0; i < server->accept_count && server->idle_accepts > 0; i++)
        if (server->accepts[i].socket == INVALID_SOCKET &&
            post_accept_locked(server, &server->accepts[i]) != 0)
            break;
    pending = server->accepts_pending;
    LeaveCriticalSection(&server->accept_lock);
    return pending;
}

/* Counts one accept completion as handled; the last one after stopping lets the drain end. */
static void accept_handled(struct server *server)
{
    EnterCriticalSection(&server->accept_lock);
    if (--server->accepts_pending == 0 && server->stopping && !SetEvent(server->no_accepts))
        report_win_error("SetEvent");
    LeaveCriticalSection(&server->accept_lock);
}

/*
 * Handles one dequeued accept completion: posts that context again at once, then admits
 * the connection, or closes its socket if the accept failed or was cancelled.
 */
static void on_accept(struct server *server, struct accept_context *accept, BOOL succeeded)
{
    SOCKET socket_handle = accept->socket;
    DWORD error = succeeded ? 0 : GetLastError();
    struct sockaddr *local;
    struct sockaddr *remote;
    int local_length;
    int remote_length;
    char peer[ADDRESS_TEXT_SIZE];
    int stopping;

    /*
     * The addresses go into text first: once the context is posted again, AcceptEx
     * writes the next connection's addresses over them.
     */
    if (succeeded) {
        server->get_accept_addresses(accept->addresses, 0, ACCEPT_ADDRESS_SIZE, ACCEPT_ADDRESS_SIZE,
                                     &local, &local_length, &remote, &remote_length);
        format_address(remote, peer, sizeof peer);
    }
    EnterCriticalSection(&server->accept_lock);
    accept->socket = INVALID_SOCKET;
    server->idle_accepts++;
    stopping = server->stopping;
    if (!stopping)
        post_accept_locked(server, accept);
    LeaveCriticalSection(&server->accept_lock);

    /*
     * A connection needs SO_UPDATE_ACCEPT_CONTEXT first: until then its socket is "in the
     * default state for a connected socket", without the listener's properties.
     */
    if (!succeeded) {
        /* Cancelled at quit (995), or a client that reset before the accept completed. */
        if (!stopping)
            report_error("AcceptEx", error);
        close_socket(socket_handle);
    } else if (setsockopt(socket_handle, SOL_SOCKET, SO_UPDATE_ACCEPT_CONTEXT,
                          (const char *)&server->listener,
                          (int)sizeof server->listener) == SOCKET_ERROR) {
        report_wsa_error("setsockopt(SO_UPDATE_ACCEPT_CONTEXT)");
        close_socket(socket_handle);
    } else {
        admit_client(server, socket_handle, peer);
    }
    /* Only now, admitted or closed: a drain that ends sooner would miss this client. */
    accept_handled(server);
}

/*
 * Prepares accepting on the listener, before any thread runs: makes the contexts, all
 * idle, loads AcceptEx and GetAcceptExSockaddrs, and associates the listener with the
 * port under the server as its key. Returns 0, or -1 after reporting the error.
 */
static int prepare_accepting(struct server *server, SOCKET listener, int family)
{
    GUID accept_ex_id = WSAID_ACCEPTEX;
    GUID addresses_id = WSAID_GETACCEPTEXSOCKADDRS;
    unsigned i;

    server->listener = listener;
    server->family = family;
    InitializeCriticalSection(&server->accept_lock);
    server->no_accepts = CreateEventA(NULL, TRUE, FALSE, NULL);
    if (server->no_accepts == NULL) {
        report_win_error("CreateEvent");
        return -1;
    }
    server->accepts = calloc(server->accept_count, sizeof *server->accepts);
    if (server->accepts == NULL) {
        report_errno("calloc");
        return -1;
    }
    for (i = 0; i < server->accept_count; i++)
        server->accepts[i].socket = INVALID_SOCKET;
    server->idle_accepts = server->accept_count;
    if (load_extension(listener, accept_ex_id, &server->accept_ex, sizeof server->accept_ex,
                       "WSAIoctl(AcceptEx)") != 0 ||
        load_extension(listener, addresses_id, &server->get_accept_addresses,
                       sizeof server->get_accept_addresses, "WSAIoctl(GetAcceptExSockaddrs)") != 0)
        return -1;
    if (CreateIoCompletionPort((HANDLE)listener, server->port, (ULONG_PTR)server, 0) == NULL) {
        report_win_error("CreateIoCompletionPort");
        return -1;
    }
    return 0;
}

/*
 * Step 1 of the shutdown: no accept is posted from now on, every outstanding one is
 * cancelled, and once all their completions have been handled the listener is closed
 * (its contexts and lock stay until destroy_pool: releases still look for idle ones).
 * Returns 0, or -1 if some accept is still in flight after the timeout.
 */
static int stop_accepting(struct server *server)
{
    unsigned pending;

    EnterCriticalSection(&server->accept_lock);
    server->stopping = 1;
    pending = server->accepts_pending;
    LeaveCriticalSection(&server->accept_lock);
    if (pending > 0 && !CancelIoEx((HANDLE)server->listener, NULL) &&
        GetLastError() != ERROR_NOT_FOUND)
        report_win_error("CancelIoEx");
    if (pending > 0 && wait_for_drain(server->no_accepts, DRAIN_TIMEOUT_MS, "an accept") != 0)
        return -1;
    close_socket(server->listener);
    return 0;
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
    InterlockedExchangeAdd64(&client->server->bytes_echoed, (LONG64)bytes);
    /* Fewer bytes than asked: send the rest before receiving again, or bytes would be lost. */
    if (io->sent < io->length) {
        post_send(client);
        return;
    }
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
        if (key == (ULONG_PTR)server) {
            on_accept(server, CONTAINING_RECORD(overlapped, struct accept_context, overlapped),
                      succeeded);
            continue;
        }
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
    DeleteCriticalSection(&server->accept_lock);
    if (!CloseHandle(server->no_accepts))
        report_win_error("CloseHandle");
    free(server->accepts);
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
    unsigned posted = 0;
    int accepts_drained = 0;

    /* A pipe makes stdout fully buffered on Windows; a reader must see each line at once. */
    setvbuf(stdout, NULL, _IONBF, 0);
    parse_options(argc, argv,
                  OPTION_PORT | OPTION_BIND | OPTION_MAX_CLIENTS | OPTION_WORKERS | OPTION_ACCEPTS,
                  &options);
    address_length = make_listen_address(&options, &address);
    if (address_length == 0)
        return EXIT_USAGE;

    server.max_clients = options.max_clients;
    server.worker_count = options.workers ? options.workers : processor_count();
    server.accept_count =
        options.accepts ? options.accepts : DEFAULT_ACCEPTS_PER_WORKER * server.worker_count;
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
        prepare_accepting(&server, listener, address.ss_family) != 0) {
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
    started = started && (posted = post_idle_accepts(&server)) > 0;
    if (started) {
        printf("%u accepts posted on the listener\n", posted);
        printf("stopping: %s\n", quit_wait());
    }
    /* Also after a failed start: it closes the listener, with no accept left in flight. */
    accepts_drained = stop_accepting(&server) == 0;
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
