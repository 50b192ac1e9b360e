/**
 * @file blocks.h
 * @brief Chapter 14's receive blocks, for the chapters after it: 16 KiB buffers that a
 *        busy client borrows and a quiet one gives back, on a lock-free free list that
 *        keeps a few spares and returns the rest to the system.
 */
#ifndef IOCP_TUTORIAL_BLOCKS_H
#define IOCP_TUTORIAL_BLOCKS_H

#include <windows.h>

/** Bytes one receive takes, into a block that an active client holds and an idle one does not. */
#define RECEIVE_BLOCK_SIZE 16384
/** Blocks kept on the free list for the next clients that get busy; the rest are freed. */
#define SPARE_BLOCKS 64

/**
 * A receive buffer: exactly four pages, from VirtualAlloc, so that one given back beyond
 * the spares really returns its memory to the system. While no client holds it, its
 * first bytes link it into the free list.
 */
union receive_block {
    SLIST_ENTRY entry;                       /**< on the free list; page-aligned, as it must be */
    unsigned char bytes[RECEIVE_BLOCK_SIZE]; /**< what a receive fills */
};

/**
 * The blocks no client holds. Every thread takes and gives them, so the list is an SLIST
 * and the counts change only through Interlocked calls.
 */
struct block_pool {
    SLIST_HEADER free;        /**< the spare blocks */
    volatile LONG free_count; /**< never below how many are on the list */
    volatile LONG made;       /**< blocks allocated so far */
};

/** @brief Readies an empty pool. */
void block_pool_init(struct block_pool *pool);

/**
 * @brief Takes a block: a spare, else a new one; NULL, after reporting the error, when
 *        memory has run out.
 */
union receive_block *block_pool_take(struct block_pool *pool);

/** @brief Gives a block back: onto the list while it holds fewer than SPARE_BLOCKS, else freed. */
void block_pool_give(struct block_pool *pool, union receive_block *block);

/** @brief Frees every spare; once no thread can take or give one. */
void block_pool_destroy(struct block_pool *pool);

#endif
