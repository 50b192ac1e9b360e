/**
 * @file slotpool.h
 * @brief The client pool of chapters 07 to 11, for the chapters after it: a fixed number
 *        of slots, numbered from 0, that any thread takes and gives back, with an event
 *        that is set while none is in use (what the shutdown waits for).
 */
#ifndef IOCP_TUTORIAL_SLOTPOOL_H
#define IOCP_TUTORIAL_SLOTPOOL_H

#include <windows.h>

/** The slots not in use and the count of those in use; `lock` guards all three. */
struct slot_pool {
    CRITICAL_SECTION lock; /**< guards the three below */
    unsigned *free_slots;  /**< a stack: the most recently given back is taken first */
    unsigned free_count;   /**< slots on the stack */
    unsigned live;         /**< slots in use */
    HANDLE empty;          /**< manual-reset event: set while live is 0 */
};

/** @brief Makes a pool of @p capacity free slots; returns 0, or -1 after reporting the error. */
int slot_pool_create(struct slot_pool *pool, unsigned capacity);

/** @brief Frees the pool; once no thread can use it. */
void slot_pool_destroy(struct slot_pool *pool);

/** @brief Takes a free slot and returns its number (slot 0 first), or -1 when all are in use. */
int slot_pool_take(struct slot_pool *pool);

/** @brief Gives back @p slot, taken before; returns how many slots are still in use. */
unsigned slot_pool_give(struct slot_pool *pool, unsigned slot);

#endif
