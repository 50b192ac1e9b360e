#include "teardown.h"

#include <stdio.h>
#include <stdlib.h>

#include "errors.h"

int hold_if_alive(volatile LONG *references)
{
    LONG count = InterlockedCompareExchange(references, 0, 0);

    while (count > 0) {
        LONG seen = InterlockedCompareExchange(references, count + 1, count);

        if (seen == count)
            return 1;
        count = seen;
    }
    return 0;
}

int wait_for_drain(HANDLE drained, DWORD timeout_ms, const char *what)
{
    DWORD waited = WaitForSingleObject(drained, timeout_ms);

    if (waited == WAIT_OBJECT_0)
        return 0;
    if (waited == WAIT_TIMEOUT)
        fprintf(stderr, "%s still in flight after %lu ms; its memory is kept\n", what,
                (unsigned long)timeout_ms);
    else
        report_win_error("WaitForSingleObject");
    return -1;
}

int stop_workers(HANDLE port, HANDLE *workers, unsigned count)
{
    unsigned i;
    int result = 0;

    /* A worker that takes one returns and takes no more, so each gets exactly one. */
    for (i = 0; i < count; i++) {
        if (!PostQueuedCompletionStatus(port, 0, 0, NULL)) {
            report_win_error("PostQueuedCompletionStatus");
            return -1;
        }
    }
    if (count > 0 && WaitForMultipleObjects(count, workers, TRUE, INFINITE) == WAIT_FAILED) {
        report_win_error("WaitForMultipleObjects");
        return -1;
    }
    for (i = 0; i < count; i++) {
        if (!CloseHandle(workers[i])) {
            report_win_error("CloseHandle");
            result = -1;
        }
    }
    free(workers);
    return result;
}
