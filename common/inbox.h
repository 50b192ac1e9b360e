/**
 * @file inbox.h
 * @brief Chapter 11's inbox, for the chapters after it: the bytes a client has sent that
 *        are not yet a whole message, in a buffer that grows as one message needs.
 */
#ifndef IOCP_TUTORIAL_INBOX_H
#define IOCP_TUTORIAL_INBOX_H

#include <stddef.h>

/** Received bytes not yet taken out as messages; all zero is an empty inbox. */
struct inbox {
    unsigned char *bytes; /**< the buffer, or NULL before the first append */
    size_t used;          /**< bytes held, from the front */
    size_t size;          /**< bytes allocated */
};

/**
 * @brief Appends @p length bytes to @p inbox, growing it by doubling from @p first_size
 *        but never past @p most unless the bytes need it; returns 0, or -1 after reporting
 *        that memory ran out (the inbox is then as it was).
 */
int inbox_append(struct inbox *inbox, const void *bytes, size_t length, size_t first_size,
                 size_t most);

/** @brief Drops the first @p count bytes, which have been handled, and keeps the rest. */
void inbox_consume(struct inbox *inbox, size_t count);

/** @brief Frees the buffer and leaves @p inbox empty. */
void inbox_free(struct inbox *inbox);

#endif
