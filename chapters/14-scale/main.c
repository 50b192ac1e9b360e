/*
 * Chapter 14: a server that scales: fewer trips through the port, and no buffer per
 * idle connection.
 *
 * Four changes, each measured in the notes. A worker takes up to --batch completions
 * per call, with GetQueuedCompletionStatusEx, and reads each one's status from its
 * OVERLAPPED. Each socket is set to FILE_SKIP_COMPLETION_PORT_ON_SUCCESS, so an I/O that
 * completes at once queues no packet and is handled where it was started, for a bounded
 * number of rounds, so that one busy client cannot keep a worker to itself. The receive
 * adapts: an idle client has only a zero-byte probe pending, which holds no memory; when
 * it completes, the client takes a 16 KiB block from a shared free list and receives into
 * it while it stays busy, and a tick takes the block back from a client whose receive has
 * waited a whole tick. And TCP_NODELAY, with the per-connection lines printed only with
 * --verbose: a console write serialises the workers.
 *
 * Per socket, the client is still the completion key; per I/O, each context still starts
 * with its OVERLAPPED. The block is neither: it belongs to the receive only while the
 * client holds it, and the free list's SLIST links it while no client does.
 *
 * Everything else is chapter 13's: the accepts, the keys and contexts, the framing, the
 * send queue and its back-pressure, the chat room, the idle timeouts and the shutdown.
 */
#include <winsock2.h>
#include <windows.h>
#include <winternl.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acceptex.h"
#include "chat.h"
#include "connection.h"
#include "errors.h"
#include "frame.h"
#include "inbox.h"
#include "keepalive.h"
#include "listener.h"
#include "options.h"
#include "port.h"
#include "quit.h"
#include "sendqueue.h"
#include "slotpool.h"
#include "teardown.h"
#include "ticker.h"
#include "winsock.h"
#include "workers.h"

/* Exit code for a bad command line, the same as parse_options uses. */
#define EXIT_USAGE 2
/* Bytes one receive takes, into a block that an active client holds and an idle one does not. */
#define RECEIVE_BLOCK_SIZE 16384
/*
 * Blocks kept on the free list for the next clients that get busy; one given back beyond
 * that is freed, so a burst of activity does not leave its blocks behind for good.
 */
#define SPARE_BLOCKS 64
/*
 * How many receives, and sends, that complete at once a worker handles where it started
 * them before the next goes through the port, so other clients get their turn. A
 * receive handled inline is a client served ahead of the queue: one round keeps the
 * latency of the others as low as chapter 08's (measured in the notes). A send handled
 * inline only drains the client's own queue, so it may go on longer.
 */
#define INLINE_RECEIVES 1
#define INLINE_SENDS    8
/* Workers per processor when --workers is not given: see main. */
#define WORKERS_PER_PROCESSOR 2
/* Room for the reason a connection ended, such as "receive failed: 64 <message>". */
#define REASON_SIZE 160
/* How many queued chunks one WSASend can carry, as an array of WSABUF. */
#define SEND_GATHER 16
/* How long shutdown waits for the I/O of closed clients, or of cancelled accepts, to end. */
#define DRAIN_TIMEOUT_MS 10000

/* What an I/O context is doing, so a worker knows what a completion means. */
enum io_operation { OPERATION_RECEIVE, OPERATION_SEND, OPERATION_FLUSH, OPERATION_RESUME };

/* What every per-I/O context starts with: the worker reads `operation` to know which. */
struct io_context {
    OVERLAPPED overlapped; /* first, and must stay valid until the completion is dequeued */
    enum io_operation operation;
};

/*
 * A receive buffer: exactly four pages, from VirtualAlloc, so that one given back beyond
 * the spares really returns its memory to the system (a heap may keep freed blocks for
 * itself). While no client holds it, its first bytes link it into the free list.
 */
union receive_block {
    SLIST_ENTRY entry; /* on the free list; page-aligned, as an SLIST entry must be aligned */
    unsigned char bytes[RECEIVE_BLOCK_SIZE];
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
    int pending;         /* posted, and its packet not handled yet */
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

    /*
     * GetTickCount64 when it last received bytes or completed a send, and when the first
     * byte of a message not yet whole arrived (0: none). Its workers write them and the
     * tick reads them, so each is read and written with Interlocked calls.
     */
    _Alignas(8) volatile LONG64 last_active;
    _Alignas(8) volatile LONG64 message_started;
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

    struct chat chat; /* the chat room, and how it reaches the clients */

    LONG64 idle_timeout_ms; /* from --idle-timeout */
    DWORD keepalive_ms;     /* from --keepalive; 0 for none */
    struct ticker ticker;   /* posts the ticks into the port (common/ticker.h) */

    /* The receive blocks no client holds; lock-free, as every worker takes and gives them. */
    SLIST_HEADER free_blocks;
    volatile LONG free_block_count; /* about how many are on it, for SPARE_BLOCKS: Interlocked */
    volatile LONG blocks_allocated; /* blocks made so far: Interlocked */

    ULONG batch;         /* completions a worker takes per wait, from --batch */
    int skip_on_success; /* sockets queue no packet for an I/O that completes at once */
    int verbose;         /* a line per connection and disconnection, from --verbose */
};

/* Gives a block's pages back to the system. */
static void free_block(union receive_block *block)
{
    if (!VirtualFree(block, 0, MEM_RELEASE))
        report_win_error("VirtualFree");
}

/*
 * Takes a receive block: from the free list, else a new one. Returns NULL, after
 * reporting the error, when memory has run out.
 */
static union receive_block *take_block(struct server *server)
{
    union receive_block *block =
        (union receive_block *)InterlockedPopEntrySList(&server->free_blocks);

    if (block != NULL) {
        InterlockedDecrement(&server->free_block_count);
        return block;
    }
    block = VirtualAlloc(NULL, sizeof *block, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
    if (block == NULL)
        report_win_error("VirtualAlloc");
    else
        InterlockedIncrement(&server->blocks_allocated);
    return block;
}

/*
 * Puts a block back on the free list, for the next client that has data, or frees it when
 * the list holds SPARE_BLOCKS already. The count is raised before the push and lowered
 * after a pop, so it is never below what the list holds.
 */
static void give_block(struct server *server, union receive_block *block)
{
    if (InterlockedIncrement(&server->free_block_count) > SPARE_BLOCKS) {
        InterlockedDecrement(&server->free_block_count);
        free_block(block);
        return;
    }
    InterlockedPushEntrySList(&server->free_blocks, &block->entry);
}

/* Frees a client's receive block, send queue and inbox and resets their state; once no thread can
 * use it. */
static void free_buffers(struct client *client)
{
    if (client->receive.block != NULL)
        give_block(client->server, client->receive.block);
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
 * complete at once: with FILE_SKIP_COMPLETION_PORT_ON_SUCCESS such a send queues no
 * completion, so it is handled here, a few rounds at most. Call with the lock held and
 * `sending` set; it clears `sending` once the queue is empty or the socket closed.
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
        hold_client(client); /* the send's reference, dropped when its completion is handled */
        /* No count pointer with an OVERLAPPED: the WSASend page warns of erroneous results. */
        if (WSASend(client->socket, send->pieces, count, NULL, 0, &send->io.overlapped, NULL) ==
            SOCKET_ERROR) {
            if (WSAGetLastError() != WSA_IO_PENDING) {
                outcome->error = WSAGetLastError(); /* the caller drops the reference */
                outcome->failed = "WSASend";
            }
            return;
        }
        /* Done at once: the count is in InternalHigh, set "if the request is completed without
         * errors". */
        sent = (DWORD)send->io.overlapped.InternalHigh;
        if (!client->server->skip_on_success || rounds == INLINE_SENDS) {
            /* Its completion comes through the port, or is sent there: other clients wait. */
            if (client->server->skip_on_success &&
                !PostQueuedCompletionStatus(client->server->port, sent, (ULONG_PTR)client,
                                            &send->io.overlapped)) {
                outcome->error = (int)GetLastError();
                outcome->failed = "PostQueuedCompletionStatus";
            }
            return;
        }
        /* Done at once, and no packet will come: its reference goes, as the caller holds one. */
        InterlockedDecrement(&client->references);
        sent_locked(client, sent, outcome);
    }
    client->sending = 0;
    outcome->finished = client->peer_closed;
}

static void resume_receive(struct client *client);
static void post_receive(struct client *client);

/*
 * Starts a send later, on a worker, with a packet that carries the send's context: with
 * skip-on-success a send completes at once, so none would be in flight to gather behind,
 * and a broadcast to a hundred members would make a hundred sends of one message each,
 * over and over. Call with the lock held and `sending` just set; no send is in flight,
 * so the context is free.
 */
static void post_flush_locked(struct client *client, struct send_outcome *outcome)
{
    struct send_context *send = &client->send;

    memset(&send->io.overlapped, 0, sizeof send->io.overlapped);
    send->io.operation = OPERATION_FLUSH;
    hold_client(client); /* the packet's reference, as if it were an I/O */
    if (!PostQueuedCompletionStatus(client->server->port, 0, (ULONG_PTR)client,
                                    &send->io.overlapped))
        outcome->error = (int)GetLastError(); /* the caller drops the reference */
    outcome->failed = "PostQueuedCompletionStatus";
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
 * send is in flight it starts one: here, when `now` (an echo, for the client this worker
 * serves), or else through a flush packet, so that the messages a broadcast queues
 * meanwhile go out together in one gathered send. Returns 0; 1 if the message would take
 * a queue that is not empty past `cap` (nothing is queued); or -1 if the client has
 * ended (nothing is queued) or after a failure that ends it.
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
            post_flush_locked(client, &outcome);
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
        printf("client %lu associated with port %p, completion key %p\n", client->id,
               (void *)server->port, (void *)client);
    }
    /* Last: once the probe is posted, a worker may be using the client. */
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
    union receive_block *block = take_block(client->server);
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
 * here, for a few rounds, after which its completion is posted to the port so that other
 * clients get their turn.
 */
static void post_receive(struct client *client)
{
    struct receive_context *receive = &client->receive;
    struct server *server = client->server;
    int rounds;

    for (rounds = 0;; rounds++) {
        DWORD flags = 0; /* in and out: must be set before the call */
        const char *failed = "WSARecv";
        int error = 0;
        DWORD got;

        /* A fresh OVERLAPPED for every call: the system uses it while the I/O is pending. */
        memset(&receive->io.overlapped, 0, sizeof receive->io.overlapped);
        receive->io.operation = OPERATION_RECEIVE;
        receive->piece.buf = receive->block != NULL ? (char *)receive->block->bytes : NULL;
        receive->piece.len = receive->block != NULL ? RECEIVE_BLOCK_SIZE : 0;
        hold_client(client); /* the receive's reference, dropped when its completion is handled */
        EnterCriticalSection(&client->lock);
        if (client->socket == INVALID_SOCKET)
            error = WSAENOTSOCK; /* closed already: nothing to post on */
        else if (WSARecv(client->socket, &receive->piece, 1, NULL, &flags, &receive->io.overlapped,
                         NULL) == SOCKET_ERROR)
            error = WSAGetLastError();
        receive->pending = error == WSA_IO_PENDING || (error == 0 && !server->skip_on_success);
        receive->posted_at = GetTickCount64();
        LeaveCriticalSection(&client->lock);
        if (error == WSA_IO_PENDING || (error == 0 && !server->skip_on_success))
            return; /* its completion will come through the port */
        /*
         * Done at once: the count is in InternalHigh, which the OVERLAPPED page says the
         * system sets "if the request is completed without errors".
         */
        got = (DWORD)receive->io.overlapped.InternalHigh;
        if (error == 0 && rounds == INLINE_RECEIVES &&
            PostQueuedCompletionStatus(server->port, got, (ULONG_PTR)client,
                                       &receive->io.overlapped))
            return; /* sent to the port as if it had not completed at once */
        if (error == 0 && rounds == INLINE_RECEIVES) {
            error = (int)GetLastError();
            failed = "PostQueuedCompletionStatus";
        }
        if (error != 0) {
            /* No completion will come for an I/O that was never posted: drop its reference. */
            end_client_after_error(client, failed, (unsigned long)error);
            release_client(client);
            return;
        }
        /* No packet will come: handled here. */
        if (!receive_completed(client, got)) {
            release_client(client);
            return;
        }
        release_client(client); /* the caller holds another reference, so this is not the last */
    }
}

/*
 * Lets a paused receive go again, from the thread that drained the queue: as a packet
 * posted to the port, so that a worker posts it, not this thread, which may be in the
 * middle of another client's broadcast. No receive is pending while it is paused, so
 * the receive's context is free to carry it.
 */
static void resume_receive(struct client *client)
{
    struct receive_context *receive = &client->receive;

    memset(&receive->io.overlapped, 0, sizeof receive->io.overlapped);
    receive->io.operation = OPERATION_RESUME;
    hold_client(client); /* the packet's reference, as if it were an I/O */
    if (!PostQueuedCompletionStatus(client->server->port, 0, (ULONG_PTR)client,
                                    &receive->io.overlapped)) {
        end_client_after_error(client, "PostQueuedCompletionStatus", GetLastError());
        release_client(client);
    }
}

/*
 * Handles one dequeued receive completion. A receive that a tick cancelled to take its
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
        give_block(client->server, returned);
        post_receive(client); /* now a probe */
        return;
    }
    if (error != 0) {
        /*
         * A failed I/O still completes through the port, and still needs cleaning up. A
         * peer's reset usually shows as 64 (ERROR_NETNAME_DELETED) here, not 10054.
         */
        end_client_after_error(client, "receive", error);
        return;
    }
    if (receive_completed(client, bytes))
        post_receive(client);
}

/*
 * Handles one dequeued send completion: drops what was sent, sends what is still queued,
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

/* Handles a flush packet: sends all that is queued, in as few gathered sends as it takes. */
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
        !receive->demoting &&
        now - (LONG64)receive->posted_at >= (LONG64)client->server->ticker.period_ms) {
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
 * A tick, on a worker: one pass over the pool, whose cost grows with the slots, busy or
 * not, and not with the traffic. A slot is looked at only while a reference holds it.
 */
static void on_tick(struct server *server)
{
    LONG64 now = (LONG64)GetTickCount64();
    unsigned i;

    /* First: a tick that fires during the pass must be posted, not dropped. */
    ticker_rearm(&server->ticker);
    for (i = 0; i < server->max_clients; i++) {
        struct client *client = &server->clients[i];

        if (hold_if_alive(&client->references)) {
            check_client(client, now);
            release_idle_block(client, now);
            release_client(client);
        }
    }
}

/*
 * Handles one dequeued completion. Its status is in its OVERLAPPED's Internal, an
 * NTSTATUS, which GetQueuedCompletionStatus would have turned into a Win32 error.
 */
static void handle_completion(struct server *server, const OVERLAPPED_ENTRY *entry)
{
    OVERLAPPED *overlapped = entry->lpOverlapped;
    NTSTATUS status = (NTSTATUS)overlapped->Internal;
    DWORD error = status >= 0 ? 0 : RtlNtStatusToDosError(status);
    struct io_context *io;
    struct client *client;

    if (entry->lpCompletionKey == (ULONG_PTR)&server->acceptex) {
        acceptex_completed(&server->acceptex, overlapped, error);
        return;
    }
    if (ticker_owns(&server->ticker, entry->lpCompletionKey)) {
        on_tick(server);
        return;
    }
    io = CONTAINING_RECORD(overlapped, struct io_context, overlapped);
    client = (struct client *)entry->lpCompletionKey;
    if (io->operation == OPERATION_RECEIVE)
        on_receive(client, error, entry->dwNumberOfBytesTransferred);
    else if (io->operation == OPERATION_RESUME)
        post_receive(client);
    else if (io->operation == OPERATION_FLUSH)
        on_flush(client);
    else
        on_send(client, error, entry->dwNumberOfBytesTransferred);
    /* This completion's reference: the handler above has posted the next I/O, if any. */
    release_client(client);
}

/*
 * A worker thread: handles completions, up to --batch per wait, until it dequeues a stop
 * packet. A batch may hold more than one: each other worker needs its own, so those go
 * back into the port.
 */
static unsigned __stdcall run_worker(void *context)
{
    struct server *server = context;
    OVERLAPPED_ENTRY entries[MAX_BATCH];

    for (;;) {
        ULONG count = 0;
        ULONG stops = 0;
        ULONG i;

        if (!GetQueuedCompletionStatusEx(server->port, entries, server->batch, &count, INFINITE,
                                         FALSE)) {
            report_win_error("GetQueuedCompletionStatusEx");
            return 1;
        }
        for (i = 0; i < count; i++) {
            if (entries[i].lpOverlapped == NULL)
                stops++; /* a real I/O always has an OVERLAPPED: stop_workers' packet */
            else
                handle_completion(server, &entries[i]);
        }
        if (stops == 0)
            continue;
        while (--stops > 0)
            if (!PostQueuedCompletionStatus(server->port, 0, 0, NULL))
                report_win_error("PostQueuedCompletionStatus");
        return 0;
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
        chat_init(&server->chat, server->max_clients, server->max_queued, &chat_ops) != 0)
        return -1;
    InitializeSListHead(&server->free_blocks);
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
    SLIST_ENTRY *entry = InterlockedFlushSList(&server->free_blocks);

    while (entry != NULL) {
        SLIST_ENTRY *next = entry->Next;

        free_block((union receive_block *)entry); /* the entry is the start of its block */
        entry = next;
    }
    for (i = 0; i < server->max_clients; i++)
        DeleteCriticalSection(&server->clients[i].lock);
    slot_pool_destroy(&server->pool);
    chat_destroy(&server->chat);
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
    int ticks_stopped;
    LONG blocks;

    /* A pipe makes stdout fully buffered on Windows; a reader must see each line at once. */
    setvbuf(stdout, NULL, _IONBF, 0);
    parse_options(argc, argv,
                  OPTION_PORT | OPTION_BIND | OPTION_MAX_CLIENTS | OPTION_WORKERS | OPTION_ACCEPTS |
                      OPTION_MAX_QUEUED | OPTION_MAX_MESSAGE | OPTION_IDLE_TIMEOUT |
                      OPTION_KEEPALIVE | OPTION_BATCH | OPTION_VERBOSE,
                  &options);
    address_length = make_listen_address(&options, &address);
    if (address_length == 0)
        return EXIT_USAGE;

    server.max_clients = options.max_clients;
    /*
     * Twice as many workers as processors, and a port that lets only one per processor
     * run: a worker that blocks (on a lock, or on the console) lets the port release
     * another, so the processors stay busy. --workers N sets the count, not the limit.
     */
    server.worker_count =
        options.workers ? options.workers : WORKERS_PER_PROCESSOR * processor_count();
    accepts = options.accepts ? options.accepts : DEFAULT_ACCEPTS_PER_WORKER * server.worker_count;
    server.max_queued = options.max_queued;
    server.max_message = options.max_message;
    server.idle_timeout_ms = (LONG64)options.idle_timeout * 1000;
    server.keepalive_ms = (DWORD)(options.keepalive * 1000);
    server.batch = options.batch;
    server.verbose = options.verbose;
    if (create_pool(&server) != 0)
        return EXIT_FAILURE;

    /* Before anything prints: a Ctrl+C from then on must reach our handler. */
    if (quit_watch_start() != 0 || start_winsock() != 0)
        return EXIT_FAILURE;
    server.port = create_completion_port(processor_count());
    if (server.port == NULL) {
        stop_winsock();
        return EXIT_FAILURE;
    }
    server.skip_on_success = providers_allow_skipping(address.ss_family);
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
    if (started) {
        printf("%u worker threads waiting on the port; each receive takes up to %d bytes\n",
               server.worker_count, RECEIVE_BLOCK_SIZE);
        printf("each worker takes up to %lu completions per wait; %u may run at once; skip on "
               "success: %s\n",
               (unsigned long)server.batch, processor_count(),
               server.skip_on_success ? "on" : "off");
    }
    /* Before the first accept, so the first client is timed like any other. */
    started = started &&
              ticker_start(&server.ticker, server.port, tick_period(server.idle_timeout_ms)) == 0;
    if (started)
        printf("idle timeout %lld s, checked every %lu ms\n",
               (long long)(server.idle_timeout_ms / 1000), (unsigned long)server.ticker.period_ms);
    started = started && (posted = acceptex_post_idle(&server.acceptex)) > 0;
    if (started) {
        printf("%u accepts posted on the listener\n", posted);
        printf("stopping: %s\n", quit_wait());
    }
    /* First, so that no tick closes a client as idle while the shutdown closes them all. */
    ticks_stopped = ticker_stop(&server.ticker) == 0;
    /* Also after a failed start: it closes the listener, with no accept left in flight. */
    accepts_drained = acceptex_stop(&server.acceptex, DRAIN_TIMEOUT_MS) == 0;
    /* An accept still in flight may yet admit a client: then nothing may be freed. */
    if (accepts_drained) {
        chat_stop(&server.chat);
        close_all_clients(&server);
    }
    if (!ticks_stopped || !accepts_drained ||
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
    blocks = server.blocks_allocated;
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
