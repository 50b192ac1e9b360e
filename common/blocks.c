#include "blocks.h"

#include "errors.h"

/* Gives a block's pages back to the system. */
static void free_block(union receive_block *block)
{
    if (!VirtualFree(block, 0, MEM_RELEASE))
        report_win_error("VirtualFree");
}

void block_pool_init(struct block_pool *pool)
{
    InitializeSListHead(&pool->free);
    pool->free_count = 0;
    pool->made = 0;
}

union receive_block *block_pool_take(struct block_pool *pool)
{
    union receive_block *block = (union receive_block *)InterlockedPopEntrySList(&pool->free);

    if (block != NULL) {
        InterlockedDecrement(&pool->free_count);
        return block;
    }
    block = VirtualAlloc(NULL, sizeof *block, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
    if (block == NULL)
        report_win_error("VirtualAlloc");
    else
        InterlockedIncrement(&pool->made);
    return block;
}

/* The count is raised before the push and lowered after a pop, so it is never below what the list
 * holds. */
void block_pool_give(struct block_pool *pool, union receive_block *block)
{
    if (InterlockedIncrement(&pool->free_count) > SPARE_BLOCKS) {
        InterlockedDecrement(&pool->free_count);
        free_block(block);
        return;
    }
    InterlockedPushEntrySList(&pool->free, &block->entry);
}

void block_pool_destroy(struct block_pool *pool)
{
    SLIST_ENTRY *entry = InterlockedFlushSList(&pool->free);

    while (entry != NULL) {
        SLIST_ENTRY *next = entry->Next;

        free_block((union receive_block *)entry); /* the entry is the start of its block */
        entry = next;
    }
    pool->free_count = 0;
}
