#include "sendqueue.h"

#include <stdlib.h>
#include <string.h>

#include "errors.h"

struct send_chunk *send_chunk_make(const void *prefix, DWORD prefix_length, const void *data,
                                   DWORD length)
{
    struct send_chunk *chunk = malloc(sizeof *chunk + prefix_length + length);

    if (chunk == NULL) {
        report_errno("malloc");
        return NULL;
    }
    chunk->next = NULL;
    chunk->length = prefix_length + length;
    chunk->data = (char *)(chunk + 1);
    if (prefix_length > 0)
        memcpy(chunk->data, prefix, prefix_length);
    if (length > 0)
        memcpy(chunk->data + prefix_length, data, length);
    return chunk;
}

void send_queue_push(struct send_queue *queue, struct send_chunk *chunk)
{
    if (queue->tail != NULL)
        queue->tail->next = chunk;
    else
        queue->head = chunk;
    queue->tail = chunk;
    queue->queued += chunk->length;
}

DWORD send_queue_gather(const struct send_queue *queue, WSABUF *pieces, DWORD max)
{
    const struct send_chunk *chunk = queue->head;
    DWORD offset = queue->head_sent;
    DWORD count;

    for (count = 0; chunk != NULL && count < max; chunk = chunk->next, count++) {
        pieces[count].buf = chunk->data + offset;
        pieces[count].len = chunk->length - offset;
        offset = 0;
    }
    return count;
}

void send_queue_consume(struct send_queue *queue, DWORD bytes)
{
    queue->queued -= bytes;
    while (bytes > 0) {
        struct send_chunk *head = queue->head;
        DWORD left = head->length - queue->head_sent;

        if (bytes < left) {
            queue->head_sent += bytes;
            return;
        }
        bytes -= left;
        queue->head = head->next;
        queue->head_sent = 0;
        free(head);
    }
    if (queue->head == NULL)
        queue->tail = NULL;
}

void send_queue_clear(struct send_queue *queue)
{
    while (queue->head != NULL) {
        struct send_chunk *next = queue->head->next;

        free(queue->head);
        queue->head = next;
    }
    queue->tail = NULL;
    queue->head_sent = 0;
    queue->queued = 0;
}
