/**
 * @file sendqueue.h
 * @brief The data of chapter 10's send queue, for the chapters after it: chunks of
 *        copied bytes in order, gathered into WSABUFs and dropped as they are sent. The
 *        caller keeps the policy: its lock, its one send in flight, its cap.
 */
#ifndef IOCP_TUTORIAL_SENDQUEUE_H
#define IOCP_TUTORIAL_SENDQUEUE_H

#include <winsock2.h>
#include <windows.h>

#include <stddef.h>

/** One queued piece of data: a copy that the queue owns until it is sent. */
struct send_chunk {
    struct send_chunk *next; /**< the next chunk, or NULL */
    DWORD length;            /**< bytes in data */
    char *data;              /**< the bytes, allocated with the chunk, right after it */
};

/** Chunks oldest first; the head's first head_sent bytes have been sent. */
struct send_queue {
    struct send_chunk *head; /**< the oldest chunk, or NULL when empty */
    struct send_chunk *tail; /**< the newest chunk */
    DWORD head_sent;         /**< bytes of the head already sent */
    size_t queued;           /**< bytes in the queue not sent yet */
};

/**
 * @brief Makes a chunk holding a copy of @p prefix (@p prefix_length bytes, may be 0)
 *        followed by @p data; returns it, or NULL after reporting that memory ran out.
 */
struct send_chunk *send_chunk_make(const void *prefix, DWORD prefix_length, const void *data,
                                   DWORD length);

/** @brief Appends @p chunk to @p queue, which owns it from then on. */
void send_queue_push(struct send_queue *queue, struct send_chunk *chunk);

/**
 * @brief Points up to @p max WSABUFs at the bytes of @p queue not sent yet, oldest first;
 *        returns how many it filled (0 when the queue is empty).
 */
DWORD send_queue_gather(const struct send_queue *queue, WSABUF *pieces, DWORD max);

/** @brief Drops @p bytes sent bytes from the front, freeing each chunk sent in full. */
void send_queue_consume(struct send_queue *queue, DWORD bytes);

/** @brief Frees every chunk and leaves @p queue empty. */
void send_queue_clear(struct send_queue *queue);

#endif
