/**
 * @file chat.h
 * @brief Chapter 12's chat room protocol, for the chapters after it: JOIN, SAY and LEAVE
 *        handled, MESSAGE and NOTICE broadcast through the server's send queues, and
 *        slow consumers dropped. The server lends it its clients through struct chat_ops.
 */
#ifndef IOCP_TUTORIAL_CHAT_H
#define IOCP_TUTORIAL_CHAT_H

#include <windows.h>

#include <stddef.h>

#include "frame.h"
#include "room.h"

/** The most bytes a chat message puts before its text: a name and ": ". */
#define CHAT_LEAD_MAX (ROOM_NAME_MAX + 2)

/** What the chat needs of the server's clients; each is called with a member's place. */
struct chat_ops {
    /** Takes a reference on the member's client if it is still alive; nonzero if taken. */
    int (*hold)(struct room_member *member);
    /** Drops a reference that hold took. */
    void (*release)(struct room_member *member);
    /**
     * Queues one message of `type` whose payload is `lead` (at most CHAT_LEAD_MAX bytes)
     * then `text`, unless it would take the queue past `cap`: returns 0 when queued, 1
     * when over the cap, -1 when the client has ended.
     */
    int (*queue)(struct room_member *member, unsigned type, const char *lead, size_t lead_length,
                 const void *text, size_t length, size_t cap);
    /** Ends the member's connection at once, with a reset, for `reason`. */
    void (*end)(struct room_member *member, const char *reason);
    /** The client number the server prints for the member. */
    unsigned long (*number)(struct room_member *member);
};

/** The room and how to reach its members; `stopping` is set once, with Interlocked. */
struct chat {
    struct room room;           /**< who is in it, under which name */
    const struct chat_ops *ops; /**< how it reaches the server's clients */
    size_t max_queued;          /**< a member whose queue a message would take past it is dropped */
    volatile LONG stopping;     /**< set by chat_stop: from then on no one is told who left */
};

/**
 * @brief Makes an empty room for up to @p capacity members, whose queues may hold
 *        @p max_queued bytes; returns 0, or -1 after reporting the error.
 */
int chat_init(struct chat *chat, unsigned capacity, size_t max_queued, const struct chat_ops *ops);

/** @brief Frees the room; once no thread can use it. */
void chat_destroy(struct chat *chat);

/**
 * @brief Handles a JOIN, SAY or LEAVE message from @p member, which may end its own
 *        connection too (too slow for its own line): the caller checks.
 */
void chat_handle(struct chat *chat, struct room_member *member, const struct frame *frame);

/**
 * @brief Takes @p member out of the room if it is in and tells the others it left, for
 *        @p reason: call it as its connection ends, and again before its slot is reused.
 */
void chat_leave(struct chat *chat, struct room_member *member, const char *reason);

/** @brief From now on members leave without a notice: the server is closing them all. */
void chat_stop(struct chat *chat);

#endif
