/*
 * Chapter 15: chapter 14's server on the system thread pool, with no completion port and
 * no worker threads of its own.
 *
 * Each socket is bound to a thread pool I/O object (CreateThreadpoolIo), and so is the
 * listener. Before every overlapped call the pool is told one is coming
 * (StartThreadpoolIo); a call that fails at once, or succeeds at once on a socket that
 * queues no packet for that (skip-on-success), gets no callback, so the pool is told that
 * too (CancelThreadpoolIo). Every other call ends in the object's callback, on one of the
 * pool's threads: the callback is what chapter 14's worker loop was. The idle ticks come
 * from a thread pool timer, and the two things a worker used to post to its own port (a
 * paused receive let go, and a completion handed on after its inline rounds) are thread
 * pool work objects. --workers, if given, fixes the pool's size.
 *
 * Per socket, the client is now the context of the socket's callbacks, where chapter 14
 * had the completion key; per I/O, each context still starts with its OVERLAPPED, which
 * the callback gets back. The block is neither: it belongs to the receive only while the
 * client holds it, and the free list's SLIST links it while no client does.
 *
 * Everything else is chapter 14's: the accepts, the adaptive receive and its blocks, the
 * messages read where they lie, the framing, the send queue and its back-pressure, the
 * chat room, the idle timeouts, and a shutdown that now waits for every callback before
 * anything is freed.
 */
#include <winsock2.h>
#include <windows.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acceptex.h"
#include "blocks.h"
#include "chat.h"
#include "connection.h"
#include "errors.h"
#include "frame.h"
#include "inbox.h"
#include "keepalive.h"
#include "listener.h"
#include "options.h"
#include "port.h" /* only for processor_count: this chapter makes no port */
#include "quit.h"
#include "sendqueue.h"
#include "slotpool.h"
#include "teardown.h"
#include "ticker.h" /* only for tick_period: the ticks come from a thread pool timer */
#include "winsock.h"

/* Exit code for a bad command line, the same as parse_options uses. */
#define EXIT_USAGE 2
/*
 * How many receives, and sends, that complete at once a pool thread handles where it
 * started them before the next goes to a work object, so other clients get their turn. A
 * receive handled inline is a client served ahead of the queue: one round keeps the
 * latency of the others as low as chapter 08's (measured in the notes). A send handled
 * inline only drains the client's own queue, so it may go on longer.
 */
#define INLINE_RECEIVES 1
#define INLINE_SENDS    8
/* Without --workers, the most threads the pool may run per processor: as chapter 14's workers. */
#define MOST_THREADS_PER_PROCESSOR 2
/* Room for the reason a connection ended, such as "receive failed: 64 <message>". */
#define REASON_SIZE 160
/* How many queued chunks one WSASend can carry, as an array of WSABUF. */
#define SEND_GATHER 16
/* How long shutdown waits for the I/O of closed clients, or of cancelled accepts, to end. */
#define DRAIN_TIMEOUT_MS 10000

/*
 * What an I/O context is doing, so a callback knows what it was called for: a receive or
 * a send, or, for the receive's work object, a paused receive to post again.
 */
enum io_operation { OPERATION_RECEIVE, OPERATION_SEND, OPERATION_FLUSH, OPERATION_RESUME };

/* What every per-I/O context starts with: the callback reads `operation` to know which. */
struct io_context {
    OVERLAPPED overlapped; /* first, and must stay valid until its callback has run */
    enum io_operation operation;
    DWORD handed_on; /* bytes of an I/O done at once and handed to the work object */
};

/*
 * The receive: into `block` while the client is active; a probe of no bytes, with no
 * block, once it has been idle for a tick. `block`, `pending`, `posted_at` and
 * `demoting` are read by the tick, so they change under the client's lock.
 */
struct receive_context {
    struct io_context io; /* first */
    WSABUF piece;         /* the block, or a length of 0 for a probe */
    union receive_block *block;
    int pending;         /* posted, and its callback not run yet */
    ULONGLONG posted_at; /* GetTickCount64 when it was posted */
    int demoting;        /* a tick cancelled it, to take its block back */
};

/* The send in flight: the WSABUFs of the queued chunks it gathers. */
struct send_context {
    struct io_context io; /* first */
    WSABUF pieces[SEND_GATHER];
};

struct server;

/*
 * One connected client: the per-socket context, and the context of its callbacks.
 * `references` counts the open connection plus each I/O in flight and each work object
 * submitted; it changes only through Interlocked calls, since several pool threads (and
 * main, at quit) hold references. `lock` guards `socket` and `end_reason`, so a close
 * can never race a post on the same handle, and the send queue: `queue`, `sending`,
 * `receive_paused` and `peer_closed`, since any thread may queue while a callback
 * handles a send. The inbox needs no lock: only the callback that handles the client's
 * one receive touches it. `member` is the room's, under
 * the room's lock.
 */
struct client {
    SOCKET socket;
    unsigned long id; /* 1 for the first connection, 2 for the next... */
    struct receive_context receive;
    struct send_context send; /* never the receive's context: each operation has its own */
    struct server *server;
    /*
     * The socket's thread pool I/O object. It outlives the connection: closed when the slot
     * is next used, or at the end, once its last callback has returned (the connection's
     * last reference is dropped inside a callback, which is still running then).
     */
    PTP_IO io;
    /* Where an I/O done at once goes after its inline rounds, so other clients get a turn. */
    PTP_WORK receive_work; /* also lets a paused receive go */
    PTP_WORK send_work;
    CRITICAL_SECTION lock;
    volatile LONG references;
    char end_reason[REASON_SIZE];
    struct send_queue queue; /* copies of what is to be sent, whole messages, in order */
    int sending;             /* a WSASend is in flight: only one at a time, to keep the order */
    int receive_paused;      /* back-pressure: the next receive waits for the queue to drain */
    int peer_closed;         /* FIN received: close once what is queued has gone out */
    struct inbox inbox;      /* received bytes not yet a whole message */

    struct room_member member; /* its place in the chat room, if it has joined */

    /*
     * GetTickCount64 when it last received bytes or completed a send, and when the first
     * byte of a message not yet whole arrived (0: none). Its callbacks write them and the
     * tick reads them, so each is read and written with Interlocked calls.
     */
    _Alignas(8) volatile LONG64 last_active;
    _Alignas(8) volatile LONG64 message_started;
};

/* The server's state. Callbacks take slots from the pool (in admit_client) and give them back. */
struct server {
    struct client *clients; /* max_clients of them, one per slot of the pool */
    unsigned max_clients;
    struct slot_pool pool;
    /* Clients admitted so far, for client ids: Interlocked, since any pool thread admits. */
    volatile LONG connections;
    struct acceptex acceptex;        /* the accepts on the listener, its callback's context */
    size_t max_queued;               /* cap on a client's queued bytes, from --max-queued */
    size_t max_message;              /* the longest payload a client may send, from --max-message */
    PTP_POOL threads;                /* the server's own thread pool */
    TP_CALLBACK_ENVIRON environment; /* binds every object created with it to that pool */
    unsigned thread_count;           /* from --workers: the pool's size; 0 for the system's */
    /* Added to by every callback: Interlocked only; 64-bit Interlocked needs 8-byte alignment. */
    _Alignas(8) volatile LONG64 bytes_sent;

    struct chat chat; /* the chat room, and how it reaches the clients */

    LONG64 idle_timeout_ms; /* from --idle-timeout */
    DWORD keepalive_ms;     /* from --keepalive; 0 for none */
    PTP_TIMER timer;        /* the thread pool timer whose callback is the tick */
    DWORD tick_ms;          /* its period, set before the first tick */
    volatile LONG ticking;  /* a tick's pass is running: Interlocked, as ticks may overlap */

    struct block_pool blocks; /* the receive blocks no client holds (common/blocks.h) */

    int skip_on_success; /* sockets queue no packet for an I/O that completes at once */
    int verbose;         /* a line per connection and disconnection, from --verbose */
};

/* Frees a client's receive block, send queue and inbox and resets their state; once no thread can
 * use it. */
static void free_buffers(struct client *client)
{
    if (client->receive.block != NULL)
        block_pool_give(&client->server->blocks, client->receive.block);
    client->receive.block = NULL;
    client->receive.pending = 0;
    client->receive.demoting = 0;
    send_queue_clear(&client->queue);
    client->sending = 0;
    client->receive_paused = 0;
    client->peer_closed = 0;
    inbox_free(&client->inbox);
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
    /* Out of the room before the slot is reused: it may have joined as its socket closed. */
    chat_leave(&server->chat, &client->member, client->end_reason);
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
    if (server->verbose)
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
    chat_leave(&client->server->chat, &client->member, reason);
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

/* What is left to do once the lock is left, after sends were posted or handled. */
struct send_outcome {
    int error;          /* a call failed at once with this: end the client */
    const char *failed; /* which call */
    int resume;         /* the queue drained below the low mark: the paused receive may go */
    int finished;       /* all is sent and the peer has closed: close */
};

/* Drops `bytes` sent from the queue, and counts them; call with the lock held. */
static void sent_locked(struct client *client, DWORD bytes, struct send_outcome *outcome)
{
    struct server *server = client->server;

    InterlockedExchangeAdd64(&server->bytes_sent, (LONG64)bytes);
    InterlockedExchange64(&client->last_active, (LONG64)GetTickCount64());
    /* A send may complete short; the rest stays queued and goes out next, in order. */
    send_queue_consume(&client->queue, bytes);
    if (client->receive_paused && client->queue.queued <= server->max_queued / 2) {
        client->receive_paused = 0;
        outcome->resume = 1;
    }
}

/*
 * Posts WSASends of what is queued, up to SEND_GATHER chunks each, for as long as they
 * complete at once: with FILE_SKIP_COMPLETION_PORT_ON_SUCCESS such a send gets no
 * callback, so it is handled here, a few rounds at most, then handed to the send's work
 * object. Call with the lock held and `sending` set; it clears `sending` once the queue
 * is empty or the socket closed.
 */
static void send_locked(struct client *client, struct send_outcome *outcome)
{
    struct send_context *send = &client->send;
    int rounds;

    for (rounds = 0; client->queue.head != NULL && client->socket != INVALID_SOCKET; rounds++) {
        DWORD count = send_queue_gather(&client->queue, send->pieces, SEND_GATHER);
        DWORD sent;

        memset(&send->io.overlapped, 0, sizeof send->io.overlapped);
        send->io.operation = OPERATION_SEND;
        hold_client(client); /* the send's reference, dropped when its callback has handled it */
        /* Told before every call: else the pool ignores the completion, and memory is corrupted. */
        StartThreadpoolIo(client->io);
        /* No count pointer with an OVERLAPPED: the WSASend page warns of erroneous results. */
        if (WSASend(client->socket, send->pieces, count, NULL, 0, &send->io.overlapped, NULL) ==
            SOCKET_ERROR) {
            int error = WSAGetLastError();

            if (error != WSA_IO_PENDING) {
                CancelThreadpoolIo(client->io); /* failed at once: no callback will come */
                outcome->error = error;         /* the caller drops the reference */
                outcome->failed = "WSASend";
            }
            return;
        }
        if (!client->server->skip_on_success)
            return; /* done at once, but its callback comes all the same */
        /* No callback will come: the pool must hear that from us. */
        CancelThreadpoolIo(client->io);
        /* Done at once: the count is in InternalHigh, set "if the request is completed without
         * errors". */
        sent = (DWORD)send->io.overlapped.InternalHigh;
        if (rounds == INLINE_SENDS) {
            /* Handed on, with its reference: other clients get a turn on this thread. */
            send->io.handed_on = sent;
            SubmitThreadpoolWork(client->send_work);
            return;
        }
        /* Handled here: its reference goes, as the caller holds one. */
        InterlockedDecrement(&client->references);
        sent_locked(client, sent, outcome);
    }
    client->sending = 0;
    outcome->finished = client->peer_closed;
}

static void resume_receive(struct client *client);
static void post_receive(struct client *client);

/*
 * Starts a send later, on a pool thread, through the send's work object: with
 * skip-on-success a send completes at once, so none would be in flight to gather behind,
 * and a broadcast to a hundred members would make a hundred sends of one message each,
 * over and over. Call with the lock held and `sending` just set; no send is in flight,
 * so the context is free to say what the work is for.
 */
static void flush_later_locked(struct client *client)
{
    client->send.io.operation = OPERATION_FLUSH;
    hold_client(client); /* the work's reference, as if it were an I/O */
    SubmitThreadpoolWork(client->send_work);
}

/* Does what a send outcome says, with the lock left. */
static void follow_send(struct client *client, const struct send_outcome *outcome)
{
    if (outcome->error != 0) {
        /* No completion will come for a send that was never posted: drop its reference. */
        end_client_after_error(client, outcome->failed, (unsigned long)outcome->error);
        release_client(client);
    } else if (outcome->finished) {
        end_client(client, 0, "peer closed the connection");
    } else if (outcome->resume) {
        resume_receive(client);
    }
}

/*
 * Queues one whole message in a single chunk, so that no other thread's message can come
 * between its pieces: the header, then a copy of the payload, which is `lead` (at most
 * CHAT_LEAD_MAX bytes, such as a name) followed by `text`. Any thread may call it. If no
 * send is in flight it starts one: here, when `now` (an echo, for the client this thread
 * serves), or else through the send's work object, so that the messages a broadcast
 * queues meanwhile go out together in one gathered send. Returns 0; 1 if the message
 * would take a queue that is not empty past `cap` (nothing is queued); or -1 if the
 * client has ended (nothing is queued) or after a failure that ends it.
 */
static int queue_message(struct client *client, unsigned type, const char *lead, DWORD lead_length,
                         const void *text, DWORD length, size_t cap, int now)
{
    unsigned char prefix[FRAME_HEADER_SIZE + CHAT_LEAD_MAX];
    struct send_outcome outcome = {0};
    struct send_chunk *chunk;

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
        if (now)
            send_locked(client, &outcome);
        else
            flush_later_locked(client);
    }
    LeaveCriticalSection(&client->lock);
    follow_send(client, &outcome);
    return outcome.error != 0 ? -1 : 0;
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

/* The chat room's ways into the clients (common/chat.h), each given a member's place. */
static struct client *client_of(struct room_member *member)
{
    return CONTAINING_RECORD(member, struct client, member);
}

static int hold_member(struct room_member *member)
{
    return hold_if_alive(&client_of(member)->references);
}

static void release_member(struct room_member *member)
{
    release_client(client_of(member));
}

static int queue_to_member(struct room_member *member, unsigned type, const char *lead,
                           size_t lead_length, const void *text, size_t length, size_t cap)
{
    return queue_message(client_of(member), type, lead, (DWORD)lead_length, text, (DWORD)length,
                         cap, 0);
}

static void end_member(struct room_member *member, const char *reason)
{
    end_client(client_of(member), 1, reason);
}

static unsigned long member_number(struct room_member *member)
{
    return client_of(member)->id;
}

static const struct chat_ops chat_ops = {hold_member, release_member, queue_to_member, end_member,
                                         member_number};

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
                             SIZE_MAX, 1);
    case FRAME_JOIN:
    case FRAME_SAY:
    case FRAME_LEAVE: /* it may end this client too, when it is too slow for its own line */
        chat_handle(&client->server->chat, &client->member, frame);
        return client_open(client) ? 0 : -1;
    default: /* MESSAGE, NOTICE and ERROR */
        snprintf(reason, sizeof reason, "a message of type %u, which only the server sends",
                 frame->type);
        end_client(client, 1, reason);
        return -1;
    }
}

/*
 * Handles every whole message at the front of `data`, and says in `taken` how many bytes
 * they filled. Returns 0, or -1 once the client has been ended (a bad header, or a failure).
 */
static int handle_messages(struct client *client, const unsigned char *data, size_t size,
                           size_t *taken)
{
    size_t max_message = client->server->max_message;
    size_t offset = 0;
    char reason[REASON_SIZE];

    for (;;) {
        struct frame frame;
        enum frame_status status = frame_parse(data + offset, size - offset, max_message, &frame);

        if (status == FRAME_INCOMPLETE)
            break;
        if (status != FRAME_READY) {
            if (status == FRAME_TOO_LONG)
                snprintf(reason, sizeof reason, "a message longer than --max-message (%lu bytes)",
                         (unsigned long)max_message);
            else
                snprintf(reason, sizeof reason, "a message of unknown type %u",
                         (unsigned)data[offset + 4]);
            end_client(client, 1, reason);
            return -1;
        }
        if (handle_message(client, &frame) != 0)
            return -1;
        offset += frame.size;
    }
    *taken = offset;
    return 0;
}

/*
 * Handles the whole messages in bytes that arrived. They are read where they lie, in the
 * receive block; only the part of a message not yet whole is copied into the inbox, which
 * is freed once it is empty again, so an idle client holds no inbox either. Returns 0, or
 * -1 once the client has been ended.
 */
static int take_messages(struct client *client, const unsigned char *bytes, DWORD length)
{
    struct inbox *inbox = &client->inbox;
    /* Never more than one whole message and one receive, unless memory runs out. */
    size_t most = FRAME_HEADER_SIZE + client->server->max_message + RECEIVE_BLOCK_SIZE;
    int appended = inbox->used > 0;
    const unsigned char *data = bytes;
    size_t size = length;
    size_t taken;

    /* Bytes left over from an earlier receive: this one's go after them. */
    if (appended) {
        if (inbox_append(inbox, bytes, length, length, most) != 0) {
            end_client(client, 1, "no memory for its inbox");
            return -1;
        }
        data = inbox->bytes;
        size = inbox->used;
    }
    if (handle_messages(client, data, size, &taken) != 0)
        return -1;
    if (appended) {
        inbox_consume(inbox, taken);
    } else if (taken < size &&
               inbox_append(inbox, data + taken, size - taken, size - taken, most) != 0) {
        end_client(client, 1, "no memory for its inbox");
        return -1;
    }
    if (inbox->used == 0)
        inbox_free(inbox);
    /*
     * A message not yet whole is timed from its first byte, so a client that trickles one
     * in is closed however active it looks. One that finished a message here has made
     * progress, so what is left of the next one is timed afresh.
     */
    if (inbox->used == 0)
        InterlockedExchange64(&client->message_started, 0);
    else if (taken > 0 || InterlockedCompareExchange64(&client->message_started, 0, 0) == 0)
        InterlockedExchange64(&client->message_started, (LONG64)GetTickCount64());
    return 0;
}
/*
 * Readies an accepted socket: no Nagle delay for small messages, non-blocking for the
 * reads that follow a probe, keep-alive if asked for, and, where the provider allows it,
 * no completion packet for an I/O that succeeds at once. Returns 0, or -1 after
 * reporting the error (a socket left half ready would get its completions twice).
 */
static int prepare_socket(struct server *server, SOCKET socket_handle)
{
    u_long non_blocking = 1;

    if (set_int_option(socket_handle, IPPROTO_TCP, TCP_NODELAY, "setsockopt(TCP_NODELAY)", 1) != 0)
        return -1;
    if (ioctlsocket(socket_handle, FIONBIO, &non_blocking) == SOCKET_ERROR) {
        report_wsa_error("ioctlsocket(FIONBIO)");
        return -1;
    }
    if (server->skip_on_success && !SetFileCompletionNotificationModes(
                                       (HANDLE)socket_handle, FILE_SKIP_COMPLETION_PORT_ON_SUCCESS |
                                                                  FILE_SKIP_SET_EVENT_ON_HANDLE)) {
        report_win_error("SetFileCompletionNotificationModes");
        return -1;
    }
    if (server->keepalive_ms != 0)
        start_keepalive(socket_handle, server->keepalive_ms);
    return 0;
}

/*
 * Whether every TCP provider for the address family hands out real file handles
 * (XP1_IFS_HANDLES). Only then is FILE_SKIP_COMPLETION_PORT_ON_SUCCESS safe: with a
 * layered provider that is not, completions can be lost.
 */
static int providers_allow_skipping(int family)
{
    INT protocols[] = {IPPROTO_TCP, 0};
    WSAPROTOCOL_INFOW *infos;
    DWORD size = 0;
    int count;
    int i;
    int all_ifs = 1;

    if (WSAEnumProtocolsW(protocols, NULL, &size) != SOCKET_ERROR ||
        WSAGetLastError() != WSAENOBUFS) {
        report_wsa_error("WSAEnumProtocols");
        return 0;
    }
    infos = malloc(size);
    if (infos == NULL) {
        report_errno("malloc");
        return 0;
    }
    count = WSAEnumProtocolsW(protocols, infos, &size);
    if (count == SOCKET_ERROR) {
        report_wsa_error("WSAEnumProtocols");
        all_ifs = 0;
    }
    for (i = 0; i < count; i++)
        if (infos[i].iAddressFamily == family && !(infos[i].dwServiceFlags1 & XP1_IFS_HANDLES))
            all_ifs = 0;
    free(infos);
    return all_ifs;
}

static VOID CALLBACK on_io(PTP_CALLBACK_INSTANCE instance, PVOID context, PVOID overlapped,
                           ULONG result, ULONG_PTR bytes, PTP_IO io);

/*
 * Closes the I/O object of a slot's last connection, once its callbacks have returned: the
 * one that dropped the last reference may still be on its way out. Never from a callback
 * of that object, which would wait for itself.
 */
static void close_io(struct client *client)
{
    if (client->io == NULL)
        return;
    WaitForThreadpoolIoCallbacks(client->io, FALSE);
    CloseThreadpoolIo(client->io);
    client->io = NULL;
}

/*
 * Takes a new client into a free slot, or refuses it by closing it when none is free.
 * Runs in the listener's callback, so it may wait for another object's callbacks.
 */
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
    close_io(client);
    /*
     * The client's address becomes the context of every callback for this socket, as the
     * completion key was. The pool associates the socket with a port of its own.
     */
    client->io = CreateThreadpoolIo((HANDLE)socket_handle, on_io, client, &server->environment);
    if (client->io == NULL) {
        report_win_error("CreateThreadpoolIo");
        close_socket(socket_handle);
        slot_pool_give(&server->pool, (unsigned)slot);
        return;
    }
    if (prepare_socket(server, socket_handle) != 0) {
        close_socket(socket_handle);
        slot_pool_give(&server->pool, (unsigned)slot);
        return;
    }
    client->socket = socket_handle;
    client->id = (unsigned long)InterlockedIncrement(&server->connections);
    /* Before the reference that lets a tick look at the slot: it must not see a stale time. */
    InterlockedExchange64(&client->message_started, 0);
    InterlockedExchange64(&client->last_active, (LONG64)GetTickCount64());
    client->references = 1; /* the open connection's reference, dropped by end_client */
    if (server->verbose) {
        printf("client %lu connected from %s (slot %u of %u)\n", client->id, peer,
               (unsigned)slot + 1, server->max_clients);
        printf("client %lu bound to thread pool I/O object %p, context %p\n", client->id,
               (void *)client->io, (void *)client);
    }
    /* Last: once the probe is posted, a callback may be using the client. */
    post_receive(client);
}

/*
 * Takes the messages out of bytes that arrived, and pauses the receive when the queue
 * has reached its cap. Returns 0, or -1 once the client has been ended.
 */
static int take_received(struct client *client, const unsigned char *bytes, DWORD length)
{
    int full;

    InterlockedExchange64(&client->last_active, (LONG64)GetTickCount64());
    if (take_messages(client, bytes, length) != 0)
        return -1;
    /* Checked and set under the lock that the send side checks and clears it under. */
    EnterCriticalSection(&client->lock);
    full = client->queue.queued >= client->server->max_queued;
    client->receive_paused = full;
    LeaveCriticalSection(&client->lock);
    return 0;
}

/*
 * After a probe: takes a block and reads once what the socket holds, without waiting
 * (it is non-blocking). Returns 1 once the peer has closed its side, 0 when the next
 * receive can go into the block, or -1 once the client has been ended.
 */
static int read_after_probe(struct client *client)
{
    struct receive_context *receive = &client->receive;
    union receive_block *block = block_pool_take(&client->server->blocks);
    WSABUF piece;
    DWORD got = 0;
    DWORD flags = 0;
    int error = 0;

    if (block == NULL) {
        end_client(client, 1, "no memory for a receive block");
        return -1;
    }
    piece.buf = (char *)block->bytes;
    piece.len = RECEIVE_BLOCK_SIZE;
    EnterCriticalSection(&client->lock);
    receive->block = block; /* under the lock that a tick reads it under */
    if (client->socket == INVALID_SOCKET)
        error = WSAENOTSOCK;
    else if (WSARecv(client->socket, &piece, 1, &got, &flags, NULL, NULL) == SOCKET_ERROR)
        error = WSAGetLastError();
    LeaveCriticalSection(&client->lock);
    if (error == WSAEWOULDBLOCK)
        return 0; /* nothing after all: the receive into the block will wait for it */
    if (error != 0) {
        end_client_after_error(client, "receive", (unsigned long)error);
        return -1;
    }
    if (got == 0)
        return 1;
    return take_received(client, block->bytes, got);
}

/*
 * Handles a receive that completed with BYTES: a probe (no block yet), whose data is then
 * read; or a receive into the block. Returns 1 when the next receive is to be posted; 0
 * when not (the client ended, the peer closed, or the receive is paused).
 */
static int receive_completed(struct client *client, DWORD bytes)
{
    struct receive_context *receive = &client->receive;
    int result;
    int sending;
    int paused;

    if (receive->block == NULL)
        result = read_after_probe(client);
    else if (bytes == 0)
        result = 1; /* a receive into a block that completes with 0 bytes: the peer's FIN */
    else
        result = take_received(client, receive->block->bytes, bytes);
    if (result < 0)
        return 0;
    EnterCriticalSection(&client->lock);
    if (result > 0)
        client->peer_closed = 1;
    sending = client->sending;
    paused = client->receive_paused;
    LeaveCriticalSection(&client->lock);
    if (result > 0) {
        /*
         * The peer closed its side (sent FIN), but it may still read. Close now only if
         * nothing is on its way; else the send side closes once the queue is empty.
         */
        if (!sending)
            end_client(client, 0, "peer closed the connection");
        return 0;
    }
    return !paused;
}

/*
 * Posts the receive: into the client's block while it has one, else a probe of no bytes,
 * which completes when data arrives or the peer closes and holds no memory meanwhile.
 * With skip-on-success it may complete at once and queue no packet; then it is handled
 * here, for a few rounds, after which its completion is handed to the receive's work
 * object so that other clients get their turn.
 */
static void post_receive(struct client *client)
{
    struct receive_context *receive = &client->receive;
    struct server *server = client->server;
    int rounds;

    for (rounds = 0;; rounds++) {
        DWORD flags = 0; /* in and out: must be set before the call */
        int error = 0;
        DWORD got;

        /* A fresh OVERLAPPED for every call: the system uses it while the I/O is pending. */
        memset(&receive->io.overlapped, 0, sizeof receive->io.overlapped);
        receive->io.operation = OPERATION_RECEIVE;
        receive->piece.buf = receive->block != NULL ? (char *)receive->block->bytes : NULL;
        receive->piece.len = receive->block != NULL ? RECEIVE_BLOCK_SIZE : 0;
        hold_client(client); /* the receive's reference, dropped when its callback has handled it */
        EnterCriticalSection(&client->lock);
        if (client->socket == INVALID_SOCKET) {
            error = WSAENOTSOCK; /* closed already: nothing to post on */
        } else {
            /* Told before every call: else the pool ignores the completion, memory is corrupted. */
            StartThreadpoolIo(client->io);
            if (WSARecv(client->socket, &receive->piece, 1, NULL, &flags, &receive->io.overlapped,
                        NULL) == SOCKET_ERROR)
                error = WSAGetLastError();
            /* Failed at once, or done at once with skip-on-success: no callback will come. */
            if ((error != 0 && error != WSA_IO_PENDING) || (error == 0 && server->skip_on_success))
                CancelThreadpoolIo(client->io);
        }
        receive->pending = error == WSA_IO_PENDING || (error == 0 && !server->skip_on_success);
        receive->posted_at = GetTickCount64();
        LeaveCriticalSection(&client->lock);
        if (error == WSA_IO_PENDING || (error == 0 && !server->skip_on_success))
            return; /* its callback will come */
        /*
         * Done at once: the count is in InternalHigh, which the OVERLAPPED page says the
         * system sets "if the request is completed without errors".
         */
        got = (DWORD)receive->io.overlapped.InternalHigh;
        if (error == 0 && rounds == INLINE_RECEIVES) {
            /* Handed on, with its reference: other clients get a turn on this thread. */
            receive->io.handed_on = got;
            SubmitThreadpoolWork(client->receive_work);
            return;
        }
        if (error != 0) {
            /* No completion will come for an I/O that was never posted: drop its reference. */
            end_client_after_error(client, "WSARecv", (unsigned long)error);
            release_client(client);
            return;
        }
        /* No callback will come: handled here. */
        if (!receive_completed(client, got)) {
            release_client(client);
            return;
        }
        release_client(client); /* the caller holds another reference, so this is not the last */
    }
}

/*
 * Lets a paused receive go again, from the thread that drained the queue: through the
 * receive's work object, so that a pool thread posts it, not this thread, which may be in
 * the middle of another client's broadcast. No receive is pending while it is paused, so
 * the receive's context is free to say what the work is for.
 */
static void resume_receive(struct client *client)
{
    struct receive_context *receive = &client->receive;

    receive->io.operation = OPERATION_RESUME;
    hold_client(client); /* the work's reference, as if it were an I/O */
    SubmitThreadpoolWork(client->receive_work);
}

/*
 * Handles one receive's completion. A receive that a tick cancelled to take its
 * block back (error 995) goes back to probing; any other failure ends the client.
 */
static void on_receive(struct client *client, DWORD error, DWORD bytes)
{
    struct receive_context *receive = &client->receive;
    union receive_block *returned = NULL;
    int demoting;

    EnterCriticalSection(&client->lock);
    receive->pending = 0;
    demoting = receive->demoting;
    receive->demoting = 0;
    if (error == ERROR_OPERATION_ABORTED && demoting && client->socket != INVALID_SOCKET) {
        returned = receive->block;
        receive->block = NULL;
    }
    LeaveCriticalSection(&client->lock);
    if (returned != NULL) {
        block_pool_give(&client->server->blocks, returned);
        post_receive(client); /* now a probe */
        return;
    }
    if (error != 0) {
        /*
         * A failed I/O still ends in the callback, and still needs cleaning up. A
         * peer's reset usually shows as 64 (ERROR_NETNAME_DELETED) here, not 10054.
         */
        end_client_after_error(client, "receive", error);
        return;
    }
    if (receive_completed(client, bytes))
        post_receive(client);
}

/*
 * Handles one send's completion: drops what was sent, sends what is still queued,
 * and lets a paused receive go once the queue is down to half its cap.
 */
static void on_send(struct client *client, DWORD error, DWORD bytes)
{
    struct send_outcome outcome = {0};

    if (error != 0) {
        end_client_after_error(client, "send", error);
        return;
    }
    EnterCriticalSection(&client->lock);
    sent_locked(client, bytes, &outcome);
    send_locked(client, &outcome);
    LeaveCriticalSection(&client->lock);
    follow_send(client, &outcome);
}

/* Handles a flush: sends all that is queued, in as few gathered sends as it takes. */
static void on_flush(struct client *client)
{
    struct send_outcome outcome = {0};

    EnterCriticalSection(&client->lock);
    send_locked(client, &outcome);
    LeaveCriticalSection(&client->lock);
    follow_send(client, &outcome);
}

/*
 * Takes the block back from a client whose receive has waited a whole tick for data: its
 * receive is cancelled, and its completion (995) puts the block back on the free list and
 * posts a probe instead. A receive that completes first keeps the block.
 */
static void release_idle_block(struct client *client, LONG64 now)
{
    struct receive_context *receive = &client->receive;

    EnterCriticalSection(&client->lock);
    if (client->socket != INVALID_SOCKET && receive->pending && receive->block != NULL &&
        !receive->demoting && now - (LONG64)receive->posted_at >= (LONG64)client->server->tick_ms) {
        /* Only this receive: the OVERLAPPED names it. Not found: it has just completed. */
        if (CancelIoEx((HANDLE)client->socket, &receive->io.overlapped))
            receive->demoting = 1;
        else if (GetLastError() != ERROR_NOT_FOUND)
            report_win_error("CancelIoEx");
    }
    LeaveCriticalSection(&client->lock);
}

/* Ends a client that has been idle, or in the middle of a message, for too long. */
static void check_client(struct client *client, LONG64 now)
{
    LONG64 timeout = client->server->idle_timeout_ms;
    LONG64 started = InterlockedCompareExchange64(&client->message_started, 0, 0);
    char reason[REASON_SIZE];

    if (started != 0 && now - started > timeout) {
        snprintf(reason, sizeof reason, "a message not finished within %lld s",
                 (long long)(timeout / 1000));
        end_client(client, 1, reason);
    } else if (now - InterlockedCompareExchange64(&client->last_active, 0, 0) > timeout) {
        snprintf(reason, sizeof reason, "idle for %lld s", (long long)(timeout / 1000));
        end_client(client, 0, reason);
    }
}

/*
 * The timer's callback, on a pool thread: one pass over the pool, whose cost grows with
 * the slots, busy or not, and not with the traffic. A slot is looked at only while a
 * reference holds it. The pool may start the next tick while a pass still runs (a thread
 * pool timer does not wait for its callback); that tick is skipped, as one pass is enough.
 */
static VOID CALLBACK on_tick(PTP_CALLBACK_INSTANCE instance, PVOID context, PTP_TIMER timer)
{
    struct server *server = context;
    LONG64 now = (LONG64)GetTickCount64();
    unsigned i;

    (void)instance;
    (void)timer;
    if (InterlockedCompareExchange(&server->ticking, 1, 0) != 0)
        return;
    for (i = 0; i < server->max_clients; i++) {
        struct client *client = &server->clients[i];

        if (hold_if_alive(&client->references)) {
            check_client(client, now);
            release_idle_block(client, now);
            release_client(client);
        }
    }
    InterlockedExchange(&server->ticking, 0);
}

/*
 * Starts the timer whose callback is the tick, every `period_ms`; returns 0, or -1 after
 * reporting the error.
 */
static int start_ticks(struct server *server, DWORD period_ms)
{
    ULARGE_INTEGER due;
    FILETIME due_time;

    server->tick_ms = period_ms;
    server->timer = CreateThreadpoolTimer(on_tick, server, &server->environment);
    if (server->timer == NULL) {
        report_win_error("CreateThreadpoolTimer");
        return -1;
    }
    /* A negative due time is relative to now, in units of 100 nanoseconds. */
    due.QuadPart = (ULONGLONG)(-((LONG64)period_ms * 10000));
    due_time.dwLowDateTime = due.LowPart;
    due_time.dwHighDateTime = due.HighPart;
    /* A window of 0: no coalescing with other timers, so the ticks stay a period apart. */
    SetThreadpoolTimer(server->timer, &due_time, period_ms, 0);
    return 0;
}

/*
 * Stops the timer: no new tick is queued after SetThreadpoolTimer with NULL, the ticks
 * queued but not started are cancelled, and a tick that is running is waited for.
 */
static void stop_ticks(struct server *server)
{
    if (server->timer == NULL)
        return;
    SetThreadpoolTimer(server->timer, NULL, 0, 0);
    WaitForThreadpoolTimerCallbacks(server->timer, TRUE);
    CloseThreadpoolTimer(server->timer);
    server->timer = NULL;
}

/*
 * The I/O callback of every client socket, on a pool thread: the pool has dequeued the
 * completion from its own port, and hands over the context (the client), the OVERLAPPED
 * and the result, already a Win32 error code (0 for success).
 */
static VOID CALLBACK on_io(PTP_CALLBACK_INSTANCE instance, PVOID context, PVOID overlapped,
                           ULONG result, ULONG_PTR bytes, PTP_IO io)
{
    struct client *client = context;
    struct io_context *operation = CONTAINING_RECORD(overlapped, struct io_context, overlapped);

    (void)instance;
    (void)io;
    if (operation->operation == OPERATION_RECEIVE)
        on_receive(client, result, (DWORD)bytes);
    else
        on_send(client, result, (DWORD)bytes);
    /* This completion's reference: the handler above has posted the next I/O, if any. */
    release_client(client);
}

/*
 * The receive's work object, on a pool thread: a receive done at once and handed on, or
 * a paused receive to post again. Either way it carries a reference, dropped here.
 */
static VOID CALLBACK on_receive_work(PTP_CALLBACK_INSTANCE instance, PVOID context, PTP_WORK work)
{
    struct client *client = context;
    struct receive_context *receive = &client->receive;

    (void)instance;
    (void)work;
    if (receive->io.operation == OPERATION_RESUME)
        post_receive(client);
    else
        on_receive(client, 0, receive->io.handed_on);
    release_client(client);
}

/* The send's work object, on a pool thread: a flush, or a send done at once and handed on. */
static VOID CALLBACK on_send_work(PTP_CALLBACK_INSTANCE instance, PVOID context, PTP_WORK work)
{
    struct client *client = context;

    (void)instance;
    (void)work;
    if (client->send.io.operation == OPERATION_FLUSH)
        on_flush(client);
    else
        on_send(client, 0, client->send.io.handed_on);
    release_client(client);
}

/*
 * Makes the server's own thread pool and the environment that binds objects to it. With
 * --workers N its size is fixed at N threads, as chapter 14's workers were; without, the
 * pool keeps the system's limits and grows and shrinks as it sees fit. Returns 0, or -1
 * after reporting the error.
 */
static int start_thread_pool(struct server *server)
{
    server->threads = CreateThreadpool(NULL);
    if (server->threads == NULL) {
        report_win_error("CreateThreadpool");
        return -1;
    }
    /* The maximum first, so that the minimum is never set above it. */
    SetThreadpoolThreadMaximum(server->threads,
                               server->thread_count != 0
                                   ? server->thread_count
                                   : MOST_THREADS_PER_PROCESSOR * processor_count());
    if (server->thread_count != 0 &&
        !SetThreadpoolThreadMinimum(server->threads, server->thread_count)) {
        report_win_error("SetThreadpoolThreadMinimum");
        return -1;
    }
    InitializeThreadpoolEnvironment(&server->environment);
    SetThreadpoolCallbackPool(&server->environment, server->threads);
    return 0;
}

/* Closes the pool; once every object bound to it is closed and its callbacks have returned. */
static void stop_thread_pool(struct server *server)
{
    if (server->threads == NULL)
        return;
    DestroyThreadpoolEnvironment(&server->environment);
    CloseThreadpool(server->threads);
    server->threads = NULL;
}

/*
 * Allocates the pool of slots with every slot free, and each slot's two work objects, which
 * serve every connection the slot holds; returns 0, or -1 after reporting the error.
 */
static int create_pool(struct server *server)
{
    unsigned i;

    server->clients = calloc(server->max_clients, sizeof *server->clients);
    if (server->clients == NULL) {
        report_errno("calloc");
        return -1;
    }
    if (slot_pool_create(&server->pool, server->max_clients) != 0 ||
        chat_init(&server->chat, server->max_clients, server->max_queued, &chat_ops) != 0)
        return -1;
    block_pool_init(&server->blocks);
    for (i = 0; i < server->max_clients; i++) {
        struct client *client = &server->clients[i];

        client->server = server;
        client->socket = INVALID_SOCKET;
        InitializeCriticalSection(&client->lock);
        client->receive_work = CreateThreadpoolWork(on_receive_work, client, &server->environment);
        client->send_work = CreateThreadpoolWork(on_send_work, client, &server->environment);
        if (client->receive_work == NULL || client->send_work == NULL) {
            report_win_error("CreateThreadpoolWork");
            return -1;
        }
    }
    return 0;
}

/*
 * Waits for every callback of every slot's objects to return, and closes them; once no
 * I/O is in flight and no reference is held, so that no callback can be queued again.
 */
static void close_slot_objects(struct server *server)
{
    unsigned i;

    for (i = 0; i < server->max_clients; i++) {
        struct client *client = &server->clients[i];

        close_io(client);
        if (client->receive_work != NULL) {
            WaitForThreadpoolWorkCallbacks(client->receive_work, FALSE);
            CloseThreadpoolWork(client->receive_work);
            client->receive_work = NULL;
        }
        if (client->send_work != NULL) {
            WaitForThreadpoolWorkCallbacks(client->send_work, FALSE);
            CloseThreadpoolWork(client->send_work);
            client->send_work = NULL;
        }
    }
}

/* Frees the slots and the accept contexts; only once no callback can run. */
static void destroy_pool(struct server *server)
{
    unsigned i;

    block_pool_destroy(&server->blocks);
    for (i = 0; i < server->max_clients; i++)
        DeleteCriticalSection(&server->clients[i].lock);
    slot_pool_destroy(&server->pool);
    chat_destroy(&server->chat);
    free(server->clients);
    acceptex_destroy(&server->acceptex);
}

/*
 * Closes every connected client. Each close makes the I/O pending on that socket complete
 * (with an error), and the callbacks release the client as they handle those completions.
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
    LONG blocks;

    /* A pipe makes stdout fully buffered on Windows; a reader must see each line at once. */
    setvbuf(stdout, NULL, _IONBF, 0);
    parse_options(argc, argv,
                  OPTION_PORT | OPTION_BIND | OPTION_MAX_CLIENTS | OPTION_WORKERS | OPTION_ACCEPTS |
                      OPTION_MAX_QUEUED | OPTION_MAX_MESSAGE | OPTION_IDLE_TIMEOUT |
                      OPTION_KEEPALIVE | OPTION_VERBOSE,
                  &options);
    address_length = make_listen_address(&options, &address);
    if (address_length == 0)
        return EXIT_USAGE;

    server.max_clients = options.max_clients;
    /*
     * Without --workers the pool decides how many threads run, which is what handing it
     * the threads is for, but at most chapter 14's two per processor: left unbounded,
     * Wine's pool grew to 71 threads under 100 connections and kept them (the notes).
     * --workers N fixes the pool at N threads.
     */
    server.thread_count = options.workers;
    /*
     * Four accepts per thread, as in chapter 14; without --workers the processors stand in
     * for the pool's size, which the pool does not say.
     */
    accepts = options.accepts ? options.accepts
                              : DEFAULT_ACCEPTS_PER_WORKER *
                                    (options.workers ? options.workers : processor_count());
    server.max_queued = options.max_queued;
    server.max_message = options.max_message;
    server.idle_timeout_ms = (LONG64)options.idle_timeout * 1000;
    server.keepalive_ms = (DWORD)(options.keepalive * 1000);
    server.verbose = options.verbose;

    /* Before anything prints: a Ctrl+C from then on must reach our handler. */
    if (quit_watch_start() != 0 || start_winsock() != 0)
        return EXIT_FAILURE;
    server.skip_on_success = providers_allow_skipping(address.ss_family);
    /* Before the pool is made, so that an address in use ends the program with no pool thread. */
    listener = open_listener(&address, address_length);
    if (listener == INVALID_SOCKET) {
        stop_winsock();
        return EXIT_FAILURE;
    }
    /* Nothing is in flight yet, so a failure here can simply return, as chapter 14 did. */
    if (start_thread_pool(&server) != 0 || create_pool(&server) != 0 ||
        acceptex_prepare_pool(&server.acceptex, listener, address.ss_family, &server.environment,
                              accepts, admit_client, &server) != 0) {
        close_socket(listener);
        stop_winsock();
        return EXIT_FAILURE;
    }
    if (server.thread_count != 0)
        printf("thread pool of %u threads; each receive takes up to %d bytes\n",
               server.thread_count, RECEIVE_BLOCK_SIZE);
    else
        printf("thread pool sized by the system; each receive takes up to %d bytes\n",
               RECEIVE_BLOCK_SIZE);
    printf("skip on success: %s\n", server.skip_on_success ? "on" : "off");
    /* From here on callbacks may be running: a failure ends the program the way quit does. */
    /* Before the first accept, so the first client is timed like any other. */
    started = start_ticks(&server, tick_period(server.idle_timeout_ms)) == 0;
    if (started)
        printf("idle timeout %lld s, checked every %lu ms\n",
               (long long)(server.idle_timeout_ms / 1000), (unsigned long)server.tick_ms);
    started = started && (posted = acceptex_post_idle(&server.acceptex)) > 0;
    if (started) {
        printf("%u accepts posted on the listener\n", posted);
        printf("stopping: %s\n", quit_wait());
    }
    /* First, so that no tick closes a client as idle while the shutdown closes them all. */
    stop_ticks(&server);
    /* Also after a failed start: it closes the listener, with no accept left in flight. */
    accepts_drained = acceptex_stop(&server.acceptex, DRAIN_TIMEOUT_MS) == 0;
    /* An accept still in flight may yet admit a client: then nothing may be freed. */
    if (accepts_drained) {
        chat_stop(&server.chat);
        close_all_clients(&server);
    }
    if (!accepts_drained ||
        wait_for_drain(server.pool.empty, DRAIN_TIMEOUT_MS, "client I/O") != 0) {
        /*
         * I/O or a callback may still use the slots, so free nothing, and end as chapter 07
         * did: without the C runtime's clean-up, which a running callback could upset.
         */
        if (!TerminateProcess(GetCurrentProcess(), EXIT_FAILURE))
            report_win_error("TerminateProcess");
        return EXIT_FAILURE;
    }
    /* Every reference is gone, so no callback can be queued again: wait out those running. */
    close_slot_objects(&server);
    stop_thread_pool(&server);
    blocks = server.blocks.made;
    destroy_pool(&server);
    if (stop_winsock() != 0)
        return EXIT_FAILURE;
    if (started)
        printf("receive blocks made: %ld, %u bytes each\n", (long)blocks, RECEIVE_BLOCK_SIZE);
    if (started)
        printf("connections served: %ld, bytes sent: %lld\n", (long)server.connections,
               (long long)server.bytes_sent);
    return started ? EXIT_SUCCESS : EXIT_FAILURE;
}
