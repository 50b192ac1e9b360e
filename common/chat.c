#include "chat.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Room for a notice: "name left: " and the reason its connection ended. */
#define NOTICE_SIZE 512

int chat_init(struct chat *chat, unsigned capacity, size_t max_queued, const struct chat_ops *ops)
{
    chat->ops = ops;
    chat->max_queued = max_queued;
    chat->stopping = 0;
    return room_init(&chat->room, capacity);
}

void chat_destroy(struct chat *chat)
{
    room_destroy(&chat->room);
}

void chat_stop(struct chat *chat)
{
    InterlockedExchange(&chat->stopping, 1);
}

/* Answers a request that cannot be met; the connection stays. */
static void send_error(struct chat *chat, struct room_member *member, const char *text)
{
    chat->ops->queue(member, FRAME_ERROR, NULL, 0, text, strlen(text), SIZE_MAX);
}

/*
 * Queues one message, `lead` then `text`, to every member of the room, the sender too. A
 * member whose queue holds bytes not yet sent, and which it would take past max_queued, is
 * ended there and then as a slow consumer: the others never wait for it. No lock is held
 * while queueing.
 */
static void broadcast(struct chat *chat, unsigned type, const char *lead, size_t lead_length,
                      const void *text, size_t length)
{
    char reason[128];
    unsigned count;
    unsigned i;
    struct room_member **members = room_snapshot(&chat->room, chat->ops->hold, &count);

    if (members == NULL)
        return; /* reported: with no memory for the list, no member gets this message */
    for (i = 0; i < count; i++) {
        if (chat->ops->queue(members[i], type, lead, lead_length, text, length, chat->max_queued) >
            0) {
            snprintf(reason, sizeof reason,
                     "too slow: its queue would pass --max-queued (%lu bytes)",
                     (unsigned long)chat->max_queued);
            chat->ops->end(members[i], reason);
        }
    }
    /*
     * Each may be the last reference, and its client then leaves the room and the room is
     * told: after the loop, so that every member has this message before that notice.
     */
    for (i = 0; i < count; i++)
        chat->ops->release(members[i]);
    free(members);
}

/* Takes a member out of the room and tells the room, and the leaver if `tell_leaver`. */
static void leave(struct chat *chat, struct room_member *member, const char *reason,
                  int tell_leaver)
{
    char name[ROOM_NAME_MAX + 1];
    char notice[NOTICE_SIZE];
    unsigned members;
    int length;

    if (!room_leave(&chat->room, member, name, &members))
        return;
    printf("client %lu left the room as %s (%u in the room)\n", chat->ops->number(member), name,
           members);
    if (chat->stopping)
        return;
    if (reason != NULL)
        length = snprintf(notice, sizeof notice, "%s left: %s", name, reason);
    else
        length = snprintf(notice, sizeof notice, "%s left", name);
    broadcast(chat, FRAME_NOTICE, NULL, 0, notice, (size_t)length);
    if (tell_leaver)
        chat->ops->queue(member, FRAME_NOTICE, NULL, 0, notice, (size_t)length, SIZE_MAX);
}

void chat_leave(struct chat *chat, struct room_member *member, const char *reason)
{
    leave(chat, member, reason, 0);
}

/* JOIN: into the room under the name the payload gives, if it is valid and free. */
static void on_join(struct chat *chat, struct room_member *member, const struct frame *frame)
{
    char name[ROOM_NAME_MAX + 1];
    char text[NOTICE_SIZE];
    unsigned members;
    int length;

    switch (room_join(&chat->room, member, frame->payload, frame->length, &members)) {
    case ROOM_JOINED: /* a valid name: it fits and prints as it is */
        printf("client %lu joined the room as %.*s (%u in the room)\n", chat->ops->number(member),
               (int)frame->length, (const char *)frame->payload, members);
        length = snprintf(text, sizeof text, "%.*s joined", (int)frame->length,
                          (const char *)frame->payload);
        broadcast(chat, FRAME_NOTICE, NULL, 0, text, (size_t)length);
        return;
    case ROOM_ALREADY_IN:
        if (room_name(&chat->room, member, name) == 0)
            return; /* dropped meanwhile, so in it no more */
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
    send_error(chat, member, text);
}

/* SAY: "name: text" to everyone in the room. */
static void on_say(struct chat *chat, struct room_member *member, const struct frame *frame)
{
    char lead[CHAT_LEAD_MAX + 1];
    size_t length = room_name(&chat->room, member, lead);

    if (length == 0) {
        send_error(chat, member, "join the room first");
        return;
    }
    memcpy(lead + length, ": ", 2);
    broadcast(chat, FRAME_MESSAGE, lead, length + 2, frame->payload, frame->length);
}

/* LEAVE: out of the room, with the connection kept. */
static void on_leave(struct chat *chat, struct room_member *member)
{
    char name[ROOM_NAME_MAX + 1];

    if (room_name(&chat->room, member, name) == 0)
        send_error(chat, member, "not in the room");
    else
        leave(chat, member, NULL, 1);
}

void chat_handle(struct chat *chat, struct room_member *member, const struct frame *frame)
{
    if (frame->type == FRAME_JOIN)
        on_join(chat, member, frame);
    else if (frame->type == FRAME_SAY)
        on_say(chat, member, frame);
    else
        on_leave(chat, member);
}
