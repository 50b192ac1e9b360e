/**
 * @file room.h
 * @brief Chapter 12's chat room: who is in it and under which name, behind one lock.
 *        It knows nothing of sockets; the server keeps its members alive while it uses a
 *        snapshot of them.
 */
#ifndef IOCP_TUTORIAL_ROOM_H
#define IOCP_TUTORIAL_ROOM_H

#include <windows.h>

#include <stddef.h>

/** The longest name a member may have, in bytes. */
#define ROOM_NAME_MAX 32

/** A member's place in the room, kept in its client; all zero is not in the room. */
struct room_member {
    char name[ROOM_NAME_MAX + 1]; /**< while in the room, NUL-terminated */
    int joined;                   /**< in the room; guarded by the room's lock */
    unsigned index;               /**< where it is in the room's list while it is in */
};

/** The members, in no particular order; `lock` guards the list and every member's fields. */
struct room {
    CRITICAL_SECTION lock;        /**< guards everything in the room and its members' places */
    struct room_member **members; /**< capacity slots, the first count in use */
    unsigned count;               /**< members in the room */
    unsigned capacity;            /**< the most there can be: one per client slot */
};

/** What room_join did. */
enum room_join_result {
    ROOM_JOINED,     /**< in the room under the name */
    ROOM_ALREADY_IN, /**< it was in the room already, under the name room_name gives */
    ROOM_BAD_NAME,   /**< not 1 to ROOM_NAME_MAX letters, digits, '-', '_' or '.' */
    ROOM_NAME_TAKEN  /**< another member has the name */
};

/** @brief Makes an empty room for up to @p capacity members; returns 0, or -1 after reporting. */
int room_init(struct room *room, unsigned capacity);

/** @brief Frees the room; once no thread can use it. */
void room_destroy(struct room *room);

/**
 * @brief Puts @p member in the room as @p name (@p length bytes, not NUL-terminated) if the
 *        name is valid and free, and sets @p members to how many are in the room then.
 */
enum room_join_result room_join(struct room *room, struct room_member *member,
                                const unsigned char *name, size_t length, unsigned *members);

/**
 * @brief Takes @p member out of the room if it is in, copying its name into @p name and
 *        setting @p members to how many stay; returns 1 if it was in, else 0.
 */
int room_leave(struct room *room, struct room_member *member, char name[ROOM_NAME_MAX + 1],
               unsigned *members);

/**
 * @brief Copies @p member's name into @p name and returns its length while @p member is
 *        in the room; returns 0 when it is not.
 */
size_t room_name(struct room *room, const struct room_member *member, char name[ROOM_NAME_MAX + 1]);

/**
 * @brief Returns a new array (free it) of the members for which @p hold (called under the
 *        lock) returned nonzero, their number in @p count; or NULL after reporting.
 */
struct room_member **room_snapshot(struct room *room, int (*hold)(struct room_member *member),
                                   unsigned *count);

#endif
