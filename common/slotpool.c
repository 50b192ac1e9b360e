#include "slotpool.h"

#include <stdlib.h>

#include "errors.h"

int slot_pool_create(struct slot_pool *pool, unsigned capacity)
{
    unsigned i;

    pool->free_slots = malloc((capacity ? capacity : 1) * sizeof *pool->free_slots);
    if (pool->free_slots == NULL) {
        report_errno("malloc");
        return -1;
    }
    pool->empty = CreateEventA(NULL, TRUE, TRUE, NULL);
    if (pool->empty == NULL) {
        report_win_error("CreateEvent");
        free(pool->free_slots);
        return -1;
    }
    /* Pushed in reverse, so slot 0 is handed out first. */
    for (i = 0; i < capacity; i++)
        pool->free_slots[i] = capacity - 1 - i;
    pool->free_count = capacity;
    pool->live = 0;
    InitializeCriticalSection(&pool->lock);
    return 0;
}

void slot_pool_destroy(struct slot_pool *pool)
{
    DeleteCriticalSection(&pool->lock);
    if (!CloseHandle(pool->empty))
        report_win_error("CloseHandle");
    free(pool->free_slots);
    pool->free_slots = NULL;
}

int slot_pool_take(struct slot_pool *pool)
{
    int slot = -1;

    EnterCriticalSection(&pool->lock);
    if (pool->free_count > 0) {
        slot = (int)pool->free_slots[--pool->free_count];
        if (pool->live++ == 0 && !ResetEvent(pool->empty))
            report_win_error("ResetEvent");
    }
    LeaveCriticalSection(&pool->lock);
    return slot;
}

unsigned slot_pool_give(struct slot_pool *pool, unsigned slot)
{
    unsigned live;

    EnterCriticalSection(&pool->lock);
    pool->free_slots[pool->free_count++] = slot;
    live = --pool->live;
    if (live == 0 && !SetEvent(pool->empty))
        report_win_error("SetEvent");
    LeaveCriticalSection(&pool->lock);
    return live;
}
