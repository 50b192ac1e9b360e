/*
 * Chapter 12: a chat room, on chapter 11's messages.
 *
 * A client joins the room with a name (a JOIN message), says lines (SAY) and leaves
 * (LEAVE, or by disconnecting). What a member says goes to every member, the sayer too,
 * as a MESSAGE "name: text"; joins and leaves go out as NOTICEs; a request that cannot be
 * met is answered with an ERROR, and the connection stays. Echo messages work as before.
 *
 * A broadcast is one message queued to many clients from one worker: chapter 10's queue
 * already lets any thread queue to any client. The room (room.c) lists the members under
 * its lock; a broadcast takes a snapshot, holding a reference on each member so that none
 * can be freed, and queues to each after leaving the lock, so no member's send waits on
 * another's. A member that does not read falls behind: when a message would take its
 * queue, not yet empty, past --max-queued, it is disconnected as a slow consumer, and no
 * one waits for it.
 *
 * Everything else is chapter 11's: the accepts of common/acceptex.c under their own key,
 * the per-socket context as each client's key, the per-I/O contexts with their
 * OVERLAPPED first, the framing of common/frame.c, back-pressure and the shutdown.
 */
#include <winsock2.h>
#include <windows.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acceptex.h"
#include "connection.h"
#include "errors.h"
#include "frame.h"
#include "inbox.h"
#include "listener.h"
#include "options.h"
#include "port.h"
#include "quit.h"
#include "room.h"
#include "sendqueue.h"
#include "slotpool.h"
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
/* Room for what a MESSAGE puts before the text: the sayer's name and ": ". */
#define LEAD_SIZE (ROOM_NAME_MAX + 2)
/* Room for a notice, such as "name left: " and the reason its connection ended. */
#define NOTICE_SIZE (ROOM_NAME_MAX + 16 + REASON_SIZE)

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

struct server;

/*
 * One connected client: the per-socket context, and its completion key. `references`
 * counts the open connection plus each I/O in flight; it changes only through
 * Interlocked calls, since several workers (and main, at quit) hold references. `lock`
 * guards `socket` and `end_reason`, so a close can never race a post on the same handle,
 * and the send queue: `queue`, `sending`, `receive_paused` and `peer_closed`, since any
 * thread may queue while a worker handles a send. The inbox needs no lock: only the
 * worker that handles the client's one receive touches it. `member` is the room's, under
 * the room's lock.
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
    struct send_queue queue; /* copies of what is to be sent, whole messages, in order */
    int sending;             /* a WSASend is in flight: only one at a time, to keep the order */
    int receive_paused;      /* back-pressure: the next receive waits for the queue to drain */
    int peer_closed;         /* FIN received: close once what is queued has gone out */
    struct inbox inbox;      /* received bytes not yet a whole message */

    struct room_member member; /* its place in the chat room, if it has joined */
};

/* The server's state. Workers take slots from the pool (in admit_client) and give them back. */
struct server {
    struct client *clients; /* max_clients of them, one per slot of the pool */
    unsigned max_clients;
    struct slot_pool pool;
    /* Clients admitted so far, for client ids: Interlocked, since any worker admits. */
    volatile LONG connections;
    struct acceptex acceptex; /* the accepts on the listener, whose completion key it is */
    size_t max_queued;        /* cap on a client's queued bytes, from --max-queued */
    size_t max_message;       /* the longest payload a client may send, from --max-message */
    HANDLE port;              /* the I/O completion port every client is associated with */
    HANDLE *workers;          /* worker thread handles */
    unsigned worker_count;
    /* Added to by every worker: Interlocked only; 64-bit Interlocked needs 8-byte alignment. */
    _Alignas(8) volatile LONG64 bytes_sent;

    struct room room; /* who is in the chat room */
    /* Set once quit closes every client: no one is told who left. Interlocked to set. */
    volatile LONG stopping;
};

/* Frees a client's send queue and inbox and resets their state; once no thread can use it. */
static void free_buffers(struct client *client)
{
    send_queue_clear(&client->queue);
    client->sending = 0;
    client->receive_paused = 0;
    client->peer_closed = 0;
    inbox_free(&client->inbox);
}
static void leave_room(struct client *client, const char *reason, int tell_leaver);

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
    /* Out of the room before the slot is reused: it may have joined as its socket closed. */
    leave_room(client, client->end_reason, 0);
    /* What the client never got is dropped with it: no thread can queue any more. */
    free_buffers(client);
    /* Copied while the slot is still ours: back in the pool, an accept may reuse it. */
    id = client->id;
    memcpy(reason, client->end_reason, sizeof reason);
    live = slot_pool_give(&server->pool, (unsigned)(client - server->clients));
    /*
     * Printed outside the pool's lock, which each admission and every other release need: a
     * console write is slow. So two releases may print their live counts out of order.
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
    SOCKET socket_handle;

    EnterCriticalSection(&client->lock);
    socket_handle = client->socket;
    client->socket = INVALID_SOCKET;
    if (socket_handle != INVALID_SOCKET)
        snprintf(client->end_reason, sizeof client->end_reason, "%s", reason);
    LeaveCriticalSection(&client->lock);
    if (socket_handle == INVALID_SOCKET)
        return; /* another thread closed it first, and dropped the connection's reference */
    /* Every I/O still pending must complete, or its reference is never dropped. */
    close_connection(socket_handle, abortive);
    leave_room(client, reason, 0);
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
    DWORD count = send_queue_gather(&client->queue, send->pieces, SEND_GATHER);

    memset(&send->io.overlapped, 0, sizeof send->io.overlapped);
    send->io.operation = OPERATION_SEND;
    if (WSASend(client->socket, send->pieces, count, NULL, 0, &send->io.overlapped, NULL) ==
            SOCKET_ERROR &&
        WSAGetLastError() != WSA_IO_PENDING)
        return WSAGetLastError();
    return 0;
}
/*
 * Queues one whole message in a single chunk, so that no other thread's message can come
 * between its pieces: the header, then a copy of the payload, which is `lead` (at most
 * LEAD_SIZE bytes, such as a name) followed by `text`. Any thread may call it, and it
 * starts a send if none is in flight. Returns 0; 1 if the message would take a queue
 * that is not empty past `cap` (nothing is queued); or -1 if the client has ended
 * (nothing is queued) or after a failure that ends it.
 */
static int queue_message(struct client *client, unsigned type, const char *lead, DWORD lead_length,
                         const void *text, DWORD length, size_t cap)
{
    unsigned char prefix[FRAME_HEADER_SIZE + LEAD_SIZE];
    struct send_chunk *chunk;
    int error = 0;

    frame_header(prefix, type, (size_t)lead_length + length);
    if (lead_length > 0)
        memcpy(prefix + FRAME_HEADER_SIZE, lead, lead_length);
    chunk = send_chunk_make(prefix, FRAME_HEADER_SIZE + lead_length, text, length);
    if (chunk == NULL) {
        end_client(client, 1, "no memory for its send queue");
        return -1;
    }
    EnterCriticalSection(&client->lock);
    /* Into an empty queue a message always goes: one longer than the cap is not a backlog. */
    if (client->socket == INVALID_SOCKET ||
        (client->queue.queued > 0 && client->queue.queued + chunk->length > cap)) {
        int ended = client->socket == INVALID_SOCKET;

        LeaveCriticalSection(&client->lock);
        free(chunk);
        return ended ? -1 : 1;
    }
    send_queue_push(&client->queue, chunk);
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
/* Whether the client's connection is still open (no thread has ended it). */
static int client_open(struct client *client)
{
    int open;

    EnterCriticalSection(&client->lock);
    open = client->socket != INVALID_SOCKET;
    LeaveCriticalSection(&client->lock);
    return open;
}

/* Answers a request that cannot be met; the connection stays. Returns queue_message's result. */
static int send_error(struct client *client, const char *text)
{
    return queue_message(client, FRAME_ERROR, NULL, 0, text, (DWORD)strlen(text), SIZE_MAX);
}

/* For room_snapshot: a reference on a member that is still alive, so it stays so. */
static int hold_member(struct room_member *member)
{
    return hold_if_alive(&CONTAINING_RECORD(member, struct client, member)->references);
}

/*
 * Queues one message, `lead` then `text`, to every member of the room, the sender too. A
 * member whose queue holds bytes not yet sent, and which it would take past --max-queued, is
 * ended there and then as a slow consumer: the others never wait for it. No lock is held
 * while queueing.
 */
static void broadcast(struct server *server, unsigned type, const char *lead, DWORD lead_length,
                      const void *text, DWORD length)
{
    char reason[REASON_SIZE];
    unsigned count;
    unsigned i;
    struct room_member **members = room_snapshot(&server->room, hold_member, &count);

    if (members == NULL)
        return; /* reported: with no memory for the list, no member gets this message */
    for (i = 0; i < count; i++) {
        struct client *member = CONTAINING_RECORD(members[i], struct client, member);

        if (queue_message(member, type, lead, lead_length, text, length, server->max_queued) > 0) {
            snprintf(reason, sizeof reason,
                     "too slow: its queue would pass --max-queued (%lu bytes)",
                     (unsigned long)server->max_queued);
            end_client(member, 1, reason);
        }
    }
    /*
     * Each may be the last reference, and its client then leaves the room and the room is
     * told: after the loop, so that every member has this message before that notice.
     */
    for (i = 0; i < count; i++)
        release_client(CONTAINING_RECORD(members[i], struct client, member));
    free(members);
}

/*
 * Takes a client out of the room if it is in, and tells the room: "name left", or with
 * the `reason` its connection ended; also the leaver, if `tell_leaver`. At quit no one is
 * told.
 */
static void leave_room(struct client *client, const char *reason, int tell_leaver)
{
    struct server *server = client->server;
    char name[ROOM_NAME_MAX + 1];
    char notice[NOTICE_SIZE];
    unsigned members;
    int length;

    if (!room_leave(&server->room, &client->member, name, &members))
        return;
    printf("client %lu left the room as %s (%u in the room)\n", client->id, name, members);
    if (server->stopping)
        return;
    if (reason != NULL)
        length = snprintf(notice, sizeof notice, "%s left: %s", name, reason);
    else
        length = snprintf(notice, sizeof notice, "%s left", name);
    broadcast(server, FRAME_NOTICE, NULL, 0, notice, (DWORD)length);
    if (tell_leaver)
        queue_message(client, FRAME_NOTICE, NULL, 0, notice, (DWORD)length, SIZE_MAX);
}

/* JOIN: into the room under the name the payload gives, if it is valid and free. */
static int on_join(struct client *client, const struct frame *frame)
{
    struct server *server = client->server;
    char name[ROOM_NAME_MAX + 1];
    char text[NOTICE_SIZE];
    unsigned members;
    int length;

    switch (room_join(&server->room, &client->member, frame->payload, frame->length, &members)) {
    case ROOM_JOINED: /* a valid name: it fits and prints as it is */
        printf("client %lu joined the room as %.*s (%u in the room)\n", client->id,
               (int)frame->length, (const char *)frame->payload, members);
        length = snprintf(text, sizeof text, "%.*s joined", (int)frame->length,
                          (const char *)frame->payload);
        broadcast(server, FRAME_NOTICE, NULL, 0, text, (DWORD)length);
        return client_open(client) ? 0 : -1;
    case ROOM_ALREADY_IN:
        if (room_name(&server->room, &client->member, name) == 0)
            return client_open(client) ? 0 : -1; /* dropped meanwhile, so in it no more */
        snprintf(text, sizeof text, "already in the room as %s", name);
        break;
    case ROOM_BAD_NAME:
        snprintf(text, sizeof text, "a name is 1 to %d letters, digits, '-', '_' or '.'",
                 ROOM_NAME_MAX);
        break;
    default: /* ROOM_NAME_TAKEN; the name is valid, so it fits and prints as it is */
        snprintf(text, sizeof text, "the name %.*s is taken", (int)frame->length,
                 (const char *)frame->payload);
        break;
    }
    return send_error(client, text);
}

/* SAY: "name: text" to everyone in the room. */
static int on_say(struct client *client, const struct frame *frame)
{
    char lead[LEAD_SIZE + 1];
    size_t length = room_name(&client->server->room, &client->member, lead);

    if (length == 0)
        return send_error(client, "join the room first");
    memcpy(lead + length, ": ", 2);
    broadcast(client->server, FRAME_MESSAGE, lead, (DWORD)length + 2, frame->payload,
              (DWORD)frame->length);
    /* It may have been too slow for its own line. */
    return client_open(client) ? 0 : -1;
}

/* LEAVE: out of the room, with the connection kept. */
static int on_leave(struct client *client)
{
    char name[ROOM_NAME_MAX + 1];

    if (room_name(&client->server->room, &client->member, name) == 0)
        return send_error(client, "not in the room");
    leave_room(client, NULL, 1);
    return client_open(client) ? 0 : -1;
}

/*
 * Handles one whole message. Returns 0, or -1 once the client has been ended (a type
 * only the server sends, or a failure).
 */
static int handle_message(struct client *client, const struct frame *frame)
{
    char reason[REASON_SIZE];

    switch (frame->type) {
    case FRAME_ECHO: /* the payload goes back to its sender alone, as a message of its own */
        return queue_message(client, FRAME_ECHO, NULL, 0, frame->payload, (DWORD)frame->length,
                             SIZE_MAX);
    case FRAME_JOIN:
        return on_join(client, frame);
    case FRAME_SAY:
        return on_say(client, frame);
    case FRAME_LEAVE:
        return on_leave(client);
    default: /* MESSAGE, NOTICE and ERROR */
        snprintf(reason, sizeof reason, "a message of type %u, which only the server sends",
                 frame->type);
        end_client(client, 1, reason);
        return -1;
    }
}

/*
 * Takes every whole message out of the inbox and handles it; the bytes of a message not
 * complete yet stay at the front for the next receive. Returns 0, or -1 once the client
 * has been ended (a bad header, or a failure).
 */
static int take_messages(struct client *client, const unsigned char *bytes, DWORD length)
{
    struct server *server = client->server;
    struct inbox *inbox = &client->inbox;
    size_t offset = 0;
    char reason[REASON_SIZE];

    /* Never more than one whole message and one receive, unless memory runs out. */
    if (inbox_append(inbox, bytes, length, IO_BUFFER_SIZE,
                     FRAME_HEADER_SIZE + server->max_message + IO_BUFFER_SIZE) != 0) {
        end_client(client, 1, "no memory for its inbox");
        return -1;
    }
    for (;;) {
        struct frame frame;
        enum frame_status status =
            frame_parse(inbox->bytes + offset, inbox->used - offset, server->max_message, &frame);

        if (status == FRAME_INCOMPLETE)
            break;
        if (status != FRAME_READY) {
            if (status == FRAME_TOO_LONG)
                snprintf(reason, sizeof reason, "a message longer than --max-message (%lu bytes)",
                         (unsigned long)server->max_message);
            else
                snprintf(reason, sizeof reason, "a message of unknown type %u",
                         (unsigned)inbox->bytes[offset + 4]);
            end_client(client, 1, reason);
            return -1;
        }
        if (handle_message(client, &frame) != 0)
            return -1;
        offset += frame.size;
    }
    inbox_consume(inbox, offset);
    return 0;
}
/* Takes a new client into a free slot, or refuses it by closing it when none is free. */
static void admit_client(void *context, SOCKET socket_handle, const char *peer)
{
    struct server *server = context;
    int slot = slot_pool_take(&server->pool);
    struct client *client;

    if (slot < 0) {
        printf("refused %s: all %u slots are taken\n", peer, server->max_clients);
        close_socket(socket_handle);
        return;
    }
    client = &server->clients[slot];
    /*
     * The client's address becomes the completion key: every completion for this socket
     * will carry it. Failure is NULL, not INVALID_HANDLE_VALUE.
     */
    if (CreateIoCompletionPort((HANDLE)socket_handle, server->port, (ULONG_PTR)client, 0) == NULL) {
        report_win_error("CreateIoCompletionPort");
        close_socket(socket_handle);
        slot_pool_give(&server->pool, (unsigned)slot);
        return;
    }
    client->socket = socket_handle;
    client->id = (unsigned long)InterlockedIncrement(&server->connections);
    client->references = 1; /* the open connection's reference, dropped by end_client */
    printf("client %lu connected from %s (slot %u of %u)\n", client->id, peer, (unsigned)slot + 1,
           server->max_clients);
    printf("client %lu associated with port %p, completion key %p\n", client->id,
           (void *)server->port, (void *)client);
    /* Last: once the receive is posted, a worker may be using the client. */
    post_receive(client);
}

/*
 * Handles one dequeued receive completion: takes every whole message it completes and
 * receives again at once, unless the queue has reached its cap; then on_send posts the
 * receive once it drains.
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
    if (take_messages(client, (const unsigned char *)client->receive.buffer, bytes) != 0)
        return;
    /* Checked and set under the lock that on_send checks and clears it under. */
    EnterCriticalSection(&client->lock);
    paused = client->queue.queued >= client->server->max_queued;
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
    InterlockedExchangeAdd64(&server->bytes_sent, (LONG64)bytes);
    EnterCriticalSection(&client->lock);
    /* A send may complete short; the rest stays queued and goes out next, in order. */
    send_queue_consume(&client->queue, bytes);
    resume = client->receive_paused && client->queue.queued <= server->max_queued / 2;
    if (resume)
        client->receive_paused = 0;
    if (client->queue.head == NULL || client->socket == INVALID_SOCKET) {
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
    if (slot_pool_create(&server->pool, server->max_clients) != 0 ||
        room_init(&server->room, server->max_clients) != 0)
        return -1;
    for (i = 0; i < server->max_clients; i++) {
        struct client *client = &server->clients[i];

        client->server = server;
        client->socket = INVALID_SOCKET;
        InitializeCriticalSection(&client->lock);
    }
    return 0;
}

/* Frees the pool and the accept contexts; only once no I/O is in flight and no thread runs. */
static void destroy_pool(struct server *server)
{
    unsigned i;

    for (i = 0; i < server->max_clients; i++)
        DeleteCriticalSection(&server->clients[i].lock);
    slot_pool_destroy(&server->pool);
    room_destroy(&server->room);
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
                      OPTION_MAX_QUEUED | OPTION_MAX_MESSAGE,
                  &options);
    address_length = make_listen_address(&options, &address);
    if (address_length == 0)
        return EXIT_USAGE;

    server.max_clients = options.max_clients;
    server.worker_count = options.workers ? options.workers : processor_count();
    accepts = options.accepts ? options.accepts : DEFAULT_ACCEPTS_PER_WORKER * server.worker_count;
    server.max_queued = options.max_queued;
    server.max_message = options.max_message;
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
    if (accepts_drained) {
        InterlockedExchange(&server.stopping, 1);
        close_all_clients(&server);
    }
    if (!accepts_drained ||
        wait_for_drain(server.pool.empty, DRAIN_TIMEOUT_MS, "client I/O") != 0 ||
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
        printf("connections served: %ld, bytes sent: %lld\n", (long)server.connections,
               (long long)server.bytes_sent);
    return started ? EXIT_SUCCESS : EXIT_FAILURE;
}
