#include "room.h"

#include <stdlib.h>
#include <string.h>

#include "errors.h"

int room_init(struct room *room, unsigned capacity)
{
    room->members = calloc(capacity ? capacity : 1, sizeof *room->members);
    if (room->members == NULL) {
        report_errno("calloc");
        return -1;
    }
    room->count = 0;
    room->capacity = capacity;
    InitializeCriticalSection(&room->lock);
    return 0;
}

void room_destroy(struct room *room)
{
    DeleteCriticalSection(&room->lock);
    free(room->members);
    room->members = NULL;
}

/* Whether a name is one a reader can type and tell apart: no spaces, no ':' to fake a line. */
static int name_valid(const unsigned char *name, size_t length)
{
    size_t i;

    if (length == 0 || length > ROOM_NAME_MAX)
        return 0;
    for (i = 0; i < length; i++) {
        unsigned char c = name[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return 0;
    }
    return 1;
}

/* Whether a member has the name; called with the lock held. */
static int name_taken(const struct room *room, const unsigned char *name, size_t length)
{
    unsigned i;

    for (i = 0; i < room->count; i++) {
        const char *other = room->members[i]->name;

        if (strlen(other) == length && memcmp(other, name, length) == 0)
            return 1;
    }
    return 0;
}

enum room_join_result room_join(struct room *room, struct room_member *member,
                                const unsigned char *name, size_t length, unsigned *members)
{
    enum room_join_result result = ROOM_JOINED;

    EnterCriticalSection(&room->lock);
    if (member->joined) {
        result = ROOM_ALREADY_IN; /* whatever the name: a member has one already */
    } else if (!name_valid(name, length)) {
        result = ROOM_BAD_NAME;
    } else if (name_taken(room, name, length)) {
        result = ROOM_NAME_TAKEN;
    } else {
        memcpy(member->name, name, length);
        member->name[length] = '\0';
        member->joined = 1;
        member->index = room->count;
        room->members[room->count++] = member;
    }
    *members = room->count;
    LeaveCriticalSection(&room->lock);
    return result;
}

int room_leave(struct room *room, struct room_member *member, char name[ROOM_NAME_MAX + 1],
               unsigned *members)
{
    int was_in;

    EnterCriticalSection(&room->lock);
    was_in = member->joined;
    if (was_in) {
        /* The last member takes the leaver's place, so the list has no holes. */
        struct room_member *last = room->members[--room->count];

        room->members[member->index] = last;
        last->index = member->index;
        member->joined = 0;
        memcpy(name, member->name, sizeof member->name);
    }
    *members = room->count;
    LeaveCriticalSection(&room->lock);
    return was_in;
}

size_t room_name(struct room *room, const struct room_member *member, char name[ROOM_NAME_MAX + 1])
{
    size_t length = 0;

    EnterCriticalSection(&room->lock);
    if (member->joined) {
        length = strlen(member->name);
        memcpy(name, member->name, length + 1);
    }
    LeaveCriticalSection(&room->lock);
    return length;
}

struct room_member **room_snapshot(struct room *room, int (*hold)(struct room_member *member),
                                   unsigned *count)
{
    struct room_member **held;
    unsigned i;

    EnterCriticalSection(&room->lock);
    /* Sized while the count cannot change; one more, so that an empty room is not NULL. */
    held = malloc((room->count + 1) * sizeof *held);
    *count = 0;
    for (i = 0; held != NULL && i < room->count; i++)
        if (hold(room->members[i]))
            held[(*count)++] = room->members[i];
    LeaveCriticalSection(&room->lock);
    if (held == NULL)
        report_errno("malloc");
    return held;
}
