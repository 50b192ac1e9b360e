#include "inbox.h"

#include <stdlib.h>
#include <string.h>

#include "errors.h"

int inbox_append(struct inbox *inbox, const void *bytes, size_t length, size_t first_size,
                 size_t most)
{
    size_t needed = inbox->used + length;

    if (needed > inbox->size) {
        size_t size = inbox->size ? inbox->size : first_size;
        unsigned char *bigger;

        while (size < needed)
            size *= 2;
        if (size > most) /* doubled past what the caller says one message can need */
            size = most < needed ? needed : most;
        bigger = realloc(inbox->bytes, size);
        if (bigger == NULL) {
            report_errno("realloc");
            return -1;
        }
        inbox->bytes = bigger;
        inbox->size = size;
    }
    memcpy(inbox->bytes + inbox->used, bytes, length);
    inbox->used = needed;
    return 0;
}

void inbox_consume(struct inbox *inbox, size_t count)
{
    if (count == 0)
        return; /* also while bytes is still NULL */
    memmove(inbox->bytes, inbox->bytes + count, inbox->used - count);
    inbox->used -= count;
}

void inbox_free(struct inbox *inbox)
{
    free(inbox->bytes);
    inbox->bytes = NULL;
    inbox->used = 0;
    inbox->size = 0;
}
